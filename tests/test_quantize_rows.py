"""quantize_rows: bit-identical to its NumPy statement on every ISA (ties,
extremes, all-zero rows, one-sign rows, tails), static mode, bad input."""
import numpy as np
import pytest

import sparsekit
from sparsekit.quant_ops import quantize_rows_reference


def _assert_same(got, ref):
    for g, r, name in zip(got, ref, ("xq", "scale", "zero_point")):
        assert g.dtype == r.dtype, name
        assert g.shape == r.shape, name
        assert np.array_equal(g.view(np.uint8) if g.dtype == np.float32 else g,
                              r.view(np.uint8) if r.dtype == np.float32 else r), name


def _tricky_rows(rng, k):
    rows = [
        rng.standard_normal(k),
        rng.standard_normal(k) * 1e-3,
        np.abs(rng.standard_normal(k)) * 7,       # all positive: zero point 0
        -np.abs(rng.standard_normal(k)) * 7,      # all negative: zero point 255
        np.zeros(k),                              # all zero: scale 1, zp 0
        np.full(k, -0.0),
        rng.integers(-255, 256, k) / 2.0,         # many exact .5 ties
        np.where(rng.random(k) < 0.5, 3e38, -3e38),  # huge range
        rng.standard_normal(k) * 1e-40,           # subnormal
        np.full(k, 2.5),
    ]
    return np.stack(rows).astype(np.float32)


@pytest.mark.parametrize("k", [1, 3, 7, 8, 15, 16, 17, 31, 33, 100, 769])
def test_matches_reference_bit_for_bit(isa, rng, k):
    x = np.concatenate([_tricky_rows(rng, k),
                        rng.standard_normal((13, k)).astype(np.float32) * 3])
    _assert_same(sparsekit.quantize_rows(x), quantize_rows_reference(x))


def test_threaded_rows_match(isa, rng):
    x = rng.standard_normal((300, 701)).astype(np.float32)  # big enough to split
    before = sparsekit.get_num_threads()
    try:
        sparsekit.set_num_threads(2)
        _assert_same(sparsekit.quantize_rows(x), quantize_rows_reference(x))
    finally:
        sparsekit.set_num_threads(before)


def test_ties_round_half_to_even(isa):
    # range [-127.5, 0] -> scale 0.5: x/scale hits exact .5 ties
    x = np.array([[-127.5, -0.25, -0.75, -1.25, 0.0]], dtype=np.float32)
    xq, s, z = sparsekit.quantize_rows(x)
    assert s[0] == np.float32(0.5) and z[0] == 255
    assert xq.tolist() == [[0, 255 + int(np.rint(-0.5)), 255 + int(np.rint(-1.5)),
                            255 + int(np.rint(-2.5)), 255]]


def _near_ties(rng, s, shape, lim=127):
    """float32 values, about 1 in 40 with x / s within 3 ulps (of x) of a .5
    tie, the rest random in the same range (the SIMD quantizers' reciprocal
    shortcut must defer to the division exactly at those, and a block of
    values goes one way or the other: near ties must be sparse to be seen)."""
    half = rng.integers(-lim, lim, shape) + 0.5
    out = (half * np.float64(s)).astype(np.float32)
    steps = rng.integers(-3, 4, shape)
    for _ in range(3):
        move = steps != 0
        out[move] = np.nextafter(out[move], np.where(steps[move] > 0, np.inf, -np.inf)
                                 ).astype(np.float32)
        steps = steps - np.sign(steps)
    spread = (rng.random(shape) * 2 - 1) * np.float32(lim * s)
    return np.where(rng.random(shape) < 1 / 40, out, spread).astype(np.float32)


@pytest.mark.parametrize("k", [64, 200, 1000])
def test_near_ties_match_division(isa, rng, k):
    # dynamic: each row spans [-127.5, 127.5] * s -> scale ~s, zero point 128
    s = np.float32(0.0137)
    x = _near_ties(rng, s, (12, k))
    x[:, 0] = np.float32(-127.5 * s)
    x[:, 1] = np.float32(127.5 * s)
    _assert_same(sparsekit.quantize_rows(x), quantize_rows_reference(x))
    # static: quotients up to +-600 (beyond the clamp) next to ties
    st = _near_ties(rng, s, (12, k), lim=600)
    xq = sparsekit.quantize_rows(st, scale=float(s), zero_point=77)[0]
    assert np.array_equal(xq, np.clip(np.rint(st / s) + np.float32(77), 0, 255).astype(np.uint8))


def test_dequantize_error_within_half_step(isa, rng):
    x = rng.standard_normal((20, 300)).astype(np.float32) * 5
    xq, s, z = sparsekit.quantize_rows(x)
    back = (xq.astype(np.float64) - z[:, None]) * s[:, None]
    assert np.all(np.abs(back - x) <= 0.5 * s[:, None] * (1 + 1e-5))
    assert np.all(z >= 0) and np.all(z <= 255)


