/*
 * quantize_u8/neon.c - AArch64 row quantizer, 16 floats at a time;
 * bit-identical to scalar.c: vdivq_f32 is an IEEE division, vrndnq_f32 rounds
 * half to even, and the clamp is done in float before the conversion with
 * fmaxnm/fminnm (a NaN lane becomes 0, as in scalar.c). The tail (< 16
 * floats) runs scalar.c's loop, so no lane ever reads past the row.
 *
 * The division is slow, so as in avx512.c (see its top comment for the error
 * bound) a block of 16 first takes u = fma(x, fl(1 / scale), zp) and keeps
 * rint(u) when every lane's u is further than 2^-12 (static scales) or 2^-14
 * (dynamic rows) from a half-integer; otherwise the block is divided. A NaN
 * or infinite u fails that test (|u - rint(u)| is NaN), so non-finite input
 * always reaches the division.
 *
 * sk_quantize_rows_u8__neon quantizes a block of rows in one sweep, as the
 * AVX-512 one does: row i + 1's range (integer max over the bit patterns)
 * is found while row i is quantized; fast blocks convert with vcvtnq (round
 * half to even) and narrow with saturation, the tail runs scalar.c's loop.
 */
#include <arm_neon.h>
#include <float.h>
#include <string.h>

#include "../internal.h"

/* all-ones in lanes where |v| <= FLT_MAX (finite, not NaN) */
static inline uint32x4_t finite_mask(float32x4_t v) {
  return vcleq_f32(vabsq_f32(v), vdupq_n_f32(FLT_MAX));
}

static inline uint32x4_t quant4(float32x4_t v, float32x4_t s, float32x4_t z) {
  float32x4_t r = vaddq_f32(vrndnq_f32(vdivq_f32(v, s)), z);
  r = vmaxnmq_f32(r, vdupq_n_f32(0.0f)); /* NaN -> 0 */
  r = vminnmq_f32(r, vdupq_n_f32(255.0f));
  return vcvtq_u32_f32(r); /* whole numbers in [0, 255]: exact */
}

/* rint(fma(x, r, zp)) clamped to [0, 255]; `sure` loses the lanes whose u
 * is too close to a half-integer (or not finite) for the shortcut */
static inline uint32x4_t fast4(float32x4_t v, float32x4_t r, float32x4_t z,
                               float32x4_t sure_off, uint32x4_t *sure) {
  const float32x4_t u = vfmaq_f32(z, v, r), n = vrndnq_f32(u);
  *sure = vandq_u32(*sure, vcltq_f32(vabdq_f32(u, n), sure_off));
  return vcvtq_u32_f32(vminnmq_f32(vmaxnmq_f32(n, vdupq_n_f32(0.0f)), vdupq_n_f32(255.0f)));
}

static inline uint8x16_t narrow16(uint32x4_t a0, uint32x4_t a1, uint32x4_t a2, uint32x4_t a3) {
  const uint16x8_t lo = vcombine_u16(vmovn_u32(a0), vmovn_u32(a1));
  const uint16x8_t hi = vcombine_u16(vmovn_u32(a2), vmovn_u32(a3));
  return vcombine_u8(vmovn_u16(lo), vmovn_u16(hi));
}

static int row_static(const float *x, int64_t k, float scale, int32_t zero_point, uint8_t *q,
                      float sure_off_value) {
  const float32x4_t s = vdupq_n_f32(scale), z = vdupq_n_f32((float)zero_point);
  const float32x4_t r = vdupq_n_f32(1.0f / scale), sure_off = vdupq_n_f32(sure_off_value);
  uint32x4_t ok = vdupq_n_u32(0xffffffffu);
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    const float32x4_t v0 = vld1q_f32(x + i), v1 = vld1q_f32(x + i + 4);
    const float32x4_t v2 = vld1q_f32(x + i + 8), v3 = vld1q_f32(x + i + 12);
    ok = vandq_u32(ok, vandq_u32(vandq_u32(finite_mask(v0), finite_mask(v1)),
                                 vandq_u32(finite_mask(v2), finite_mask(v3))));
    uint32x4_t sure = vdupq_n_u32(0xffffffffu);
    const uint32x4_t a0 = fast4(v0, r, z, sure_off, &sure), a1 = fast4(v1, r, z, sure_off, &sure);
    const uint32x4_t a2 = fast4(v2, r, z, sure_off, &sure), a3 = fast4(v3, r, z, sure_off, &sure);
    if (__builtin_expect(vminvq_u32(sure) == 0xffffffffu, 1))
      vst1q_u8(q + i, narrow16(a0, a1, a2, a3));
    else
      vst1q_u8(q + i, narrow16(quant4(v0, s, z), quant4(v1, s, z), quant4(v2, s, z),
                               quant4(v3, s, z)));
  }
  const int rc = i < k ? sk_quantize_row_u8_static__scalar(x + i, k - i, scale, zero_point,
                                                           q + i)
                       : SK_OK;
  return vminvq_u32(ok) == 0xffffffffu ? rc : SK_ERR_NONFINITE;
}

