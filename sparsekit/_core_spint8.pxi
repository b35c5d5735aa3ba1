# Sparse int8 (1x4 blocks along K) x u8 activations (included by _core.pyx).

cdef int fill_bsr(sk_bsr_s8_1x4 *w, cnp.ndarray indptr, cnp.ndarray cols,
                  cnp.ndarray values, cnp.ndarray row_sums, int64_t n, int64_t k) except -1:
    """O(1) checks that the arrays can hold a 1x4-blocked int8 weight of shape (n, k)."""
    cdef int64_t kq = (k + 3) // 4
    if indptr.dtype != np.int64 or indptr.ndim != 1 or indptr.shape[0] != n + 1 \
            or not indptr.flags.c_contiguous:
        raise ValueError("indptr: expected contiguous int64 of length n + 1")
    if cols.dtype == np.uint16:
        w.index_bytes = 2
        if kq > 65536:
            raise ValueError("cols: uint16 block columns need ceil(K/4) <= 65536")
    elif cols.dtype == np.int32:
        w.index_bytes = 4
    else:
        raise ValueError("cols: expected uint16 or int32")
    if values.dtype != np.int8 or values.ndim != 2 or values.shape[1] != 4 \
            or not values.flags.c_contiguous or cols.ndim != 1 or not cols.flags.c_contiguous:
        raise ValueError("values/cols: expected contiguous int8 [nblocks, 4] and 1-D cols")
    if row_sums.dtype != np.int32 or row_sums.ndim != 1 or row_sums.shape[0] != n \
            or not row_sums.flags.c_contiguous:
        raise ValueError(f"row_sums: expected contiguous int32 [{n}]")
    cdef int64_t nb = (<int64_t *>cnp.PyArray_DATA(indptr))[n]
    if nb < 0 or values.shape[0] < nb or cols.shape[0] < nb:
        raise ValueError("indptr: last entry exceeds the number of blocks")
    w.n = n
    w.k = k
    w.indptr = <const int64_t *>cnp.PyArray_DATA(indptr)
    w.cols = <const void *>cnp.PyArray_DATA(cols)
    w.values = <const int8_t *>cnp.PyArray_DATA(values)
    w.row_sums = <const int32_t *>cnp.PyArray_DATA(row_sums)
    return 0


def bsr_s8_validate(cnp.ndarray indptr, cnp.ndarray cols, cnp.ndarray values,
                    cnp.ndarray row_sums, int64_t n, int64_t k):
    """Full O(blocks) check; returns the first bad row or -1."""
    cdef sk_bsr_s8_1x4 w
    cdef int64_t bad = -1
    cdef int rc
    fill_bsr(&w, indptr, cols, values, row_sums, n, k)
    with nogil:
        rc = sk_bsr_s8_1x4_validate(&w, &bad)
    if rc == SK_ERR_ARGUMENT:
        raise ValueError("shape: invalid sparse int8 weight arguments")
    return bad


def spmm_u8s8_s32(cnp.ndarray indptr, cnp.ndarray cols, cnp.ndarray values,
                  cnp.ndarray row_sums, int64_t n, int64_t k, cnp.ndarray xq,
                  cnp.ndarray zero_point, cnp.ndarray out):
    """out[M, N] = sum_k (xq[m, k] - zp[m]) * q[n, k], exact int32."""
    cdef sk_bsr_s8_1x4 w
    cdef int64_t m = xq.shape[0] if xq.ndim == 2 else -1
    cdef int64_t ldx = k, ldy = n
    cdef int rc, per_row
    fill_bsr(&w, indptr, cols, values, row_sums, n, k)
    if xq.dtype != np.uint8 or m < 0 or xq.shape[1] != k or not xq.flags.c_contiguous:
        raise ValueError(f"xq: expected contiguous uint8 [M, {k}]")
    if out.dtype != np.int32 or out.ndim != 2 or out.shape[0] != m or out.shape[1] != n \
            or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"out: expected writeable contiguous int32 [{m}, {n}]")
    if zero_point.dtype != np.int32 or zero_point.ndim != 1 \
            or not zero_point.flags.c_contiguous or zero_point.shape[0] not in (1, m):
        raise ValueError(f"zero_point: expected contiguous int32 [1] or [{m}]")
    per_row = zero_point.shape[0] == m and m != 1
    if m > 0 and zero_point.shape[0] == 0:
        raise ValueError("zero_point: empty")
    with nogil:
        rc = sk_spmm_u8s8_s32(&w, m, <const uint8_t *>cnp.PyArray_DATA(xq), ldx,
                              <const int32_t *>cnp.PyArray_DATA(zero_point), per_row,
                              <int32_t *>cnp.PyArray_DATA(out), ldy)
    if rc == SK_ERR_ARGUMENT:
        raise ValueError("zero_point: expected values in [0, 255]")
    check(rc)
    return out


