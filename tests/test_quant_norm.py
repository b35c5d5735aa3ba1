"""QuantLayerNorm (core.quant_layernorm), QuantSoftmax (core.quant_softmax_*)
and the passes that build them: bit for bit the NumPy layers they replace
(Add, FakeQuantize, LayerNorm / Softmax, IsNaN -> Where, FakeQuantize) on
every ISA, with chunk boundaries, broadcasting, NaN / inf (the layers'
path), and the graph patterns that must not be fused."""
import numpy as np
import pytest

import sparsekit
from sparsekit._native import AVAILABLE, core
from sparsekit.convert.onnx_static import fuse_quant_layernorm, fuse_quant_softmax
from sparsekit.runtime import layers as L
from sparsekit.runtime.array_ops import ArrayOp
from sparsekit.runtime.quant_norm import QuantLayerNorm, QuantSoftmax

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="needs the C core")


@pytest.mark.parametrize("n", [0, 1, 5, 7, 8, 9, 16, 19, 127, 128, 129, 136, 255, 384, 1000,
                               1536, 4099])
def test_pairwise_sum_is_numpys(n):
    rng = np.random.default_rng(n)
    for scale in (1e-3, 1.0, 1e4):
        x = (rng.standard_normal(n) * scale + scale / 3).astype(np.float32)
        assert core.pairwise_sum_f32(x) == np.float32(x.sum())
        rows = np.stack([x, -x, x[::-1].copy()])
        assert rows.sum(axis=-1)[2] == core.pairwise_sum_f32(rows[2])


def _layers(a, b, p1, g, beta, eps, p2):
    t = a if b is None else L.Add()(a, b)
    return L.FakeQuantize(*p2)(L.LayerNorm(g, beta, eps)(L.FakeQuantize(*p1)(t)))


def _case(rng, shape):
    k = shape[-1]
    a = (rng.standard_normal(shape) * 3).astype(np.float32)
    b = (rng.standard_normal(shape) * 2).astype(np.float32)
    g = rng.uniform(0.2, 2.0, k).astype(np.float32)
    beta = (rng.standard_normal(k) * 0.3).astype(np.float32)
    return a, b, g, beta


# the last: 20 rows of 1000 floats span two 16384-float chunks with a tail
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 19, 384), (608, 384), (1, 129),
                                   (20, 1000), (2, 16385)])
def test_matches_the_layers(isa, shape):
    rng = np.random.default_rng(sum(shape))
    a, b, g, beta = _case(rng, shape)
    p1, p2 = (0.0713, 106), (0.1423, 55)
    for bias in (beta, None):
        for eps in (1e-12, 1e-5):
            case = f"isa={isa} shape={shape} beta={bias is not None} eps={eps}"
            want = _layers(a, b, p1, g, bias, eps, p2)
            got = QuantLayerNorm(p1, g, bias, eps, p2)(a, b)
            np.testing.assert_array_equal(got, want, err_msg=f"{case} add=True")
            one = QuantLayerNorm(p1, g, bias, eps, p2, add=False)(a)
            np.testing.assert_array_equal(one, _layers(a, None, p1, g, bias, eps, p2),
                                          err_msg=f"{case} add=False")


@pytest.mark.filterwarnings("ignore:invalid value")
def test_broadcast_nonfinite_and_views_take_the_layers_path():
    rng = np.random.default_rng(1)
    a, b, g, beta = _case(rng, (2, 7, 24))
    p1, p2 = (0.05, 128), (0.02, 3)
    layer = QuantLayerNorm(p1, g, beta, 1e-12, p2)
    pos = b[:1]  # [1, T, C] position embeddings
    np.testing.assert_array_equal(layer(a, pos), _layers(a, pos, p1, g, beta, 1e-12, p2))
    np.testing.assert_array_equal(layer(a[:, ::2], b[:, ::2]),
                                  _layers(a[:, ::2], b[:, ::2], p1, g, beta, 1e-12, p2))
    bad = a.copy()
    bad[0, 1, 2], bad[1, 3, 0] = np.nan, np.inf
    np.testing.assert_array_equal(layer(bad, b), _layers(bad, b, p1, g, beta, 1e-12, p2))
    # eps 0 and a constant row: 0 / 0 is NaN before the last quantizer
    flat = np.ones((1, 24), np.float32)
    zero = QuantLayerNorm(p1, g, beta, 0.0, p2, add=False)
    np.testing.assert_array_equal(zero(flat), _layers(flat, None, p1, g, beta, 0.0, p2))


def test_saves_and_loads(tmp_path):
    rng = np.random.default_rng(2)
    a, b, g, beta = _case(rng, (3, 4, 16))
    m = sparsekit.runtime.Model.graph(
        [(QuantLayerNorm((0.05, 128), g, beta, 1e-12, (0.02, 3)), ["a", "b"], "y")],
        ["a", "b"], ["y"])
    sparsekit.save(m, tmp_path / "m.skm")
    np.testing.assert_array_equal(sparsekit.load(tmp_path / "m.skm")(a=a, b=b), m(a=a, b=b))


