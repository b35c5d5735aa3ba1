"""QuantizedMatrix: a symmetric int8 weight W[N, K] ~ q * scale, packed once
for the int8 GEMM kernels (re-exported by sparsekit.formats).

Held: the packed weights (layout in kernels/include/sparsekit.h: panels of 16
channels x groups of 4 k, zero-padded, 64-byte aligned), the channel sums
sum_k q[n, k] (3 bytes each) for the zero-point correction, and the scales
(float32, one per channel or one per tensor). That is
ceil(N/16)*16 * ceil(K/4)*4 + 3N + 4N bytes: at most 1.02 bytes per weight
for K >= 350 with N a multiple of 16.
"""
import numpy as np

from sparsekit._native import core as _core
from sparsekit._static_input import StaticInput
from sparsekit._validate import (
    as_float_array, check_int8_weights, check_shape2, check_weight_scale, frozen,
    quantize_symmetric_int8,
)

def _aligned_empty(nbytes, dtype, align=64):
    """A 1-D array of `nbytes` bytes whose data starts on an `align` boundary."""
    raw = np.empty(nbytes + align, dtype=np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off:off + nbytes].view(dtype)


class QuantizedMatrix(StaticInput):
    """A quantized weight W[N, K] (out, in) ~ q * scale, q int8 in [-127, 127].

    Build one with ``QuantizedMatrix.from_float(w, per_channel=True)`` or
    ``QuantizedMatrix.from_int8(q, scale)`` (the constructor itself raises
    TypeError). ``sparsekit.linear(x, qw)`` then
    runs fp32 in / fp32 out with the activations quantized to u8 per row
    inside; ``qw.with_static_input(scale, zero_point)`` switches that to a
    fixed (calibrated) per-tensor activation quantization. Read back with
    ``.q``, ``.scale``, ``.dequantize()`` (alias ``.to_dense()``, as in the fp32
    formats); picklable; K <= 65536. Needs the
    compiled C core (ImportError without it).
    """

    _fused_gelu = True  # linear(..., activation="gelu") runs in the GEMM epilogue

    __slots__ = ("_shape", "_packed", "_sum24", "_scale", "_per_channel",
                 "_input_scale", "_input_zero_point", "_kernel_arrays")

    def __init__(self, *args, **kwargs):
        raise TypeError("QuantizedMatrix: use QuantizedMatrix.from_float(w) or "
                        "QuantizedMatrix.from_int8(q, scale)")

    @classmethod
    def _build(cls, q, scale):
        n, k = q.shape
        if k > _core.QGEMM_MAX_K:
            raise ValueError(f"q: K = {k} exceeds the supported {_core.QGEMM_MAX_K}")
        self = object.__new__(cls)
        packed = _aligned_empty(_core.qmatrix_packed_bytes(n, k), np.int8)
        sum24 = np.empty(3 * n, dtype=np.uint8)
        if not _core.qmatrix_pack(np.ascontiguousarray(q, dtype=np.int8), packed, sum24):
            raise ValueError("q: values must be in [-127, 127] (-128 is not allowed)")
        self._shape = (n, k)
        self._packed = frozen(packed)
        self._sum24 = frozen(sum24)
        self._scale, self._per_channel = scale
        self._scale = frozen(self._scale)
        self._input_scale = None
        self._input_zero_point = None
        self._kernel_arrays = (self._packed, self._sum24, self._scale)
        return self

    # ---- constructors -------------------------------------------------------
    @classmethod
    def from_float(cls, w, per_channel=True):
        """Quantize a float [N, K] weight: scale = max|w| / 127 per output
        channel (or over the whole tensor), q = clip(rint(w / scale), -127, 127)
        in float32 (round half to even). All-zero channels get scale 1.
        Raises TypeError for a non-float w or non-bool per_channel, ValueError
        for NaN / infinity, a w that is not 2-D, or K > 65536."""
        w = as_float_array(w, "w", ndim=2, allow_nan=False)
        q, scale = quantize_symmetric_int8(w, per_channel)
        return cls._build(q, (np.ascontiguousarray(scale), bool(per_channel)))

    @classmethod
    def from_int8(cls, q, scale):
        """Wrap already-quantized weights (for importers): integer q [N, K] with
        values in [-127, 127] and a positive scale, scalar or per channel [N].
        Raises TypeError for a non-integer q or non-numeric scale, ValueError
        for values outside [-127, 127], a scale of another shape or <= 0, or
        K > 65536."""
        arr = check_int8_weights(q)
        s, per = check_weight_scale(scale, arr.shape[0])
        return cls._build(arr.astype(np.int8), (s, per))

    def with_static_input(self, scale, zero_point):
        """The same weight with a static per-tensor u8 activation quantization
        (scale, zero_point) for linear(); (None, None) goes back to dynamic.
        Returns a new QuantizedMatrix sharing the packed weights. Raises
        ValueError when only one is None, for scale <= 0 or a zero point
        outside [0, 255], TypeError for non-scalar values (the messages call
        them input_scale / input_zero_point)."""
        return self._static_copy(scale, zero_point)

    @classmethod
    def _concat_rows(cls, mats):
        """One matrix with the rows of `mats` (same K) stacked in order, per-channel
        scales (a per-tensor scale is repeated): one GEMM for layers that read the
        same input. Dynamic input only."""
        if len({m._shape[1] for m in mats}) != 1 or any(m._input_scale is not None
                                                       for m in mats):
            raise ValueError("mats: need the same K and dynamic input quantization")
        q = np.concatenate([m.q for m in mats])
        scale = np.concatenate([m._scale if m._per_channel else
                                np.repeat(m._scale[:1], m._shape[0]) for m in mats])
        return cls._build(q, (np.ascontiguousarray(scale, dtype=np.float32), True))

    def _row_block(self, start, stop, per_channel=True):
        """Rows [start, stop) as a matrix sharing this one's memory (the packed
        layout keeps panels of 16 rows contiguous: start must be a multiple of 16,
        stop too unless it is N). per_channel=False keeps only the first scale
        (for rows whose scales are all equal). None when the rows cannot be cut."""
        n, k = self._shape
        if not (0 <= start < stop <= n) or start % 16 or (stop % 16 and stop != n):
            return None
        per_row = _core.qmatrix_packed_bytes(16, k) // 16
        other = object.__new__(type(self))
        for name in self.__slots__:
            setattr(other, name, getattr(self, name))
        other._shape = (stop - start, k)
        other._packed = self._packed[start * per_row:
                                     start * per_row + _core.qmatrix_packed_bytes(stop - start, k)]
        other._sum24 = self._sum24[3 * start:3 * stop]
        scale = self._scale[start:stop] if self._per_channel else self._scale
        other._scale = scale if per_channel else scale[:1]
        other._per_channel = bool(per_channel and self._per_channel)
        other._kernel_arrays = (other._packed, other._sum24, other._scale)
        return other

    # ---- views --------------------------------------------------------------
    @property
    def shape(self):
        """(N, K) = (out, in)."""
        return self._shape

    @property
    def per_channel(self):
        """True: one scale per output channel; False: one for the tensor."""
        return self._per_channel

    @property
    def scale(self):
        """float32 [N] per channel, or a 0-d float32 array per tensor."""
        return self._scale if self._per_channel else self._scale.reshape(())

    @property
    def q(self):
        """The int8 weights as [N, K] (unpacked: a new array, not a view)."""
        return _unpack(self._packed, *self._shape)

    @property
    def weight_sums(self):
        """int32 [N]: sum_k q[n, k], the zero-point correction term."""
        b = self._sum24.reshape(-1, 3).astype(np.int32)
        u = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return (u ^ 0x800000) - 0x800000

    @property
    def nbytes(self):
        """Bytes held: packed weights (padded), channel sums and scales."""
        return self._packed.nbytes + self._sum24.nbytes + self._scale.nbytes

    def dequantize(self):
        """float32 [N, K] = q * scale."""
        s = self._scale if self._per_channel else self._scale[:1]
        return (self.q.astype(np.float32) * s.reshape(-1, 1)).astype(np.float32)

    def to_dense(self):
        """The weight as a dense float32 [N, K] array: dequantize() under the
        name every weight format has."""
        return self.dequantize()

    def __repr__(self):
        n, k = self._shape
        mode = "per-channel" if self._per_channel else "per-tensor"
        return (f"QuantizedMatrix(shape=({n}, {k}), {mode}, input={self._input_repr()}, "
                + (f"{self.nbytes / (n * k):.4f} bytes/weight)" if n * k else
                   f"{self.nbytes} bytes, no weights)"))

    def __reduce__(self):
        return (_qm_from_state_arrays, (self._shape, self._state_arrays()))

    # ---- state (torch state_dict, pickle) -----------------------------------
    def _state_arrays(self):
        """{name: array} this weight consists of, shared (read-only, not copied):
        the packed weights, their channel sums, the scale ([N] per channel, 0-d
        per tensor), and a static input quantization's scale / zero point (0-d)
        when set. QuantizedMatrix._from_state_arrays(shape, them) rebuilds it."""
        arrays = {"packed": self._packed, "sum24": self._sum24, "scale": self.scale}
        if self._input_scale is not None:
            arrays["input_scale"] = np.array(self._input_scale, dtype=np.float64)
            arrays["input_zero_point"] = np.array(self._input_zero_point, dtype=np.int64)
        return arrays

    @classmethod
    def _from_state_arrays(cls, shape, arrays):
        """Rebuilt from _state_arrays' arrays (e.g. read from a file): the
        weights are unpacked and packed again, so they are checked as on
        construction, and `packed` (zero padding included) and `sum24` must
        come out byte for byte the same."""
        n, k = check_shape2(shape)
        size = _core.qmatrix_packed_bytes(n, k)
        packed, sum24 = np.asarray(arrays["packed"]), np.asarray(arrays["sum24"])
        if packed.dtype != np.int8 or packed.shape != (size,):
            raise ValueError(f"packed: expected int8 [{size}] (the packed layout of a "
                             f"[{n}, {k}] weight), got {packed.dtype} {list(packed.shape)}")
        if sum24.dtype != np.uint8 or sum24.shape != (3 * n,):
            raise ValueError(f"sum24: expected uint8 [{3 * n}], got {sum24.dtype} "
                             f"{list(sum24.shape)}")
        scale = np.asarray(arrays["scale"])
        s, _ = check_weight_scale(scale, n)
        if packed.size and packed.min() == -128:
            raise ValueError("packed: values must be in [-127, 127] (-128 found)")
        self = cls._build(_unpack(packed, n, k), (s, scale.ndim == 1 and scale.shape[0] == n))
        if not np.array_equal(self._packed, packed):
            raise ValueError("packed: nonzero bytes in the padding of the packed layout "
                             "(corrupted?)")
        if not np.array_equal(self._sum24, sum24):
            raise ValueError("sum24: does not match the channel sums of the packed weights "
                             "(corrupted?)")
        if "input_scale" in arrays or "input_zero_point" in arrays:
            self = self.with_static_input(*(
                None if arrays.get(name) is None else np.asarray(arrays[name])[()]
                for name in ("input_scale", "input_zero_point")))
        return self

    # ---- compute ------------------------------------------------------------
    def _arrays(self):
        return self._kernel_arrays

    def _linear(self, x, bias, act, backend):
        if backend == "numba":
            raise ValueError("backend: the numba backend has no int8 path; use 'auto' or 'c'")
        if self._input_scale is None:
            return self._linear_input(x, 0.0, 0, bias, act)
        return self._linear_input(x, self._input_scale, self._input_zero_point, bias, act)

    def _linear_input(self, x, scale, zero_point, bias, act):
        """x [M, K] (unit-stride rows) times this weight with the input quantized
        by (scale, zero_point), checked as with_static_input checks them (scale
        0.0: per row, dynamic), without the copy with_static_input makes (a
        per-call input quantization: runtime.tensor_quant)."""
        n, k = self._shape
        out = np.empty((x.shape[0], n), dtype=np.float32)
        return _core.linear_qgemm(self._kernel_arrays, n, k, x, scale, zero_point, bias, act,
                                  out)


def _unpack(packed, n, k):
    """int8 q [N, K] of a packed layout (panels of 16 rows x groups of 4 k)."""
    k4 = (k + 3) // 4
    if not n or not k:
        return np.zeros((n, k), dtype=np.int8)
    panels = packed.reshape(-1, k4, 16, 4).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(panels.reshape(-1, k4 * 4)[:n, :k])


def _qm_from_state_arrays(shape, arrays):
    return QuantizedMatrix._from_state_arrays(shape, arrays)


def _qm_from_state(q, scale, input_scale, input_zero_point):  # pickles of sparsekit <= 0.1.0
    qm = QuantizedMatrix.from_int8(q, scale)
    if input_scale is not None:
        qm = qm.with_static_input(input_scale, input_zero_point)
    return qm
