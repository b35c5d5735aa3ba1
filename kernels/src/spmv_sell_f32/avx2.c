/*
 * spmv_sell_f32/avx2.c - AVX2 kernel for the sliced ELL (sparsekit.h).
 *
 * A 16-row slice is two ymm halves of 8 lanes. AVX2 has no two-table permute,
 * so step j's x values come from four vpermps over the window's four 8-float
 * quarters (vpermps reads index bits 0-2) and two levels of blends on index
 * bits 3 and 4 (vblendvps reads the sign bit, so the word is shifted left to
 * put the bit there). Rows of x go in pairs that share the index work.
 * Empty slots hold value 0, so they add 0 * x[window + 0]: harmless unless
 * that x is inf/NaN. So each call first checks its rows of x (the columns
 * [0, K) any window reads): where all are finite the kernel skips the mask,
 * else the slot's bit 7 (shifted to the sign) clears x in empty slots and
 * inf/NaN never reaches a row that does not use that column. The check is
 * done only where it is cheap next to the groups it saves work on.
 * Measured on Zen 5 (forced AVX2, M = 1, 1 thread; benchmarks/RESULTS.md,
 * "SlicedEllMatrix on AVX2"): 0.71-0.73 cycles per nonzero at 90% sparsity
 * unmasked, 0.9 masked (as the kernel before the check); against the AVX2
 * CSR kernel 1.0-1.26x at 90%, 1.4-1.5x at 80%, 0.7-1.07x at 95%. The cost
 * is the ~11 shift/permute/blend ops per 8 slots: a 32-column window needs 4
 * vpermps + 3 blends per 8 slots whatever the steps' order. Measured no
 * faster: software prefetch 4 or 8 groups ahead, vpaddd for one of the
 * shifts, vpermps from memory instead of the quarters in registers; slower:
 * vgatherdps per 8 slots (2x, masked or not).
 */
#include <immintrin.h>

#include "../internal.h"

#define MB 2 /* rows of x per pass over a slice's groups */
#define CHECK_COLS_PER_GROUP 16 /* check x for the fast path if K <= this x groups */

/* Step j of the 8 lanes whose index words are `word`, from the window's
 * quarters q[0..3]. */
static inline __attribute__((always_inline)) __m256 pick(const __m256 q[4], __m256i word,
                                                         int j, const int masked) {
  const __m256i ij = j ? _mm256_srli_epi32(word, 8 * j) : word;
  const __m256 b3 = _mm256_castsi256_ps(_mm256_slli_epi32(word, 28 - 8 * j));
  const __m256 b4 = _mm256_castsi256_ps(_mm256_slli_epi32(word, 27 - 8 * j));
  const __m256 lo = _mm256_blendv_ps(_mm256_permutevar8x32_ps(q[0], ij),
                                     _mm256_permutevar8x32_ps(q[1], ij), b3);
  const __m256 hi = _mm256_blendv_ps(_mm256_permutevar8x32_ps(q[2], ij),
                                     _mm256_permutevar8x32_ps(q[3], ij), b3);
  const __m256 v = _mm256_blendv_ps(lo, hi, b4);
  if (!masked) return v;
  const __m256 used = _mm256_castsi256_ps(j == 3 ? word : _mm256_slli_epi32(word, 24 - 8 * j));
  return _mm256_blendv_ps(_mm256_setzero_ps(), v, used);
}

