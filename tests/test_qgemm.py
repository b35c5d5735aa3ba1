"""Int8 GEMM family (qgemm_u8s8): exact int32 results on every ISA against an
int64 NumPy reference (extremes, tails, per-row and scalar zero points, the
M == 1 path, threads), the fp32 / requantizing epilogues bit for bit their
float32 statement and within stated tolerances of a float64 reference, linear()
bit for bit quantize + GEMM, QuantizedMatrix construction/validation/pickle/memory."""
import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import sparsekit
from sparsekit import QuantizedMatrix, _core, int8_matmul, quantized_linear
from sparsekit.quant_ops import quantize_rows_reference

EPS32 = float(np.finfo(np.float32).eps)


def ref_int(xq, zp, q):
    zp = np.asarray(zp, dtype=np.int64)
    zp = zp[:, None] if zp.ndim else zp
    return (xq.astype(np.int64) - zp) @ q.astype(np.int64).T


def random_q(rng, n, k):
    return rng.integers(-127, 128, (n, k)).astype(np.int8)


def qmat(rng, n, k, per_channel=True):
    q = random_q(rng, n, k)
    scale = (rng.random(n) + 0.5).astype(np.float32) * 0.01 if per_channel else 0.02
    return QuantizedMatrix.from_int8(q, scale), q


# ---- exactness ----------------------------------------------------------------
SHAPES = [(1, 1, 1), (1, 17, 3), (1, 64, 64), (1, 65, 130), (1, 200, 1027), (2, 16, 4),
          (3, 15, 5), (7, 48, 9), (8, 49, 63), (9, 97, 64), (13, 100, 77), (17, 33, 1),
          (33, 130, 258), (64, 64, 256)]


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_int8_matmul_exact_random(isa, rng, m, n, k):
    qw, q = qmat(rng, n, k)
    xq = rng.integers(0, 256, (m, k)).astype(np.uint8)
    zp_rows = rng.integers(0, 256, m)
    case = f"isa={isa} m={m} n={n} k={k} out=s32"
    assert np.array_equal(int8_matmul(xq, zp_rows, qw), ref_int(xq, zp_rows, q)), \
        f"{case} zp=per row"
    for zp in (0, 128, 255):
        got = int8_matmul(xq, zp, qw)
        assert got.dtype == np.int32 and got.shape == (m, n)
        assert np.array_equal(got, ref_int(xq, zp, q)), f"{case} zp={zp}"


@pytest.mark.parametrize("k", [4096 + 3, 4096, 1021])
def test_int8_matmul_exact_extremes(isa, k):
    """Largest magnitudes the kernels can see: 255 * 127 * K of either sign;
    the zero rows (1, 4) against +-127 give the AVX2 kernel's largest
    vpmaddubsw pair sums, |0 - 128| * 127 * 2."""
    n, m = 37, 6
    q = np.where(np.arange(n)[:, None] % 2 == 0, 127, -127) * np.ones((1, k), np.int64)
    q[5] = 0
    q[6, ::3] = -127
    q = q.astype(np.int8)
    qw = QuantizedMatrix.from_int8(q, 1.0)
    xq = np.zeros((m, k), np.uint8)
    xq[0] = 255
    xq[2] = np.arange(k) % 256
    xq[3, ::2] = 255
    xq[5] = 255
    for zp in (0, 128, 255, np.array([0, 255, 128, 3, 255, 0])):
        assert np.array_equal(int8_matmul(xq, zp, qw), ref_int(xq, zp, q)), \
            f"isa={isa} m={m} n={n} k={k} out=s32 zp={zp}"


