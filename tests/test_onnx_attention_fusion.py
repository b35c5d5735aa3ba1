"""sparsekit.onnx.load runs the exported scaled dot-product attention (q . k,
scale, additive mask, Softmax, IsNaN / Where, . v) as one HeadsAttention
layer (sparsekit.convert.onnx_attention): fused count on the tiny BERT
export (fp32, int8, pruned), outputs against the unfused graph and ONNX
Runtime with padding and an all-padding row, save / load, graph variants
that fuse (causal and per-head masks, Div on the scores, no NaN guard) or
must not (scores read elsewhere, Softmax over another axis, a per-head
scale), and the layer's kernel path against its NumPy path."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import sparsekit  # noqa: E402
import sparsekit.onnx as sko  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sparsekit.convert import onnx as conv_onnx  # noqa: E402
from sparsekit.runtime.array_ops import ArrayOp  # noqa: E402
from sparsekit.runtime.attention import HeadsAttention, QKVHeadsAttention  # noqa: E402
from sparsekit.runtime.layers import Softmax  # noqa: E402

from test_onnx_transformer import _export, _feed, _ort, _quantize_dynamic  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnxattn")
    out = {"fp32": _export(d / "bert.onnx"), "pruned": _export(d / "pruned.onnx", 0.8),
           # weights and biases 10x the default init: peaked, not near-uniform attention
           "sharp": _export(d / "sharp.onnx", initializer_range=0.2, bias_std=0.1)}
    out["int8"] = _quantize_dynamic(out["fp32"], d / "bert_int8.onnx")
    return out


def _unfused(path, monkeypatch):
    with monkeypatch.context() as mp:
        mp.setattr(conv_onnx, "fuse_attention", lambda model, dtypes: model)
        return sko.load(path)


def _n_fused(m):
    """Attention layers, with or without their projections (onnx_qkv)."""
    return sum(isinstance(a, (HeadsAttention, QKVHeadsAttention)) for a in m.layers)


@pytest.mark.parametrize("kind", ["fp32", "int8", "pruned", "sharp"])
def test_bert_attention_fused_and_matches(files, kind, monkeypatch):
    m, ref = sko.load(files[kind]), _unfused(files[kind], monkeypatch)
    assert _n_fused(m) == 2 and _n_fused(ref) == 0  # one per layer
    # nothing of the chain is left: no Softmax, IsNaN, activation MatMul
    assert not any(isinstance(a, Softmax) or isinstance(a, ArrayOp) and
                   a.op in ("IsNaN", "MatMul") for a in m.layers)
    assert len(m.nodes) < len(ref.nodes)
    for batch, t in [(1, 5), (3, 11), (2, 19)]:  # padded rows in batches > 1
        feed = _feed(batch, t, seed=batch)
        got = m(**feed)
        # same float32 ops up to the order of the scale and the kernel's exp
        # (about 2 ulp): 1e-5 absolute on LayerNorm-scaled hidden states
        np.testing.assert_allclose(got, ref(**feed), rtol=0, atol=1e-5)
        # int8: both quantize each MatMul's input per tensor, a rounding may
        # flip one code (as in test_onnx_transformer)
        np.testing.assert_allclose(got, _ort(files[kind], feed), rtol=0,
                                   atol=1e-4 if kind == "int8" else 1e-5)


def test_all_padding_row_gives_what_the_graph_gives(files, monkeypatch):
    """A sequence with no token: every key of its queries is -inf; the
    export's IsNaN / Where turns the NaN softmax into 0, the kernel gives 0."""
    feed = _feed(3, 9, seed=4)
    for k in feed:
        feed[k][1] = 0
    m, ref = sko.load(files["fp32"]), _unfused(files["fp32"], monkeypatch)
    got = m(**feed)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ref(**feed), rtol=0, atol=1e-5)
    np.testing.assert_allclose(got, _ort(files["fp32"], feed), rtol=0, atol=1e-5)


def test_fused_model_saves_and_loads(files, tmp_path):
    m = sko.load(files["int8"])
    path = tmp_path / "bert.spk"
    sparsekit.save(m, path)
    back = sparsekit.load(path)
    kinds = (HeadsAttention, QKVHeadsAttention)
    assert [a.config() for a in back.layers if isinstance(a, kinds)] == \
        [a.config() for a in m.layers if isinstance(a, kinds)]
    assert any(isinstance(a, QKVHeadsAttention) for a in back.layers)
    feed = _feed(3, 11)
    np.testing.assert_array_equal(back(**feed), m(**feed))


