/*
 * spmm_u8s8/scalar.c - portable reference micro-kernels (MR = 8).
 * Accumulates in uint32 so that wrap-around is defined behaviour; the result
 * read back as int32 is the exact sum whenever that sum fits in int32.
 */
#include <string.h>

#include "../internal.h"

#define MR 8

/* Store one output: int32 as is, or dequantized (+ bias, + relu) float. */
static inline void store(const sk_spmm_u8s8_tile *t, int64_t i, int64_t n, uint32_t acc) {
  const int32_t v = (int32_t)(acc - (uint32_t)t->zp[i] * (uint32_t)t->row_sums[n]);
  if (t->xscale == NULL) {
    ((int32_t *)t->y)[i * t->ldy + n] = v;
    return;
  }
  float f = (float)v * (t->xscale[i] * t->wscale[n]);
  if (t->bias) f += t->bias[n];
  if (t->act == SK_ACT_RELU && f < 0.0f) f = 0.0f;
  ((float *)t->y)[i * t->ldy + n] = f;
}

static inline uint32_t dot4(const uint8_t *x, const int8_t *w) {
  return (uint32_t)((int32_t)x[0] * w[0] + (int32_t)x[1] * w[1] + (int32_t)x[2] * w[2] +
                    (int32_t)x[3] * w[3]);
}

#define DEFINE_SPMM(NAME, IDX_T)                                               \
  static void NAME(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {       \
    const IDX_T *cols = (const IDX_T *)t->cols;                                \
    for (int64_t n = n0; n < n1; ++n) {                                        \
      uint32_t acc[MR] = {0};                                                  \
      for (int64_t p = t->indptr[n]; p < t->indptr[n + 1]; ++p) {              \
        const int8_t *w = t->values + 4 * p;                                   \
        const uint8_t *xc = t->xp + (int64_t)cols[p] * (MR * 4);               \
        for (int i = 0; i < MR; ++i) acc[i] += dot4(xc + 4 * i, w);            \
      }                                                                        \
      for (int64_t i = 0; i < t->mr; ++i) store(t, i, n, acc[i]);              \
    }                                                                          \
  }

#define DEFINE_SPMV(NAME, IDX_T)                                               \
  static void NAME(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {       \
    const IDX_T *cols = (const IDX_T *)t->cols;                                \
    for (int64_t n = n0; n < n1; ++n) {                                        \
      uint32_t acc = 0;                                                        \
      for (int64_t p = t->indptr[n]; p < t->indptr[n + 1]; ++p)                \
        acc += dot4(t->xp + 4 * (int64_t)cols[p], t->values + 4 * p);          \
      store(t, 0, n, acc);                                                     \
    }                                                                          \
  }

DEFINE_SPMM(spmm_u16, uint16_t)
DEFINE_SPMM(spmm_i32, int32_t)
DEFINE_SPMV(spmv_u16, uint16_t)
DEFINE_SPMV(spmv_i32, int32_t)

void sk_spmm_u8s8_8x1c4__scalar(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmm_u16(t, n0, n1); else spmm_i32(t, n0, n1);
}

void sk_spmv_u8s8_1x1c4__scalar(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmv_u16(t, n0, n1); else spmv_i32(t, n0, n1);
}

/* g4: groups of 4 nonzeros at any k; xp is the tile transposed, [K][MR]. */
void sk_spmm_u8s8_g4_8x4__scalar(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  const uint16_t *kidx = (const uint16_t *)t->cols;
  for (int64_t n = n0; n < n1; ++n) {
    uint32_t acc[MR] = {0};
    for (int64_t p = 4 * t->indptr[n]; p < 4 * t->indptr[n + 1]; ++p) {
      const uint8_t *xc = t->xp + (int64_t)kidx[p] * MR;
      const int32_t w = t->values[p];
      for (int i = 0; i < MR; ++i) acc[i] += (uint32_t)((int32_t)xc[i] * w);
    }
    for (int64_t i = 0; i < t->mr; ++i) store(t, i, n, acc[i]);
  }
}

void sk_spmv_u8s8_g4_1x4__scalar(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  const uint16_t *kidx = (const uint16_t *)t->cols;
  for (int64_t n = n0; n < n1; ++n) {
    uint32_t a0 = 0, a1 = 0; /* two chains */
    for (int64_t p = 4 * t->indptr[n]; p < 4 * t->indptr[n + 1]; p += 2) {
      a0 += (uint32_t)((int32_t)t->xp[kidx[p]] * t->values[p]);
      a1 += (uint32_t)((int32_t)t->xp[kidx[p + 1]] * t->values[p + 1]);
    }
    store(t, 0, n, a0 + a1);
  }
}
