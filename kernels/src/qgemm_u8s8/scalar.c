/*
 * qgemm_u8s8/scalar.c - portable reference micro-kernel (4 rows x 16
 * columns, one packed panel) and the scalar epilogue. Exact: products and
 * sums stay within int32 for K <= SK_QGEMM_MAX_K; the zero-point correction
 * is done in int64 so no signed overflow can occur on the way.
 */
#include <math.h>

#include "../internal.h"

#define MR 4

static void store(const sk_qgemm_u8s8_args *p, int64_t i, int64_t n, int32_t acc) {
  const int64_t zp = p->a_zp[i * p->zp_stride];
  const int32_t c = (int32_t)((int64_t)acc - zp * sk_qsum24(p->sum24, n));
  if (p->out == SK_QOUT_S32) {
    ((int32_t *)p->c)[i * p->ldc + n] = c;
    return;
  }
  float y = (float)c * (p->a_scale[i * p->as_stride] * p->w_scale[n * p->ws_stride]);
  if (p->bias) y = y + p->bias[n];
  if (p->act == SK_ACT_RELU) y = y > 0.0f ? y : 0.0f;
  if (p->out == SK_QOUT_F32) {
    ((float *)p->c)[i * p->ldc + n] = y;
    return;
  }
  float v = nearbyintf(y / p->out_scale) + p->out_zp;
  v = v >= 0.0f ? (v <= 255.0f ? v : 255.0f) : 0.0f;
  ((uint8_t *)p->c)[i * p->ldc + n] = (uint8_t)v;
}

void sk_qgemm_u8s8_4x16c4__scalar(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr,
                                  int64_t n0, int64_t nr) {
  for (int64_t j0 = 0; j0 < nr; j0 += 16) {
    const int8_t *b = p->b + ((n0 + j0) / 16) * p->k4 * 64;
    const int64_t cols = nr - j0 < 16 ? nr - j0 : 16;
    for (int64_t i = 0; i < mr; ++i) {
      const uint8_t *a = p->a + (m0 + i) * p->lda;
      int32_t acc[16] = {0};
      for (int64_t g = 0; g < p->k4; ++g) {
        const int valid = g < p->kfull ? 4 : p->ktail;
        for (int r = 0; r < valid; ++r) {
          const int32_t av = a[4 * g + r];
          for (int64_t j = 0; j < 16; ++j) acc[j] += av * b[(g * 16 + j) * 4 + r];
        }
      }
      for (int64_t j = 0; j < cols; ++j) store(p, m0 + i, n0 + j0 + j, acc[j]);
    }
  }
}
