# Static u8 quantization followed by dequantization ((q - zp) * scale in
# float32) or a 256-entry float32 lookup, in chunks of rows that stay in L2
# (included by _core.pyx): the runtime's FakeQuantize in one call instead of
# the quantizer plus NumPy's convert / subtract / multiply passes,
# LookupTable, and a per-column bias added between two of them (a quantized
# MatMul's output, + bias, requantized). setup.py builds this module with
# -ffp-contract=off: a product and the bias added to it round separately, as
# the layers they replace round them.
from libc.stdlib cimport malloc, free

cdef enum:
    QL_CHUNK = 16384  # floats per chunk: 64 KiB of f32 scratch + 16 KiB of codes


cdef const float *f32_table(cnp.ndarray t, str name) except NULL:
    if cnp.PyArray_TYPE(t) != cnp.NPY_FLOAT32 or cnp.PyArray_NDIM(t) != 1 or \
            cnp.PyArray_DIMS(t)[0] != 256 or not cnp.PyArray_IS_C_CONTIGUOUS(t):
        raise ValueError(f"{name}: expected contiguous float32 [256]")
    return <const float *>cnp.PyArray_DATA(t)


cdef int check_static_params(float scale, int32_t zp, str name) except -1:
    if not (scale > 0 and scale <= 3.4028234663852886e38):
        raise ValueError(f"{name}: expected a finite float > 0, got {scale}")
    if zp < 0 or zp > 255:
        raise ValueError(f"{name} zero point: expected 0..255, got {zp}")
    return 0


