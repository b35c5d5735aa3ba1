"""The runtime's threaded row passes give the same bits at any thread count:
add_layernorm_f32 (in place and written from a), the NumPy-exact
layernorm_f32 behind runtime.layers.LayerNorm (also bit for bit NumPy's
steps), and the layers that use them. Shapes are large enough for
sk_threads_for_work to give 2 threads (the conftest turns the thread
backoff off, so they are used)."""
import numpy as np
import pytest

import sparsekit
from sparsekit._native import AVAILABLE, core

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="needs the C core")


@pytest.fixture
def threads():
    """Set the thread count per call; restore the default afterwards."""
    before = sparsekit.get_num_threads()
    yield sparsekit.set_num_threads
    sparsekit.set_num_threads(before)


def bits(a):
    return np.ascontiguousarray(a).view(np.uint32)


def numpy_layernorm(x, g, b, eps):
    """runtime.layers.LayerNorm's NumPy steps, written out (the reference)."""
    mu = x.mean(axis=-1, keepdims=True)
    d = x - mu
    var = (d * d).mean(axis=-1, keepdims=True)
    y = d / np.sqrt(var + eps) * g
    return y + b if b is not None else y


SHAPES = [(1, 1), (3, 7), (2, 8), (5, 9), (64, 128), (33, 129), (700, 384), (301, 1000),
          (130, 1536)]


@pytest.mark.parametrize("m,k", SHAPES)
def test_layernorm_f32_is_numpys_steps_at_1_and_2_threads(threads, m, k):
    rng = np.random.default_rng(m * 7 + k)
    x = (rng.standard_normal((m, k)) * 5 + 3).astype(np.float32)
    g = rng.standard_normal(k).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    for beta in (b, None):
        for eps in (1e-12, 1e-5, 0.25):
            ref = numpy_layernorm(x, g, beta, eps)
            for nt in (1, 2):
                threads(nt)
                out = np.full_like(x, np.nan)
                core.layernorm_f32(x, g, beta, eps, out)
                assert np.array_equal(bits(out), bits(ref)), (nt, beta is None, eps)


def test_layernorm_f32_extremes(threads):
    """NaN, infinities, huge and constant rows take NumPy's values too."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 384)).astype(np.float32)
    x[1, 5] = np.nan
    x[2, 0] = np.inf
    x[3, 7] = -np.inf
    x[4] = 3e38
    x[5] = 7.0  # constant row: d = 0, var = 0
    x[6, :10] = -3e38
    g = rng.standard_normal(384).astype(np.float32)
    b = rng.standard_normal(384).astype(np.float32)
    with np.errstate(all="ignore"):
        ref = numpy_layernorm(x, g, b, 1e-12)
    for nt in (1, 2):
        threads(nt)
        out = np.empty_like(x)
        core.layernorm_f32(x, g, b, 1e-12, out)
        assert np.array_equal(bits(out), bits(ref))


def test_layernorm_f32_arguments():
    x = np.ones((3, 4), np.float32)
    g = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="x"):
        core.layernorm_f32(x.astype(np.float64), g, None, 1e-5, np.empty_like(x))
    with pytest.raises(ValueError, match="x"):
        core.layernorm_f32(np.ones((4, 8), np.float32)[:, ::2], g, None, 1e-5,
                           np.empty_like(x))
    with pytest.raises(ValueError, match="out"):
        core.layernorm_f32(x, g, None, 1e-5, np.empty((3, 5), np.float32))
    with pytest.raises(ValueError, match="out"):
        core.layernorm_f32(x, g, None, 1e-5, x)  # in place: not allowed
    with pytest.raises(ValueError, match="gamma"):
        core.layernorm_f32(x, np.ones(5, np.float32), None, 1e-5, np.empty_like(x))
    with pytest.raises(ValueError, match="beta"):
        core.layernorm_f32(x, g, np.ones(3, np.float32), 1e-5, np.empty_like(x))
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        core.layernorm_f32(x, g, None, 1e-5, ro)
    empty = np.empty((0, 4), np.float32)
    assert core.layernorm_f32(empty, g, None, 1e-5, np.empty_like(empty)).shape == (0, 4)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 384), (600, 384)])
def test_layernorm_layer_unchanged_by_the_c_path(threads, shape):
    """LayerNorm's C path gives the bits of its NumPy path (non-contiguous input)."""
    from sparsekit.runtime.layers import LayerNorm

    rng = np.random.default_rng(len(shape))
    k = shape[-1]
    ln = LayerNorm(rng.standard_normal(k), rng.standard_normal(k), eps=1e-12)
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    wide = np.zeros(shape[:-1] + (2 * k,), np.float32)
    wide[..., ::2] = x  # a strided view: the NumPy path
    ref = ln(wide[..., ::2])
    for nt in (1, 2):
        threads(nt)
        assert np.array_equal(bits(ln(x)), bits(ref))


