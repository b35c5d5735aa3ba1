/*
 * spmm_u8s8/avx2.c - AVX2 micro-kernels, exact.
 * vpmaddubsw would saturate its 16-bit pair sums, so each dword of 4 u8
 * activations is split into its even and odd bytes as 16-bit lanes (and, shift)
 * and multiplied with the sign-extended even/odd weight bytes by vpmaddwd:
 *   x0 w0 + x2 w2  +  x1 w1 + x3 w3   (every term and sum fits easily in int32)
 * spmm: MR = 32 activation rows (4 ymm accumulators), weight block broadcast.
 * spmv (M == 1): 8 blocks at a time, activation dwords gathered by column; the
 * tail of a row in scalar so no lane reads past the row's blocks.
 */
#include <immintrin.h>
#include <string.h>

#include "../internal.h"

#define MR 32
#define NB 16

static inline int32_t load_dword(const void *p) {
  int32_t v;
  memcpy(&v, p, 4);
  return v;
}

/* Exact dot4 of 8 dword lanes: x u8 (even/odd bytes split here), w as even/odd
 * sign-extended 16-bit lanes. */
static inline __m256i dot4(__m256i x, __m256i we, __m256i wo) {
  const __m256i lo = _mm256_set1_epi16(0x00ff);
  const __m256i xe = _mm256_and_si256(x, lo), xo = _mm256_srli_epi16(x, 8);
  return _mm256_add_epi32(_mm256_madd_epi16(xe, we), _mm256_madd_epi16(xo, wo));
}

static inline void split_w(int32_t w, __m256i *we, __m256i *wo) {
  const __m256i v = _mm256_set1_epi32(w);
  *we = _mm256_srai_epi16(_mm256_slli_epi16(v, 8), 8);
  *wo = _mm256_srai_epi16(v, 8);
}

static inline float dequant1(int32_t v, const sk_spmm_u8s8_tile *t, int64_t i, int64_t n) {
  float f = (float)v * (t->xscale[i] * t->wscale[n]);
  if (t->bias) f += t->bias[n];
  if (t->act == SK_ACT_RELU && f < 0.0f) f = 0.0f;
  return f;
}

static inline __m256i epilogue(__m256i acc, const sk_spmm_u8s8_tile *t, int64_t i,
                               int64_t n) {
  const __m256i zp = _mm256_load_si256((const __m256i *)(t->zp + i));
  acc = _mm256_sub_epi32(acc, _mm256_mullo_epi32(zp, _mm256_set1_epi32(t->row_sums[n])));
  if (t->xscale == NULL) return acc;
  const __m256 s = _mm256_mul_ps(_mm256_loadu_ps(t->xscale + i), _mm256_set1_ps(t->wscale[n]));
  __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), s);
  if (t->bias) f = _mm256_add_ps(f, _mm256_set1_ps(t->bias[n]));
  if (t->act == SK_ACT_RELU) f = _mm256_max_ps(_mm256_setzero_ps(), f);
  return _mm256_castps_si256(f);
}

static inline void write_block(const uint32_t *buf, int64_t nb, const sk_spmm_u8s8_tile *t,
                               int64_t n) {
  uint32_t *y = (uint32_t *)t->y;
  for (int64_t i = 0; i < t->mr; ++i) {
    uint32_t *yr = y + i * t->ldy + n;
    for (int64_t j = 0; j < nb; ++j) yr[j] = buf[j * MR + i];
  }
}

