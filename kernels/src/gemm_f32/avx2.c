/*
 * gemm_f32/avx2.c - 6 x 16 tile, run twice per 32-column panel (one half at a
 * time): 12 ymm accumulators, two weight loads and 6 broadcasts of packed X
 * per k, 15 of the 16 ymm registers; a full 6 x 32 tile would need 24
 * accumulators and AVX2 has no broadcast operand for FMA. Each half reads
 * every other 64-byte line of the panel, so the panel still comes from
 * memory once. A half wholly past the valid columns is skipped. As in
 * avx512.c, a block's first tile prefetches the next panel (one line per k
 * during each half). Fewer rows run the same code instantiated for their count;
 * 1 and 2 rows split k over 4 accumulator chains (sums_narrow).
 */
#include <immintrin.h>

#include "../internal.h"

static inline __m256i lane_mask(int64_t valid) { /* lanes [0, valid) all ones */
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int v = valid < 0 ? 0 : valid > 8 ? 8 : (int)valid;
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(v), idx);
}

/* 1 or 2 rows: a row's two accumulators per k would be a chain of dependent
 * FMAs (4 cycles each), so k is split over 4 / MR accumulator pairs per row
 * (4 independent chains in all), summed at the end. */
static inline __attribute__((always_inline)) void sums_narrow(const int MR, const float *xp,
                                                              const float *wp, int64_t k,
                                                              const char *next, __m256 *c0,
                                                              __m256 *c1) {
  const int KU = 4 / MR; /* accumulator j: row j / KU, k = u (mod KU) with u = j % KU */
  __m256 p0 = _mm256_setzero_ps(), q0 = p0, p1 = p0, q1 = p0, p2 = p0, q2 = p0, p3 = p0,
         q3 = p0;
  int64_t kk = 0;
  for (; kk + KU <= k; kk += KU) {
    if (next)
      for (int u = 0; u < KU; ++u) _mm_prefetch(next + (kk + u) * 128, _MM_HINT_T0);
#define ACC(j)                                                                        \
  {                                                                                   \
    const int64_t kj = kk + (j) % KU;                                                 \
    const __m256 xb = _mm256_broadcast_ss(xp + kj * MR + (j) / KU);                   \
    p##j = _mm256_fmadd_ps(xb, _mm256_loadu_ps(wp + kj * 32), p##j);                  \
    q##j = _mm256_fmadd_ps(xb, _mm256_loadu_ps(wp + kj * 32 + 8), q##j);              \
  }
    ACC(0) ACC(1) ACC(2) ACC(3)
#undef ACC
  }
  for (; kk < k; ++kk) { /* the k tail into each row's first pair */
    const __m256 w0 = _mm256_loadu_ps(wp + kk * 32), w1 = _mm256_loadu_ps(wp + kk * 32 + 8);
    const __m256 x0 = _mm256_broadcast_ss(xp + kk * MR);
    p0 = _mm256_fmadd_ps(x0, w0, p0);
    q0 = _mm256_fmadd_ps(x0, w1, q0);
    if (MR == 2) {
      const __m256 x1 = _mm256_broadcast_ss(xp + kk * MR + 1);
      p2 = _mm256_fmadd_ps(x1, w0, p2);
      q2 = _mm256_fmadd_ps(x1, w1, q2);
    }
  }
  if (MR == 1) {
    c0[0] = _mm256_add_ps(_mm256_add_ps(p0, p1), _mm256_add_ps(p2, p3));
    c1[0] = _mm256_add_ps(_mm256_add_ps(q0, q1), _mm256_add_ps(q2, q3));
  } else {
    c0[0] = _mm256_add_ps(p0, p1);
    c1[0] = _mm256_add_ps(q0, q1);
    c0[1] = _mm256_add_ps(p2, p3);
    c1[1] = _mm256_add_ps(q2, q3);
  }
}

static inline __attribute__((always_inline)) void half(const int MR, const float *xp,
                                                       const float *wp, int64_t k,
                                                       const float *bias, int64_t nn, int relu,
                                                       float *y, int64_t ldy,
                                                       const char *next) {
  __m256 c0[6], c1[6];
  if (MR <= 2) {
    sums_narrow(MR, xp, wp, k, next, c0, c1);
  } else {
    /* named accumulators, not arrays: GCC keeps arrays of __m256 on the stack here */
    __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0,
           b3 = a0, a4 = a0, b4 = a0, a5 = a0, b5 = a0;
    for (int64_t kk = 0; kk < k; ++kk) {
      if (next) _mm_prefetch(next + kk * 128, _MM_HINT_T0);
      const __m256 w0 = _mm256_loadu_ps(wp + kk * 32), w1 = _mm256_loadu_ps(wp + kk * 32 + 8);
      const float *xk = xp + kk * MR;
#define ROW(i)                                          \
    if (MR > i) {                                         \
      const __m256 xb = _mm256_broadcast_ss(xk + i);      \
      a##i = _mm256_fmadd_ps(xb, w0, a##i);               \
      b##i = _mm256_fmadd_ps(xb, w1, b##i);               \
    }
      ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
#undef ROW
    }
    c0[0] = a0, c0[1] = a1, c0[2] = a2, c0[3] = a3, c0[4] = a4, c0[5] = a5;
    c1[0] = b0, c1[1] = b1, c1[2] = b2, c1[3] = b3, c1[4] = b4, c1[5] = b5;
  }
  const __m256i m0 = lane_mask(nn), m1 = lane_mask(nn - 8);
  __m256 bias0 = _mm256_setzero_ps(), bias1 = _mm256_setzero_ps();
  if (bias) {
    bias0 = _mm256_maskload_ps(bias, m0);
    bias1 = _mm256_maskload_ps(bias + 8, m1);
  }
  const __m256 zero = _mm256_setzero_ps();
  for (int i = 0; i < MR; ++i) {
    __m256 v0 = c0[i], v1 = c1[i];
    if (bias) {
      v0 = _mm256_add_ps(v0, bias0);
      v1 = _mm256_add_ps(v1, bias1);
    }
    if (relu) { /* max(x, 0) with NaN kept: max_ps returns its second operand for NaN */
      v0 = _mm256_max_ps(zero, v0);
      v1 = _mm256_max_ps(zero, v1);
    }
    if (nn >= 16) {
      _mm256_storeu_ps(y + i * ldy, v0);
      _mm256_storeu_ps(y + i * ldy + 8, v1);
    } else {
      _mm256_maskstore_ps(y + i * ldy, m0, v0);
      _mm256_maskstore_ps(y + i * ldy + 8, m1, v1);
    }
  }
}

static inline __attribute__((always_inline)) void tile(const int MR, const float *xp,
                                                       const float *wp, int64_t k,
                                                       const float *bias, int64_t nn, int relu,
                                                       float *y, int64_t ldy,
                                                       const char *next) {
  half(MR, xp, wp, k, bias, nn, relu, y, ldy, next);
  if (nn > 16)
    half(MR, xp, wp + 16, k, bias ? bias + 16 : NULL, nn - 16, relu, y + 16, ldy,
         next ? next + 64 : NULL);
}

void sk_gemm_f32_tile__avx2(const float *xp, int64_t mr, const float *wp, int64_t k,
                            const float *bias, int64_t nn, int relu, float *y, int64_t ldy,
                            const float *next) {
  const char *pf = (const char *)next;
  switch (mr) {
#define CASE(R) \
  case R: tile(R, xp, wp, k, bias, nn, relu, y, ldy, pf); break;
    CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6)
#undef CASE
    default: break;
  }
}
