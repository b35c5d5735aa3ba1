/*
 * gemm_f32/avx512.c - 12 x 32 tile: 24 zmm accumulators, two weight loads and
 * 12 broadcasts of packed X per k (the broadcasts fold into the FMAs), so the
 * FMA ports, not loads, bound it. A tile of fewer rows runs the same code
 * instantiated for its row count (the accumulators stay in registers). A
 * block's first tile also prefetches the next panel: at a few rows the
 * weights stream from memory, and the hardware prefetchers stop at each
 * 4 KiB page (MiniLM at batch 1: ~15% less time per GEMM from memory).
 */
#include <immintrin.h>

#include "../internal.h"

static inline __attribute__((always_inline)) void tile(const int MR, const float *xp,
                                                       const float *wp, int64_t k,
                                                       const float *bias, int64_t nn, int relu,
                                                       float *y, int64_t ldy,
                                                       const char *next) {
  __m512 c0[12], c1[12];
  for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
  for (int64_t kk = 0; kk < k; ++kk) {
    if (next) { /* the next panel, 128 bytes per k: two lines */
      _mm_prefetch(next + kk * 128, _MM_HINT_T0);
      _mm_prefetch(next + kk * 128 + 64, _MM_HINT_T0);
    }
    const __m512 w0 = _mm512_loadu_ps(wp + kk * 32), w1 = _mm512_loadu_ps(wp + kk * 32 + 16);
    const float *xk = xp + kk * MR;
    for (int i = 0; i < MR; ++i) {
      const __m512 xb = _mm512_set1_ps(xk[i]);
      c0[i] = _mm512_fmadd_ps(xb, w0, c0[i]);
      c1[i] = _mm512_fmadd_ps(xb, w1, c1[i]);
    }
  }
  const __mmask16 m0 = nn >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nn) - 1);
  const __mmask16 m1 = nn >= 32 ? (__mmask16)0xFFFF
                                : nn > 16 ? (__mmask16)((1u << (nn - 16)) - 1) : 0;
  __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
  if (bias) {
    b0 = _mm512_maskz_loadu_ps(m0, bias);
    b1 = _mm512_maskz_loadu_ps(m1, bias + 16);
  }
  const __m512 zero = _mm512_setzero_ps();
  for (int i = 0; i < MR; ++i) {
    __m512 a0 = c0[i], a1 = c1[i];
    if (bias) {
      a0 = _mm512_add_ps(a0, b0);
      a1 = _mm512_add_ps(a1, b1);
    }
    if (relu) { /* max(x, 0) with NaN kept: max_ps returns its second operand for NaN */
      a0 = _mm512_max_ps(zero, a0);
      a1 = _mm512_max_ps(zero, a1);
    }
    _mm512_mask_storeu_ps(y + i * ldy, m0, a0);
    _mm512_mask_storeu_ps(y + i * ldy + 16, m1, a1);
  }
}

void sk_gemm_f32_tile__avx512(const float *xp, int64_t mr, const float *wp, int64_t k,
                              const float *bias, int64_t nn, int relu, float *y, int64_t ldy,
                              const float *next) {
  const char *pf = (const char *)next;
  switch (mr) {
#define CASE(R) \
  case R: tile(R, xp, wp, k, bias, nn, relu, y, ldy, pf); break;
    CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6)
    CASE(7) CASE(8) CASE(9) CASE(10) CASE(11) CASE(12)
#undef CASE
    default: break;
  }
}