#define DEFINE_SPMM(NAME, IDX_T)                                                \
  static void NAME(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {        \
    const IDX_T *cols = (const IDX_T *)t->cols;                                 \
    __attribute__((aligned(32))) uint32_t buf[NB * MR];                         \
    for (int64_t n = n0; n < n1; n += NB) {                                     \
      const int64_t nb = n1 - n < NB ? n1 - n : NB;                             \
      for (int64_t j = 0; j < nb; ++j) {                                        \
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;         \
        for (int64_t p = t->indptr[n + j]; p < t->indptr[n + j + 1]; ++p) {     \
          __m256i we, wo;                                                       \
          split_w(load_dword(t->values + 4 * p), &we, &wo);                     \
          const __m256i *xc = (const __m256i *)(t->xp + (int64_t)cols[p] * (MR * 4)); \
          a0 = _mm256_add_epi32(a0, dot4(_mm256_load_si256(xc), we, wo));       \
          a1 = _mm256_add_epi32(a1, dot4(_mm256_load_si256(xc + 1), we, wo));   \
          a2 = _mm256_add_epi32(a2, dot4(_mm256_load_si256(xc + 2), we, wo));   \
          a3 = _mm256_add_epi32(a3, dot4(_mm256_load_si256(xc + 3), we, wo));   \
        }                                                                       \
        __m256i *b = (__m256i *)(buf + j * MR);                                 \
        _mm256_store_si256(b, epilogue(a0, t, 0, n + j));                       \
        _mm256_store_si256(b + 1, epilogue(a1, t, 8, n + j));                   \
        _mm256_store_si256(b + 2, epilogue(a2, t, 16, n + j));                  \
        _mm256_store_si256(b + 3, epilogue(a3, t, 24, n + j));                  \
      }                                                                         \
      write_block(buf, nb, t, n);                                               \
    }                                                                           \
  }

static inline __m256i load_cols16(const uint16_t *p) {
  return _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
}
static inline __m256i load_cols32(const int32_t *p) {
  return _mm256_loadu_si256((const __m256i *)p);
}

#define DEFINE_SPMV(NAME, IDX_T, LOAD_COLS)                                     \
  static void NAME(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {        \
    const IDX_T *cols = (const IDX_T *)t->cols;                                 \
    const __m256i lo = _mm256_set1_epi16(0x00ff);                               \
    for (int64_t n = n0; n < n1; ++n) {                                         \
      __m256i acc = _mm256_setzero_si256();                                     \
      const int64_t e = t->indptr[n + 1];                                       \
      int64_t p = t->indptr[n];                                                 \
      for (; p + 8 <= e; p += 8) {                                              \
        const __m256i x = _mm256_i32gather_epi32((const int *)t->xp, LOAD_COLS(cols + p), 4); \
        const __m256i w = _mm256_loadu_si256((const __m256i *)(t->values + 4 * p)); \
        const __m256i we = _mm256_srai_epi16(_mm256_slli_epi16(w, 8), 8);       \
        const __m256i wo = _mm256_srai_epi16(w, 8);                             \
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_and_si256(x, lo), we)); \
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_srli_epi16(x, 8), wo)); \
      }                                                                         \
      __m128i h = _mm_add_epi32(_mm256_castsi256_si128(acc),                    \
                                _mm256_extracti128_si256(acc, 1));              \
      h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));                         \
      h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));                         \
      uint32_t s = (uint32_t)_mm_cvtsi128_si32(h);                              \
      for (; p < e; ++p) {                                                      \
        const uint8_t *x = t->xp + 4 * (int64_t)cols[p];                        \
        const int8_t *w = t->values + 4 * p;                                    \
        s += (uint32_t)(x[0] * w[0] + x[1] * w[1] + x[2] * w[2] + x[3] * w[3]); \
      }                                                                         \
      const int32_t v = (int32_t)(s - (uint32_t)t->zp[0] * (uint32_t)t->row_sums[n]); \
      if (t->xscale == NULL) ((int32_t *)t->y)[n] = v;                          \
      else ((float *)t->y)[n] = dequant1(v, t, 0, n);                           \
    }                                                                           \
  }

DEFINE_SPMM(spmm_u16, uint16_t)
DEFINE_SPMM(spmm_i32, int32_t)
DEFINE_SPMV(spmv_u16, uint16_t, load_cols16)
DEFINE_SPMV(spmv_i32, int32_t, load_cols32)

void sk_spmm_u8s8_32x1c4__avx2(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmm_u16(t, n0, n1); else spmm_i32(t, n0, n1);
}

void sk_spmv_u8s8_1x1c4__avx2(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmv_u16(t, n0, n1); else spmv_i32(t, n0, n1);
}
