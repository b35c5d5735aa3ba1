"""core.quantize_lookup and the runtime layers on it (FakeQuantize,
LookupTable, BiasRequantize, Int8LinearRequantize): the same floats as the
NumPy definitions / the unfused layers, on every ISA, with tails, chunk
boundaries, non-contiguous inputs and NaN / inf (which take the NumPy path)."""
import numpy as np
import pytest

import sparsekit
from sparsekit._native import AVAILABLE, core
from sparsekit.runtime import layers as L
from sparsekit.runtime.qlinear import BiasRequantize, Int8LinearRequantize, LookupTable

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="needs the C core")

# K around the 16384-float chunk (one row per chunk, a tail row count) and small
SHAPES = [(1, 1), (3, 5), (37, 384), (5, 16383), (2, 16385), (700, 31)]


def _fq_numpy(x, s, z):
    """(clip(rint(x / s) + z, 0, 255) - z) * s in float32, NaN -> code 0."""
    with np.errstate(invalid="ignore"):
        q = np.rint(np.divide(x, np.float32(s), dtype=np.float32)) + np.float32(z)
        q = np.fmin(np.fmax(q, np.float32(0)), np.float32(255))
    return (q - np.float32(z)) * np.float32(s)


def _data(rng, m, k, s, z):
    x = (rng.standard_normal((m, k)) * 80 * s).astype(np.float32)
    x.flat[::7] = (np.rint(x.flat[::7] / s) + 0.5) * s  # ties, half of them exact
    return x


@pytest.mark.parametrize("shape", SHAPES)
def test_fake_quantize_matches_numpy(isa, shape):
    rng = np.random.default_rng(sum(shape))
    s, z = 0.0371, 77
    x = _data(rng, *shape, s, z)
    got = L.FakeQuantize(s, z)(x)
    np.testing.assert_array_equal(got, _fq_numpy(x, s, z))
    # a strided view and a 3-D tensor take the same path
    xt = np.ascontiguousarray(x.T).T
    np.testing.assert_array_equal(L.FakeQuantize(s, z)(xt), _fq_numpy(x, s, z))
    x3 = x.reshape(1, *shape)
    np.testing.assert_array_equal(L.FakeQuantize(s, z)(x3), _fq_numpy(x3, s, z))


@pytest.mark.parametrize("shape", SHAPES)
def test_lookup_table_and_bias_requantize_match_layers(isa, shape):
    rng = np.random.default_rng(len(shape) + shape[1])
    (s1, z1), (s2, z2) = (0.0413, 120), (0.0559, 31)
    x = _data(rng, *shape, s1, z1)
    table = rng.standard_normal(256).astype(np.float32)
    lut = LookupTable(s2, z2, table)
    np.testing.assert_array_equal(lut(x), np.take(table, lut.codes(x)))
    bias = (rng.standard_normal(shape[1]) * 3).astype(np.float32)
    # random products and sums: an FMA (one rounding) would differ from the
    # layers' two roundings on many of them
    for tab, last in ((None, L.FakeQuantize(s2, z2)), (table, lut)):
        fused = BiasRequantize((s1, z1), bias, (s2, z2), tab)
        want = last(L.AddConst(bias)(L.FakeQuantize(s1, z1)(x)))
        np.testing.assert_array_equal(fused(x), want)


def test_non_finite_takes_the_layers_path():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 9)).astype(np.float32)
    x[0, 1], x[1, 2], x[2, 3] = np.nan, np.inf, -np.inf
    s, z = 0.05, 100
    np.testing.assert_array_equal(L.FakeQuantize(s, z)(x), _fq_numpy(x, s, z))
    bias = rng.standard_normal(9).astype(np.float32)
    fused = BiasRequantize((s, z), bias, (0.07, 3))
    want = L.FakeQuantize(0.07, 3)(L.FakeQuantize(s, z)(x) + bias)
    np.testing.assert_array_equal(fused(x), want)
    # a finite x whose biased sum overflows to inf in stage 2
    big = BiasRequantize((3e38, 0), np.full(2, 3e38, np.float32), (1.0, 0))
    xb = np.array([[1e38, 2e38]], np.float32)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(big(xb), L.FakeQuantize(1.0, 0)(
            L.FakeQuantize(3e38, 0)(xb) + np.float32(3e38)))


