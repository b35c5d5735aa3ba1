# A static file's residual block end, FakeQuantize(LayerNorm(FakeQuantize(a + b))),
# in one pass over L2-sized chunks of rows (included by _core.pyx, after
# _core_quant_lookup.pxi, whose dequantizer it reuses). Bit for bit the NumPy
# layers: the sums follow NumPy's float32 pairwise summation along a
# contiguous row (0 + pairwise(row), 8 accumulators in blocks of <= 128), the
# mean is sum / k, and every step rounds in float32 (the module is built with
# -ffp-contract=off).

cdef extern from *:
    """
    /* NumPy's pairwise sum of a contiguous float32 row (numpy/_core/src/umath/
     * loops_utils.h.src: FLOAT_pairwise_sum), the summation order that
     * x.sum(axis=-1) and x.mean(axis=-1) use; tests/test_quant_layernorm.py
     * checks it against NumPy. */
    SK_QL_CLONES static float sk_qln_pairwise(const float *a, int64_t n) {
      if (n < 8) {
        float res = -0.0f;
        for (int64_t i = 0; i < n; ++i) res += a[i];
        return res;
      }
      if (n <= 128) {  /* r[0..7] as one 8-lane vector: the same adds per lane */
        typedef float sk_v8f __attribute__((vector_size(32)));
        sk_v8f r, v;
        int64_t i;
        memcpy(&r, a, sizeof r);  /* (unaligned loads, no aliasing question) */
        for (i = 8; i < n - (n % 8); i += 8) {
          memcpy(&v, a + i, sizeof v);
          r += v;
        }
        float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; ++i) res += a[i];
        return res;
      }
      int64_t n2 = n / 2;
      n2 -= n2 % 8;
      return sk_qln_pairwise(a, n2) + sk_qln_pairwise(a + n2, n - n2);
    }

    SK_QL_CLONES static void sk_qln_add(const float *restrict a, const float *restrict b, int64_t n,
                                        float *restrict t) {
      for (int64_t i = 0; i < n; ++i) t[i] = a[i] + b[i];
    }

    /* y[r] = LayerNorm(x[r]) for rows [r0, r1) of x, y [rows, k], as
     * runtime.layers.LayerNorm's NumPy steps, bit for bit: mu = sum / k;
     * d = x - mu; var = sum(d * d) / k; d / sqrt(var + eps) * gamma (+ beta).
     * y may be x (in place: each value is read before it is written).
     * sq: k floats of scratch. */
    SK_QL_CLONES static void sk_qln_layernorm_to(const float *x, float *y, int64_t r0,
                                                 int64_t r1, int64_t k, const float *gamma,
                                                 const float *beta, float eps,
                                                 float *restrict sq) {
      const float fk = (float)k;
      for (int64_t r = r0; r < r1; ++r) {
        const float *xr = x + r * k;
        float *yr = y + r * k;
        float s = 0.0f;
        s += sk_qln_pairwise(xr, k);
        const float mu = s / fk;
        for (int64_t j = 0; j < k; ++j) {
          yr[j] = xr[j] - mu;
          sq[j] = yr[j] * yr[j];
        }
        float s2 = 0.0f;
        s2 += sk_qln_pairwise(sq, k);
        const float den = sqrtf(s2 / fk + eps);
        for (int64_t j = 0; j < k; ++j) {
          float v = yr[j] / den;
          v = v * gamma[j];
          yr[j] = beta ? v + beta[j] : v;
        }
      }
    }

    typedef struct {
      const float *x, *gamma, *beta;
      float *y;
      int64_t m, k;
      float eps;
    } sk_qln_rows_args;

    static int sk_qln_row_chunk(const void *ctx, int64_t r0, uint8_t *q, float *sq) {
      const sk_qln_rows_args *p = (const sk_qln_rows_args *)ctx;
      sk_qln_layernorm_to(p->x, p->y, r0, r0 + 1, p->k, p->gamma, p->beta, p->eps, sq);
      return SK_OK;
    }

    /* The same over all rows, whole rows per thread through sk_ql_run_chunks
     * (a row's sums never depend on the thread count). SK_OK or SK_ERR_NOMEM. */
    static int sk_qln_layernorm_rows(const float *x, float *y, int64_t rows, int64_t k,
                                     const float *gamma, const float *beta, float eps) {
      const sk_qln_rows_args p = {x, gamma, beta, y, rows, k, eps};
      return sk_ql_run_chunks(sk_qln_row_chunk, &p, rows, 1, 0, (size_t)k * sizeof(float),
                              (double)rows * (double)k * 6.0);
    }

    /* quant_layernorm's chunk: F1(a + b) (b may be NULL), LayerNorm, F2 into
     * out; f holds rows * k values and k of LayerNorm scratch after them. */
    typedef struct {
      const float *a, *b, *gamma, *beta;
      float *out;
      int64_t m, k, rows;
      float scale, scale2, eps;
      int32_t zp, zp2;
    } sk_qln_args;

    static int sk_qln_chunk(const void *ctx, int64_t r0, uint8_t *q, float *f) {
      const sk_qln_args *p = (const sk_qln_args *)ctx;
      const int64_t k = p->k, nr = p->m - r0 < p->rows ? p->m - r0 : p->rows, n = nr * k;
      const float *src = p->a + r0 * k;
      if (p->b != NULL) {
        sk_qln_add(src, p->b + r0 * k, n, f);
        src = f;
      }
      int rc = sk_quantize_u8(nr, k, src, k, p->scale, p->zp, q, k);
      if (rc != SK_OK) return rc;
      sk_ql_dequantize(q, n, p->scale, p->zp, NULL, f);
      sk_qln_layernorm_to(f, f, 0, nr, k, p->gamma, p->beta, p->eps, f + p->rows * k);
      rc = sk_quantize_u8(nr, k, f, k, p->scale2, p->zp2, q, k);
      if (rc != SK_OK) return rc;
      sk_ql_dequantize(q, n, p->scale2, p->zp2, NULL, p->out + r0 * k);
      return SK_OK;
    }

    static int sk_qln_run(const sk_qln_args *p) {
      const int64_t cap = p->rows * p->k;
      return sk_ql_run_chunks(sk_qln_chunk, p, p->m, p->rows, (size_t)cap,
                              (size_t)(cap + p->k) * sizeof(float),
                              (double)p->m * (double)p->k * 12.0);
    }
    """
    int sk_qln_layernorm_rows(const float *x, float *y, int64_t rows, int64_t k,
                              const float *gamma, const float *beta, float eps) nogil
    ctypedef struct sk_qln_args:
        const float *a
        const float *b
        const float *gamma
        const float *beta
        float *out
        int64_t m, k, rows
        float scale, scale2, eps
        int32_t zp, zp2
    int sk_qln_run(const sk_qln_args *p) nogil
    void sk_qln_add(const float *a, const float *b, int64_t n, float *t) nogil
    float sk_qln_pairwise(const float *a, int64_t n) nogil


