/*
 * spmm_f32/avx512.c - AVX-512 micro-kernels.
 * spmm: MR = 64 activation rows (4 zmm accumulators); each nonzero w[n,k] is
 * broadcast and FMA'd with the packed 64-vector of column k. Rows are done in
 * blocks of 16 into a small buffer, then written to Y transposed.
 * spmv (M == 1): 16 nonzeros at a time, x gathered by column index.
 */
#include <immintrin.h>

#include "../internal.h"

#define MR 64
#define NB 16

static inline __m512 epilogue(__m512 v, const sk_spmm_f32_tile *t, int64_t n) {
  if (t->bias) v = _mm512_add_ps(v, _mm512_set1_ps(t->bias[n]));
  if (t->act == SK_ACT_RELU) v = _mm512_max_ps(_mm512_setzero_ps(), v); /* NaN stays */
  return v;
}

/* Write buf[j][i] (j < nb rows of W, i < mr rows of X) to y[i * ldy + n + j]. */
static inline void write_block(const float *buf, int64_t nb, const sk_spmm_f32_tile *t,
                               int64_t n) {
  for (int64_t i = 0; i < t->mr; ++i) {
    float *yr = t->y + i * t->ldy + n;
    for (int64_t j = 0; j < nb; ++j) yr[j] = buf[j * MR + i];
  }
}

#define DEFINE_SPMM(NAME, IDX_T)                                                \
  static void NAME(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {         \
    const IDX_T *idx = (const IDX_T *)t->indices;                               \
    __attribute__((aligned(64))) float buf[NB * MR];                            \
    for (int64_t n = n0; n < n1; n += NB) {                                     \
      const int64_t nb = n1 - n < NB ? n1 - n : NB;                             \
      for (int64_t j = 0; j < nb; ++j) {                                        \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;             \
        for (int64_t p = t->indptr[n + j]; p < t->indptr[n + j + 1]; ++p) {     \
          const __m512 v = _mm512_set1_ps(t->values[p]);                        \
          const float *xk = t->xp + (int64_t)idx[p] * MR;                       \
          a0 = _mm512_fmadd_ps(v, _mm512_load_ps(xk), a0);                      \
          a1 = _mm512_fmadd_ps(v, _mm512_load_ps(xk + 16), a1);                 \
          a2 = _mm512_fmadd_ps(v, _mm512_load_ps(xk + 32), a2);                 \
          a3 = _mm512_fmadd_ps(v, _mm512_load_ps(xk + 48), a3);                 \
        }                                                                       \
        float *b = buf + j * MR;                                                \
        _mm512_store_ps(b, epilogue(a0, t, n + j));                             \
        _mm512_store_ps(b + 16, epilogue(a1, t, n + j));                        \
        _mm512_store_ps(b + 32, epilogue(a2, t, n + j));                        \
        _mm512_store_ps(b + 48, epilogue(a3, t, n + j));                        \
      }                                                                         \
      write_block(buf, nb, t, n);                                               \
    }                                                                           \
  }

static inline __m512i load_idx16(const uint16_t *p, __mmask16 k) {
  return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p));
}
static inline __m512i load_idx32(const int32_t *p, __mmask16 k) {
  return _mm512_maskz_loadu_epi32(k, p);
}

#define DEFINE_SPMV(NAME, IDX_T, LOAD_IDX)                                      \
  static void NAME(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {         \
    const IDX_T *idx = (const IDX_T *)t->indices;                               \
    for (int64_t n = n0; n < n1; ++n) {                                         \
      __m512 acc = _mm512_setzero_ps();                                         \
      const int64_t e = t->indptr[n + 1];                                       \
      for (int64_t p = t->indptr[n]; p < e; p += 16) {                          \
        const __mmask16 k = e - p >= 16 ? (__mmask16)0xffff                     \
                                        : (__mmask16)((1u << (e - p)) - 1);     \
        const __m512i col = LOAD_IDX(idx + p, k);                               \
        const __m512 xv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, col, \
                                                   t->xp, 4);                   \
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, t->values + p), xv, acc); \
      }                                                                         \
      float v = _mm512_reduce_add_ps(acc);                                      \
      if (t->bias) v += t->bias[n];                                             \
      if (t->act == SK_ACT_RELU && !(v > 0.0f)) v = v != v ? v : 0.0f;          \
      t->y[n] = v;                                                              \
    }                                                                           \
  }

DEFINE_SPMM(spmm_u16, uint16_t)
DEFINE_SPMM(spmm_i32, int32_t)
DEFINE_SPMV(spmv_u16, uint16_t, load_idx16)
DEFINE_SPMV(spmv_i32, int32_t, load_idx32)

void sk_spmm_f32_64x1__avx512(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmm_u16(t, n0, n1); else spmm_i32(t, n0, n1);
}

void sk_spmv_f32__avx512(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmv_u16(t, n0, n1); else spmv_i32(t, n0, n1);
}
