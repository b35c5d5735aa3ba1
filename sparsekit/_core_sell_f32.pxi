# fp32 sliced ELL with 32-column windows (included by _core.pyx).

cdef cnp.ndarray empty_aligned(int64_t count, int typenum, int itemsize):
    """A 1-D array of `count` items starting on a 64-byte boundary: the
    kernels load each group's 64-byte index and value rows whole, and a row
    split over two cache lines costs two loads."""
    cdef cnp.npy_intp dims[1]
    dims[0] = count + 64 // itemsize
    cdef cnp.ndarray buf = cnp.PyArray_EMPTY(1, dims, typenum, 0)
    cdef size_t addr = <size_t>cnp.PyArray_DATA(buf)
    cdef int64_t off = <int64_t>(((64 - addr % 64) % 64) // itemsize)
    return buf[off:off + count]


def sell_aligned(cnp.ndarray a):
    """A 64-byte aligned contiguous copy of a uint32 or float32 array (same shape)."""
    cdef cnp.ndarray out = empty_aligned(a.size, cnp.PyArray_TYPE(a), a.itemsize)
    out = out.reshape((<object>a).shape)
    out[...] = a
    return out


cdef int fill_sell(sk_sell_f32 *w, cnp.ndarray group_ptr, cnp.ndarray window,
                   cnp.ndarray index, cnp.ndarray values, int64_t n, int64_t k) except -1:
    """O(1) checks that the arrays can hold a sliced ELL of shape (n, k)."""
    cdef int64_t slices = (n + 15) // 16
    if group_ptr.dtype != np.int64 or group_ptr.ndim != 1 \
            or group_ptr.shape[0] != slices + 1 or not group_ptr.flags.c_contiguous:
        raise ValueError("group_ptr: expected contiguous int64 of length ceil(N / 16) + 1")
    if window.dtype != np.uint32 or index.dtype != np.uint32 or values.dtype != np.float32 \
            or not window.flags.c_contiguous or not index.flags.c_contiguous \
            or not values.flags.c_contiguous:
        raise ValueError("window/index/values: expected contiguous uint32/uint32/float32")
    cdef int64_t groups = (<int64_t *>cnp.PyArray_DATA(group_ptr))[slices]
    if groups < 0 or window.size < groups or index.size < 16 * groups \
            or values.size < 64 * groups:
        raise ValueError("group_ptr: last entry exceeds the groups in window/index/values")
    w.n = n
    w.k = k
    w.group_ptr = <const int64_t *>cnp.PyArray_DATA(group_ptr)
    w.window = <const uint32_t *>cnp.PyArray_DATA(window)
    w.index = <const uint32_t *>cnp.PyArray_DATA(index)
    w.values = <const float *>cnp.PyArray_DATA(values)
    return 0


def sell_count_groups(cnp.ndarray indptr, cnp.ndarray indices, cnp.ndarray data,
                      int64_t n, int64_t k):
    """Groups sell_from_csr would make of a valid CSR (sparsekit.pack's units)."""
    cdef sk_csr_f32 c
    cdef int64_t groups
    fill_csr(&c, indptr, indices, data, n, k)
    with nogil:
        groups = sk_sell_f32_count_groups(&c)
    if groups < 0:
        raise ValueError("csr: bad arguments")
    return groups


def sell_from_csr(cnp.ndarray indptr, cnp.ndarray indices, cnp.ndarray data,
                  int64_t n, int64_t k):
    """(group_ptr, window, index [G, 16], values [G, 4, 16]) of a valid CSR."""
    cdef sk_csr_f32 c
    cdef int64_t groups
    cdef int rc
    fill_csr(&c, indptr, indices, data, n, k)
    with nogil:
        groups = sk_sell_f32_count_groups(&c)
    if groups < 0:
        raise ValueError("csr: bad arguments")
    cdef cnp.ndarray group_ptr = np.empty((n + 15) // 16 + 1, dtype=np.int64)
    cdef cnp.ndarray window = np.empty(groups, dtype=np.uint32)
    cdef cnp.ndarray index = empty_aligned(16 * groups, cnp.NPY_UINT32, 4)
    cdef cnp.ndarray values = empty_aligned(64 * groups, cnp.NPY_FLOAT32, 4)
    with nogil:
        rc = sk_sell_f32_from_csr(&c, <int64_t *>cnp.PyArray_DATA(group_ptr),
                                  <uint32_t *>cnp.PyArray_DATA(window),
                                  <uint32_t *>cnp.PyArray_DATA(index),
                                  <float *>cnp.PyArray_DATA(values))
    check(rc)
    return group_ptr, window, index.reshape(groups, 16), values.reshape(groups, 4, 16)


def sell_validate(cnp.ndarray group_ptr, cnp.ndarray window, cnp.ndarray index,
                  cnp.ndarray values, int64_t n, int64_t k):
    """Full O(groups) check: -1 when valid, else the first bad group (-2:
    group_ptr itself)."""
    cdef sk_sell_f32 w
    cdef int64_t bad = -1
    cdef int rc
    fill_sell(&w, group_ptr, window, index, values, n, k)
    with nogil:
        rc = sk_sell_f32_validate(&w, &bad)
    if rc == SK_OK:
        return -1
    return bad if bad >= 0 else -2


def linear_sell_f32(cnp.ndarray group_ptr, cnp.ndarray window, cnp.ndarray index,
                    cnp.ndarray values, int64_t n, int64_t k, cnp.ndarray x, object bias,
                    int act):
    """y[M, N] = act(x[M, K] @ W.T + bias) with W the sliced ELL."""
    cdef sk_sell_f32 w
    cdef int64_t m = x.shape[0] if x.ndim == 2 else -1
    cdef int64_t ldx = 0, ldy = 0
    cdef const float *px
    cdef float *py
    cdef const float *pb = NULL
    cdef int rc
    fill_sell(&w, group_ptr, window, index, values, n, k)
    px = f32_rows(x, m, k, "x", &ldx)
    cdef cnp.ndarray out = empty_aligned_f32(m, n)
    py = <float *>f32_rows(out, m, n, "out", &ldy)
    if bias is not None:
        if bias.dtype != np.float32 or bias.ndim != 1 or bias.shape[0] != n \
                or not bias.flags.c_contiguous:
            raise ValueError(f"bias: expected contiguous float32 [{n}]")
        pb = <const float *>cnp.PyArray_DATA(bias)
    if act != 0 and act != 1:
        raise ValueError("activation: expected 0 (none) or 1 (relu)")
    with nogil:
        rc = sk_linear_sell_f32(&w, m, px, ldx, pb, <sk_activation>act, py, ldy)
    check(rc)
    return out


def linear_sell_f32_fast(cnp.ndarray group_ptr, cnp.ndarray window, cnp.ndarray index,
                         cnp.ndarray values, int64_t n, int64_t k, object x, object bias,
                         int act):
    """sparsekit.linear's common case in one call (as linear_csr_f32_fast):
    x a float32 ndarray [K] or [M, K] with unit-stride rows, bias None or a
    contiguous float32 [N], act 0 or 1. Returns y, or None for the general path."""
    cdef sk_sell_f32 w
    cdef cnp.ndarray xa, out
    cdef int64_t m, ldx
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
    fill_sell(&w, group_ptr, window, index, values, n, k)
    if m == 0 or k == 0:
        ldx = k
    cdef cnp.npy_intp dims[1]
    if cnp.PyArray_NDIM(xa) == 1:
        dims[0] = n
        out = cnp.PyArray_EMPTY(1, dims, cnp.NPY_FLOAT32, 0)
    else:
        out = empty_aligned_f32(m, n)
    with nogil:
        rc = sk_linear_sell_f32(&w, m, <const float *>cnp.PyArray_DATA(xa), ldx, pb,
                                <sk_activation>act, <float *>cnp.PyArray_DATA(out), n)
    check(rc)
    return out