cdef const float *spint8_f32_vec(cnp.ndarray a, int64_t n, str name) except NULL:
    if a.dtype != np.float32 or a.ndim != 1 or a.shape[0] != n or not a.flags.c_contiguous:
        raise ValueError(f"{name}: expected contiguous float32 [{n}]")
    return <const float *>cnp.PyArray_DATA(a)


def linear_u8s8_bsr_f32(cnp.ndarray indptr, cnp.ndarray cols, cnp.ndarray values,
                        cnp.ndarray row_sums, cnp.ndarray wscale, int64_t n, int64_t k,
                        cnp.ndarray x, object bias, int act, cnp.ndarray out):
    """out[M, N] = act(dequant(quant_rows(x) @ q.T) + bias), x float32 [M, K]."""
    cdef sk_bsr_s8_1x4 w
    cdef int64_t m = x.shape[0] if x.ndim == 2 else -1
    cdef int64_t ldx = 0, ldy = 0
    cdef const float *px
    cdef float *py
    cdef const float *pb = NULL
    cdef const float *ps
    cdef int rc
    fill_bsr(&w, indptr, cols, values, row_sums, n, k)
    ps = spint8_f32_vec(wscale, n, "scale")
    px = f32_rows(x, m, k, "x", &ldx)
    py = <float *>f32_rows(out, m, n, "out", &ldy)
    if not out.flags.writeable:
        raise ValueError("out: must be writeable")
    if bias is not None:
        pb = spint8_f32_vec(bias, n, "bias")
    if act != 0 and act != 1:
        raise ValueError("activation: expected 0 (none) or 1 (relu)")
    with nogil:
        rc = sk_linear_u8s8_bsr_f32(&w, ps, m, px, ldx, pb, <sk_activation>act, py, ldy)
    if rc == SK_ERR_NONFINITE:
        raise ValueError("x: contains NaN or infinity")
    check(rc)
    return out


# ---- groups of 4 nonzeros at any k (g4), for unstructured weights ----------

cdef int fill_g4(sk_csr_s8_g4 *w, cnp.ndarray indptr, cnp.ndarray kidx, cnp.ndarray values,
                 cnp.ndarray row_sums, int64_t n, int64_t k) except -1:
    """O(1) checks; kidx < K and the values are the caller's (SparseInt8Matrix
    builds them from checked 1x4 blocks)."""
    if indptr.dtype != np.int64 or indptr.ndim != 1 or indptr.shape[0] != n + 1 \
            or not indptr.flags.c_contiguous:
        raise ValueError("indptr: expected contiguous int64 of length n + 1")
    if kidx.dtype != np.uint16 or kidx.ndim != 1 or not kidx.flags.c_contiguous \
            or values.dtype != np.int8 or values.ndim != 1 or not values.flags.c_contiguous:
        raise ValueError("kidx/values: expected contiguous uint16 and int8, 4 per group")
    if row_sums.dtype != np.int32 or row_sums.ndim != 1 or row_sums.shape[0] != n \
            or not row_sums.flags.c_contiguous:
        raise ValueError(f"row_sums: expected contiguous int32 [{n}]")
    if k > 65536:
        raise ValueError("k: groups of 4 need K <= 65536")
    cdef int64_t ng = (<int64_t *>cnp.PyArray_DATA(indptr))[n]
    if ng < 0 or kidx.shape[0] < 4 * ng or values.shape[0] < 4 * ng:
        raise ValueError("indptr: last entry exceeds the number of groups")
    w.n = n
    w.k = k
    w.indptr = <const int64_t *>cnp.PyArray_DATA(indptr)
    w.kidx = <const uint16_t *>cnp.PyArray_DATA(kidx)
    w.values = <const int8_t *>cnp.PyArray_DATA(values)
    w.row_sums = <const int32_t *>cnp.PyArray_DATA(row_sums)
    return 0