def test_shapes_and_layouts(rng):
    x = rng.standard_normal((2, 3, 10)).astype(np.float32)
    xq, s, z = sparsekit.quantize_rows(x)
    assert xq.shape == (2, 3, 10) and s.shape == (2, 3) and z.shape == (2, 3)
    one, s1, z1 = sparsekit.quantize_rows(x[0, 0])
    assert one.shape == (10,) and s1.shape == () and np.array_equal(one, xq[0, 0])
    strided = np.asfortranarray(rng.standard_normal((9, 20)).astype(np.float32))
    _assert_same(sparsekit.quantize_rows(strided), quantize_rows_reference(strided))
    sliced = rng.standard_normal((9, 40)).astype(np.float32)[:, 5:25]
    _assert_same(sparsekit.quantize_rows(sliced), quantize_rows_reference(sliced))
    xd = rng.standard_normal((4, 5))  # float64 converted to float32 first
    _assert_same(sparsekit.quantize_rows(xd), quantize_rows_reference(xd.astype(np.float32)))
    empty = sparsekit.quantize_rows(np.zeros((0, 5), np.float32))
    assert empty[0].shape == (0, 5) and empty[1].shape == (0,)
    zk = sparsekit.quantize_rows(np.zeros((3, 0), np.float32))
    assert zk[1].tolist() == [1.0, 1.0, 1.0] and zk[2].tolist() == [0, 0, 0]


def test_static_mode(isa, rng):
    x = rng.standard_normal((7, 37)).astype(np.float32) * 4
    x[0, :4] = [1e30, -1e30, 0.0, 0.125]
    xq, s, z = sparsekit.quantize_rows(x, scale=0.03, zero_point=100)
    s32 = np.float32(0.03)
    ref = np.clip(np.rint(x / s32) + np.float32(100), 0, 255).astype(np.uint8)
    assert np.array_equal(xq, ref)
    assert s.dtype == np.float32 and np.all(s == s32) and np.all(z == 100)


def test_bad_input():
    x = np.ones((2, 4), np.float32)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[1, 3] = bad
        with pytest.raises(ValueError, match="x: contains NaN"):
            sparsekit.quantize_rows(y)
        with pytest.raises(ValueError, match="x: contains NaN"):
            sparsekit.quantize_rows(y, scale=0.1, zero_point=3)
    with pytest.raises(TypeError, match="x"):
        sparsekit.quantize_rows(np.ones((2, 4), np.int32))
    with pytest.raises(ValueError, match="x"):
        sparsekit.quantize_rows(np.float32(1.0))
    with pytest.raises(ValueError, match="scale/zero_point"):
        sparsekit.quantize_rows(x, scale=0.1)
    with pytest.raises(ValueError, match="^scale: "):
        sparsekit.quantize_rows(x, scale=0.0, zero_point=0)
    with pytest.raises(ValueError, match="^scale: "):
        sparsekit.quantize_rows(x, scale=np.inf, zero_point=0)
    with pytest.raises(ValueError, match="^zero_point: "):
        sparsekit.quantize_rows(x, scale=1.0, zero_point=256)
    with pytest.raises(TypeError, match="^zero_point: "):
        sparsekit.quantize_rows(x, scale=1.0, zero_point=1.5)


@pytest.mark.parametrize("m", [1, 2, 9, 16, 17, 35])
@pytest.mark.parametrize("k", [1, 5, 63, 64, 65, 200])
def test_row_blocks_match_reference(isa, rng, m, k):
    """Row blocks (a row's range is found while the previous one is quantized):
    neighbours with very different ranges, constant / zero / one-sign rows, at
    every position in a block, tails in M and K."""
    kinds = [lambda: rng.standard_normal(k) * 10.0 ** rng.integers(-3, 4),
             lambda: np.full(k, rng.standard_normal()),
             lambda: np.zeros(k),
             lambda: np.abs(rng.standard_normal(k)),
             lambda: -np.abs(rng.standard_normal(k)) * 1e4,
             lambda: np.where(rng.random(k) < 0.5, 3e38, -3e38),
             lambda: rng.integers(-255, 256, k) / 2.0]
    x = np.stack([kinds[rng.integers(len(kinds))]() for _ in range(m)]).astype(np.float32)
    _assert_same(sparsekit.quantize_rows(x), quantize_rows_reference(x))
    strided = np.zeros((m, k + 7), np.float32)[:, 3:3 + k]
    strided[:] = x
    _assert_same(sparsekit.quantize_rows(strided), quantize_rows_reference(x))


@pytest.mark.parametrize("bad", [np.nan, -np.nan, np.inf, -np.inf])
def test_row_blocks_report_nonfinite_anywhere(isa, rng, bad):
    x = rng.standard_normal((19, 70)).astype(np.float32)
    for i, j in ((0, 0), (1, 69), (8, 33), (15, 64), (18, 5)):
        y = x.copy()
        y[i, j] = bad
        with pytest.raises(ValueError, match="x: contains NaN"):
            sparsekit.quantize_rows(y)
