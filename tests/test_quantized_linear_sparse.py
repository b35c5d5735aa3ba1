"""sparsekit.quantized_linear with a SparseInt8Matrix: bit-identical to the
same q and scale as a QuantizedMatrix (the dense int8 path, whose epilogue
tests/test_qgemm.py checks against NumPy), on every ISA, for both sparse
kernels (1x4 blocks at small M, the groups-of-4 copy at M >= 17 on VNNI),
fp32 and u8 outputs, per-row and scalar activation parameters."""
import numpy as np
import pytest

import sparsekit
from sparsekit import QuantizedMatrix, SparseInt8Matrix, quantized_linear


def pruned_q(rng, n, k, sparsity, blocks):
    """int8 q [n, k] with `sparsity` zeros: unstructured, or whole 1x4 blocks."""
    q = rng.integers(-127, 128, (n, k)).astype(np.int8)
    if blocks:
        keep = rng.random((n, (k + 3) // 4)) >= sparsity
        q *= np.repeat(keep, 4, axis=1)[:, :k].astype(np.int8)
    else:
        q *= (rng.random((n, k)) >= sparsity).astype(np.int8)
    q[0] = 0  # an empty row
    return q


def both_formats(q, scale):
    return SparseInt8Matrix.from_int8(q, scale), QuantizedMatrix.from_int8(q, scale)


@pytest.mark.parametrize("m", [0, 1, 3, 16, 17, 70])
@pytest.mark.parametrize("sparsity,blocks", [(0.9, False), (0.7, False), (0.8, True)])
def test_fp32_out_matches_dense_int8_bit_for_bit(isa, m, sparsity, blocks):
    rng = np.random.default_rng(m + int(sparsity * 10) + blocks)
    n, k = 37, 131
    q = pruned_q(rng, n, k, sparsity, blocks)
    sw, dw = both_formats(q, (rng.random(n) + 0.5).astype(np.float32) * 0.01)
    xq = rng.integers(0, 256, (m, k)).astype(np.uint8)
    xs = (rng.random(m) + 0.5).astype(np.float32) * 0.05
    xz = rng.integers(0, 256, m)
    bias = rng.standard_normal(n).astype(np.float32)
    for act in (None, "relu", "gelu"):
        for b in (None, bias):
            got = quantized_linear(xq, xs, xz, sw, bias=b, activation=act)
            want = quantized_linear(xq, xs, xz, dw, bias=b, activation=act)
            assert got.dtype == np.float32 and got.shape == (m, n)
            np.testing.assert_array_equal(
                got, want, err_msg=f"isa={isa} m={m} n={n} k={k} sparsity={sparsity} "
                                   f"blocks={blocks} bias={b is not None} act={act} out=f32")


@pytest.mark.parametrize("m", [1, 5, 40])
def test_u8_out_matches_dense_int8_bit_for_bit(isa, m):
    rng = np.random.default_rng(7 + m)
    n, k = 45, 70
    q = pruned_q(rng, n, k, 0.85, False)
    sw, dw = both_formats(q, 0.013)  # per tensor
    xq = rng.integers(0, 256, (m, k)).astype(np.uint8)
    bias = rng.standard_normal(n).astype(np.float32) * 3
    for act in (None, "relu"):
        # a small out_scale saturates many outputs at 0 and 255: the clamps are checked too
        for out_scale, out_zp in ((0.02, 128), (0.5, 3)):
            got = quantized_linear(xq, 0.04, 17, sw, bias=bias, activation=act,
                                   out_scale=out_scale, out_zero_point=out_zp)
            want = quantized_linear(xq, 0.04, 17, dw, bias=bias, activation=act,
                                    out_scale=out_scale, out_zero_point=out_zp)
            assert got.dtype == np.uint8
            np.testing.assert_array_equal(
                got, want, err_msg=f"isa={isa} m={m} n={n} k={k} bias=True act={act} out=u8 "
                                   f"scale={out_scale} zp={out_zp}")
            if act is None and out_scale == 0.02:
                assert (got == 0).any() and (got == 255).any()


def test_against_the_formula():
    """Independent of the dense path: the formula written out in float64 gives
    the same values within float32 rounding, and the lead shape is kept."""
    rng = np.random.default_rng(3)
    q = pruned_q(rng, 12, 40, 0.8, False)
    scale = (rng.random(12) + 0.5).astype(np.float32) * 0.02
    w = SparseInt8Matrix.from_int8(q, scale)
    xq = rng.integers(0, 256, (2, 3, 40)).astype(np.uint8)
    got = quantized_linear(xq, 0.1, 100, w, activation="relu")
    acc = (xq.astype(np.int64) - 100) @ q.astype(np.int64).T
    want = np.maximum(acc * (0.1 * scale.astype(np.float64)), 0)
    assert got.shape == (2, 3, 12)
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(np.float32).eps, atol=0)


def test_relu_and_requantize_edge_values():
    """NaN bias: relu gives 0 as the C epilogue does (y > 0 ? y : 0); the u8
    requantization of a NaN gives 0 on both paths."""
    q = np.zeros((3, 8), dtype=np.int8)
    q[1, 2] = 5
    sw, dw = both_formats(q, 0.5)
    xq = np.full((2, 8), 9, dtype=np.uint8)
    bias = np.array([np.nan, -0.0, np.inf], dtype=np.float32)
    for kw in ({"activation": "relu"}, {"out_scale": 0.1, "out_zero_point": 4}):
        got = quantized_linear(xq, 0.25, 1, sw, bias=bias, **kw)
        want = quantized_linear(xq, 0.25, 1, dw, bias=bias, **kw)
        np.testing.assert_array_equal(got, want)
    relu = quantized_linear(xq, 0.25, 1, sw, bias=bias, activation="relu")
    assert relu[0, 0] == 0 and not np.signbit(relu[0, 0])


def test_errors_name_the_argument():
    w = SparseInt8Matrix.from_int8(np.eye(4, dtype=np.int8), 1.0)
    xq = np.zeros((2, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="out_scale/out_zero_point"):
        quantized_linear(xq, 1.0, 0, w, out_scale=1.0)
    with pytest.raises(ValueError, match="out_scale"):
        quantized_linear(xq, 1.0, 0, w, out_scale=-1.0, out_zero_point=0)
    with pytest.raises(ValueError, match="xq"):
        quantized_linear(np.zeros((2, 5), dtype=np.uint8), 1.0, 0, w)
    with pytest.raises(TypeError, match="qw: expected a QuantizedMatrix or SparseInt8Matrix"):
        quantized_linear(xq, 1.0, 0, sparsekit.CSRMatrix.from_dense(np.eye(4, dtype=np.float32)))
