"""SlicedEllMatrix: the format (round trips, pickle, validation) and
sparsekit.linear with it on every ISA path against a float64 NumPy reference.
Tolerance: |err| <= 1e-5 * (sum_k |x_k w_k| + 1), as for CSRMatrix."""
import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import sparsekit
from sparsekit import CSRMatrix, SlicedEllMatrix
from conftest import assert_close_f32, assert_threads_agree, random_sparse, reference_linear

SIZES_N = [0, 1, 2, 15, 16, 17, 33, 127]
SIZES_K = [0, 1, 3, 17, 31, 32, 33, 65, 127]


@pytest.mark.parametrize("n", SIZES_N)
@pytest.mark.parametrize("k", SIZES_K)
def test_tails_in_n_k(isa, rng, n, k):
    w = random_sparse(rng, n, k, 0.4, empty_rows=(1, n // 2))
    s = SlicedEllMatrix.from_dense(w)
    b = rng.standard_normal(n).astype(np.float32)
    for m in (1, 2, 5):
        x = rng.standard_normal((m, k)).astype(np.float32)
        assert_close_f32(sparsekit.linear(x, s, b, activation="relu"),
                         reference_linear(x, w, b, relu=True), x, w)


@pytest.mark.parametrize("m", [0, 1, 2, 3, 4, 5, 7, 8, 9, 16])
def test_tails_in_m(isa, rng, m):
    for n, k in [(17, 33), (40, 100), (3, 7)]:
        w = random_sparse(rng, n, k, 0.3, empty_rows=(0,))
        x = rng.standard_normal((m, k)).astype(np.float32)
        y = sparsekit.linear(x, SlicedEllMatrix.from_dense(w))
        assert_close_f32(y, reference_linear(x, w), x, w)


@pytest.mark.parametrize("density", [0.0, 0.02, 0.1, 0.3, 1.0])
def test_densities_and_1d_x(isa, rng, density):
    w = random_sparse(rng, 70, 200, density, empty_rows=(3, 4, 69))
    s = SlicedEllMatrix.from_dense(w)
    x = rng.standard_normal(200).astype(np.float32)
    y = sparsekit.linear(x, s)
    assert y.shape == (70,)
    assert_close_f32(y, reference_linear(x, w), x, w)
    x3 = rng.standard_normal((2, 3, 200)).astype(np.float32)  # leading dims
    assert sparsekit.linear(x3, s).shape == (2, 3, 70)


def test_nonfinite_x_in_unused_columns_does_not_leak(isa, rng):
    """Columns 0..9 are used only by the first row of each 16-row slice; x there
    is inf/NaN. Those rows are non-finite; no other row may turn NaN (their
    empty slots lie in windows over those columns)."""
    n, k = 50, 90
    w = random_sparse(rng, n, k, 0.3)
    w[:, :10] = 0.0
    w[::16, 0] = 1.5
    s = SlicedEllMatrix.from_dense(w)
    assert (s.window == 0).any()
    for m in (1, 3):
        x = rng.standard_normal((m, k)).astype(np.float32)
        x[:, 0] = np.inf
        x[:, 1:10:2] = np.nan
        x[:, 2:10:2] = -np.inf
        y = sparsekit.linear(x, s)
        first = np.arange(n) % 16 == 0
        assert np.all(np.isposinf(y[:, first]))
        ok = reference_linear(x[:, 10:], w[~first, 10:])
        assert_close_f32(y[:, ~first], ok, x[:, 10:], w[~first, 10:])


@pytest.mark.parametrize("bad_rows", [(0,), (1,), (2, 3), (4,)])
@pytest.mark.parametrize("col", [0, 300 - 32])
def test_nonfinite_x_in_some_rows(isa, rng, bad_rows, col):
    """inf/NaN in some rows of x only, in column `col` (0 or K - 32: the first
    and last column a window starts at): used by the first row of each slice
    and by no row in the 33 columns before it, so a window starts there and
    the other rows' empty slots point at it. The finite rows of x are exact,
    and no empty slot turns a row NaN (the AVX2 kernel skips its mask for
    rows of x that are all finite, and must keep it for the others)."""
    n, k, m = 80, 300, 5
    w = random_sparse(rng, n, k, 0.2)
    w[:, max(col - 33, 0):col + 1] = 0.0
    w[::16, col] = -2.0
    s = SlicedEllMatrix.from_dense(w)
    assert (s.window == col).any()
    x = rng.standard_normal((m, k)).astype(np.float32)
    for r in bad_rows:
        x[r, col] = np.inf if r % 2 else np.nan
    y = sparsekit.linear(x, s)
    good = [r for r in range(m) if r not in bad_rows]
    assert_close_f32(y[good], reference_linear(x[good], w), x[good], w)
    first = np.arange(n) % 16 == 0
    bad = list(bad_rows)
    assert np.all(~np.isfinite(y[np.ix_(bad, first)]))
    xz = x[bad]
    xz[:, col] = 0.0  # the other rows' weight there is 0
    assert_close_f32(y[np.ix_(bad, ~first)], reference_linear(xz, w[~first]), xz, w[~first])


def test_bias_relu_threads_and_big_shape(isa, rng):
    w = random_sparse(rng, 1000, 768, 0.1)
    s = SlicedEllMatrix.from_dense(w)
    b = rng.standard_normal(1000).astype(np.float32)
    x = rng.standard_normal((3, 768)).astype(np.float32)
    ref = reference_linear(x, w, b, relu=True)
    before = sparsekit.get_num_threads()
    try:
        for t in (1, 2):
            sparsekit.set_num_threads(t)
            assert_close_f32(sparsekit.linear(x, s, b, activation="relu"), ref, x, w)
            assert_close_f32(sparsekit.linear(x[0], s, b, activation="relu"), ref[0], x[0], w)
    finally:
        sparsekit.set_num_threads(before)


def test_strided_and_float64_x(rng):
    w = random_sparse(rng, 20, 40, 0.3)
    s = SlicedEllMatrix.from_dense(w)
    big = rng.standard_normal((4, 90))
    x = big[:, 5:45]  # float64, strided rows: converted once
    assert_close_f32(sparsekit.linear(x, s), reference_linear(x, w), x, w)
    x32 = big.astype(np.float32)[:, 5:45]  # float32 with row stride 90
    assert_close_f32(sparsekit.linear(x32, s), reference_linear(x32, w), x32, w)


def test_numba_backend_matches(rng):
    pytest.importorskip("numba")
    w = random_sparse(rng, 33, 70, 0.2)
    s = SlicedEllMatrix.from_dense(w)
    x = rng.standard_normal((2, 70)).astype(np.float32)
    y = sparsekit.linear(x, s, backend="numba")
    assert_close_f32(y, reference_linear(x, w), x, w)


def test_gelu_activation(rng):
    w = random_sparse(rng, 20, 40, 0.3)
    s = SlicedEllMatrix.from_dense(w)
    x = rng.standard_normal((2, 40)).astype(np.float32)
    y = sparsekit.linear(x, s, activation="gelu")
    np.testing.assert_allclose(y, sparsekit.linear(x, CSRMatrix.from_dense(w),
                                                   activation="gelu"), rtol=1e-5, atol=1e-6)


def test_concurrent_python_threads_identical(rng):
    w = random_sparse(rng, 300, 200, 0.1)
    s = SlicedEllMatrix.from_dense(w)
    xs = [rng.standard_normal((1 + i % 3, 200)).astype(np.float32) for i in range(8)]
    assert_threads_agree(s, xs)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 40), k=st.integers(0, 80), m=st.integers(0, 9),
       density=st.sampled_from([0.0, 0.05, 0.3, 0.9, 1.0]), seed=st.integers(0, 2**32 - 1),
       relu=st.booleans())
