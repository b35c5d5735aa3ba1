"""Public entry points: sparsekit.linear.

linear() checks the activations (O(1) plus at most one conversion copy of x),
then hands over to the weight format, which was validated when it was built.
"""
import math

import numpy as np

from sparsekit._native import AVAILABLE as _COMPILED
from sparsekit._native import core as _core
from sparsekit._validate import as_float_array, check_bias, kernel_rows
from sparsekit.formats import ACTIVATIONS, GELU

BACKENDS = ("auto", "c", "numba")


def linear(x, w, bias=None, activation=None, backend="auto"):
    """y = activation(x @ w.T + bias), the PyTorch Linear convention.

    x: float array [..., K] (1-D [K] gives 1-D [N]); float64/float16 inputs and
       non-contiguous rows are converted to contiguous float32 (one copy of x).
    w: a sparsekit weight format of shape (N, K): CSRMatrix, SlicedEllMatrix,
       QuantizedMatrix (x quantized to u8 per row inside) or SparseInt8Matrix;
       or a dense float array [N, K] (computed with NumPy).
    bias: None or float array [N].
    activation: None, "relu" or "gelu" (exact erf GELU, within 1e-6 relative;
       fused into the int8 kernel for a QuantizedMatrix).
    backend: "auto" or "c" (compiled kernels), or "numba" (portable JIT path:
       CSRMatrix and SlicedEllMatrix only; "auto" uses it for a CSRMatrix when
       the C core is not built).
    Returns float32 [..., N].
    Raises TypeError for a non-float x, bias or dense w, a scipy.sparse w
    (convert it once with CSRMatrix.from_scipy) or another unknown w;
    ValueError for a last axis of x other than K, a bias not of shape [N], an
    unknown activation or backend, or backend="numba" with an int8 format;
    ImportError for backend="numba" without Numba, or "c" without the C core.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {list(ACTIVATIONS)}, got {activation!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    act = ACTIVATIONS[activation]
    if act == GELU and not getattr(w, "_fused_gelu", False):
        # no fused epilogue for this format: one in-place pass over y
        return _gelu_inplace(linear(x, w, bias, None, backend))
    fast = getattr(w, "_linear_fast", None) if backend != "numba" else None
    if fast is not None:  # formats with a one-call path for plain float32 input
        y = fast(x, bias, act)
        if y is not None:
            return y
    if not hasattr(w, "_linear"):
        return _dense_linear(x, w, bias, act, backend)
    n, k = w.shape
    x = as_float_array(x, "x")
    if x.ndim == 0:
        raise ValueError("x: expected at least 1-D [..., K], got a scalar")
    if x.shape[-1] != k:
        raise ValueError(f"x: expected last dimension K = {k} (w is {n}x{k}), "
                         f"got shape {x.shape}")
    lead = x.shape[:-1]
    x2 = x.reshape(math.prod(lead), k)  # math.prod: np.prod costs ~2 us per call
    x2 = kernel_rows(x2)  # the kernels need unit-stride rows: else one copy
    b = check_bias(bias, n)
    y = w._linear(x2, b, act, backend)
    return y.reshape(lead + (n,))


def _gelu_inplace(y):
    """Exact (erf) GELU over a fresh float32 result: the C kernel, or without
    the compiled core the same math in float64 (slow but exact)."""
    if y.size and _COMPILED:
        _core.gelu_f32(y)
    elif y.size:
        v = y.astype(np.float64)
        with np.errstate(invalid="ignore"):
            g = 0.5 * v * np.vectorize(math.erfc, otypes=[np.float64])(-v / math.sqrt(2))
        g[v < -20] = -0.0
        g[np.isposinf(v)] = np.inf
        y[...] = g
    return y


def _dense_linear(x, w, bias, act, backend):
    """Correct fallback for a dense weight: NumPy's BLAS in float32."""
    if not hasattr(w, "shape") and not isinstance(w, (list, tuple)):
        raise TypeError(f"w: expected a sparsekit weight format or a dense [N, K] array, "
                        f"got {type(w).__name__}")
    if hasattr(w, "tocsr"):  # scipy.sparse: convert once, not on every call
        raise TypeError("w: got a scipy.sparse matrix; convert it once with "
                        "sparsekit.CSRMatrix.from_scipy(w) and pass that")
    w = as_float_array(w, "w", ndim=2)
    n, k = w.shape
    x = as_float_array(x, "x")
    if x.ndim == 0 or x.shape[-1] != k:
        raise ValueError(f"x: expected last dimension K = {k} (w is {n}x{k}), "
                         f"got shape {x.shape}")
    y = x @ w.T
    b = check_bias(bias, n)
    if b is not None:
        y += b
    if act == 1:
        np.maximum(y, 0, out=y, where=~np.isnan(y))
    return y.astype(np.float32, copy=False)