int sk_quantize_row_u8_static__neon(const float *x, int64_t k, float scale,
                                    int32_t zero_point, uint8_t *q) {
  return row_static(x, k, scale, zero_point, q, 0.5f - 0x1p-12f);
}

int sk_quantize_row_u8__neon(const float *x, int64_t k, uint8_t *q, float *scale,
                             int32_t *zero_point) {
  /* fminnm/fmaxnm skip NaN like scalar.c's comparisons; NaN is reported anyway */
  float32x4_t mn = vdupq_n_f32(0.0f), mx = mn;
  uint32x4_t ok = vdupq_n_u32(0xffffffffu);
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const float32x4_t v0 = vld1q_f32(x + i), v1 = vld1q_f32(x + i + 4);
    ok = vandq_u32(ok, vandq_u32(finite_mask(v0), finite_mask(v1)));
    mn = vminnmq_f32(mn, vminnmq_f32(v0, v1));
    mx = vmaxnmq_f32(mx, vmaxnmq_f32(v0, v1));
  }
  float lo = vminnmvq_f32(mn), hi = vmaxnmvq_f32(mx);
  int bad = vminvq_u32(ok) != 0xffffffffu;
  for (; i < k; ++i) {
    const float v = x[i];
    bad |= !(v <= FLT_MAX && v >= -FLT_MAX);
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  sk_quantize_u8_params(lo, hi, scale, zero_point);
  /* |x / scale| <= 255 (+ rounding) here, so 2^-14 is enough */
  const int rc = row_static(x, k, *scale, *zero_point, q, 0.5f - 0x1p-14f);
  return bad ? SK_ERR_NONFINITE : rc;
}

/* ---- a block of rows in one sweep (as sk_quantize_rows_u8__avx512) -------- */

/* Range accumulators over bit patterns: hi = signed max (max(x, +0) for
 * finite x), lo = unsigned max (the most negative x, if any x has its sign
 * bit set). A NaN or infinity only changes the row's scale: its lanes still
 * fail the quantizer's test (u is NaN or infinite), so the division path
 * (or the scalar tail) reports it. */
typedef struct {
  int32x4_t hi;
  uint32x4_t lo;
  int32_t hi_tail;
  uint32_t lo_tail;
} range_acc;

static inline void range_init(range_acc *r) {
  r->hi = vdupq_n_s32(0);
  r->lo = vdupq_n_u32(0);
  r->hi_tail = 0;
  r->lo_tail = 0;
}

static inline void range_add16(range_acc *r, const float *x) {
  const uint32x4_t v0 = vld1q_u32((const uint32_t *)x), v1 = vld1q_u32((const uint32_t *)x + 4);
  const uint32x4_t v2 = vld1q_u32((const uint32_t *)x + 8);
  const uint32x4_t v3 = vld1q_u32((const uint32_t *)x + 12);
  const int32x4_t h = vmaxq_s32(vmaxq_s32(vreinterpretq_s32_u32(v0), vreinterpretq_s32_u32(v1)),
                                vmaxq_s32(vreinterpretq_s32_u32(v2), vreinterpretq_s32_u32(v3)));
  r->hi = vmaxq_s32(r->hi, h);
  r->lo = vmaxq_u32(r->lo, vmaxq_u32(vmaxq_u32(v0, v1), vmaxq_u32(v2, v3)));
}

static inline void range_add_tail(range_acc *r, const float *x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    uint32_t b;
    memcpy(&b, x + j, sizeof b);
    const int32_t sb = (int32_t)b;
    r->hi_tail = sb > r->hi_tail ? sb : r->hi_tail;
    r->lo_tail = b > r->lo_tail ? b : r->lo_tail;
  }
}

/* (scale, zero point) of the accumulated range, as sk_quantize_u8_params
 * gets them from min(x, 0) and max(x, 0). */
