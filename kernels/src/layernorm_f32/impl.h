/*
 * layernorm_f32/impl.h - residual add + LayerNorm over rows, written once in
 * plain C with vector extensions and compiled per ISA (scalar.c, avx2.c,
 * avx512.c define SK_LAYERNORM_NAME and SK_LAYERNORM_TO_NAME and include
 * this file):
 *   y[i, :] = (z - mean(z)) / sqrt(var(z) + eps) * gamma + beta,
 *   z = a[i, :] + r[i, :]  (r may be NULL; a is y itself in the in-place entry)
 * one pass to form z (kept in y) and its sum, one for the centred sum of
 * squares (two-pass variance: no cancellation), one to write. Rows are split
 * over threads (each row is one thread's, so the result does not depend on
 * the thread count); the out-of-place entry saves the caller a
 * single-threaded copy of a.
 */
#include "../internal.h"
#include "../vec_f32.h"

static inline __attribute__((always_inline)) float sk_ln_hsum(sk_vf v) {
  float t[SK_VF_L];
  memcpy(t, &v, sizeof t);
  for (int w = SK_VF_L / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) t[l] += t[l + w];
  return t[0];
}

static void sk_ln_row(float *y, const float *a, const float *r, int64_t n,
                      const float *gamma, const float *beta, float eps) {
  const int64_t nv = n / SK_VF_L * SK_VF_L;
  const sk_vf zero = {0};
  sk_vf vs = zero;
  float s = 0.0f;
  for (int64_t c = 0; c < nv; c += SK_VF_L) {
    sk_vf z = sk_vf_load(a + c);
    if (r != NULL) z += sk_vf_load(r + c);
    sk_vf_store(y + c, z);
    vs += z;
  }
  for (int64_t c = nv; c < n; ++c) {
    y[c] = r != NULL ? a[c] + r[c] : a[c];
    s += y[c];
  }
  const float mean = (sk_ln_hsum(vs) + s) / (float)n;
  sk_vf vq = zero;
  float q = 0.0f;
  for (int64_t c = 0; c < nv; c += SK_VF_L) {
    const sk_vf d = sk_vf_load(y + c) - mean;
    vq += d * d;
  }
  for (int64_t c = nv; c < n; ++c) q += (y[c] - mean) * (y[c] - mean);
  const float inv = 1.0f / sqrtf((sk_ln_hsum(vq) + q) / (float)n + eps);
  for (int64_t c = 0; c < nv; c += SK_VF_L) {
    sk_vf g = zero + 1.0f, b = zero;
    if (gamma != NULL) g = sk_vf_load(gamma + c);
    if (beta != NULL) b = sk_vf_load(beta + c);
    sk_vf_store(y + c, (sk_vf_load(y + c) - mean) * inv * g + b);
  }
  for (int64_t c = nv; c < n; ++c)
    y[c] = (y[c] - mean) * inv * (gamma ? gamma[c] : 1.0f) + (beta ? beta[c] : 0.0f);
}

static void sk_ln_rows(int64_t m, int64_t n, const float *a, int64_t lda, const float *r,
                       int64_t ldr, const float *gamma, const float *beta, float eps, float *y,
                       int64_t ldy) {
  int threads = sk_threads_for_work((double)m * (double)n * 4.0);
  if (threads > m) threads = (int)m;
  if (threads <= 1) { /* no OpenMP region: entering one costs more than a small call */
    for (int64_t i = 0; i < m; ++i)
      sk_ln_row(y + i * ldy, a + i * lda, r == NULL ? NULL : r + i * ldr, n, gamma, beta, eps);
    return;
  }
  const int64_t t0 = sk_region_begin(threads);
#pragma omp parallel num_threads(threads)
  {
    sk_worker_check_in(t0);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < m; ++i)
      sk_ln_row(y + i * ldy, a + i * lda, r == NULL ? NULL : r + i * ldr, n, gamma, beta, eps);
  }
}

void SK_LAYERNORM_NAME(int64_t m, int64_t n, float *y, int64_t ldy, const float *r,
                       int64_t ldr, const float *gamma, const float *beta, float eps) {
  sk_ln_rows(m, n, y, ldy, r, ldr, gamma, beta, eps, y, ldy);
}

void SK_LAYERNORM_TO_NAME(int64_t m, int64_t n, const float *a, int64_t lda, const float *r,
                          int64_t ldr, const float *gamma, const float *beta, float eps,
                          float *y, int64_t ldy) {
  sk_ln_rows(m, n, a, lda, r, ldr, gamma, beta, eps, y, ldy);
}