def g4_fast():
    """True when the selected spmm_u8s8 ISA has a g4 kernel of its own
    (AVX-512 VNNI); elsewhere g4 runs the portable kernel."""
    return sk_family_isa(b"spmm_u8s8") == 3  # SK_ISA_AVX512VNNI


def g4_spmv_fast(int64_t k):
    """True when g4 at M == 1 has a vector kernel for this K (AVX-512 VNNI +
    VBMI, K <= 1024): unstructured weights then run it instead of 1x4 blocks."""
    return sk_spmv_u8s8_g4_fast(k) != 0


def spmm_u8s8_g4_s32(cnp.ndarray indptr, cnp.ndarray kidx, cnp.ndarray values,
                     cnp.ndarray row_sums, int64_t n, int64_t k, cnp.ndarray xq,
                     cnp.ndarray zero_point, cnp.ndarray out):
    """As spmm_u8s8_s32 for a g4 weight."""
    cdef sk_csr_s8_g4 w
    cdef int64_t m = xq.shape[0] if xq.ndim == 2 else -1
    cdef int rc, per_row
    fill_g4(&w, indptr, kidx, values, row_sums, n, k)
    if xq.dtype != np.uint8 or m < 0 or xq.shape[1] != k or not xq.flags.c_contiguous:
        raise ValueError(f"xq: expected contiguous uint8 [M, {k}]")
    if out.dtype != np.int32 or out.ndim != 2 or out.shape[0] != m or out.shape[1] != n \
            or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"out: expected writeable contiguous int32 [{m}, {n}]")
    if zero_point.dtype != np.int32 or zero_point.ndim != 1 \
            or not zero_point.flags.c_contiguous or zero_point.shape[0] not in (1, m):
        raise ValueError(f"zero_point: expected contiguous int32 [1] or [{m}]")
    per_row = zero_point.shape[0] == m and m != 1
    with nogil:
        rc = sk_spmm_u8s8_g4_s32(&w, m, <const uint8_t *>cnp.PyArray_DATA(xq), k,
                                 <const int32_t *>cnp.PyArray_DATA(zero_point), per_row,
                                 <int32_t *>cnp.PyArray_DATA(out), n)
    if rc == SK_ERR_ARGUMENT:
        raise ValueError("zero_point: expected values in [0, 255]")
    check(rc)
    return out


def linear_u8s8_g4_f32(cnp.ndarray indptr, cnp.ndarray kidx, cnp.ndarray values,
                       cnp.ndarray row_sums, cnp.ndarray wscale, int64_t n, int64_t k,
                       cnp.ndarray x, object bias, int act, cnp.ndarray out):
    """As linear_u8s8_bsr_f32 for a g4 weight."""
    cdef sk_csr_s8_g4 w
    cdef int64_t m = x.shape[0] if x.ndim == 2 else -1
    cdef int64_t ldx = 0, ldy = 0
    cdef const float *px
    cdef float *py
    cdef const float *pb = NULL
    cdef const float *ps
    cdef int rc
    fill_g4(&w, indptr, kidx, values, row_sums, n, k)
    ps = spint8_f32_vec(wscale, n, "scale")
    px = f32_rows(x, m, k, "x", &ldx)
    py = <float *>f32_rows(out, m, n, "out", &ldy)
    if not out.flags.writeable:
        raise ValueError("out: must be writeable")
    if bias is not None:
        pb = spint8_f32_vec(bias, n, "bias")
    if act != 0 and act != 1:
        raise ValueError("activation: expected 0 (none) or 1 (relu)")
    with nogil:
        rc = sk_linear_u8s8_g4_f32(&w, ps, m, px, ldx, pb, <sk_activation>act, py, ldy)
    if rc == SK_ERR_NONFINITE:
        raise ValueError("x: contains NaN or infinity")
    check(rc)
    return out


def align_offset(cnp.ndarray a, int align):
    """Bytes to skip from a's data to the next `align` boundary (cheap, unlike
    ndarray.ctypes)."""
    return (-<Py_ssize_t>cnp.PyArray_DATA(a)) % align