def test_argument_errors():
    g = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="params"):
        QuantLayerNorm((0.1, 0, True), g, None, 1e-5, (0.1, 0))
    with pytest.raises(ValueError, match="out_params"):
        QuantLayerNorm((0.1, 0), g, None, 1e-5, (np.inf, 0))
    x = np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match="out"):
        core.quant_layernorm(x, None, 0.1, 0, g, None, 1e-5, 0.1, 0, np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="gamma"):
        core.quant_layernorm(x, None, 0.1, 0, g[:3], None, 1e-5, 0.1, 0, x.copy())
    with pytest.raises(ValueError, match="b"):
        core.quant_layernorm(x, x[:1], 0.1, 0, g, None, 1e-5, 0.1, 0, x.copy())


def _block(g, extra=()):
    """Add -> FakeQuantize -> LayerNorm (+ a Shape reader) -> FakeQuantize -> MulConst."""
    return [(L.Add(), ["a", "b"], "s"), (L.FakeQuantize(0.05, 128), ["s"], "f1"),
            (L.LayerNorm(g, None, 1e-12), ["f1"], "ln"),
            (ArrayOp("Shape"), ["ln"], "shape"),
            (L.FakeQuantize(0.02, 3), ["ln"], "f2"), (L.MulConst(np.float32(2)), ["f2"], "y"),
            *extra]


