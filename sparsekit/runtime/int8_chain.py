"""Static int8 chains in the runtime: a Linear whose output only feeds an int8
Linear with a static input quantization hands it u8 integers, not fp32.

    x fp32 ─quantize─► u8 ─int8 GEMM, bias, GELU, requantize─► U8Activations
    U8Activations ─int8 GEMM on its integers (its scale, zero point)─► fp32

A Linear with `out_quant=(scale, zero_point)` (the next Linear's static input
quantization; convert/bert.py sets it on BERT's FFN up-projection, whose GELU
output is the down-projection's input) returns U8Activations when its fp32
output would be large (CHAIN_MIN_BYTES; smaller ones stay fp32, where the
chain does not pay); any Linear with an int8 weight takes them. The bytes are exactly the next layer's own static
quantization of the fp32 output (sk_qgemm_u8s8_u8 with GELU: quantize(gelu(y))
bit for bit), so a chained model computes the same numbers as the unchained
one, without writing the [tokens, 4C] fp32 tensor and reading it twice
(GELU, then quantize).
"""
import math

import numpy as np

from sparsekit._native import core as _core
from sparsekit._quantized import QuantizedMatrix
from sparsekit._validate import as_float_array, kernel_rows
from sparsekit.formats import ACTIVATIONS
from sparsekit.quant_ops import _ZP, check_static_params, quantize_rows, quantized_linear


class U8Activations:
    """A u8 activation tensor between runtime layers: q uint8 [..., N] with
    x ~ (q - zero_point) * scale (one scale and zero point for the tensor)."""

    __slots__ = ("q", "scale", "zero_point")

    def __init__(self, q, scale, zero_point):
        self.q, self.scale, self.zero_point = q, scale, zero_point

    @property
    def shape(self):
        return self.q.shape

    def dequantize(self):
        """(q - zero_point) * scale as float32."""
        return (self.q.astype(np.float32) - np.float32(self.zero_point)) * \
            np.float32(self.scale)

    def __repr__(self):
        return (f"U8Activations(shape={self.q.shape}, scale={self.scale:g}, "
                f"zero_point={self.zero_point})")


def check_out_quant(weight, out_quant):
    """(float scale, int zero point) of a Linear's u8 output; the weight must be
    an int8 format (the requantization is its kernel's epilogue)."""
    if not hasattr(weight, "with_static_input"):
        raise TypeError("out_quant: u8 output needs an int8 weight (QuantizedMatrix or "
                        f"SparseInt8Matrix), got {type(weight).__name__}")
    if isinstance(out_quant, (str, bytes)) or not hasattr(out_quant, "__len__") or \
            len(out_quant) != 2:
        raise ValueError(f"out_quant: expected (scale, zero_point), got {out_quant!r}")
    return check_static_params(out_quant[0], out_quant[1], "out")


# The chain pays only when the fp32 tensor it keeps from memory is large: the
# requantization costs the same in the up-projection's epilogue as in the
# down-projection's own quantizing pass, which overlaps its GEMM, so what is
# saved is the fp32 tensor's trip out of and back into the caches. Measured
# (MiniLM's FFN 384-1536-384, dense int8 static, GELU, 1 thread, interleaved
# medians; benchmarks/RESULTS.md "Static int8 chain"): chained / unchained
# 1.19 at M = 1, 1.1 at 15, 1.02-1.03 at 128, 1.00-1.02 at 485-640 rows
# (3-4 MB of fp32), 0.98-0.99 at 1024, 0.93 at 2000. Below this many bytes of
# fp32 output a Linear with out_quant returns fp32 (the same numbers
# downstream either way).
CHAIN_MIN_BYTES = 4 << 20


def run(layer, x):
    """layer(x) for a Linear with u8 output or u8 input (U8Activations)."""
    w, n = layer.weight, layer.out_features
    if type(x) is U8Activations:
        if not hasattr(w, "with_static_input"):  # a float weight: the values
            return layer._call_f32(x.dequantize())
        lead, k = x.q.shape[:-1], x.q.shape[-1]
        q = kernel_rows(x.q.reshape(math.prod(lead), k))
        sc, zp = x.scale, x.zero_point
    else:
        if not (type(x) is np.ndarray and x.dtype == np.float32):
            x = as_float_array(x, "x")
        if x.ndim == 0 or x.shape[-1] != layer.in_features:
            raise ValueError(f"x: expected last dimension {layer.in_features}, got {x.shape}")
        lead, k = x.shape[:-1], x.shape[-1]
        if layer.out_quant is not None and math.prod(lead) * n * 4 < CHAIN_MIN_BYTES:
            return layer._call_f32(x)  # small: fp32 out (see CHAIN_MIN_BYTES)
        x2 = x.reshape(math.prod(lead), k)
        sc, zp = w.input_scale, w.input_zero_point
        if sc is None:  # a dynamic weight: per-row parameters
            q, sc, zp = quantize_rows(x2)
        else:  # the static quantization the weight would do inside
            q = np.empty(x2.shape, dtype=np.uint8)
            _core.quantize_u8_static(kernel_rows(x2), sc, zp, q)
    os, oz = layer.out_quant if layer.out_quant is not None else (None, None)
    if type(w) is QuantizedMatrix and type(sc) is float and k == layer.in_features:
        # what quantized_linear does, without re-validating what the layer
        # validated at construction
        out = np.empty((q.shape[0], n), dtype=np.float32 if os is None else np.uint8)
        _core.qgemm_dequant(w._arrays(), n, k, q, _ZP[zp], np.full(1, sc, np.float32),
                            layer.bias, ACTIVATIONS[layer.activation], os,
                            0 if oz is None else oz, out)
    else:
        out = quantized_linear(q, sc, zp, w, layer.bias, layer.activation, os, oz)
    out = out.reshape(lead + (n,))
    return out if os is None else U8Activations(out, os, oz)


def without_chains(model):
    """A copy of a runtime Model whose Linears output fp32 again (out_quant
    dropped; weights shared): the unchained model, for comparisons."""
    import copy

    from sparsekit.runtime.layers import Linear

    m = copy.copy(model)
    m.nodes = []
    for layer, ins, out in model.nodes:
        if isinstance(layer, Linear) and layer.out_quant is not None:
            layer = copy.copy(layer)
            layer.out_quant = None
        m.nodes.append((layer, list(ins), out))
    return m