def test_quantize_lookup_checks_arguments():
    x = np.zeros((2, 3), np.float32)
    out = np.empty((2, 3), np.float32)
    with pytest.raises(ValueError, match="scale"):
        core.quantize_lookup(x, 0.0, 0, None, out)
    with pytest.raises(ValueError, match="zero point"):
        core.quantize_lookup(x, 1.0, 256, None, out)
    with pytest.raises(ValueError, match="table"):
        core.quantize_lookup(x, 1.0, 0, np.zeros(255, np.float32), out)
    with pytest.raises(ValueError, match="out"):
        core.quantize_lookup(x, 1.0, 0, None, np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match="bias"):
        core.quantize_lookup(x, 1.0, 0, None, out, np.zeros(2, np.float32), 1.0, 0)
    with pytest.raises(ValueError, match="scale2"):
        core.quantize_lookup(x, 1.0, 0, None, out, np.zeros(3, np.float32), -1.0, 0)
    with pytest.raises(ValueError, match="x"):
        core.quantize_lookup(np.zeros((2, 3), np.float64), 1.0, 0, None, out)
    with pytest.raises(ValueError, match="contains NaN"):
        core.quantize_lookup(np.full((2, 3), np.nan, np.float32), 1.0, 0, None, out)
    with pytest.raises(ValueError, match="bias"):
        BiasRequantize((1.0, 0), np.zeros((2, 2)), (1.0, 0))
    with pytest.raises(TypeError, match="weight"):
        Int8LinearRequantize(np.zeros((3, 2), np.float32), (1.0, 0), np.zeros(3), (1.0, 0))


@pytest.mark.parametrize("m", [1, 7, 300])
def test_int8_linear_requantize_matches_layers(isa, m):
    """The u8 GEMM epilogue's codes are the static quantizer's of the fp32
    output, so the fused layer equals Linear -> BiasRequantize bit for bit."""
    rng = np.random.default_rng(m)
    n, k = 40, 67
    w = sparsekit.QuantizedMatrix.from_float(rng.standard_normal((n, k)).astype(np.float32))
    w = w.with_static_input(0.031, 129)
    x = (rng.standard_normal((m, 2, k)) * 2).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    y = L.RowsLinear(w)(x)
    s1 = float(np.abs(y).max() / 100)  # most of y on the grid, some clipped
    table = rng.standard_normal(256).astype(np.float32)
    xn = x.copy()
    xn[0, 0, 0] = np.nan
    for tab in (None, table):
        fused = Int8LinearRequantize(w, (s1, 90), bias, (0.05, 140), tab)
        want = BiasRequantize((s1, 90), bias, (0.05, 140), tab)(y)
        assert (want != BiasRequantize((s1, 90), 0 * bias, (0.05, 140), tab)(y)).any()
        np.testing.assert_array_equal(fused(x), want)
        with np.errstate(invalid="ignore"):  # NaN: whatever the Linear does
            try:
                want = BiasRequantize((s1, 90), bias, (0.05, 140), tab)(L.RowsLinear(w)(xn))
            except ValueError as e:
                with pytest.raises(ValueError, match=str(e)[:20]):
                    fused(xn)
            else:
                np.testing.assert_array_equal(fused(xn), want)


