"""Range observers for quantization calibration (NumPy; no torch needed).

An observer sees a stream of tensors (`observe(x)`) and proposes a clipping
range (`range()`) and quantization parameters (`qparams()`):

  MinMaxObserver      the exact min and max seen
  PercentileObserver  the p-th and (100-p)-th percentiles
  MSEObserver         the range (scaled min/max) with least squared
                      quantization error
  EntropyObserver     the range with least KL divergence between the value
                      distribution and its quantized version (TensorRT-style)

The last three keep a histogram over [-R, R] with `bins` bins; when data
exceeds R, R doubles and pairs of bins merge, so the histogram stays exact
at its resolution whatever the order of the batches.

Conventions (DESIGN.md): activations u8 asymmetric, scale = (hi - lo) / 255,
zero_point = round(-lo / scale) in [0, 255], with lo <= 0 <= hi; weights
symmetric int8 in [-127, 127], scale = max|w| / 127.
"""
import numpy as np

QMAX = {"uint8": 255, "int8": 127}


def _as_numpy(x, name="x"):
    if hasattr(x, "detach"):
        x = x.detach().double().cpu().numpy()
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected a numeric array, got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False).reshape(-1)
    if x.size and not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinity")
    return x


def qparams_from_range(lo, hi, dtype="uint8"):
    """(scale, zero_point) for a clipping range: "uint8" asymmetric (range
    widened to include 0) or "int8" symmetric (zero_point 0)."""
    if dtype not in QMAX:
        raise ValueError(f"dtype: expected 'uint8' or 'int8', got {dtype!r}")
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if dtype == "int8":
        scale = max(-lo, hi) / 127.0
        return (scale if scale > 0 else 1.0), 0
    scale = (hi - lo) / 255.0
    if scale <= 0:
        return 1.0, 0
    zp = int(np.clip(np.round(-lo / scale), 0, 255))
    return scale, zp


def fake_quant_np(x, scale, zero_point, dtype="uint8"):
    """Quantize then dequantize (round half to even, as torch.round)."""
    qmin, qmax = (0, 255) if dtype == "uint8" else (-127, 127)
    q = np.clip(np.round(np.asarray(x) / scale) + zero_point, qmin, qmax)
    return (q - zero_point) * scale


class Observer:
    """Base: tracks the exact min and max and how many values were seen."""

    def __init__(self):
        self.min = np.inf
        self.max = -np.inf
        self.count = 0

    def observe(self, x):
        v = _as_numpy(x)
        if v.size:
            self.min = min(self.min, float(v.min()))
            self.max = max(self.max, float(v.max()))
            self.count += v.size
            self._update(v)
        return self

    def _update(self, v):
        pass

    def _check_seen(self):
        if self.count == 0:
            raise ValueError("observer: no data observed yet (call observe(x) first)")

    def range(self, dtype="uint8"):
        self._check_seen()
        return self.min, self.max

    def qparams(self, dtype="uint8"):
        """(scale, zero_point) for the proposed range."""
        lo, hi = self.range(dtype)
        return qparams_from_range(lo, hi, dtype)

    def __repr__(self):
        return f"{type(self).__name__}(count={self.count}, min={self.min:.4g}, max={self.max:.4g})"


class MinMaxObserver(Observer):
    """The exact range of everything observed."""


