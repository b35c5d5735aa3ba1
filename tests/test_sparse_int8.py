"""SparseInt8Matrix and its kernels: exact int32 against an int64 NumPy
reference on every ISA (block fill 1..4, empty rows, all-zero weights, tails in
M, N, K with K % 4 != 0, extremes), the fused fp32 linear against the
dequantized reference, the format's properties, and bad inputs."""
import pickle

import numpy as np
import pytest

import sparsekit
from sparsekit import SparseInt8Matrix, quantized_linear
from sparsekit.quant_ops import quantize_rows_reference

@pytest.fixture(autouse=True)
def g4_on_every_cpu(monkeypatch):
    """Weights keep their g4 copy on any CPU here, so the portable g4 kernels
    (forced ISAs, and CPUs without AVX-512 VNNI, where the library leaves the
    copy out) are checked too, and their 1x4 blocks next to it (the g4-only
    weights have tests of their own, see g4_only); test_g4_only_where_vnni_runs_it
    checks the library's own rule."""
    import sparsekit._sparse_int8 as si

    monkeypatch.setattr(si, "_g4_cpu", lambda: True)
    monkeypatch.setattr(si, "_g4_only", lambda w: False)


def test_g4_only_where_vnni_runs_it(monkeypatch, rng):
    """Without AVX-512 VNNI no kernel reads the g4 copy: it is not built,
    the bytes are those of the 1x4 blocks alone, results do not change."""
    import sparsekit._sparse_int8 as si
    from sparsekit._native import core

    monkeypatch.undo()
    assert si._g4_cpu() == core.cpu_supports("avx512vnni")
    q = unstructured_q(rng, 40, 300, 0.1)
    xq = random_xq(rng, 50, 300)
    with_g4 = SparseInt8Matrix.from_int8(q, 0.5) if si._g4_cpu() else None
    monkeypatch.setattr(si, "_g4_cpu", lambda: False)
    w = SparseInt8Matrix.from_int8(q, 0.5)
    assert w._g4 is None and "blocks=1x4," in repr(w)
    assert w.nbytes == sum(a.nbytes for a in (w.indptr, w.cols, w.values, w.row_sums, w._wscale))
    back = pickle.loads(pickle.dumps(w))
    assert back._g4 is None
    np.testing.assert_array_equal(w.int8_matmul(xq, 9), ref_int8(xq, 9, q))
    if with_g4 is not None:
        # both copies, or (AVX-512 VBMI too, block fill < G4_ONLY_FILL) g4 alone
        assert with_g4._g4 is not None
        assert (with_g4.nbytes < w.nbytes) == (with_g4._bsr is None) == core.g4_vbmi_cpu()
        np.testing.assert_array_equal(with_g4.int8_matmul(xq, 9), w.int8_matmul(xq, 9))


SHAPES = [(1, 1, 1), (1, 5, 7), (2, 17, 31), (7, 40, 100), (64, 16, 4), (65, 33, 129),
          (130, 70, 257), (3, 9, 4099)]


def random_q(rng, n, k, block_density, fill=None, empty_rows=(1,)):
    """int8 [n, k] pruned in 1x4 blocks along K: a share `block_density` of the
    blocks is kept, each with `fill` nonzeros (random 1..4 when None); values
    include the extremes -127 and 127."""
    kq = (k + 3) // 4
    q = np.zeros((n, kq * 4), dtype=np.int8)
    keep = rng.random((n, kq)) < block_density
    for r, c in zip(*np.nonzero(keep)):
        f = fill if fill is not None else int(rng.integers(1, 5))
        lanes = rng.choice(4, size=f, replace=False)
        vals = rng.integers(1, 128, size=f) * rng.choice([-1, 1], size=f)
        vals[rng.random(f) < 0.2] = 127
        vals[rng.random(f) < 0.2] = -127
        q[r, 4 * c + lanes] = vals
    for r in empty_rows:
        if r < n:
            q[r] = 0
    return q[:, :k].copy()


def random_xq(rng, m, k):
    xq = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    xq[rng.random((m, k)) < 0.1] = 255
    xq[rng.random((m, k)) < 0.1] = 0
    return xq


def ref_int8(xq, zp, q):
    zp = np.asarray(zp, np.int64)
    zp = zp.reshape(-1, 1) if zp.ndim else zp
    return (xq.astype(np.int64) - zp) @ q.astype(np.int64).T


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_int8_matmul_exact_every_isa(isa, rng, m, n, k):
    q = random_q(rng, n, k, 0.4)
    w = SparseInt8Matrix.from_int8(q, np.float32(0.01))
    xq = random_xq(rng, m, k)
    for zp in (0, 128, 255, rng.integers(0, 256, size=m)):
        got = w.int8_matmul(xq, zp)
        assert got.dtype == np.int32 and got.shape == (m, n)
        np.testing.assert_array_equal(got, ref_int8(xq, zp, q))


