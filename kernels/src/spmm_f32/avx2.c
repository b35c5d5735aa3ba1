/*
 * spmm_f32/avx2.c - AVX2 + FMA micro-kernels.
 * spmm: MR = 32 activation rows (4 ymm accumulators), weight broadcast.
 * spmv (M == 1): 8 nonzeros at a time, x gathered by column index; the tail
 * of a row is done in scalar so no lane reads past the row's nonzeros.
 */
#include <immintrin.h>

#include "../internal.h"

#define MR 32
#define NB 16

static inline __m256 epilogue(__m256 v, const sk_spmm_f32_tile *t, int64_t n) {
  if (t->bias) v = _mm256_add_ps(v, _mm256_set1_ps(t->bias[n]));
  if (t->act == SK_ACT_RELU) v = _mm256_max_ps(_mm256_setzero_ps(), v); /* NaN stays */
  return v;
}

static inline float epilogue1(float v, const sk_spmm_f32_tile *t, int64_t n) {
  if (t->bias) v += t->bias[n];
  if (t->act == SK_ACT_RELU && !(v > 0.0f)) v = v != v ? v : 0.0f;
  return v;
}

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
    __attribute__((aligned(32))) float buf[NB * MR];                            \
    for (int64_t n = n0; n < n1; n += NB) {                                     \
      const int64_t nb = n1 - n < NB ? n1 - n : NB;                             \
      for (int64_t j = 0; j < nb; ++j) {                                        \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;             \
        for (int64_t p = t->indptr[n + j]; p < t->indptr[n + j + 1]; ++p) {     \
          const __m256 v = _mm256_broadcast_ss(t->values + p);                  \
          const float *xk = t->xp + (int64_t)idx[p] * MR;                       \
          a0 = _mm256_fmadd_ps(v, _mm256_load_ps(xk), a0);                      \
          a1 = _mm256_fmadd_ps(v, _mm256_load_ps(xk + 8), a1);                  \
          a2 = _mm256_fmadd_ps(v, _mm256_load_ps(xk + 16), a2);                 \
          a3 = _mm256_fmadd_ps(v, _mm256_load_ps(xk + 24), a3);                 \
        }                                                                       \
        float *b = buf + j * MR;                                                \
        _mm256_store_ps(b, epilogue(a0, t, n + j));                             \
        _mm256_store_ps(b + 8, epilogue(a1, t, n + j));                         \
        _mm256_store_ps(b + 16, epilogue(a2, t, n + j));                        \
        _mm256_store_ps(b + 24, epilogue(a3, t, n + j));                        \
      }                                                                         \
      write_block(buf, nb, t, n);                                               \
    }                                                                           \
  }

static inline __m256i load_idx16(const uint16_t *p) {
  return _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
}
static inline __m256i load_idx32(const int32_t *p) {
  return _mm256_loadu_si256((const __m256i *)p);
}

static inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

#define DEFINE_SPMV(NAME, IDX_T, LOAD_IDX)                                      \
  static void NAME(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {         \
    const IDX_T *idx = (const IDX_T *)t->indices;                               \
    for (int64_t n = n0; n < n1; ++n) {                                         \
      __m256 acc = _mm256_setzero_ps();                                         \
      const int64_t e = t->indptr[n + 1];                                       \
      int64_t p = t->indptr[n];                                                 \
      for (; p + 8 <= e; p += 8) {                                              \
        const __m256 xv = _mm256_i32gather_ps(t->xp, LOAD_IDX(idx + p), 4);     \
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(t->values + p), xv, acc);         \
      }                                                                         \
      float v = hsum(acc);                                                      \
      for (; p < e; ++p) v += t->values[p] * t->xp[idx[p]];                     \
      t->y[n] = epilogue1(v, t, n);                                             \
    }                                                                           \
  }

DEFINE_SPMM(spmm_u16, uint16_t)
DEFINE_SPMM(spmm_i32, int32_t)
DEFINE_SPMV(spmv_u16, uint16_t, load_idx16)
DEFINE_SPMV(spmv_i32, int32_t, load_idx32)

void sk_spmm_f32_32x1__avx2(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmm_u16(t, n0, n1); else spmm_i32(t, n0, n1);
}

void sk_spmv_f32__avx2(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmv_u16(t, n0, n1); else spmv_i32(t, n0, n1);
}
