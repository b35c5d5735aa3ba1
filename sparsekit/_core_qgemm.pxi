# u8 activation quantization and the exact int8 GEMM (included by _core.pyx).
from libc.stdint cimport int32_t, uint8_t, int8_t


cdef uint8_t *u8_rows(cnp.ndarray a, int64_t rows, int64_t cols, str name,
                      int64_t *ld) except NULL:
    """Pointer and row stride of a uint8 [rows, cols] array with unit inner stride."""
    if cnp.PyArray_TYPE(a) != cnp.NPY_UINT8 or cnp.PyArray_NDIM(a) != 2 or \
            cnp.PyArray_DIMS(a)[0] != rows or cnp.PyArray_DIMS(a)[1] != cols:
        raise ValueError(f"{name}: expected uint8 [{rows}, {cols}]")
    ld[0] = cols
    if rows == 0 or cols == 0:
        return <uint8_t *>cnp.PyArray_DATA(a)
    cdef cnp.npy_intp *st = cnp.PyArray_STRIDES(a)
    if (cols > 1 and st[1] != 1) or (rows > 1 and st[0] < cols):
        raise ValueError(f"{name}: rows must be contiguous")
    if rows > 1:
        ld[0] = st[0]
    return <uint8_t *>cnp.PyArray_DATA(a)


cdef int check_quant(int rc) except -1:
    if rc == SK_ERR_NONFINITE:
        raise ValueError("x: contains NaN or infinity")
    return check(rc)


cdef void *vec_of(cnp.ndarray a, int typenum, int64_t n, str name) except NULL:
    if cnp.PyArray_TYPE(a) != typenum or cnp.PyArray_NDIM(a) != 1 or \
            cnp.PyArray_DIMS(a)[0] != n or not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"{name}: expected contiguous {cnp.PyArray_DescrFromType(typenum)} [{n}]")
    return cnp.PyArray_DATA(a)


def quantize_rows_u8(cnp.ndarray x, cnp.ndarray xq, cnp.ndarray scale, cnp.ndarray zp):
    """Dynamic per-row u8 quantization of float32 x [M, K] into xq, scale, zp."""
    cdef int64_t m = x.shape[0] if x.ndim == 2 else -1
    cdef int64_t k = x.shape[1] if x.ndim == 2 else -1
    cdef int64_t ldx = 0, ldq = 0
    cdef const float *px = f32_rows(x, m, k, "x", &ldx)
    cdef uint8_t *pq = u8_rows(xq, m, k, "xq", &ldq)
    cdef float *ps = <float *>vec_of(scale, cnp.NPY_FLOAT32, m, "scale")
    cdef int32_t *pz = <int32_t *>vec_of(zp, cnp.NPY_INT32, m, "zero_point")
    cdef int rc
    if not (xq.flags.writeable and scale.flags.writeable and zp.flags.writeable):
        raise ValueError("xq/scale/zero_point: must be writeable")
    with nogil:
        rc = sk_quantize_rows_u8(m, k, px, ldx, pq, ldq, ps, pz)
    check_quant(rc)


def quantize_u8_static(cnp.ndarray x, float scale, int32_t zp, cnp.ndarray xq):
    """Static per-tensor u8 quantization of float32 x [M, K] into xq."""
    cdef int64_t m = x.shape[0] if x.ndim == 2 else -1
    cdef int64_t k = x.shape[1] if x.ndim == 2 else -1
    cdef int64_t ldx = 0, ldq = 0
    cdef const float *px = f32_rows(x, m, k, "x", &ldx)
    cdef uint8_t *pq = u8_rows(xq, m, k, "xq", &ldq)
    cdef int rc
    if not (scale > 0 and scale <= 3.4028234663852886e38):
        raise ValueError(f"scale: expected a finite float > 0, got {scale}")
    if zp < 0 or zp > 255:
        raise ValueError(f"zero_point: expected 0..255, got {zp}")
    if not xq.flags.writeable:
        raise ValueError("xq: must be writeable")
    with nogil:
        rc = sk_quantize_u8(m, k, px, ldx, scale, zp, pq, ldq)
    check_quant(rc)


# ---- int8 GEMM -------------------------------------------------------------

QGEMM_MAX_K = SK_QGEMM_MAX_K


def qmatrix_packed_bytes(int64_t n, int64_t k):
    return sk_qmatrix_s8_packed_bytes(n, k)


