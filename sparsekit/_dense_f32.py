"""PackedDenseMatrix: a dense float32 weight W[N, K] packed once for the
gemm_f32 kernel (layout in kernels/include/sparsekit.h: panels of 32 rows,
k-major).

NumPy's BLAS packs the weight again on every call, which dominates at the
few rows a transformer runs at batch 1: MiniLM's [12, 384] x [384, 1536]
takes ~260 us in OpenBLAS and ~57 us here, as in ONNX Runtime's MLAS (which
packs its constant weights once too; benchmarks/RESULTS.md, "ONNX batch 1").
The sums run in float32 (FMA on AVX2 / AVX-512; in k order except the AVX2
kernel's 1- and 2-row tiles, which split k over 4 accumulator chains), so
results differ from BLAS's by rounding only. The converters (ONNX, torch,
Keras, `sparsekit.pack`) use it for dense fp32 weights where `wanted()`
says it beats NumPy; elsewhere a plain array (NumPy) is as fast.
"""
import operator

import numpy as np

from sparsekit._native import AVAILABLE as _COMPILED
from sparsekit._native import core as _core
from sparsekit._validate import as_float_array, check_shape2, frozen

PANEL = 32


def wanted(avx2_cpu=False):
    """Does the packed kernel beat NumPy's BLAS on this CPU (at the ISA now set)?
    AVX-512 kernel: yes, 1.0-4.5x at M = 1..600. AVX2 kernel: against an AVX2
    OpenBLAS (what an AVX2-only CPU runs) 2.5-4.3x at M = 2..6, 1.1-1.6x at
    12..32, even at 128..512, 0.8-0.95x at M = 1; against the AVX-512 OpenBLAS
    of a CPU that has AVX-512 but is forced to AVX2 it loses from M ~ 128 on
    (0.55x at 512), so there it is not used (RESULTS.md, "Packed dense fp32
    in the runtimes"). The portable kernel is a reference, not fast.
    avx2_cpu=True: the answer for a CPU without AVX-512 (where the AVX2 kernel
    is used), whatever this one has: what `sparsekit pack --measure` times
    for MEASURED_AVX2 on an AVX-512 CPU forced to AVX2."""
    if not _COMPILED:
        return False
    isa = _core.family_isa("gemm_f32")
    if isa == "avx2":
        return avx2_cpu or not _core.cpu_supports("avx512")
    return isa in ("avx512", "avx512vnni")


# appended to a converter's reason when it packs a dense fp32 weight
PACKED_REASON = ", packed once for sparsekit's fp32 GEMM"


def for_linear(w, avx2_cpu=False):
    """A dense float32 weight [N, K] of a Linear as the runtime should hold it:
    a PackedDenseMatrix where wanted(avx2_cpu), else w itself (NumPy's BLAS)."""
    return PackedDenseMatrix(w) if wanted(avx2_cpu) else w


class PackedDenseMatrix:
    """A dense float32 weight W[N, K] (out, in) packed for sparsekit's fp32
    GEMM: ``sparsekit.linear(x, PackedDenseMatrix(w))`` equals ``x @ w.T`` up
    to float rounding. ``to_dense()`` (or ``np.asarray``) gives W back
    exactly; picklable; ``nbytes`` counts the packed panels (N rounded up to
    32). Raises TypeError for a non-float w, ValueError for a w that is not
    2-D; ImportError-free, but needs the compiled C core to compute.
    backend="numba" runs NumPy's BLAS on the unpacked values (as for an
    ndarray weight; slower: one unpack per call)."""

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

    def rows(self, r0, r1):
        """Rows [r0, r1) of W as a PackedDenseMatrix sharing this one's packed
        buffer (no copy): its panels are a contiguous run of ours when r0 is a
        multiple of PANEL and r1 is one too or is N (so the view's last panel
        has our zero padding, not another row's values, past its end). Used to
        give fused layers' members (torch FusedLinears) views of one stacked
        weight. Raises TypeError for non-integers, ValueError for any other range."""
        n, k = self._shape
        try:
            r0, r1 = operator.index(r0), operator.index(r1)
        except TypeError:
            raise TypeError(f"r0, r1: expected integers, got {type(r0).__name__}, "
                            f"{type(r1).__name__}") from None
        if not 0 <= r0 < r1 <= n:
            raise ValueError(f"r0, r1: expected 0 <= r0 < r1 <= {n}, got {r0}, {r1}")
        if r0 % PANEL or (r1 % PANEL and r1 != n):
            raise ValueError(f"r0, r1: expected r0 a multiple of {PANEL} and r1 one too or "
                             f"{n} (whole panels), got {r0}, {r1}")
        other = object.__new__(PackedDenseMatrix)
        other._shape = (r1 - r0, k)
        panels = (r1 - r0 + PANEL - 1) // PANEL
        other._packed = self._packed[r0 * k:(r0 + panels * PANEL) * k]
        return other

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
        if backend == "numba":  # no kernel of its own: as an ndarray weight
            from sparsekit.formats import GELU
            from sparsekit.ops import _dense_linear, _gelu_inplace

            y = _dense_linear(x, self.to_dense(), bias, 0 if act == GELU else act, backend)
            return _gelu_inplace(y) if act == GELU else y
        n, k = self._shape
        return _core.linear_gemm_f32(self._packed, n, k, x, bias, act)