def test_pass_fuses_the_block_and_keeps_the_values():
    rng = np.random.default_rng(3)
    a, b, g, _ = _case(rng, (2, 5, 8))
    nodes = _block(g)
    fused = fuse_quant_layernorm(nodes, ["y", "shape"])
    assert [type(n[0]) for n in fused] == [QuantLayerNorm, ArrayOp, L.MulConst]
    assert fused[1][1] == ["f2"]  # the Shape reader reads the fused output
    run = [sparsekit.runtime.Model.graph(n, ["a", "b"], ["y", "shape"]) for n in (nodes, fused)]
    for want, got in zip(run[0](a=a, b=b), run[1](a=a, b=b)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("change", ["fq two readers", "ln read by a layer", "add read twice",
                                    "signed grid", "ln output", "infinite scale"])
def test_pass_leaves_what_it_must_not_fuse(change):
    g = np.ones(8, np.float32)
    nodes, outputs = _block(g), ["y"]
    if change == "fq two readers":
        nodes.append((L.MulConst(np.float32(3)), ["f1"], "z"))
        outputs.append("z")
    elif change == "ln read by a layer":
        nodes.append((L.MulConst(np.float32(3)), ["ln"], "z"))
        outputs.append("z")
    elif change == "ln output":
        outputs.append("ln")
    elif change == "signed grid":
        nodes[4] = (L.FakeQuantize(0.02, 3, signed=True), ["ln"], "f2")
    elif change == "infinite scale":
        nodes[1] = (L.FakeQuantize(np.inf, 0), ["s"], "f1")
    if change == "add read twice":
        nodes.append((L.MulConst(np.float32(3)), ["s"], "z"))
        fused = fuse_quant_layernorm(nodes, outputs + ["z"])
        # the Add stays; its grid, the LayerNorm and the last grid still fuse
        assert [type(n[0]) for n in fused][:2] == [L.Add, QuantLayerNorm]
        assert fused[1][0].n_inputs == 1
        return
    assert fuse_quant_layernorm(nodes, outputs) == nodes


def _softmax_layers(x, mask, p1, p2, nan_to):
    t = L.FakeQuantize(*p1)(x)
    y = L.Softmax(-1)(t if mask is None else L.Add()(t, mask))
    if nan_to is not None:
        y = ArrayOp("Where", slots=("x", "c", "x"), consts={"c": np.float32([nan_to])})(
            ArrayOp("IsNaN")(y), y)
    return L.FakeQuantize(*p2)(y)


def _scores(rng, shape):
    return (rng.standard_normal(shape) * 12).astype(np.float32)


def _masks(rng, shape):
    """[B, 1, 1, T], [B, 1, Tq, T], [1, 1, 1, T], the full shape; a row masked out."""
    b, h, tq, t = shape
    out = []
    for ms in ((b, 1, 1, t), (b, 1, tq, t), (1, 1, 1, t), shape, (1, 1, tq, t)):
        m = np.where(rng.random(ms) < 0.25, -np.inf, 0).astype(np.float32)
        m.reshape(-1, t)[0] = -np.inf  # all masked: NaN probabilities
        out.append(m)
    out.append(np.where(rng.random((b, 1, 1, t)) < 0.3, np.finfo(np.float32).min,
                        0).astype(np.float32))
    return out


@pytest.mark.filterwarnings("ignore:invalid value")
@pytest.mark.parametrize("shape", [(2, 3, 5, 5), (4, 12, 19, 19), (1, 2, 1, 7), (3, 2, 40, 600)])
def test_softmax_matches_the_layers(isa, shape):
    rng = np.random.default_rng(sum(shape))
    x = _scores(rng, shape)
    p1, p2 = (0.365, 143), (1 / 255, 0)
    for mask in _masks(rng, shape) + [None]:
        for nan_to in (0.0, None, 0.5):
            layer = QuantSoftmax(p1, p2, mask=mask is not None, nan_to=nan_to)
            args = (x,) if mask is None else (x, mask)
            np.testing.assert_array_equal(layer(*args), _softmax_layers(x, mask, p1, p2, nan_to))


@pytest.mark.filterwarnings("ignore:invalid value")
def test_softmax_other_broadcasts_and_nonfinite_take_the_layers_path():
    rng = np.random.default_rng(4)
    x = _scores(rng, (2, 3, 4, 6))
    p1, p2 = (0.2, 100), (1 / 255, 0)
    layer = QuantSoftmax(p1, p2, nan_to=0.0)
    for mask in (np.zeros((2, 3, 1, 6), np.float32), np.zeros(6, np.float32),
                 np.zeros((2, 3, 4, 6)), np.full((2, 1, 1, 6), np.nan, np.float32)):
        np.testing.assert_array_equal(layer(x, mask), _softmax_layers(x, mask, p1, p2, 0.0))
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    mask = np.zeros((2, 1, 1, 6), np.float32)
    np.testing.assert_array_equal(layer(bad, mask), _softmax_layers(bad, mask, p1, p2, 0.0))
    with pytest.raises(ValueError, match="mask"):
        core.quant_softmax_shift(x.reshape(-1, 6), 0.2, 100, mask.reshape(-1, 6), 1, 1,
                                 np.empty((24, 6), np.float32))


def _attention(extra=()):
    """FakeQuantize -> Add(mask) -> Softmax -> IsNaN -> Where -> FakeQuantize -> MatMul."""
    return [(L.FakeQuantize(0.365, 143), ["s"], "f1"), (L.Add(), ["f1", "mask"], "a"),
            (L.Softmax(-1), ["a"], "p"), (ArrayOp("IsNaN"), ["p"], "n"),
            (ArrayOp("Where", slots=("x", "c", "x"), consts={"c": np.float32([0])}),
             ["n", "p"], "w"),
            (L.FakeQuantize(1 / 255, 0), ["w"], "f2"),
            (ArrayOp("MatMul", slots=("x", "x")), ["f2", "v"], "y"), *extra]


def _run_attention(nodes, outputs, rng):
    feed = {"s": _scores(rng, (2, 3, 5, 5)), "mask": _masks(rng, (2, 3, 5, 5))[0],
            "v": rng.standard_normal((2, 3, 5, 4)).astype(np.float32)}
    return sparsekit.runtime.Model.graph(nodes, ["s", "mask", "v"], outputs)(**feed)


@pytest.mark.filterwarnings("ignore:invalid value")
def test_softmax_pass_fuses_and_keeps_the_values():
    nodes = _attention()
    fused = fuse_quant_softmax(nodes, ["y"])
    assert [type(n[0]) for n in fused] == [QuantSoftmax, ArrayOp]
    assert fused[0][1] == ["s", "mask"] and fused[0][0].nan_to == 0.0
    for seed in range(3):
        np.testing.assert_array_equal(_run_attention(fused, ["y"], np.random.default_rng(seed)),
                                      _run_attention(nodes, ["y"], np.random.default_rng(seed)))


@pytest.mark.parametrize("change", ["fq two readers", "softmax read by a layer", "axis 1",
                                    "where of another const slot", "signed grid",
                                    "isnan output"])
def test_softmax_pass_leaves_what_it_must_not_fuse(change):
    nodes, outputs = _attention(), ["y"]
    if change == "fq two readers":
        nodes.append((L.MulConst(np.float32(3)), ["f1"], "z"))
        outputs.append("z")
    elif change == "softmax read by a layer":
        nodes.append((L.MulConst(np.float32(3)), ["p"], "z"))
        outputs.append("z")
    elif change == "axis 1":
        nodes[2] = (L.Softmax(1), ["a"], "p")
    elif change == "where of another const slot":  # Where(isnan, p, c): not NaN -> c
        nodes[4] = (ArrayOp("Where", slots=("x", "x", "c"), consts={"c": np.float32([0])}),
                    ["n", "p"], "w")
    elif change == "signed grid":
        nodes[5] = (L.FakeQuantize(1 / 255, 0, signed=True), ["w"], "f2")
    else:
        outputs.append("n")
    assert fuse_quant_softmax(nodes, outputs) == nodes
