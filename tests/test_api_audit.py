"""API problems found by the docs audit, one test (or a few) per fix."""
import os
import subprocess
import sys

import numpy as np
import pytest

import sparsekit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code, *args):
    """stdout of a fresh interpreter running `code` (or `-m` args) on this checkout."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-c", code] if code is not None else [sys.executable, *args]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


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


# ---- sparsekit.compress and sparsekit.datasets load on first use ------------
def test_compress_and_datasets_are_lazy_attributes():
    code = ("import sys, sparsekit\n"
            "print(sorted(m for m in ('torch', 'sparsekit.compress', 'sparsekit.datasets')"
            " if m in sys.modules))\n"
            "print(len(sparsekit.datasets.SENTENCES) > 0)\n"
            "print(callable(sparsekit.compress.prune))\n")
    out = _run(code)
    assert out.splitlines() == ["[]", "True", "True"]


def test_unknown_attribute_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        sparsekit.nonexistent