def test_property_matches_reference(n, k, m, density, seed, relu):
    rng = np.random.default_rng(seed)
    w = random_sparse(rng, n, k, density)
    s = SlicedEllMatrix.from_dense(w)
    np.testing.assert_array_equal(s.to_dense(), w)
    x = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    y = sparsekit.linear(x, s, b, activation="relu" if relu else None)
    assert_close_f32(y, reference_linear(x, w, b, relu=relu), x, w)


# ---- the format ------------------------------------------------------------
def test_round_trips_and_properties(rng):
    w = random_sparse(rng, 37, 100, 0.2, empty_rows=(0, 20))
    s = SlicedEllMatrix.from_dense(w)
    np.testing.assert_array_equal(s.to_dense(), w)
    c = CSRMatrix.from_dense(w)
    c2 = s.to_csr()
    assert isinstance(c2, CSRMatrix)
    np.testing.assert_array_equal(c2.indptr, c.indptr)
    np.testing.assert_array_equal(c2.indices, c.indices)
    np.testing.assert_array_equal(c2.data, c.data)
    assert s.shape == (37, 100) and s.nnz == c.nnz == np.count_nonzero(w)
    assert s.density == pytest.approx(c.nnz / 3700)
    assert s.nbytes == (s.group_ptr.nbytes + s.window.nbytes + s.index.nbytes
                        + s.values.nbytes)
    assert 0 < s.fill <= 1
    assert s.group_ptr.shape == (3 + 1,)
    assert s.index.shape == (s.group_ptr[-1], 16) and s.values.shape == (s.group_ptr[-1], 4, 16)
    assert "SlicedEllMatrix(shape=(37, 100)" in repr(s)
    scipy = pytest.importorskip("scipy.sparse")
    s3 = SlicedEllMatrix.from_scipy(scipy.csr_matrix(w))
    np.testing.assert_array_equal(s3.to_dense(), w)