# ---- small graphs: q [B, H, T, D], kt [B, H, D, T], v, mask as inputs ----------

B, H, T, D = 2, 3, 6, 8


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _attention_graph(mask_heads=1, guard=True, q_scale="mul", softmax_axis=-1,
                     scores_out=False, masked=True, opset=17):
    """q.k (scaled as asked), + mask, Softmax, [IsNaN, Where], . v."""
    c = np.float32(D ** -0.25)
    inits = {"c": np.array(c), "zero": np.array([0.0], np.float32),
             "sqrtd": np.array(np.float32(D ** 0.5)),
             "per_head": np.full((1, H, 1, 1), c, np.float32)}
    nodes = []
    q, k = "q", "kt"
    if q_scale == "mul":
        nodes += [helper.make_node("Mul", ["q", "c"], ["qs"]),
                  helper.make_node("Mul", ["c", "kt"], ["ks"])]
        q, k = "qs", "ks"
    elif q_scale == "per_head":
        nodes += [helper.make_node("Mul", ["q", "per_head"], ["qs"]),
                  helper.make_node("Mul", ["kt", "per_head"], ["ks"])]
        q, k = "qs", "ks"
    nodes.append(helper.make_node("MatMul", [q, k], ["s0"]))
    s = "s0"
    if q_scale == "div":
        nodes.append(helper.make_node("Div", ["s0", "sqrtd"], ["s1"]))
        s = "s1"
    if masked:
        nodes.append(helper.make_node("Add", ["mask", s], ["s2"]))
        s = "s2"
    nodes.append(helper.make_node("Softmax", [s], ["p0"], **(
        {} if softmax_axis is None else {"axis": softmax_axis})))
    p = "p0"
    if guard:
        nodes += [helper.make_node("IsNaN", ["p0"], ["nan"]),
                  helper.make_node("Where", ["nan", "zero", "p0"], ["p1"])]
        p = "p1"
    nodes.append(helper.make_node("MatMul", [p, "v"], ["out"]))
    inputs = [_vi("q", [B, H, T, D]), _vi("kt", [B, H, D, T]), _vi("v", [B, H, T, D])]
    if masked:
        inputs.append(_vi("mask", [B, mask_heads, T, T]))
    outputs = [_vi("out", [B, H, T, D])] + ([_vi("s0", [B, H, T, T])] if scores_out else [])
    g = helper.make_graph(nodes, "attn", inputs, outputs,
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _inputs(rng, mask_heads=1, causal=False, dead_row=False):
    feed = {"q": rng.standard_normal((B, H, T, D)).astype(np.float32),
            "kt": rng.standard_normal((B, H, D, T)).astype(np.float32),
            "v": rng.standard_normal((B, H, T, D)).astype(np.float32)}
    keep = np.ones((B, mask_heads, T, T), bool)
    keep[1, ..., T - 2:] = False  # padding of sequence 1
    if causal:
        keep &= np.tril(np.ones((T, T), bool))
    if mask_heads > 1:
        keep[:, 1, :, 0] = False
    if dead_row:
        keep[0, :, 2] = False  # query 2 of sequence 0 sees no key
    feed["mask"] = np.where(keep, np.float32(0), np.float32(-np.inf))
    return feed


def _check(model, feed, fused, atol=1e-5):
    m = sko.load(model)
    assert _n_fused(m) == fused
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feed)
    got = m(**feed)
    got = got if isinstance(got, tuple) else (got,)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=atol, equal_nan=True)
    return m, got


@pytest.mark.parametrize("variant", [
    dict(), dict(causal=True), dict(mask_heads=H), dict(q_scale="div"), dict(q_scale=None),
    dict(dead_row=True), dict(mask_heads=H, dead_row=True), dict(q_scale="per_head"),
    dict(softmax_axis=None), dict(opset=11)])
