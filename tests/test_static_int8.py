"""SparseInt8Matrix.with_static_input: static (calibrated, per-tensor) u8
activations for a pruned int8 weight.

Tolerance: bit-identical to quantize_rows(x, scale, zero_point) + int8_matmul +
the float32 epilogue written out in NumPy (the integers are exact, the
epilogue is the same float32 operations); against the dense QuantizedMatrix
static path and a float64 scaling of the exact integers, 4 float32 eps
relative (as tests/test_qgemm.py asserts for QuantizedMatrix).
"""
import pickle

import numpy as np
import pytest

import sparsekit
from sparsekit import QuantizedMatrix, SparseInt8Matrix, int8_matmul, quantize_rows

EPS32 = float(np.finfo(np.float32).eps)


def _pruned(rng, n, k, density, blocks=False):
    w = rng.standard_normal((n, k)).astype(np.float32)
    if blocks:  # 1x4 blocks: well filled, the 1x4 kernel (no g4 copy)
        kq = (k + 3) // 4
        keep = np.repeat(rng.random((n, kq)) < density, 4, axis=1)[:, :k]
        w[~keep] = 0
    else:
        w[rng.random((n, k)) >= density] = 0
    if n > 2:
        w[2] = 0  # an empty row
    return w


def _static_ref(x, w, scale, zp, bias, relu):
    """The documented statement of SparseInt8Matrix's static linear."""
    xq, _, _ = quantize_rows(x, scale, zp)
    acc = int8_matmul(xq, zp, w).astype(np.float32)
    y = acc * (np.float32(scale) * np.asarray(w.scale, np.float32))
    if bias is not None:
        y = y + bias
    return np.maximum(y, 0) if relu else y


# ---- SparseInt8Matrix.with_static_input -------------------------------------

@pytest.mark.parametrize("blocks", [False, True])
def test_sparse_static_bit_identical_to_quantize_then_int8_matmul(isa, rng, blocks):
    for n, k in ((37, 70), (16, 64), (5, 3), (64, 129)):
        w = _pruned(rng, n, k, 0.15 if not blocks else 0.4, blocks)
        for per_channel in (True, False):
            base = SparseInt8Matrix.from_float(w, per_channel=per_channel)
            for scale, zp in ((0.021, 117), (0.05, 0), (0.003, 255)):
                sw = base.with_static_input(scale, zp)
                assert sw.input_scale == float(np.float32(scale)) and sw.input_zero_point == zp
                for m in (1, 3, 40, 100):  # 1x4 tiles, g4 tiles (M >= 17) and M == 1
                    x = (rng.standard_normal((m, k)) * 1.5).astype(np.float32)
                    x[0, : min(k, 3)] = (-1e3, 1e3, 0.0)[: min(k, 3)]  # clipped to 0 / 255
                    bias = rng.standard_normal(n).astype(np.float32)
                    for b, act in ((None, None), (bias, "relu"), (bias, None)):
                        got = sparsekit.linear(x, sw, b, activation=act)
                        want = _static_ref(x, sw, scale, zp, b, act == "relu")
                        assert got.dtype == np.float32 and got.shape == (m, n)
                        np.testing.assert_array_equal(got, want)


def test_sparse_static_matches_dense_static_and_float64(isa, rng):
    """The same int8 weight as QuantizedMatrix (dense kernels) with the same static
    input: both within 4 eps32 of the exact product scaled in float64."""
    w = _pruned(rng, 48, 97, 0.2)
    sw = SparseInt8Matrix.from_float(w).with_static_input(0.04, 128)
    dw = QuantizedMatrix.from_int8(sw.q, sw.scale).with_static_input(0.04, 128)
    x = rng.standard_normal((2, 35, 97)).astype(np.float32)  # leading dims kept
    got, dense = sparsekit.linear(x, sw), sparsekit.linear(x, dw)
    assert got.shape == (2, 35, 48)
    xq = np.clip(np.rint(x / np.float32(0.04)) + 128, 0, 255).reshape(70, 97)
    exact = (xq.astype(np.int64) - 128) @ sw.q.astype(np.int64).T
    ref = exact * np.float64(np.float32(0.04)) * sw.scale.astype(np.float64)
    for y in (got, dense):
        assert np.all(np.abs(y.reshape(70, 48) - ref) <= 4 * EPS32 * np.abs(ref) + 1e-30)


def test_sparse_static_gelu_back_to_dynamic_and_original_kept(rng):
    w = _pruned(rng, 20, 33, 0.2)
    base = SparseInt8Matrix.from_float(w)
    sw = base.with_static_input(0.03, 100)
    x = rng.standard_normal((6, 33)).astype(np.float32)
    assert base.input_scale is None and base.input_zero_point is None
    g = sparsekit.linear(x, sw, activation="gelu")  # no fused epilogue: one pass after
    y = sparsekit.linear(x, sw).astype(np.float64)
    from math import erf
    ref = np.vectorize(lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2))))(y)
    assert np.all(np.abs(g - ref) <= 1e-6 * np.abs(ref) + 1e-7)
    back = sw.with_static_input(None, None)
    assert back.input_scale is None
    np.testing.assert_array_equal(sparsekit.linear(x, back), sparsekit.linear(x, base))
    assert not np.array_equal(sparsekit.linear(x, sw), sparsekit.linear(x, base))