def test_int8_matmul_threads_and_layouts(isa, rng):
    qw, q = qmat(rng, 150, 301)
    xq = rng.integers(0, 256, (70, 301)).astype(np.uint8)
    zp = rng.integers(0, 256, 70)
    before = sparsekit.get_num_threads()
    try:
        sparsekit.set_num_threads(2)
        assert np.array_equal(int8_matmul(xq, zp, qw), ref_int(xq, zp, q))
        big = rng.integers(0, 256, (1, 301)).astype(np.uint8)
        assert np.array_equal(int8_matmul(big, 7, qw), ref_int(big, 7, q))
    finally:
        sparsekit.set_num_threads(before)
    wide = rng.integers(0, 256, (5, 400)).astype(np.uint8)
    sliced = wide[:, 50:351]  # strided rows
    assert np.array_equal(int8_matmul(sliced, 9, qw), ref_int(sliced, 9, q))
    batched = xq[:12].reshape(3, 4, 301)
    zb = zp[:12].reshape(3, 4)
    assert np.array_equal(int8_matmul(batched, zb, qw),
                          ref_int(xq[:12], zp[:12], q).reshape(3, 4, 150))
    assert int8_matmul(np.zeros((0, 301), np.uint8), 0, qw).shape == (0, 150)
    qe = QuantizedMatrix.from_int8(np.zeros((0, 301), np.int8), 1.0)
    assert int8_matmul(xq, 0, qe).shape == (70, 0)
    qk0 = QuantizedMatrix.from_int8(np.zeros((5, 0), np.int8), 1.0)
    assert np.array_equal(int8_matmul(np.zeros((3, 0), np.uint8), 4, qk0),
                          np.zeros((3, 5), np.int32))


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 20), n=st.integers(1, 70), k=st.integers(1, 150),
       seed=st.integers(0, 2**31 - 1))
def test_int8_matmul_property(m, n, k, seed):
    rng = np.random.default_rng(seed)
    qw, q = qmat(rng, n, k)
    xq = rng.integers(0, 256, (m, k)).astype(np.uint8)
    zp = rng.integers(0, 256, m)
    assert np.array_equal(int8_matmul(xq, zp, qw), ref_int(xq, zp, q))


# ---- epilogues ----------------------------------------------------------------
def _float_tol(c, xs, ws, bias):
    """float32 epilogue bound: float(c) and two products and a sum each round
    once (relative EPS32/2); 4 EPS32 of the magnitudes covers them all."""
    mag = np.abs(c) * xs[:, None] * ws[None, :]
    if bias is not None:
        mag = mag + np.abs(bias)[None, :]
    return 4 * EPS32 * mag + 1e-30


@pytest.mark.parametrize("m,n,k", [(1, 70, 33), (2, 17, 5), (9, 49, 130), (20, 96, 64),
                                   (8, 48, 4), (33, 100, 260)])
@pytest.mark.parametrize("per_channel", [True, False])
def test_quantized_linear_f32_bit_exact(isa, rng, m, n, k, per_channel):
    """The fp32 epilogue is the documented float32 statement bit for bit, with
    and without bias and each activation: float(c) * (x_scale * w_scale), then
    + bias, then relu (each op rounded on its own: no fused multiply-add) or
    the GELU kernel (_core.gelu_f32); the u8 epilogue is that fp32 output
    requantized (true division, round half to even), byte for byte."""
    qw, q = qmat(rng, n, k, per_channel)
    xq = rng.integers(0, 256, (m, k)).astype(np.uint8)
    zp = rng.integers(0, 256, m)
    xs = (rng.random(m) + 0.1).astype(np.float32) * 0.05
    bias = (rng.standard_normal(n) * 100).astype(np.float32)
    c = ref_int(xq, zp, q).astype(np.float32)
    ws = np.broadcast_to(np.asarray(qw.scale, np.float32), (n,))
    out_scale, out_zp = np.float32(0.37), 100
    for b in (None, bias):
        for act in (None, "relu", "gelu"):
            case = f"isa={isa} m={m} n={n} k={k} per_channel={per_channel} " \
                   f"bias={b is not None} act={act}"
            want = c * (xs[:, None] * ws[None, :])
            if b is not None:
                want = want + b
            if act == "relu":
                want = np.where(want > 0, want, np.float32(0))
            if act == "gelu":
                want = np.ascontiguousarray(want)
                _core.gelu_f32(want)
            got = quantized_linear(xq, xs, zp, qw, b, act)
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), \
                f"{case} out=f32: != the float32 statement"
            u8 = quantized_linear(xq, xs, zp, qw, b, act, out_scale=out_scale,
                                  out_zero_point=out_zp)
            want_u8 = np.clip(np.rint(want / out_scale) + np.float32(out_zp), 0, 255)
            assert np.array_equal(u8, want_u8.astype(np.uint8)), \
                f"{case} out=u8 scale={out_scale} zp={out_zp}: != the requantized f32 output"