def test_attention_graphs_fuse_with_any_additive_mask(rng, variant):
    """The mask is the graph's own value: causal, padding or per head (NumPy
    there: the kernel takes one mask for all heads) all give the graph's result;
    a scale that is not one number stays a Mul before the fused layer."""
    heads = variant.get("mask_heads", 1)
    model = _attention_graph(mask_heads=heads, q_scale=variant.get("q_scale", "mul"),
                             softmax_axis=variant.get("softmax_axis", -1),
                             opset=variant.get("opset", 17))
    _, (got,) = _check(model, _inputs(rng, heads, variant.get("causal", False),
                                      variant.get("dead_row", False)), fused=1)
    assert np.isfinite(got).all()
    if variant.get("dead_row"):
        assert not got[0, :, 2].any()  # IsNaN / Where: 0, as ORT gives


def test_without_nan_guard_a_dead_row_stays_nan(rng):
    model = _attention_graph(guard=False)
    m, (got,) = _check(model, _inputs(rng, dead_row=True), fused=1)
    assert np.isnan(got[0, :, 2]).all() and np.isfinite(np.delete(got, 2, axis=2)).all()
    # no dead row: the kernel path, same result as ORT (checked in _check)
    _check(model, _inputs(rng), fused=1)


def test_no_mask_fuses(rng):
    feed = _inputs(rng)
    del feed["mask"]
    _check(_attention_graph(masked=False), feed, fused=1)


@pytest.mark.parametrize("variant", [dict(scores_out=True), dict(softmax_axis=2)])
def test_other_graphs_are_left_as_they_are(rng, variant):
    """Scores also a graph output, Softmax over queries: not this attention,
    not fused, still run as the graph says."""
    _check(_attention_graph(**variant), _inputs(rng), fused=0)


def test_opset_11_softmax_without_axis_is_not_attention():
    """Before opset 13 Softmax's default axis is 1 (heads and scores
    flattened together): the pass leaves it (the importer's Softmax itself
    does not implement that default: not compared with ORT here)."""
    from sparsekit.convert.onnx_attention import fuse_attention
    from sparsekit.convert.onnx_generic import inferred_dtypes

    for opset, fused in ((11, False), (13, True)):
        model = _attention_graph(softmax_axis=None, opset=opset)
        out = fuse_attention(model, inferred_dtypes(model))
        assert (out is not model) == fused
        assert any(n.op_type == "SparsekitAttention" for n in out.graph.node) == fused


@pytest.mark.parametrize("mask_shape", [None, (B, 1, T, T), (B, 1, 1, T), (1, 1, T, T),
                                        (T, T), (B, H, T, T)])
def test_layer_kernel_matches_numpy_path(rng, isa, mask_shape):
    _kernel_vs_numpy(rng, (B, H, T, T, D), mask_shape)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1), (3, 2, 5, 9, 17), (1, 4, 13, 7, 3)])
def test_layer_odd_shapes(rng, isa, shape):
    """Tails of every loop: one token, Tq != Tk, D not a multiple of a vector."""
    b, h, tq, tk, _ = shape
    _kernel_vs_numpy(rng, shape, (b, 1, tq, tk))


def _kernel_vs_numpy(rng, shape, mask_shape):
    b, h, tq, tk, d = shape
    layer = HeadsAttention(0.3)
    q = rng.standard_normal((b, h, tq, d)).astype(np.float32)
    kt = rng.standard_normal((b, h, tk, d)).astype(np.float32).transpose(0, 1, 3, 2)
    v = rng.standard_normal((b, h, tk, d)).astype(np.float32)
    mask = None
    if mask_shape is not None:
        mask = np.where(rng.random(mask_shape) < 0.3, np.float32(-np.inf),
                        rng.standard_normal(mask_shape).astype(np.float32))
    want = layer._numpy(q, kt, v, mask)
    fast = layer._kernel(q, kt, v, mask)
    per_head = mask_shape is not None and len(mask_shape) == 4 and mask_shape[1] > 1
    assert (fast is None) == per_head  # per-head masks: NumPy
    np.testing.assert_allclose(layer(q, kt, v, mask), want, rtol=0, atol=1e-5)


def test_layer_checks_and_registers():
    assert sparsekit.runtime.layers.LAYERS["HeadsAttention"] is HeadsAttention
    assert HeadsAttention(0.5, masked=False).n_inputs == 3
    with pytest.raises(ValueError, match="scale"):
        HeadsAttention(float("inf"))
