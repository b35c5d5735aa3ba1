"""sparsekit.onnx.load on BERT exported with torch.onnx.export (opset 17,
dynamic batch and sequence axes): fp32, ORT quantize_dynamic int8 and a
pruned export, against ONNX Runtime on the same file; the NumPy ops
(ArrayOp) on their own against ORT; an unsupported op named."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import ort_exact  # noqa: E402
import sparsekit  # noqa: E402
import sparsekit.onnx as sko  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sparsekit.runtime.array_ops import ArrayOp  # noqa: E402
from sparsekit.runtime.attention import QKVHeadsAttention  # noqa: E402
from sparsekit.runtime.shape_function import ShapeFunction  # noqa: E402
from sparsekit.runtime.tensor_quant import TensorQuantLinear  # noqa: E402

NAMES = ["input_ids", "attention_mask", "token_type_ids"]
VOCAB = 60


def _export(path, sparsity=None, initializer_range=0.02, bias_std=None):
    """A tiny BERT exported with dynamic batch and sequence axes (opset 17);
    sparsity: its encoder Linears pruned by magnitude; bias_std: biases drawn
    N(0, bias_std) instead of zero."""
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=48,
                                  max_position_embeddings=24,
                                  initializer_range=initializer_range)
    bert = transformers.BertModel(cfg).eval()
    if bias_std:
        with torch.no_grad():
            for name, p in bert.named_parameters():
                if name.endswith("bias"):
                    p.normal_(0, bias_std)
    if sparsity:
        with torch.no_grad():
            for m in bert.encoder.modules():
                if isinstance(m, torch.nn.Linear):
                    w = m.weight
                    w[w.abs() <= w.abs().flatten().kthvalue(int(sparsity * w.numel())).values] = 0

    class Hidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    ids = torch.randint(0, VOCAB, (1, 7))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's tracer warnings
        torch.onnx.export(Hidden().eval(), (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                          str(path), input_names=NAMES, output_names=["hidden"],
                          dynamic_axes={n: {0: "b", 1: "t"} for n in NAMES + ["hidden"]},
                          dynamo=False, opset_version=17)
    return str(path)


def _quantize_dynamic(fp32, path, per_channel=False):
    """ORT quantize_dynamic of the fp32 file (int8 weights) written to path."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(fp32, str(path), weight_type=QuantType.QInt8, per_channel=per_channel)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnxbert")
    out = {"fp32": _export(d / "bert.onnx"), "pruned": _export(d / "pruned.onnx", 0.8)}
    out["int8"] = _quantize_dynamic(out["fp32"], d / "bert_int8.onnx")
    out["int8 per channel"] = _quantize_dynamic(out["fp32"], d / "bert_int8_pc.onnx",
                                                per_channel=True)
    return out


