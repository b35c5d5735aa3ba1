"""sparsekit.onnx.load runs an attention's query, key and value projections as
one stacked GEMM (sparsekit.convert.onnx_qkv, QKVHeadsAttention): on the tiny
BERT export (fp32, ORT dynamic int8: the same result as the unfused graph
bit for bit; pruned: left alone), and on small graphs that fuse (computed or
constant Reshape targets, a Shape reader of the query heads, no mask) or must
not (a projection read elsewhere, cross-attention, another key permutation,
Reshape with allowzero, a projection with its own activation); outputs
against ONNX Runtime, save / load."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import sparsekit  # noqa: E402
import sparsekit.onnx as sko  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sparsekit._dense_f32 import wanted  # noqa: E402
from sparsekit.convert import onnx as conv_onnx  # noqa: E402
from sparsekit.runtime.attention import HeadsAttention, QKVHeadsAttention  # noqa: E402
from sparsekit.runtime.layers import RowsLinear  # noqa: E402


def _unfused(model, monkeypatch):
    with monkeypatch.context() as mp:
        mp.setattr(conv_onnx, "fuse_qkv_attention", lambda nodes, outputs: nodes)
        return sko.load(model)


def _count(m, kind):
    return sum(type(a) is kind for a in m.layers)


# ---- the tiny BERT export -------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from test_onnx_transformer import _export, _quantize_dynamic

    d = tmp_path_factory.mktemp("onnxqkv")
    out = {"fp32": _export(d / "bert.onnx"), "pruned": _export(d / "pruned.onnx", 0.8)}
    out["int8"] = _quantize_dynamic(out["fp32"], d / "bert_int8.onnx")
    return out


@pytest.mark.parametrize("kind", ["fp32", "int8", "pruned"])
def test_bert_projections_stacked(files, kind, monkeypatch):
    from test_onnx_transformer import _feed, _ort

    m, ref = sko.load(files[kind]), _unfused(files[kind], monkeypatch)
    fused = 0 if kind == "pruned" else 2  # sparse weights are not stacked
    assert _count(m, QKVHeadsAttention) == fused
    assert _count(m, HeadsAttention) == 2 - fused and _count(ref, HeadsAttention) == 2
    assert len(ref.nodes) - len(m.nodes) == fused * 9  # 3 Linear, Reshape, Transpose each
    for batch, t in [(1, 5), (3, 11), (2, 19)]:
        feed = _feed(batch, t, seed=batch)
        got = m(**feed)
        if kind == "int8" or wanted():  # each output column is the same sum as before
            np.testing.assert_array_equal(got, ref(**feed))
        else:  # NumPy's BLAS on the stacked weight may block the sums differently
            np.testing.assert_allclose(got, ref(**feed), rtol=0, atol=1e-6)
        np.testing.assert_allclose(got, _ort(files[kind], feed), rtol=0,
                                   atol=1e-4 if kind == "int8" else 1e-5)


def test_bert_fused_saves_and_loads(files, tmp_path):
    from test_onnx_transformer import _feed

    for kind in ("fp32", "int8"):
        m = sko.load(files[kind])
        path = tmp_path / f"{kind}.spk"
        sparsekit.save(m, path)
        back = sparsekit.load(path)
        assert [a.config() for a in back.layers if type(a) is QKVHeadsAttention] == \
            [a.config() for a in m.layers if type(a) is QKVHeadsAttention]
        feed = _feed(3, 11)
        np.testing.assert_array_equal(back(**feed), m(**feed))


# ---- small graphs: h [B, T, C] -> q, k, v projections -> attention ------------------

B, T, C, H = 2, 5, 12, 3
D = C // H


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _graph(rng, computed_shape=True, q_read=False, cross=False, k_perm=(0, 2, 3, 1),
           allowzero=0, q_relu=False, masked=True, shape_reader=True):
    """torch.onnx.export's layout of a self-attention on h (see onnx_qkv)."""
    inits = {"scale": np.array(np.float32(D ** -0.5)),
             "heads": np.array([H, D], np.int64), "zero": np.array(0, np.int64),
             "one": np.array(1, np.int64), "hd": np.array([0, 0, H, D], np.int64),
             "ax0": np.array([0], np.int64), "cc": np.array([C], np.int64)}
    nodes, outputs = [], [_vi("out", None)]
    if computed_shape:  # Shape -> Gather -> Unsqueeze -> Concat, as the export writes it
        nodes += [helper.make_node("Shape", ["h"], ["hs"]),
                  helper.make_node("Gather", ["hs", "zero"], ["b0"], axis=0),
                  helper.make_node("Gather", ["hs", "one"], ["t0"], axis=0),
                  helper.make_node("Unsqueeze", ["b0", "ax0"], ["b1"]),
                  helper.make_node("Unsqueeze", ["t0", "ax0"], ["t1"]),
                  helper.make_node("Concat", ["b1", "t1", "heads"], ["s4"], axis=0)]
    for p, src, perm in (("q", "h", (0, 2, 1, 3)), ("k", "g" if cross else "h", k_perm),
                         ("v", "g" if cross else "h", (0, 2, 1, 3))):
        inits[f"w{p}"] = rng.standard_normal((C, C)).astype(np.float32) * 0.3
        inits[f"b{p}"] = rng.standard_normal(C).astype(np.float32) * 0.1
        nodes += [helper.make_node("MatMul", [src, f"w{p}"], [f"{p}0"]),
                  helper.make_node("Add", [f"{p}0", f"b{p}"], [f"{p}1"])]
        lin = f"{p}1"
        if q_relu and p == "q":
            nodes.append(helper.make_node("Relu", ["q1"], ["q1r"]))
            lin = "q1r"
        nodes += [helper.make_node("Reshape", [lin, "s4" if computed_shape else "hd"],
                                   [f"{p}2"], allowzero=allowzero if p == "v" else 0),
                  helper.make_node("Transpose", [f"{p}2"], [f"{p}3"], perm=list(perm))]
    if q_read:
        outputs.append(_vi("q1", None))
    if k_perm != (0, 2, 3, 1):  # keys transposed in a second step
        nodes.append(helper.make_node("Transpose", ["k3"], ["k4"], perm=[0, 1, 3, 2]))
    nodes += [helper.make_node("MatMul", ["q3", "k4" if k_perm != (0, 2, 3, 1) else "k3"],
                               ["s0"]),
              helper.make_node("Mul", ["s0", "scale"], ["s1"])]
    s = "s1"
    if masked:
        nodes.append(helper.make_node("Add", ["s1", "mask"], ["s2"]))
        s = "s2"
    nodes += [helper.make_node("Softmax", [s], ["p"], axis=-1),
              helper.make_node("MatMul", ["p", "v3"], ["o"]),
              helper.make_node("Transpose", ["o"], ["o1"], perm=[0, 2, 1, 3])]
    if shape_reader:  # the export reads the query heads' shape for the merge
        nodes += [helper.make_node("Shape", ["q3"], ["qs"]),
                  helper.make_node("Gather", ["qs", "zero"], ["qb"], axis=0),
                  helper.make_node("Unsqueeze", ["qb", "ax0"], ["qb1"]),
                  helper.make_node("Concat", ["qb1", "ax0", "cc"], ["os"], axis=0),
                  helper.make_node("Reshape", ["o1", "os"], ["out"])]
    else:
        nodes.append(helper.make_node("Reshape", ["o1", "cc3"], ["out"]))
        inits["cc3"] = np.array([0, 0, C], np.int64)
    inputs = [_vi("h", [None, None, C])] + ([_vi("g", [None, None, C])] if cross else []) + \
        ([_vi("mask", [None, 1, None, None])] if masked else [])
    g = helper.make_graph(nodes, "qkv", inputs, outputs,
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _feed(rng, model):
    names = [i.name for i in model.graph.input]
    feed = {n: rng.standard_normal((B, T, C)).astype(np.float32) for n in ("h", "g")
            if n in names}
    if "mask" in names:
        keep = np.ones((B, 1, T, T), bool)
        keep[1, ..., T - 2:] = False
        feed["mask"] = np.where(keep, np.float32(0), np.float32(-np.inf))
    return feed


def _check(rng, model, fused, monkeypatch):
    m = sko.load(model)
    assert _count(m, QKVHeadsAttention) == fused
    assert _count(m, HeadsAttention) == 1 - fused
    feed = _feed(rng, model)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feed)
    got = m(**feed)
    got = got if isinstance(got, tuple) else (got,)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5)
    ref = _unfused(model, monkeypatch)(**feed)
    ref = ref if isinstance(ref, tuple) else (ref,)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=0, atol=1e-6)
    return m


