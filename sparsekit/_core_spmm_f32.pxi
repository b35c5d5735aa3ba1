# fp32 CSR x dense (included by _core.pyx).

cdef int fill_csr(sk_csr_f32 *w, cnp.ndarray indptr, cnp.ndarray indices,
                  cnp.ndarray data, int64_t n, int64_t k) except -1:
    """O(1) checks that the arrays can hold a CSR of shape (n, k)."""
    if indptr.dtype != np.int64 or indptr.ndim != 1 or indptr.shape[0] != n + 1 \
            or not indptr.flags.c_contiguous:
        raise ValueError("indptr: expected contiguous int64 of length n + 1")
    if indices.dtype == np.uint16:
        w.index_bytes = 2
        if k > 65536:
            raise ValueError("indices: uint16 indices need K <= 65536")
    elif indices.dtype == np.int32:
        w.index_bytes = 4
    else:
        raise ValueError("indices: expected uint16 or int32")
    if data.dtype != np.float32 or data.ndim != 1 or indices.ndim != 1 \
            or not data.flags.c_contiguous or not indices.flags.c_contiguous:
        raise ValueError("data/indices: expected contiguous 1-D arrays")
    cdef int64_t nnz = (<int64_t *>cnp.PyArray_DATA(indptr))[n]
    if nnz < 0 or data.shape[0] < nnz or indices.shape[0] < nnz:
        raise ValueError("indptr: last entry exceeds the length of data/indices")
    w.n = n
    w.k = k
    w.indptr = <const int64_t *>cnp.PyArray_DATA(indptr)
    w.indices = <const void *>cnp.PyArray_DATA(indices)
    w.values = <const float *>cnp.PyArray_DATA(data)
    return 0


def csr_validate(cnp.ndarray indptr, cnp.ndarray indices, cnp.ndarray data,
                 int64_t n, int64_t k):
    """Full O(nnz) check; returns the first bad row or -1."""
    cdef sk_csr_f32 w
    cdef int64_t bad = -1
    fill_csr(&w, indptr, indices, data, n, k)
    with nogil:
        sk_csr_f32_validate(&w, &bad)
    return bad


cdef const float *f32_rows(cnp.ndarray a, int64_t rows, int64_t cols, str name,
                           int64_t *ld) except NULL:
    """Pointer and row stride of a float32 [rows, cols] array with unit inner stride."""
    if a.dtype != np.float32 or a.ndim != 2 or a.shape[0] != rows or a.shape[1] != cols:
        raise ValueError(f"{name}: expected float32 [{rows}, {cols}]")
    if rows == 0 or cols == 0:
        ld[0] = cols
        return <const float *>cnp.PyArray_DATA(a)
    if (cols > 1 and a.strides[1] != 4) or (rows > 1 and (
            a.strides[0] % 4 != 0 or a.strides[0] < 4 * cols)):
        raise ValueError(f"{name}: rows must be contiguous")
    ld[0] = a.strides[0] // 4 if rows > 1 else cols
    return <const float *>cnp.PyArray_DATA(a)


