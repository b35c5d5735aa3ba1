# Sparse int8 (1x4 blocks along K) x u8 activations (included by _core.pyx).
# Checks use the NumPy C API (dtype / flags through Python attributes cost
# ~0.1 us each, and M == 1 calls are ~15 us in all).

cdef inline bint is_vec(cnp.ndarray a, int typenum):
    return (cnp.PyArray_TYPE(a) == typenum and cnp.PyArray_NDIM(a) == 1
            and cnp.PyArray_IS_C_CONTIGUOUS(a))


cdef inline bint is_mat(cnp.ndarray a, int typenum, int64_t rows, int64_t cols):
    return (cnp.PyArray_TYPE(a) == typenum and cnp.PyArray_NDIM(a) == 2
            and cnp.PyArray_DIMS(a)[0] == rows and cnp.PyArray_DIMS(a)[1] == cols
            and cnp.PyArray_IS_C_CONTIGUOUS(a))


cdef cnp.ndarray spint8_out(object out, int typenum, int64_t m, int64_t n):
    """out, checked, or a new [m, n] array starting on a cache line (the kernels
    write whole 64-byte lines of each output row; a split line costs ~25%)."""
    cdef cnp.npy_intp dims[2]
    cdef cnp.ndarray buf
    cdef size_t off
    if out is not None:
        if not isinstance(out, cnp.ndarray) or not is_mat(<cnp.ndarray>out, typenum, m, n) \
                or not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out):
            raise ValueError(f"out: expected writeable contiguous "
                             f"{cnp.PyArray_DescrFromType(typenum)} [{m}, {n}]")
        return <cnp.ndarray>out
    dims[0] = m
    dims[1] = n
    if m <= 1:  # one row: a split line at each end is noise
        return cnp.PyArray_EMPTY(2, dims, typenum, 0)
    dims[0] = m * n + 16
    buf = cnp.PyArray_EMPTY(1, dims, typenum, 0)  # 4-byte elements
    off = ((64 - <size_t>cnp.PyArray_DATA(buf) % 64) % 64) // 4
    return buf[off:off + m * n].reshape(m, n)


cdef const float *spint8_f32_rows(cnp.ndarray a, int64_t rows, int64_t cols, str name,
                                  int64_t *ld) except NULL:
    """As f32_rows (float32 [rows, cols], unit inner stride), by the C API."""
    cdef cnp.npy_intp *st = cnp.PyArray_STRIDES(a)
    if cnp.PyArray_TYPE(a) != cnp.NPY_FLOAT32 or cnp.PyArray_NDIM(a) != 2 \
            or cnp.PyArray_DIMS(a)[0] != rows or cnp.PyArray_DIMS(a)[1] != cols:
        raise ValueError(f"{name}: expected float32 [{rows}, {cols}]")
    if rows != 0 and cols != 0 and ((cols > 1 and st[1] != 4) or (rows > 1 and (
            st[0] % 4 != 0 or st[0] < 4 * cols))):
        raise ValueError(f"{name}: rows must be contiguous")
    ld[0] = st[0] // 4 if rows > 1 and cols != 0 else cols
    return <const float *>cnp.PyArray_DATA(a)


cdef int fill_bsr(sk_bsr_s8_1x4 *w, cnp.ndarray indptr, cnp.ndarray cols,
                  cnp.ndarray values, cnp.ndarray row_sums, int64_t n, int64_t k) except -1:
    """O(1) checks that the arrays can hold a 1x4-blocked int8 weight of shape (n, k)."""
    cdef int64_t kq = (k + 3) // 4
    if not is_vec(indptr, cnp.NPY_INT64) or cnp.PyArray_DIMS(indptr)[0] != n + 1:
        raise ValueError("indptr: expected contiguous int64 of length n + 1")
    if cnp.PyArray_TYPE(cols) == cnp.NPY_UINT16:
        w.index_bytes = 2
        if kq > 65536:
            raise ValueError("cols: uint16 block columns need ceil(K/4) <= 65536")
    elif cnp.PyArray_TYPE(cols) == cnp.NPY_INT32:
        w.index_bytes = 4
    else:
        raise ValueError("cols: expected uint16 or int32")
    if cnp.PyArray_TYPE(values) != cnp.NPY_INT8 or cnp.PyArray_NDIM(values) != 2 \
            or cnp.PyArray_DIMS(values)[1] != 4 or not cnp.PyArray_IS_C_CONTIGUOUS(values) \
            or cnp.PyArray_NDIM(cols) != 1 or not cnp.PyArray_IS_C_CONTIGUOUS(cols):
        raise ValueError("values/cols: expected contiguous int8 [nblocks, 4] and 1-D cols")
    if not is_vec(row_sums, cnp.NPY_INT32) or cnp.PyArray_DIMS(row_sums)[0] != n:
        raise ValueError(f"row_sums: expected contiguous int32 [{n}]")
    cdef int64_t nb = (<int64_t *>cnp.PyArray_DATA(indptr))[n]
    if nb < 0 or cnp.PyArray_DIMS(values)[0] < nb or cnp.PyArray_DIMS(cols)[0] < nb:
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


