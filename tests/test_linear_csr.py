"""sparsekit.linear with a CSRMatrix on every ISA path against a float64
NumPy reference. Tolerance: |err| <= 1e-5 * (sum_k |x_k w_k| + 1), the
float32 accumulation bound for these sizes."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import sparsekit
from sparsekit import CSRMatrix
from conftest import assert_close_f32, assert_threads_agree, random_sparse, reference_linear

SIZES = [0, 1, 2, 3, 7, 15, 16, 17, 31, 33, 65, 127]


@pytest.mark.parametrize("m", SIZES + [130])
def test_tails_in_m(isa, rng, m):
    for n, k in [(1, 1), (17, 33), (33, 7), (127, 16), (16, 127)]:
        w = random_sparse(rng, n, k, 0.3, empty_rows=(0, n // 2))
        x = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        y = sparsekit.linear(x, CSRMatrix.from_dense(w), b, activation="relu")
        assert_close_f32(y, reference_linear(x, w, b, relu=True), x, w)


def test_every_partial_tile_width(isa, rng):
    """M = 1..130 covers each partial last tile (1..MR-1 rows, packed with row
    stride M mod MR) after full tiles, for MR = 8 (scalar) and 32 (AVX2, AVX-512)."""
    w = random_sparse(rng, 70, 37, 0.3, empty_rows=(5,))
    c = CSRMatrix.from_dense(w)
    b = rng.standard_normal(70).astype(np.float32)
    x = rng.standard_normal((130, 37)).astype(np.float32)
    for m in range(1, 131):
        y = sparsekit.linear(x[:m], c, b, activation="relu")
        assert_close_f32(y, reference_linear(x[:m], w, b, relu=True), x[:m], w)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("k", [0, 1, 3, 17, 31, 127])
def test_tails_in_n_k(isa, rng, n, k):
    for m in (1, 5, 70):
        w = random_sparse(rng, n, k, 0.5, empty_rows=(1,))
        x = rng.standard_normal((m, k)).astype(np.float32)
        y = sparsekit.linear(x, CSRMatrix.from_dense(w))
        assert_close_f32(y, reference_linear(x, w), x, w)


@pytest.mark.parametrize("density", [0.0, 0.01, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("m", [1, 64, 100])
def test_density_bias_relu(isa, rng, density, m):
    n, k = 150, 96
    w = random_sparse(rng, n, k, density)
    x = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    c = CSRMatrix.from_dense(w)
    for bias in (None, b):
        for act in (None, "relu"):
            y = sparsekit.linear(x, c, bias, activation=act)
            assert_close_f32(y, reference_linear(x, w, bias, relu=act == "relu"), x, w,
                             what=f"isa={isa} m={m} n={n} k={k} density={density} "
                                  f"bias={bias is not None} act={act}")


def test_large_threaded_and_wide_indices(isa, rng):
    sparsekit.set_num_threads(2)
    w = random_sparse(rng, 3072, 768, 0.1, empty_rows=range(0, 3072, 7))
    x = rng.standard_normal((261, 768)).astype(np.float32)
    c = CSRMatrix.from_dense(w)
    # 129 rows: W's rows split over threads; 128 and 261: whole tiles per thread
    for xm in (x[:129], x[:128], x, x[:1]):
        assert_close_f32(sparsekit.linear(xm, c), reference_linear(xm, w), xm, w)
    wide = random_sparse(rng, 5, 70001, 0.001)
    xw = rng.standard_normal((3, 70001)).astype(np.float32)
    cw = CSRMatrix.from_dense(wide)
    assert cw.indices.dtype == np.int32
    assert_close_f32(sparsekit.linear(xw, cw), reference_linear(xw, wide), xw, wide)


@pytest.mark.parametrize("density", [0.02, 0.3, 1.0])
def test_long_k_in_panels(isa, rng, density):
    """K longer than a K panel of the AVX-512 tile kernel (512 columns): rows
    are resumed panel after panel; empty and dense rows, full and partial tiles."""
    w = random_sparse(rng, 50, 1300, density, empty_rows=(0, 7))
    c = CSRMatrix.from_dense(w)
    x = rng.standard_normal((77, 1300)).astype(np.float32)
    b = rng.standard_normal(50).astype(np.float32)
    for xm in (x, x[:64], x[:1]):
        y = sparsekit.linear(xm, c, b, activation="relu")
        assert_close_f32(y, reference_linear(xm, w, b, relu=True), xm, w)


def test_many_panels_rows_in_lock_step(isa, rng):
    """K > 512 with enough nonzeros per row and panel: the AVX-512 kernel
    runs four rows at a time over panels of <= 320 columns. Rows of very different lengths side by side (empty, sparse,
    dense), 1-3 rows left after the groups of four, full and partial tiles,
    16-bit and 32-bit column indices."""
    w = random_sparse(rng, 23, 3100, 0.1, empty_rows=(1, 8))
    w[4] = rng.standard_normal(3100)  # a dense row next to an empty one
    w[10, :700] = 0.0                 # a row whose first panels are empty
    w[13, 2000:] = 0.0                # ... and one whose last ones are
    c = CSRMatrix.from_dense(w)
    assert c.indices.dtype == np.uint16
    x = rng.standard_normal((77, 3100)).astype(np.float32)
    b = rng.standard_normal(23).astype(np.float32)
    for xm in (x, x[:64], x[:48], x[:9]):
        assert_close_f32(sparsekit.linear(xm, c, b), reference_linear(xm, w, b), xm, w)
    # 512 < K <= 1024 and dense enough for long segments: the same kernel
    w = random_sparse(rng, 30, 800, 0.4, empty_rows=(5,))
    c = CSRMatrix.from_dense(w)
    x = rng.standard_normal((70, 800)).astype(np.float32)
    for xm in (x, x[:32], x[:20]):
        assert_close_f32(sparsekit.linear(xm, c), reference_linear(xm, w), xm, w)
    wide = random_sparse(rng, 7, 70001, 0.1, empty_rows=(2,))
    cw = CSRMatrix.from_dense(wide)
    assert cw.indices.dtype == np.int32
    xw = rng.standard_normal((40, 70001)).astype(np.float32)
    assert_close_f32(sparsekit.linear(xw, cw), reference_linear(xw, wide), xw, wide)


def test_skewed_rows_threaded(isa, rng):
    """All nonzeros in a few rows: the nnz-balanced split must stay correct."""
    w = np.zeros((400, 300), np.float32)
    w[:3] = rng.standard_normal((3, 300))
    w[399, ::3] = 1.0
    x = rng.standard_normal((80, 300)).astype(np.float32)
    sparsekit.set_num_threads(2)
    y = sparsekit.linear(x, CSRMatrix.from_dense(w))
    assert_close_f32(y, reference_linear(x, w), x, w)


def test_extreme_values(isa):
    w = np.array([[3e38, -3e38, 0.0], [1e-38, 0.0, -1e-38]], np.float32)
    x = np.array([[1.0, 1.0, 5.0], [0.5, 0.25, 1.0]], np.float32)
    y = sparsekit.linear(x, CSRMatrix.from_dense(w))
    np.testing.assert_allclose(y, reference_linear(x, w), rtol=1e-6, atol=1e-30)
    inf = sparsekit.linear(np.array([[np.inf, 0, 0]], np.float32), CSRMatrix.from_dense(w))
    assert inf[0, 0] == np.inf


@pytest.mark.parametrize("m", [1, 2, 40])
def test_inf_in_x_stays_in_its_rows(isa, m):
    """A row's short tail may be computed over positions of earlier rows
    with those lanes masked: an inf that only earlier rows use must not turn
    into inf * 0 = NaN in later rows."""
    k = 64
    w = np.zeros((6, k), np.float32)
    w[0, :20] = 1.0                     # its last nonzero uses x[19] (inf)
    w[1, 30:33] = 2.0                   # 3 nonzeros: a tail of < 8
    w[2, [40, 50]] = -1.0
    w[4, 20:31] = 0.5                   # 11: one step of 8 + a tail of 3
    x = np.ones((m, k), np.float32)
    x[:, 19] = np.inf
    y = sparsekit.linear(x, CSRMatrix.from_dense(w))
    assert (y[:, 0] == np.inf).all()
    np.testing.assert_array_equal(y[:, 1:], np.tile([6.0, -2.0, 0.0, 5.5, 0.0], (m, 1)))


def test_nan_in_x_propagates_through_relu(isa):
    w = CSRMatrix.from_dense(np.array([[1.0, 1.0]], np.float32))
    y = sparsekit.linear(np.array([[np.nan, 1.0]] * 70, np.float32), w, activation="relu")
    assert np.isnan(y).all()


def test_layouts_and_dtypes_converted(isa, rng):
    w = random_sparse(rng, 20, 30, 0.3)
    c = CSRMatrix.from_dense(w)
    x64 = rng.standard_normal((40, 30))
    ref = reference_linear(x64.astype(np.float32), w)
    for x in (x64, np.asfortranarray(x64), x64.astype(np.float32)[:, ::1],
              np.ascontiguousarray(x64.astype(np.float32)[::2]),
              np.repeat(x64, 2, axis=1)[:, ::2]):
        y = sparsekit.linear(x, c)
        assert_close_f32(y, reference_linear(np.asarray(x, np.float32), w), x, w)
    strided = x64.astype(np.float32)[::2]  # every other row: row stride 2K
    assert_close_f32(sparsekit.linear(strided, c), ref[::2], strided, w)
    one = sparsekit.linear(x64[0], c)  # 1-D in, 1-D out
    assert one.shape == (20,)
    x3 = rng.standard_normal((2, 3, 30)).astype(np.float32)  # [..., K]
    assert sparsekit.linear(x3, c).shape == (2, 3, 20)


def test_one_call_path_matches_and_declines(isa, rng):
    """CSRMatrix._linear_fast (linear's one-call path for float32 input) gives
    the reference for 1-D, strided rows, M = 0, bias and relu, and returns None
    (general path) for anything it would have to convert or reject."""
    w = random_sparse(rng, 21, 30, 0.3, empty_rows=(4,))
    c = CSRMatrix.from_dense(w)
    b = rng.standard_normal(21).astype(np.float32)
    wide = rng.standard_normal((40, 61)).astype(np.float32)
    for x in (wide[0, :30], wide[:, :30], wide[::3, 1:31], wide[:1, :30], wide[:0, :30]):
        for bias, act in ((None, 0), (b, 1)):
            y = c._linear_fast(x, bias, act)
            assert y is not None and y.shape == x.shape[:-1] + (21,)
            assert_close_f32(y, reference_linear(x, w, bias, relu=act == 1), x, w)
            np.testing.assert_array_equal(y, sparsekit.linear(
                x, c, bias, activation="relu" if act else None, backend="c"))
    declined = [(wide[:, :30].astype(np.float64), None), (wide[:, :60:2], None),
                (wide[0, :60:2], None), (np.asfortranarray(wide[:, :30]), None),
                (wide[:6, :30].reshape(2, 3, 30), None), (wide[:, :29], None),
                (wide[:, :30], b[:20]), (wide[:, :30], b.astype(np.float64)),
                (wide[:, :30].tolist(), None), (np.broadcast_to(wide[0, :30], (5, 30)), None)]
    for x, bias in declined:
        assert c._linear_fast(x, bias, 0) is None
    assert c._linear_fast(wide[:, :30], None, 2) is None  # gelu: not fused here


def test_dense_weight_fallback(rng):
    w = random_sparse(rng, 20, 30, 0.5)
    x = rng.standard_normal((7, 30)).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    y = sparsekit.linear(x, w, b, activation="relu")
    assert_close_f32(y, reference_linear(x, w, b, relu=True), x, w)


def test_numba_backend_matches(rng):
    w = random_sparse(rng, 65, 47, 0.2, empty_rows=(3,))
    x = rng.standard_normal((33, 47)).astype(np.float32)
    b = rng.standard_normal(65).astype(np.float32)
    c = CSRMatrix.from_dense(w)
    yn = sparsekit.linear(x, c, b, activation="relu", backend="numba")
    yc = sparsekit.linear(x, c, b, activation="relu", backend="c")
    assert_close_f32(yn, reference_linear(x, w, b, relu=True), x, w)
    np.testing.assert_allclose(yn, yc, rtol=1e-5, atol=1e-5)
    assert sparsekit.linear(x[:0], c, backend="numba").shape == (0, 65)


def test_bad_inputs_raise(rng):
    c = CSRMatrix.from_dense(random_sparse(rng, 4, 6, 0.5))
    with pytest.raises(ValueError, match="x: expected last dimension K = 6"):
        sparsekit.linear(np.ones((2, 5), np.float32), c)
    with pytest.raises(TypeError, match="x"):
        sparsekit.linear(np.ones((2, 6), np.int32), c)
    with pytest.raises(ValueError, match="x"):
        sparsekit.linear(np.float32(1.0), c)
    with pytest.raises(ValueError, match="bias"):
        sparsekit.linear(np.ones((2, 6), np.float32), c, bias=np.ones(5, np.float32))
    with pytest.raises(ValueError, match="activation"):
        sparsekit.linear(np.ones((2, 6), np.float32), c, activation="tanh")
    with pytest.raises(ValueError, match="backend"):
        sparsekit.linear(np.ones((2, 6), np.float32), c, backend="cuda")
    with pytest.raises(TypeError, match="w"):
        sparsekit.linear(np.ones((2, 6), np.float32), object())


def test_core_refuses_inconsistent_arrays():
    """The private binding's O(1) checks stop anything the C side could overrun."""
    from sparsekit import _core
    indptr = np.array([0, 5], np.int64)  # claims 5 nonzeros
    idx, data = np.zeros(2, np.uint16), np.zeros(2, np.float32)
    x, out = np.ones((2, 4), np.float32), np.empty((2, 1), np.float32)
    with pytest.raises(ValueError, match="indptr"):
        _core.linear_csr_f32(indptr, idx, data, 1, 4, x, None, 0, out)
    with pytest.raises(ValueError, match="x"):
        _core.linear_csr_f32(np.array([0, 2], np.int64), idx, data, 1, 5, x, None, 0, out)
    with pytest.raises(ValueError, match="out"):
        _core.linear_csr_f32(np.array([0, 2, 2], np.int64), idx, data, 2, 4, x, None, 0,
                             out)


def test_concurrent_python_threads_identical(rng):
    w = random_sparse(rng, 512, 256, 0.1)
    c = CSRMatrix.from_dense(w)
    xs = [rng.standard_normal((64, 256)).astype(np.float32) for _ in range(8)]
    assert_threads_agree(c, xs)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(0, 70), n=st.integers(0, 40), k=st.integers(0, 40),
       density=st.floats(0.0, 1.0), seed=st.integers(0, 2**31),
       isa=st.sampled_from(["scalar", "avx2", "avx512"]), relu=st.booleans())
def test_property_matches_reference(m, n, k, density, seed, isa, relu):
    from sparsekit import _core
    if not _core.cpu_supports(isa):
        return
    r = np.random.default_rng(seed)
    w = random_sparse(r, n, k, density)
    x = r.standard_normal((m, k)).astype(np.float32)
    b = r.standard_normal(n).astype(np.float32)
    before = sparsekit.get_isa()
    sparsekit.set_isa(isa)
    try:
        y = sparsekit.linear(x, CSRMatrix.from_dense(w), b, activation="relu" if relu else None)
    finally:
        sparsekit.set_isa(before)
    assert_close_f32(y, reference_linear(x, w, b, relu), x, w)
