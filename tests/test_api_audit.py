"""API problems found by the docs audit, one test (or a few) per fix."""
import numpy as np
import pytest

import sparsekit


# ---- empty Python lists are index arrays ------------------------------------
def test_empty_lists_are_accepted_as_index_arrays():
    w = sparsekit.CSRMatrix(([], [], [0, 0]), (1, 4))
    assert w.nnz == 0
    np.testing.assert_array_equal(w.to_dense(), np.zeros((1, 4), np.float32))
    s = sparsekit.SlicedEllMatrix(([0], [], [], []), (0, 4))
    assert s.shape == (0, 4) and s.nnz == 0
    s = sparsekit.SlicedEllMatrix(([0, 0], [], [], []), (3, 4))
    np.testing.assert_array_equal(s.to_dense(), np.zeros((3, 4), np.float32))


def test_non_empty_float_index_arrays_are_still_refused():
    with pytest.raises(TypeError, match="^indices: expected an integer array"):
        sparsekit.CSRMatrix(([1.0], [0.0], [0, 1]), (1, 4))
    with pytest.raises(TypeError, match="^indptr: expected an integer array"):
        sparsekit.CSRMatrix(([], [], [0.0, 0.0]), (1, 4))
    with pytest.raises(TypeError, match="^group_ptr: expected an integer array"):
        sparsekit.SlicedEllMatrix(([0.0], [], [], []), (0, 4))
