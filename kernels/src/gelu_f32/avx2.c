/*
 * gelu_f32/avx2.c - exact (erf) GELU in place, 8 floats per step; the same
 * math and operation order as avx512.c (see there), with 2^n built from
 * exponent bits instead of vscalefps: n in [-152, 1] is split into two
 * halves that are both normal floats, so tiny results still round once
 * (only denormal results lose bits, as on AVX-512).
 */
#include <immintrin.h>

#include "../internal.h"
#include "erfc_poly.h"

static inline __m256 pow2i(__m256i k) { /* 2^k, k in [-126, 127] */
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
}

static inline __m256 gelu8(__m256 x) {
  const __m256 ax = _mm256_min_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x),
                                  _mm256_set1_ps(22.0f));
  const __m256 z = _mm256_mul_ps(ax, _mm256_set1_ps(0.70710678118654752f));
  const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f),
                                 _mm256_fmadd_ps(z, _mm256_set1_ps(0.5f), _mm256_set1_ps(1.0f)));
  __m256 q = SK_ERFC_POLY(_mm256_fmadd_ps, _mm256_set1_ps, t);
  q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(SK_ERFC_P0));
  const __m256 xx = _mm256_mul_ps(ax, ax);
  const __m256 zz = _mm256_mul_ps(xx, _mm256_set1_ps(0.5f));
  const __m256 err = _mm256_mul_ps(_mm256_fmsub_ps(ax, ax, xx), _mm256_set1_ps(0.5f));
  const __m256 a = _mm256_max_ps(_mm256_sub_ps(_mm256_setzero_ps(), zz),
                                 _mm256_set1_ps(-104.0f));
  const __m256 b = _mm256_sub_ps(q, err);
  /* exp(a + b) = mant * 2^n */
  const __m256 n = _mm256_round_ps(
      _mm256_mul_ps(_mm256_add_ps(a, b), _mm256_set1_ps(SK_LOG2E)),
      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SK_LN2_HI), a);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SK_LN2_LO), r);
  r = _mm256_add_ps(r, b);
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256 s1 = pow2i(n1), s2 = pow2i(_mm256_sub_epi32(ni, n1));
  const __m256 th = _mm256_mul_ps(_mm256_mul_ps(t, _mm256_set1_ps(0.5f)), p);
  const __m256 half_erfc = _mm256_mul_ps(_mm256_mul_ps(th, s1), s2);
  const __m256 pos = _mm256_mul_ps(x, _mm256_sub_ps(_mm256_set1_ps(1.0f), half_erfc));
  const __m256 neg = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(x, th), s1), s2);
  __m256 y = _mm256_blendv_ps(pos, neg, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
  const __m256 far = _mm256_cmp_ps(x, _mm256_set1_ps(-20.0f), _CMP_LT_OQ);
  return _mm256_blendv_ps(y, _mm256_set1_ps(-0.0f), far);
}

void sk_gelu_f32__avx2(float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu8(_mm256_loadu_ps(y + i)));
  if (i < n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i)), lane);
    _mm256_maskstore_ps(y + i, m, gelu8(_mm256_maskload_ps(y + i, m)));
  }
}