cdef extern from *:
    """
    /* (q - zp) * scale per code, or table[q]; the bias add is its own
     * statement and the module is built with -ffp-contract=off, so every
     * step rounds in float32 as the NumPy layers do. On GCC / x86-64 Linux
     * each loop is also built for AVX2 and AVX-512 (picked at load time by
     * the ifunc resolver): with SSE2 alone a FakeQuantize of 608 x 384
     * measured 42 us instead of 36. */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define SK_QL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
    #else
    #define SK_QL_CLONES
    #endif
    SK_QL_CLONES static void sk_ql_dequantize(const uint8_t *restrict q, int64_t n, float scale,
                                              int32_t zp, const float *restrict table,
                                              float *restrict y) {
      if (table) {
        for (int64_t i = 0; i < n; ++i) y[i] = table[q[i]];
      } else {
        for (int64_t i = 0; i < n; ++i) y[i] = (float)((int32_t)q[i] - zp) * scale;
      }
    }
    SK_QL_CLONES static void sk_ql_add_bias(float *restrict y, int64_t rows, int64_t k,
                                            const float *restrict bias) {
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < k; ++j) y[r * k + j] += bias[j];
    }
    static void sk_ql_lookup_u8(const uint8_t *restrict q, int64_t n,
                                const uint8_t *restrict table, uint8_t *restrict y) {
      for (int64_t i = 0; i < n; ++i) y[i] = table[q[i]];
    }

    /* The thread policy of kernels/src/internal.h (same library, not in the
     * public header; _core_quant_norm.pxi and _core_minmax.pxi use it too). */
    int sk_threads_for_work(double work);
    int64_t sk_region_begin(int nt);
    void sk_worker_check_in(int64_t stamp);

    /* One chunk of rows [r0, r0 + rows) of an op below, with its scratch
     * (q: qbytes, f: fbytes); returns SK_OK or the error of that chunk. */
    typedef int (*sk_ql_chunk_fn)(const void *ctx, int64_t r0, uint8_t *q, float *f);

    /* Run fn over the chunks of m rows (`rows` each, the last one shorter),
     * whole chunks per thread: chunks are fixed by the shape alone and every
     * row's values are its own, so the result is the same at any thread
     * count. One thread runs in order without an OpenMP region and stops at
     * the first failing chunk; threads run every chunk (out is "partly
     * written" either way) and return the first failing chunk's error, as
     * one thread would. SK_ERR_NOMEM if scratch allocation fails. */
    static int sk_ql_run_chunks(sk_ql_chunk_fn fn, const void *ctx, int64_t m, int64_t rows,
                                size_t qbytes, size_t fbytes, double work) {
      const int64_t nch = (m + rows - 1) / rows;
      int nt = sk_threads_for_work(work);
      if (nt > nch) nt = (int)nch;
      if (nt <= 1) {
        uint8_t *q = (uint8_t *)malloc(qbytes ? qbytes : 1);
        float *f = fbytes ? (float *)malloc(fbytes) : NULL;
        int rc = q == NULL || (fbytes && f == NULL) ? SK_ERR_NOMEM : SK_OK;
        for (int64_t c = 0; rc == SK_OK && c < nch; ++c) rc = fn(ctx, c * rows, q, f);
        free(q);
        free(f);
        return rc;
      }
      int64_t first_bad = nch;
      int first_rc = SK_OK, nomem = 0;
      const int64_t t0 = sk_region_begin(nt);
      #pragma omp parallel num_threads(nt) reduction(| : nomem)
      {
        sk_worker_check_in(t0);
        uint8_t *q = (uint8_t *)malloc(qbytes ? qbytes : 1);
        float *f = fbytes ? (float *)malloc(fbytes) : NULL;
        const int ok = q != NULL && !(fbytes && f == NULL);
        /* every thread reaches the worksharing loop, even one whose malloc failed */
        #pragma omp for schedule(static)
        for (int64_t c = 0; c < nch; ++c) {
          if (!ok) {
            nomem = 1;
            continue;
          }
          const int rc = fn(ctx, c * rows, q, f);
          if (rc != SK_OK) {
            #pragma omp critical(sk_ql_first_bad)
            if (c < first_bad) {
              first_bad = c;
              first_rc = rc;
            }
          }
        }
        free(q);
        free(f);
      }
      return nomem ? SK_ERR_NOMEM : first_rc;
    }

    /* quantize_lookup's chunk (see its docstring): codes of x (or the given
     * codes pq), then the table / dequantized values, with bias a second
     * quantization, into po (float) or pou (codes through pcode). */
    typedef struct {
      const float *px;
      const uint8_t *pq;
      int64_t m, k, ldx, rows;
      float scale, scale2;
      int32_t zp, zp2;
      const float *pt, *pt2, *pb;
      const uint8_t *pcode;
      float *po;
      uint8_t *pou;
    } sk_ql_lookup_args;

    static int sk_ql_lookup_chunk(const void *ctx, int64_t r0, uint8_t *q, float *f) {
      const sk_ql_lookup_args *a = (const sk_ql_lookup_args *)ctx;
      const int64_t k = a->k, nr = a->m - r0 < a->rows ? a->m - r0 : a->rows, n = nr * k;
      const uint8_t *q1 = q;
      int rc;
      if (a->pq != NULL) {
        q1 = a->pq + r0 * k;
      } else {
        rc = sk_quantize_u8(nr, k, a->px + r0 * a->ldx, a->ldx, a->scale, a->zp, q, k);
        if (rc != SK_OK) return rc;
      }
      if (a->pb == NULL) {
        if (a->pou != NULL) sk_ql_lookup_u8(q1, n, a->pcode, a->pou + r0 * k);
        else sk_ql_dequantize(q1, n, a->scale, a->zp, a->pt, a->po + r0 * k);
        return SK_OK;
      }
      sk_ql_dequantize(q1, n, a->scale, a->zp, a->pt, f);
      sk_ql_add_bias(f, nr, k, a->pb);
      rc = sk_quantize_u8(nr, k, f, k, a->scale2, a->zp2, q, k);
      if (rc != SK_OK) return rc;
      if (a->pou != NULL) sk_ql_lookup_u8(q, n, a->pcode, a->pou + r0 * k);
      else sk_ql_dequantize(q, n, a->scale2, a->zp2, a->pt2, a->po + r0 * k);
      return SK_OK;
    }

    /* int8_requantize's chunk after its GEMM: codes on (scale, zp) dequantized,
     * + bias, requantized on (scale2, zp2), then table / dequantized into out:
     * quantize_lookup's biased chunk on the GEMM's codes (pq). */
    static int sk_ql_requantize_run(const sk_ql_lookup_args *a) {
      return sk_ql_run_chunks(sk_ql_lookup_chunk, a, a->m, a->rows, (size_t)(a->rows * a->k),
                              (size_t)(a->rows * a->k) * sizeof(float),
                              (double)a->m * (double)a->k * 6.0);
    }

    static int sk_ql_lookup_run(const sk_ql_lookup_args *a) {
      return sk_ql_run_chunks(sk_ql_lookup_chunk, a, a->m, a->rows, (size_t)(a->rows * a->k),
                              a->pb != NULL ? (size_t)(a->rows * a->k) * sizeof(float) : 0,
                              (double)a->m * (double)a->k * (a->pb != NULL ? 6.0 : 3.0));
    }
    """
    void sk_ql_dequantize(const uint8_t *q, int64_t n, float scale, int32_t zp,
                          const float *table, float *y) nogil
    void sk_ql_add_bias(float *y, int64_t rows, int64_t k, const float *bias) nogil
    void sk_ql_lookup_u8(const uint8_t *q, int64_t n, const uint8_t *table, uint8_t *y) nogil
    ctypedef struct sk_ql_lookup_args:
        const float *px
        const uint8_t *pq
        int64_t m, k, ldx, rows
        float scale, scale2
        int32_t zp, zp2
        const float *pt
        const float *pt2
        const float *pb
        const uint8_t *pcode
        float *po
        uint8_t *pou
    int sk_ql_lookup_run(const sk_ql_lookup_args *a) nogil
    int sk_ql_requantize_run(const sk_ql_lookup_args *a) nogil