def test_layout_of_one_row():
    """The greedy windows: a group starts at the row's first column left,
    moved down to K - 32; each row takes <= 4 nonzeros per group."""
    w = np.zeros((1, 64), np.float32)
    w[0, [5, 6, 7, 8, 9, 60]] = [1, 2, 3, 4, 5, 6]
    s = SlicedEllMatrix.from_dense(w)
    np.testing.assert_array_equal(s.group_ptr, [0, 3])
    np.testing.assert_array_equal(s.window, [5, 9, 32])
    assert s.index[0, 0] == 0x83828180  # offsets 0, 1, 2, 3, all used
    assert s.index[1, 0] == 0x80 and s.index[2, 0] == 0x80 | 28
    np.testing.assert_array_equal(s.values[0, :, 0], [1, 2, 3, 4])
    assert s.values[1, 0, 0] == 5 and s.values[2, 0, 0] == 6
    assert np.all(s.index[:, 1:] == 0) and np.all(s.values[:, :, 1:] == 0)


def test_extremes_density_0_and_1():
    for w in (np.zeros((20, 40), np.float32), np.ones((20, 40), np.float32),
              np.zeros((0, 5), np.float32), np.zeros((5, 0), np.float32)):
        s = SlicedEllMatrix.from_dense(w)
        np.testing.assert_array_equal(s.to_dense(), w)
        x = np.ones((2, w.shape[1]), np.float32)
        np.testing.assert_array_equal(sparsekit.linear(x, s), x @ w.T)
    assert SlicedEllMatrix.from_dense(np.ones((16, 64), np.float32)).fill == 1.0


def test_pickle_and_read_only(rng):
    w = random_sparse(rng, 30, 50, 0.3)
    s = SlicedEllMatrix.from_dense(w)
    s2 = pickle.loads(pickle.dumps(s))
    assert s2.shape == s.shape and s2.nnz == s.nnz
    np.testing.assert_array_equal(s2.to_dense(), w)
    for a in (s.group_ptr, s.window, s.index, s.values):
        assert not a.flags.writeable
    assert s.index.ctypes.data % 64 == 0 and s.values.ctypes.data % 64 == 0


def test_state_arrays_round_trip(rng):
    from sparsekit.runtime.weights import from_state_arrays, state_arrays

    w = random_sparse(rng, 30, 50, 0.3)
    s = SlicedEllMatrix.from_dense(w)
    s2 = from_state_arrays(s, {k: np.array(v) for k, v in state_arrays(s).items()})
    assert isinstance(s2, SlicedEllMatrix)
    np.testing.assert_array_equal(s2.to_dense(), w)


