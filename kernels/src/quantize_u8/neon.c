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
 */
#include <arm_neon.h>
#include <float.h>

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