def quantize_lookup(cnp.ndarray x, float scale, int32_t zp, cnp.ndarray table,
                    cnp.ndarray out, cnp.ndarray bias=None, float scale2=1.0,
                    int32_t zp2=0, cnp.ndarray table2=None):
    """out[m, k] = v(q(x[m, k])), q = clip(rint(x / scale) + zp, 0, 255) as
    sk_quantize_u8 computes it, v(q) = table[q], or (float)(q - zp) * scale
    in float32 if table is None. With bias (float32 [K]):
    out = v2(q2(v(q(x)) + bias[k])), q2 and v2 on (scale2, zp2, table2).
    x: float32 [M, K] with contiguous rows, or C-contiguous uint8 [M, K]:
    the codes q themselves (an int8 GEMM's requantizing epilogue made them);
    out: C-contiguous float32 [M, K], or uint8 [M, K] with a uint8 [256]
    last table (table, or table2 with bias): codes looked up, not floats.
    ValueError if x or the biased values hold NaN or infinity (out is then
    partly written)."""
    cdef int64_t m = x.shape[0] if x.ndim == 2 else -1
    cdef int64_t k = x.shape[1] if x.ndim == 2 else -1
    cdef int64_t ldx = 0
    cdef const float *px = NULL
    cdef const uint8_t *pq = NULL
    if cnp.PyArray_TYPE(x) == cnp.NPY_UINT8:
        if not cnp.PyArray_IS_C_CONTIGUOUS(x):
            raise ValueError("x: uint8 codes must be C-contiguous")
        pq = u8_rows(x, m, k, "x", &ldx)
    else:
        px = f32_rows(x, m, k, "x", &ldx)
    cdef bint u8_out = cnp.PyArray_TYPE(out) == cnp.NPY_UINT8
    cdef const float *pt = NULL
    if table is not None and not (u8_out and bias is None):
        pt = f32_table(table, "table")
    cdef const float *pt2 = NULL
    cdef const float *pb = NULL
    check_static_params(scale, zp, "scale")
    if (cnp.PyArray_TYPE(out) != cnp.NPY_FLOAT32 and not u8_out) or cnp.PyArray_NDIM(out) != 2 or \
            cnp.PyArray_DIMS(out)[0] != m or cnp.PyArray_DIMS(out)[1] != k or \
            not cnp.PyArray_IS_C_CONTIGUOUS(out) or not out.flags.writeable:
        raise ValueError(f"out: expected writeable C-contiguous float32 or uint8 [{m}, {k}]")
    cdef float *po = NULL
    cdef uint8_t *pou = NULL
    cdef const uint8_t *pcode = NULL
    if bias is not None:
        pb = <const float *>vec_of(bias, cnp.NPY_FLOAT32, k, "bias")
        if table2 is not None and not u8_out:
            pt2 = f32_table(table2, "table2")
        check_static_params(scale2, zp2, "scale2")
    if u8_out:
        last = table2 if bias is not None else table
        if last is None or cnp.PyArray_TYPE(last) != cnp.NPY_UINT8 or \
                cnp.PyArray_NDIM(last) != 1 or cnp.PyArray_DIMS(last)[0] != 256 or \
                not cnp.PyArray_IS_C_CONTIGUOUS(last):
            raise ValueError("table: a uint8 out needs a contiguous uint8 [256] last table")
        pcode = <const uint8_t *>cnp.PyArray_DATA(last)
        pou = <uint8_t *>cnp.PyArray_DATA(out)
        if bias is None:
            pt = NULL
    else:
        po = <float *>cnp.PyArray_DATA(out)
    if m == 0 or k == 0:
        return
    cdef sk_ql_lookup_args la
    la.px, la.pq, la.m, la.k, la.ldx = px, pq, m, k, ldx
    la.rows = QL_CHUNK // k if k < QL_CHUNK else 1
    la.scale, la.scale2, la.zp, la.zp2 = scale, scale2, zp, zp2
    la.pt, la.pt2, la.pb, la.pcode, la.po, la.pou = pt, pt2, pb, pcode, po, pou
    cdef int rc
    with nogil:  # chunks of rows over threads (sk_ql_run_chunks)
        rc = sk_ql_lookup_run(&la)
    check_quant(rc)