def _feed(batch, t, seed=0, int32=False):
    """Token ids with padding: row 0 full, the others shorter (mask zeros)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, (batch, t))
    lens = [t] + list(rng.integers(1, t, batch - 1))
    mask = (np.arange(t)[None] < np.array(lens)[:, None]).astype(np.int64)
    ids = ids * mask
    dt = np.int32 if int32 else np.int64
    return {"input_ids": ids.astype(dt), "attention_mask": mask.astype(dt),
            "token_type_ids": (np.arange(t)[None] >= t // 2).astype(dt).repeat(batch, 0)}


def _ort(path, feed):
    """ONNX Runtime on the file, its s8 weights as u8 (tests/ort_exact.py: the
    same integers without AVX2's saturating u8 x s8 products)."""
    return ort_exact.session(path).run(None, {k: v.astype(np.int64) for k, v in feed.items()})[0]


def _pool(h, mask):
    m = mask[..., None].astype(np.float64)
    e = (h * m).sum(1) / m.sum(1)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


SHAPES = [(1, 5), (3, 11), (2, 19)]  # the export used (1, 7)


@pytest.mark.parametrize("batch,t", SHAPES)
def test_fp32_matches_ort(files, batch, t):
    m = sko.load(files["fp32"])
    feed = _feed(batch, t)
    got = m(**feed)
    assert got.dtype == np.float32 and got.shape == (batch, t, 32)
    # float32 throughout, same op order up to BLAS summation: 1e-5 absolute on
    # LayerNorm-scaled hidden states (observed ~1e-6)
    np.testing.assert_allclose(got, _ort(files["fp32"], feed), rtol=0, atol=1e-5)
    assert len(m.report) == 12 and all("fp32" in row["reason"] for row in m.report)
    # the exported erf GELU (Div, Erf, Add, Mul, Mul) runs in the FFN Linear
    assert sum(getattr(a, "activation", None) == "gelu" for a in m.layers) == 2
    assert not any(isinstance(a, ArrayOp) and a.op == "Erf" for a in m.layers)
    # embeddings and the 4 residual adds each run with their LayerNorm
    assert sum(isinstance(a, sparsekit.runtime.layers.BroadcastAddLayerNorm)
               for a in m.layers) == 5
    assert not any(type(a) is sparsekit.runtime.layers.LayerNorm for a in m.layers)


def test_integer_inputs_of_other_dtypes(files):
    m = sko.load(files["fp32"])
    feed = _feed(3, 6, seed=4)
    want = m(**feed)
    np.testing.assert_array_equal(m(**_feed(3, 6, seed=4, int32=True)), want)
    np.testing.assert_array_equal(m(**{k: v.tolist() for k, v in feed.items()}), want)


@pytest.mark.parametrize("batch,t", SHAPES)
def test_dynamic_int8_matches_ort(files, batch, t):
    m = sko.load(files["int8"])
    # query, key and value run as one stacked weight per layer (onnx_qkv)
    qkv = [a.qkv for a in m.layers if isinstance(a, QKVHeadsAttention)]
    lin = [a for a in m.layers if isinstance(a, TensorQuantLinear)] + qkv
    assert len(qkv) == 2 and len(lin) == 8
    assert all(isinstance(a, TensorQuantLinear) and isinstance(a.weight, sparsekit.QuantizedMatrix)
               for a in lin)
    # the file's int8 weights, unchanged ([K, N] in the file, [N, K] here)
    g = onnx.load(files["int8"]).graph
    q = [numpy_helper.to_array(i) for i in g.initializer
         if i.data_type == TensorProto.INT8 and i.dims and len(i.dims) == 2]
    assert len(q) == 12
    ours = [w for a in lin for w in np.split(a.weight.q, 3 if a in qkv else 1)]
    assert {w.T.tobytes() for w in ours} == {np.ascontiguousarray(x).tobytes() for x in q}
    feed = _feed(batch, t)
    got, want = m(**feed), _ort(files["int8"], feed)
    # both quantize each MatMul's input per tensor and multiply exactly in
    # int32: what differs is float rounding around it (observed ~1e-6)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    mask = feed["attention_mask"]
    ref = _pool(_ort(files["fp32"], feed), mask)
    assert ((_pool(got, mask) * ref).sum(1) >= 0.99).all()


def test_dynamic_int8_per_channel_weights(files):
    m = sko.load(files["int8 per channel"])
    assert len(m.report) == 12 and all("per-channel weights read as-is" in row["reason"]
                                       for row in m.report)
    feed = _feed(3, 11)
    np.testing.assert_allclose(m(**feed), _ort(files["int8 per channel"], feed),
                               rtol=0, atol=1e-4)


def test_per_tensor_input_quantization_is_what_makes_it_match(files):
    """Against the same weights with sparsekit's per-row input quantization the
    hidden states move by far more than the tolerance above."""
    m = sko.load(files["int8"])
    feed = _feed(3, 11)
    want = _ort(files["int8"], feed)
    for i, (layer, ins, out) in enumerate(m.nodes):
        if isinstance(layer, TensorQuantLinear):
            m.nodes[i] = (sparsekit.runtime.Linear(layer.weight, layer.bias, layer.activation),
                          ins, out)
        elif isinstance(layer, QKVHeadsAttention):
            layer.qkv = sparsekit.runtime.layers.RowsLinear(layer.weight, layer.bias)
    assert np.abs(m(**feed) - want).max() > 1e-4  # the tolerance above


def test_pruned_export_runs_sparse(files):
    m = sko.load(files["pruned"], min_sparsity=0.5)
    assert len(m.report) == 12
    for row in m.report:
        assert row["module"] == "MatMul" and "MatMul" in row["name"]
        assert "sparsity 80%" in row["reason"] and row["chosen"] == "csr fp32"
    sparse = [a.weight for a in m.layers if isinstance(a, sparsekit.runtime.Linear)]
    assert len(sparse) == 12 and not any(isinstance(w, np.ndarray) for w in sparse)
    for batch, t in SHAPES:
        feed = _feed(batch, t)
        np.testing.assert_allclose(m(**feed), _ort(files["pruned"], feed), rtol=0, atol=1e-5)
    dense = sko.load(files["pruned"], min_sparsity=1.0)
    assert all(row["chosen"] == "dense fp32" for row in dense.report)


def test_quantize_on_import(files):
    m = sko.load(files["fp32"], quantize="dynamic", min_sparsity=1.0)
    lin = [a for a in m.layers if isinstance(a, sparsekit.runtime.Linear)]
    assert len(lin) == 12 and all(isinstance(a.weight, sparsekit.QuantizedMatrix) for a in lin)
    feed = _feed(3, 11)
    mask = feed["attention_mask"]
    cos = (_pool(m(**feed), mask) * _pool(_ort(files["fp32"], feed), mask)).sum(1)
    assert (cos >= 0.99).all()


def test_imported_transformer_saves(files, tmp_path):
    m = sko.load(files["int8"])
    path = tmp_path / "bert.spk"
    sparsekit.save(m, path)
    back = sparsekit.load(path)
    feed = _feed(3, 11)
    np.testing.assert_array_equal(back(**feed), m(**feed))


def test_unsupported_op_names_node(files):
    model = onnx.load(files["fp32"])
    node = next(n for n in model.graph.node if n.op_type == "Erf")
    node.op_type = "Det"
    with pytest.raises(ValueError, match=rf"node '{node.name}': ONNX op 'Det' is not "
                                         "supported"):
        sko.load(model)


def _run_graph(nodes, inputs, outputs, feed, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs,
                          [numpy_helper.from_array(v, k) for k, v in inits])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feed)
    return sko.load(model), want


