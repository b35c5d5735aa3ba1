"""Int8 entry points: quantize_rows, int8_matmul, quantized_linear.

Activations are quantized to u8, asymmetric (see kernels/include/sparsekit.h
for the exact math, which the C kernels and quantize_rows_reference share bit
for bit). Weights are a QuantizedMatrix (symmetric int8 in [-127, 127]).

    x fp32 [M,K] --quantize_rows--> xq u8 [M,K], scale f32 [M], zero_point i32 [M]
    int8_matmul(xq, zero_point, qw) = (xq - zero_point) @ qw.q.T    exact int32
    sparsekit.linear(x, qw) = dequantized result, quantization done inside
"""
import numpy as np

from sparsekit import _core
from sparsekit._validate import as_float_array

_FLT_MAX = float(np.finfo(np.float32).max)


def _rows(x, name):
    """x as float32 [M, K] with unit-stride rows, plus its leading shape."""
    x = as_float_array(x, name)
    if x.ndim == 0:
        raise ValueError(f"{name}: expected at least 1-D [..., K], got a scalar")
    lead = x.shape[:-1]
    x2 = x.reshape(int(np.prod(lead, dtype=np.int64)), x.shape[-1])
    if x2.shape[1] > 1 and x2.shape[0] and (x2.strides[1] != 4 or x2.strides[0] % 4):
        x2 = np.ascontiguousarray(x2)
    return x2, lead


def check_static_params(scale, zero_point, what="x"):
    """(float32 scale, int zero point) of a static per-tensor u8 quantization."""
    if isinstance(scale, (bool, np.bool_)) or not np.isscalar(scale) and np.ndim(scale) != 0:
        raise TypeError(f"{what}_scale: expected a float scalar, got {scale!r}")
    s = float(np.float32(scale))
    if not (0.0 < s <= _FLT_MAX):
        raise ValueError(f"{what}_scale: expected a finite float > 0, got {scale!r}")
    if isinstance(zero_point, (bool, np.bool_)) or not isinstance(
            zero_point, (int, np.integer)):
        raise TypeError(f"{what}_zero_point: expected an int, got {zero_point!r}")
    z = int(zero_point)
    if not 0 <= z <= 255:
        raise ValueError(f"{what}_zero_point: expected 0..255, got {z}")
    return s, z


def quantize_rows(x, scale=None, zero_point=None):
    """Quantize float activations to u8, asymmetric.

    Dynamic (default): one (scale, zero_point) per row of x [..., K], from the
    row's range widened to hold 0; round half to even. Static: pass a scalar
    `scale` and `zero_point` (from calibration) used for every row.
    Returns (xq uint8 [..., K], scale float32 [...], zero_point int32 [...]),
    with x ~ (xq - zero_point[..., None]) * scale[..., None].
    NaN or infinity in x raises ValueError.
    """
    x2, lead = _rows(x, "x")
    m, k = x2.shape
    xq = np.empty((m, k), dtype=np.uint8)
    if scale is None and zero_point is None:
        sc = np.empty(m, dtype=np.float32)
        zp = np.empty(m, dtype=np.int32)
        _core.quantize_rows_u8(x2, xq, sc, zp)
    elif scale is None or zero_point is None:
        raise ValueError("scale/zero_point: give both (static) or neither (dynamic)")
    else:
        s, z = check_static_params(scale, zero_point, "x")
        _core.quantize_u8_static(x2, s, z, xq)
        sc = np.full(m, s, dtype=np.float32)
        zp = np.full(m, z, dtype=np.int32)
    return xq.reshape(lead + (k,)), sc.reshape(lead), zp.reshape(lead)


def quantize_rows_reference(x):
    """NumPy statement of the dynamic u8 math (bit-identical to the kernels)."""
    x = np.asarray(x, dtype=np.float32)
    x2 = x.reshape(-1, x.shape[-1])
    mn = np.minimum(x2.min(axis=1, initial=0.0), 0.0).astype(np.float32)
    mx = np.maximum(x2.max(axis=1, initial=0.0), 0.0).astype(np.float32)
    zero = ~(mx > mn)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = ((mx.astype(np.float64) - mn.astype(np.float64)) / 255.0).astype(np.float32)
        s = np.maximum(s, np.finfo(np.float32).tiny)
        s[zero] = 1.0
        z = np.clip(np.rint(-mn / s), 0, 255).astype(np.float32)
        z[zero] = 0
        q = np.rint(x2 / s[:, None]) + z[:, None]
    q = np.clip(q, 0, 255).astype(np.uint8)
    lead = x.shape[:-1]
    return q.reshape(x.shape), s.reshape(lead), z.astype(np.int32).reshape(lead)
