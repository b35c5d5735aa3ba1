"""Observers against NumPy references; calibrate() attaches static int8
parameters following DESIGN.md's conventions; fake-quant and the report."""
import math

import numpy as np
import pytest

from sparsekit.compress.observers import (
    EntropyObserver, MinMaxObserver, MSEObserver, PercentileObserver, fake_quant_np,
    kl_divergence, qparams_from_range,
)

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from sparsekit import compress  # noqa: E402


def chunks(x, n=5):
    return np.array_split(x, n)


def test_minmax_exact_over_batches(rng):
    x = rng.standard_normal(10_000) * 3 + 1
    obs = MinMaxObserver()
    for c in chunks(x):
        obs.observe(torch.from_numpy(c))  # tensors accepted
    assert obs.range() == (x.min(), x.max())
    scale, zp = obs.qparams("uint8")
    assert scale == pytest.approx((x.max() - x.min()) / 255)
    assert zp == round(-x.min() / scale)
    s8, z8 = obs.qparams("int8")
    assert s8 == pytest.approx(np.abs(x).max() / 127) and z8 == 0


def test_qparams_conventions():
    assert qparams_from_range(0.5, 2.0) == pytest.approx((2.0 / 255, 0))  # range includes 0
    s, zp = qparams_from_range(-2.0, -0.5)
    assert s == pytest.approx(2.0 / 255) and zp == 255
    assert qparams_from_range(0.0, 0.0) == (1.0, 0)
    with pytest.raises(ValueError, match="dtype"):
        qparams_from_range(0, 1, "int4")


def test_histogram_merges_exactly_when_range_grows(rng):
    # small values first, then a batch 100x larger: the histogram after the
    # range doubled must equal one built in one pass over the final range
    a, b = rng.standard_normal(5000) * 0.01, rng.standard_normal(5000)
    two = PercentileObserver(bins=1024).observe(a).observe(b)
    assert two.R == np.abs(a).max() * 2 ** round(np.log2(two.R / np.abs(a).max()))  # doubled
    one = PercentileObserver(bins=1024)
    one.R = two.R  # same final range, filled at once
    one.observe(np.concatenate([a, b]))
    # equal up to values on a bin edge that rounding puts in the neighbour bin
    diff = two.hist - one.hist
    assert two.hist.sum() == 10_000 and np.abs(diff).sum() <= 4
    assert np.abs(np.cumsum(diff)).max() <= 1
    assert two.min == min(a.min(), b.min()) and two.max == max(a.max(), b.max())


@pytest.mark.parametrize("p", [99.0, 99.9, 99.99])
def test_percentile_matches_numpy(rng, p):
    x = np.concatenate([rng.standard_normal(20_000), rng.exponential(5, 200)])
    obs = PercentileObserver(percentile=p, bins=4096)
    for c in chunks(rng.permutation(x)):
        obs.observe(c)
    lo, hi = obs.range()
    width = 2 * obs.R / obs.bins
    # the reference quantile lies between two order statistics; the histogram's
    # answer may be off by one bin beyond them
    xs = np.sort(x)
    for got, q in ((lo, 1 - p / 100), (hi, p / 100)):
        k = q * (x.size - 1)
        below, above = xs[max(int(np.floor(k)) - 1, 0)], xs[min(int(np.ceil(k)) + 1, x.size - 1)]
        assert below - width <= got <= above + width
        assert abs(got - np.percentile(x, 100 * q)) <= max(2 * width, above - below + width)


def _np_mse(x, lo, hi, dtype="uint8"):
    s, zp = qparams_from_range(lo, hi, dtype)
    return float(np.mean((x - fake_quant_np(x, s, zp, dtype)) ** 2))


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_mse_observer_near_numpy_optimum(rng, dtype):
    # heavy tails: the best range clips
    x = rng.laplace(size=30_000)
    x[:5] = [40.0, -35.0, 30.0, 25.0, -20.0]
    obs = MSEObserver(bins=8192)
    for c in chunks(x):
        obs.observe(c)
    lo, hi = obs.range(dtype)
    # NumPy reference: the same candidate ranges evaluated on the raw data
    m_lo, m_hi = min(x.min(), 0), max(x.max(), 0)
    if dtype == "int8":
        m = max(-m_lo, m_hi)
        m_lo, m_hi = -m, m
    ref = [_np_mse(x, a * m_lo, a * m_hi, dtype) for a in obs.alphas]
    assert _np_mse(x, lo, hi, dtype) <= min(ref) * 1.05
    assert _np_mse(x, lo, hi, dtype) < _np_mse(x, m_lo, m_hi, dtype)  # beats min/max
    assert hi < m_hi


