"""CSRMatrix: construction, validation errors, conversions, pickling, memory."""
import pickle

import numpy as np
import pytest
import scipy.sparse

from sparsekit import CSRMatrix
from conftest import random_sparse


def test_from_dense_round_trip(rng):
    w = random_sparse(rng, 37, 53, 0.2, empty_rows=(0, 5, 36))
    c = CSRMatrix.from_dense(w)
    assert c.shape == (37, 53)
    assert c.nnz == np.count_nonzero(w)
    assert c.density == pytest.approx(np.count_nonzero(w) / w.size)
    np.testing.assert_array_equal(c.to_dense(), w)
    assert c.indices.dtype == np.uint16 and c.data.dtype == np.float32
    assert c.indptr.dtype == np.int64


def test_wide_k_uses_int32_indices():
    w = np.zeros((2, 70000), np.float32)
    w[0, 69999] = 1.0
    w[1, 3] = 2.0
    c = CSRMatrix.from_dense(w)
    assert c.indices.dtype == np.int32
    np.testing.assert_array_equal(c.to_dense(), w)


def test_scipy_round_trip_sums_duplicates(rng):
    m = scipy.sparse.random(20, 30, density=0.3, format="coo", random_state=1,
                            dtype=np.float32)
    dup = scipy.sparse.coo_matrix((np.r_[m.data, [1.0]], (np.r_[m.row, [0]],
                                   np.r_[m.col, [0]])), shape=m.shape)
    c = CSRMatrix.from_scipy(dup)
    np.testing.assert_allclose(c.to_dense(), dup.toarray(), rtol=1e-6)
    back = c.to_scipy()
    np.testing.assert_allclose(back.toarray(), dup.toarray(), rtol=1e-6)


def test_empty_and_dense_extremes():
    z = CSRMatrix.from_dense(np.zeros((4, 5), np.float32))
    assert z.nnz == 0 and z.density == 0.0
    d = CSRMatrix.from_dense(np.ones((4, 5), np.float32))
    assert d.nnz == 20 and d.density == 1.0
    e = CSRMatrix.from_dense(np.zeros((0, 5), np.float32))
    assert e.shape == (0, 5) and e.nnz == 0


def test_pickle(rng):
    c = CSRMatrix.from_dense(random_sparse(rng, 9, 11, 0.4))
    c2 = pickle.loads(pickle.dumps(c))
    np.testing.assert_array_equal(c2.to_dense(), c.to_dense())
    assert c2.indices.dtype == c.indices.dtype


def test_arrays_are_read_only_and_inputs_untouched(rng):
    data = np.array([1.0, 2.0], np.float32)
    c = CSRMatrix((data, [0, 1], [0, 1, 2]), shape=(2, 2))
    with pytest.raises(ValueError):
        c.data[0] = 5.0
    data[0] = 7.0  # the matrix holds its own copy
    assert c.data[0] == 1.0 and data.flags.writeable


def test_memory_at_90_percent_bert_ffn_up(rng):
    w = random_sparse(rng, 3072, 768, 0.1)
    c = CSRMatrix.from_dense(w)
    assert c.nbytes / w.size <= 0.65


@pytest.mark.parametrize("arrays, shape, match", [
    (([1.0], [5], [0, 1]), (1, 4), "out of range"),
    (([1.0], [-1], [0, 1]), (1, 4), "out of range"),
    (([1.0, 2.0], [2, 1], [0, 2]), (1, 4), "unsorted"),
    (([1.0, 2.0], [1, 1], [0, 2]), (1, 4), "duplicate"),
    (([1.0, 2.0], [1, 2], [0, 2, 1]), (2, 4), "non-decreasing"),
    (([1.0, 2.0], [1, 2], [1, 2]), (1, 4), "start at 0"),
    (([1.0], [1], [0, 1, 1, 1]), (2, 4), "length N \\+ 1"),
    (([1.0, 2.0], [1], [0, 2]), (1, 4), "expected 2 entries"),
    (([np.nan], [1], [0, 1]), (1, 4), "NaN"),
    (([1.0], [1], [0, 1]), (-1, 4), "non-negative"),
])
def test_invalid_csr_raises(arrays, shape, match):
    with pytest.raises(ValueError, match=match):
        CSRMatrix(arrays, shape)


def test_nan_indices_and_wrong_types_raise():
    with pytest.raises(TypeError, match="indices"):
        CSRMatrix(([1.0], [np.nan], [0, 1]), (1, 4))
    with pytest.raises(TypeError, match="data"):
        CSRMatrix((["a"], [1], [0, 1]), (1, 4))
    with pytest.raises(TypeError, match="w"):
        CSRMatrix.from_dense(np.ones((2, 2), dtype=np.int32))
    with pytest.raises(ValueError, match="w"):
        CSRMatrix.from_dense(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="m"):
        CSRMatrix.from_scipy(np.ones((2, 2)))
    with pytest.raises(TypeError, match="shape"):
        CSRMatrix(([1.0], [1], [0, 1]), "ab")


def test_unsorted_duplicate_within_row_not_across_rows():
    # column 3 ends row 0 and column 0 starts row 1: fine across rows
    c = CSRMatrix(([1.0, 2.0, 3.0], [0, 3, 0], [0, 2, 3]), (2, 4))
    np.testing.assert_array_equal(c.to_dense(), [[1, 0, 0, 2], [3, 0, 0, 0]])
    # empty rows in between do not hide an unsorted pair
    with pytest.raises(ValueError, match="unsorted"):
        CSRMatrix(([1.0, 2.0, 3.0], [0, 3, 2], [0, 0, 3, 3]), (3, 4))
