"""PackedDenseMatrix (gemm_f32): against a float64 NumPy reference on every ISA,
shapes with tails on every axis (N around the 32-column panel and its 16-column
halves, M around the 12-row AVX-512 and 6-row AVX2 tiles and the X block, K = 0,
1, odd), bias, relu / gelu, NaN, strided rows; round trips (to_dense, pickle,
sparsekit.save); bad input. Tolerance: 1e-5 x (sum_k |x w| + 1)
(conftest.assert_close_f32; GELU + 1e-6 |y|). The activations are exact: relu
is max(y, 0) and gelu is core.gelu_f32 (sk_gelu_f32) of the act-free output, bit
for bit (the driver runs that kernel on each finished tile)."""
import math
import pickle

import numpy as np
import pytest

import sparsekit
from sparsekit._dense_f32 import PackedDenseMatrix, wanted
from sparsekit._native import AVAILABLE, core

from conftest import assert_close_f32, reference_linear

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="needs the compiled C core")


def _gelu(y):
    return np.vectorize(lambda v: 0.5 * v * math.erfc(-v / math.sqrt(2)), otypes=[np.float64])(y)


@pytest.mark.parametrize("n, k", [(1, 1), (9, 3), (16, 8), (17, 9), (31, 7), (32, 16),
                                  (33, 5), (70, 129), (64, 0), (5, 2000)])
def test_matches_reference_on_every_isa(isa, rng, n, k):
    w = rng.standard_normal((n, k)).astype(np.float32)
    p = PackedDenseMatrix(w)
    bias = rng.standard_normal(n).astype(np.float32)
    # M: 0, 1, a partial tile, one tile +- 1, several tiles and X blocks (K = 2000:
    # 8 rows fill a block, so 25 rows are 4 balanced blocks)
    for m in (0, 1, 5, 6, 7, 11, 12, 13, 25, 40):
        x = rng.standard_normal((m, k)).astype(np.float32)
        case = f"isa={isa} m={m} n={n} k={k}"
        assert_close_f32(sparsekit.linear(x, p), reference_linear(x, w), x, w)
        plain = sparsekit.linear(x, p, bias)
        got = sparsekit.linear(x, p, bias, "relu")
        assert_close_f32(got, reference_linear(x, w, bias, relu=True), x, w)
        assert np.array_equal(got, np.maximum(plain, 0)), f"{case} bias relu != max(y, 0)"
        got = sparsekit.linear(x, p, bias, "gelu")
        ref = _gelu(reference_linear(x, w, bias))
        scale = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T + 1.0
        assert np.all(np.abs(got - ref) <= 1e-5 * scale + 1e-6 * np.abs(ref)), f"{case} gelu"
        # exact: the same pre-activation, then the ISA's sk_gelu_f32 kernel
        core.gelu_f32(plain)
        assert np.array_equal(got.view(np.uint32), plain.view(np.uint32)), \
            f"{case} bias gelu != gelu_f32(act-free output) bit for bit"


def test_rows_with_a_stride_and_nan(isa, rng):
    w = rng.standard_normal((40, 24)).astype(np.float32)
    p = PackedDenseMatrix(w)
    big = rng.standard_normal((15, 30)).astype(np.float32)
    x = big[:, 3:27]  # unit-stride rows, row stride 30
    assert_close_f32(core.linear_gemm_f32(p._packed, 40, 24, x, None, 0),
                     reference_linear(x, w), x, w)
    x = np.ascontiguousarray(x)
    x[2, 5] = np.nan
    y = sparsekit.linear(x, p, None, "relu")
    assert np.isnan(y[2]).all() and not np.isnan(np.delete(y, 2, 0)).any()


