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
import numpy as np

import sparsekit

from sparsekit.formats import ACTIVATIONS
from sparsekit.runtime.layers import Conv2d, Linear, _f32, register


def tensor_params(x):
    """(scale, zero point) of DynamicQuantizeLinear over all of x."""
    lo = np.float32(min(float(x.min()), 0.0) if x.size else 0.0)
    hi = np.float32(max(float(x.max()), 0.0) if x.size else 0.0)
    scale = float((hi - lo) / np.float32(255.0))  # float32 arithmetic, as ORT
    if scale == 0.0:  # an all-zero input: any scale gives q = zp = 0
        return 1.0, 0
    # round() of the float32 quotient: half to even, as np.rint (and cheaper)
    zp = min(max(round(float(-lo / np.float32(scale))), 0), 255)
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
        w = self.weight.with_static_input(*tensor_params(x))
        k = self.in_features
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
        x = _f32(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected NCHW with C = {self.in_channels}, got {x.shape}")
        w = self.weight.with_static_input(*tensor_params(x))
        rows, oh, ow = self._patches(x)
        y = sparsekit.linear(rows, w, self.bias, self.activation)
        return y.reshape(x.shape[0], oh, ow, self.out_channels).transpose(0, 3, 1, 2)