class HistogramObserver(Observer):
    """A histogram of the observed values over [-R, R] (R grows by doubling)."""

    def __init__(self, bins=4096):
        super().__init__()
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 16 or bins % 4:
            raise ValueError(f"bins: expected an int >= 16, multiple of 4, got {bins!r}")
        self.bins = bins
        self.hist = np.zeros(bins, np.float64)
        self.R = 0.0

    def _update(self, v):
        m = float(np.abs(v).max())
        if self.R == 0.0:
            if m == 0.0:  # all zeros so far: they go to the center bin later
                self._zeros = getattr(self, "_zeros", 0) + v.size
                return
            self.R = m
            z = getattr(self, "_zeros", 0)
            if z:
                self.hist[self.bins // 2] += z
                self._zeros = 0
        while m > self.R:
            half = self.hist.reshape(-1, 2).sum(1)
            self.hist = np.zeros_like(self.hist)
            q = self.bins // 4
            self.hist[q:q + half.size] = half
            self.R *= 2.0
        idx = np.floor((v + self.R) / (2 * self.R) * self.bins).astype(np.int64)
        np.clip(idx, 0, self.bins - 1, out=idx)
        self.hist += np.bincount(idx, minlength=self.bins)

    @property
    def edges(self):
        return np.linspace(-self.R, self.R, self.hist.size + 1)

    @property
    def centers(self):
        e = self.edges
        return (e[:-1] + e[1:]) / 2

    def _histogram(self):
        self._check_seen()
        if self.R == 0.0:  # only zeros seen
            return None
        return self.hist


class PercentileObserver(HistogramObserver):
    """lo, hi = the (100 - p)-th and p-th percentiles (linear within a bin)."""

    def __init__(self, percentile=99.99, bins=4096):
        super().__init__(bins)
        if not 50.0 < float(percentile) <= 100.0:
            raise ValueError(f"percentile: expected a value in (50, 100], got {percentile}")
        self.percentile = float(percentile)

    def _quantile(self, q):
        h = self.hist
        cdf = np.concatenate([[0.0], np.cumsum(h)]) / h.sum()
        i = int(np.searchsorted(cdf, q, side="left"))
        i = min(max(i, 1), self.bins)
        e = self.edges
        lo_c, hi_c = cdf[i - 1], cdf[i]
        frac = 0.0 if hi_c == lo_c else (q - lo_c) / (hi_c - lo_c)
        return e[i - 1] + frac * (e[i] - e[i - 1])

    def range(self, dtype="uint8"):
        if self._histogram() is None:
            return 0.0, 0.0
        p = self.percentile / 100.0
        lo = max(self._quantile(1.0 - p), self.min)
        hi = min(self._quantile(p), self.max)
        return lo, hi


class _SearchObserver(HistogramObserver):
    """Chooses among ranges alpha * (min, max) (alpha * max|x| for int8)."""

    def __init__(self, bins=4096, steps=100, min_alpha=0.05):
        super().__init__(bins)
        self.alphas = np.linspace(min_alpha, 1.0, steps)

    def _candidates(self, dtype):
        lo, hi = min(self.min, 0.0), max(self.max, 0.0)
        if dtype == "int8":
            m = max(-lo, hi)
            lo, hi = -m, m
        return [(a * lo, a * hi) for a in self.alphas]

    def range(self, dtype="uint8"):
        if self._histogram() is None:
            return 0.0, 0.0
        cands = self._candidates(dtype)
        costs = [self.cost(lo, hi, dtype) for lo, hi in cands]
        self.costs = np.asarray(costs)
        return cands[int(np.argmin(costs))]


class MSEObserver(_SearchObserver):
    """The range whose quantize-dequantize error sum((x - q(x))^2) is least,
    evaluated at the histogram's bin centers."""

    def cost(self, lo, hi, dtype="uint8"):
        scale, zp = qparams_from_range(lo, hi, dtype)
        c = self.centers
        return float(np.sum(self.hist * (c - fake_quant_np(c, scale, zp, dtype)) ** 2))


def kl_divergence(p, q):
    """KL(p || q) for unnormalized histograms; bins where p = 0 add nothing,
    q = 0 where p > 0 is smoothed with a tiny epsilon."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    p = p / p.sum()
    q = q / q.sum()
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / np.maximum(q[nz], 1e-12))))


class EntropyObserver(_SearchObserver):
    """The range minimising KL(P || Q): P is the histogram clipped to the range
    (outliers folded into the edge bins), Q is P after quantization to the
    255 (or 254) levels, each level's mass spread over its non-empty bins.
    Ranges holding fewer than 2 bins per level are not considered (there Q
    would equal P and the divergence says nothing)."""

    def __init__(self, bins=8192, steps=100, min_alpha=0.05):
        super().__init__(bins, steps, min_alpha)

    def range(self, dtype="uint8"):
        # few samples make a spiky histogram whose KL rewards tiny ranges:
        # merge bins until there are >= 16 values per bin (down to 1024 bins)
        if self.R == 0.0:
            return super().range(dtype)
        full = self.hist
        h = full
        while h.size > 1024 and self.count < 16 * h.size:
            h = h.reshape(-1, 2).sum(1)
        self.hist = h
        try:
            return super().range(dtype)
        finally:
            self.hist = full

    def cost(self, lo, hi, dtype="uint8"):
        scale, zp = qparams_from_range(lo, hi, dtype)
        qmin, qmax = (0, 255) if dtype == "uint8" else (-127, 127)
        c = self.centers
        h = self.hist
        level = np.clip(np.round(c / scale) + zp, qmin, qmax).astype(np.int64) - qmin
        # P: mass on the clipped grid of bins; outliers land in the edge levels'
        # last occupied bins, i.e. clip the values to the range
        inside = (c >= lo) & (c <= hi)
        p = np.where(inside, h, 0.0)
        if inside.sum() < 2 * (qmax - qmin + 1):
            return np.inf
        first, last = np.argmax(inside), len(c) - 1 - np.argmax(inside[::-1])
        p[first] += h[:first].sum()
        p[last] += h[last + 1:].sum()
        # Q: each level's mass spread evenly over the level's non-empty bins
        mass = np.bincount(level, weights=p, minlength=qmax - qmin + 1)
        occupied = np.bincount(level, weights=(p > 0).astype(np.float64),
                               minlength=qmax - qmin + 1)
        q = np.where(p > 0, mass[level] / np.maximum(occupied[level], 1), 0.0)
        return kl_divergence(p, q)


OBSERVERS = {
    "minmax": MinMaxObserver, "percentile": PercentileObserver, "mse": MSEObserver,
    "entropy": EntropyObserver,
}


def make_observer(observer, **kwargs):
    """An observer instance from a name in OBSERVERS, a class, or a factory."""
    if isinstance(observer, str):
        if observer not in OBSERVERS:
            raise ValueError(f"observer: expected one of {sorted(OBSERVERS)}, got {observer!r}")
        return OBSERVERS[observer](**kwargs)
    if isinstance(observer, Observer):
        raise TypeError("observer: pass a name, class or factory (one observer is made per tensor)")
    if callable(observer):
        return observer(**kwargs)
    raise TypeError(f"observer: expected a name, class or factory, got {type(observer).__name__}")