def pairwise_sum_f32(cnp.ndarray x):
    """NumPy's float32 sum of a contiguous float32 [n] (0 + pairwise), as
    the fused LayerNorm computes it (for tests)."""
    if cnp.PyArray_TYPE(x) != cnp.NPY_FLOAT32 or cnp.PyArray_NDIM(x) != 1 or \
            not cnp.PyArray_IS_C_CONTIGUOUS(x):
        raise ValueError("x: expected contiguous float32 [n]")
    cdef float s = 0.0
    s += sk_qln_pairwise(<const float *>cnp.PyArray_DATA(x), x.shape[0])
    return s


def layernorm_f32(cnp.ndarray x, cnp.ndarray gamma, object beta, float eps,
                  cnp.ndarray out):
    """out[r] = LayerNorm(x[r]) over the rows of C-contiguous float32 x [M, K]
    into C-contiguous float32 out [M, K] (not overlapping x), bit for bit
    runtime.layers.LayerNorm's NumPy steps (pairwise row sums, float32
    rounding at every step), rows split over threads; gamma float32 [K],
    beta float32 [K] or None."""
    cdef int64_t m = x.shape[0] if x.ndim == 2 else -1
    cdef int64_t k = x.shape[1] if x.ndim == 2 else -1
    check_f32_2d(x, m, k, "x")
    check_f32_2d(out, m, k, "out")
    if not out.flags.writeable:
        raise ValueError("out: must be writeable")
    cdef const float *pg = <const float *>vec_of(gamma, cnp.NPY_FLOAT32, k, "gamma")
    cdef const float *pb = NULL
    if beta is not None:
        pb = <const float *>vec_of(beta, cnp.NPY_FLOAT32, k, "beta")
    cdef const float *px = <const float *>cnp.PyArray_DATA(x)
    cdef float *po = <float *>cnp.PyArray_DATA(out)
    if m == 0 or k == 0:
        return out
    if px < po + m * k and po < px + m * k:
        raise ValueError("out: must not overlap x")
    cdef int rc
    with nogil:
        rc = sk_qln_layernorm_rows(px, po, m, k, pg, pb, eps)
    if rc != SK_OK:
        raise MemoryError("layernorm_f32: scratch allocation failed")
    return out