def test_every_isa_agrees_with_the_runtime_linear(rng):
    """runtime.Linear takes the format (its lean path) as any other."""
    from sparsekit.runtime import Linear

    w = rng.standard_normal((48, 20)).astype(np.float32)
    b = rng.standard_normal(48).astype(np.float32)
    x = rng.standard_normal((2, 7, 20)).astype(np.float32)
    got = Linear(PackedDenseMatrix(w), b, "gelu")(x)
    want = Linear(w, b, "gelu")(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_numba_backend_runs_numpy_on_the_values(rng):
    """sparsekit.pack may return a PackedDenseMatrix: backend="numba" still works."""
    w = rng.standard_normal((20, 9)).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    x = rng.standard_normal((4, 9)).astype(np.float32)
    p = PackedDenseMatrix(w)
    for act in (None, "relu", "gelu"):
        np.testing.assert_array_equal(sparsekit.linear(x, p, b, act, backend="numba"),
                                      sparsekit.linear(x, w, b, act, backend="numba"))


def test_round_trips(rng, tmp_path):
    from sparsekit.runtime import Linear, Model
    from sparsekit.runtime import weights as W

    w = rng.standard_normal((45, 19)).astype(np.float32)
    p = PackedDenseMatrix(w)
    np.testing.assert_array_equal(p.to_dense(), w)
    np.testing.assert_array_equal(np.asarray(p), w)
    assert p.shape == (45, 19) and p.nbytes == 64 * 19 * 4  # N padded to 2 panels
    q = pickle.loads(pickle.dumps(p))
    assert type(q) is PackedDenseMatrix and np.array_equal(q.to_dense(), w)
    assert W.describe(p) == "dense fp32"
    assert np.array_equal(W.from_state_arrays(p, W.state_arrays(p)).to_dense(), w)
    np.testing.assert_array_equal(PackedDenseMatrix(np.zeros((3, 0), np.float32)).to_dense(),
                                  np.zeros((3, 0), np.float32))
    m = Model([Linear(p)])
    path = str(tmp_path / "m.spk")
    sparsekit.save(m, path)
    back = sparsekit.load(path)
    kept = back.layers[0].weight
    assert type(kept) is (PackedDenseMatrix if wanted() else np.ndarray)
    x = rng.standard_normal((3, 19)).astype(np.float32)
    np.testing.assert_array_equal(back(x), m(x))


def test_bad_input(rng):
    with pytest.raises(TypeError, match="^w: "):
        PackedDenseMatrix(np.ones((3, 4), np.int32))
    with pytest.raises(ValueError, match="^w: "):
        PackedDenseMatrix(np.ones((3, 4, 5), np.float32))
    p = PackedDenseMatrix(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="x: expected last dimension K = 4"):
        sparsekit.linear(np.ones((2, 5), np.float32), p)
    with pytest.raises(ValueError, match="^bias"):
        sparsekit.linear(np.ones((2, 4), np.float32), p, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="^packed: "):  # the binding checks sizes itself
        core.linear_gemm_f32(p._packed, 40, 4, np.ones((2, 4), np.float32), None, 0)
    with pytest.raises(ValueError, match="^activation: "):
        core.linear_gemm_f32(p._packed, 3, 4, np.ones((2, 4), np.float32), None, 3)
    with pytest.raises(ValueError, match="^values: "):
        PackedDenseMatrix._from_state_arrays((3, 4), {"values": np.ones((4, 3), np.float32)})


def test_wanted_follows_the_kernel_isa():
    before = sparsekit.get_isa()
    try:
        sparsekit.set_isa("scalar")
        assert not wanted() and core.family_isa("gemm_f32") == "scalar"
        if core.cpu_supports("avx512"):
            sparsekit.set_isa("avx512")
            assert wanted()
        if core.cpu_supports("avx2"):
            # the AVX2 kernel beats an AVX2 BLAS, not the AVX-512 one a CPU with
            # AVX-512 runs NumPy on
            sparsekit.set_isa("avx2")
            assert core.family_isa("gemm_f32") == "avx2"
            assert wanted() == (not core.cpu_supports("avx512"))
    finally:
        sparsekit.set_isa(before)


def test_threads_split_panels_bit_for_bit(isa, rng):
    """Threads take whole panels: each output is the same sum in the same order."""
    w = rng.standard_normal((200, 96)).astype(np.float32)  # 7 panels, the last partial
    p = PackedDenseMatrix(w)
    x = rng.standard_normal((30, 96)).astype(np.float32)
    before = sparsekit.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            sparsekit.set_num_threads(t)
            outs.append(sparsekit.linear(x, p, None, "gelu"))
    finally:
        sparsekit.set_num_threads(before)
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])


@pytest.mark.parametrize("m, n, k", [(70, 200, 1500), (37, 33, 384), (61, 97, 800),
                                     (300, 70, 17), (25, 40, 2000)])
def test_threads_bit_for_bit_over_blocks(isa, rng, m, n, k):
    """One region over all X blocks: threads pack k ranges of a block and take
    whole (panel, tile) units; the outputs do not depend on the thread count.
    Shapes: several blocks of 12 rows with a short last panel (70 x 200 x 1500),
    two blocks of two tiles, an odd panel count, K = 17 (a thread packs no k),
    M with uneven tiles."""
    w = rng.standard_normal((n, k)).astype(np.float32)
    p = PackedDenseMatrix(w)
    bias = rng.standard_normal(n).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    before = sparsekit.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            sparsekit.set_num_threads(t)
            outs.append([sparsekit.linear(x, p, bias), sparsekit.linear(x, p, None, "gelu"),
                         sparsekit.linear(x[:, :], p, bias, "relu")])
    finally:
        sparsekit.set_num_threads(before)
    assert_close_f32(outs[0][0], reference_linear(x, w, bias), x, w)
    for got in outs[1:]:
        for a, b in zip(got, outs[0]):
            np.testing.assert_array_equal(a, b)
