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


def as_index_array(a, name):
    """`a` as an int64 1-D array; float (NaN) or non-integer input is rejected."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got dtype {arr.dtype}")
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