@pytest.mark.parametrize("m,n", [(1, 5), (3, 17), (700, 384), (257, 1536)])
def test_add_layernorm_to_matches_in_place_at_1_and_2_threads(isa, threads, m, n):
    """Written from a: the bits of the in-place kernel on a copy of a."""
    rng = np.random.default_rng(m + n)
    a = (rng.standard_normal((m, n)) * 3 + 5).astype(np.float32)
    r = rng.standard_normal((m, n)).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    for args in ((r, g, b), (None, g, b), (r, None, None)):
        threads(1)
        ref = a.copy()
        core.add_layernorm_f32(ref, *args, 1e-5)
        for nt in (1, 2):
            threads(nt)
            y = np.full_like(a, np.nan)
            core.add_layernorm_f32(y, *args, 1e-5, a)
            assert np.array_equal(bits(y), bits(ref)), nt
            same = a.copy()
            core.add_layernorm_f32(same, *args, 1e-5)
            assert np.array_equal(bits(same), bits(ref)), nt


def test_add_layernorm_to_strides_and_errors(threads):
    rng = np.random.default_rng(9)
    big = rng.standard_normal((300, 500)).astype(np.float32)
    a = big[:, 10:394]  # rows with a stride
    r = rng.standard_normal((300, 384)).astype(np.float32)
    ref = np.ascontiguousarray(a)
    core.add_layernorm_f32(ref, r, None, None, 1e-5)
    out = np.zeros((300, 400), np.float32)
    threads(2)
    core.add_layernorm_f32(out[:, :384], r, None, None, 1e-5, a)
    assert np.array_equal(bits(out[:, :384]), bits(ref))
    assert not out[:, 384:].any()  # nothing past the rows
    y = np.zeros((4, 6), np.float32)
    with pytest.raises(ValueError, match="a:"):
        core.add_layernorm_f32(y, None, None, None, 1e-5, np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="a:"):
        core.add_layernorm_f32(y[:, :4], None, None, None, 1e-5, y[:, 1:5])  # overlaps y
    with pytest.raises(ValueError, match="a"):
        core.add_layernorm_f32(y, None, None, None, 1e-5, y.astype(np.float64))
    same = rng.standard_normal((4, 6)).astype(np.float32)
    ref = same.copy()
    core.add_layernorm_f32(ref, None, None, None, 1e-5)
    core.add_layernorm_f32(same, None, None, None, 1e-5, same)  # a is y: in place
    assert np.array_equal(same, ref)


def test_add_layernorm_layer_keeps_its_inputs(threads):
    from sparsekit.runtime.layers import AddLayerNorm

    rng = np.random.default_rng(4)
    layer = AddLayerNorm(rng.standard_normal(384), rng.standard_normal(384))
    a = rng.standard_normal((2, 300, 384)).astype(np.float32)
    b = rng.standard_normal((2, 300, 384)).astype(np.float32)
    a0, b0 = a.copy(), b.copy()
    threads(1)
    ref = a.copy().reshape(-1, 384)
    core.add_layernorm_f32(ref, b.reshape(-1, 384), layer.gamma, layer.beta, layer.eps)
    for nt in (1, 2):
        threads(nt)
        y = layer(a, b)
        assert y.shape == a.shape
        assert np.array_equal(bits(y.reshape(-1, 384)), bits(ref))
    assert np.array_equal(a, a0) and np.array_equal(b, b0)


MINMAX_SIZES = [31, 32, 33, 63, 64, 65, 16384, 16385, 300_000, 16384 * 40 + 17]