def qmatrix_pack(cnp.ndarray q, cnp.ndarray packed, cnp.ndarray sum24):
    """Pack int8 q [N, K] (C-contiguous) into `packed` and `sum24`; False on -128."""
    if q.dtype != np.int8 or q.ndim != 2 or not q.flags.c_contiguous:
        raise ValueError("q: expected C-contiguous int8 [N, K]")
    cdef int64_t n = q.shape[0], k = q.shape[1]
    if k > SK_QGEMM_MAX_K:
        raise ValueError(f"q: K = {k} exceeds {SK_QGEMM_MAX_K}")
    vec_of(packed, cnp.NPY_INT8, sk_qmatrix_s8_packed_bytes(n, k), "packed")
    vec_of(sum24, cnp.NPY_UINT8, 3 * n, "sum24")
    cdef int rc
    with nogil:
        rc = sk_qmatrix_s8_pack(n, k, <const int8_t *>cnp.PyArray_DATA(q), k,
                                <int8_t *>cnp.PyArray_DATA(packed),
                                <uint8_t *>cnp.PyArray_DATA(sum24))
    if rc == SK_ERR_FORMAT:
        return False
    check(rc)
    return True


cdef int fill_qmatrix(sk_qmatrix_s8 *w, tuple arrays, int64_t n, int64_t k) except -1:
    """O(1) checks that (packed, sum24, scale) can hold a weight of shape (n, k)."""
    cdef cnp.ndarray packed, sum24, scale
    packed, sum24, scale = arrays
    if k < 0 or n < 0 or k > SK_QGEMM_MAX_K:
        raise ValueError(f"shape: bad quantized weight shape ({n}, {k})")
    w.packed = <const int8_t *>vec_of(packed, cnp.NPY_INT8,
                                      sk_qmatrix_s8_packed_bytes(n, k), "packed")
    w.sum24 = <const uint8_t *>vec_of(sum24, cnp.NPY_UINT8, 3 * n, "sum24")
    if cnp.PyArray_TYPE(scale) != cnp.NPY_FLOAT32 or cnp.PyArray_NDIM(scale) != 1 or \
            not cnp.PyArray_IS_C_CONTIGUOUS(scale) or \
            (cnp.PyArray_DIMS(scale)[0] != 1 and cnp.PyArray_DIMS(scale)[0] != n):
        raise ValueError(f"scale: expected contiguous float32 [1] or [{n}]")
    w.scale = <const float *>cnp.PyArray_DATA(scale)
    w.per_channel = cnp.PyArray_DIMS(scale)[0] == n and n != 1
    w.n = n
    w.k = k
    return 0


cdef const int32_t *zp_of(cnp.ndarray zp, int64_t m, int64_t *stride) except NULL:
    if cnp.PyArray_TYPE(zp) != cnp.NPY_INT32 or cnp.PyArray_NDIM(zp) != 1 or \
            not cnp.PyArray_IS_C_CONTIGUOUS(zp) or \
            (cnp.PyArray_DIMS(zp)[0] != 1 and cnp.PyArray_DIMS(zp)[0] != m):
        raise ValueError(f"x_zero_point: expected contiguous int32 [1] or [{m}]")
    stride[0] = 1 if cnp.PyArray_DIMS(zp)[0] == m and m != 1 else 0
    return <const int32_t *>cnp.PyArray_DATA(zp)


cdef const float *rowscale_of(cnp.ndarray s, int64_t m, int64_t *stride) except NULL:
    if cnp.PyArray_TYPE(s) != cnp.NPY_FLOAT32 or cnp.PyArray_NDIM(s) != 1 or \
            not cnp.PyArray_IS_C_CONTIGUOUS(s) or \
            (cnp.PyArray_DIMS(s)[0] != 1 and cnp.PyArray_DIMS(s)[0] != m):
        raise ValueError(f"x_scale: expected contiguous float32 [1] or [{m}]")
    stride[0] = 1 if cnp.PyArray_DIMS(s)[0] == m and m != 1 else 0
    return <const float *>cnp.PyArray_DATA(s)


cdef const float *bias_of(object bias, int64_t n) except? NULL:
    if bias is None:
        return NULL
    return <const float *>vec_of(bias, cnp.NPY_FLOAT32, n, "bias")


def qgemm_s32(tuple warrays, int64_t n, int64_t k, cnp.ndarray xq, cnp.ndarray zp,
              cnp.ndarray out):
    """out[M, N] = (xq - zp) @ q.T, exact int32."""
    cdef sk_qmatrix_s8 w
    cdef int64_t m = cnp.PyArray_DIMS(xq)[0] if cnp.PyArray_NDIM(xq) == 2 else -1
    cdef int64_t lda = 0, zs = 0
    cdef int rc
    fill_qmatrix(&w, warrays, n, k)
    cdef const uint8_t *pa = u8_rows(xq, m, k, "xq", &lda)
    cdef const int32_t *pz = zp_of(zp, m, &zs)
    if cnp.PyArray_TYPE(out) != cnp.NPY_INT32 or cnp.PyArray_NDIM(out) != 2 or \
            cnp.PyArray_DIMS(out)[0] != m or cnp.PyArray_DIMS(out)[1] != n or \
            not cnp.PyArray_IS_C_CONTIGUOUS(out) or not cnp.PyArray_ISWRITEABLE(out):
        raise ValueError(f"out: expected writeable C-contiguous int32 [{m}, {n}]")
    with nogil:
        rc = sk_qgemm_u8s8_s32(&w, m, pa, lda, pz, zs, <int32_t *>cnp.PyArray_DATA(out), n)
    check(rc)
    return out


