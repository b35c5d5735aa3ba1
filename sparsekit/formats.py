"""Weight formats. Each is validated and packed once, at construction, so the
per-call path (sparsekit.linear) does O(1) checks only.

A format object knows its `shape` (N, K) = (out, in) and implements
`_linear(x, bias, act, backend)` for a float32 [M, K] x with contiguous rows.
"""
import numpy as np

from sparsekit._native import AVAILABLE as _COMPILED
from sparsekit._native import core as _core
from sparsekit._validate import as_float_array, as_index_array, check_shape2, frozen

# "gelu" is the exact (erf) GELU: fused into the int8 GEMM for QuantizedMatrix
# (formats with `_fused_gelu`), a separate pass over the output for the others.
ACTIVATIONS = {None: 0, "relu": 1, "gelu": 2}
GELU = 2


class CSRMatrix:
    """A sparse fp32 weight W[N, K] (out, in) in compressed sparse row form.

    ``data`` (float32), ``indices`` (uint16 when K <= 65536, else int32) and
    ``indptr`` (int64) follow scipy.sparse.csr_matrix. Column indices must be
    sorted and unique within each row. The arrays are read-only.

    Build one with ``CSRMatrix.from_dense(w)`` (exact zeros dropped),
    ``CSRMatrix.from_scipy(m)``, or ``CSRMatrix((data, indices, indptr), shape)``.
    ``.with_shared_columns()`` trades memory for speed at 65-83% sparsity
    (65-95% for K > 512; its docstring says where the layout is built).
    """

    __slots__ = ("_shape", "data", "indices", "indptr", "_shared")

    def __init__(self, arrays, shape):
        try:
            data, indices, indptr = arrays
        except (TypeError, ValueError):
            raise TypeError("arrays: expected a tuple (data, indices, indptr)") from None
        n, k = check_shape2(shape)
        data = as_float_array(data, "data", ndim=1, allow_nan=False)
        indices = as_index_array(indices, "indices")
        indptr = as_index_array(indptr, "indptr")
        if indptr.shape[0] != n + 1:
            raise ValueError(f"indptr: expected length N + 1 = {n + 1}, got {indptr.shape[0]}")
        if indptr[0] != 0:
            raise ValueError(f"indptr: must start at 0, starts at {indptr[0]}")
        steps = np.diff(indptr)
        if steps.size and steps.min() < 0:
            row = int(np.argmax(steps < 0))
            raise ValueError(f"indptr: must be non-decreasing (decreases at row {row})")
        nnz = int(indptr[-1])
        if data.shape[0] != nnz or indices.shape[0] != nnz:
            raise ValueError(f"data/indices: expected {nnz} entries (indptr[-1]), "
                             f"got {data.shape[0]} and {indices.shape[0]}")
        if nnz and (indices.min() < 0 or indices.max() >= k):
            bad = int(np.argmax((indices < 0) | (indices >= k)))
            raise ValueError(f"indices: column {indices[bad]} out of range [0, {k}) "
                             f"at position {bad}")
        if nnz > 1:  # sorted and unique within each row
            rising = np.diff(indices) > 0
            row_start = np.zeros(nnz, dtype=bool)
            row_start[indptr[1:-1][indptr[1:-1] < nnz]] = True
            bad = ~rising & ~row_start[1:]
            if bad.any():
                p = int(np.argmax(bad)) + 1
                row = int(np.searchsorted(indptr, p, side="right") - 1)
                what = "duplicate" if indices[p] == indices[p - 1] else "unsorted"
                raise ValueError(f"indices: {what} column {indices[p]} in row {row}; "
                                 "columns must be sorted and unique within a row")
        index_dtype = np.uint16 if k <= 65536 else np.int32
        if k > np.iinfo(np.int32).max:
            raise ValueError(f"shape: K = {k} exceeds the int32 column index range")
        self._shape = (n, k)
        # own copies: the caller's arrays stay writeable and cannot change ours
        self.data = frozen(np.array(data, dtype=np.float32, order="C"))
        self.indices = frozen(np.array(indices, dtype=index_dtype, order="C"))
        self.indptr = frozen(np.array(indptr, dtype=np.int64, order="C"))
        self._shared = None  # see with_shared_columns

    # ---- constructors -------------------------------------------------------
    @classmethod
    def from_dense(cls, w):
        """CSR of a dense weight w [N, K] (out, in; a float array or torch
        tensor); exact zeros are dropped (pruned). Raises TypeError when w is
        not floating point, ValueError when it is not 2-D or holds NaN or
        infinity."""
        w = as_float_array(w, "w", ndim=2, allow_nan=False)
        rows, cols = np.nonzero(w)
        indptr = np.zeros(w.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=w.shape[0]), out=indptr[1:])
        return cls((w[rows, cols], cols, indptr), w.shape)

    @classmethod
    def from_scipy(cls, m):
        """CSR of m, any scipy.sparse matrix or array (duplicates summed,
        explicit zeros dropped, columns sorted; float values become float32).
        Raises TypeError when m is not a scipy.sparse matrix or its values are
        not floating point, ValueError when they hold NaN or infinity."""
        if not hasattr(m, "tocsr"):
            raise TypeError(f"m: expected a scipy.sparse matrix, got {type(m).__name__}")
        m = m.tocsr(copy=True)
        as_float_array(m.data, "m.data", allow_nan=False)  # errors name the argument
        m.sum_duplicates()
        m.eliminate_zeros()
        m.sort_indices()
        return cls((m.data, m.indices, m.indptr), m.shape)

    # ---- views --------------------------------------------------------------
    @property
    def shape(self):
        """(N, K) = (out, in)."""
        return self._shape

    @property
    def nnz(self):
        """Number of stored (nonzero) weights."""
        return int(self.indptr[-1])

    @property
    def density(self):
        """nnz / (N * K): the fraction of weights kept (0.0 for an empty shape)."""
        n, k = self._shape
        return self.nnz / (n * k) if n * k else 0.0

    @property
    def nbytes(self):
        """Bytes of the CSR arrays plus the shared-column layout, if built."""
        shared = self._shared.nbytes if self._shared is not None else 0
        return self.data.nbytes + self.indices.nbytes + self.indptr.nbytes + shared

    def to_dense(self):
        """The weight as a dense float32 [N, K] array (a new array)."""
        n, k = self._shape
        out = np.zeros((n, k), dtype=np.float32)
        rows = np.repeat(np.arange(n), np.diff(self.indptr))
        out[rows, self.indices.astype(np.int64)] = self.data
        return out

    def to_scipy(self):
        """The weight as a new scipy.sparse.csr_matrix (float32, int32 indices,
        copies of the arrays); ImportError without SciPy."""
        try:
            import scipy.sparse
        except ImportError as e:
            raise ImportError("CSRMatrix.to_scipy needs SciPy: pip install scipy") from e

        return scipy.sparse.csr_matrix(
            (self.data.copy(), self.indices.astype(np.int32), self.indptr.copy()),
            shape=self._shape)

    def __repr__(self):
        n, k = self._shape
        return (f"CSRMatrix(shape=({n}, {k}), nnz={self.nnz}, density={self.density:.3f}, "
                f"index={self.indices.dtype}, "
                + (f"{self.nbytes / (n * k):.3f} bytes/weight)" if n * k else
                   f"{self.nbytes} bytes, no weights)"))

    def __reduce__(self):
        return (_csr_from_state, (self.data, self.indices, self.indptr, self._shape,
                                  self.shared_columns))

    # ---- the shared-column layout (opt-in: memory for speed) -----------------
    def with_shared_columns(self):
        """This weight (the same read-only arrays, not copied) plus the AVX-512
        kernel's shared-column layout: rows in groups of 4, a column used by
        2-4 rows of a group is loaded once for all of them. At M >= 32 and 70%
        sparsity ``linear`` runs 15-24% faster (benchmarks/RESULTS.md, "shared
        columns"), but the layout holds a second copy of the values and indices:
        about 3.4 bytes per dense weight at 70% instead of 1.8 (dense fp32: 4),
        counted in ``nbytes``. It is built only where the kernel uses it
        (AVX-512 CPU, uint16 indices, density 17-35%, or 5-35% for K > 512,
        where it also gains 4-13% at 90% sparsity: 1.2 bytes per dense weight
        instead of CSR's 0.61); elsewhere the result has
        none and ``shared_columns`` is False. sparsekit.pack picks it where
        its cost model predicts it faster (AVX-512, M >= 2, 17-35% density).
        Pickle, torch state_dicts (key ``shared_columns``) and sparsekit.save
        keep it: the layout is derived data, so they store the CSR arrays and a
        flag, and loading rebuilds it (where this CPU uses it)."""
        out = object.__new__(CSRMatrix)
        out._shape, out.data, out.indices, out.indptr = (self._shape, self.data,
                                                         self.indices, self.indptr)
        n, k = self._shape
        out._shared = (self._shared if self._shared is not None else
                       _core.csr_shared_build(self.indptr, self.indices, self.data, n, k)
                       if _COMPILED else None)
        return out

    @property
    def shared_columns(self):
        """True when this weight carries the shared-column layout."""
        return self._shared is not None

    # ---- state (torch state_dict; pickle passes the same arrays) -------------
    def _state_arrays(self):
        """{name: array} this weight consists of, shared (read-only, not copied),
        plus "shared_columns" (uint8 1) when it carries the layout (rebuilt,
        not stored); CSRMatrix._from_state_arrays(shape, them) rebuilds it."""
        out = {"data": self.data, "indices": self.indices, "indptr": self.indptr}
        if self._shared is not None:
            out["shared_columns"] = np.ones((), np.uint8)
        return out

    @classmethod
    def _from_state_arrays(cls, shape, arrays):
        """Rebuilt from _state_arrays' arrays, checked as on construction; an
        optional "shared_columns" flag (0 or 1, one integer or bool) asks for
        the layout (built where with_shared_columns builds one)."""
        csr = cls((arrays["data"], arrays["indices"], arrays["indptr"]), shape)
        flag = arrays.get("shared_columns")
        if flag is None:
            return csr
        flag = np.asarray(flag)
        if flag.dtype.kind not in "biu":
            raise TypeError(f"shared_columns: expected an integer or bool flag, got {flag.dtype}")
        if flag.size != 1 or flag.reshape(-1)[0] not in (0, 1):
            raise ValueError(f"shared_columns: expected one flag 0 or 1, got "
                             f"{flag.reshape(-1)[:4].tolist()} (shape {list(flag.shape)})")
        return csr.with_shared_columns() if flag.reshape(-1)[0] else csr

    # ---- compute ------------------------------------------------------------
    def _linear(self, x, bias, act, backend):
        n, k = self._shape
        if backend == "numba" or (backend == "auto" and not _COMPILED):
            try:
                from sparsekit._numba.spmm import linear_csr
            except ImportError as e:
                raise ImportError("backend='numba' needs Numba: "
                                  'pip install "sparsekit[numba]" '
                                  '(from a clone: pip install -e ".[numba]")'
                                  ) from e

            return linear_csr(self.indptr, self.indices, self.data, n, x, bias, act)
        return _core.linear_csr_f32(self.indptr, self.indices, self.data, n, k, x, bias,
                                    act, None, self._shared)

    def _linear_fast(self, x, bias, act):
        """linear() in one C call when x is float32 [K] or [M, K] with unit-stride
        rows and bias None or float32 [N] (no Python-side checks or copies: the
        fixed cost of small layers); None means: take the general path."""
        if not _COMPILED:
            return None
        n, k = self._shape
        return _core.linear_csr_f32_fast(self.indptr, self.indices, self.data, n, k, x, bias,
                                         act, self._shared)


def _csr_from_state(data, indices, indptr, shape, shared_columns=False):
    csr = CSRMatrix((data, indices, indptr), shape)
    return csr.with_shared_columns() if shared_columns else csr


from sparsekit._quantized import QuantizedMatrix  # noqa: E402  (int8 weights)

# Sparse int8 (pruned + quantized, 1x4 blocks) lives in its own module.
from sparsekit._sparse_int8 import SparseInt8Matrix  # noqa: E402,F401

# fp32 sliced ELL for small M (mainly M = 1) lives in its own module.
from sparsekit._sliced_ell import SlicedEllMatrix  # noqa: E402,F401
