"""core.minmax_f32 (one C pass for a tensor's range) against NumPy's min / max,
and tensor_params (ORT's DynamicQuantizeLinear range) with and without it."""
import numpy as np
import pytest

from sparsekit._native import AVAILABLE, core
import sparsekit.runtime.tensor_quant as TQ

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="needs the C core")

SIZES = (1, 2, 15, 16, 17, 31, 32, 33, 47, 100, 5760, 16384, 16385)


@pytest.mark.parametrize("n", SIZES)
def test_range_is_numpys(n):
    rng = np.random.default_rng(n)
    for trial in range(30):
        x = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4)).astype(np.float32)
        if trial % 3 == 0:
            x[rng.integers(n)] = rng.choice([np.inf, -np.inf, -0.0, 0.0, 3.4e38, -3.4e38])
        if trial % 5 == 1:
            x = np.abs(x)  # no negative value: lo is the smallest positive one
        lo, hi = core.minmax_f32(x)
        assert type(lo) is float and lo == float(x.min()) and hi == float(x.max())


@pytest.mark.parametrize("n", SIZES)
def test_nan_anywhere_gives_nan(n):
    rng = np.random.default_rng(n + 1)
    x = rng.standard_normal(n).astype(np.float32)
    for k in sorted({0, n - 1, *rng.integers(0, n, size=20).tolist(), *range(min(n, 20))}):
        y = x.copy()
        y[k] = np.nan
        assert all(np.isnan(core.minmax_f32(y)))


def test_tensor_params_same_with_and_without_c(monkeypatch):
    rng = np.random.default_rng(7)
    cases = [np.zeros((3, 4), np.float32), np.full((2, 5), -0.0, np.float32),
             np.float32([[np.nan, 1.0]]), np.float32([[np.inf, 1.0]]),
             np.float32([[3.0e38, -3.0e38]])]
    cases += [(rng.standard_normal((r, 384)) * rng.uniform(0.01, 50)).astype(np.float32)
              for r in (1, 7, 15, 42, 43)]
    cases += [np.abs(c) for c in cases[-3:]]
    for x in cases:
        got = TQ.tensor_params(x)
        monkeypatch.setattr(TQ, "_NATIVE", False)
        want = TQ.tensor_params(x)
        monkeypatch.setattr(TQ, "_NATIVE", True)
        assert repr(got) == repr(want), x


def test_arguments():
    with pytest.raises(ValueError, match="x"):
        core.minmax_f32(np.zeros(4, np.float64))
    with pytest.raises(ValueError, match="x"):
        core.minmax_f32(np.zeros((4, 4), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="x"):
        core.minmax_f32(np.zeros(0, np.float32))