def test_integer_ops_match_ort():
    """Shape arithmetic on int64 and bool at run time (not folded): C-style
    integer Div, Mod, negative Slice steps, Unsqueeze with negative axes,
    Range, ConstantOfShape, Expand, Where, Equal, Cast."""
    i64 = TensorProto.INT64
    inits = [("neg", np.array([-7, 7, -3], np.int64)), ("three", np.array(3, np.int64)),
             ("st", np.array([-1], np.int64)), ("en", np.array([-100], np.int64)),
             ("ax", np.array([1], np.int64)), ("stp", np.array([-2], np.int64)),
             ("um", np.array([-1, 0], np.int64)), ("zero", np.array(0, np.int64)),
             ("one", np.array(1, np.int64))]
    nodes = [helper.make_node("Add", ["x", "neg"], ["a"]),
             helper.make_node("Div", ["a", "three"], ["d"]),
             helper.make_node("Mod", ["a", "three"], ["md"], fmod=1),
             helper.make_node("Slice", ["x", "st", "en", "ax", "stp"], ["s"]),
             helper.make_node("Shape", ["x"], ["shp"]),
             helper.make_node("Gather", ["shp", "one"], ["n"], axis=0),
             helper.make_node("Range", ["zero", "n", "one"], ["r"]),
             helper.make_node("Unsqueeze", ["r", "um"], ["u"]),
             helper.make_node("ConstantOfShape", ["shp"], ["c"],
                              value=numpy_helper.from_array(np.array([5], np.int64))),
             helper.make_node("Equal", ["x", "c"], ["eq"]),
             helper.make_node("Expand", ["eq", "shp"], ["ex"]),
             helper.make_node("Where", ["ex", "d", "md"], ["w"]),
             helper.make_node("Cast", ["w"], ["f"], to=TensorProto.FLOAT)]
    outs = ["d", "md", "s", "u", "w", "f"]
    types = [i64, i64, i64, i64, i64, TensorProto.FLOAT]
    x = np.array([[5, -2, 9], [0, 5, -11]], np.int64)
    m, want = _run_graph(nodes, [helper.make_tensor_value_info("x", i64, [None, 3])],
                         [helper.make_tensor_value_info(o, t, None)
                          for o, t in zip(outs, types)], {"x": x}, inits)
    got = m(x)
    # run, not folded: as ArrayOps, or those on shapes only inside ShapeFunctions
    assert sum(isinstance(a, ArrayOp) for a in m.layers) + \
        sum(len(a.program) for a in m.layers if isinstance(a, ShapeFunction)) >= 10
    for name, g, w in zip(outs, got, want):
        assert g.dtype == w.dtype, name
        np.testing.assert_array_equal(g, w, err_msg=name)


