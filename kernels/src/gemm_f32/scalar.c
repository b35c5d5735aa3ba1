/*
 * gemm_f32/scalar.c - the portable tile kernel (reference for the others):
 * each output a sum over k in order, in float, then bias, then relu.
 */
#include "../internal.h"

void sk_gemm_f32_tile__scalar(const float *xp, int64_t mr, const float *wp, int64_t k,
                              const float *bias, int64_t nn, int relu, float *y, int64_t ldy,
                              const float *next) {
  (void)next;
  for (int64_t i = 0; i < mr; ++i)
    for (int64_t j = 0; j < nn; ++j) {
      float acc = 0.0f;
      for (int64_t kk = 0; kk < k; ++kk) acc += xp[kk * mr + i] * wp[kk * 32 + j];
      if (bias) acc += bias[j];
      if (relu && !(acc > 0.0f)) acc = acc != acc ? acc : 0.0f;
      y[i * ldy + j] = acc;
    }
}
