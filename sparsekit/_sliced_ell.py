"""SlicedEllMatrix: a pruned fp32 weight for small M (mainly M = 1), stored as
a sliced ELL with floating 32-column windows.

Layout (the contract of kernels/src/spmv_sell_f32, see sparsekit.h)::

    W[N, K] -> slices of 16 rows (lane i of slice s = row 16 s + i)
      -> per slice, groups group_ptr[s] .. group_ptr[s + 1] (int64, slices + 1);
         group g covers columns [window[g], window[g] + 32) (uint32 [G])
         and holds up to 4 nonzeros ("steps") of each of the 16 rows:
           index[g, i]      uint32: byte j = lane i's step j, bits 0-4 the
                            column offset in the window, bit 7 "slot used"
           values[g, j, i]  float32 (0 in an unused slot)

The AVX-512 kernel gathers x for 16 rows at once with one register permute
(vpermt2ps over the window's 32 floats) per step, where CSR at M = 1 builds
each x[col] with its own load: ~0.26-0.35 cycles per nonzero against 0.7-0.9
on Zen 5, i.e. 2-3.5x the CSR kernel at M = 1. The price is padding: at 90%
sparsity ~57% of the slots hold a nonzero (~0.88 bytes per dense weight, CSR
0.61); at 70% ~85% (~1.8 bytes, as CSR). For M > 1 each group's loads serve
up to 4 rows of x, which still beats CSR up to M ~ 8; above that use a
CSRMatrix (its tiled kernel wins). On AVX2 the window is gathered with
permutes and blends (about CSR's speed at M = 1); on ARM a NEON kernel
gathers it with TBL/TBX byte lookups (tested under qemu; its speed is not
measured, so sparsekit.pack does not pick this format there).
"""
import numpy as np

from sparsekit._native import AVAILABLE as _COMPILED
from sparsekit._native import core as _core
from sparsekit._validate import as_float_array, check_shape2, frozen, integer_array

LANES, STEPS, WIDTH = 16, 4, 32


