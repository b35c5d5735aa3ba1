/*
 * spmm_f32/neon.c - AArch64 Advanced SIMD micro-kernels (edge devices).
 * spmm: MR = 16 activation rows (4 q-register accumulators), each nonzero
 * broadcast and fused-multiply-added with the packed 16-vector of its column.
 * spmv (M == 1): four independent accumulators over the row's nonzeros.
 */
#include <arm_neon.h>

#include "../internal.h"

#define MR 16

static inline float epilogue1(float v, const sk_spmm_f32_tile *t, int64_t n) {
  if (t->bias) v += t->bias[n];
  if (t->act == SK_ACT_RELU && v < 0.0f) v = 0.0f;
  return v;
}

static inline float32x4_t epilogue(float32x4_t v, const sk_spmm_f32_tile *t, int64_t n) {
  if (t->bias) v = vaddq_f32(v, vdupq_n_f32(t->bias[n]));
  if (t->act == SK_ACT_RELU) { /* max(v, 0) but NaN stays NaN */
    const uint32x4_t neg = vcltq_f32(v, vdupq_n_f32(0.0f));
    v = vbslq_f32(neg, vdupq_n_f32(0.0f), v);
  }
  return v;
}


/* The partial last tile is packed with row stride mr < MR: plain loops. */
#define DEFINE_SPMM_PARTIAL(NAME, IDX_T)                                         \
  static void NAME(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {          \
    const IDX_T *idx = (const IDX_T *)t->indices;                                \
    const int64_t mr = t->mr;                                                    \
    for (int64_t n = n0; n < n1; ++n) {                                          \
      float acc[MR] = {0};                                                       \
      for (int64_t p = t->indptr[n]; p < t->indptr[n + 1]; ++p) {                \
        const float v = t->values[p];                                            \
        const float *xk = t->xp + (int64_t)idx[p] * mr;                          \
        for (int64_t i = 0; i < mr; ++i) acc[i] += v * xk[i];                    \
      }                                                                          \
      for (int64_t i = 0; i < mr; ++i) t->y[i * t->ldy + n] = epilogue1(acc[i], t, n); \
    }                                                                            \
  }

#define DEFINE_SPMM(NAME, IDX_T)                                                 \
  static void NAME(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {          \
    const IDX_T *idx = (const IDX_T *)t->indices;                                \
    float buf[MR];                                                               \
    for (int64_t n = n0; n < n1; ++n) {                                          \
      float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;             \
      for (int64_t p = t->indptr[n]; p < t->indptr[n + 1]; ++p) {                \
        const float32x4_t v = vdupq_n_f32(t->values[p]);                         \
        const float *xk = t->xp + (int64_t)idx[p] * MR;                          \
        a0 = vfmaq_f32(a0, v, vld1q_f32(xk));                                    \
        a1 = vfmaq_f32(a1, v, vld1q_f32(xk + 4));                                \
        a2 = vfmaq_f32(a2, v, vld1q_f32(xk + 8));                                \
        a3 = vfmaq_f32(a3, v, vld1q_f32(xk + 12));                               \
      }                                                                          \
      vst1q_f32(buf, epilogue(a0, t, n));                                        \
      vst1q_f32(buf + 4, epilogue(a1, t, n));                                    \
      vst1q_f32(buf + 8, epilogue(a2, t, n));                                    \
      vst1q_f32(buf + 12, epilogue(a3, t, n));                                   \
      for (int64_t i = 0; i < t->mr; ++i) t->y[i * t->ldy + n] = buf[i];         \
    }                                                                            \
  }

#define DEFINE_SPMV(NAME, IDX_T)                                                 \
  static void NAME(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {          \
    const IDX_T *idx = (const IDX_T *)t->indices;                                \
    for (int64_t n = n0; n < n1; ++n) {                                          \
      float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;                          \
      const int64_t e = t->indptr[n + 1];                                        \
      int64_t p = t->indptr[n];                                                  \
      for (; p + 4 <= e; p += 4) {                                               \
        s0 += t->values[p] * t->xp[idx[p]];                                      \
        s1 += t->values[p + 1] * t->xp[idx[p + 1]];                              \
        s2 += t->values[p + 2] * t->xp[idx[p + 2]];                              \
        s3 += t->values[p + 3] * t->xp[idx[p + 3]];                              \
      }                                                                          \
      for (; p < e; ++p) s0 += t->values[p] * t->xp[idx[p]];                     \
      t->y[n] = epilogue1((s0 + s1) + (s2 + s3), t, n);                          \
    }                                                                            \
  }

DEFINE_SPMM(spmm_u16, uint16_t)
DEFINE_SPMM(spmm_i32, int32_t)
DEFINE_SPMM_PARTIAL(spmm_partial_u16, uint16_t)
DEFINE_SPMM_PARTIAL(spmm_partial_i32, int32_t)
DEFINE_SPMV(spmv_u16, uint16_t)
DEFINE_SPMV(spmv_i32, int32_t)

void sk_spmm_f32_16x1__neon(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {
  if (t->mr < MR) {
    if (t->index_bytes == 2) spmm_partial_u16(t, n0, n1); else spmm_partial_i32(t, n0, n1);
  } else if (t->index_bytes == 2) {
    spmm_u16(t, n0, n1);
  } else {
    spmm_i32(t, n0, n1);
  }
}

void sk_spmv_f32__neon(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmv_u16(t, n0, n1); else spmv_i32(t, n0, n1);
}
