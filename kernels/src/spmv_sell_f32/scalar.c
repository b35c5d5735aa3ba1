/*
 * spmv_sell_f32/scalar.c - portable reference kernel for the sliced ELL:
 * every filled slot adds value * x[window + offset] to its lane's row.
 */
#include "../internal.h"

static inline float apply(float v, const float *bias, sk_activation act, int64_t n) {
  if (bias) v += bias[n];
  if (act == SK_ACT_RELU && !(v > 0.0f)) v = v != v ? v : 0.0f; /* keep NaN */
  return v;
}

void sk_spmv_sell_f32__scalar(const sk_sell_f32 *w, int64_t s0, int64_t s1, int64_t m,
                              const float *x, int64_t ldx, const float *bias,
                              sk_activation act, float *y, int64_t ldy) {
  for (int64_t s = s0; s < s1; ++s) {
    const int64_t lanes = w->n - 16 * s < 16 ? w->n - 16 * s : 16;
    for (int64_t r = 0; r < m; ++r) {
      const float *xr = x + r * ldx;
      float acc[16] = {0};
      for (int64_t g = w->group_ptr[s]; g < w->group_ptr[s + 1]; ++g) {
        const float *xw = xr + w->window[g];
        for (int i = 0; i < 16; ++i) {
          const uint32_t word = w->index[g * 16 + i];
          for (int j = 0; j < 4; ++j) {
            const uint32_t b = (word >> (8 * j)) & 0xff;
            if (b & 0x80) acc[i] += w->values[(g * 4 + j) * 16 + i] * xw[b & 31];
          }
        }
      }
      for (int64_t i = 0; i < lanes; ++i)
        y[r * ldy + 16 * s + i] = apply(acc[i], bias, act, 16 * s + i);
    }
  }
}
