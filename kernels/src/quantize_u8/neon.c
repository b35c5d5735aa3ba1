/*
 * quantize_u8/neon.c - AArch64 row quantizer, 16 floats at a time;
 * bit-identical to scalar.c: vdivq_f32 is an IEEE division, vrndnq_f32 rounds
 * half to even, and the clamp is done in float before the conversion with
 * fmaxnm/fminnm (a NaN lane becomes 0, as in scalar.c). The tail (< 16
 * floats) runs scalar.c's loop, so no lane ever reads past the row.
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

int sk_quantize_row_u8_static__neon(const float *x, int64_t k, float scale,
                                    int32_t zero_point, uint8_t *q) {
  const float32x4_t s = vdupq_n_f32(scale), z = vdupq_n_f32((float)zero_point);
  uint32x4_t ok = vdupq_n_u32(0xffffffffu);
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    const float32x4_t v0 = vld1q_f32(x + i), v1 = vld1q_f32(x + i + 4);
    const float32x4_t v2 = vld1q_f32(x + i + 8), v3 = vld1q_f32(x + i + 12);
    ok = vandq_u32(ok, vandq_u32(vandq_u32(finite_mask(v0), finite_mask(v1)),
                                 vandq_u32(finite_mask(v2), finite_mask(v3))));
    const uint16x8_t lo = vcombine_u16(vmovn_u32(quant4(v0, s, z)), vmovn_u32(quant4(v1, s, z)));
    const uint16x8_t hi = vcombine_u16(vmovn_u32(quant4(v2, s, z)), vmovn_u32(quant4(v3, s, z)));
    vst1q_u8(q + i, vcombine_u8(vmovn_u16(lo), vmovn_u16(hi)));
  }
  const int rc = i < k ? sk_quantize_row_u8_static__scalar(x + i, k - i, scale, zero_point,
                                                           q + i)
                       : SK_OK;
  return vminvq_u32(ok) == 0xffffffffu ? rc : SK_ERR_NONFINITE;
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
  const int rc = sk_quantize_row_u8_static__neon(x, k, *scale, *zero_point, q);
  return bad ? SK_ERR_NONFINITE : rc;
}