def test_kl_divergence_hand_computed():
    p, q = np.array([1.0, 3.0, 0.0]), np.array([2.0, 2.0, 4.0])
    pn, qn = p / 4, q / 8
    want = 0.25 * math.log(0.25 / 0.25) + 0.75 * math.log(0.75 / 0.25)
    assert kl_divergence(p, q) == pytest.approx(want)
    assert pn.sum() == 1 and qn.sum() == 1


def test_entropy_observer_clips_outliers_keeps_uniform(rng):
    gauss = rng.standard_normal(50_000)
    gauss[:3] = [60.0, -60.0, 45.0]
    e = EntropyObserver().observe(gauss)
    lo, hi = e.range()
    assert -20 < lo < -2 and 2 < hi < 20  # outliers clipped, bulk kept
    uni = rng.uniform(-1, 1, 50_000)
    lo, hi = EntropyObserver().observe(uni).range()
    assert lo < -0.9 and hi > 0.9  # nothing to gain by clipping a uniform


def test_observer_errors():
    with pytest.raises(ValueError, match="observer"):
        MinMaxObserver().range()
    with pytest.raises(ValueError, match="x"):
        MinMaxObserver().observe(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="percentile"):
        PercentileObserver(percentile=30)
    with pytest.raises(ValueError, match="observer"):
        compress.calibrate(nn.Linear(2, 2), [torch.ones(1, 2)], observer="max")


def test_all_zero_input_is_fine():
    o = PercentileObserver().observe(np.zeros(10))
    assert o.range() == (0.0, 0.0) and o.qparams() == (1.0, 0)


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


@pytest.mark.parametrize("observer", ["minmax", "percentile", "mse", "entropy"])
def test_calibrate_attaches_static_params(observer):
    net = small_net()
    batches = [torch.randn(64, 2, 8, 8, generator=torch.Generator().manual_seed(i))
               for i in range(4)]
    report = compress.calibrate(net, batches, observer=observer)
    conv, fc = net[0], net[3]
    qp = compress.get_qparams(fc)
    assert qp.observer == observer and qp.per_channel
    assert 0 <= qp.input_zero_point <= 255 and qp.input_scale > 0
    assert qp.input_zero_point == 0  # fc reads a ReLU output (>= 0)
    # per-channel symmetric weight scales: max|w_row| / 127
    np.testing.assert_allclose(qp.weight_scale, fc.weight.detach().abs().amax(1).numpy() / 127,
                               rtol=1e-6)
    qc = compress.get_qparams(conv)
    assert qc.weight_scale.shape == (4,)
    if observer == "minmax":
        x = torch.cat(batches)
        s, zp = qparams_from_range(float(x.min()), float(x.max()))
        assert qc.input_scale == pytest.approx(s) and qc.input_zero_point == zp
    assert [r["layer"] for r in report] == ["0", "3"]
    # int8: ~ 40 dB on such data; entropy (KL) deliberately clips harder
    assert all(r["output_sqnr_db"] > (15 if observer == "entropy" else 25) for r in report)
    assert "output_sqnr_db" in str(report)


def test_quantize_weight_range_and_round_trip():
    torch.manual_seed(0)
    w = torch.randn(6, 10)
    w[2] = 0
    s = compress.weight_scales(w)
    q = compress.quantize_weight(w, s)
    assert q.dtype == torch.int8 and int(q.min()) >= -127 and int(q.max()) <= 127
    assert torch.all(q.abs().amax(1)[[0, 1, 3, 4, 5]] == 127) and s[2] == 1
    assert torch.allclose(q.float() * s[:, None], w, atol=float(s.max()) / 2 + 1e-7)
    s1 = compress.weight_scales(w, per_channel=False)
    assert s1.shape == (1,)


def test_fake_quantize_close_and_restored():
    net = small_net()
    x = torch.randn(16, 2, 8, 8, generator=torch.Generator().manual_seed(7))
    compress.calibrate(net, [x], report=False)
    w0 = net[3].weight.detach().clone()
    ref = net(x)
    with compress.fake_quantize(net):
        y = net(x)
        assert not torch.equal(net[3].weight, w0)
    assert torch.equal(net[3].weight, w0)
    rel = float(
        ((y - ref).norm() / ref.norm()).detach())
    assert 0 < rel < 0.05
    with pytest.raises(ValueError, match="calibrate"):
        compress.fake_quantize(nn.Linear(2, 2))
