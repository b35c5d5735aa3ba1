/*
 * quantize_u8/avx512.c - row quantizer, 16 floats at a time with masked
 * tails; bit-identical to scalar.c: q = clamp(rint(fl(x / scale)) + zp, 0, 255)
 * (IEEE quotient, round half to even, then the clamp).
 *
 * vdivps is the slow step, so the quotient comes from u = fma(x, r, zp) with
 * r = fl(1 / scale), kept only where it provably gives the same integer:
 * u differs from the real fl(x / scale) + zp by at most |x / scale| * 2^-23
 * (r and the quotient each round once; an r rounded into the subnormals adds
 * at most |x| * 2^-150 <= 2^-22) plus half an ulp of u. While
 * |x / scale| <= 512 that is below 2^-12 (static scales), and below 2^-14 for
 * dynamic rows, where |x / scale| <= 255 (+ rounding). rint(u) is then the
 * exact result unless u lies that close to a half-integer; a block of 64 with
 * such a lane (about 1% of blocks on random data) or a NaN u takes the
 * division. Past |x / scale| > 512 both clamp to the same 0 or 255. A
 * non-finite x makes u NaN or infinite (dynamic rows: an infinite scale,
 * r = 0, u = NaN), which fails the test, so non-finite input is always seen
 * by the division path.
 *
 * sk_quantize_rows_u8__avx512 quantizes a block of rows in one sweep: while
 * row i is quantized (from L1, where the sweep just brought it), row i + 1's
 * range is found. The range uses integer max over the bit patterns (signed
 * max: the largest positive value; unsigned max: the most negative one),
 * which runs beside the quantizer's float work instead of competing with it.
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

#define NEAREST (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

/* rint(x / scale) + zp as int32, to be clamped to [0, 255] by saturating
 * narrowing; `slow` gets the lanes that need the division. vreduceps gives
 * u - rint(u) in one step; it returns 0 for infinite u, which check_inf
 * (static scales only: see the top) rejects. Static quotients can pass the
 * int32 range, so they are clamped at 255 first; dynamic ones stay below 256.5. */
static inline __m512i quant16(__m512 v, __m512 r, __m512 z, int check_inf, __m512 sure_off,
                               __mmask16 *slow) {
  const __m512 u = _mm512_fmadd_ps(v, r, z);
  const __m512 off = _mm512_abs_ps(_mm512_reduce_ps(u, NEAREST));
  __mmask16 sure = _mm512_cmp_ps_mask(off, sure_off, _CMP_LT_OQ);
  if (check_inf)
    sure = _mm512_mask_cmp_ps_mask(sure, _mm512_abs_ps(u), _mm512_set1_ps(FLT_MAX), _CMP_LE_OQ);
  *slow |= (__mmask16)~sure;
  return _mm512_cvt_roundps_epi32(check_inf ? _mm512_min_ps(u, _mm512_set1_ps(255.0f)) : u,
                                  NEAREST);
}

/* The exact path for 16 values (reloaded: keeping them costs register
 * copies on the fast path): IEEE division; NaN -> 0. */
static inline __m128i exact16(const float *x, __mmask16 m, __m512 s, __m512 z,
                              __mmask16 *bad) {
  const __m512 v = _mm512_maskz_loadu_ps(m, x);
  *bad |= nonfinite(v);
  __m512 t = _mm512_add_ps(_mm512_roundscale_ps(_mm512_div_ps(v, s), NEAREST), z);
  t = _mm512_min_ps(_mm512_max_ps(t, _mm512_setzero_ps()), _mm512_set1_ps(255.0f));
  return _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(t));
}

/* int32 -> u8 with saturation at 0 and 255, 16 lanes */
static inline __m128i narrow16(__m512i a) {
  return _mm512_cvtusepi32_epi8(_mm512_max_epi32(a, _mm512_setzero_si512()));
}

/* 64 int32 -> u8 saturating at 0 and 255, stored: two saturating packs
 * (signed 32 -> 16, 16 -> unsigned 8) work within 128-bit lanes; one dword
 * permute restores the order */
static inline void store64(uint8_t *q, __m512i a0, __m512i a1, __m512i a2, __m512i a3) {
  const __m512i b = _mm512_packus_epi16(_mm512_packs_epi32(a0, a1), _mm512_packs_epi32(a2, a3));
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  _mm512_storeu_si512(q, _mm512_permutexvar_epi32(idx, b));
}

static inline void exact64(const float *x, __m512 s, __m512 z, uint8_t *q, __mmask16 *bad) {
  _mm_storeu_si128((__m128i *)q, exact16(x, 0xffff, s, z, bad));
  _mm_storeu_si128((__m128i *)(q + 16), exact16(x + 16, 0xffff, s, z, bad));
  _mm_storeu_si128((__m128i *)(q + 32), exact16(x + 32, 0xffff, s, z, bad));
  _mm_storeu_si128((__m128i *)(q + 48), exact16(x + 48, 0xffff, s, z, bad));
}