static inline void range_params(const range_acc *r, float *scale, int32_t *zero_point) {
  int32_t hb = vmaxvq_s32(r->hi);
  uint32_t lb = vmaxvq_u32(r->lo);
  hb = r->hi_tail > hb ? r->hi_tail : hb;
  lb = r->lo_tail > lb ? r->lo_tail : lb;
  sk_quantize_u8_params_bits(hb, lb, scale, zero_point);
}

static inline void range_row(range_acc *r, const float *x, int64_t k) {
  range_init(r);
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) range_add16(r, x + i);
  range_add_tail(r, x + i, k - i);
}

/* u = fma(x, r, zp) rounded half to even (rint) as int32; the worst lane's
 * |u - rint(u)| kept in *off (NaN when u is NaN or infinite: fmaxq keeps it) */
static inline int32x4_t round4(float32x4_t u, float32x4_t *off) {
  *off = vmaxq_f32(*off, vabdq_f32(u, vrndnq_f32(u)));
  return vcvtnq_s32_f32(u);
}

/* int32 -> u8 saturating at 0 and 255 */
static inline uint8x16_t narrow16_sat(int32x4_t a0, int32x4_t a1, int32x4_t a2, int32x4_t a3) {
  const uint16x8_t lo = vcombine_u16(vqmovun_s32(a0), vqmovun_s32(a1));
  const uint16x8_t hi = vcombine_u16(vqmovun_s32(a2), vqmovun_s32(a3));
  return vcombine_u8(vqmovn_u16(lo), vqmovn_u16(hi));
}

int sk_quantize_rows_u8__neon(const float *x, int64_t ldx, int64_t rows, int64_t k,
                              uint8_t *q, int64_t ldq, float *scale, int32_t *zero_point) {
  if (rows <= 0) return SK_OK;
  /* dynamic rows: |x / scale| <= 255 (+ rounding), so 2^-14 is enough */
  const float32x4_t sure_off = vdupq_n_f32(0.5f - 0x1p-14f);
  range_acc cur, next;
  range_row(&cur, x, k);
  uint32x4_t ok = vdupq_n_u32(0xffffffffu);
  int bad = 0;
  for (int64_t row = 0; row < rows; ++row) {
    const float *xr = x + row * ldx;
    /* the row whose range is found meanwhile (the last row: itself again) */
    const float *xn = row + 1 < rows ? xr + ldx : xr;
    uint8_t *qr = q + row * ldq;
    range_params(&cur, scale + row, zero_point + row);
    const float32x4_t s = vdupq_n_f32(scale[row]), z = vdupq_n_f32((float)zero_point[row]);
    const float32x4_t r = vdupq_n_f32(1.0f / scale[row]);
    range_init(&next);
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
      range_add16(&next, xn + i);
      float32x4_t off = vdupq_n_f32(0.0f);
      const int32x4_t a0 = round4(vfmaq_f32(z, vld1q_f32(xr + i), r), &off);
      const int32x4_t a1 = round4(vfmaq_f32(z, vld1q_f32(xr + i + 4), r), &off);
      const int32x4_t a2 = round4(vfmaq_f32(z, vld1q_f32(xr + i + 8), r), &off);
      const int32x4_t a3 = round4(vfmaq_f32(z, vld1q_f32(xr + i + 12), r), &off);
      if (__builtin_expect(vminvq_u32(vcltq_f32(off, sure_off)) == 0xffffffffu, 1)) {
        vst1q_u8(qr + i, narrow16_sat(a0, a1, a2, a3));
      } else {
        const float32x4_t v0 = vld1q_f32(xr + i), v1 = vld1q_f32(xr + i + 4);
        const float32x4_t v2 = vld1q_f32(xr + i + 8), v3 = vld1q_f32(xr + i + 12);
        ok = vandq_u32(ok, vandq_u32(vandq_u32(finite_mask(v0), finite_mask(v1)),
                                     vandq_u32(finite_mask(v2), finite_mask(v3))));
        vst1q_u8(qr + i, narrow16(quant4(v0, s, z), quant4(v1, s, z), quant4(v2, s, z),
                                  quant4(v3, s, z)));
      }
    }
    range_add_tail(&next, xn + i, k - i);
    if (i < k)
      bad |= sk_quantize_row_u8_static__scalar(xr + i, k - i, scale[row], zero_point[row],
                                               qr + i) != SK_OK;
    cur = next;
  }
  return bad || vminvq_u32(ok) != 0xffffffffu ? SK_ERR_NONFINITE : SK_OK;
}
