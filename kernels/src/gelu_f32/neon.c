/*
 * gelu_f32/neon.c - exact (erf) GELU in place, 4 floats per step: avx2.c's
 * math in avx2.c's operation order, one intrinsic for one intrinsic (see
 * avx512.c for the method). Every step is an IEEE operation with the same
 * rounding on both ISAs: vdivq_f32 is a correctly rounded division (as
 * _mm256_div_ps), vfmaq_f32 / vfmsq_f32 round once (as the explicit
 * _mm256_fmadd_ps / _mm256_fnmadd_ps), vrndnq_f32 rounds half to even, and
 * Linux leaves denormals on for both. So the results are bit-identical to
 * avx2.c (checked on the 60001-point sweep of test_gelu_f32.c plus its special
 * values), within 5e-7 relative of the double reference like the x86 kernels.
 * The min / max clamps use fminnm / fmaxnm, which like minps / maxps with the
 * constant second pick the constant for a NaN lane; a NaN x still comes out
 * NaN through the final multiply by x. Special values: x < -20 (and -inf) ->
 * -0, +inf and huge x -> x, -0 -> -0.
 * The tail (n % 4 floats) goes through a 4-float stack copy, so no lane reads
 * or writes past y + n.
 */
#include <arm_neon.h>
#include <string.h>

#include "../internal.h"
#include "erfc_poly.h"

static inline float32x4_t pow2i(int32x4_t k) { /* 2^k, k in [-126, 127] */
  return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(k, vdupq_n_s32(127)), 23));
}

/* acc + a * b, one rounding (vfmaq_f32 takes the addend first) */
static inline float32x4_t fma4(float32x4_t a, float32x4_t b, float32x4_t acc) {
  return vfmaq_f32(acc, a, b);
}

static inline float32x4_t gelu4(float32x4_t x) {
  const float32x4_t ax = vminnmq_f32(vabsq_f32(x), vdupq_n_f32(22.0f));
  const float32x4_t z = vmulq_f32(ax, vdupq_n_f32(0.70710678118654752f));
  const float32x4_t t =
      vdivq_f32(vdupq_n_f32(1.0f), fma4(z, vdupq_n_f32(0.5f), vdupq_n_f32(1.0f)));
  float32x4_t q = SK_ERFC_POLY(fma4, vdupq_n_f32, t);
  q = fma4(q, t, vdupq_n_f32(SK_ERFC_P0));
  const float32x4_t xx = vmulq_f32(ax, ax);
  const float32x4_t zz = vmulq_f32(xx, vdupq_n_f32(0.5f));
  /* fl(ax * ax - xx): the exact rounding error of xx */
  const float32x4_t err = vmulq_f32(vfmaq_f32(vnegq_f32(xx), ax, ax), vdupq_n_f32(0.5f));
  const float32x4_t a = vmaxnmq_f32(vsubq_f32(vdupq_n_f32(0.0f), zz), vdupq_n_f32(-104.0f));
  const float32x4_t b = vsubq_f32(q, err);
  /* exp(a + b) = p * 2^n */
  const float32x4_t n =
      vrndnq_f32(vmulq_f32(vaddq_f32(a, b), vdupq_n_f32(SK_LOG2E)));
  float32x4_t r = vfmsq_f32(a, n, vdupq_n_f32(SK_LN2_HI));
  r = vfmsq_f32(r, n, vdupq_n_f32(SK_LN2_LO));
  r = vaddq_f32(r, b);
  float32x4_t p = vdupq_n_f32(1.0f / 5040.0f);
  p = fma4(p, r, vdupq_n_f32(1.0f / 720.0f));
  p = fma4(p, r, vdupq_n_f32(1.0f / 120.0f));
  p = fma4(p, r, vdupq_n_f32(1.0f / 24.0f));
  p = fma4(p, r, vdupq_n_f32(1.0f / 6.0f));
  p = fma4(p, r, vdupq_n_f32(0.5f));
  p = fma4(p, r, vdupq_n_f32(1.0f));
  p = fma4(p, r, vdupq_n_f32(1.0f));
  const int32x4_t ni = vcvtnq_s32_f32(n); /* n is a whole number: exact */
  const int32x4_t n1 = vshrq_n_s32(ni, 1);
  const float32x4_t s1 = pow2i(n1), s2 = pow2i(vsubq_s32(ni, n1));
  const float32x4_t th = vmulq_f32(vmulq_f32(t, vdupq_n_f32(0.5f)), p);
  const float32x4_t half_erfc = vmulq_f32(vmulq_f32(th, s1), s2);
  const float32x4_t pos = vmulq_f32(x, vsubq_f32(vdupq_n_f32(1.0f), half_erfc));
  const float32x4_t neg = vmulq_f32(vmulq_f32(vmulq_f32(x, th), s1), s2);
  const float32x4_t y = vbslq_f32(vcltq_f32(x, vdupq_n_f32(0.0f)), neg, pos);
  return vbslq_f32(vcltq_f32(x, vdupq_n_f32(-20.0f)), vdupq_n_f32(-0.0f), y);
}

void sk_gelu_f32__neon(float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, gelu4(vld1q_f32(y + i)));
  if (i < n) {
    float tail[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    memcpy(tail, y + i, (size_t)(n - i) * sizeof *tail);
    vst1q_f32(tail, gelu4(vld1q_f32(tail)));
    memcpy(y + i, tail, (size_t)(n - i) * sizeof *tail);
  }
}
