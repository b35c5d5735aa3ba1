# Dense fp32 GEMM with a packed weight (gemm_f32; included by _core.pyx).

def gemm_f32_pack(cnp.ndarray w):
    """The packed panels (kernels/include/sparsekit.h) of a float32 [N, K] weight
    with contiguous rows: a 64-byte aligned float32 array."""
    cdef int64_t n, k, ldw = 0
    cdef const float *pw
    cdef int rc
    if w.ndim != 2:
        raise ValueError("w: expected float32 [N, K]")
    n, k = w.shape[0], w.shape[1]
    pw = f32_rows(w, n, k, "w", &ldw)
    cdef cnp.ndarray packed = empty_aligned(max(sk_gemm_f32_packed_floats(n, k), 1),
                                            cnp.NPY_FLOAT32, 4)
    with nogil:
        rc = sk_gemm_f32_pack(n, k, pw, ldw, <float *>cnp.PyArray_DATA(packed))
    check(rc)
    return packed


def linear_gemm_f32(cnp.ndarray packed, int64_t n, int64_t k, cnp.ndarray x, object bias,
                    int act):
    """y[M, N] = act(x[M, K] @ W.T + bias) with W packed by gemm_f32_pack
    (act 0 none, 1 relu, 2 gelu)."""
    cdef int64_t m = x.shape[0] if x.ndim == 2 else -1
    cdef int64_t ldx = 0, ldy = 0
    cdef const float *px
    cdef float *py
    cdef const float *pb = NULL
    cdef int rc
    if packed.dtype != np.float32 or packed.ndim != 1 or not packed.flags.c_contiguous \
            or packed.shape[0] < sk_gemm_f32_packed_floats(n, k):
        raise ValueError(f"packed: expected the contiguous float32 panels of a [{n}, {k}] "
                         "weight")
    px = f32_rows(x, m, k, "x", &ldx)
    cdef cnp.ndarray out = empty_aligned_f32(m, n)
    py = <float *>f32_rows(out, m, n, "out", &ldy)
    if bias is not None:
        if type(bias) is not np.ndarray or bias.dtype != np.float32 or bias.ndim != 1 \
                or bias.shape[0] != n or not bias.flags.c_contiguous:
            raise ValueError(f"bias: expected contiguous float32 [{n}]")
        pb = <const float *>cnp.PyArray_DATA(<cnp.ndarray>bias)
    if act < 0 or act > 2:
        raise ValueError("activation: expected 0 (none), 1 (relu) or 2 (gelu)")
    with nogil:
        rc = sk_linear_gemm_f32(n, k, <const float *>cnp.PyArray_DATA(packed), m, px, ldx, pb,
                                <sk_activation>act, py, ldy)
    check(rc)
    return out