def int8_requantize(tuple warrays, int64_t n, int64_t k, cnp.ndarray x, float x_scale,
                    int32_t x_zp, float scale, int32_t zp, cnp.ndarray bias, float scale2,
                    int32_t zp2, cnp.ndarray table2, cnp.ndarray out):
    """runtime.qlinear.Int8LinearRequantize in one call: x (float32 [M, K]
    with contiguous rows, quantized on (x_scale, x_zp) as sk_quantize_u8
    does, or uint8 [M, K] codes on that grid with contiguous rows) through the int8
    GEMM whose epilogue writes u8 codes on (scale, zp) (sk_qgemm_u8s8_u8,
    no bias, no activation), then quantize_lookup's second stage: + bias
    (float32 [N]), codes on (scale2, zp2), out = their dequantized value,
    table2[code] (float32 [256]) or, for a uint8 out, table2[code] (uint8
    [256]). The same calls as the layer's three; ValueError if x or a
    biased value is NaN or infinite (out is then partly written)."""
    cdef sk_qmatrix_s8 w
    cdef int64_t m = x.shape[0] if x.ndim == 2 else -1
    cdef int64_t ldx = 0
    cdef const float *px = NULL
    cdef const uint8_t *pq = NULL
    fill_qmatrix(&w, warrays, n, k)
    if cnp.PyArray_TYPE(x) == cnp.NPY_UINT8:
        pq = u8_rows(x, m, k, "x", &ldx)
    else:
        px = f32_rows(x, m, k, "x", &ldx)
    check_static_params(x_scale, x_zp, "x_scale")
    check_static_params(scale, zp, "scale")
    check_static_params(scale2, zp2, "scale2")
    cdef const float *pb = <const float *>vec_of(bias, cnp.NPY_FLOAT32, n, "bias")
    cdef bint u8_out = cnp.PyArray_TYPE(out) == cnp.NPY_UINT8
    if (cnp.PyArray_TYPE(out) != cnp.NPY_FLOAT32 and not u8_out) or cnp.PyArray_NDIM(out) != 2 or \
            cnp.PyArray_DIMS(out)[0] != m or cnp.PyArray_DIMS(out)[1] != n or \
            not cnp.PyArray_IS_C_CONTIGUOUS(out) or not out.flags.writeable:
        raise ValueError(f"out: expected writeable C-contiguous float32 or uint8 [{m}, {n}]")
    cdef const float *pt = NULL
    cdef const uint8_t *pcode = NULL
    if u8_out:
        if table2 is None or cnp.PyArray_TYPE(table2) != cnp.NPY_UINT8 or \
                cnp.PyArray_NDIM(table2) != 1 or cnp.PyArray_DIMS(table2)[0] != 256 or \
                not cnp.PyArray_IS_C_CONTIGUOUS(table2):
            raise ValueError("table2: a uint8 out needs a contiguous uint8 [256] table")
        pcode = <const uint8_t *>cnp.PyArray_DATA(table2)
    elif table2 is not None:
        pt = f32_table(table2, "table2")
    if m == 0 or n == 0:
        return
    cdef int32_t xzp = x_zp
    cdef float xs = x_scale
    cdef uint8_t *qx = <uint8_t *>malloc(m * k) if pq == NULL and k > 0 else NULL
    cdef uint8_t *codes = <uint8_t *>malloc(m * n)
    cdef int rc = SK_OK
    if codes == NULL or (pq == NULL and k > 0 and qx == NULL):
        free(qx)
        free(codes)
        raise MemoryError("int8_requantize: scratch allocation failed")
    # the chunks after the GEMM: quantize_lookup's biased chunks on its codes
    cdef sk_ql_lookup_args la
    la.px, la.pq, la.m, la.k, la.ldx = NULL, codes, m, n, n
    la.rows = QL_CHUNK // n if n < QL_CHUNK else 1
    la.scale, la.scale2, la.zp, la.zp2 = scale, scale2, zp, zp2
    la.pt, la.pt2, la.pb, la.pcode = NULL, pt, pb, pcode
    la.po = NULL if u8_out else <float *>cnp.PyArray_DATA(out)
    la.pou = <uint8_t *>cnp.PyArray_DATA(out) if u8_out else NULL
    with nogil:
        if pq == NULL:
            rc = sk_quantize_u8(m, k, px, ldx, xs, xzp, qx, k)
            pq = qx
            ldx = k
        if rc == SK_OK:
            rc = sk_qgemm_u8s8_u8(&w, m, pq, ldx, &xzp, 0, &xs, 0, NULL, <sk_activation>0,
                                  scale, zp, codes, n)
        if rc == SK_OK:  # chunks of rows over threads (sk_ql_run_chunks)
            rc = sk_ql_requantize_run(&la)
    free(qx)
    free(codes)
    check_quant(rc)