@pytest.mark.parametrize("fill", [1, 2, 3, 4])
def test_block_fill_exact(isa, rng, fill):
    m, n, k = 67, 45, 96  # K a multiple of 4: every kept block has `fill` nonzeros
    q = random_q(rng, n, k, 0.3, fill=fill)
    w = SparseInt8Matrix.from_int8(q, np.full(n, 0.5, np.float32))
    assert w.block_fill == pytest.approx(fill / 4)
    assert w.nnz == np.count_nonzero(q)
    xq = random_xq(rng, m, k)
    zp = rng.integers(0, 256, size=m)
    np.testing.assert_array_equal(w.int8_matmul(xq, zp), ref_int8(xq, zp, q))
    np.testing.assert_array_equal(w.int8_matmul(xq[:1], zp[:1]), ref_int8(xq[:1], zp[:1], q))


def test_all_zero_weights_and_empty_rows(isa, rng):
    w = SparseInt8Matrix.from_int8(np.zeros((19, 13), np.int8), 1.0)
    assert w.nblocks == 0 and w.nnz == 0 and w.block_fill == 1.0
    xq = random_xq(rng, 70, 13)
    np.testing.assert_array_equal(w.int8_matmul(xq, 200), np.zeros((70, 19), np.int32))
    y = sparsekit.linear(rng.standard_normal((5, 13)).astype(np.float32), w,
                         bias=np.arange(19, dtype=np.float32))
    np.testing.assert_array_equal(y, np.tile(np.arange(19, dtype=np.float32), (5, 1)))