cdef int64_t u8_source_rows(cnp.ndarray xq, cnp.ndarray zero_point, int64_t k,
                            int *per_row) except -1:
    """M of contiguous uint8 xq [M, K] with zero points int32 [1] or [M]."""
    cdef int64_t m = cnp.PyArray_DIMS(xq)[0] if cnp.PyArray_NDIM(xq) == 2 else -1
    if m < 0 or not is_mat(xq, cnp.NPY_UINT8, m, k):
        raise ValueError(f"xq: expected contiguous uint8 [M, {k}]")
    if not is_vec(zero_point, cnp.NPY_INT32) or \
            cnp.PyArray_DIMS(zero_point)[0] != 1 and cnp.PyArray_DIMS(zero_point)[0] != m:
        raise ValueError(f"zero_point: expected contiguous int32 [1] or [{m}]")
    per_row[0] = cnp.PyArray_DIMS(zero_point)[0] == m and m != 1
    return m


def spmm_u8s8_s32(cnp.ndarray indptr, cnp.ndarray cols, cnp.ndarray values,
                  cnp.ndarray row_sums, int64_t n, int64_t k, cnp.ndarray xq,
                  cnp.ndarray zero_point, object out=None):
    """out[M, N] = sum_k (xq[m, k] - zp[m]) * q[n, k], exact int32; out=None
    allocates it."""
    cdef sk_bsr_s8_1x4 w
    cdef int64_t ldx = k, ldy = n
    cdef int rc, per_row
    fill_bsr(&w, indptr, cols, values, row_sums, n, k)
    cdef int64_t m = u8_source_rows(xq, zero_point, k, &per_row)
    out = spint8_out(out, cnp.NPY_INT32, m, n)
    cdef int32_t *py = <int32_t *>cnp.PyArray_DATA(<cnp.ndarray>out)
    with nogil:
        rc = sk_spmm_u8s8_s32(&w, m, <const uint8_t *>cnp.PyArray_DATA(xq), ldx,
                              <const int32_t *>cnp.PyArray_DATA(zero_point), per_row,
                              py, ldy)
    if rc == SK_ERR_ARGUMENT:
        raise ValueError("zero_point: expected values in [0, 255]")
    check(rc)
    return out


cdef const float *spint8_f32_vec(cnp.ndarray a, int64_t n, str name) except NULL:
    if not is_vec(a, cnp.NPY_FLOAT32) or cnp.PyArray_DIMS(a)[0] != n:
        raise ValueError(f"{name}: expected contiguous float32 [{n}]")
    return <const float *>cnp.PyArray_DATA(a)


def linear_u8s8_bsr_f32(cnp.ndarray indptr, cnp.ndarray cols, cnp.ndarray values,
                        cnp.ndarray row_sums, cnp.ndarray wscale, int64_t n, int64_t k,
                        cnp.ndarray x, object bias, int act, object out=None,
                        float x_scale=0.0, int32_t x_zp=0):
    """out[M, N] = act(dequant(quant_rows(x) @ q.T) + bias), x float32 [M, K];
    out=None allocates it. x_scale > 0: x quantized statically with
    (x_scale, x_zp) instead of per row."""
    cdef sk_bsr_s8_1x4 w
    cdef int64_t m = cnp.PyArray_DIMS(x)[0] if cnp.PyArray_NDIM(x) == 2 else -1
    cdef int64_t ldx = 0, ldy = n
    cdef const float *px
    cdef float *py
    cdef const float *pb = NULL
    cdef const float *ps
    cdef int rc
    fill_bsr(&w, indptr, cols, values, row_sums, n, k)
    ps = spint8_f32_vec(wscale, n, "scale")
    px = spint8_f32_rows(x, m, k, "x", &ldx)
    out = spint8_out(out, cnp.NPY_FLOAT32, m, n)
    py = <float *>cnp.PyArray_DATA(<cnp.ndarray>out)
    if bias is not None:
        pb = spint8_f32_vec(bias, n, "bias")
    if act != 0 and act != 1:
        raise ValueError("activation: expected 0 (none) or 1 (relu)")
    with nogil:
        if x_scale > 0:
            rc = sk_linear_u8s8_bsr_f32_static(&w, ps, m, px, ldx, x_scale, x_zp, pb,
                                               <sk_activation>act, py, ldy)
        else:
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
    if not is_vec(indptr, cnp.NPY_INT64) or cnp.PyArray_DIMS(indptr)[0] != n + 1:
        raise ValueError("indptr: expected contiguous int64 of length n + 1")
    if not is_vec(kidx, cnp.NPY_UINT16) or not is_vec(values, cnp.NPY_INT8):
        raise ValueError("kidx/values: expected contiguous uint16 and int8, 4 per group")
    if not is_vec(row_sums, cnp.NPY_INT32) or cnp.PyArray_DIMS(row_sums)[0] != n:
        raise ValueError(f"row_sums: expected contiguous int32 [{n}]")
    if k > 65536:
        raise ValueError("k: groups of 4 need K <= 65536")
    cdef int64_t ng = (<int64_t *>cnp.PyArray_DATA(indptr))[n]
    if ng < 0 or cnp.PyArray_DIMS(kidx)[0] < 4 * ng or cnp.PyArray_DIMS(values)[0] < 4 * ng:
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


