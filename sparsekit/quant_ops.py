"""Int8 entry points: quantize_rows, int8_matmul, quantized_linear.

Activations are quantized to u8, asymmetric (see kernels/include/sparsekit.h
for the exact math, which the C kernels and quantize_rows_reference share bit
for bit). Weights are a QuantizedMatrix (symmetric int8 in [-127, 127]).

    x fp32 [M,K] --quantize_rows--> xq u8 [M,K], scale f32 [M], zero_point i32 [M]
    int8_matmul(xq, zero_point, qw) = (xq - zero_point) @ qw.q.T    exact int32
    sparsekit.linear(x, qw) = dequantized result, quantization done inside
"""
import math

import numpy as np

from sparsekit._native import core as _core
from sparsekit._quantized import QuantizedMatrix
from sparsekit._validate import as_float_array, check_bias, kernel_rows

_FLT_MAX = float(np.finfo(np.float32).max)


def _rows(x, name):
    """x as float32 [M, K] with unit-stride rows, plus its leading shape."""
    x = as_float_array(x, name)
    if x.ndim == 0:
        raise ValueError(f"{name}: expected at least 1-D [..., K], got a scalar")
    lead = x.shape[:-1]
    x2 = kernel_rows(x.reshape(math.prod(lead), x.shape[-1]))
    return x2, lead


def check_static_params(scale, zero_point, what="x"):
    """(float32 scale, int zero point) of a static per-tensor u8 quantization.
    Errors name the arguments `{what}_scale` / `{what}_zero_point`, or plain
    `scale` / `zero_point` when `what` is None."""
    s_name, z_name = ("scale", "zero_point") if what is None else \
        (f"{what}_scale", f"{what}_zero_point")
    if isinstance(scale, (bool, np.bool_)) or not np.isscalar(scale) and np.ndim(scale) != 0:
        raise TypeError(f"{s_name}: expected a float scalar, got {scale!r}")
    s = float(np.float32(scale))
    if not (0.0 < s <= _FLT_MAX):
        raise ValueError(f"{s_name}: expected a finite float > 0, got {scale!r}")
    if isinstance(zero_point, (bool, np.bool_)) or not isinstance(
            zero_point, (int, np.integer)):
        raise TypeError(f"{z_name}: expected an int, got {zero_point!r}")
    z = int(zero_point)
    if not 0 <= z <= 255:
        raise ValueError(f"{z_name}: expected 0..255, got {z}")
    return s, z


