"""pytest-benchmark suite: fp32 CSR linear, sparsekit vs dense and sparse peers.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest benchmarks/bench_spmm.py

Not collected by a plain `python -m pytest` (testpaths = ["tests"]); name the
file. Each (shape, M, sparsity) is one pytest-benchmark group, so the table
compares the systems side by side. Everything runs on 1 thread. These are
benchmarks, not tests: nothing asserts a time; each case checks its result
against a float64 reference once so a wrong fast path cannot look good.
For ratios measured interleaved in one run, use sparse_vs_dense.py.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sparse_vs_dense as svd  # noqa: E402

import sparsekit  # noqa: E402

CASES = [(shape, m, sp) for shape in svd.SHAPES for m in (1, 128) for sp in (0.7, 0.9)]
IDS = [f"{shape}-M{m}-s{sp}" for shape, m, sp in CASES]


@pytest.fixture(autouse=True)
def one_thread():
    with threadpool_limits(limits=1):
        svd.set_threads(1)
        yield


def _run(benchmark, system, shape, m, sparsity):
    n, k = svd.SHAPES[shape]
    rng = np.random.default_rng(0)
    w = svd.random_sparse_weight(rng, n, k, sparsity)
    x = rng.standard_normal((m, k)).astype(np.float32)
    fn, note = svd.MAKERS[system](w, x, 1)
    if fn is None:
        pytest.skip(note)
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    np.testing.assert_allclose(np.asarray(fn(), np.float64).reshape(m, n), ref,
                               rtol=1e-3, atol=1e-3)
    benchmark.group = f"{shape} M={m} sparsity={sparsity}"
    benchmark.extra_info.update(system=system, note=note)
    benchmark(fn)


# every system on every case; the group puts them side by side
@pytest.mark.parametrize("system", list(svd.MAKERS))
@pytest.mark.parametrize("shape,m,sparsity", CASES, ids=IDS)
def test_system(benchmark, shape, m, sparsity, system):
    _run(benchmark, system, shape, m, sparsity)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", list(svd.SHAPES))
def test_sparsekit_threads(benchmark, shape, threads):
    """M=128, 90% sparse at 1 and 2 threads (group per shape)."""
    n, k = svd.SHAPES[shape]
    rng = np.random.default_rng(0)
    c = sparsekit.CSRMatrix.from_dense(svd.random_sparse_weight(rng, n, k, 0.9))
    x = rng.standard_normal((128, k)).astype(np.float32)
    with threadpool_limits(limits=threads):
        sparsekit.set_num_threads(threads)
        benchmark.group = f"{shape} M=128 sparsity=0.9 threads"
        benchmark(sparsekit.linear, x, c)