def test_float_ops_match_ort(rng):
    """Decomposed LayerNorm / GELU and attention-style MatMul of two tensors."""
    f = TensorProto.FLOAT
    inits = [("two", np.array(2, np.float32)), ("eps", np.array(1e-5, np.float32)),
             ("r2", np.array(np.sqrt(2), np.float32)), ("h", np.array(0.5, np.float32))]
    nodes = [helper.make_node("ReduceMean", ["x"], ["mu"], axes=[-1]),
             helper.make_node("Sub", ["x", "mu"], ["d"]),
             helper.make_node("Pow", ["d", "two"], ["d2"]),
             helper.make_node("ReduceMean", ["d2"], ["var"], axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["sd"]),
             helper.make_node("Div", ["d", "sd"], ["n"]),
             helper.make_node("Div", ["n", "r2"], ["z"]),
             helper.make_node("Erf", ["z"], ["e"]),
             helper.make_node("Mul", ["n", "e"], ["ne"]),
             helper.make_node("Mul", ["ne", "h"], ["g"]),
             helper.make_node("Transpose", ["g"], ["gt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["g", "gt"], ["y"])]
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    m, want = _run_graph(nodes, [helper.make_tensor_value_info("x", f, [None, None, 8])],
                         [helper.make_tensor_value_info("y", f, None)], {"x": x}, inits)
    got = m(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("b_shape", [(3, 5, 8), (1, 5, 8), (8,)])
def test_broadcast_add_layernorm(rng, b_shape):
    from sparsekit.runtime.layers import BroadcastAddLayerNorm

    a = rng.standard_normal((3, 5, 8)).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    g, be = rng.standard_normal(8).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    s = a.astype(np.float64) + b
    mu = s.mean(-1, keepdims=True)
    want = (s - mu) / np.sqrt(((s - mu) ** 2).mean(-1, keepdims=True) + 1e-12) * g + be
    got = BroadcastAddLayerNorm(g, be, 1e-12)(a, b)
    assert got.shape == a.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("half,fused", [(0.5, True), (0.25, False)])
def test_erf_gelu_chain_fused_only_when_exact(rng, half, fused):
    """MatMul, Add bias, then x * half * (1 + erf(x / sqrt 2)): the GELU runs in
    the Linear only for half = 0.5; another constant stays as NumPy ops."""
    f = TensorProto.FLOAT
    inits = [("w", rng.standard_normal((8, 6)).astype(np.float32)),
             ("b", rng.standard_normal(6).astype(np.float32)),
             ("r2", np.array(np.sqrt(2), np.float32)), ("one", np.array(1, np.float32)),
             ("h", np.array(half, np.float32))]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]),
             helper.make_node("Add", ["xw", "b"], ["z"]),
             helper.make_node("Div", ["z", "r2"], ["zd"]),
             helper.make_node("Erf", ["zd"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["e1"]),
             helper.make_node("Mul", ["z", "e1"], ["m"]),
             helper.make_node("Mul", ["m", "h"], ["y"])]
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    m, want = _run_graph(nodes, [helper.make_tensor_value_info("x", f, [None, None, 8])],
                         [helper.make_tensor_value_info("y", f, None)], {"x": x}, inits)
    lin = [a for a in m.layers if isinstance(a, sparsekit.runtime.Linear)]
    assert len(lin) == 1 and (lin[0].activation == "gelu") == fused
    assert any(isinstance(a, ArrayOp) and a.op == "Erf" for a in m.layers) != fused
    np.testing.assert_allclose(m(x), want[0], rtol=1e-5, atol=1e-5)