def quantize_rows(x, scale=None, zero_point=None):
    """Quantize float activations to u8, asymmetric.

    Dynamic (default): one (scale, zero_point) per row of x [..., K], from the
    row's range widened to hold 0; round half to even. Static: pass a scalar
    `scale` and `zero_point` (from calibration) used for every row.
    Returns (xq uint8 [..., K], scale float32 [...], zero_point int32 [...]),
    with x ~ (xq - zero_point[..., None]) * scale[..., None] (for 1-D x, scale
    and zero_point are 0-d arrays). NaN or infinity in x raises ValueError, as
    do only one of scale / zero_point, scale <= 0 or zero_point outside
    [0, 255]; a non-float x, a non-scalar scale or non-int zero_point raise
    TypeError.
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
        s, z = check_static_params(scale, zero_point, None)
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


def _weight(qw, accepted="a QuantizedMatrix"):
    if not isinstance(qw, QuantizedMatrix):
        raise TypeError(f"qw: expected {accepted}, got {type(qw).__name__}")
    return qw


def _u8_rows(xq, k):
    if type(xq) is np.ndarray and xq.ndim == 2 and xq.dtype == np.uint8 \
            and xq.shape[1] == k and (k < 2 or xq.strides[1] == 1) \
            and (xq.shape[0] < 2 or xq.strides[0] >= k):
        return xq, xq.shape[:1]  # the common case, no conversion
    a = np.asarray(xq)
    if a.dtype != np.uint8:
        raise TypeError(f"xq: expected a uint8 array, got dtype {a.dtype}")
    if a.ndim == 0 or a.shape[-1] != k:
        raise ValueError(f"xq: expected shape [..., {k}] (K of qw), got {a.shape}")
    lead = a.shape[:-1]
    return kernel_rows(a.reshape(math.prod(lead), k)), lead


# one read-only [1] array per possible scalar zero point: no allocation per call
_ZP = tuple(np.full(1, v, dtype=np.int32) for v in range(256))
for _a in _ZP:
    _a.flags.writeable = False


def _per_row(v, m, lead, name, kind):
    """A scalar or per-row [...] parameter as a contiguous [1] or [M] array."""
    if kind == "zp" and type(v) is int and 0 <= v <= 255:
        return _ZP[v]
    arr = np.asarray(v)
    if kind == "zp":
        if arr.dtype.kind not in "iu" or arr.dtype == np.bool_:
            raise TypeError(f"{name}: expected an int or integer array, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"{name}: zero points must be in [0, 255]")
        dtype = np.int32
    else:
        if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
            raise TypeError(f"{name}: expected a float or float array, got dtype {arr.dtype}")
        arr = arr.astype(np.float32)
        if arr.size and not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
            raise ValueError(f"{name}: scales must be finite and > 0")
        dtype = np.float32
    if arr.ndim == 0:
        return np.ascontiguousarray(arr.reshape(1), dtype=dtype)
    if arr.shape != lead:
        raise ValueError(f"{name}: expected a scalar or shape {lead} (one per row), "
                         f"got {arr.shape}")
    return np.ascontiguousarray(arr.reshape(m), dtype=dtype)


def int8_matmul(xq, x_zero_point, qw):
    """Exact int32 [..., N] = sum_k (xq[..., k] - x_zero_point) * qw.q[n, k].

    xq: uint8 [..., K]; x_zero_point: an int in [0, 255] or one per row [...];
    qw: a QuantizedMatrix or SparseInt8Matrix (its scales are not applied).
    Bit-identical to an int64 reference on every ISA. Raises TypeError for a
    non-uint8 xq, a non-integer zero point or another qw; ValueError for a
    last axis of xq other than K, or zero points outside [0, 255] or not of
    shape xq.shape[:-1].
    """
    if _sparse_int8_weight(qw):  # pruned int8: same contract, sparse kernel
        return qw.int8_matmul(xq, x_zero_point)
    qw = _weight(qw, "a QuantizedMatrix or SparseInt8Matrix")
    n, k = qw._shape
    a, lead = _u8_rows(xq, k)
    zp = _per_row(x_zero_point, a.shape[0], lead, "x_zero_point", "zp")
    out = np.empty((a.shape[0], n), dtype=np.int32)
    _core.qgemm_s32(qw._arrays(), n, k, a, zp, out)
    return out if len(lead) == 1 else out.reshape(lead + (n,))


def quantized_linear(xq, x_scale, x_zero_point, qw, bias=None, activation=None,
                     out_scale=None, out_zero_point=None):
    """Linear layer on already-quantized u8 activations (static int8 chains).

    y = activation((xq - x_zero_point) @ qw.q.T * (x_scale * qw.scale) + bias),
    with xq uint8 [..., K], x_scale (> 0) / x_zero_point ([0, 255]) scalars or
    one per row [...], qw a QuantizedMatrix or a SparseInt8Matrix, bias None
    or float [N], activation None, "relu" or "gelu". Returns float32 [..., N],
    or, with out_scale / out_zero_point, the u8 requantization
    clip(rint(y / out_scale) + out_zero_point, 0, 255) (round half to even),
    bit for bit quantize_rows(y, out_scale, out_zero_point) of the fp32
    result (with "gelu" too: the chain of a static BERT FFN, whose GELU
    output is the down-projection's input, never leaves the cache in fp32).
    Both weight formats give bit-identical results for the same q and scale
    (a SparseInt8Matrix runs its exact int32 kernel, then the same epilogue,
    in the same float32 operation order, in NumPy). Raises TypeError /
    ValueError naming the argument for wrong dtypes or shapes, or only one
    of out_scale / out_zero_point.
    """
    from sparsekit.formats import ACTIVATIONS

    sparse = _sparse_int8_weight(qw)
    if not sparse:
        qw = _weight(qw, "a QuantizedMatrix or SparseInt8Matrix")
    n, k = qw.shape
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {list(ACTIVATIONS)}, got {activation!r}")
    a, lead = _u8_rows(xq, k)
    m = a.shape[0]
    zp = _per_row(x_zero_point, m, lead, "x_zero_point", "zp")
    sc = _per_row(x_scale, m, lead, "x_scale", "scale")
    b = check_bias(bias, n)
    if (out_scale is None) != (out_zero_point is None):
        raise ValueError("out_scale/out_zero_point: give both (u8 out) or neither (fp32 out)")
    if out_scale is not None:
        out_scale, out_zero_point = check_static_params(out_scale, out_zero_point, "out")
    if sparse:
        out = _sparse_epilogue(qw._int8_matmul(np.ascontiguousarray(a), zp), sc, qw._wscale, b,
                               activation, out_scale, out_zero_point)
    elif out_scale is None:
        out = np.empty((m, n), dtype=np.float32)
        _core.qgemm_dequant(qw._arrays(), n, k, a, zp, sc, b, ACTIVATIONS[activation],
                            None, 0, out)
    else:
        out = np.empty((m, n), dtype=np.uint8)
        _core.qgemm_dequant(qw._arrays(), n, k, a, zp, sc, b, ACTIVATIONS[activation],
                            out_scale, out_zero_point, out)
    return out.reshape(lead + (n,))


def _sparse_int8_weight(qw):
    """Whether qw is a SparseInt8Matrix (imported lazily: it needs the C core)."""
    if type(qw) is QuantizedMatrix:
        return False
    from sparsekit._sparse_int8 import SparseInt8Matrix

    return isinstance(qw, SparseInt8Matrix)


def _sparse_epilogue(acc, x_scale, w_scale, bias, activation, out_scale, out_zero_point):
    """quantized_linear's epilogue on the exact int32 [M, N] of a sparse
    weight, in the C epilogue's float32 order (qgemm_u8s8/scalar.c):
    float(acc) * (x_scale * w_scale), + bias, relu as y > 0 ? y : 0 (NaN and
    -0 give +0), gelu by the same C kernel; u8 out: rint(y / out_scale) +
    zero point, clamped with NaN -> 0."""
    y = acc.astype(np.float32)
    y *= x_scale[:, None] * w_scale[None, :]
    if bias is not None:
        y += bias
    if activation == "relu":
        y = np.where(y > 0, y, np.float32(0))
    elif activation == "gelu":
        _core.gelu_f32(y)
    if out_scale is None:
        return y
    r = np.rint(y / np.float32(out_scale)) + np.float32(out_zero_point)
    return np.where(r >= 0, np.minimum(r, np.float32(255)), np.float32(0)).astype(np.uint8)