@pytest.mark.parametrize("m,n,k", [(1, 70, 33), (9, 49, 130), (20, 96, 64)])
def test_quantized_linear_f32_and_u8(isa, rng, m, n, k):
    qw, q = qmat(rng, n, k)
    xq = rng.integers(0, 256, (m, k)).astype(np.uint8)
    zp = rng.integers(0, 256, m)
    xs = (rng.random(m) + 0.1).astype(np.float32) * 0.05
    bias = rng.standard_normal(n).astype(np.float32)
    c = ref_int(xq, zp, q).astype(np.float64)
    ws = qw.scale.astype(np.float64)
    for b in (None, bias):
        for act in (None, "relu"):
            case = f"isa={isa} m={m} n={n} k={k} bias={b is not None} act={act}"
            ref = c * xs[:, None].astype(np.float64) * ws[None, :]
            if b is not None:
                ref = ref + b
            if act:
                ref = np.maximum(ref, 0)
            got = quantized_linear(xq, xs, zp, qw, b, act)
            assert got.dtype == np.float32
            assert np.all(np.abs(got - ref) <= _float_tol(c, xs, ws, b)), f"{case} out=f32"
            u8 = quantized_linear(xq, xs, zp, qw, b, act, out_scale=0.05, out_zero_point=100)
            exact = np.clip(np.rint(ref / np.float32(0.05)) + 100, 0, 255)
            assert u8.dtype == np.uint8
            # against the float64 reference: at most one step off, and only
            # where ref/out_scale is within float32 rounding of a .5 tie
            # (test_quantized_linear_f32_bit_exact checks the exact bytes)
            diff = np.abs(u8.astype(np.int64) - exact)
            assert diff.max() <= 1, f"{case} out=u8"
            frac = np.abs(np.abs(ref / 0.05) % 1 - 0.5)
            assert np.all((diff == 0) | (frac < 1e-4)), f"{case} out=u8"
    # scalar x_scale / zero point
    got = quantized_linear(xq, 0.02, 7, qw)
    ref = ref_int(xq, 7, q) * 0.02 * ws[None, :]
    assert np.all(np.abs(got - ref) <= 4 * EPS32 * np.abs(ref) + 1e-30)


def test_linear_matches_dequantized_reference(isa, rng):
    m, n, k = 19, 83, 150
    w = rng.standard_normal((n, k)).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32) * 2
    bias = rng.standard_normal(n).astype(np.float32)
    for per_channel in (True, False):
        qw = QuantizedMatrix.from_float(w, per_channel=per_channel)
        for act in (None, "relu"):
            got = sparsekit.linear(x, qw, bias, activation=act)
            xq, xs, zp = quantize_rows_reference(x)
            c = ref_int(xq, zp, qw.q).astype(np.float64)
            ws = np.broadcast_to(qw.scale, (n,)).astype(np.float64)
            ref = c * xs[:, None] * ws[None, :] + bias
            if act:
                ref = np.maximum(ref, 0)
            # stated tolerance: float32 rounding of the epilogue only
            case = f"isa={isa} per_channel={per_channel} bias=True act={act}"
            assert np.all(np.abs(got - ref) <= _float_tol(c, xs, ws, bias)), case
            # and the quantization error against the float layer is bounded by
            # sum_k |x| s_w/2 + |w| s_x/2 + s_x s_w/4 (+ rounding)
            true = x.astype(np.float64) @ w.astype(np.float64).T + bias
            if act:
                true = np.maximum(true, 0)
            bound = (np.abs(x) @ np.ones((k, n)) * ws / 2 + xs[:, None] / 2 * np.abs(w).sum(1)
                     + k * xs[:, None] * ws / 4) * (1 + 1e-5) + 1e-5
            assert np.all(np.abs(got - true) <= bound), f"{case}: quantization error bound"


