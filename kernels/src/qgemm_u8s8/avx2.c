/*
 * qgemm_u8s8/avx2.c - exact AVX2 micro-kernel, 4 rows x 16 columns.
 * vpmaddubsw (u8 x s8, pair sums in int16) would saturate on u8 x s8 as
 * given; it runs on shifted operands whose pair sums always fit (see tile).
 * A packed group (16 channels x 4 k, 64 bytes) is two ymm of 8 channels;
 * vpmaddubsw then vpmaddwd by ones gives one int32 per channel, so the
 * accumulators are the output columns in order.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "../internal.h"

#define MR 4

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

/* vpmaddubsw on exact operands: sum_k a b = sum_k (a - 128) b + 128 sum_k b,
 * and (a - 128) b = |a - 128| * (b * sign(a - 128)) with |a - 128| <= 128
 * (u8) and b * sign(a - 128) in [-127, 127] (s8: the packed weights hold no
 * -128), so each pair sum of vpmaddubsw is at most 2 * 128 * 127 = 32512:
 * it never saturates. vpmaddwd by ones then sums the pairs of one channel
 * in int32. The 128 sum_k b goes into the epilogue's zero-point term. */
static inline __attribute__((always_inline)) void tile(const sk_qgemm_u8s8_args *p,
                                                       int64_t m0, int64_t n0, int64_t nr,
                                                       const int R) {
  __m256i acc[MR][2];
  UNROLL for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
  const int64_t lda = p->lda;
  const uint8_t *a = p->a + m0 * lda;
  const int8_t *b = p->b + (n0 / 16) * p->k4 * 64;
  const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);
#define SIGN_STEP(G, LOAD4)                                                              \
  {                                                                                      \
    const __m256i b0 = _mm256_loadu_si256((const __m256i *)(b + (G) * 64));             \
    const __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + (G) * 64 + 32));        \
    UNROLL for (int i = 0; i < R; ++i) {                                                 \
      const __m256i as = _mm256_xor_si256(_mm256_set1_epi32(LOAD4), flip);              \
      const __m256i au = _mm256_abs_epi8(as);                                            \
      acc[i][0] = _mm256_add_epi32(                                                      \
          acc[i][0],                                                                     \
          _mm256_madd_epi16(_mm256_maddubs_epi16(au, _mm256_sign_epi8(b0, as)), ones));  \
      acc[i][1] = _mm256_add_epi32(                                                      \
          acc[i][1],                                                                     \
          _mm256_madd_epi16(_mm256_maddubs_epi16(au, _mm256_sign_epi8(b1, as)), ones));  \
    }                                                                                    \
  }
  const int64_t kfull = p->kfull;
  for (int64_t g = 0; g < kfull; ++g) SIGN_STEP(g, load4(a + i * lda + 4 * g))
  /* the last, partial group: a past K reads as 0 (a - 128 = -128 there,
   * times packed zeros) */
  if (kfull < p->k4) SIGN_STEP(kfull, tail4(a + i * lda + 4 * kfull, p->ktail))
#undef SIGN_STEP
  int32_t sums[16] = {0};
  for (int64_t j = 0; j < nr; ++j) sums[j] = sk_qsum24(p->sum24, n0 + j);
  const __m256i s_lo = _mm256_loadu_si256((const __m256i *)sums);
  const __m256i s_hi = _mm256_loadu_si256((const __m256i *)(sums + 8));
  const __m256i s_lo128 = _mm256_slli_epi32(s_lo, 7), s_hi128 = _mm256_slli_epi32(s_hi, 7);
  UNROLL for (int i = 0; i < R; ++i) {
    store8(p, m0 + i, n0, _mm256_add_epi32(acc[i][0], s_lo128), s_lo, nr);
    if (nr > 8) store8(p, m0 + i, n0 + 8, _mm256_add_epi32(acc[i][1], s_hi128), s_hi, nr - 8);
  }
}

static void tile_1(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t n0, int64_t nr) {
  tile(p, m0, n0, nr, 1);
}
static void tile_2(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t n0, int64_t nr) {
  tile(p, m0, n0, nr, 2);
}
static void tile_3(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t n0, int64_t nr) {
  tile(p, m0, n0, nr, 3);
}
static void tile_4(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t n0, int64_t nr) {
  tile(p, m0, n0, nr, 4);
}

void sk_qgemm_u8s8_4x16c4__avx2(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr,
                                int64_t n0, int64_t nr) {
  static void (*const fns[MR])(const sk_qgemm_u8s8_args *, int64_t, int64_t, int64_t) = {
      tile_1, tile_2, tile_3, tile_4};
  fns[mr - 1](p, m0, n0, nr);
}