@pytest.mark.parametrize("n", MINMAX_SIZES)
def test_minmax_f32_same_bits_at_1_and_2_threads(threads, n):
    """Blocks split over threads: NumPy's range, and the same float (the sign
    of a zero included) at any thread count."""
    rng = np.random.default_rng(n)
    for trial in range(4):
        x = (rng.standard_normal(n) * 10.0 ** (trial - 1)).astype(np.float32)
        if trial == 1:  # the extremes are zeros of both signs, far apart
            x = np.abs(x) + 1
            x[rng.integers(n, size=3)] = -0.0
            x[rng.integers(n, size=3)] = 0.0
        if trial == 2:
            x[-1] = np.inf
            x[n // 2] = -np.inf
        got = []
        for nt in (1, 2):
            threads(nt)
            got.append(core.minmax_f32(x))
        assert got[0][0] == float(x.min()) and got[0][1] == float(x.max())
        assert [np.float32(v).tobytes() for v in got[0]] == \
            [np.float32(v).tobytes() for v in got[1]]


@pytest.mark.parametrize("n", MINMAX_SIZES[-3:])
def test_minmax_f32_nan_in_any_block(threads, n):
    rng = np.random.default_rng(n + 1)
    x = rng.standard_normal(n).astype(np.float32)
    for k in (0, 17, 16383, 16384, n // 2, n - 33, n - 1):
        y = x.copy()
        y[k] = np.nan
        for nt in (1, 2):
            threads(nt)
            assert all(np.isnan(core.minmax_f32(y))), (k, nt)


def test_tensor_params_large_tensor_is_numpys(monkeypatch, threads):
    """Above the old 16384-value limit (C with AVX-512) the same (scale, zp)."""
    import sparsekit.runtime.tensor_quant as TQ

    rng = np.random.default_rng(2)
    for x in ((rng.standard_normal((608, 1536)) * 3).astype(np.float32),
              np.abs(rng.standard_normal((100, 384))).astype(np.float32) + 0.5):
        got = {}
        for nt in (1, 2):
            threads(nt)
            got[nt] = TQ.tensor_params(x)
        monkeypatch.setattr(TQ, "_NATIVE", False)
        want = TQ.tensor_params(x)
        monkeypatch.setattr(TQ, "_NATIVE", True)
        assert repr(got[1]) == repr(want) and repr(got[2]) == repr(want)


# ---- the static-int8 row passes (chunks of rows over threads) ---------------

def _same_at_1_and_2_threads(threads, run):
    """run(out) at 1 and at 2 threads: the same bits (and the same error)."""
    got = []
    for nt in (1, 2):
        threads(nt)
        got.append(run())
    a, b = got
    assert a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))
    return a


@pytest.mark.parametrize("m,k", [(700, 384), (90, 1536), (5, 20000)])
def test_quantize_lookup_same_at_1_and_2_threads(threads, m, k):
    rng = np.random.default_rng(m + k)
    x = (rng.standard_normal((m, k)) * 3).astype(np.float32)
    codes = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    table = rng.standard_normal(256).astype(np.float32)
    table_u8 = rng.integers(0, 256, size=256, dtype=np.uint8)
    bias = rng.standard_normal(k).astype(np.float32)

    def run(src, out_dtype, tab, *extra):
        def go():
            out = np.full((m, k), 7, out_dtype)
            core.quantize_lookup(src, 0.05, 128, tab, out, *extra)
            return out
        return go

    _same_at_1_and_2_threads(threads, run(x, np.float32, None))
    _same_at_1_and_2_threads(threads, run(x, np.float32, table))
    _same_at_1_and_2_threads(threads, run(codes, np.float32, None))
    _same_at_1_and_2_threads(threads, run(x, np.float32, None, bias, 0.07, 120))
    _same_at_1_and_2_threads(threads, run(x, np.float32, None, bias, 0.07, 120, table))
    _same_at_1_and_2_threads(threads, run(codes, np.uint8, table_u8))
    _same_at_1_and_2_threads(threads, run(x, np.uint8, None, bias, 0.07, 120, table_u8))