static inline int row_static(const float *x, int64_t k, float scale, int32_t zero_point,
                             uint8_t *q, const int check_inf) {
  const __m512 s = _mm512_set1_ps(scale), z = _mm512_set1_ps((float)zero_point);
  const __m512 r = _mm512_set1_ps(1.0f / scale);
  /* dynamic rows: |x / scale| <= 255 (+ rounding), so 2^-14 is enough */
  const __m512 sure_off = _mm512_set1_ps(check_inf ? 0.5f - 0x1p-12f : 0.5f - 0x1p-14f);
  __mmask16 bad = 0;
  int64_t i = 0;
  for (; i + 64 <= k; i += 64) {
    const __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
    const __m512 v2 = _mm512_loadu_ps(x + i + 32), v3 = _mm512_loadu_ps(x + i + 48);
    __mmask16 slow = 0;
    const __m512i a0 = quant16(v0, r, z, check_inf, sure_off, &slow);
    const __m512i a1 = quant16(v1, r, z, check_inf, sure_off, &slow);
    const __m512i a2 = quant16(v2, r, z, check_inf, sure_off, &slow);
    const __m512i a3 = quant16(v3, r, z, check_inf, sure_off, &slow);
    if (__builtin_expect(slow == 0, 1)) {
      store64(q + i, a0, a1, a2, a3);
    } else {
      exact64(x + i, s, z, q + i, &bad);
    }
  }
  for (; i < k; i += 16) {
    const __mmask16 m = tail(k - i);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i); /* lanes past k: 0 */
    __mmask16 slow = 0;
    const __m512i a = quant16(v, r, z, check_inf, sure_off, &slow);
    _mm_mask_storeu_epi8(q + i, m, slow ? exact16(x + i, m, s, z, &bad) : narrow16(a));
  }
  return bad ? SK_ERR_NONFINITE : SK_OK;
}

int sk_quantize_row_u8_static__avx512(const float *x, int64_t k, float scale,
                                      int32_t zero_point, uint8_t *q) {
  return row_static(x, k, scale, zero_point, q, 1);
}

int sk_quantize_row_u8__avx512(const float *x, int64_t k, uint8_t *q, float *scale,
                               int32_t *zero_point) {
  /* four min/max chains: one chain is latency-bound. Non-finite values are
   * found by the quantizing pass (see the top). */
  __m512 mn0 = _mm512_setzero_ps(), mn1 = mn0, mn2 = mn0, mn3 = mn0;
  __m512 mx0 = mn0, mx1 = mn0, mx2 = mn0, mx3 = mn0;
  int64_t i = 0;
  for (; i + 64 <= k; i += 64) {
    const __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
    const __m512 v2 = _mm512_loadu_ps(x + i + 32), v3 = _mm512_loadu_ps(x + i + 48);
    mn0 = _mm512_min_ps(mn0, v0), mx0 = _mm512_max_ps(mx0, v0);
    mn1 = _mm512_min_ps(mn1, v1), mx1 = _mm512_max_ps(mx1, v1);
    mn2 = _mm512_min_ps(mn2, v2), mx2 = _mm512_max_ps(mx2, v2);
    mn3 = _mm512_min_ps(mn3, v3), mx3 = _mm512_max_ps(mx3, v3);
  }
  for (; i < k; i += 16) { /* masked-off lanes are 0: in range */
    const __m512 v = _mm512_maskz_loadu_ps(tail(k - i), x + i);
    mn0 = _mm512_min_ps(mn0, v);
    mx0 = _mm512_max_ps(mx0, v);
  }
  const __m512 mn = _mm512_min_ps(_mm512_min_ps(mn0, mn1), _mm512_min_ps(mn2, mn3));
  const __m512 mx = _mm512_max_ps(_mm512_max_ps(mx0, mx1), _mm512_max_ps(mx2, mx3));
  sk_quantize_u8_params(_mm512_reduce_min_ps(mn), _mm512_reduce_max_ps(mx), scale,
                        zero_point);
  /* an infinite x makes the scale infinite, r = 0 and u = NaN: no check_inf */
  return row_static(x, k, *scale, *zero_point, q, 0);
}

/* ---- a block of rows in one sweep ----------------------------------------- */

/* Range accumulators over bit patterns: hi = signed max (max(x, +0) for
 * finite x), lo = unsigned max (the most negative x, if any x has its sign
 * bit set). NaN ends up in one of them, which only changes the row's scale:
 * its NaN lanes still fail the quantizer's test (see the top). */
typedef struct {
  __m512i hi0, hi1, lo0, lo1;
} range_acc;

static inline void range_init(range_acc *r) {
  r->hi0 = r->hi1 = r->lo0 = r->lo1 = _mm512_setzero_si512();
}

