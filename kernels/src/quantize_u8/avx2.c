/*
 * quantize_u8/avx2.c - row quantizer, 8 floats at a time; bit-identical to
 * scalar.c (vdivps is IEEE, vroundps with _MM_FROUND_TO_NEAREST_INT rounds
 * half to even, and the clamp happens in float before the conversion).
 * As in avx512.c (see the proof there), u = fma(x, 1/scale, zp) replaces the
 * division wherever rint(u) provably equals the IEEE result; 8 values with
 * a lane near a .5 tie (or non-finite) take the division.
 *
 * sk_quantize_rows_u8__avx2 quantizes a block of rows in one sweep, as the
 * AVX-512 one does: row i + 1's range (integer max over the bit patterns)
 * is found while row i is quantized 32 values at a time; 32 values with a
 * lane near a tie (or non-finite) take the division.
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

/* ---- a block of rows in one sweep (as sk_quantize_rows_u8__avx512) -------- */

/* Range accumulators over bit patterns: hi = signed max (max(x, +0) for
 * finite x), lo = unsigned max (the most negative x, if any x has its sign
 * bit set). A NaN or infinity only changes the row's scale: its lanes still
 * fail the quantizer's test (u is NaN or infinite), so the division path
 * reports it. */
typedef struct {
  __m256i hi, lo;
} range_acc;

static inline void range_add32(range_acc *r, const float *x) {
  const __m256i v0 = _mm256_loadu_si256((const __m256i *)x);
  const __m256i v1 = _mm256_loadu_si256((const __m256i *)(x + 8));
  const __m256i v2 = _mm256_loadu_si256((const __m256i *)(x + 16));
  const __m256i v3 = _mm256_loadu_si256((const __m256i *)(x + 24));
  r->hi = _mm256_max_epi32(r->hi, _mm256_max_epi32(_mm256_max_epi32(v0, v1),
                                                   _mm256_max_epi32(v2, v3)));
  r->lo = _mm256_max_epu32(r->lo, _mm256_max_epu32(_mm256_max_epu32(v0, v1),
                                                   _mm256_max_epu32(v2, v3)));
}

static inline void range_add8(range_acc *r, const __m256i v) {
  r->hi = _mm256_max_epi32(r->hi, v);
  r->lo = _mm256_max_epu32(r->lo, v);
}

/* (scale, zero point) of the accumulated range, as sk_quantize_u8_params
 * gets them from min(x, 0) and max(x, 0). */
static inline void range_params(const range_acc *r, float *scale, int32_t *zero_point) {
  int32_t hi[8];
  uint32_t lo[8];
  _mm256_storeu_si256((__m256i *)hi, r->hi);
  _mm256_storeu_si256((__m256i *)lo, r->lo);
  int32_t hb = 0;
  uint32_t lb = 0;
  for (int j = 0; j < 8; ++j) {
    hb = hi[j] > hb ? hi[j] : hb;
    lb = lo[j] > lb ? lo[j] : lb;
  }
  sk_quantize_u8_params_bits(hb, lb, scale, zero_point);
}

/* the range of k floats from x; lanes past k load +0, inside the range */
static inline void range_row(range_acc *r, const float *x, int64_t k) {
  r->hi = r->lo = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) range_add32(r, x + i);
  for (; i + 8 <= k; i += 8) range_add8(r, _mm256_loadu_si256((const __m256i *)(x + i)));
  if (i < k) range_add8(r, _mm256_castps_si256(_mm256_maskload_ps(x + i, tail_mask(k - i))));
}

/* u = fma(x, r, zp) and |u - rint(u)| as bits: their signed order is the
 * float order and NaN lies above every offset, so one max keeps the worst */
