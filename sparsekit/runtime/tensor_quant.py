"""TensorQuantLinear / TensorQuantConv2d: an int8 Linear / Conv2d whose input
is quantized per tensor, per call, the way ONNX DynamicQuantizeLinear does
(ONNX Runtime's dynamic int8: MatMulInteger / ConvInteger).

sparsekit's own dynamic int8 quantizes each row (token) of the input with its
own range, which is more accurate; a file made by
onnxruntime.quantization.quantize_dynamic asks for one (scale, zero point)
over the whole tensor, and this layer follows the file so the results agree
with ONNX Runtime's: range widened to hold 0, scale = range / 255, zero point
and values rounded half to even, then the weight's exact int32 kernel with
that static input quantization.
"""
import math
import struct

import numpy as np

import sparsekit

from sparsekit._native import AVAILABLE as _NATIVE, core as _core
from sparsekit.formats import ACTIVATIONS
from sparsekit.runtime.layers import Conv2d, Linear, _f32 as _as_f32, register

_QM = getattr(sparsekit, "QuantizedMatrix", None)


_MIN, _MAX = np.minimum.reduce, np.maximum.reduce
# values; above, NumPy's two reductions are faster unless the CPU has AVX-512
# (minmax_f32's avx512f clone: faster at every size, and threaded; _core_minmax.pxi)
_C_RANGE_MAX = 16384 if not (_NATIVE and _core.cpu_supports("avx512")) else 1 << 62
_F32 = struct.Struct("f")
_FLT_MAX = float(np.finfo(np.float32).max)


def _f32(v):
    """v rounded to float32 (a Python float; inf past the float32 range)."""
    try:
        return _F32.unpack(_F32.pack(v))[0]
    except OverflowError:
        return math.copysign(math.inf, v)


def tensor_params(x):
    """(scale, zero point) of DynamicQuantizeLinear over all of x, in float32
    arithmetic as ORT: each float32 operation is done in double and rounded
    to float32, which gives the float32 result exactly (53 >= 2 * 24 + 2
    bits: no double-rounding error for + - * /)."""
    if _NATIVE and 0 < x.size <= _C_RANGE_MAX and type(x) is np.ndarray and \
            x.dtype == np.float32 and x.flags.c_contiguous:
        lo, hi = _core.minmax_f32(x)  # one C pass (NaN: both NaN, as NumPy's)
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    else:
        lo = min(float(_MIN(x, None)), 0.0) if x.size else 0.0
        hi = max(float(_MAX(x, None)), 0.0) if x.size else 0.0
    scale = _f32(_f32(hi - lo) / 255.0)
    if scale == 0.0:  # an all-zero input: any scale gives q = zp = 0
        return 1.0, 0
    if not math.isfinite(scale):
        return scale, 0  # (NaN or inf: linear() rejects the scale, naming it)
    # round() of the float32 quotient: half to even, as np.rint (and cheaper)
    zp = min(max(round(_f32(-lo / scale)), 0), 255)
    return scale, zp


def _check_int8(weight):
    if not hasattr(weight, "with_static_input"):
        raise TypeError("weight: expected an int8 format with with_static_input "
                        f"(QuantizedMatrix, SparseInt8Matrix), got {type(weight).__name__}")


@register
class TensorQuantLinear(Linear):
    """y = x @ W.T + b with W an int8 format (QuantizedMatrix / SparseInt8Matrix)
    and x quantized to u8 with one scale and zero point per call (see module)."""

    def __init__(self, weight, bias=None, activation=None):
        super().__init__(weight, bias, activation)
        _check_int8(self.weight)

    def __call__(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        scale, zp = tensor_params(x)
        k = self.in_features
        if type(self.weight) is _QM and self.weight.input_scale is None and \
                0.0 < scale <= _FLT_MAX and x.ndim >= 2 and x.size and x.shape[-1] == k:
            # QuantizedMatrix with the checks with_static_input makes, without its copy
            y = self.weight._linear_input(x.reshape(-1, k), scale, zp, self.bias,
                                          ACTIVATIONS[self.activation])
            return y.reshape(x.shape[:-1] + (self.out_features,))
        w = self.weight.with_static_input(scale, zp)
        if x.ndim >= 2 and x.size and x.shape[-1] == k and \
                (self.activation != "gelu" or getattr(w, "_fused_gelu", False)):
            # Linear's lean path: weight and bias were validated at construction
            y = w._linear(x.reshape(-1, k), self.bias, ACTIVATIONS[self.activation], "auto")
            return y.reshape(x.shape[:-1] + (self.out_features,))
        return sparsekit.linear(x, w, self.bias, self.activation)


@register
class TensorQuantConv2d(Conv2d):
    """Conv2d with an int8 weight whose input is quantized with one scale and
    zero point over the whole NCHW input per call (ORT's ConvInteger after
    DynamicQuantizeLinear). Padding is 0.0, which quantizes to the zero point,
    as ConvInteger pads with it."""

    def __init__(self, weight, bias=None, in_channels=None, kernel_size=None, stride=1,
                 padding=0, dilation=1, activation=None):
        super().__init__(weight, bias, in_channels, kernel_size, stride, padding, dilation,
                         activation)
        _check_int8(self.weight)

    def __call__(self, x):
        x = _as_f32(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected NCHW with C = {self.in_channels}, got {x.shape}")
        w = self.weight.with_static_input(*tensor_params(x))
        rows, oh, ow = self._patches(x)
        y = sparsekit.linear(rows, w, self.bias, self.activation)
        return y.reshape(x.shape[0], oh, ow, self.out_channels).transpose(0, 3, 1, 2)