class SlicedEllMatrix:
    """A sparse fp32 weight W[N, K] (out, in) for sparsekit.linear at small M.

    Sliced ELL with 32-column windows (layout in this module's docstring):
    ``group_ptr`` (int64), ``window`` (uint32 [G]), ``index`` (uint32 [G, 16]),
    ``values`` (float32 [G, 4, 16]); read-only. It is a format for M <= ~8
    (single tokens, small batches); for larger M a CSRMatrix is faster.

    Build one with ``SlicedEllMatrix.from_csr(csr)``, ``.from_dense(w)``
    (exact zeros dropped), ``.from_scipy(m)``, or from its four arrays:
    ``SlicedEllMatrix((group_ptr, window, index, values), shape)`` (checked:
    each row's columns in rising order, windows inside K, unused slots zero;
    TypeError / ValueError naming the array otherwise). Read back with
    ``.to_csr()`` / ``.to_dense()`` / ``.to_scipy()``; ``.nnz``, ``.density``, ``.nbytes``,
    ``.fill``; picklable. Needs the compiled C core (ImportError without it).
    ``sparsekit.pack(w, m=1)`` picks it where it is the fastest format.
    """

    __slots__ = ("_shape", "group_ptr", "window", "index", "values", "_nnz", "_csr")

    def __init__(self, arrays, shape):
        try:
            group_ptr, window, index, values = arrays
        except (TypeError, ValueError):
            raise TypeError("arrays: expected a tuple (group_ptr, window, index, values)"
                            ) from None
        n, k = check_shape2(shape)
        if k > np.iinfo(np.int32).max:
            raise ValueError(f"shape: K = {k} exceeds the int32 column range")
        slices = (n + LANES - 1) // LANES
        group_ptr = _int_array(group_ptr, "group_ptr", np.int64)
        if group_ptr.shape != (slices + 1,):
            raise ValueError(f"group_ptr: expected shape ({slices + 1},) = ceil(N / 16) + 1, "
                             f"got {group_ptr.shape}")
        if group_ptr[0] != 0:
            raise ValueError(f"group_ptr: must start at 0, starts at {group_ptr[0]}")
        if slices and np.diff(group_ptr).min() < 0:
            s = int(np.argmax(np.diff(group_ptr) < 0))
            raise ValueError(f"group_ptr: must be non-decreasing (decreases at slice {s})")
        groups = int(group_ptr[-1])
        window = _int_array(window, "window", np.uint32)
        index = _int_array(index, "index", np.uint32)
        values = as_float_array(values, "values")
        if groups == 0:  # an empty list ([]) stands for an empty array of any shape
            window, index, values = (a.reshape(want) if a.size == 0 else a for a, want in (
                (window, (0,)), (index, (0, LANES)), (values, (0, STEPS, LANES))))
        for name, a, want in (("window", window, (groups,)), ("index", index, (groups, LANES)),
                              ("values", values, (groups, STEPS, LANES))):
            if a.shape != want:
                raise ValueError(f"{name}: expected shape {want} (G = group_ptr[-1] = "
                                 f"{groups}), got {a.shape}")
        self._shape = (n, k)
        self.group_ptr = frozen(np.array(group_ptr, dtype=np.int64, order="C"))
        self.window = frozen(np.array(window, dtype=np.uint32, order="C"))
        # own 64-byte aligned copies: the kernel loads whole 64-byte rows
        self.index = frozen(_core.sell_aligned(np.ascontiguousarray(index)))
        self.values = frozen(_core.sell_aligned(np.ascontiguousarray(values)))
        self._csr = None
        bad = _core.sell_validate(self.group_ptr, self.window, self.index, self.values, n, k)
        if bad != -1:
            raise ValueError(self._explain(bad))
        self._nnz = int(np.count_nonzero(_slot_bytes(self.index) & 0x80))

    # ---- constructors -------------------------------------------------------
    @classmethod
    def from_csr(cls, csr):
        """The sliced ELL of a CSRMatrix (same values, same order per row).
        Raises TypeError when `csr` is not a sparsekit.CSRMatrix."""
        from sparsekit.formats import CSRMatrix

        if not isinstance(csr, CSRMatrix):
            raise TypeError(f"csr: expected a sparsekit.CSRMatrix, got {type(csr).__name__}")
        n, k = csr.shape
        arrays = _core.sell_from_csr(csr.indptr, csr.indices, csr.data, n, k)
        return cls(arrays, (n, k))

    @classmethod
    def from_dense(cls, w):
        """Of a dense float [N, K] weight; exact zeros are dropped (pruned).
        Raises as CSRMatrix.from_dense (TypeError for a non-float w,
        ValueError for NaN / infinity or not 2-D)."""
        from sparsekit.formats import CSRMatrix

        return cls.from_csr(CSRMatrix.from_dense(w))

    @classmethod
    def from_scipy(cls, m):
        """Of any scipy.sparse matrix (duplicates summed, explicit zeros dropped).
        Raises TypeError when `m` is not a scipy.sparse matrix or array."""
        from sparsekit.formats import CSRMatrix

        return cls.from_csr(CSRMatrix.from_scipy(m))

    # ---- views --------------------------------------------------------------
    @property
    def shape(self):
        """(N, K) = (out, in)."""
        return self._shape

    @property
    def nnz(self):
        """Number of stored nonzeros (padding slots not counted)."""
        return self._nnz

    @property
    def density(self):
        """nnz / (N * K) (0.0 for an empty shape)."""
        n, k = self._shape
        return self._nnz / (n * k) if n * k else 0.0

    @property
    def nbytes(self):
        """Bytes of the four arrays, padding slots included (~0.88 bytes per
        dense weight at 90% sparsity, where CSR holds ~0.61)."""
        return (self.group_ptr.nbytes + self.window.nbytes + self.index.nbytes
                + self.values.nbytes)

    @property
    def fill(self):
        """Share of the slots that hold a nonzero (1.0: no padding)."""
        slots = self.values.size
        return self._nnz / slots if slots else 1.0

    def to_csr(self):
        """The same weight as a CSRMatrix."""
        from sparsekit.formats import CSRMatrix

        n, k = self._shape
        rows, cols, vals = self._entries()
        order = np.argsort(rows, kind="stable")  # keeps each row's column order
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        return CSRMatrix((vals[order], cols[order], indptr), (n, k))

    def to_dense(self):
        """The weight as a dense float32 [N, K] array (a new array)."""
        n, k = self._shape
        out = np.zeros((n, k), dtype=np.float32)
        rows, cols, vals = self._entries()
        out[rows, cols] = vals
        return out

    def to_scipy(self):
        """The weight as a new scipy.sparse.csr_matrix (float32, int32 indices,
        columns sorted); ImportError without SciPy."""
        try:
            import scipy.sparse  # noqa: F401
        except ImportError as e:
            raise ImportError("SlicedEllMatrix.to_scipy needs SciPy: pip install scipy") from e
        return self.to_csr().to_scipy()

    def __repr__(self):
        n, k = self._shape
        return (f"SlicedEllMatrix(shape=({n}, {k}), nnz={self.nnz}, "
                f"density={self.density:.3f}, fill={self.fill:.3f}, "
                + (f"{self.nbytes / (n * k):.3f} bytes/weight)" if n * k else
                   f"{self.nbytes} bytes, no weights)"))

    def __reduce__(self):
        return (_sell_from_state, (self.group_ptr, self.window, self.index, self.values,
                                   self._shape))

    # ---- state (torch state_dict; pickle passes the same arrays) -------------
    def _state_arrays(self):
        """{name: array} this weight consists of, shared (read-only, not copied)."""
        return {"group_ptr": self.group_ptr, "window": self.window, "index": self.index,
                "values": self.values}

    @classmethod
    def _from_state_arrays(cls, shape, arrays):
        """Rebuilt from _state_arrays' arrays, checked as on construction."""
        return cls((arrays["group_ptr"], arrays["window"], arrays["index"],
                    arrays["values"]), shape)

    # ---- internals ----------------------------------------------------------
    def _entries(self):
        """(rows, cols, values) of the used slots, each row's in column order."""
        b = _slot_bytes(self.index)                        # [G, 16, 4]
        g, i, j = np.nonzero(b & 0x80)
        slice_of = np.repeat(np.arange(len(self.group_ptr) - 1, dtype=np.int64),
                             np.diff(self.group_ptr))
        rows = slice_of[g] * LANES + i
        cols = self.window[g].astype(np.int64) + (b[g, i, j] & 31)
        order = np.lexsort((j, g, rows))  # row, then group, then step
        return rows[order], cols[order], self.values[g, j, i][order]

    def _explain(self, bad):
        """What is wrong with group `bad` (the C validator's first bad group)."""
        n, k = self._shape
        if bad == -2:
            return "group_ptr: must start at 0 and be non-decreasing"
        g = bad
        s = int(np.searchsorted(self.group_ptr, g, side="right") - 1)
        c0 = int(self.window[g])
        if (k >= WIDTH and c0 > k - WIDTH) or (k < WIDTH and c0 != 0):
            return (f"window: group {g} starts at column {c0}; a 32-column window must end "
                    f"inside K = {k} (or start at 0 when K < 32)")
        b = _slot_bytes(self.index[g:g + 1])[0]            # [16, 4]
        v = self.values[g]                                  # [4, 16]
        for i in range(LANES):
            for j in range(STEPS):
                byte, val = int(b[i, j]), float(v[j, i])
                where = f"group {g} lane {i} step {j}"
                if not byte & 0x80:
                    if byte or val != 0.0:
                        return (f"index/values: unused slot ({where}) must hold index byte 0 "
                                f"and value 0, got {byte:#x} and {val}")
                    continue
                if byte & 0x60:
                    return f"index: {where} sets bits 5-6 ({byte:#x}); offsets are 0..31"
                if s * LANES + i >= n:
                    return f"index: {where} is a row past N = {n}"
                if c0 + (byte & 31) >= k:
                    return f"index: {where} column {c0 + (byte & 31)} out of range [0, {k})"
                if not np.isfinite(val):
                    return f"values: {where} is NaN or infinity"
        return (f"index: group {g} (slice {s}) repeats a column or breaks a row's column "
                "order; each row's columns must rise through its groups and steps")

    # ---- compute ------------------------------------------------------------
    def _linear(self, x, bias, act, backend):
        n, k = self._shape
        if backend == "numba" or (backend == "auto" and not _COMPILED):
            if self._csr is None:
                self._csr = self.to_csr()
            return self._csr._linear(x, bias, act, backend)
        return _core.linear_sell_f32(self.group_ptr, self.window, self.index, self.values,
                                     n, k, x, bias, act)

    def _linear_fast(self, x, bias, act):
        """linear() in one C call for plain float32 input (see CSRMatrix._linear_fast)."""
        if not _COMPILED:
            return None
        n, k = self._shape
        return _core.linear_sell_f32_fast(self.group_ptr, self.window, self.index,
                                          self.values, n, k, x, bias, act)


def _int_array(a, name, dtype):
    """`a` as an integer array of `dtype`, every value representable."""
    arr = integer_array(a, name)
    info = np.iinfo(dtype)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise ValueError(f"{name}: values must fit {np.dtype(dtype).name}")
    return arr.astype(dtype, copy=False)


def _slot_bytes(index):
    """[..., 16] uint32 words -> [..., 16, 4] slot bytes (byte j = step j)."""
    return ((index[..., None] >> np.array([0, 8, 16, 24], dtype=np.uint32)) & 0xff
            ).astype(np.uint8)


def _sell_from_state(group_ptr, window, index, values, shape):
    return SlicedEllMatrix((group_ptr, window, index, values), shape)
