/*
 * quantize_u8/avx2.c - row quantizer, 8 floats at a time; bit-identical to
 * scalar.c (vdivps is IEEE, vroundps with _MM_FROUND_TO_NEAREST_INT rounds
 * half to even, and the clamp happens in float before the conversion).
 * As in avx512.c (see the proof there), u = fma(x, 1/scale, zp) replaces the
 * division wherever rint(u) provably equals the IEEE result; 8 values with
 * a lane near a .5 tie (or non-finite) take the division.
 */
#include <float.h>
#include <immintrin.h>
#include <string.h>

#include "../internal.h"

static inline __m256i tail_mask(int64_t r) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), idx);
}

/* |v| > FLT_MAX or NaN, as a lane mask */
static inline __m256 nonfinite(__m256 v) {
  const __m256 absv = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
  return _mm256_cmp_ps(absv, _mm256_set1_ps(FLT_MAX), _CMP_NLE_UQ);
}

static inline __m128i quant8(__m256 v, __m256 s, __m256 z) {
  __m256 r = _mm256_round_ps(_mm256_div_ps(v, s),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  r = _mm256_add_ps(r, z);
  r = _mm256_max_ps(r, _mm256_setzero_ps()); /* r first: NaN -> 0 */
  r = _mm256_min_ps(r, _mm256_set1_ps(255.0f));
  const __m256i i = _mm256_cvttps_epi32(r);
  const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
  return _mm_packus_epi16(w, w); /* low 8 bytes */
}

/* rint(u) for 8 lanes as int32, or -1 in `*slow` when a lane needs the
 * division: u within `margin` of a .5 tie, NaN, or (check_inf) infinite. */
static inline __m256i fast8(__m256 v, __m256 r, __m256 z, __m256 margin, int check_inf,
                            int *slow) {
  const __m256 u = _mm256_fmadd_ps(v, r, z);
  const __m256 rt = _mm256_round_ps(u, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 sure = _mm256_cmp_ps(_mm256_and_ps(_mm256_sub_ps(u, rt), absmask), margin, _CMP_LT_OQ);
  if (check_inf)
    sure = _mm256_and_ps(sure, _mm256_cmp_ps(_mm256_and_ps(u, absmask),
                                             _mm256_set1_ps(FLT_MAX), _CMP_LE_OQ));
  *slow |= _mm256_movemask_ps(sure) != 0xff;
  /* rt is integral; static quotients may pass the int32 range: clamp first */
  return _mm256_cvtps_epi32(check_inf ? _mm256_min_ps(rt, _mm256_set1_ps(255.0f)) : rt);
}

/* int32 -> 8 u8 (low 8 bytes) saturating at 0 and 255 */
static inline __m128i narrow8(__m256i i) {
  const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
  return _mm_packus_epi16(w, w);
}

static inline int row_static(const float *x, int64_t k, float scale, int32_t zero_point,
                             uint8_t *q, const int check_inf) {
  const __m256 s = _mm256_set1_ps(scale), z = _mm256_set1_ps((float)zero_point);
  const __m256 r = _mm256_set1_ps(1.0f / scale);
  const __m256 margin = _mm256_set1_ps(check_inf ? 0.5f - 0x1p-12f : 0.5f - 0x1p-14f);
  __m256 bad = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    int slow = 0;
    const __m256i a = fast8(v, r, z, margin, check_inf, &slow);
    if (__builtin_expect(!slow, 1)) {
      _mm_storel_epi64((__m128i *)(q + i), narrow8(a));
    } else {
      bad = _mm256_or_ps(bad, nonfinite(v));
      _mm_storel_epi64((__m128i *)(q + i), quant8(v, s, z));
    }
  }
  if (i < k) {
    const __m256 v = _mm256_maskload_ps(x + i, tail_mask(k - i));
    bad = _mm256_or_ps(bad, nonfinite(v));
    uint8_t tmp[16];
    _mm_storeu_si128((__m128i *)tmp, quant8(v, s, z));
    memcpy(q + i, tmp, (size_t)(k - i));
  }
  return _mm256_movemask_ps(bad) ? SK_ERR_NONFINITE : SK_OK;
}

int sk_quantize_row_u8_static__avx2(const float *x, int64_t k, float scale,
                                    int32_t zero_point, uint8_t *q) {
  return row_static(x, k, scale, zero_point, q, 1);
}

int sk_quantize_row_u8__avx2(const float *x, int64_t k, uint8_t *q, float *scale,
                             int32_t *zero_point) {
  __m256 mn = _mm256_setzero_ps(), mx = mn, bad = mn;
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    bad = _mm256_or_ps(bad, nonfinite(v));
    mn = _mm256_min_ps(mn, v);
    mx = _mm256_max_ps(mx, v);
  }
  if (i < k) { /* masked-off lanes load 0, which the range holds anyway */
    const __m256 v = _mm256_maskload_ps(x + i, tail_mask(k - i));
    bad = _mm256_or_ps(bad, nonfinite(v));
    mn = _mm256_min_ps(mn, v);
    mx = _mm256_max_ps(mx, v);
  }
  float a[8], b[8];
  _mm256_storeu_ps(a, mn);
  _mm256_storeu_ps(b, mx);
  float lo = 0.0f, hi = 0.0f;
  for (int j = 0; j < 8; ++j) {
    lo = a[j] < lo ? a[j] : lo;
    hi = b[j] > hi ? b[j] : hi;
  }
  sk_quantize_u8_params(lo, hi, scale, zero_point);
  const int rc = row_static(x, k, *scale, *zero_point, q, 0);
  return _mm256_movemask_ps(bad) ? SK_ERR_NONFINITE : rc;
}
