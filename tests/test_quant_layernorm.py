"""QuantLayerNorm (core.quant_layernorm) and the pass that builds it: bit for
bit the NumPy layers it replaces (Add, FakeQuantize, LayerNorm, FakeQuantize)
on every ISA, with chunk boundaries, broadcasting, NaN / inf (the layers'
path), and the graph patterns that must not be fused."""
import numpy as np
import pytest

import sparsekit
from sparsekit._native import AVAILABLE, core
from sparsekit.convert.onnx_static import fuse_quant_layernorm
from sparsekit.runtime import layers as L
from sparsekit.runtime.array_ops import ArrayOp
from sparsekit.runtime.quant_layernorm import QuantLayerNorm

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
            want = _layers(a, b, p1, g, bias, eps, p2)
            got = QuantLayerNorm(p1, g, bias, eps, p2)(a, b)
            np.testing.assert_array_equal(got, want)
            one = QuantLayerNorm(p1, g, bias, eps, p2, add=False)(a)
            np.testing.assert_array_equal(one, _layers(a, None, p1, g, bias, eps, p2))


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