def test_codes_handed_to_the_next_int8_linear(isa):
    """An Int8LinearRequantize ending in a table with out_codes hands the next
    static int8 Linears the codes they would compute from its floats: the
    same results downstream, whether that Linear is plain or fused."""
    from sparsekit.runtime.int8_chain import U8Activations
    from sparsekit.runtime.qlinear import codes_for

    rng = np.random.default_rng(11)
    n, k, n2 = 48, 33, 20
    w = sparsekit.QuantizedMatrix.from_float(
        rng.standard_normal((n, k)).astype(np.float32)).with_static_input(0.02, 128)
    w2 = sparsekit.QuantizedMatrix.from_float(
        rng.standard_normal((n2, n)).astype(np.float32)).with_static_input(0.013, 9)
    x = (rng.standard_normal((5, 7, k)) * 1.5).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    # a table off the next grid (some values round, some clip)
    table = (rng.standard_normal(256) * 1.5).astype(np.float32)
    y = L.RowsLinear(w)(x)
    p1, p2 = (float(np.abs(y).max() / 90), 100), (0.04, 120)
    plain = Int8LinearRequantize(w, p1, bias, p2, table)
    coded = Int8LinearRequantize(w, p1, bias, p2, table, out_codes=(0.013, 9))
    f, c = plain(x), coded(x)
    assert type(c) is U8Activations and c.q.shape == f.shape
    np.testing.assert_array_equal(c.q, codes_for(table, 0.013, 9)[LookupTable(
        *p2, table).codes(L.AddConst(bias)(L.FakeQuantize(*p1)(y)))])
    np.testing.assert_array_equal(L.RowsLinear(w2)(c), L.RowsLinear(w2)(f))
    nxt = Int8LinearRequantize(w2, (0.05, 100), rng.standard_normal(n2).astype(np.float32),
                               (0.03, 50))
    np.testing.assert_array_equal(nxt(c), nxt(f))
    # a u8 input on another grid runs the layers (the Linear takes its codes)
    other = U8Activations(c.q, 0.5, 9)
    np.testing.assert_array_equal(nxt(other), nxt.requant(nxt.linear(other)))
    assert codes_for(np.full(256, np.inf, np.float32), 1.0, 0) is None
    with pytest.raises(ValueError, match="out_codes"):
        Int8LinearRequantize(w, p1, bias, p2, None, out_codes=(0.013, 9))
    out = np.empty((2, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        core.quantize_lookup(np.zeros((2, 3), np.float32), 1.0, 0, None, out)


def test_fusion_pass_on_back_to_back_chains():
    """FakeQuantize -> AddConst -> FakeQuantize -> AddConst -> FakeQuantize:
    the first chain fuses, the second (whose first FakeQuantize is the first
    chain's output) stays as it is; the graph still computes the same."""
    from sparsekit.convert.onnx_static import fuse_bias_requantize
    from sparsekit.runtime.model import Model

    rng = np.random.default_rng(5)
    b1, b2 = (rng.standard_normal((2, 6)) * 0.3).astype(np.float32)
    nodes = [(L.FakeQuantize(0.02, 100), ["x"], "a"), (L.AddConst(b1), ["a"], "b"),
             (L.FakeQuantize(0.03, 90), ["b"], "c"), (L.AddConst(b2), ["c"], "d"),
             (L.FakeQuantize(0.04, 80), ["d"], "e")]
    fused = fuse_bias_requantize(nodes, ["e"])
    assert [type(a) for a, _, _ in fused] == [BiasRequantize, L.AddConst, L.FakeQuantize]
    x = rng.standard_normal((3, 6)).astype(np.float32)
    np.testing.assert_array_equal(Model.graph(fused, ["x"], ["e"])(x),
                                  Model.graph(nodes, ["x"], ["e"])(x))


def test_int8_requantize_one_call(isa):
    """core.int8_requantize (Int8LinearRequantize's one C call) equals the
    three calls it replaces: u8 codes with padded rows, an infinite biased
    value (ValueError, the layer runs its layers), and its argument errors."""
    rng = np.random.default_rng(21)
    n, k, m = 24, 19, 9
    w = sparsekit.QuantizedMatrix.from_float(
        rng.standard_normal((n, k)).astype(np.float32)).with_static_input(0.02, 128)
    wide = rng.integers(0, 256, (m, k + 5), dtype=np.uint8)
    q = wide[:, :k]  # rows with a stride past k
    bias = rng.standard_normal(n).astype(np.float32)
    from sparsekit.formats import ACTIVATIONS
    from sparsekit.quant_ops import _ZP

    codes = np.empty((m, n), np.uint8)
    core.qgemm_dequant(w._arrays(), n, k, np.ascontiguousarray(q), _ZP[128],
                       np.full(1, 0.02, np.float32), None, ACTIVATIONS[None], 0.07, 100, codes)
    want = np.empty((m, n), np.float32)
    core.quantize_lookup(codes, np.float32(0.07), 100, None, want, bias, np.float32(0.05), 140)
    got = np.empty((m, n), np.float32)
    core.int8_requantize(w._arrays(), n, k, q, 0.02, 128, 0.07, 100, bias, 0.05, 140, None, got)
    np.testing.assert_array_equal(got, want)
    huge = bias.copy()
    huge[3] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        core.int8_requantize(w._arrays(), n, k, q, 0.02, 128, 0.07, 100, huge, 0.05, 140, None,
                             got)
    layer = Int8LinearRequantize(w, (0.07, 100), huge, (0.05, 140))
    x = rng.standard_normal((m, k)).astype(np.float32)
    np.testing.assert_array_equal(layer(x), layer.requant(layer.linear(x)))
    with pytest.raises(ValueError, match="bias"):
        core.int8_requantize(w._arrays(), n, k, q, 0.02, 128, 0.07, 100, bias[:3], 0.05, 140,
                             None, got)
    with pytest.raises(ValueError, match="table2"):
        core.int8_requantize(w._arrays(), n, k, q, 0.02, 128, 0.07, 100, bias, 0.05, 140, None,
                             np.empty((m, n), np.uint8))
    with pytest.raises(ValueError, match="out"):
        core.int8_requantize(w._arrays(), n, k, q, 0.02, 128, 0.07, 100, bias, 0.05, 140, None,
                             np.empty((m, n + 1), np.float32))
    with pytest.raises(ValueError, match="x_scale"):
        core.int8_requantize(w._arrays(), n, k, q, np.inf, 128, 0.07, 100, bias, 0.05, 140,
                             None, got)