def g4_small_fast():
    """True when g4 at M = 2..16 has its 16-row kernel (AVX-512 VNNI selected,
    and VBMI): with g4_spmv_fast, every M has a g4 kernel at least as fast as
    the 1x4 one for weights of block fill < G4_ONLY_FILL."""
    return sk_g4_small_fast() != 0


def g4_vbmi_cpu():
    """True when this CPU could run every g4 kernel (AVX-512 VNNI usable and
    VBMI), whatever ISA is selected now."""
    return sk_g4_vbmi_cpu() != 0


def g4_rows_fast(int64_t m, int64_t n, int64_t k, int64_t ngroups):
    """True when a g4 call with m (2..3) rows runs its M == 1 kernel once per
    row (K <= 1024, or M == 2 at >= 15% density; AVX-512 VNNI + VBMI)."""
    return sk_g4_rows_fast(m, n, k, ngroups) != 0


def g4_spmv_fast(int64_t k):
    """True when g4 at M == 1 has a vector kernel for this K (AVX-512 VNNI +
    VBMI, K <= 32768): unstructured weights then run it instead of 1x4 blocks."""
    return sk_spmv_u8s8_g4_fast(k) != 0


def spmm_u8s8_g4_s32(cnp.ndarray indptr, cnp.ndarray kidx, cnp.ndarray values,
                     cnp.ndarray row_sums, int64_t n, int64_t k, cnp.ndarray xq,
                     cnp.ndarray zero_point, object out=None):
    """As spmm_u8s8_s32 for a g4 weight."""
    cdef sk_csr_s8_g4 w
    cdef int rc, per_row
    fill_g4(&w, indptr, kidx, values, row_sums, n, k)
    cdef int64_t m = u8_source_rows(xq, zero_point, k, &per_row)
    out = spint8_out(out, cnp.NPY_INT32, m, n)
    cdef int32_t *py = <int32_t *>cnp.PyArray_DATA(<cnp.ndarray>out)
    with nogil:
        rc = sk_spmm_u8s8_g4_s32(&w, m, <const uint8_t *>cnp.PyArray_DATA(xq), k,
                                 <const int32_t *>cnp.PyArray_DATA(zero_point), per_row,
                                 py, n)
    if rc == SK_ERR_ARGUMENT:
        raise ValueError("zero_point: expected values in [0, 255]")
    check(rc)
    return out


def linear_u8s8_g4_f32(cnp.ndarray indptr, cnp.ndarray kidx, cnp.ndarray values,
                       cnp.ndarray row_sums, cnp.ndarray wscale, int64_t n, int64_t k,
                       cnp.ndarray x, object bias, int act, object out=None,
                       float x_scale=0.0, int32_t x_zp=0):
    """As linear_u8s8_bsr_f32 for a g4 weight."""
    cdef sk_csr_s8_g4 w
    cdef int64_t m = cnp.PyArray_DIMS(x)[0] if cnp.PyArray_NDIM(x) == 2 else -1
    cdef int64_t ldx = 0, ldy = n
    cdef const float *px
    cdef float *py
    cdef const float *pb = NULL
    cdef const float *ps
    cdef int rc
    fill_g4(&w, indptr, kidx, values, row_sums, n, k)
    ps = spint8_f32_vec(wscale, n, "scale")
    px = spint8_f32_rows(x, m, k, "x", &ldx)
    out = spint8_out(out, cnp.NPY_FLOAT32, m, n)
    py = <float *>cnp.PyArray_DATA(<cnp.ndarray>out)
    if bias is not None:
        pb = spint8_f32_vec(bias, n, "bias")
    if act != 0 and act != 1:
        raise ValueError("activation: expected 0 (none) or 1 (relu)")
    with nogil:
        if x_scale > 0:
            rc = sk_linear_u8s8_g4_f32_static(&w, ps, m, px, ldx, x_scale, x_zp, pb,
                                              <sk_activation>act, py, ldy)
        else:
            rc = sk_linear_u8s8_g4_f32(&w, ps, m, px, ldx, pb, <sk_activation>act, py, ldy)
    if rc == SK_ERR_NONFINITE:
        raise ValueError("x: contains NaN or infinity")
    check(rc)
    return out
