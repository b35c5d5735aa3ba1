# Smallest and largest value of a float32 tensor in one pass (included by
# _core.pyx after _core_quant_lookup.pxi, whose SK_QL_CLONES it uses): the
# range of ONNX DynamicQuantizeLinear (runtime.tensor_quant) for small
# tensors, where two NumPy reductions cost ~1.9 us against ~0.7 us here
# ([15, 384]); the loop is one latency-bound chain (~0.13 ns a value), so
# from ~20K values NumPy's reductions are faster (a four-chain unroll
# measured slower still: the default clone spills).

cdef extern from *:
    """
    /* lo / hi of x[0..n), n >= 1; returns 1 if x holds NaN (lo / hi then
     * meaningless). 16 lanes of v < m ? v : m as vector compares and bitwise
     * selects (GCC vector extensions: no float min / max reassociation
     * question, and each target clone runs them on its widest registers). */
    typedef float sk_mm_f16 __attribute__((vector_size(64)));
    typedef int32_t sk_mm_i16 __attribute__((vector_size(64)));
    SK_QL_CLONES static int sk_mm_minmax_f32(const float *restrict x, int64_t n, float *lo,
                                             float *hi) {
      float a0 = x[0], b0 = x[0];
      int nan = 0;
      int64_t i = 0;
      if (n >= 16) {
        sk_mm_f16 a, b, v;
        sk_mm_i16 bad = {0};
        memcpy(&a, x, sizeof a);
        b = a;
        for (i = 16; i + 16 <= n; i += 16) {
          memcpy(&v, x + i, sizeof v);
          const sk_mm_i16 lt = v < a, gt = v > b;
          a = (sk_mm_f16)(((sk_mm_i16)v & lt) | ((sk_mm_i16)a & ~lt));
          b = (sk_mm_f16)(((sk_mm_i16)v & gt) | ((sk_mm_i16)b & ~gt));
          bad |= v != v;
        }
        bad |= a != a;  /* (the first 16 values) */
        for (int j = 0; j < 16; ++j) {
          nan |= bad[j] != 0;
          a0 = a[j] < a0 ? a[j] : a0;
          b0 = b[j] > b0 ? b[j] : b0;
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
    """
    int sk_mm_minmax_f32(const float *x, int64_t n, float *lo, float *hi) nogil


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
        nan = sk_mm_minmax_f32(px, n, &lo, &hi)
    if nan:
        return float("nan"), float("nan")
    return lo, hi
