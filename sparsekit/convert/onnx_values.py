"""What an ONNX value is while sparsekit.convert.onnx walks the graph."""
import numpy as np


class Const:
    def __init__(self, value, q=None, scale=None, axis=None, zp=None):
        self.value = np.asarray(value)
        self.q, self.scale, self.axis, self.zp = q, scale, axis, zp  # int8 origin (QDQ)


class Tensor:
    """A runtime tensor. dtype is what the runtime array holds: float32 for the
    weight layers' outputs (a quantized ONNX tensor too: the runtime keeps its
    dequantized value), the ONNX type for graph inputs and ArrayOp results
    (int64 shapes, bool masks ...)."""

    def __init__(self, name, quant=None, dtype=np.float32):
        self.name, self.quant = name, quant  # quant: (scale, zp, signed) or "dynamic"
        self.dtype = np.dtype(dtype)

    @property
    def is_float(self):
        return self.dtype.kind == "f"


class DynParam:  # DynamicQuantizeLinear's scale / zero point
    def __init__(self, source, wscale=None):
        self.source, self.wscale = source, wscale


class IntAcc:  # MatMulInteger / ConvInteger result waiting for its scale
    def __init__(self, spec):
        self.spec = spec
