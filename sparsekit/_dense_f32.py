"""PackedDenseMatrix: a dense float32 weight W[N, K] packed once for the
gemm_f32 kernel (layout in kernels/include/sparsekit.h: panels of 32 rows,
k-major).

NumPy's BLAS packs the weight again on every call, which dominates at the
few rows a transformer runs at batch 1: MiniLM's [12, 384] x [384, 1536]
takes ~260 us in OpenBLAS and ~57 us here, as in ONNX Runtime's MLAS (which
packs its constant weights once too; benchmarks/RESULTS.md, "ONNX batch 1").
The sums run in k order in float32 (FMA on AVX-512), so results differ from
BLAS's by rounding only. The ONNX importer uses it for dense fp32 MatMul /
Gemm weights where the kernel runs on AVX-512 (see `wanted`); elsewhere a
plain array (NumPy) is as fast.
"""
import numpy as np

from sparsekit._native import AVAILABLE as _COMPILED
from sparsekit._native import core as _core
from sparsekit._validate import as_float_array, check_shape2, frozen

PANEL = 32


def wanted():
    """Does gemm_f32 run its AVX-512 kernel on this CPU (at the ISA now set)?
    Only then it beats NumPy's BLAS at every M measured (1.0-4.5x at
    M = 1..600, RESULTS.md); the portable kernel is a reference, not fast."""
    return _COMPILED and _core.family_isa("gemm_f32") in ("avx512", "avx512vnni")


class PackedDenseMatrix:
    """A dense float32 weight W[N, K] (out, in) packed for sparsekit's fp32
    GEMM: ``sparsekit.linear(x, PackedDenseMatrix(w))`` equals ``x @ w.T`` up
    to float rounding. ``to_dense()`` (or ``np.asarray``) gives W back
    exactly; picklable; ``nbytes`` counts the packed panels (N rounded up to
    32). Raises TypeError for a non-float w, ValueError for a w that is not
    2-D; ImportError-free, but needs the compiled C core to compute."""

    _fused_gelu = True  # activation="gelu" runs on each output tile in the kernel

    __slots__ = ("_shape", "_packed")

    def __init__(self, w):
        w = np.ascontiguousarray(as_float_array(w, "w", ndim=2))
        self._shape = w.shape
        self._packed = frozen(_core.gemm_f32_pack(w))

    @property
    def shape(self):
        """(N, K) = (out, in)."""
        return self._shape

    @property
    def nbytes(self):
        return self._packed.nbytes

    def to_dense(self):
        """W as a new float32 [N, K] array."""
        n, k = self._shape
        p = (n + PANEL - 1) // PANEL
        if n == 0 or k == 0:
            return np.zeros((n, k), np.float32)
        panels = self._packed[:p * k * PANEL].reshape(p, k, PANEL)
        return np.ascontiguousarray(panels.transpose(0, 2, 1).reshape(p * PANEL, k)[:n])

    def __array__(self, dtype=None, copy=None):
        w = self.to_dense()
        return w if dtype is None else w.astype(dtype)

    def __reduce__(self):
        return (PackedDenseMatrix, (self.to_dense(),))

    def __repr__(self):
        return f"PackedDenseMatrix(shape={self._shape})"

    def _state_arrays(self):
        return {"values": self.to_dense()}

    @classmethod
    def _from_state_arrays(cls, shape, arrays):
        n, k = check_shape2(shape)
        v = np.asarray(arrays["values"])
        if v.dtype != np.float32 or v.shape != (n, k):
            raise ValueError(f"values: expected float32 [{n}, {k}], got {v.dtype} "
                             f"{list(v.shape)}")
        return cls(v)

    def _linear(self, x, bias, act, backend):
        if backend == "numba":
            raise ValueError("backend: the numba backend has no PackedDenseMatrix path; "
                             "use 'auto' or 'c'")
        n, k = self._shape
        return _core.linear_gemm_f32(self._packed, n, k, x, bias, act)