def test_memory_at_90_percent_bert_ffn_up(rng):
    w = random_sparse(rng, 3072, 768, 0.1)
    s = SlicedEllMatrix.from_dense(w)
    assert s.nbytes / w.size < 0.95  # ~0.88: 57% of the slots filled
    assert s.fill > 0.5


def _arrays(s):
    return [np.array(a) for a in (s.group_ptr, s.window, s.index, s.values)]


def _corrupt(rng, what):
    w = random_sparse(rng, 37, 70, 0.3)
    w[0, :3] = 1.0  # row 0 uses columns 0, 1, 2: group 0 lane 0 steps 0-2 hold them
    w[0, 3] = 0.0
    s = SlicedEllMatrix.from_dense(w)
    gp, win, idx, val = _arrays(s)
    if what == "window":
        win[0] = 70 - 31
    elif what == "range":
        win[:] = 0
        idx[0, 0] = (int(idx[0, 0]) & 0xFFFFFF00) | 0x80 | 31
        return (gp, win, idx, val), (37, 20)
    elif what == "bits":
        idx[0, 0] |= 0x40
    elif what == "unused_value":
        idx[0, 0] = int(idx[0, 0]) & 0x00FFFFFF  # step 3 of lane 0: unused
        val[0, 3, 0] = 2.0
    elif what == "duplicate":
        word = int(idx[0, 0])
        idx[0, 0] = (word & 0xFFFF00FF) | ((word & 0xFF) << 8)
    elif what == "past_n":
        g = gp[-1] - 1
        idx[g, 15] = 0x80
        val[g, 0, 15] = 1.0
    elif what == "nan":
        val[0, 0, 0] = np.nan
    elif what == "group_ptr":
        gp[1] = gp[2] + 1
    elif what == "shape":
        return (gp, win, idx[:-1], val), (37, 70)
    return (gp, win, idx, val), (37, 70)


@pytest.mark.parametrize("what, match", [
    ("window", "window: group 0 starts at column 39"),
    ("range", r"column \d+ out of range \[0, 20\)"),
    ("bits", "bits 5-6"),
    ("unused_value", "unused slot .* must hold index byte 0 and value 0"),
    ("duplicate", "repeats a column or breaks a row's column order"),
    ("past_n", "row past N = 37"),
    ("nan", "NaN or infinity"),
    ("group_ptr", "group_ptr: must be non-decreasing"),
    ("shape", r"index: expected shape \(\d+, 16\)"),
])
def test_invalid_layouts_raise(rng, what, match):
    arrays, shape = _corrupt(rng, what)
    with pytest.raises(ValueError, match=match):
        SlicedEllMatrix(arrays, shape)


def test_bad_arguments_raise(rng):
    s = SlicedEllMatrix.from_dense(random_sparse(rng, 20, 40, 0.3))
    gp, win, idx, val = _arrays(s)
    with pytest.raises(TypeError, match="arrays: expected a tuple"):
        SlicedEllMatrix((gp, win), (20, 40))
    with pytest.raises(TypeError, match="index: expected an integer array"):
        SlicedEllMatrix((gp, win, idx.astype(np.float32), val), (20, 40))
    with pytest.raises(ValueError, match="group_ptr: expected shape"):
        SlicedEllMatrix((gp, win, idx, val), (40, 40))
    with pytest.raises(ValueError, match="window: values must fit uint32"):
        SlicedEllMatrix((gp, win.astype(np.int64) - 1, idx, val), (20, 40))
    with pytest.raises(TypeError, match="csr: expected a sparsekit.CSRMatrix"):
        SlicedEllMatrix.from_csr(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="w: contains NaN"):
        SlicedEllMatrix.from_dense(np.full((2, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="x: expected last dimension K = 40"):
        sparsekit.linear(np.zeros((2, 39), np.float32), s)
    with pytest.raises(ValueError, match="bias: expected shape"):
        sparsekit.linear(np.zeros((2, 40), np.float32), s, np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="x: expected a floating-point array"):
        sparsekit.linear(np.zeros((2, 40), np.int32), s)


def test_family_in_info():
    info = sparsekit.info()
    assert "spmv_sell_f32" in info["kernels"]