def test_quantize_lookup_error_in_a_late_chunk(threads):
    """NaN in the last chunk: ValueError at 1 and 2 threads alike."""
    x = np.ones((2000, 384), np.float32)
    x[-1, -1] = np.nan
    for nt in (1, 2):
        threads(nt)
        with pytest.raises(ValueError, match="NaN"):
            core.quantize_lookup(x, 0.05, 128, None, np.empty_like(x))


@pytest.mark.parametrize("m,k", [(700, 384), (40, 1536)])
def test_quant_layernorm_same_at_1_and_2_threads(threads, m, k):
    rng = np.random.default_rng(m * k)
    a = (rng.standard_normal((m, k)) * 2).astype(np.float32)
    b = rng.standard_normal((m, k)).astype(np.float32)
    g = rng.standard_normal(k).astype(np.float32)
    beta = rng.standard_normal(k).astype(np.float32)
    for bb, be in ((b, beta), (None, None)):
        def go():
            out = np.empty((m, k), np.float32)
            core.quant_layernorm(a, bb, 0.04, 130, g, be, 1e-12, 0.03, 120, out)
            return out
        _same_at_1_and_2_threads(threads, go)
    bad = a.copy()
    bad[-1, 0] = np.inf
    for nt in (1, 2):
        threads(nt)
        with pytest.raises(ValueError):
            core.quant_layernorm(bad, None, 0.04, 130, g, None, 1e-12, 0.03, 120,
                                 np.empty_like(a))


def test_quant_softmax_same_at_1_and_2_threads(threads):
    rng = np.random.default_rng(11)
    b, h, t = 32, 12, 19  # MiniLM batch 32: rows b * h * t
    x = (rng.standard_normal((b * h * t, t)) * 4).astype(np.float32)
    mask = np.where(rng.random((b, t)) < 0.2, np.float32(-np.inf), np.float32(0.0))
    mask = np.repeat(mask, t, axis=0).astype(np.float32)  # [b * t, t]: per query row

    def shift():
        out = np.empty_like(x)
        core.quant_softmax_shift(x, 0.1, 128, mask, h * t, t, out)
        return out
    d = _same_at_1_and_2_threads(threads, shift)
    with np.errstate(all="ignore"):
        e = np.exp(d)
    for nan_to in (None, 0.0):
        def finish():
            out = np.empty_like(e)
            core.quant_softmax_finish(e, nan_to, 1 / 255, 0, out)
            return out
        _same_at_1_and_2_threads(threads, finish)


def test_int8_requantize_same_at_1_and_2_threads(threads):
    """Int8LinearRequantize's one call at a size with several chunks: the same
    bits at 1 and 2 threads, equal to quantize_lookup on the GEMM's codes, for a
    float, a float-table and a u8-code output."""
    from sparsekit.formats import ACTIVATIONS
    from sparsekit.quant_ops import _ZP

    rng = np.random.default_rng(23)
    n, k, m = 384, 384, 600
    w = sparsekit.QuantizedMatrix.from_float(
        rng.standard_normal((n, k)).astype(np.float32)).with_static_input(0.02, 128)
    x = (rng.standard_normal((m, k)) * 2).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    xq = np.empty((m, k), np.uint8)
    core.quantize_u8_static(x, 0.02, 128, xq)
    codes = np.empty((m, n), np.uint8)
    core.qgemm_dequant(w._arrays(), n, k, xq, _ZP[128], np.full(1, 0.02, np.float32), None,
                       ACTIVATIONS[None], 0.07, 100, codes)
    table = rng.standard_normal(256).astype(np.float32)
    table_u8 = rng.integers(0, 256, size=256, dtype=np.uint8)
    for tab, dtype in ((None, np.float32), (table, np.float32), (table_u8, np.uint8)):
        want = np.empty((m, n), dtype)
        core.quantize_lookup(codes, np.float32(0.07), 100, None, want, bias, np.float32(0.05),
                             140, tab)

        def go():
            out = np.empty((m, n), dtype)
            core.int8_requantize(w._arrays(), n, k, x, 0.02, 128, 0.07, 100, bias, 0.05, 140,
                                 tab, out)
            return out
        got = _same_at_1_and_2_threads(threads, go)
        assert np.array_equal(got.view(np.uint8), want.view(np.uint8))