def quant_layernorm(cnp.ndarray a, cnp.ndarray b, float scale, int32_t zp,
                    cnp.ndarray gamma, cnp.ndarray beta, float eps, float scale2,
                    int32_t zp2, cnp.ndarray out):
    """out = F2(LayerNorm(F1(a + b))) over rows of C-contiguous float32
    [M, K] a and b (b may be None: F1(a)), F1 / F2 the static u8
    FakeQuantize on (scale, zp) / (scale2, zp2) (sk_quantize_u8's integers,
    dequantized as (q - zp) * scale), LayerNorm with gamma, beta (float32 [K],
    beta may be None) and eps as runtime.layers.LayerNorm. ValueError if a
    value to quantize is NaN or infinite (out is then partly written)."""
    cdef int64_t m = a.shape[0] if a.ndim == 2 else -1
    cdef int64_t k = a.shape[1] if a.ndim == 2 else -1
    for name, v in (("a", a), ("b", b), ("out", out)):
        if v is None and name == "b":
            continue
        if cnp.PyArray_TYPE(v) != cnp.NPY_FLOAT32 or cnp.PyArray_NDIM(v) != 2 or \
                v.shape[0] != m or v.shape[1] != k or not cnp.PyArray_IS_C_CONTIGUOUS(v):
            raise ValueError(f"{name}: expected C-contiguous float32 [{m}, {k}]")
    if not out.flags.writeable:
        raise ValueError("out: must be writeable")
    check_static_params(scale, zp, "scale")
    check_static_params(scale2, zp2, "scale2")
    cdef const float *pg = <const float *>vec_of(gamma, cnp.NPY_FLOAT32, k, "gamma")
    cdef const float *pb = NULL
    if beta is not None:
        pb = <const float *>vec_of(beta, cnp.NPY_FLOAT32, k, "beta")
    if m == 0 or k == 0:
        return
    cdef sk_qln_args p
    p.a = <const float *>cnp.PyArray_DATA(a)
    p.b = NULL
    if b is not None:
        p.b = <const float *>cnp.PyArray_DATA(b)
    p.gamma, p.beta, p.out = pg, pb, <float *>cnp.PyArray_DATA(out)
    p.m, p.k, p.rows = m, k, (QL_CHUNK // k if k < QL_CHUNK else 1)
    p.scale, p.scale2, p.eps, p.zp, p.zp2 = scale, scale2, eps, zp, zp2
    cdef int rc
    with nogil:  # chunks of rows over threads (sk_ql_run_chunks)
        rc = sk_qln_run(&p)
    check_quant(rc)


# Attention probabilities of a static file: FakeQuantize(scores) + mask, the
# row max subtracted (quant_softmax_shift); NumPy's exp in between (the
# caller: np.exp's own float32 values); then / the row's pairwise sum, NaN
# to a constant (the export's IsNaN -> Where) and the output grid
# (quant_softmax_finish). runtime.quant_norm.QuantSoftmax.

cdef extern from *:
    """
    /* d = v - max(v) per row, v = x + mask row (r / outer) * inner + r % inner
     * (a mask broadcast over heads, and over query rows when inner is 1);
     * NaN in v makes the max NaN, as NumPy's max propagates it. */
    SK_QL_CLONES static void sk_qsm_shift(float *restrict v, int64_t rows, int64_t t,
                                          const float *restrict mask, int64_t outer,
                                          int64_t inner, int64_t r0) {
      for (int64_t r = 0; r < rows; ++r) {
        float *x = v + r * t;
        if (mask) {
          const int64_t g = r0 + r;
          const float *mk = mask + ((g / outer) * inner + g % inner) * t;
          for (int64_t j = 0; j < t; ++j) x[j] = x[j] + mk[j];
        }
        float m = x[0];
        int nan = 0;
        for (int64_t j = 0; j < t; ++j) {
          nan |= x[j] != x[j];
          m = x[j] > m ? x[j] : m;
        }
        if (nan) m = NAN;
        for (int64_t j = 0; j < t; ++j) x[j] = x[j] - m;
      }
    }

    /* y = e / (0 + pairwise sum of the row), NaN -> nan_to when replace */
    SK_QL_CLONES static void sk_qsm_divide(const float *restrict e, int64_t rows, int64_t t,
                                           int replace, float nan_to, float *restrict y) {
      for (int64_t r = 0; r < rows; ++r) {
        float s = 0.0f;
        s += sk_qln_pairwise(e + r * t, t);
        for (int64_t j = 0; j < t; ++j) {
          float v = e[r * t + j] / s;
          y[r * t + j] = (replace && v != v) ? nan_to : v;
        }
      }
    }

    /* quant_softmax_shift's chunk: F(x) (the chunk as one row: elementwise),
     * + mask and - row max; quant_softmax_finish's: divide, then F. */
    typedef struct {
      const float *x, *mask;
      float *out;
      int64_t m, t, rows, outer, inner;
      float scale, nan_to;
      int32_t zp;
      int replace;
    } sk_qsm_args;

    static int sk_qsm_shift_chunk(const void *ctx, int64_t r0, uint8_t *q, float *f) {
      const sk_qsm_args *p = (const sk_qsm_args *)ctx;
      const int64_t nr = p->m - r0 < p->rows ? p->m - r0 : p->rows, n = nr * p->t;
      (void)f;
      const int rc = sk_quantize_u8(1, n, p->x + r0 * p->t, n, p->scale, p->zp, q, n);
      if (rc != SK_OK) return rc;
      sk_ql_dequantize(q, n, p->scale, p->zp, NULL, p->out + r0 * p->t);
      sk_qsm_shift(p->out + r0 * p->t, nr, p->t, p->mask, p->outer, p->inner, r0);
      return SK_OK;
    }

    static int sk_qsm_finish_chunk(const void *ctx, int64_t r0, uint8_t *q, float *f) {
      const sk_qsm_args *p = (const sk_qsm_args *)ctx;
      const int64_t nr = p->m - r0 < p->rows ? p->m - r0 : p->rows, n = nr * p->t;
      float *o = p->out + r0 * p->t;
      (void)f;
      sk_qsm_divide(p->x + r0 * p->t, nr, p->t, p->replace, p->nan_to, o);
      const int rc = sk_quantize_u8(1, n, o, n, p->scale, p->zp, q, n);
      if (rc != SK_OK) return rc;
      sk_ql_dequantize(q, n, p->scale, p->zp, NULL, o);
      return SK_OK;
    }

    static int sk_qsm_run(const sk_qsm_args *p, int finish) {
      return sk_ql_run_chunks(finish ? sk_qsm_finish_chunk : sk_qsm_shift_chunk, p, p->m,
                              p->rows, (size_t)(p->rows * p->t), 0,
                              (double)p->m * (double)p->t * 6.0);
    }
    """
    void sk_qsm_shift(float *v, int64_t rows, int64_t t, const float *mask, int64_t outer,
                      int64_t inner, int64_t r0) nogil
    void sk_qsm_divide(const float *e, int64_t rows, int64_t t, int replace, float nan_to,
                       float *y) nogil
    ctypedef struct sk_qsm_args:
        const float *x
        const float *mask
        float *out
        int64_t m, t, rows, outer, inner
        float scale, nan_to
        int32_t zp
        int replace
    int sk_qsm_run(const sk_qsm_args *p, int finish) nogil


cdef int check_f32_2d(cnp.ndarray v, int64_t m, int64_t k, str name) except -1:
    if cnp.PyArray_TYPE(v) != cnp.NPY_FLOAT32 or cnp.PyArray_NDIM(v) != 2 or \
            v.shape[0] != m or v.shape[1] != k or not cnp.PyArray_IS_C_CONTIGUOUS(v):
        raise ValueError(f"{name}: expected C-contiguous float32 [{m}, {k}]")
    return 0


def quant_softmax_shift(cnp.ndarray x, float scale, int32_t zp, cnp.ndarray mask,
                        int64_t outer, int64_t inner, cnp.ndarray out):
    """out = v - rowmax(v), v = F(x) + mask[(r // outer) * inner + r % inner]
    for rows r of C-contiguous float32 x [M, T], F the static u8
    FakeQuantize on (scale, zp), mask float32 [ceil(M / outer) * inner, T]
    or None. ValueError if x holds NaN or infinity."""
    cdef int64_t m = x.shape[0] if x.ndim == 2 else -1
    cdef int64_t t = x.shape[1] if x.ndim == 2 else -1
    check_f32_2d(x, m, t, "x")
    check_f32_2d(out, m, t, "out")
    if not out.flags.writeable:
        raise ValueError("out: must be writeable")
    check_static_params(scale, zp, "scale")
    cdef const float *pm = NULL
    if mask is not None:
        if outer < 1 or inner < 1:
            raise ValueError(f"outer/inner: expected >= 1, got {outer}, {inner}")
        check_f32_2d(mask, (m + outer - 1) // outer * inner, t, "mask")
        pm = <const float *>cnp.PyArray_DATA(mask)
    if m == 0 or t == 0:
        return
    cdef sk_qsm_args p
    p.x, p.mask, p.out = <const float *>cnp.PyArray_DATA(x), pm, <float *>cnp.PyArray_DATA(out)
    p.m, p.t, p.rows, p.outer, p.inner = m, t, (QL_CHUNK // t if t < QL_CHUNK else 1), outer, inner
    p.scale, p.nan_to, p.zp, p.replace = scale, 0.0, zp, 0
    cdef int rc
    with nogil:  # chunks of rows over threads (sk_ql_run_chunks)
        rc = sk_qsm_run(&p, 0)
    check_quant(rc)


def quant_softmax_finish(cnp.ndarray e, object nan_to, float scale, int32_t zp,
                         cnp.ndarray out):
    """out = F(y), y = e / (0 + pairwise sum of its row) for C-contiguous
    float32 e [M, T] (NaN in y replaced by nan_to unless None), F the
    static u8 FakeQuantize on (scale, zp). ValueError if a y to quantize is
    NaN or infinite (out is then partly written)."""
    cdef int64_t m = e.shape[0] if e.ndim == 2 else -1
    cdef int64_t t = e.shape[1] if e.ndim == 2 else -1
    check_f32_2d(e, m, t, "e")
    check_f32_2d(out, m, t, "out")
    if not out.flags.writeable:
        raise ValueError("out: must be writeable")
    check_static_params(scale, zp, "scale")
    cdef int replace = nan_to is not None
    cdef float fill = <float>nan_to if replace else 0.0
    if m == 0 or t == 0:
        return
    cdef sk_qsm_args p
    p.x, p.mask, p.out = <const float *>cnp.PyArray_DATA(e), NULL, <float *>cnp.PyArray_DATA(out)
    p.m, p.t, p.rows, p.outer, p.inner = m, t, (QL_CHUNK // t if t < QL_CHUNK else 1), 1, 1
    p.scale, p.nan_to, p.zp, p.replace = scale, fill, zp, replace
    cdef int rc
    with nogil:  # chunks of rows over threads (sk_ql_run_chunks)
        rc = sk_qsm_run(&p, 1)
    check_quant(rc)