static inline void range_add64(range_acc *r, const float *x) {
  const __m512i v0 = _mm512_loadu_si512(x), v1 = _mm512_loadu_si512(x + 16);
  const __m512i v2 = _mm512_loadu_si512(x + 32), v3 = _mm512_loadu_si512(x + 48);
  r->hi0 = _mm512_max_epi32(r->hi0, v0), r->lo0 = _mm512_max_epu32(r->lo0, v0);
  r->hi1 = _mm512_max_epi32(r->hi1, v1), r->lo1 = _mm512_max_epu32(r->lo1, v1);
  r->hi0 = _mm512_max_epi32(r->hi0, v2), r->lo0 = _mm512_max_epu32(r->lo0, v2);
  r->hi1 = _mm512_max_epi32(r->hi1, v3), r->lo1 = _mm512_max_epu32(r->lo1, v3);
}

static inline void range_add16(range_acc *r, const float *x, __mmask16 m) {
  const __m512i v = _mm512_maskz_loadu_epi32(m, x); /* masked-off lanes: +0, in range */
  r->hi0 = _mm512_max_epi32(r->hi0, v), r->lo0 = _mm512_max_epu32(r->lo0, v);
}

/* (scale, zero point) of the accumulated range, as sk_quantize_u8_params
 * gets them from min(x, 0) and max(x, 0). */
static inline void range_params(const range_acc *r, float *scale, int32_t *zero_point) {
  const int32_t hb = _mm512_reduce_max_epi32(_mm512_max_epi32(r->hi0, r->hi1));
  const uint32_t lb = _mm512_reduce_max_epu32(_mm512_max_epu32(r->lo0, r->lo1));
  sk_quantize_u8_params_bits(hb, lb, scale, zero_point);
}

static inline void range_row(range_acc *r, const float *x, int64_t k) {
  range_init(r);
  int64_t i = 0;
  for (; i + 64 <= k; i += 64) range_add64(r, x + i);
  for (; i < k; i += 16) range_add16(r, x + i, tail(k - i));
}

/* |u - rint(u)| as bits: their unsigned order is the float order, and NaN
 * lies above every offset, so one unsigned max keeps the worst lane */
static inline __m512i off_bits(__m512 u) {
  return _mm512_and_si512(_mm512_castps_si512(_mm512_reduce_ps(u, NEAREST)),
                          _mm512_set1_epi32(0x7fffffff));
}

int sk_quantize_rows_u8__avx512(const float *x, int64_t ldx, int64_t rows, int64_t k,
                                uint8_t *q, int64_t ldq, float *scale, int32_t *zero_point) {
  if (rows <= 0) return SK_OK;
  /* dynamic rows: |x / scale| <= 255 (+ rounding), so 2^-14 is enough */
  const __m512i sure_bits = _mm512_castps_si512(_mm512_set1_ps(0.5f - 0x1p-14f));
  range_acc cur, next;
  range_row(&cur, x, k);
  int bad_rows = 0;
  for (int64_t row = 0; row < rows; ++row) {
    const float *xr = x + row * ldx;
    /* the row whose range is found meanwhile (the last row: itself again) */
    const float *xn = row + 1 < rows ? xr + ldx : xr;
    uint8_t *qr = q + row * ldq;
    range_params(&cur, scale + row, zero_point + row);
    const __m512 s = _mm512_set1_ps(scale[row]), z = _mm512_set1_ps((float)zero_point[row]);
    const __m512 r = _mm512_set1_ps(1.0f / scale[row]);
    __mmask16 bad = 0;
    range_init(&next);
    int64_t i = 0;
    for (; i + 64 <= k; i += 64) {
      range_add64(&next, xn + i);
      const __m512 u0 = _mm512_fmadd_ps(_mm512_loadu_ps(xr + i), r, z);
      const __m512 u1 = _mm512_fmadd_ps(_mm512_loadu_ps(xr + i + 16), r, z);
      const __m512 u2 = _mm512_fmadd_ps(_mm512_loadu_ps(xr + i + 32), r, z);
      const __m512 u3 = _mm512_fmadd_ps(_mm512_loadu_ps(xr + i + 48), r, z);
      const __m512i off = _mm512_max_epu32(_mm512_max_epu32(off_bits(u0), off_bits(u1)),
                                           _mm512_max_epu32(off_bits(u2), off_bits(u3)));
      if (__builtin_expect(_mm512_cmplt_epu32_mask(off, sure_bits) == 0xffff, 1))
        store64(qr + i, _mm512_cvt_roundps_epi32(u0, NEAREST),
                _mm512_cvt_roundps_epi32(u1, NEAREST), _mm512_cvt_roundps_epi32(u2, NEAREST),
                _mm512_cvt_roundps_epi32(u3, NEAREST));
      else
        exact64(xr + i, s, z, qr + i, &bad);
    }
    for (; i < k; i += 16) {
      const __mmask16 m = tail(k - i);
      range_add16(&next, xn + i, m);
      const __m512 u = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, xr + i), r, z);
      const int sure = _mm512_cmplt_epu32_mask(off_bits(u), sure_bits) == 0xffff;
      _mm_mask_storeu_epi8(qr + i, m, sure ? narrow16(_mm512_cvt_roundps_epi32(u, NEAREST))
                                           : exact16(xr + i, m, s, z, &bad));
    }
    cur = next;
    bad_rows |= bad != 0;
  }
  return bad_rows ? SK_ERR_NONFINITE : SK_OK;
}
