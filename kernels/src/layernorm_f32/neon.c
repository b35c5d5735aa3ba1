/*
 * layernorm_f32/neon.c - residual add + LayerNorm over rows, the semantics of
 * impl.h (three passes: z = y + r kept in y with its sum, the centred sum of
 * squares, the write) with AArch64 intrinsics. impl.h's generic 4-lane build
 * (scalar.c on AArch64) keeps its vector accumulator in memory (sk_ln_hsum
 * takes its bytes), so each step of the two reductions is a stack store and
 * reload; here the partial sums stay in registers.
 *
 * Reduction order: 16 floats per step in four accumulators, the row's last
 * n % 16 floats one at a time, partial sums folded as avx512.c's sk_ln_hsum
 * does (lanes 0-7 += 8-15, 0-3 += 4-7, then 0 + 2, 1 + 3, 0 + 1), every
 * a * b + c one FMA as impl.h's contraction gives on FMA ISAs. Checked once
 * against the x86 builds (qemu, 51720 outputs, n = 1..1000): bit-identical to
 * the AVX-512 build on every row of a multiple of 16 floats; rows with a tail
 * differ in the last bits in a few rows (130 values, at most 2.4e-7), where
 * GCC's x86 code for impl.h's scalar tail rounds differently. The 4-lane and
 * 8-lane builds (scalar, avx2) differ by float summation order, up to 1.7e-6
 * here; the C test's 1e-5 tolerance covers every ISA.
 */
#include <arm_neon.h>
#include <math.h>

#include "../internal.h"

/* avx512.c's sk_ln_hsum of the 16 lanes a0 | a1 | a2 | a3 */
static inline float hsum16(float32x4_t a0, float32x4_t a1, float32x4_t a2, float32x4_t a3) {
  const float32x4_t u = vaddq_f32(vaddq_f32(a0, a2), vaddq_f32(a1, a3));
  const float32x4_t w = vaddq_f32(u, vextq_f32(u, u, 2)); /* lanes 0, 1: u0 + u2, u1 + u3 */
  return vgetq_lane_f32(w, 0) + vgetq_lane_f32(w, 1);
}

static void ln_row(float *y, const float *r, int64_t n, const float *gamma, const float *beta,
                   float eps) {
  const int64_t nv = n / 16 * 16;
  float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
  for (int64_t c = 0; c < nv; c += 16) {
    float32x4_t z0 = vld1q_f32(y + c), z1 = vld1q_f32(y + c + 4);
    float32x4_t z2 = vld1q_f32(y + c + 8), z3 = vld1q_f32(y + c + 12);
    if (r != NULL) {
      z0 = vaddq_f32(z0, vld1q_f32(r + c));
      z1 = vaddq_f32(z1, vld1q_f32(r + c + 4));
      z2 = vaddq_f32(z2, vld1q_f32(r + c + 8));
      z3 = vaddq_f32(z3, vld1q_f32(r + c + 12));
      vst1q_f32(y + c, z0), vst1q_f32(y + c + 4, z1);
      vst1q_f32(y + c + 8, z2), vst1q_f32(y + c + 12, z3);
    }
    s0 = vaddq_f32(s0, z0), s1 = vaddq_f32(s1, z1);
    s2 = vaddq_f32(s2, z2), s3 = vaddq_f32(s3, z3);
  }
  float s = 0.0f;
  for (int64_t c = nv; c < n; ++c) {
    if (r != NULL) y[c] += r[c];
    s += y[c];
  }
  const float mean = (hsum16(s0, s1, s2, s3) + s) / (float)n;
  const float32x4_t vm = vdupq_n_f32(mean);
  float32x4_t q0 = vdupq_n_f32(0.0f), q1 = q0, q2 = q0, q3 = q0;
  for (int64_t c = 0; c < nv; c += 16) {
    const float32x4_t d0 = vsubq_f32(vld1q_f32(y + c), vm);
    const float32x4_t d1 = vsubq_f32(vld1q_f32(y + c + 4), vm);
    const float32x4_t d2 = vsubq_f32(vld1q_f32(y + c + 8), vm);
    const float32x4_t d3 = vsubq_f32(vld1q_f32(y + c + 12), vm);
    q0 = vfmaq_f32(q0, d0, d0), q1 = vfmaq_f32(q1, d1, d1);
    q2 = vfmaq_f32(q2, d2, d2), q3 = vfmaq_f32(q3, d3, d3);
  }
  float q = 0.0f;
  for (int64_t c = nv; c < n; ++c) q = fmaf(y[c] - mean, y[c] - mean, q);
  const float inv = 1.0f / sqrtf((hsum16(q0, q1, q2, q3) + q) / (float)n + eps);
  const float32x4_t vi = vdupq_n_f32(inv);
  for (int64_t c = 0; c < nv; c += 4) { /* ((y - mean) * inv) * gamma + beta, one FMA */
    const float32x4_t g = gamma != NULL ? vld1q_f32(gamma + c) : vdupq_n_f32(1.0f);
    const float32x4_t b = beta != NULL ? vld1q_f32(beta + c) : vdupq_n_f32(0.0f);
    vst1q_f32(y + c, vfmaq_f32(b, vmulq_f32(vsubq_f32(vld1q_f32(y + c), vm), vi), g));
  }
  for (int64_t c = nv; c < n; ++c)
    y[c] = fmaf((y[c] - mean) * inv, gamma ? gamma[c] : 1.0f, beta ? beta[c] : 0.0f);
}

void sk_add_layernorm_f32__neon(int64_t m, int64_t n, float *y, int64_t ldy, const float *r,
                                int64_t ldr, const float *gamma, const float *beta, float eps) {
  const int threads = sk_threads_for_work((double)m * (double)n * 4.0);
  const int64_t t0 = sk_region_begin(threads);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    sk_worker_check_in(t0);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < m; ++i)
      ln_row(y + i * ldy, r == NULL ? NULL : r + i * ldr, n, gamma, beta, eps);
  }
}