static inline __attribute__((always_inline)) void slice_rows(
    const sk_sell_f32 *w, int64_t s, const int mb, const int masked, const float *x,
    int64_t ldx, const float *bias, sk_activation act, float *y, int64_t ldy) {
  /* acc[r][h][a]: row r, half h; M = 1 alternates two sets by step */
  __m256 acc[MB][2][2];
  for (int r = 0; r < MB; ++r)
    for (int h = 0; h < 2; ++h) acc[r][h][0] = acc[r][h][1] = _mm256_setzero_ps();
  const int64_t g1 = w->group_ptr[s + 1];
  for (int64_t g = w->group_ptr[s]; g < g1; ++g) {
    const float *vg = w->values + g * 64;
    __m256 q[MB][4];
    for (int r = 0; r < mb; ++r)
      for (int i = 0; i < 4; ++i) q[r][i] = _mm256_loadu_ps(x + r * ldx + w->window[g] + 8 * i);
    for (int h = 0; h < 2; ++h) {
      const __m256i word = _mm256_loadu_si256((const __m256i *)(w->index + g * 16 + 8 * h));
      for (int j = 0; j < 4; ++j) {
        const __m256 v = _mm256_loadu_ps(vg + 16 * j + 8 * h);
        const int a = mb == 1 ? j & 1 : 0;
        for (int r = 0; r < mb; ++r)
          acc[r][h][a] = _mm256_fmadd_ps(v, pick(q[r], word, j, masked), acc[r][h][a]);
      }
    }
  }
  if (mb == 1)
    for (int h = 0; h < 2; ++h) acc[0][h][0] = _mm256_add_ps(acc[0][h][0], acc[0][h][1]);
  const int64_t left = w->n - 16 * s;
  const __m256 zero = _mm256_setzero_ps();
  for (int r = 0; r < mb; ++r) {
    float t[16];
    for (int h = 0; h < 2; ++h) {
      __m256 v = acc[r][h][0];
      if (bias && left >= 16) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + 16 * s + 8 * h));
      if (act == SK_ACT_RELU) v = _mm256_max_ps(zero, v); /* NaN stays */
      if (left >= 16) _mm256_storeu_ps(y + r * ldy + 16 * s + 8 * h, v);
      else _mm256_storeu_ps(t + 8 * h, acc[r][h][0]);
    }
    for (int64_t i = 0; i < left && left < 16; ++i) { /* partial last slice */
      float v = t[i] + (bias ? bias[16 * s + i] : 0.0f);
      if (act == SK_ACT_RELU && !(v > 0.0f)) v = v != v ? v : 0.0f;
      y[r * ldy + 16 * s + i] = v;
    }
  }
}

/* 1 when x[0, k) holds no inf/NaN (x - x is 0 exactly for finite x). */
static int all_finite(const float *x, int64_t k) {
  __m256 bad = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 d = _mm256_sub_ps(v, v);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(d, d, _CMP_UNORD_Q));
  }
  int ok = _mm256_movemask_ps(bad) == 0;
  for (; i < k; ++i) ok &= x[i] - x[i] == 0.0f;
  return ok;
}

/* K < 32: windows reach past x, so each row's window goes through a
 * zero-padded copy on the stack. */
static void slice_short_k(const sk_sell_f32 *w, int64_t s, int64_t m, const float *x,
                          int64_t ldx, const float *bias, sk_activation act, float *y,
                          int64_t ldy) {
  float pad[32];
  for (int64_t r = 0; r < m; ++r) {
    for (int i = 0; i < 32; ++i) pad[i] = i < w->k ? x[r * ldx + i] : 0.0f;
    slice_rows(w, s, 1, 1, pad, 32, bias, act, y + r * ldy, ldy);
  }
}

#define RUN(MBC, MASKED) \
  slice_rows(w, s, MBC, MASKED, x + r0 * ldx, ldx, bias, act, y + r0 * ldy, ldy)

void sk_spmv_sell_f32__avx2(const sk_sell_f32 *w, int64_t s0, int64_t s1, int64_t m,
                            const float *x, int64_t ldx, const float *bias,
                            sk_activation act, float *y, int64_t ldy) {
  if (w->k < 32) {
    for (int64_t s = s0; s < s1; ++s) slice_short_k(w, s, m, x, ldx, bias, act, y, ldy);
    return;
  }
  enum { BLOCK = 16 }; /* rows of x per pass over the slices: W stays in L1 per slice */
  const int check = w->k <= CHECK_COLS_PER_GROUP * (w->group_ptr[s1] - w->group_ptr[s0]);
  for (int64_t b0 = 0; b0 < m; b0 += BLOCK) {
    const int64_t b1 = m - b0 < BLOCK ? m : b0 + BLOCK;
    int finite[BLOCK];
    for (int64_t r = b0; r < b1; ++r) finite[r - b0] = check && all_finite(x + r * ldx, w->k);
    for (int64_t s = s0; s < s1; ++s)
      for (int64_t r0 = b0; r0 < b1; r0 += MB) {
        const int pair = r0 + 2 <= b1;
        const int masked = !(finite[r0 - b0] && (!pair || finite[r0 + 1 - b0]));
        if (pair && masked) RUN(2, 1);
        else if (pair) RUN(2, 0);
        else if (masked) RUN(1, 1);
        else RUN(1, 0);
      }
  }
}