cdef cnp.ndarray empty_aligned_f32(int64_t m, int64_t n):
    """float32 [m, n] starting on a 64-byte boundary, so the kernels' full-width
    stores do not straddle cache lines (NumPy only guarantees 16 bytes)."""
    cdef cnp.npy_intp dims[2]
    dims[0] = m
    dims[1] = n
    if m * n < 4096:  # small: alignment is not worth a microsecond
        return cnp.PyArray_EMPTY(2, dims, cnp.NPY_FLOAT32, 0)
    dims[0] = m * n + 16
    cdef cnp.ndarray buf = cnp.PyArray_EMPTY(1, dims, cnp.NPY_FLOAT32, 0)
    cdef size_t addr = <size_t>cnp.PyArray_DATA(buf)
    cdef int64_t off = <int64_t>(((64 - addr % 64) % 64) // 4)
    return buf[off:off + m * n].reshape(m, n)


cdef class CsrShared:
    """The shared-column layout of one CSR weight (kernels/src/spmm_f32/shared.h),
    owned here and freed with this object. Build with csr_shared_build; it must
    only be passed along with the arrays it was built from (the C side checks
    shape and nnz)."""
    cdef sk_csr_f32_shared *ptr
    cdef object arrays  # the (indptr, indices, data) it was built from

    def __dealloc__(self):
        sk_csr_f32_shared_free(self.ptr)
        self.ptr = NULL

    @property
    def nbytes(self):
        return sk_csr_f32_shared_nbytes(self.ptr)


def csr_shared_build(cnp.ndarray indptr, cnp.ndarray indices, cnp.ndarray data,
                     int64_t n, int64_t k, bint force=False):
    """The weight's shared-column layout, or None where the kernels would not use
    it (see sk_csr_f32_shared_build; force: build it whenever possible)."""
    cdef sk_csr_f32 w
    cdef sk_csr_f32_shared *p
    fill_csr(&w, indptr, indices, data, n, k)
    with nogil:
        p = sk_csr_f32_shared_build(&w, 1 if force else 0)
    if p == NULL:
        return None
    cdef CsrShared s = CsrShared.__new__(CsrShared)
    s.ptr = p
    s.arrays = (indptr, indices, data)
    return s


cdef const sk_csr_f32_shared *shared_ptr(object shared, cnp.ndarray indptr,
                                          cnp.ndarray indices, cnp.ndarray data) except? NULL:
    """The layout's pointer (NULL for None); it must come from these very arrays."""
    if shared is None:
        return NULL
    if not isinstance(shared, CsrShared):
        raise TypeError("shared: expected a CsrShared or None")
    cdef CsrShared s = <CsrShared>shared
    a = s.arrays
    if a[0] is not indptr or a[1] is not indices or a[2] is not data:
        raise ValueError("shared: built from other arrays")
    return s.ptr


def linear_csr_f32(cnp.ndarray indptr, cnp.ndarray indices, cnp.ndarray data,
                   int64_t n, int64_t k, cnp.ndarray x, object bias, int act,
                   cnp.ndarray out=None, object shared=None):
    """out[M, N] = act(x[M, K] @ W.T + bias) with W the CSR (indptr, indices, data);
    out=None allocates a 64-byte aligned result; shared: W's CsrShared or None."""
    cdef sk_csr_f32 w
    cdef const sk_csr_f32_shared *ps = shared_ptr(shared, indptr, indices, data)
    cdef int64_t m = x.shape[0] if x.ndim == 2 else -1
    cdef int64_t ldx = 0, ldy = 0
    cdef const float *px
    cdef float *py
    cdef const float *pb = NULL
    cdef int rc
    fill_csr(&w, indptr, indices, data, n, k)
    px = f32_rows(x, m, k, "x", &ldx)
    if out is None:
        out = empty_aligned_f32(m, n)
    py = <float *>f32_rows(out, m, n, "out", &ldy)
    if not out.flags.writeable:
        raise ValueError("out: must be writeable")
    if bias is not None:
        if bias.dtype != np.float32 or bias.ndim != 1 or bias.shape[0] != n \
                or not bias.flags.c_contiguous:
            raise ValueError(f"bias: expected contiguous float32 [{n}]")
        pb = <const float *>cnp.PyArray_DATA(bias)
    if act != 0 and act != 1:
        raise ValueError("activation: expected 0 (none) or 1 (relu)")
    with nogil:
        rc = sk_linear_csr_f32_shared(&w, ps, m, px, ldx, pb, <sk_activation>act, py, ldy)
    check(rc)
    return out


def linear_csr_f32_fast(cnp.ndarray indptr, cnp.ndarray indices, cnp.ndarray data,
                        int64_t n, int64_t k, object x, object bias, int act,
                        object shared=None):
    """sparsekit.linear's common case in one call, for the per-call cost of
    small layers (M = 1): x a float32 ndarray [K] or [M, K] with unit-stride
    rows, bias None or a contiguous float32 [N], act 0 or 1. Returns y
    ([N] or [M, N]), or None when the input needs the general path in ops.py
    (conversion, other shapes, or an error to report). shared: W's CsrShared or None."""
    cdef sk_csr_f32 w
    cdef const sk_csr_f32_shared *ps = shared_ptr(shared, indptr, indices, data)
    cdef cnp.ndarray xa, out
    cdef int64_t m, ldx, rows
    cdef const float *pb = NULL
    cdef int rc
    if type(x) is not np.ndarray or (act != 0 and act != 1):
        return None
    xa = <cnp.ndarray>x
    if cnp.PyArray_TYPE(xa) != cnp.NPY_FLOAT32:
        return None
    if cnp.PyArray_NDIM(xa) == 1:
        m = 1
        if cnp.PyArray_DIM(xa, 0) != k or (k > 1 and cnp.PyArray_STRIDE(xa, 0) != 4):
            return None
        ldx = k
    elif cnp.PyArray_NDIM(xa) == 2:
        m = cnp.PyArray_DIM(xa, 0)
        if cnp.PyArray_DIM(xa, 1) != k or (k > 1 and cnp.PyArray_STRIDE(xa, 1) != 4):
            return None
        ldx = cnp.PyArray_STRIDE(xa, 0) // 4 if m > 1 else k
        if m > 1 and (cnp.PyArray_STRIDE(xa, 0) % 4 != 0 or ldx < k):
            return None
    else:
        return None
    if bias is not None:
        if type(bias) is not np.ndarray or cnp.PyArray_TYPE(<cnp.ndarray>bias) != cnp.NPY_FLOAT32 \
                or cnp.PyArray_NDIM(<cnp.ndarray>bias) != 1 \
                or cnp.PyArray_DIM(<cnp.ndarray>bias, 0) != n \
                or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>bias):
            return None
        pb = <const float *>cnp.PyArray_DATA(<cnp.ndarray>bias)
    fill_csr(&w, indptr, indices, data, n, k)
    if m == 0 or k == 0:
        ldx = k
    cdef cnp.npy_intp dims[1]
    if cnp.PyArray_NDIM(xa) == 1:
        dims[0] = n
        out = cnp.PyArray_EMPTY(1, dims, cnp.NPY_FLOAT32, 0)
    else:
        out = empty_aligned_f32(m, n)
    with nogil:
        rc = sk_linear_csr_f32_shared(&w, ps, m, <const float *>cnp.PyArray_DATA(xa), ldx, pb,
                                      <sk_activation>act, <float *>cnp.PyArray_DATA(out), n)
    check(rc)
    return out