static inline __m256i off_bits(__m256 u) {
  const __m256 rt = _mm256_round_ps(u, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm256_and_si256(_mm256_castps_si256(_mm256_sub_ps(u, rt)),
                          _mm256_set1_epi32(0x7fffffff));
}

/* 32 int32 -> u8 saturating at 0 and 255, stored: the packs work within
 * 128-bit lanes; one dword permute restores the order */
static inline void store32(uint8_t *q, __m256i a0, __m256i a1, __m256i a2, __m256i a3) {
  const __m256i b = _mm256_packus_epi16(_mm256_packs_epi32(a0, a1), _mm256_packs_epi32(a2, a3));
  const __m256i idx = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  _mm256_storeu_si256((__m256i *)q, _mm256_permutevar8x32_epi32(b, idx));
}

/* 8 values through the division; NaN and infinity noted in *bad */
static inline void exact8(const float *x, __m256 s, __m256 z, uint8_t *q, __m256 *bad) {
  const __m256 v = _mm256_loadu_ps(x);
  *bad = _mm256_or_ps(*bad, nonfinite(v));
  _mm_storel_epi64((__m128i *)q, quant8(v, s, z));
}

int sk_quantize_rows_u8__avx2(const float *x, int64_t ldx, int64_t rows, int64_t k,
                              uint8_t *q, int64_t ldq, float *scale, int32_t *zero_point) {
  if (rows <= 0) return SK_OK;
  /* dynamic rows: |x / scale| <= 255 (+ rounding), so 2^-14 is enough */
  const __m256i sure_bits = _mm256_castps_si256(_mm256_set1_ps(0.5f - 0x1p-14f));
  range_acc cur, next;
  range_row(&cur, x, k);
  __m256 bad = _mm256_setzero_ps();
  for (int64_t row = 0; row < rows; ++row) {
    const float *xr = x + row * ldx;
    /* the row whose range is found meanwhile (the last row: itself again) */
    const float *xn = row + 1 < rows ? xr + ldx : xr;
    uint8_t *qr = q + row * ldq;
    range_params(&cur, scale + row, zero_point + row);
    const __m256 s = _mm256_set1_ps(scale[row]), z = _mm256_set1_ps((float)zero_point[row]);
    const __m256 r = _mm256_set1_ps(1.0f / scale[row]);
    next.hi = next.lo = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
      range_add32(&next, xn + i);
      const __m256 u0 = _mm256_fmadd_ps(_mm256_loadu_ps(xr + i), r, z);
      const __m256 u1 = _mm256_fmadd_ps(_mm256_loadu_ps(xr + i + 8), r, z);
      const __m256 u2 = _mm256_fmadd_ps(_mm256_loadu_ps(xr + i + 16), r, z);
      const __m256 u3 = _mm256_fmadd_ps(_mm256_loadu_ps(xr + i + 24), r, z);
      const __m256i off = _mm256_max_epi32(_mm256_max_epi32(off_bits(u0), off_bits(u1)),
                                           _mm256_max_epi32(off_bits(u2), off_bits(u3)));
      if (__builtin_expect(_mm256_movemask_epi8(_mm256_cmpgt_epi32(sure_bits, off)) == -1, 1)) {
        /* cvtps rounds half to even (the default mode): rint(u) */
        store32(qr + i, _mm256_cvtps_epi32(u0), _mm256_cvtps_epi32(u1), _mm256_cvtps_epi32(u2),
                _mm256_cvtps_epi32(u3));
      } else {
        for (int j = 0; j < 32; j += 8) exact8(xr + i + j, s, z, qr + i + j, &bad);
      }
    }
    for (; i + 8 <= k; i += 8) {
      range_add8(&next, _mm256_loadu_si256((const __m256i *)(xn + i)));
      const __m256 u = _mm256_fmadd_ps(_mm256_loadu_ps(xr + i), r, z);
      if (_mm256_movemask_epi8(_mm256_cmpgt_epi32(sure_bits, off_bits(u))) == -1)
        _mm_storel_epi64((__m128i *)(qr + i), narrow8(_mm256_cvtps_epi32(u)));
      else
        exact8(xr + i, s, z, qr + i, &bad);
    }
    if (i < k) { /* masked-off lanes load 0 */
      const __m256i m = tail_mask(k - i);
      range_add8(&next, _mm256_castps_si256(_mm256_maskload_ps(xn + i, m)));
      const __m256 v = _mm256_maskload_ps(xr + i, m);
      bad = _mm256_or_ps(bad, nonfinite(v));
      uint8_t tmp[16];
      _mm_storeu_si128((__m128i *)tmp, quant8(v, s, z));
      memcpy(qr + i, tmp, (size_t)(k - i));
    }
    cur = next;
  }
  return _mm256_movemask_ps(bad) ? SK_ERR_NONFINITE : SK_OK;
}