def test_dense_weight_k_tail_extremes(isa):
    # every weight and activation at an extreme: the largest sums the kernel sees
    n, k = 8, 4099
    q = np.full((n, k), 127, np.int8)
    q[1::2] = -127
    w = SparseInt8Matrix.from_int8(q, 1.0)
    assert w.block_fill == pytest.approx(k / (4 * ((k + 3) // 4)))
    for x, zp in ((255, 0), (0, 255), (255, 255), (0, 0)):
        xq = np.full((3, k), x, np.uint8)
        np.testing.assert_array_equal(w.int8_matmul(xq, zp), ref_int8(xq, zp, q))


def test_two_threads_exact(isa, rng):
    q = random_q(rng, 700, 1001, 0.3)
    w = SparseInt8Matrix.from_int8(q, 0.1)
    xq = random_xq(rng, 150, 1001)
    before = sparsekit.get_num_threads()
    sparsekit.set_num_threads(2)
    try:
        np.testing.assert_array_equal(w.int8_matmul(xq, 77), ref_int8(xq, 77, q))
        np.testing.assert_array_equal(w.int8_matmul(xq[:1], 77), ref_int8(xq[:1], 77, q))
    finally:
        sparsekit.set_num_threads(before)


def dequantized_reference(x, w, bias, relu):
    """fp64 statement of what linear() computes from the exact int32 sums."""
    xq, xs, zp = quantize_rows_reference(x)
    acc = ref_int8(xq, zp, w.q).astype(np.float64)
    ws = np.broadcast_to(np.asarray(w.scale, np.float64), (w.shape[0],))
    y = acc * xs.astype(np.float64)[:, None] * ws[None, :]
    if bias is not None:
        y = y + bias
    return np.maximum(y, 0) if relu else y


@pytest.mark.parametrize("m,n,k", SHAPES[:-1] + [(1, 300, 771)])
def test_linear_matches_dequantized_reference(isa, rng, m, n, k):
    wf = rng.standard_normal((n, k)).astype(np.float32)
    wf[rng.random((n, k)) < 0.8] = 0.0
    wf[min(1, n - 1)] = 0.0
    w = SparseInt8Matrix.from_float(wf)
    x = rng.standard_normal((m, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    for b, act in ((None, None), (bias, "relu")):
        y = sparsekit.linear(x, w, bias=b, activation=act)
        ref = dequantized_reference(x, w, b, act == "relu")
        assert y.dtype == np.float32 and y.shape == (m, n)
        # exact int32 sums; float32 conversion and scaling cost a few ulp
        np.testing.assert_allclose(y, ref, rtol=2e-6, atol=1e-6 * (np.abs(ref).max() + 1))
    # and the whole thing is a faithful int8 approximation of the float layer
    yf = x.astype(np.float64) @ wf.T.astype(np.float64)
    scale = np.abs(x).sum(1, keepdims=True) * np.abs(wf).max() / 127 + 1e-6
    assert np.all(np.abs(sparsekit.linear(x, w) - yf) <= 2 * scale)


def test_linear_batched_and_1d(rng):
    wf = rng.standard_normal((12, 10)).astype(np.float32)
    w = SparseInt8Matrix.from_float(wf)
    x = rng.standard_normal((2, 3, 10)).astype(np.float32)
    y = sparsekit.linear(x, w)
    assert y.shape == (2, 3, 12)
    np.testing.assert_allclose(sparsekit.linear(x[1, 2], w), y[1, 2], rtol=1e-6, atol=1e-6)


def test_from_float_quantization(rng):
    wf = rng.standard_normal((30, 21)).astype(np.float32)
    wf[rng.random(wf.shape) < 0.7] = 0
    wf[3] = 0
    w = SparseInt8Matrix.from_float(wf)
    scale = np.abs(wf).max(axis=1) / 127
    scale[scale == 0] = 1
    np.testing.assert_allclose(w.scale, scale.astype(np.float32))
    assert w.per_channel and w.scale.shape == (30,)
    assert np.all(w.q[wf == 0] == 0)  # pruned stays pruned (tiny weights may round to 0)
    assert np.abs(w.q).max() == 127
    assert np.all(np.abs(w.dequantize() - wf) <= w.scale[:, None] / 2 + 1e-7)
    t = SparseInt8Matrix.from_float(wf, per_channel=False)
    assert t.scale.shape == () and not t.per_channel
    assert t.scale == pytest.approx(np.abs(wf).max() / 127)


def test_same_quantization_and_int8_matmul_as_quantized_matrix(rng):
    wf = rng.standard_normal((33, 50)).astype(np.float32)
    wf[rng.random(wf.shape) < 0.6] = 0
    wf[2] = 0
    wf[5, 7] = 1e-42  # a subnormal row maximum: scale floored at FLT_MIN
    for per_channel in (True, False):
        s = SparseInt8Matrix.from_float(wf, per_channel=per_channel)
        d = sparsekit.QuantizedMatrix.from_float(wf, per_channel=per_channel)
        np.testing.assert_array_equal(s.q, d.q)
        np.testing.assert_array_equal(s.scale, d.scale)
        xq = random_xq(rng, 9, 50)
        zp = rng.integers(0, 256, size=9)
        np.testing.assert_array_equal(sparsekit.int8_matmul(xq, zp, s),
                                      sparsekit.int8_matmul(xq, zp, d))


def test_from_int8_roundtrip_and_repr(rng):
    q = random_q(rng, 9, 14, 0.5)
    w = SparseInt8Matrix.from_int8(q, np.linspace(0.1, 1, 9))
    np.testing.assert_array_equal(w.q, q)
    assert w.q.dtype == np.int8 and w.shape == (9, 14)
    assert "block_fill" in repr(w) and "bytes/weight" in repr(w)
    assert not w.values.flags.writeable and not w.cols.flags.writeable
    w2 = pickle.loads(pickle.dumps(w))
    np.testing.assert_array_equal(w2.q, q)
    np.testing.assert_array_equal(w2.scale, w.scale)
    xq = random_xq(rng, 3, 14)
    np.testing.assert_array_equal(w2.int8_matmul(xq, 5), w.int8_matmul(xq, 5))


def test_memory_of_90_percent_1x4_blocks(rng):
    n, k = 3072, 768  # bert_ffn_up
    keep = np.repeat(rng.random((n, k // 4)) < 0.1, 4, axis=1)
    q = np.where(keep, rng.integers(1, 128, (n, k)), 0).astype(np.int8)
    w = SparseInt8Matrix.from_int8(q, 0.01)
    assert w.block_fill == 1.0
    assert w.bytes_per_weight <= 0.2
    assert w.nbytes == (w.indptr.nbytes + w.cols.nbytes + w.values.nbytes
                        + w.row_sums.nbytes + 4 * n)  # + one float32 scale per row


def test_bad_inputs(rng):
    q = random_q(rng, 4, 8, 0.5)
    with pytest.raises(TypeError, match="from_float"):
        SparseInt8Matrix(q)
    with pytest.raises(ValueError, match="q: values must be in"):
        SparseInt8Matrix.from_int8(np.full((2, 3), -128, np.int8), 1.0)
    with pytest.raises(TypeError, match="q: expected an integer"):
        SparseInt8Matrix.from_int8(q.astype(np.float32), 1.0)
    with pytest.raises(ValueError, match="q: expected a 2-D"):
        SparseInt8Matrix.from_int8(q[0], 1.0)
    with pytest.raises(ValueError, match="scale: expected a scalar"):
        SparseInt8Matrix.from_int8(q, np.ones(3))
    with pytest.raises(ValueError, match="scale: every scale must be finite"):
        SparseInt8Matrix.from_int8(q, -1.0)
    with pytest.raises(ValueError, match="scale: every scale must be finite"):
        SparseInt8Matrix.from_int8(q, np.nan)
    with pytest.raises(ValueError, match="w: contains NaN"):
        SparseInt8Matrix.from_float(np.full((2, 2), np.nan, np.float32))
    with pytest.raises(TypeError, match="w: expected a floating-point"):
        SparseInt8Matrix.from_float(q)
    with pytest.raises(TypeError, match="per_channel"):
        SparseInt8Matrix.from_float(q.astype(np.float32), per_channel="yes")
    w = SparseInt8Matrix.from_int8(q, 1.0)
    with pytest.raises(ValueError, match="x: expected last dimension"):
        sparsekit.linear(np.zeros((2, 7), np.float32), w)
    with pytest.raises(ValueError, match="x: contains NaN"):
        sparsekit.linear(np.full((2, 8), np.nan, np.float32), w)
    with pytest.raises(ValueError, match="backend"):
        sparsekit.linear(np.zeros((2, 8), np.float32), w, backend="numba")
    with pytest.raises(TypeError, match="xq: expected a uint8"):
        w.int8_matmul(np.zeros((2, 8), np.int8), 0)
    with pytest.raises(ValueError, match="xq: expected shape"):
        w.int8_matmul(np.zeros((2, 7), np.uint8), 0)
    with pytest.raises(ValueError, match="x_zero_point: zero points must be in"):
        w.int8_matmul(np.zeros((2, 8), np.uint8), 256)
    with pytest.raises(ValueError, match="x_zero_point: expected a scalar or shape"):
        w.int8_matmul(np.zeros((2, 8), np.uint8), np.zeros(3, np.int32))
    with pytest.raises(TypeError, match="x_zero_point"):
        w.int8_matmul(np.zeros((2, 8), np.uint8), 1.5)


def test_corrupted_state_rejected(rng):
    w = SparseInt8Matrix.from_int8(random_q(rng, 5, 9, 0.6, empty_rows=()), 1.0)
    cols = np.array(w.cols)
    cols[-1] = 3  # ceil(9 / 4) = 3 block columns: index 3 is out of range
    with pytest.raises(ValueError, match="corrupted"):
        SparseInt8Matrix._from_state(w.shape, w.indptr, cols, w.values, w.scale, False)
    values = np.array(w.values)
    values[0, 0] = -128
    with pytest.raises(ValueError, match="corrupted"):
        SparseInt8Matrix._from_state(w.shape, w.indptr, w.cols, values, w.scale, False)
    with pytest.raises(ValueError, match="indptr"):
        SparseInt8Matrix._from_state(w.shape, w.indptr[:-1], w.cols, w.values, w.scale, False)


# ---- g4: unstructured weights also held as groups of 4 nonzeros at any k ----

def unstructured_q(rng, n, k, density, empty_rows=(1,)):
    q = (rng.integers(1, 128, size=(n, k)) * rng.choice([-1, 1], size=(n, k))).astype(np.int8)
    q[rng.random((n, k)) < 0.1] = 127
    q[rng.random((n, k)) < 0.1] = -127
    q[rng.random((n, k)) >= density] = 0
    for r in empty_rows:
        if r < n:
            q[r] = 0
    return q


def test_g4_layout_holds_exactly_the_nonzeros(rng):
    from sparsekit._sparse_int8 import G4_MAX_FILL

    q = unstructured_q(rng, 37, 301, 0.1)
    w = SparseInt8Matrix.from_int8(q, 0.5)
    assert w.block_fill < G4_MAX_FILL and w._g4 is not None
    indptr, kidx, values = w._g4
    assert indptr[0] == 0 and np.all(np.diff(indptr) == (np.count_nonzero(q, 1) + 3) // 4)
    dense = np.zeros(q.shape, np.int64)
    rows = np.repeat(np.arange(q.shape[0]), 4 * np.diff(indptr))
    assert np.all(kidx < q.shape[1])
    np.add.at(dense, (rows, kidx.astype(np.int64)), values)
    np.testing.assert_array_equal(dense, q)
    assert np.count_nonzero(values) == np.count_nonzero(q)  # padding is value 0
    # the copy is counted in the memory the format reports
    assert w.nbytes == (w.indptr.nbytes + w.cols.nbytes + w.values.nbytes + w.row_sums.nbytes
                        + w._wscale.nbytes + indptr.nbytes + kidx.nbytes + values.nbytes)
    assert "1x4+g4" in repr(w)
    # well-filled blocks keep only the 1x4 layout
    assert SparseInt8Matrix.from_int8(random_q(rng, 20, 64, 0.5, fill=4), 0.5)._g4 is None
    assert SparseInt8Matrix.from_int8(np.zeros((3, 8), np.int8), 0.5)._g4 is None


@pytest.mark.parametrize("m,n,k", [(33, 17, 31), (64, 40, 100), (65, 33, 129), (130, 70, 257),
                                   (31, 5, 9), (40, 3, 1)])
def test_g4_int8_matmul_exact_every_isa(isa, rng, m, n, k):
    q = unstructured_q(rng, n, k, 0.1 if k > 9 else 0.3 if k > 1 else 1.0)
    w = SparseInt8Matrix.from_int8(q, np.float32(0.01))
    assert (w._g4 is not None) == (0 < w.block_fill < 0.5)
    assert k == 9 or w._g4 is not None
    xq = random_xq(rng, m, k)
    for zp in (0, 128, 255, rng.integers(0, 256, size=m)):
        np.testing.assert_array_equal(w.int8_matmul(xq, zp), ref_int8(xq, zp, q))


def test_g4_and_1x4_paths_agree_bitwise(monkeypatch, rng):
    """linear: same int32 sums and the same float epilogue on either layout."""
    import sparsekit._sparse_int8 as si

    wf = rng.standard_normal((50, 200)).astype(np.float32)
    wf[rng.random(wf.shape) < 0.9] = 0
    w = SparseInt8Matrix.from_float(wf)
    x = rng.standard_normal((70, 200)).astype(np.float32)
    bias = rng.standard_normal(50).astype(np.float32)
    y_g4 = sparsekit.linear(x, w, bias=bias, activation="relu")
    monkeypatch.setattr(si, "G4_MIN_M", 10**9)
    y_1x4 = sparsekit.linear(x, w, bias=bias, activation="relu")
    np.testing.assert_array_equal(y_g4, y_1x4)


def test_g4_survives_pickle(rng):
    q = unstructured_q(rng, 30, 90, 0.1)
    w = pickle.loads(pickle.dumps(SparseInt8Matrix.from_int8(q, 0.5)))
    assert w._g4 is not None
    xq = random_xq(rng, 40, 90)
    np.testing.assert_array_equal(w.int8_matmul(xq, 3), ref_int8(xq, 3, q))


def test_g4_two_threads_exact(rng):
    q = unstructured_q(rng, 700, 1001, 0.1)
    w = SparseInt8Matrix.from_int8(q, 0.1)
    assert w._g4 is not None
    xq = random_xq(rng, 150, 1001)
    before = sparsekit.get_num_threads()
    sparsekit.set_num_threads(2)
    try:
        np.testing.assert_array_equal(w.int8_matmul(xq, 77), ref_int8(xq, 77, q))
        # M == 1: the g4 kernel with the row in registers, rows split in two
        np.testing.assert_array_equal(w.int8_matmul(xq[:1], 77), ref_int8(xq[:1], 77, q))
        x = np.random.default_rng(3).standard_normal((1, 1001)).astype(np.float32)
        np.testing.assert_allclose(sparsekit.linear(x, w), dequantized_reference(x, w, None, False),
                                   rtol=1e-5, atol=1e-4)
    finally:
        sparsekit.set_num_threads(before)


# ---- M == 1: every table size of the register lookups ----------------------
# The AVX-512 VNNI M == 1 kernels hold the activation row in registers for
# K <= 1024 (1x4 blocks: pairs of zmm by ceil(K/128); g4 with VBMI: 128-byte
# windows) and gather beyond (1x4) or read the windows from L1 (g4, K <=
# 32768); rows are summed 16 at a time with a scalar tail.
M1_K = [1, 9, 100, 128, 129, 255, 256, 300, 513, 640, 768, 771, 1000, 1024, 1025, 2051]


@pytest.mark.parametrize("k", M1_K)
def test_m1_1x4_exact_every_table_size(isa, rng, k):
    q = random_q(rng, 37, k, 0.3, empty_rows=(1, 16, 17))
    w = SparseInt8Matrix.from_int8(q, np.float32(0.01))
    xq = random_xq(rng, 1, k)
    for zp in (0, 128, 255):
        np.testing.assert_array_equal(w.int8_matmul(xq, zp), ref_int8(xq, zp, q))


@pytest.mark.parametrize("k", M1_K + [4099, 32768, 32769])
def test_m1_g4_exact_every_table_size(isa, rng, k):
    """K <= 1024: the row in registers; 1024 < K <= 32768: the wide kernel
    (windows of the row in L1, one byte of window id); past it the portable
    loop."""
    from sparsekit._native import core

    q = unstructured_q(rng, 41, k, 0.1 if k > 9 else 0.2, empty_rows=(1, 16, 17))
    w = SparseInt8Matrix.from_int8(q, np.float32(0.01))
    if w._g4 is None:
        pytest.skip("well-filled blocks: no g4 copy")
    runs_g4 = w._runs_g4(1)
    assert runs_g4 == core.g4_spmv_fast(k)
    assert not runs_g4 or (isa == "avx512vnni" and k <= 32768)
    xq = random_xq(rng, 1, k)
    for zp in (0, 128, 255):
        np.testing.assert_array_equal(w.int8_matmul(xq, zp), ref_int8(xq, zp, q))
    # also straight through the g4 kernels, whichever path int8_matmul took
    out = core.spmm_u8s8_g4_s32(*w._g4, w.row_sums, 41, k, xq, np.array([7], np.int32))
    np.testing.assert_array_equal(out, ref_int8(xq, 7, q))


@pytest.mark.parametrize("n", [1, 16, 33, 200])
def test_m1_linear_g4_and_1x4_agree_bitwise(isa, monkeypatch, rng, n):
    """M == 1 float epilogue (16 rows at a time and the tail): the same sums
    and floats on either layout, and close to the dequantized reference."""
    import sparsekit._sparse_int8 as si

    wf = rng.standard_normal((n, 700)).astype(np.float32)
    wf[rng.random(wf.shape) < 0.9] = 0
    wf[n // 2] = 0
    w = SparseInt8Matrix.from_float(wf)
    x = rng.standard_normal((1, 700)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    for act in (None, "relu"):
        y = sparsekit.linear(x, w, bias=bias, activation=act)
        with monkeypatch.context() as mp:
            mp.setattr(si.SparseInt8Matrix, "_runs_g4", lambda self, m: False)
            y_1x4 = sparsekit.linear(x, w, bias=bias, activation=act)
        case = f"isa={isa} m=1 n={n} k=700 bias=True act={act} out=f32"
        np.testing.assert_array_equal(y, y_1x4, err_msg=f"{case}: g4 != 1x4")
        ref = dequantized_reference(x, w, bias, act == "relu")
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-4, err_msg=case)


def test_m1_long_rows_exact(rng):
    """Rows longer than the kernel's 2048-block segment are summed alone."""
    k = 4 * 2100 + 3
    q = random_q(rng, 5, k, 1.0, fill=4, empty_rows=(2,))
    w = SparseInt8Matrix.from_int8(q, np.float32(0.01))
    xq = random_xq(rng, 1, k)
    np.testing.assert_array_equal(w.int8_matmul(xq, 200), ref_int8(xq, 200, q))


@pytest.mark.parametrize("m", [1, 2, 40, 100])
@pytest.mark.parametrize("pattern", ["1x4", "unstructured"])
def test_linear_rejects_one_nonfinite_row(isa, rng, m, pattern):
    """fp32 rows are quantized while the tiles are packed: one bad row in any
    tile still fails the call (1x4 and g4 layouts, 1 and 2 threads)."""
    q = (random_q(rng, 30, 90, 0.3, fill=4) if pattern == "1x4"
         else unstructured_q(rng, 30, 90, 0.1))
    w = SparseInt8Matrix.from_int8(q, np.float32(0.01))
    x = rng.standard_normal((m, 90)).astype(np.float32)
    before = sparsekit.get_num_threads()
    try:
        for threads in (1, 2):
            sparsekit.set_num_threads(threads)
            for bad in (np.nan, np.inf):
                xb = x.copy()
                xb[m - 1, 7] = bad
                with pytest.raises(ValueError, match="x: contains NaN"):
                    sparsekit.linear(xb, w)
            ref = dequantized_reference(x, w, None, False)
            np.testing.assert_allclose(sparsekit.linear(x, w), ref, rtol=1e-5, atol=1e-4)
    finally:
        sparsekit.set_num_threads(before)


# ---- g4 only: unstructured weights of low block fill keep no 1x4 blocks ----
# (where this CPU has AVX-512 VNNI and VBMI; the fixture makes every weight
# with a g4 copy g4-only on any CPU, so forced ISAs without g4 kernels check
# the rebuilt 1x4 blocks)

@pytest.fixture
def g4_only(monkeypatch):
    import sparsekit._sparse_int8 as si

    monkeypatch.setattr(si, "_g4_only", lambda w: True)


def both_copies(q, scale, monkeypatch):
    """The same weight with its 1x4 blocks kept next to the g4 copy."""
    import sparsekit._sparse_int8 as si

    with monkeypatch.context() as mp:
        mp.setattr(si, "_g4_only", lambda w: False)
        return SparseInt8Matrix.from_int8(q, scale)


G4_ONLY_MS = [0, 1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 65, 96, 97]


@pytest.mark.parametrize("n,k", [(37, 77), (16, 130), (50, 1030), (33, 2051)])
def test_g4_only_exact_every_isa(isa, g4_only, monkeypatch, rng, n, k):
    """Exact int32 at every M (the 16-row g4 tile, the 64-row one, M == 1 in
    registers or not, M == 0) and the same floats as the two-copy weight; an
    ISA without g4 kernels runs the rebuilt 1x4 blocks and keeps them."""
    from sparsekit._native import core

    q = unstructured_q(rng, n, k, 0.1, empty_rows=(1, 16))
    q[0, :4] = -127
    w = SparseInt8Matrix.from_int8(q, np.float32(0.01))
    assert w._g4 is not None and w._bsr is None and "blocks=g4," in repr(w)
    for m in G4_ONLY_MS:
        xq = random_xq(rng, m, k)
        if m:
            xq[0] = 255
        for zp in (0, 255, rng.integers(0, 256, size=m)):
            np.testing.assert_array_equal(w.int8_matmul(xq, zp), ref_int8(xq, zp, q))
    runs_g4 = core.g4_small_fast()
    assert (w._bsr is None) == runs_g4
    assert runs_g4 == (isa == "avx512vnni" and core.g4_vbmi_cpu())
    w2 = both_copies(q, np.float32(0.01), monkeypatch)
    bias = rng.standard_normal(n).astype(np.float32)
    for m in (1, 2, 16, 17):
        x = rng.standard_normal((m, k)).astype(np.float32)
        np.testing.assert_array_equal(sparsekit.linear(x, w, bias=bias, activation="relu"),
                                      sparsekit.linear(x, w2, bias=bias, activation="relu"))
        s = w.with_static_input(0.05, 3)
        np.testing.assert_array_equal(sparsekit.linear(x, s, bias=bias),
                                      sparsekit.linear(x, w2.with_static_input(0.05, 3), bias=bias))


def test_g4_only_blocks_rebuilt_exactly(g4_only, monkeypatch, rng):
    """indptr / cols / values of a g4-only weight are those it was built
    from (dtypes too); its bytes are the g4 copy's; pickles in the format
    every version reads, both ways."""
    q = unstructured_q(rng, 60, 301, 0.1, empty_rows=(1, 2, 59))
    w = SparseInt8Matrix.from_int8(q, 0.5)
    w2 = both_copies(q, 0.5, monkeypatch)
    assert w._bsr is None and w2._bsr is not None
    for a, b in zip((w.indptr, w.cols, w.values), w2._bsr):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    assert w._bsr is None  # reading them does not keep them
    assert w.nblocks == w2.nblocks and w.block_fill == w2.block_fill and w.nnz == w2.nnz
    np.testing.assert_array_equal(w.q, q)
    assert w.nbytes == w.row_sums.nbytes + w._wscale.nbytes + sum(a.nbytes for a in w._g4)
    assert w.nbytes < w2.nbytes
    xq = random_xq(rng, 20, 301)
    # an old pickle (both copies: the same reduce arguments) loads as g4-only
    back = pickle.loads(pickle.dumps(w2))
    assert back._bsr is None
    np.testing.assert_array_equal(back.int8_matmul(xq, 5), ref_int8(xq, 5, q))
    # and a g4-only weight pickles as the 1x4 blocks
    red, red2 = w.__reduce__(), w2.__reduce__()
    assert red[0] is red2[0] and len(red[1]) == len(red2[1])
    for a, b in zip(red[1], red2[1]):
        np.testing.assert_array_equal(a, b)
    with monkeypatch.context() as mp:
        import sparsekit._sparse_int8 as si

        mp.setattr(si, "_g4_only", lambda w: False)
        back2 = pickle.loads(pickle.dumps(w.with_static_input(0.1, 7)))
    assert back2._bsr is not None and back2.input_scale == pytest.approx(0.1)
    np.testing.assert_array_equal(back2.int8_matmul(xq, 5), ref_int8(xq, 5, q))
    # torch state arrays round trip
    again = SparseInt8Matrix._from_state_arrays(w.shape, w._state_arrays())
    np.testing.assert_array_equal(again.q, q)


def test_g4_only_rule(monkeypatch, rng):
    """The library's own rule: g4 alone below G4_ONLY_FILL where this CPU has
    AVX-512 VNNI and VBMI, both copies above it."""
    import sparsekit._sparse_int8 as si
    from sparsekit._native import core

    monkeypatch.undo()
    sparse = SparseInt8Matrix.from_int8(unstructured_q(rng, 64, 512, 0.1), 0.5)  # fill ~0.29
    middle = SparseInt8Matrix.from_int8(unstructured_q(rng, 64, 512, 0.3), 0.5)  # fill ~0.39
    assert sparse.block_fill < si.G4_ONLY_FILL <= middle.block_fill < si.G4_MAX_FILL
    vnni = si._g4_cpu()
    assert (sparse._bsr is None) == (vnni and core.g4_vbmi_cpu())
    assert (sparse._g4 is not None) == vnni and (middle._g4 is not None) == vnni
    assert middle._bsr is not None
    if sparse._bsr is None:
        assert sparse._runs_g4(1) and sparse._runs_g4(2) and sparse._runs_g4(16)
        assert sparse.bytes_per_weight < middle.bytes_per_weight


# ---- block fill 0.35-0.5 (about 50-78% unstructured) ------------------------
# The g4 kernels at every M on weights of the fills where g4-only now reaches
# (G4_ONLY_FILL_MID) and beyond: the 16-row tile (M = 4..16), rows of the M == 1
# kernel (M = 2..3; the wide one at K > 1024 for M = 2 at >= 15% density), the
# 32-row tile (17..32) and the last tiles of 16 / 32 rows after 64-row ones.
MID_MS = [1, 2, 3, 4, 16, 17, 24, 32, 33, 64, 80, 96, 97]


@pytest.mark.parametrize("density,k", [(0.30, 200), (0.35, 1030), (0.45, 77), (0.42, 2051)])
def test_g4_only_exact_at_mid_fill(isa, g4_only, rng, density, k):
    q = unstructured_q(rng, 41, k, density, empty_rows=(1, 16, 40))
    q[0, :4] = 127
    w = SparseInt8Matrix.from_int8(q, np.float32(0.01))
    assert 0.35 <= w.block_fill < 0.5 and w._bsr is None
    for m in MID_MS:
        xq = random_xq(rng, m, k)
        xq[0] = 255
        for zp in (0, 255, rng.integers(0, 256, size=m)):
            np.testing.assert_array_equal(w.int8_matmul(xq, zp), ref_int8(xq, zp, q))
    for m in (2, 3, 20):
        x = rng.standard_normal((m, k)).astype(np.float32)
        np.testing.assert_allclose(sparsekit.linear(x, w), dequantized_reference(x, w, None, False),
                                   rtol=1e-5, atol=1e-4)


def test_g4_only_mid_fill_rule(monkeypatch, rng):
    """Between G4_ONLY_FILL and G4_ONLY_FILL_MID a weight keeps g4 alone (on
    an AVX-512 VNNI + VBMI CPU) only with K <= G4_MID_MAX_K and long rows;
    from G4_ONLY_FILL_MID on it keeps both copies."""
    import sparsekit._sparse_int8 as si
    from sparsekit._native import core

    monkeypatch.undo()
    vbmi = si._g4_cpu() and core.g4_vbmi_cpu()
    cases = [  # (n, k, density, g4 alone on a VBMI CPU)
        (40, 1024, 0.3, True),    # fill ~0.39, 307 nonzeros per row
        (40, 512, 0.3, False),    # fill ~0.39, 154 per row: short rows
        (20, 4096, 0.3, False),   # fill ~0.39, K past G4_MID_MAX_K
        (40, 1024, 0.4, False),   # fill ~0.46: past G4_ONLY_FILL_MID
    ]
    for n, k, density, alone in cases:
        q = unstructured_q(rng, n, k, density, empty_rows=())
        w = SparseInt8Matrix.from_int8(q, 0.5)
        assert si.G4_ONLY_FILL <= w.block_fill < si.G4_MAX_FILL
        assert (w.block_fill < si.G4_ONLY_FILL_MID) == (density < 0.4)
        assert si.g4_only_shape_rule(n, k, w.nnz, w.block_fill) == alone
        assert (w._bsr is None) == (alone and vbmi)
        xq = random_xq(rng, 5, k)
        np.testing.assert_array_equal(w.int8_matmul(xq, 3), ref_int8(xq, 3, q))
    # the rule's edges
    assert si.g4_only_shape_rule(10, 3072, 1920, 0.41)
    assert not si.g4_only_shape_rule(10, 3073, 1920, 0.41)
    assert not si.g4_only_shape_rule(10, 3072, 1919, 0.41)
    assert not si.g4_only_shape_rule(10, 3072, 1920, si.G4_ONLY_FILL_MID)
    assert si.g4_only_shape_rule(10, 100000, 5, 0.3) and not si.g4_only_shape_rule(0, 8, 0, 0.4)


def test_both_copies_run_g4_rows_at_m2_m3(isa, rng):
    """A weight with both copies runs g4 at M = 2..3 exactly where the M == 1
    kernel runs once per row (g4_rows_fast: AVX-512 VNNI + VBMI, K <= 1024,
    or M == 2 on the wide kernel at >= 15% density), its 1x4 blocks elsewhere;
    the int32 results are exact either way."""
    from sparsekit._native import core

    for n, k, density in ((30, 300, 0.3), (20, 2000, 0.3), (20, 2000, 0.1)):
        q = unstructured_q(rng, n, k, density)
        w = SparseInt8Matrix.from_int8(q, np.float32(0.02))
        assert w._g4 is not None and w._bsr is not None
        ngroups = int(w._g4[0][-1])
        for m in (2, 3, 4):
            rows = core.g4_rows_fast(m, n, k, ngroups)
            assert rows == (m <= 3 and isa == "avx512vnni" and core.g4_vbmi_cpu()
                            and (k <= 1024 or (m == 2 and 4 * ngroups >= 0.15 * n * k)))
            assert w._runs_g4(m) == rows
            xq = random_xq(rng, m, k)
            np.testing.assert_array_equal(w.int8_matmul(xq, 200), ref_int8(xq, 200, q))
            x = rng.standard_normal((m, k)).astype(np.float32)
            np.testing.assert_allclose(sparsekit.linear(x, w),
                                       dequantized_reference(x, w, None, False),
                                       rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("m,k", [(1, 67), (2, 5), (17, 130), (40, 64), (33, 4099)])
@pytest.mark.parametrize("pattern", ["1x4", "unstructured"])
def test_linear_bit_identical_to_quantize_then_matmul(isa, rng, m, k, pattern):
    """fp32 rows quantized inside linear() (per tile while packing, or up front
    for K > 4096) give the bits of quantize_rows + quantized_linear: constant,
    zero and one-sign rows next to each other, 1 and 2 threads."""
    n = 40
    q = (random_q(rng, n, k, 0.3, fill=4) if pattern == "1x4"
         else unstructured_q(rng, n, k, 0.1))
    w = SparseInt8Matrix.from_int8(q, (rng.random(n) + 0.5).astype(np.float32) * 0.01)
    x = rng.standard_normal((m, k)).astype(np.float32) * 3
    x[::5] = 1.5
    x[1::7] = 0.0
    x[2::6] = np.abs(x[2::6])
    x[3::8] = -np.abs(x[3::8]) * 1e4
    bias = rng.standard_normal(n).astype(np.float32)
    want = quantized_linear(*sparsekit.quantize_rows(x), w, bias)
    before = sparsekit.get_num_threads()
    try:
        for threads in (1, 2):
            sparsekit.set_num_threads(threads)
            got = sparsekit.linear(x, w, bias)
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    finally:
        sparsekit.set_num_threads(before)