@pytest.mark.parametrize("m", [1, 2, 7, 8, 9, 17, 33])
@pytest.mark.parametrize("k", [1, 3, 5, 64, 67, 130])
def test_linear_bit_identical_to_quantize_then_gemm(isa, rng, m, k):
    """linear() quantizes x inside the GEMM (row tiles, in one sweep per tile):
    the same bits as quantize_rows + the dequantizing GEMM, with tails in M and
    K, M = 1, constant, zero, one-sign and extreme rows, 1 and 2 threads."""
    n = 50
    w = rng.standard_normal((n, k)).astype(np.float32)
    qw = QuantizedMatrix.from_float(w)
    bias = rng.standard_normal(n).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32) * 3
    x[::5] = 1.5                                  # constant rows
    x[1::7] = 0.0
    x[2::6] = np.abs(x[2::6])
    x[3::8] = -np.abs(x[3::8]) * 1e5
    x[4::9] = np.where(rng.random(k) < 0.5, 1e30, -1e30)
    xq, xs, zp = sparsekit.quantize_rows(x)
    before = sparsekit.get_num_threads()
    try:
        for threads in (1, 2):
            sparsekit.set_num_threads(threads)
            for act in (None, "relu", "gelu"):
                got = sparsekit.linear(x, qw, bias, activation=act)
                want = quantized_linear(xq, xs, zp, qw, bias, activation=act)
                assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), \
                    f"isa={isa} m={m} n={n} k={k} threads={threads} bias=True act={act}"
    finally:
        sparsekit.set_num_threads(before)
    x[m // 2, k // 2] = np.nan
    with pytest.raises(ValueError, match="x: contains NaN"):
        sparsekit.linear(x, qw)


def test_linear_static_input_and_shapes(isa, rng):
    w = rng.standard_normal((40, 64)).astype(np.float32)
    x = rng.standard_normal((2, 3, 64)).astype(np.float32)
    qw = QuantizedMatrix.from_float(w)
    st_qw = qw.with_static_input(0.03, 128)
    assert st_qw.input_scale == pytest.approx(0.03) and st_qw.input_zero_point == 128
    got = sparsekit.linear(x, st_qw)
    xq = np.clip(np.rint(x / np.float32(0.03)) + 128, 0, 255).astype(np.uint8)
    ref = ref_int(xq.reshape(6, 64), 128, qw.q) * np.float64(np.float32(0.03)) * qw.scale
    assert got.shape == (2, 3, 40)
    assert np.all(np.abs(got.reshape(6, 40) - ref) <= 4 * EPS32 * np.abs(ref) + 1e-30)
    assert qw.input_scale is None  # the original stays dynamic
    back = st_qw.with_static_input(None, None)
    assert np.array_equal(sparsekit.linear(x, back), sparsekit.linear(x, qw))
    one = sparsekit.linear(x[0, 0], qw)
    assert one.shape == (40,) and np.array_equal(one, sparsekit.linear(x[0, :1], qw)[0])


def test_family_isa_reported(isa):
    chosen = sparsekit.info()["kernels"]["qgemm_u8s8"]
    assert chosen == isa  # every x86 level has its own kernel (avx512 = vpmaddwd)


# ---- QuantizedMatrix ------------------------------------------------------------
def test_from_float_rounding_and_scales(rng):
    w = rng.standard_normal((33, 70)).astype(np.float32)
    w[3] = 0.0
    qw = QuantizedMatrix.from_float(w)
    amax = np.abs(w).max(1)
    assert qw.per_channel and qw.scale.shape == (33,) and qw.scale.dtype == np.float32
    assert qw.scale[3] == 1.0 and np.all(qw.q[3] == 0)
    expect = np.where(amax > 0, amax / np.float32(127), 1).astype(np.float32)
    assert np.array_equal(qw.scale, expect)
    assert np.array_equal(qw.q, np.clip(np.rint(w / expect[:, None]), -127, 127))
    assert np.abs(qw.q).max() == 127
    err = np.abs(qw.dequantize() - w)
    assert np.all(err <= qw.scale[:, None] / 2 * (1 + 1e-6))
    pt = QuantizedMatrix.from_float(w, per_channel=False)
    assert not pt.per_channel and pt.scale.shape == ()
    assert pt.scale == np.float32(np.abs(w).max() / np.float32(127))
    assert np.array_equal(pt.weight_sums, pt.q.astype(np.int64).sum(1))


def test_from_int8_round_trip_and_pickle(rng):
    q = random_q(rng, 50, 37)
    q[0] = 127
    q[1] = -127
    s = (rng.random(50) + 0.1).astype(np.float32)
    qw = QuantizedMatrix.from_int8(q, s)
    assert np.array_equal(qw.q, q) and qw.q.dtype == np.int8
    assert np.array_equal(qw.scale, s)
    assert np.array_equal(qw.weight_sums, q.astype(np.int64).sum(1))
    assert np.array_equal(qw.dequantize(), q.astype(np.float32) * s[:, None])
    for obj in (qw, qw.with_static_input(0.5, 3), QuantizedMatrix.from_int8(q, 0.25)):
        back = pickle.loads(pickle.dumps(obj))
        assert back.shape == obj.shape and np.array_equal(back.q, obj.q)
        assert np.array_equal(back.scale, obj.scale) and back.per_channel == obj.per_channel
        assert back.input_scale == obj.input_scale
        assert back.input_zero_point == obj.input_zero_point
    assert "QuantizedMatrix(shape=(50, 37)" in repr(qw)
    with pytest.raises(ValueError):
        qw._packed[0] = 1  # read-only


@pytest.mark.parametrize("n,k", [(1536, 384), (3072, 768), (768, 3072)])
def test_bytes_per_weight(n, k):
    qw = QuantizedMatrix.from_int8(np.ones((n, k), np.int8), np.ones(n, np.float32))
    assert qw.nbytes / (n * k) <= 1.02


def test_bad_weights():
    with pytest.raises(ValueError, match=r"q: values must be in \[-127, 127\]"):
        QuantizedMatrix.from_int8(np.full((2, 3), -128, np.int8), 1.0)
    with pytest.raises(ValueError, match="q: values"):
        QuantizedMatrix.from_int8(np.full((2, 3), 128, np.int16), 1.0)
    with pytest.raises(TypeError, match="q: expected an integer"):
        QuantizedMatrix.from_int8(np.ones((2, 3), np.float32), 1.0)
    with pytest.raises(ValueError, match="q: expected a 2-D"):
        QuantizedMatrix.from_int8(np.ones(3, np.int8), 1.0)
    with pytest.raises(ValueError, match="scale: expected a scalar"):
        QuantizedMatrix.from_int8(np.ones((2, 3), np.int8), np.ones(3))
    for bad in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="scale: every scale"):
            QuantizedMatrix.from_int8(np.ones((2, 3), np.int8), [1.0, bad])
    with pytest.raises(TypeError, match="scale"):
        QuantizedMatrix.from_int8(np.ones((2, 3), np.int8), "a")
    with pytest.raises(ValueError, match="w: contains NaN"):
        QuantizedMatrix.from_float(np.array([[1.0, np.nan]]))
    with pytest.raises(TypeError, match="w"):
        QuantizedMatrix.from_float(np.ones((2, 2), np.int8))
    with pytest.raises(TypeError, match="per_channel"):
        QuantizedMatrix.from_float(np.ones((2, 2)), per_channel="yes")
    with pytest.raises(ValueError, match="K = 65537"):
        QuantizedMatrix.from_int8(np.zeros((1, 65537), np.int8), 1.0)
    with pytest.raises(TypeError, match="from_float"):
        QuantizedMatrix(np.ones((2, 2)))
    qw = QuantizedMatrix.from_int8(np.ones((2, 3), np.int8), 1.0)
    with pytest.raises(ValueError, match="scale/zero_point"):
        qw.with_static_input(0.1, None)
    with pytest.raises(ValueError, match="input_zero_point"):
        qw.with_static_input(0.1, 300)


