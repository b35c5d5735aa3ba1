"""Argument checks shared by the formats and ops: every message names the
argument and says what was expected."""
import numpy as np


def as_float_array(a, name, ndim=None, allow_nan=True):
    """`a` as a float32 ndarray (float inputs converted; ints, bools rejected)."""
    if hasattr(a, "detach") and hasattr(a, "numpy"):  # a torch tensor
        a = a.detach().cpu().numpy()
    arr = np.asarray(a)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim not in (ndim if isinstance(ndim, tuple) else (ndim,)):
        raise ValueError(f"{name}: expected {ndim}-D array, got shape {arr.shape}")
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    if not allow_nan and arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinity")
    return arr


def integer_array(a, name):
    """np.asarray(a), which must hold integers. Empty input counts as integer
    (np.asarray([]) is float64); non-empty float input is rejected."""
    arr = np.asarray(a)
    if arr.size == 0 and arr.dtype.kind == "f":
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got dtype {arr.dtype}")
    return arr


def as_index_array(a, name):
    """`a` as an int64 1-D array; float (NaN) or non-integer input is rejected."""
    arr = integer_array(a, name)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name}: values exceed int64")
    return arr.astype(np.int64, copy=False)


def check_shape2(shape, name="shape"):
    try:
        n, k = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a pair of ints (N, K), got {shape!r}") from None
    if n < 0 or k < 0:
        raise ValueError(f"{name}: sizes must be non-negative, got {(n, k)}")
    return n, k


def frozen(a):
    """A read-only view: validated arrays must not change behind our back."""
    a = a.view()
    a.flags.writeable = False
    return a


def check_bias(bias, n, name="bias"):
    """None, or `bias` as a contiguous float32 [n] array."""
    if bias is None:
        return None
    b = np.ascontiguousarray(as_float_array(bias, name, ndim=1))
    if b.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},), got {b.shape}")
    return b


def _to_numpy(a):
    if hasattr(a, "detach") and hasattr(a, "numpy"):  # a torch tensor
        return a.detach().cpu().numpy()
    return np.asarray(a)


def check_int8_weights(q):
    """Already-quantized weights `q` as int8 [N, K], values in [-127, 127]."""
    arr = _to_numpy(q)
    if arr.size == 0 and arr.dtype.kind == "f":  # np.asarray([[], []]) is float64
        arr = arr.astype(np.int8)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"q: expected an integer (int8) array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"q: expected a 2-D [N, K] array, got shape {arr.shape}")
    if arr.size and (arr.min() < -127 or arr.max() > 127):
        raise ValueError(f"q: values must be in [-127, 127] (symmetric int8, no -128), "
                         f"got range [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int8, copy=False)


def check_weight_scale(scale, n):
    """(float32 scale, per_channel) for a positive weight scale that is a
    scalar (per tensor: returned as [1]) or one per output channel [n]."""
    s = _to_numpy(scale)
    if s.dtype.kind not in "fiu":
        raise TypeError(f"scale: expected a float scalar or array, got dtype {s.dtype}")
    s = s.astype(np.float32)
    if s.ndim == 0 or s.shape == (1,):
        per_channel = False
        s = s.reshape(1)
    elif s.shape == (n,):
        per_channel = True
    else:
        raise ValueError(f"scale: expected a scalar (per tensor) or shape ({n},) "
                         f"(per channel), got shape {s.shape}")
    if s.size and not (np.isfinite(s).all() and (s > 0).all()):
        raise ValueError("scale: every scale must be finite and > 0")
    return np.ascontiguousarray(s), per_channel


def quantize_symmetric_int8(w, per_channel):
    """(q int8 [N, K], scale float32 [N] or [1]) of a float32 weight [N, K]:
    scale = max|w| / 127 per output channel (or over the tensor), at least
    FLT_MIN, 1 for all-zero; q = clip(rint(w / scale), -127, 127) computed in
    float32 (round half to even). Every int8 format quantizes with this."""
    if not isinstance(per_channel, (bool, np.bool_)):
        raise TypeError(f"per_channel: expected a bool, got {per_channel!r}")
    n = w.shape[0]
    amax = np.abs(w).max(axis=1, initial=0.0) if per_channel else \
        np.array([np.abs(w).max(initial=0.0)], dtype=np.float32)
    amax = amax.astype(np.float32)
    tiny = np.finfo(np.float32).tiny
    scale = np.where(amax > 0, np.maximum(amax / np.float32(127), tiny), 1.0).astype(np.float32)
    per = scale if per_channel else np.broadcast_to(scale, (n,))
    q = np.clip(np.rint(w / per[:, None]), -127, 127).astype(np.int8)
    return q, np.ascontiguousarray(scale)


def kernel_rows(a):
    """A 2-D array `a` as the kernels read it: itself when its rows are
    unit-stride and its row stride is a whole, positive number of items, at
    least one row long (so not reversed or broadcast); else a contiguous copy."""
    m, k = a.shape
    it = a.itemsize
    if m and k and ((k > 1 and a.strides[1] != it) or
                    (m > 1 and (a.strides[0] % it or a.strides[0] < it * k))):
        return np.ascontiguousarray(a)
    return a