def test_sparse_static_edge_shapes(rng):
    empty_k = SparseInt8Matrix.from_int8(np.zeros((4, 0), np.int8), 1.0).with_static_input(
        0.1, 3)
    b = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(sparsekit.linear(np.ones((3, 0), np.float32), empty_k, b),
                                  np.tile(b, (3, 1)))
    zero = SparseInt8Matrix.from_int8(np.zeros((5, 9), np.int8), 0.5).with_static_input(0.1, 7)
    assert zero.nblocks == 0
    np.testing.assert_array_equal(sparsekit.linear(np.ones((2, 9), np.float32), zero),
                                  np.zeros((2, 5), np.float32))
    sw = SparseInt8Matrix.from_float(_pruned(rng, 6, 10, 0.5)).with_static_input(0.1, 7)
    assert sparsekit.linear(np.ones((0, 10), np.float32), sw).shape == (0, 6)
    one = sparsekit.linear(np.ones(10, np.float32), sw)
    assert one.shape == (6,)


def test_sparse_static_errors(rng):
    sw = SparseInt8Matrix.from_float(_pruned(rng, 6, 10, 0.5))
    with pytest.raises(ValueError, match="scale/zero_point"):
        sw.with_static_input(0.1, None)
    with pytest.raises(ValueError, match="scale/zero_point"):
        sw.with_static_input(None, 3)
    with pytest.raises(ValueError, match="input_zero_point"):
        sw.with_static_input(0.1, 256)
    for bad in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="input_scale"):
            sw.with_static_input(bad, 3)
    with pytest.raises(TypeError, match="input_scale"):
        sw.with_static_input(np.ones(2), 3)
    with pytest.raises(TypeError, match="input_zero_point"):
        sw.with_static_input(0.1, 3.0)
    x = np.ones((2, 10), np.float32)
    x[1, 4] = np.nan
    with pytest.raises(ValueError, match="x: contains NaN"):
        sparsekit.linear(x, sw.with_static_input(0.1, 3))
    with pytest.raises(ValueError, match="backend"):
        sparsekit.linear(np.ones((2, 10), np.float32), sw.with_static_input(0.1, 3),
                         backend="numba")


def test_sparse_static_pickle_state_arrays_and_file(rng, tmp_path):
    w = _pruned(rng, 30, 41, 0.2)
    x = rng.standard_normal((5, 41)).astype(np.float32)
    for per_channel in (True, False):
        sw = SparseInt8Matrix.from_float(w, per_channel=per_channel).with_static_input(0.02, 9)
        assert "input=static(0.02, 9)" in repr(sw)
        arrays = sw._state_arrays()
        assert arrays["input_scale"].dtype == np.float64 and int(arrays["input_zero_point"]) == 9
        for back in (pickle.loads(pickle.dumps(sw)),
                     SparseInt8Matrix._from_state_arrays(sw.shape, arrays)):
            assert (back.input_scale, back.input_zero_point) == (sw.input_scale, 9)
            assert back.per_channel == per_channel
            np.testing.assert_array_equal(sparsekit.linear(x, back), sparsekit.linear(x, sw))
    dyn = SparseInt8Matrix.from_float(w)
    assert "input_scale" not in dyn._state_arrays()
    assert pickle.loads(pickle.dumps(dyn)).input_scale is None
    bad = dict(sw._state_arrays(), input_zero_point=np.array(300))
    with pytest.raises(ValueError, match="input_zero_point"):
        SparseInt8Matrix._from_state_arrays(sw.shape, bad)
    # sparsekit.save / load keep the static input of a sparse int8 layer
    from sparsekit.runtime import layers as L
    model = [L.Linear(sw, np.ones(30, np.float32), "relu")]
    sparsekit.save(model, tmp_path / "m.skm")
    loaded = sparsekit.load(tmp_path / "m.skm")
    lw = loaded.nodes[0][0].weight
    assert isinstance(lw, SparseInt8Matrix) and lw.input_zero_point == 9
    np.testing.assert_array_equal(loaded(x), model[0](x))


def test_static_format_choice_as_pack(rng):
    """pack_int8_static decides as sparsekit.pack with quantize="int8" does (the
    static kernels run as fast as the dynamic ones pack was measured on)."""
    from sparsekit.runtime import weights as W

    for n, k, sp in ((128, 64, 0.9), (1536, 384, 0.9), (384, 384, 0.7)):
        q = rng.integers(-127, 128, (n, k)).astype(np.int8)
        q[rng.random((n, k)) < sp] = 0
        for m in (1, 8, 128):
            ex = sparsekit.explain(q.astype(np.float32), quantize="int8", m=m)
            w, why = W.pack_int8_static(q, 0.1, 0.05, 3, m=m)
            assert isinstance(w, SparseInt8Matrix) == (ex["choice"] == "spint8"), (n, k, m, why)
            assert w.input_scale == np.float32(0.05) and np.array_equal(w.q, q)
            assert "static activations" in why
    q = np.zeros((128, 64), np.int8)
    q[::16, ::16] = 5  # 99.6% sparse: sparse whatever the model predicts (ALWAYS_SPARSE)
    assert isinstance(W.pack_int8_static(q, 0.1, 0.05, 3, m=1)[0], SparseInt8Matrix)
    # with min_sparsity the threshold decides, as for quantize="dynamic"
    assert isinstance(W.pack_int8_static(q, 0.1, 0.05, 3, min_sparsity=0.5)[0],
                      SparseInt8Matrix)
    assert isinstance(W.pack_int8_static(q, 0.1, 0.05, 3, min_sparsity=1.0)[0],
                      QuantizedMatrix)
    with pytest.raises(TypeError, match="q: expected a 2-D int8"):
        W.pack_int8_static(q.astype(np.int16), 0.1, 0.05, 3)