def test_bad_activations():
    qw = QuantizedMatrix.from_int8(np.ones((4, 3), np.int8), 1.0)
    xq = np.ones((2, 3), np.uint8)
    with pytest.raises(TypeError, match="xq: expected a uint8"):
        int8_matmul(xq.astype(np.int8), 0, qw)
    with pytest.raises(TypeError, match="xq"):
        int8_matmul(xq.astype(np.float32), 0, qw)
    with pytest.raises(ValueError, match=r"xq: expected shape \[\.\.\., 3\]"):
        int8_matmul(np.ones((2, 4), np.uint8), 0, qw)
    with pytest.raises(ValueError, match="x_zero_point: zero points must be in"):
        int8_matmul(xq, 256, qw)
    with pytest.raises(ValueError, match="x_zero_point: zero points must be in"):
        int8_matmul(xq, [0, -1], qw)
    with pytest.raises(ValueError, match="x_zero_point: expected a scalar or shape"):
        int8_matmul(xq, [1, 2, 3], qw)
    with pytest.raises(TypeError, match="x_zero_point"):
        int8_matmul(xq, 1.5, qw)
    with pytest.raises(TypeError, match="qw: expected a QuantizedMatrix"):
        int8_matmul(xq, 0, np.ones((4, 3), np.int8))
    with pytest.raises(ValueError, match="x_scale"):
        quantized_linear(xq, [0.1, 0.0], 0, qw)
    with pytest.raises(ValueError, match="bias"):
        quantized_linear(xq, 0.1, 0, qw, bias=np.ones(5))
    with pytest.raises(ValueError, match="out_scale/out_zero_point"):
        quantized_linear(xq, 0.1, 0, qw, out_scale=0.1)
    with pytest.raises(ValueError, match="out_zero_point"):
        quantized_linear(xq, 0.1, 0, qw, out_scale=0.1, out_zero_point=-1)
    with pytest.raises(ValueError, match="activation"):
        quantized_linear(xq, 0.1, 0, qw, activation="tanh")
    x = np.ones((2, 3), np.float32)
    x[1, 1] = np.nan
    with pytest.raises(ValueError, match="x: contains NaN"):
        sparsekit.linear(x, qw)
    with pytest.raises(ValueError, match="x: contains NaN"):
        sparsekit.linear(x, qw.with_static_input(0.1, 0))
    with pytest.raises(ValueError, match="x: expected last dimension"):
        sparsekit.linear(np.ones((2, 4), np.float32), qw)
    with pytest.raises(ValueError, match="backend"):
        sparsekit.linear(np.ones((2, 3), np.float32), qw, backend="numba")


def test_peak_microbenchmark_runs():
    from sparsekit import _core

    if not _core.cpu_supports("avx512vnni"):
        with pytest.raises(RuntimeError, match="avx512vnni"):
            _core.vnni_peak_loop(10)
        return
    # 24 lanes-of-16 accumulators start at 0..23 and each gains 4 * (1 - 1) = 0
    # per round for a = 0x01010101, b = 0x01ff01ff (1*1 + 1*-1 + 1*1 + 1*-1)
    assert _core.vnni_peak_loop(1000) == 16 * sum(range(24))
