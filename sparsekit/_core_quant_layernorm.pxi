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
        typedef float sk_v8f __attribute__((vector_size(32), aligned(4)));
        sk_v8f r = *(const sk_v8f *)a;
        int64_t i;
        for (i = 8; i < n - (n % 8); i += 8) r += *(const sk_v8f *)(a + i);
        float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; ++i) res += a[i];
        return res;
      }
      int64_t n2 = n / 2;
      n2 -= n2 % 8;
      return sk_qln_pairwise(a, n2) + sk_qln_pairwise(a + n2, n - n2);
    }

    /* LayerNorm of each row of v [rows, k] in place, as runtime.layers.LayerNorm:
     * mu = sum / k; d = v - mu; var = sum(d * d) / k; d / sqrt(var + eps) * gamma
     * (+ beta). sq: k floats of scratch. */
    SK_QL_CLONES static void sk_qln_layernorm(float *v, int64_t rows, int64_t k, const float *gamma,
                                              const float *beta, float eps, float *sq) {
      const float fk = (float)k;
      for (int64_t r = 0; r < rows; ++r) {
        float *x = v + r * k;
        float s = 0.0f;
        s += sk_qln_pairwise(x, k);
        const float mu = s / fk;
        for (int64_t j = 0; j < k; ++j) {
          x[j] = x[j] - mu;
          sq[j] = x[j] * x[j];
        }
        float s2 = 0.0f;
        s2 += sk_qln_pairwise(sq, k);
        const float den = sqrtf(s2 / fk + eps);
        for (int64_t j = 0; j < k; ++j) {
          float y = x[j] / den;
          y = y * gamma[j];
          x[j] = beta ? y + beta[j] : y;
        }
      }
    }

    SK_QL_CLONES static void sk_qln_add(const float *restrict a, const float *restrict b, int64_t n,
                                        float *restrict t) {
      for (int64_t i = 0; i < n; ++i) t[i] = a[i] + b[i];
    }
    """
    void sk_qln_layernorm(float *v, int64_t rows, int64_t k, const float *gamma,
                          const float *beta, float eps, float *sq) nogil
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
    cdef const float *pa = <const float *>cnp.PyArray_DATA(a)
    cdef const float *pb2 = NULL if b is None else <const float *>cnp.PyArray_DATA(b)
    cdef float *po = <float *>cnp.PyArray_DATA(out)
    if m == 0 or k == 0:
        return
    cdef int64_t rows = QL_CHUNK // k if k < QL_CHUNK else 1
    cdef int64_t cap = rows * k, r0, nr, n
    cdef uint8_t *q = <uint8_t *>malloc(cap)
    cdef float *f = <float *>malloc((cap + k) * sizeof(float))
    cdef const float *src
    cdef int rc = SK_OK
    if q == NULL or f == NULL:
        free(q)
        free(f)
        raise MemoryError("quant_layernorm: scratch allocation failed")
    with nogil:
        r0 = 0
        while r0 < m:
            nr = rows if m - r0 > rows else m - r0
            n = nr * k
            src = pa + r0 * k
            if pb2 != NULL:
                sk_qln_add(src, pb2 + r0 * k, n, f)
                src = f
            rc = sk_quantize_u8(nr, k, src, k, scale, zp, q, k)
            if rc != SK_OK:
                break
            sk_ql_dequantize(q, n, scale, zp, NULL, f)
            sk_qln_layernorm(f, nr, k, pg, pb, eps, f + cap)
            rc = sk_quantize_u8(nr, k, f, k, scale2, zp2, q, k)
            if rc != SK_OK:
                break
            sk_ql_dequantize(q, n, scale2, zp2, NULL, po + r0 * k)
            r0 += nr
    free(q)
    free(f)
    check_quant(rc)
