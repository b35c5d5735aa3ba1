/*
 * spmm_f32/scalar.c - portable reference micro-kernels (MR = 8).
 * Also the fallback on CPUs without SIMD paths; written so the compiler can
 * keep the 8 accumulators in registers.
 */
#include "../internal.h"

#define MR 8

static inline float apply(float v, const sk_spmm_f32_tile *t, int64_t n) {
  if (t->bias) v += t->bias[n];
  if (t->act == SK_ACT_RELU && !(v > 0.0f)) v = v != v ? v : 0.0f; /* keep NaN */
  return v;
}

/* A full tile (mr == MR, constant trip counts the compiler vectorises) or the
 * partial last one (packed with row stride mr). */
#define DEFINE_SPMM(NAME, IDX_T)                                               \
  static void NAME(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {        \
    const IDX_T *idx = (const IDX_T *)t->indices;                              \
    const int64_t mr = t->mr;                                                  \
    for (int64_t n = n0; n < n1; ++n) {                                        \
      float acc[MR] = {0};                                                     \
      if (mr == MR) {                                                          \
        for (int64_t p = t->indptr[n]; p < t->indptr[n + 1]; ++p) {            \
          const float v = t->values[p];                                        \
          const float *xk = t->xp + (int64_t)idx[p] * MR;                      \
          for (int i = 0; i < MR; ++i) acc[i] += v * xk[i];                    \
        }                                                                      \
      } else {                                                                 \
        for (int64_t p = t->indptr[n]; p < t->indptr[n + 1]; ++p) {            \
          const float v = t->values[p];                                        \
          const float *xk = t->xp + (int64_t)idx[p] * mr;                      \
          for (int64_t i = 0; i < mr; ++i) acc[i] += v * xk[i];                \
        }                                                                      \
      }                                                                        \
      for (int64_t i = 0; i < mr; ++i) t->y[i * t->ldy + n] = apply(acc[i], t, n); \
    }                                                                          \
  }

#define DEFINE_SPMV(NAME, IDX_T)                                               \
  static void NAME(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {        \
    const IDX_T *idx = (const IDX_T *)t->indices;                              \
    for (int64_t n = n0; n < n1; ++n) {                                        \
      float acc = 0.0f;                                                        \
      for (int64_t p = t->indptr[n]; p < t->indptr[n + 1]; ++p)                \
        acc += t->values[p] * t->xp[idx[p]];                                   \
      t->y[n] = apply(acc, t, n);                                              \
    }                                                                          \
  }

DEFINE_SPMM(spmm_u16, uint16_t)
DEFINE_SPMM(spmm_i32, int32_t)
DEFINE_SPMV(spmv_u16, uint16_t)
DEFINE_SPMV(spmv_i32, int32_t)

void sk_spmm_f32_8x1__scalar(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmm_u16(t, n0, n1); else spmm_i32(t, n0, n1);
}

void sk_spmv_f32__scalar(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmv_u16(t, n0, n1); else spmv_i32(t, n0, n1);
}
