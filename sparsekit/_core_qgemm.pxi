# u8 activation quantization and the exact int8 GEMM (included by _core.pyx).
from libc.stdint cimport int32_t, uint8_t, int8_t


cdef uint8_t *u8_rows(cnp.ndarray a, int64_t rows, int64_t cols, str name,
                      int64_t *ld) except NULL:
    """Pointer and row stride of a uint8 [rows, cols] array with unit inner stride."""
    if a.dtype != np.uint8 or a.ndim != 2 or a.shape[0] != rows or a.shape[1] != cols:
        raise ValueError(f"{name}: expected uint8 [{rows}, {cols}]")
    ld[0] = cols
    if rows == 0 or cols == 0:
        return <uint8_t *>cnp.PyArray_DATA(a)
    if (cols > 1 and a.strides[1] != 1) or (rows > 1 and a.strides[0] < cols):
        raise ValueError(f"{name}: rows must be contiguous")
    if rows > 1:
        ld[0] = a.strides[0]
    return <uint8_t *>cnp.PyArray_DATA(a)


cdef int check_quant(int rc) except -1:
    if rc == SK_ERR_NONFINITE:
        raise ValueError("x: contains NaN or infinity")
    return check(rc)


cdef void *vec_of(cnp.ndarray a, object dtype, int64_t n, str name) except NULL:
    if a.dtype != dtype or a.ndim != 1 or a.shape[0] != n or not a.flags.c_contiguous:
        raise ValueError(f"{name}: expected contiguous {np.dtype(dtype).name} [{n}]")
    return cnp.PyArray_DATA(a)


def quantize_rows_u8(cnp.ndarray x, cnp.ndarray xq, cnp.ndarray scale, cnp.ndarray zp):
    """Dynamic per-row u8 quantization of float32 x [M, K] into xq, scale, zp."""
    cdef int64_t m = x.shape[0] if x.ndim == 2 else -1
    cdef int64_t k = x.shape[1] if x.ndim == 2 else -1
    cdef int64_t ldx = 0, ldq = 0
    cdef const float *px = f32_rows(x, m, k, "x", &ldx)
    cdef uint8_t *pq = u8_rows(xq, m, k, "xq", &ldq)
    cdef float *ps = <float *>vec_of(scale, np.float32, m, "scale")
    cdef int32_t *pz = <int32_t *>vec_of(zp, np.int32, m, "zero_point")
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
