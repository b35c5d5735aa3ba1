/*
 * qgemm_u8s8/avx2.c - exact AVX2 micro-kernel, 2 rows x 16 columns.
 * vpmaddubsw would saturate (two u8*s8 products summed into int16), so both
 * operands are widened to int16 and multiplied with vpmaddwd, whose pair sums
 * are exact in int32. A packed 16-byte quarter (4 channels x 4 k) widens to
 * [c0k0..c0k3, c1k0.., c2.., c3..]; times [a0 a1 a2 a3] x 4 it gives two
 * partial sums per channel, which are added pairwise (vphaddd) at the end.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "../internal.h"

#define MR 2

/* Fully unrolled constant-trip loops, so the accumulator arrays can live in
 * registers. */
#define UNROLL _Pragma("GCC unroll 16")

static inline int32_t load4(const uint8_t *a) {
  int32_t v;
  memcpy(&v, a, 4);
  return v;
}

static inline int32_t tail4(const uint8_t *a, int n) {
  uint32_t v = 0;
  for (int r = 0; r < n; ++r) v |= (uint32_t)a[r] << (8 * r);
  return (int32_t)v;
}

static inline __m256i lanes(int64_t left) {
  const int n = left >= 8 ? 8 : (int)left;
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Epilogue for 8 columns of row i (same operation order as scalar.c). */
static void store8(const sk_qgemm_u8s8_args *p, int64_t i, int64_t n, __m256i acc,
                   __m256i ws, int64_t left) {
  const __m256i m = lanes(left);
  const __m256i zp = _mm256_set1_epi32(p->a_zp[i * p->zp_stride]);
  const __m256i c = _mm256_sub_epi32(acc, _mm256_mullo_epi32(zp, ws));
  if (p->out == SK_QOUT_S32) {
    _mm256_maskstore_epi32((int32_t *)p->c + i * p->ldc + n, m, c);
    return;
  }
  const __m256 wsc = p->ws_stride ? _mm256_maskload_ps(p->w_scale + n, m)
                                  : _mm256_set1_ps(p->w_scale[0]);
  const __m256 sc = _mm256_mul_ps(_mm256_set1_ps(p->a_scale[i * p->as_stride]), wsc);
  __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(c), sc);
  if (p->bias) y = _mm256_add_ps(y, _mm256_maskload_ps(p->bias + n, m));
  if (p->act == SK_ACT_RELU) y = _mm256_max_ps(y, _mm256_setzero_ps());
  if (p->out == SK_QOUT_F32) {
    _mm256_maskstore_ps((float *)p->c + i * p->ldc + n, m, y);
    return;
  }
  __m256 r = _mm256_round_ps(_mm256_div_ps(y, _mm256_set1_ps(p->out_scale)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  r = _mm256_add_ps(r, _mm256_set1_ps(p->out_zp));
  r = _mm256_min_ps(_mm256_max_ps(r, _mm256_setzero_ps()), _mm256_set1_ps(255.0f));
  const __m256i q = _mm256_cvttps_epi32(r);
  const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
  uint8_t tmp[16];
  _mm_storeu_si128((__m128i *)tmp, _mm_packus_epi16(w, w));
  memcpy((uint8_t *)p->c + i * p->ldc + n, tmp, (size_t)(left >= 8 ? 8 : left));
}

static inline __attribute__((always_inline)) void tile(const sk_qgemm_u8s8_args *p,
                                                       int64_t m0, int64_t n0, int64_t nr,
                                                       const int R) {
  __m256i acc[MR][4];
  UNROLL for (int i = 0; i < R; ++i)
    UNROLL for (int q = 0; q < 4; ++q) acc[i][q] = _mm256_setzero_si256();
  const int64_t lda = p->lda;
  const uint8_t *a = p->a + m0 * lda;
  const int8_t *b = p->b + (n0 / 16) * p->k4 * 64;
  for (int64_t g = 0; g < p->k4; ++g) {
    __m256i av[MR];
    UNROLL for (int i = 0; i < R; ++i) {
      const uint8_t *ai = a + i * lda + 4 * g;
      const int32_t a4 = g < p->kfull ? load4(ai) : tail4(ai, p->ktail);
      av[i] = _mm256_cvtepu8_epi16(_mm_set1_epi32(a4));
    }
    UNROLL for (int q = 0; q < 4; ++q) {
      const __m128i raw = _mm_loadu_si128((const __m128i *)(b + g * 64 + 16 * q));
      const __m256i bq = _mm256_cvtepi8_epi16(raw);
      UNROLL for (int i = 0; i < R; ++i)
        acc[i][q] = _mm256_add_epi32(acc[i][q], _mm256_madd_epi16(av[i], bq));
    }
  }
  int32_t sums[16] = {0};
  for (int64_t j = 0; j < nr; ++j) sums[j] = sk_qsum24(p->sum24, n0 + j);
  const __m256i s_lo = _mm256_loadu_si256((const __m256i *)sums);
  const __m256i s_hi = _mm256_loadu_si256((const __m256i *)(sums + 8));
  UNROLL for (int i = 0; i < R; ++i) {
    const __m256i lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[i][0], acc[i][1]), 0xD8);
    const __m256i hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[i][2], acc[i][3]), 0xD8);
    store8(p, m0 + i, n0, lo, s_lo, nr);
    if (nr > 8) store8(p, m0 + i, n0 + 8, hi, s_hi, nr - 8);
  }
}

static void tile_1(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t n0, int64_t nr) {
  tile(p, m0, n0, nr, 1);
}
static void tile_2(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t n0, int64_t nr) {
  tile(p, m0, n0, nr, 2);
}

void sk_qgemm_u8s8_2x16c4__avx2(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr,
                                int64_t n0, int64_t nr) {
  if (mr == 2) tile_2(p, m0, n0, nr); else tile_1(p, m0, n0, nr);
}
