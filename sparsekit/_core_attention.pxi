# Softmax attention for short sequences and residual add + LayerNorm
# (transformer blocks; included by _core.pyx).

cdef const float *bthd(cnp.ndarray a, tuple shape, str name, int64_t *strides) except NULL:
    """float32 [batch, token, head, d] with d contiguous: its strides in elements."""
    if cnp.PyArray_TYPE(a) != cnp.NPY_FLOAT32 or a.ndim != 4:
        raise ValueError(f"{name}: expected a 4-D float32 array [batch, token, head, d]")
    got = (<object>a).shape
    if got != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {got}")
    if cnp.PyArray_SIZE(a) == 0:  # nothing is read or written
        strides[0] = strides[1] = strides[2] = 0
        return <const float *>cnp.PyArray_DATA(a)
    if shape[3] > 1 and a.strides[3] != 4:
        raise ValueError(f"{name}: the last axis must be contiguous")
    for i in range(3):
        if a.strides[i] % 4:
            raise ValueError(f"{name}: strides must be multiples of 4 bytes")
        strides[i] = a.strides[i] // 4
    return <const float *>cnp.PyArray_DATA(a)


def attention_f32(cnp.ndarray q, cnp.ndarray k, cnp.ndarray v, object mask, float scale,
                  cnp.ndarray out, object offsets=None):
    """out[b, i, h] = softmax(scale * q[b, i, h] . k[b, :, h] + mask[b, i]) @ v[b, :, h];
    q, out [B, Tq, H, D], k, v [B, Tk, H, D] (any strides, D contiguous);
    mask None or float32 [B, Tq, Tk] (Tk contiguous, other strides may be 0).
    offsets: packed sequences instead, int64 [S + 1] ascending from >= 0 to <= N
    with q, k, v, out [1, N, H, D]: sequence s is tokens offsets[s]:offsets[s + 1]."""
    cdef sk_attention_f32_args a
    cdef cnp.ndarray m, off
    cdef int rc
    cdef int64_t i
    if q.ndim != 4 or k.ndim != 4:
        raise ValueError("q, k: expected 4-D arrays [batch, token, head, d]")
    cdef int64_t nb = q.shape[0], tq = q.shape[1], nh = q.shape[2], d = q.shape[3]
    cdef int64_t tk = k.shape[1]
    a.q = bthd(q, (nb, tq, nh, d), "q", a.q_stride)
    a.k = bthd(k, (nb, tk, nh, d), "k", a.k_stride)
    a.v = bthd(v, (nb, tk, nh, d), "v", a.v_stride)
    a.out = <float *>bthd(out, (nb, tq, nh, d), "out", a.out_stride)
    if not out.flags.writeable:
        raise ValueError("out: must be writeable")
    a.mask = NULL
    a.mask_stride[0] = a.mask_stride[1] = 0
    if mask is not None:
        m = mask
        if cnp.PyArray_TYPE(m) != cnp.NPY_FLOAT32 or (<object>m).shape != (nb, tq, tk):
            raise ValueError(f"mask: expected float32 [{nb}, {tq}, {tk}], got "
                             f"{(<object>m).dtype} {(<object>m).shape}")
        if (tk > 1 and m.strides[2] != 4) or m.strides[0] % 4 or m.strides[1] % 4:
            raise ValueError("mask: the last axis must be contiguous")
        a.mask = <const float *>cnp.PyArray_DATA(m)
        a.mask_stride[0] = m.strides[0] // 4
        a.mask_stride[1] = m.strides[1] // 4
    a.seq_offsets = NULL
    if offsets is not None:
        off = offsets
        if cnp.PyArray_TYPE(off) != cnp.NPY_INT64 or off.ndim != 1 or off.shape[0] < 1 or \
                not off.flags.c_contiguous:
            raise ValueError("offsets: expected a contiguous int64 array [S + 1]")
        if mask is not None or nb != 1 or tk != tq:
            raise ValueError("offsets: packed sequences take q, k, v of shape [1, N, H, D] "
                             "and no mask")
        a.seq_offsets = <const int64_t *>cnp.PyArray_DATA(off)
        nb = off.shape[0] - 1
        for i in range(nb + 1):
            if a.seq_offsets[i] < 0 or a.seq_offsets[i] > tq or \
                    (i > 0 and a.seq_offsets[i] < a.seq_offsets[i - 1]):
                raise ValueError(f"offsets: expected ascending values in [0, {tq}]")
    with nogil:
        rc = sk_attention_f32(nb, nh, tq, tk, d, scale, &a)
    check(rc)
    return out


def add_layernorm_f32(cnp.ndarray y, object r, object gamma, object beta, float eps,
                      object a=None):
    """y[i] = LayerNorm(y[i] + r[i]) * gamma + beta in place; y, r float32 [M, N]
    with contiguous rows (r may be None), gamma / beta float32 [N] or None.
    With a (float32 [M, N], contiguous rows, not overlapping y): y[i] =
    LayerNorm(a[i] + r[i]) * gamma + beta, y only written (no copy of a first)."""
    cdef cnp.ndarray rr, g, b, aa
    cdef const float *pr = NULL
    cdef const float *pg = NULL
    cdef const float *pb = NULL
    cdef const float *pa = NULL
    cdef int64_t ldy = 0, ldr = 0, lda = 0
    cdef int rc
    if y.ndim != 2:
        raise ValueError("y: expected a 2-D float32 array [M, N]")
    cdef int64_t m = y.shape[0], n = y.shape[1]
    cdef float *py = <float *>f32_rows(y, m, n, "y", &ldy)
    if not y.flags.writeable:
        raise ValueError("y: must be writeable")
    if r is not None:
        rr = r
        if rr.ndim != 2 or rr.shape[0] != m or rr.shape[1] != n:
            raise ValueError(f"r: expected shape ({m}, {n})")
        pr = f32_rows(rr, m, n, "r", &ldr)
    if a is not None:
        aa = a
        if aa.ndim != 2 or aa.shape[0] != m or aa.shape[1] != n:
            raise ValueError(f"a: expected shape ({m}, {n})")
        pa = f32_rows(aa, m, n, "a", &lda)
        if m and n and not (pa == py and lda == ldy) and \
                pa < py + (m - 1) * ldy + n and py < pa + (m - 1) * lda + n:
            raise ValueError("a: must not overlap y (or be y itself)")
    if gamma is not None:
        g = gamma
        pg = <const float *>vec_of(g, cnp.NPY_FLOAT32, n, "gamma")
    if beta is not None:
        b = beta
        pb = <const float *>vec_of(b, cnp.NPY_FLOAT32, n, "beta")
    if not (eps >= 0.0):
        raise ValueError(f"eps: expected >= 0, got {eps}")
    with nogil:
        if pa == NULL:
            rc = sk_add_layernorm_f32(m, n, py, ldy, pr, ldr, pg, pb, eps)
        else:
            rc = sk_add_layernorm_f32_to(m, n, pa, lda, pr, ldr, pg, pb, eps, py, ldy)
    check(rc)
    return y
