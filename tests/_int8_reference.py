"""A NumPy stand-in for sparsekit.QuantizedMatrix, used by the converter tests
only while this build lacks the int8 kernels (branch qgemm). It follows the
same contract: symmetric int8 weights per output channel, u8 asymmetric
activations quantized per row, int32-exact accumulation, then rescale."""
import numpy as np


class QuantizedMatrixRef:
    def __init__(self, q, scale):
        self.q = np.ascontiguousarray(q, dtype=np.int8)
        self.scale = np.ascontiguousarray(scale, dtype=np.float32).reshape(-1)
        self.shape = self.q.shape

    @classmethod
    def from_float(cls, w, per_channel=True):
        w = np.asarray(w, np.float32)
        amax = np.abs(w).max(axis=1) if per_channel else np.full(w.shape[0], np.abs(w).max())
        scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
        return cls(q, scale)

    @classmethod
    def from_int8(cls, q, scale):
        return cls(q, scale)

    @property
    def nbytes(self):
        return self.q.nbytes + self.scale.nbytes

    def _linear(self, x, bias, act, backend):
        lo = np.minimum(x.min(axis=1), 0).astype(np.float64)
        hi = np.maximum(x.max(axis=1), 0).astype(np.float64)
        s = np.where(hi > lo, (hi - lo) / 255.0, 1.0)
        zp = np.clip(np.rint(-lo / s), 0, 255)
        xq = np.clip(np.rint(x / s[:, None]) + zp[:, None], 0, 255)
        acc = (xq - zp[:, None]).astype(np.int64) @ self.q.T.astype(np.int64)
        y = acc * s[:, None] * self.scale[None, :]
        if bias is not None:
            y = y + bias
        if act == 1:
            y = np.maximum(y, 0)
        return y.astype(np.float32)


def use_int8_kernels(monkeypatch):
    """Make sparsekit.QuantizedMatrix available (the real one if built)."""
    import sparsekit

    if not hasattr(sparsekit, "QuantizedMatrix"):
        monkeypatch.setattr(sparsekit, "QuantizedMatrix", QuantizedMatrixRef, raising=False)
    return sparsekit.QuantizedMatrix
