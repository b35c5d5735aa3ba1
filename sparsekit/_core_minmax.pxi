# Smallest and largest value of a float32 tensor in one pass (included by
# _core.pyx after _core_quant_lookup.pxi, whose SK_QL_CLONES it uses): the
# range of ONNX DynamicQuantizeLinear (runtime.tensor_quant). Blocks of
# 16384 values split over threads (the result is the same at any thread
# count); in each, two chains of 16 lanes. With the avx512f clone it beats
# NumPy's two reductions at every size (1t, Zen 4: [15, 384] 0.5 us vs 1.9,
# [608, 1536] 58 us vs 66); GCC lowers the 64-byte vectors of the avx2 and
# default clones through the stack (~1.4 ns a value), so without AVX-512
# tensor_params uses it for small tensors only.

cdef extern from *:
    """
    /* lo / hi of x[0..n), n >= 1; returns 1 if x holds NaN (lo / hi then
     * meaningless). Two chains of 16 lanes of v < m ? v : m as vector compares
     * and bitwise selects (GCC vector extensions: no float min / max
     * reassociation question, and each target clone runs them on its widest
     * registers); two chains halve the compare latency the loop waits on. */
    typedef float sk_mm_f16 __attribute__((vector_size(64)));
    typedef int32_t sk_mm_i16 __attribute__((vector_size(64)));
    SK_QL_CLONES static int sk_mm_minmax_f32(const float *restrict x, int64_t n, float *lo,
                                             float *hi) {
      float a0 = x[0], b0 = x[0];
      int nan = 0;
      int64_t i = 0;
      if (n >= 32) {
        sk_mm_f16 a, b, c, d, v, w;
        sk_mm_f16 bad = {0};  /* lanes take a NaN seen there, by the same select */
        memcpy(&a, x, sizeof a);
        memcpy(&c, x + 16, sizeof c);
        b = a;
        d = c;
        for (i = 32; i + 32 <= n; i += 32) {
          memcpy(&v, x + i, sizeof v);
          memcpy(&w, x + i + 16, sizeof w);
          const sk_mm_i16 lt = v < a, gt = v > b, lt2 = w < c, gt2 = w > d;
          a = (sk_mm_f16)(((sk_mm_i16)v & lt) | ((sk_mm_i16)a & ~lt));
          b = (sk_mm_f16)(((sk_mm_i16)v & gt) | ((sk_mm_i16)b & ~gt));
          c = (sk_mm_f16)(((sk_mm_i16)w & lt2) | ((sk_mm_i16)c & ~lt2));
          d = (sk_mm_f16)(((sk_mm_i16)w & gt2) | ((sk_mm_i16)d & ~gt2));
          /* (a select, not bad |= v != v: GCC scalarises a mask kept as a
           * vector in the avx512f and avx2 clones) */
          const sk_mm_i16 ok = v == v, ok2 = w == w;
          bad = (sk_mm_f16)(((sk_mm_i16)bad & ok) | ((sk_mm_i16)v & ~ok));
          bad = (sk_mm_f16)(((sk_mm_i16)bad & ok2) | ((sk_mm_i16)w & ~ok2));
        }
        for (int j = 0; j < 16; ++j) {
          nan |= (bad[j] != bad[j]) | (a[j] != a[j]) | (c[j] != c[j]);  /* (a, c: the first 32) */
          a0 = a[j] < a0 ? a[j] : a0;
          a0 = c[j] < a0 ? c[j] : a0;
          b0 = b[j] > b0 ? b[j] : b0;
          b0 = d[j] > b0 ? d[j] : b0;
        }
      }
      for (; i < n; ++i) {
        const float v = x[i];
        a0 = v < a0 ? v : a0;
        b0 = v > b0 ? v : b0;
        nan |= v != v;
      }
      *lo = a0;
      *hi = b0;
      return nan;
    }

    #define SK_MM_BLOCK 16384  /* values per block: the unit threads share out */

    /* sk_mm_minmax_f32 over blocks [b0, b1) of SK_MM_BLOCK values, combined
     * left to right with ties kept from the left: associative, so any split
     * of the blocks gives the same lo / hi (the sign of a zero included). */
    static int sk_mm_blocks(const float *x, int64_t n, int64_t b0, int64_t b1, float *lo,
                            float *hi) {
      int nan = 0;
      for (int64_t bl = b0; bl < b1; ++bl) {
        const int64_t s = bl * SK_MM_BLOCK, e = s + SK_MM_BLOCK < n ? s + SK_MM_BLOCK : n;
        float l, h;
        nan |= sk_mm_minmax_f32(x + s, e - s, &l, &h);
        if (bl == b0 || l < *lo) *lo = l;
        if (bl == b0 || h > *hi) *hi = h;
      }
      return nan;
    }

    /* The whole range, blocks split over threads (one thread: no OpenMP
     * region); the result does not depend on the thread count. */
    static int sk_mm_minmax_f32_mt(const float *x, int64_t n, float *lo, float *hi) {
      const int64_t nb = (n + SK_MM_BLOCK - 1) / SK_MM_BLOCK;
      int nt = sk_threads_for_work((double)n / 2.0);  /* ~2 values per multiply-add's time */
      if (nt > 64) nt = 64;
      if (nt > nb) nt = (int)nb;
      if (nt <= 1) return sk_mm_blocks(x, n, 0, nb, lo, hi);
      float los[64], his[64];
      int nans = 0;
      const int64_t t0 = sk_region_begin(nt);
      #pragma omp parallel num_threads(nt) reduction(| : nans)
      {
        sk_worker_check_in(t0);
        #pragma omp for schedule(static)
        for (int t = 0; t < nt; ++t)
          nans |= sk_mm_blocks(x, n, nb * t / nt, nb * (t + 1) / nt, &los[t], &his[t]);
      }
      *lo = los[0];
      *hi = his[0];
      for (int t = 1; t < nt; ++t) {
        if (los[t] < *lo) *lo = los[t];
        if (his[t] > *hi) *hi = his[t];
      }
      return nans;
    }
    """
    int sk_mm_minmax_f32_mt(const float *x, int64_t n, float *lo, float *hi) nogil


def minmax_f32(cnp.ndarray x):
    """(min, max) of a C-contiguous float32 array with at least one value, as
    Python floats; (nan, nan) if it holds NaN (as NumPy's min / max)."""
    if cnp.PyArray_TYPE(x) != cnp.NPY_FLOAT32 or not cnp.PyArray_IS_C_CONTIGUOUS(x):
        raise ValueError("x: expected a C-contiguous float32 array")
    cdef int64_t n = cnp.PyArray_SIZE(x)
    if n == 0:
        raise ValueError("x: expected at least one value")
    cdef float lo = 0, hi = 0
    cdef int nan
    cdef const float *px = <const float *>cnp.PyArray_DATA(x)
    with nogil:
        nan = sk_mm_minmax_f32_mt(px, n, &lo, &hi)
    if nan:
        return float("nan"), float("nan")
    return lo, hi
