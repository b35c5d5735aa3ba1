/*
 * quantize_u8/avx512.c - row quantizer, 16 floats at a time with masked
 * tails; bit-identical to scalar.c (IEEE division, round half to even,
 * clamp in float before the truncating conversion).
 */
#include <float.h>
#include <immintrin.h>

#include "../internal.h"

static inline __mmask16 tail(int64_t r) {
  return r >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << r) - 1);
}

static inline __mmask16 nonfinite(__m512 v) {
  return _mm512_cmp_ps_mask(_mm512_abs_ps(v), _mm512_set1_ps(FLT_MAX), _CMP_NLE_UQ);
}

int sk_quantize_row_u8_static__avx512(const float *x, int64_t k, float scale,
                                      int32_t zero_point, uint8_t *q) {
  const __m512 s = _mm512_set1_ps(scale), z = _mm512_set1_ps((float)zero_point);
  const __m512 lo = _mm512_setzero_ps(), hi = _mm512_set1_ps(255.0f);
  __mmask16 bad = 0;
  for (int64_t i = 0; i < k; i += 16) {
    const __mmask16 m = tail(k - i);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    bad |= nonfinite(v);
    __m512 r = _mm512_roundscale_ps(_mm512_div_ps(v, s),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(r, z), lo), hi); /* NaN -> 0 */
    _mm512_mask_cvtepi32_storeu_epi8(q + i, m, _mm512_cvttps_epi32(r));
  }
  return bad ? SK_ERR_NONFINITE : SK_OK;
}

int sk_quantize_row_u8__avx512(const float *x, int64_t k, uint8_t *q, float *scale,
                               int32_t *zero_point) {
  __m512 mn = _mm512_setzero_ps(), mx = mn;
  __mmask16 bad = 0;
  for (int64_t i = 0; i < k; i += 16) { /* masked-off lanes are 0: in range */
    const __m512 v = _mm512_maskz_loadu_ps(tail(k - i), x + i);
    bad |= nonfinite(v);
    mn = _mm512_min_ps(mn, v);
    mx = _mm512_max_ps(mx, v);
  }
  sk_quantize_u8_params(_mm512_reduce_min_ps(mn), _mm512_reduce_max_ps(mx), scale,
                        zero_point);
  const int rc = sk_quantize_row_u8_static__avx512(x, k, *scale, *zero_point, q);
  return bad ? SK_ERR_NONFINITE : rc;
}