@pytest.mark.parametrize("variant", [dict(), dict(computed_shape=False), dict(masked=False),
                                     dict(shape_reader=False)])
def test_graphs_that_fuse(rng, variant, monkeypatch):
    m = _check(rng, _graph(rng, **variant), 1, monkeypatch)
    layer = next(a for a in m.layers if type(a) is QKVHeadsAttention)
    assert layer.weight.shape == (3 * C, C) and layer.bias.shape == (3 * C,)
    want_shapes = [None] * 3 if variant.get("computed_shape", True) else [[0, 0, H, D]] * 3
    assert layer.shapes == want_shapes and layer.attention.masked == variant.get("masked", True)


@pytest.mark.parametrize("variant", [dict(q_read=True), dict(cross=True),
                                     dict(k_perm=(0, 2, 1, 3)), dict(allowzero=1),
                                     dict(q_relu=True)])
def test_graphs_left_as_they_are(rng, variant, monkeypatch):
    """A projection also a graph output, keys and values from another input,
    keys transposed in two steps, allowzero, a ReLU in the query projection:
    the attention alone is fused, the projections stay three Linears."""
    m = _check(rng, _graph(rng, **variant), 0, monkeypatch)
    assert _count(m, RowsLinear) == 3


def test_query_and_value_shapes_that_may_differ_keep_their_shape_readers(rng, monkeypatch):
    """The query heads' Shape is read: it moves to the attention output only
    when the query and value reshapes are the same value. Here the value's
    target is another constant ([0, 0, H, D] spelled [0, 0, -1, D])."""
    model = _graph(rng, computed_shape=False)
    init = {i.name: i for i in model.graph.initializer}
    init["hv"] = numpy_helper.from_array(np.array([0, 0, -1, D], np.int64), "hv")
    model.graph.initializer.append(init["hv"])
    for n in model.graph.node:
        if n.op_type == "Reshape" and n.input[0] == "v1":
            n.input[1] = "hv"
    _check(rng, model, 0, monkeypatch)


