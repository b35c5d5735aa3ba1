/*
 * layernorm_f32/impl.h - residual add + LayerNorm over rows, written once in
 * plain C with vector extensions and compiled per ISA (scalar.c, avx2.c,
 * avx512.c define SK_LAYERNORM_NAME and include this file):
 *   y[i, :] = (z - mean(z)) / sqrt(var(z) + eps) * gamma + beta,
 *   z = y[i, :] + r[i, :]  (r may be NULL)
 * in place on y, one pass to form z (kept in y) and its sum, one for the
 * centred sum of squares (two-pass variance: no cancellation), one to write.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../internal.h"

#if defined(__clang__)
#pragma clang fp contract(fast)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=fast")
#endif

#if defined(__AVX512F__)
#define SK_LN_L 16
#elif defined(__AVX__)
#define SK_LN_L 8
#else
#define SK_LN_L 4
#endif
typedef float sk_ln_vf __attribute__((vector_size(4 * SK_LN_L)));

static inline __attribute__((always_inline)) sk_ln_vf sk_ln_load(const float *p) {
  sk_ln_vf v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline __attribute__((always_inline)) void sk_ln_store(float *p, sk_ln_vf v) {
  memcpy(p, &v, sizeof v);
}

static inline __attribute__((always_inline)) float sk_ln_hsum(sk_ln_vf v) {
  float t[SK_LN_L];
  memcpy(t, &v, sizeof t);
  for (int w = SK_LN_L / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) t[l] += t[l + w];
  return t[0];
}

static void sk_ln_row(float *y, const float *r, int64_t n, const float *gamma,
                      const float *beta, float eps) {
  const int64_t nv = n / SK_LN_L * SK_LN_L;
  const sk_ln_vf zero = {0};
  sk_ln_vf vs = zero;
  float s = 0.0f;
  for (int64_t c = 0; c < nv; c += SK_LN_L) {
    sk_ln_vf z = sk_ln_load(y + c);
    if (r != NULL) z += sk_ln_load(r + c);
    sk_ln_store(y + c, z);
    vs += z;
  }
  for (int64_t c = nv; c < n; ++c) {
    if (r != NULL) y[c] += r[c];
    s += y[c];
  }
  const float mean = (sk_ln_hsum(vs) + s) / (float)n;
  sk_ln_vf vq = zero;
  float q = 0.0f;
  for (int64_t c = 0; c < nv; c += SK_LN_L) {
    const sk_ln_vf d = sk_ln_load(y + c) - mean;
    vq += d * d;
  }
  for (int64_t c = nv; c < n; ++c) q += (y[c] - mean) * (y[c] - mean);
  const float inv = 1.0f / sqrtf((sk_ln_hsum(vq) + q) / (float)n + eps);
  for (int64_t c = 0; c < nv; c += SK_LN_L) {
    sk_ln_vf g = zero + 1.0f, b = zero;
    if (gamma != NULL) g = sk_ln_load(gamma + c);
    if (beta != NULL) b = sk_ln_load(beta + c);
    sk_ln_store(y + c, (sk_ln_load(y + c) - mean) * inv * g + b);
  }
  for (int64_t c = nv; c < n; ++c)
    y[c] = (y[c] - mean) * inv * (gamma ? gamma[c] : 1.0f) + (beta ? beta[c] : 0.0f);
}

void SK_LAYERNORM_NAME(int64_t m, int64_t n, float *y, int64_t ldy, const float *r,
                       int64_t ldr, const float *gamma, const float *beta, float eps) {
  const int threads = sk_threads_for_work((double)m * (double)n * 4.0);
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
  for (int64_t i = 0; i < m; ++i)
    sk_ln_row(y + i * ldy, r == NULL ? NULL : r + i * ldr, n, gamma, beta, eps);
}
