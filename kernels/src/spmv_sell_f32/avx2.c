/*
 * spmv_sell_f32/avx2.c - AVX2 kernel for the sliced ELL (sparsekit.h).
 *
 * A 16-row slice is two ymm halves of 8 lanes. AVX2 has no two-table permute,
 * so step j's x values come from four vpermps over the window's four 8-float
 * quarters (vpermps reads index bits 0-2) and two levels of blends on index
 * bits 3 and 4 (vblendvps reads the sign bit, so the word is shifted left to
 * put the bit there); the slot's bit 7 (shifted to the sign and spread)
 * clears empty slots, so inf/NaN in x never reaches a row that does not use
 * that column. Rows of x go in pairs that share the index work.
 * Measured on Zen 5 (forced AVX2, M = 1, 90% sparsity): ~0.9 cycles per
 * nonzero, 0.8-1.0x the AVX2 CSR kernel (the ~12 shuffle/blend/shift ops per
 * 8 slots are the cost); 1.1-1.2x at 70% and 1.0-2.0x at M = 2. Measured
 * slower: the window in registers instead of vpermps from memory (same or
 * worse), a masked vgatherdps per 8 slots (2x slower).
 */
#include <immintrin.h>

#include "../internal.h"

#define MB 2 /* rows of x per pass over a slice's groups */

static inline __attribute__((always_inline)) __m256 pick(const float *xw, __m256i word,
                                                         int j) {
  const __m256i ij = _mm256_srli_epi32(word, 8 * j);
  const __m256 b3 = _mm256_castsi256_ps(_mm256_slli_epi32(word, 28 - 8 * j));
  const __m256 b4 = _mm256_castsi256_ps(_mm256_slli_epi32(word, 27 - 8 * j));
  const __m256 used = _mm256_castsi256_ps(
      _mm256_srai_epi32(_mm256_slli_epi32(word, 24 - 8 * j), 31));
  const __m256 lo = _mm256_blendv_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(xw), ij),
                                     _mm256_permutevar8x32_ps(_mm256_loadu_ps(xw + 8), ij), b3);
  const __m256 hi = _mm256_blendv_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(xw + 16), ij),
                                     _mm256_permutevar8x32_ps(_mm256_loadu_ps(xw + 24), ij), b3);
  return _mm256_and_ps(_mm256_blendv_ps(lo, hi, b4), used);
}

static inline __attribute__((always_inline)) void slice_rows(
    const sk_sell_f32 *w, int64_t s, const int mb, const float *x, int64_t ldx,
    const float *bias, sk_activation act, float *y, int64_t ldy) {
  __m256 acc[MB][2];
  for (int r = 0; r < MB; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  const int64_t g1 = w->group_ptr[s + 1];
  for (int64_t g = w->group_ptr[s]; g < g1; ++g) {
    const float *vg = w->values + g * 64;
    const float *xw = x + w->window[g];
    for (int h = 0; h < 2; ++h) {
      const __m256i word = _mm256_loadu_si256((const __m256i *)(w->index + g * 16 + 8 * h));
      for (int j = 0; j < 4; ++j) {
        const __m256 v = _mm256_loadu_ps(vg + 16 * j + 8 * h);
        for (int r = 0; r < mb; ++r)
          acc[r][h] = _mm256_fmadd_ps(v, pick(xw + r * ldx, word, j), acc[r][h]);
      }
    }
  }
  const int64_t left = w->n - 16 * s;
  const __m256 zero = _mm256_setzero_ps();
  for (int r = 0; r < mb; ++r) {
    float t[16];
    for (int h = 0; h < 2; ++h) {
      __m256 v = acc[r][h];
      if (bias && left >= 16) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + 16 * s + 8 * h));
      if (act == SK_ACT_RELU) v = _mm256_max_ps(zero, v); /* NaN stays */
      if (left >= 16) _mm256_storeu_ps(y + r * ldy + 16 * s + 8 * h, v);
      else _mm256_storeu_ps(t + 8 * h, acc[r][h]);
    }
    for (int64_t i = 0; i < left && left < 16; ++i) { /* partial last slice */
      float v = t[i] + (bias ? bias[16 * s + i] : 0.0f);
      if (act == SK_ACT_RELU && !(v > 0.0f)) v = v != v ? v : 0.0f;
      y[r * ldy + 16 * s + i] = v;
    }
  }
}

/* K < 32: windows reach past x, so each row's window goes through a
 * zero-padded copy on the stack. */
static void slice_short_k(const sk_sell_f32 *w, int64_t s, int64_t m, const float *x,
                          int64_t ldx, const float *bias, sk_activation act, float *y,
                          int64_t ldy) {
  float pad[32];
  for (int64_t r = 0; r < m; ++r) {
    for (int i = 0; i < 32; ++i) pad[i] = i < w->k ? x[r * ldx + i] : 0.0f;
    slice_rows(w, s, 1, pad, 32, bias, act, y + r * ldy, ldy);
  }
}

void sk_spmv_sell_f32__avx2(const sk_sell_f32 *w, int64_t s0, int64_t s1, int64_t m,
                            const float *x, int64_t ldx, const float *bias,
                            sk_activation act, float *y, int64_t ldy) {
  for (int64_t s = s0; s < s1; ++s) {
    if (w->k < 32) {
      slice_short_k(w, s, m, x, ldx, bias, act, y, ldy);
      continue;
    }
    int64_t r0 = 0;
    for (; r0 + 2 <= m; r0 += 2) slice_rows(w, s, 2, x + r0 * ldx, ldx, bias, act, y + r0 * ldy, ldy);
    if (r0 < m) slice_rows(w, s, 1, x + r0 * ldx, ldx, bias, act, y + r0 * ldy, ldy);
  }
}
