/*
 * qgemm_u8s8/epilogue_avx512.h - the AVX-512 epilogue for 16 output columns
 * of one row, shared by avx512.c and avx512vnni.c. Same operation order as
 * scalar.c: c = acc - zp*sum; y = float(c) * (a_scale * w_scale) (+ bias,
 * relu); optional requantization with a true division and round-half-even.
 */
#ifndef SK_QGEMM_EPILOGUE_AVX512_H
#define SK_QGEMM_EPILOGUE_AVX512_H

#include <immintrin.h>

#include "../internal.h"

static inline __mmask16 sk_q_cols(int64_t left) {
  return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

/* Channel sums n .. n+15 (bytes past `left` columns are not read): the
 * dword holding byte 3i and its successor are moved to lane i, shifted into
 * place, and bit 23 is sign-extended. */
static inline __m512i sk_q_sums16(const sk_qgemm_u8s8_args *p, int64_t n, int64_t left) {
  const __mmask64 bytes = left >= 16 ? (__mmask64)0xffffffffffffull
                                     : (((__mmask64)1 << (3 * left)) - 1);
  const __m512i raw = _mm512_maskz_loadu_epi8(bytes, p->sum24 + 3 * n);
  const __m512i idx = _mm512_setr_epi32(0, 0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9, 9, 10, 11);
  const __m512i sh = _mm512_setr_epi32(0, 24, 16, 8, 0, 24, 16, 8, 0, 24, 16, 8, 0, 24, 16, 8);
  const __m512i lo = _mm512_permutexvar_epi32(idx, raw);
  const __m512i hi = _mm512_permutexvar_epi32(_mm512_add_epi32(idx, _mm512_set1_epi32(1)), raw);
  const __m512i up = _mm512_sub_epi32(_mm512_set1_epi32(32), sh);
  const __m512i v = _mm512_or_si512(_mm512_srlv_epi32(lo, sh), _mm512_sllv_epi32(hi, up));
  return _mm512_srai_epi32(_mm512_slli_epi32(v, 8), 8);
}

static inline void sk_q_store16_avx512(const sk_qgemm_u8s8_args *p, int64_t i, int64_t n,
                                       __m512i acc, __m512i ws, __mmask16 m) {
  const __m512i c = _mm512_sub_epi32(
      acc, _mm512_mullo_epi32(_mm512_set1_epi32(p->a_zp[i * p->zp_stride]), ws));
  if (p->out == SK_QOUT_S32) {
    _mm512_mask_storeu_epi32((int32_t *)p->c + i * p->ldc + n, m, c);
    return;
  }
  const __m512 wsc = p->ws_stride ? _mm512_maskz_loadu_ps(m, p->w_scale + n)
                                  : _mm512_set1_ps(p->w_scale[0]);
  const __m512 sc = _mm512_mul_ps(_mm512_set1_ps(p->a_scale[i * p->as_stride]), wsc);
  __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(c), sc);
  if (p->bias) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m, p->bias + n));
  if (p->act == SK_ACT_RELU) y = _mm512_max_ps(y, _mm512_setzero_ps());
  if (p->out == SK_QOUT_F32) {
    _mm512_mask_storeu_ps((float *)p->c + i * p->ldc + n, m, y);
    return;
  }
  __m512 r = _mm512_roundscale_ps(_mm512_div_ps(y, _mm512_set1_ps(p->out_scale)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  r = _mm512_add_ps(r, _mm512_set1_ps(p->out_zp));
  r = _mm512_min_ps(_mm512_max_ps(r, _mm512_setzero_ps()), _mm512_set1_ps(255.0f));
  _mm512_mask_cvtepi32_storeu_epi8((uint8_t *)p->c + i * p->ldc + n, m,
                                   _mm512_cvttps_epi32(r));
}

/* The last, partial group of 4 bytes of an A row: `n` valid bytes, rest 0. */
static inline int32_t sk_q_tail4(const uint8_t *a, int n) {
  uint32_t v = 0;
  for (int r = 0; r < n; ++r) v |= (uint32_t)a[r] << (8 * r);
  return (int32_t)v;
}

static inline int32_t sk_q_load4(const uint8_t *a) {
  int32_t v;
  __builtin_memcpy(&v, a, 4);
  return v;
}

#endif
