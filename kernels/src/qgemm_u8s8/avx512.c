/*
 * qgemm_u8s8/avx512.c - exact AVX-512BW micro-kernel for CPUs without VNNI,
 * 4 rows x 32 columns (2 panels). As in avx2.c, operands are widened to
 * int16 and multiplied with vpmaddwd (no saturation): 32 packed bytes
 * (8 channels x 4 k) widen to one zmm, times [a0 a1 a2 a3] x 8 they give two
 * partial sums per channel, merged at the end with vpermt2d + vpaddd.
 */
#include "epilogue_avx512.h"

#define MR 4
#define NP 2

/* Fully unrolled constant-trip loops, so the accumulator arrays can live in
 * registers. */
#define UNROLL _Pragma("GCC unroll 16")

static inline __attribute__((always_inline)) void tile(const sk_qgemm_u8s8_args *p,
                                                       int64_t m0, int64_t n0, int64_t nr,
                                                       const int R, const int P) {
  __m512i acc[MR][2 * NP];
  UNROLL for (int i = 0; i < R; ++i)
    UNROLL for (int h = 0; h < 2 * P; ++h) acc[i][h] = _mm512_setzero_si512();
  const int64_t lda = p->lda, ps = p->k4 * 64;
  const uint8_t *a = p->a + m0 * lda;
  const int8_t *b = p->b + (n0 / 16) * ps;
  for (int64_t g = 0; g < p->k4; ++g) {
    __m512i av[MR];
    UNROLL for (int i = 0; i < R; ++i) {
      const uint8_t *ai = a + i * lda + 4 * g;
      const int32_t a4 = g < p->kfull ? sk_q_load4(ai) : sk_q_tail4(ai, p->ktail);
      av[i] = _mm512_cvtepu8_epi16(_mm256_set1_epi32(a4));
    }
    UNROLL for (int h = 0; h < 2 * P; ++h) {
      const __m512i bh = _mm512_cvtepi8_epi16(
          _mm256_loadu_si256((const __m256i *)(b + (h / 2) * ps + g * 64 + 32 * (h % 2))));
      UNROLL for (int i = 0; i < R; ++i)
        acc[i][h] = _mm512_add_epi32(acc[i][h], _mm512_madd_epi16(av[i], bh));
    }
  }
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                         28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512i s0 = sk_q_sums16(p, n0, nr);
  const __m512i s1 = P > 1 ? sk_q_sums16(p, n0 + 16, nr - 16) : s0;
  UNROLL for (int i = 0; i < R; ++i)
    UNROLL for (int j = 0; j < P; ++j) {
      const __m512i x = acc[i][2 * j], y = acc[i][2 * j + 1];
      const __m512i s = _mm512_add_epi32(_mm512_permutex2var_epi32(x, even, y),
                                         _mm512_permutex2var_epi32(x, odd, y));
      sk_q_store16_avx512(p, m0 + i, n0 + 16 * j, s, j ? s1 : s0, sk_q_cols(nr - 16 * j));
    }
}

#define TILE(R, P)                                                                  \
  static void tile_##R##_##P(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t n0,   \
                             int64_t nr) {                                          \
    tile(p, m0, n0, nr, R, P);                                                      \
  }
TILE(1, 1) TILE(1, 2) TILE(2, 1) TILE(2, 2) TILE(3, 1) TILE(3, 2) TILE(4, 1) TILE(4, 2)

typedef void (*tile_fn)(const sk_qgemm_u8s8_args *, int64_t, int64_t, int64_t);
static const tile_fn tiles[MR][NP] = {
    {tile_1_1, tile_1_2}, {tile_2_1, tile_2_2}, {tile_3_1, tile_3_2}, {tile_4_1, tile_4_2}};

void sk_qgemm_u8s8_4x32c4__avx512(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr,
                                  int64_t n0, int64_t nr) {
  tiles[mr - 1][(nr + 15) / 16 - 1](p, m0, n0, nr);
}