def test_layer_runs_any_reshape_target(rng):
    """QKVHeadsAttention reshapes as the graph said, whatever the targets:
    against its parts run one by one."""
    w = rng.standard_normal((3 * C, C)).astype(np.float32)
    b = rng.standard_normal(3 * C).astype(np.float32)
    h = rng.standard_normal((B, T, C)).astype(np.float32)
    calls = []

    class Spy(HeadsAttention):  # counts the calls that leave the one-kernel path
        def __call__(self, *args):
            calls.append(1)
            return super().__call__(*args)

    # heads of the tokens (the heads' count given, another one, or inferred as
    # the export writes it) run as one kernel call on views; other axes (each
    # token its own sequence here) through HeadsAttention
    for shapes, fallback in (([[0, 0, H, D]] * 3, 0), ([[B, T, 2, C // 2]] * 3, 0),
                             ([[0, 0, -1, D]] * 3, 0), ([[B * T, 1, H, D]] * 3, 1),
                             ([[0, -1, 1, C]] * 3, 0)):
        layer = QKVHeadsAttention(w, b, 0.5, True, False, shapes)
        layer.attention.__class__ = Spy
        del calls[:]
        qkv = h @ w.T + b
        q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(
            [h.shape[j] if s == 0 else s for j, s in enumerate(shapes[i])]) for i in range(3))
        want = HeadsAttention(0.5, True, False)(q.transpose(0, 2, 1, 3), k.transpose(0, 2, 3, 1),
                                                v.transpose(0, 2, 1, 3))
        np.testing.assert_allclose(layer(h), want, rtol=1e-5, atol=1e-5)
        assert len(calls) == fallback
    layer = QKVHeadsAttention(w, b, 0.5, True, True, [None, [0, 0, H, D], None])
    assert layer.n_inputs == 4  # hidden, mask, two computed shapes
    layer.attention.__class__ = Spy
    shape = np.array([B, T, H, D], np.int64)
    keep = rng.random((B, 1, 1, T)) < 0.7
    keep[..., 0] = True
    for mask, fallback in ((np.where(keep, 0, -np.inf).astype(np.float32), 1),  # broadcast
                           (np.broadcast_to(np.where(keep, 0, -np.inf).astype(np.float32),
                                            (B, 1, T, T)), 0)):
        del calls[:]
        got = layer(h, mask, shape, shape)
        assert len(calls) == fallback
        qkv = h @ w.T + b
        q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, H, D) for i in range(3))
        want = HeadsAttention(0.5)(q.transpose(0, 2, 1, 3), k.transpose(0, 2, 3, 1),
                                   v.transpose(0, 2, 1, 3), mask)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="^weight: "):
        QKVHeadsAttention(w[:-1], None)
    with pytest.raises(ValueError, match="^shapes: "):
        QKVHeadsAttention(w, None, shapes=[None])