def qgemm_dequant(tuple warrays, int64_t n, int64_t k, cnp.ndarray xq, cnp.ndarray zp,
                  cnp.ndarray x_scale, object bias, int act, object out_scale, int out_zp,
                  cnp.ndarray out):
    """fp32 out (out_scale None) or u8 requantized out of the int8 GEMM."""
    cdef sk_qmatrix_s8 w
    cdef int64_t m = cnp.PyArray_DIMS(xq)[0] if cnp.PyArray_NDIM(xq) == 2 else -1
    cdef int64_t lda = 0, zs = 0, ss = 0
    cdef int rc
    cdef float os = 0
    fill_qmatrix(&w, warrays, n, k)
    cdef const uint8_t *pa = u8_rows(xq, m, k, "xq", &lda)
    cdef const int32_t *pz = zp_of(zp, m, &zs)
    cdef const float *ps = rowscale_of(x_scale, m, &ss)
    cdef const float *pb = bias_of(bias, n)
    if act != 0 and act != 1 and act != 2:
        raise ValueError("activation: expected 0 (none), 1 (relu) or 2 (gelu)")
    want = np.float32 if out_scale is None else np.uint8
    if out.dtype != want or out.ndim != 2 or out.shape[0] != m or out.shape[1] != n \
            or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"out: expected writeable C-contiguous {np.dtype(want).name} [{m}, {n}]")
    if out_scale is None:
        with nogil:
            rc = sk_qgemm_u8s8_f32(&w, m, pa, lda, pz, zs, ps, ss, pb, <sk_activation>act,
                                   <float *>cnp.PyArray_DATA(out), n)
    else:
        os = out_scale
        with nogil:
            rc = sk_qgemm_u8s8_u8(&w, m, pa, lda, pz, zs, ps, ss, pb, <sk_activation>act,
                                  os, out_zp, <uint8_t *>cnp.PyArray_DATA(out), n)
    check(rc)
    return out


def linear_qgemm(tuple warrays, int64_t n, int64_t k, cnp.ndarray x, float x_scale,
                 int32_t x_zp, object bias, int act, cnp.ndarray out):
    """out[M, N] = act(dequant(quant(x) @ q.T) + bias), fp32 in and out."""
    cdef sk_qmatrix_s8 w
    cdef int64_t m = x.shape[0] if x.ndim == 2 else -1
    cdef int64_t ldx = 0, ldy = 0
    cdef int rc
    fill_qmatrix(&w, warrays, n, k)
    cdef const float *px = f32_rows(x, m, k, "x", &ldx)
    cdef float *py = <float *>f32_rows(out, m, n, "out", &ldy)
    cdef const float *pb = bias_of(bias, n)
    if not out.flags.writeable:
        raise ValueError("out: must be writeable")
    if act != 0 and act != 1 and act != 2:
        raise ValueError("activation: expected 0 (none), 1 (relu) or 2 (gelu)")
    with nogil:
        rc = sk_linear_qgemm_u8s8(&w, m, px, ldx, x_scale, x_zp, pb, <sk_activation>act,
                                  py, ldy)
    check_quant(rc)
    return out


def vnni_peak_loop(int64_t iters):
    """Private microbenchmark: iters x 24 zmm vpdpbusd (needs avx512vnni)."""
    cdef int64_t r = 0
    cdef int rc
    with nogil:
        rc = sk_qgemm_u8s8_peak_loop(iters, &r)
    if rc == SK_ERR_UNSUPPORTED:
        raise RuntimeError("this CPU has no avx512vnni")
    check(rc)
    return r


def gelu_f32(cnp.ndarray y):
    """y = gelu(y) in place (exact erf GELU, sk_gelu_f32); y C-contiguous float32."""
    if y.dtype != np.float32 or not y.flags.c_contiguous or not y.flags.writeable:
        raise ValueError("y: expected a writeable C-contiguous float32 array")
    cdef float *p = <float *>cnp.PyArray_DATA(y)
    cdef int64_t n = y.size
    with nogil:
        sk_gelu_f32(p, n)
    return y
