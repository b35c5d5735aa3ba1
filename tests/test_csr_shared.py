"""CSRMatrix's shared-column layout (kernels/src/spmm_f32/shared.c): results on
every ISA against a float64 NumPy reference (|err| <= 1e-5 * (sum_k |x_k w_k| + 1)),
where it is built, its bytes, and misuse of the low-level binding."""
import pickle

import numpy as np
import pytest

import sparsekit
from sparsekit import CSRMatrix
from sparsekit._native import core as _core
from conftest import assert_close_f32, random_sparse, reference_linear

pytestmark = pytest.mark.skipif(_core is None, reason="compiled core not built")


def forced(c):
    """c's layout, built even where CSRMatrix would not build it."""
    n, k = c.shape
    return _core.csr_shared_build(c.indptr, c.indices, c.data, n, k, True)


@pytest.mark.parametrize("density", [0.0, 0.1, 0.3, 1.0])
def test_forced_layout_every_isa(isa, rng, density):
    """Groups of 4 rows with 1-3 left over, one or several panels (<= 384 columns),
    full and partial 32-row tiles, quad / pair / single steps (density 1: all
    quads), bias and relu."""
    for m, n, k in [(2, 5, 100), (17, 67, 385), (33, 6, 1000), (130, 70, 400), (64, 131, 20),
                    (70, 300, 700)]:  # 1 thread: W in chunks of 128 rows over the tiles
        w = random_sparse(rng, n, k, density, empty_rows=(0, n // 2))
        c = CSRMatrix.from_dense(w)
        s = forced(c)
        assert s is not None
        x = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        y = _core.linear_csr_f32(c.indptr, c.indices, c.data, n, k, x, b, 1, None, s)
        assert_close_f32(y, reference_linear(x, w, b, relu=True), x, w)
        y = _core.linear_csr_f32_fast(c.indptr, c.indices, c.data, n, k, x, None, 0, s)
        assert_close_f32(y, reference_linear(x, w), x, w)


def test_threads_give_the_same_bits(isa, rng):
    """2 threads: W rows split over threads (M <= 32), whole tiles per thread
    (M = 64 ... 300), a partial last tile: all bit-identical to 1 thread (W
    chunk by chunk over all tiles, the dense layout's order)."""
    w = random_sparse(rng, 300, 700, 0.3, empty_rows=(0, 5, 299))
    c = CSRMatrix.from_dense(w)
    s = forced(c)
    b = rng.standard_normal(300).astype(np.float32)
    for m in (1, 20, 64, 128, 160, 300):
        x = rng.standard_normal((m, 700)).astype(np.float32)
        ys = []
        for threads in (1, 2):
            sparsekit.set_num_threads(threads)
            ys.append(_core.linear_csr_f32(c.indptr, c.indices, c.data, 300, 700, x, b, 1,
                                           None, s))
        np.testing.assert_array_equal(ys[1], ys[0])
        assert_close_f32(ys[0], reference_linear(x, w, b, relu=True), x, w)


def test_opt_in_and_built_where_used(rng):
    plain = CSRMatrix.from_dense(random_sparse(rng, 64, 300, 0.3))
    assert not plain.shared_columns  # never built unless asked for
    dense = plain.with_shared_columns()
    assert dense.data is plain.data and dense.indices is plain.indices  # not copied
    assert dense.with_shared_columns()._shared is dense._shared
    sparse = CSRMatrix.from_dense(random_sparse(rng, 64, 300, 0.05)).with_shared_columns()
    full = CSRMatrix.from_dense(random_sparse(rng, 64, 300, 0.5))  # would outgrow dense
    wide = CSRMatrix.from_dense(random_sparse(rng, 8, 70000, 0.3)).with_shared_columns()
    avx512 = _core.cpu_supports("avx512")
    assert dense.shared_columns == avx512
    assert not (sparse.shared_columns or wide.shared_columns
                or full.with_shared_columns().shared_columns)
    assert forced(full) is not None
    if avx512:  # nbytes counts it: a copy of the values, <= one uint16 per nonzero
        arrays = dense.data.nbytes + dense.indices.nbytes + dense.indptr.nbytes
        assert 4 * dense.nnz <= dense.nbytes - arrays <= 6 * dense.nnz + 4096
        assert dense.nbytes <= 4 * 64 * 300  # no bigger than dense fp32


def test_ninety_percent_bytes(rng):
    """90% sparsity: plain CSR stays <= 0.65 bytes per weight (bert_ffn_up);
    the opt-in layout is built for K > 512 only (~1.2 bytes per weight)."""
    w = random_sparse(rng, 3072, 768, 0.1)
    plain = CSRMatrix.from_dense(w)
    assert plain.nbytes / w.size <= 0.65
    wide = plain.with_shared_columns()
    assert wide.shared_columns == _core.cpu_supports("avx512")
    if wide.shared_columns:
        assert 1.0 <= wide.nbytes / w.size <= 1.3
    narrow = CSRMatrix.from_dense(random_sparse(rng, 1536, 384, 0.1)).with_shared_columns()
    assert not narrow.shared_columns


def test_through_linear_and_pickle(rng):
    w = random_sparse(rng, 131, 800, 0.3, empty_rows=(3, 64))
    c = CSRMatrix.from_dense(w).with_shared_columns()
    x = rng.standard_normal((70, 800)).astype(np.float32)
    y = sparsekit.linear(x, c)
    assert_close_f32(y, reference_linear(x, w), x, w)
    assert_close_f32(sparsekit.linear(x[0], c), reference_linear(x[:1], w)[0], x[:1], w)
    c2 = pickle.loads(pickle.dumps(c))
    assert c2.shared_columns == c.shared_columns
    assert np.array_equal(sparsekit.linear(x, c2), y)
    plain = pickle.loads(pickle.dumps(CSRMatrix.from_dense(w)))
    assert not plain.shared_columns


def test_misuse_of_the_binding(rng):
    c = CSRMatrix.from_dense(random_sparse(rng, 8, 50, 0.5))
    other = CSRMatrix.from_dense(random_sparse(rng, 8, 50, 0.5))
    x = np.ones((4, 50), np.float32)
    with pytest.raises(ValueError, match="shared"):
        _core.linear_csr_f32(c.indptr, c.indices, c.data, 8, 50, x, None, 0, None,
                             forced(other))
    with pytest.raises(TypeError, match="shared"):
        _core.linear_csr_f32(c.indptr, c.indices, c.data, 8, 50, x, None, 0, None, "no")
    with pytest.raises(TypeError, match="shared"):
        _core.linear_csr_f32_fast(c.indptr, c.indices, c.data, 8, 50, x, None, 0, 3)
