/*
 * spmm_u8s8/avx512vnni.c - AVX-512 VNNI micro-kernels.
 * spmm: MR = 32 activation rows. For each 1x4 weight block the 4 int8 weights
 * are broadcast as one dword and vpdpbusd'd (u8 activations x s8 weights)
 * with the packed dwords of 32 rows: 2 zmm per block, 4 blocks in flight with
 * their own accumulators. 32 rows (not 64) keep the packed tile in L1 for
 * BERT's K (768 / 4 * 32 * 4 B = 24 KiB of 48): measured 5-15% faster on
 * Zen 5 than 64 rows. vpdpbusd does not saturate: the int32 sums are exact
 * (wrapping only past int32).
 * spmv (M == 1): 16 blocks at a time, activation dwords gathered by column.
 */
#include <immintrin.h>
#include <string.h>

#include "../internal.h"

#define MR 32
#define NB 16

static inline int32_t load_dword(const int8_t *p) {
  int32_t v;
  memcpy(&v, p, 4);
  return v;
}

/* vpdpbusd through asm: with the intrinsic GCC 12 copied accumulators to
 * other registers and back on each step of the block loops (4 zmm moves per
 * g4 group), which took rename slots from loops that are throughput bound
 * (g4 at 90%, M = 128: 8% faster). */
static inline __attribute__((always_inline)) __m512i dpbusd(__m512i acc, __m512i x, __m512i w) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
  return acc;
}

/* acc - zp * row_sum, then int32 out or dequantized float out (as bits), for
 * 16 rows: zp and xs their zero points and row scales. A kernel may hold
 * those and e (what is constant over a call) in registers and locals: read
 * through t they are reloaded after every vector store, which may alias
 * anything (1x4 kernel, 90% 1x4 blocks, M = 128: linear 3% faster; the g4
 * kernel was 3% slower with them held, register pressure). */
typedef struct {
  const int32_t *row_sums;
  const float *wscale, *bias;
  int fp, relu;
} sk_ep;

static inline sk_ep ep_of(const sk_spmm_u8s8_tile *t) {
  const sk_ep e = {t->row_sums, t->wscale, t->bias, t->xscale != NULL, t->act == SK_ACT_RELU};
  return e;
}

static inline __m512i epilogue_r(__m512i acc, __m512i zp, __m512 xs, const sk_ep *e, int64_t n) {
  acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(zp, _mm512_set1_epi32(e->row_sums[n])));
  if (!e->fp) return acc;
  __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(xs, _mm512_set1_ps(e->wscale[n])));
  if (e->bias) f = _mm512_add_ps(f, _mm512_set1_ps(e->bias[n]));
  if (e->relu) f = _mm512_max_ps(_mm512_setzero_ps(), f);
  return _mm512_castps_si512(f);
}

static inline __m512i epilogue(__m512i acc, const sk_spmm_u8s8_tile *t, int64_t i,
                               int64_t n) {
  const sk_ep e = ep_of(t);
  return epilogue_r(acc, _mm512_load_si512((const void *)(t->zp + i)),
                    e.fp ? _mm512_loadu_ps(t->xscale + i) : _mm512_setzero_ps(), &e, n);
}

/* 16x16 transpose of 32-bit elements held in 16 zmm (rows r[0..15]). */
static inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    r[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
    r[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd);
  }
}

/* Output: a block is NB weight rows x MR activation rows, computed as
 * buf[j][i] and written to y[i * ldy + n + j]. Writing all 64 rows of a block
 * at once is slow when ldy * 4 is a multiple of 4 KiB (BERT's N = 768, 3072):
 * every row's line falls in the same L1 set. So blocks wait in a ring of G
 * slots and the write is skewed: at step b, row group g (16 rows) of block
 * b - g is written, which spreads the lines in flight over G sets. */
#define G (MR / 16)

/* stream: whole 64-byte lines of y by non-temporal stores (no read of the
 * line before the write, nothing evicted for it), see sk_spmm_u8s8_tile. */
static inline void write_group(const uint32_t *buf, int64_t ld, int64_t nb,
                               const sk_spmm_u8s8_tile *t, int64_t n, int64_t i0, int stream) {
  uint32_t *y = (uint32_t *)t->y;
  const int64_t rows = t->mr - i0 < 16 ? t->mr - i0 : 16;
  if (rows <= 0) return;
  if (rows == 16 && nb == NB) {
    __m512i r[16];
    for (int j = 0; j < 16; ++j) r[j] = _mm512_load_si512((const void *)(buf + j * ld + i0));
    transpose16(r);
    if (stream) {
      for (int i = 0; i < 16; ++i) {
        uint32_t *d = y + (i0 + i) * t->ldy + n;
        if (((uintptr_t)d & 63) == 0) _mm512_stream_si512((void *)d, r[i]);
        else _mm512_storeu_si512((void *)d, r[i]);
      }
      return;
    }
    for (int i = 0; i < 16; ++i) _mm512_storeu_si512((void *)(y + (i0 + i) * t->ldy + n), r[i]);
    return;
  }
  for (int64_t i = i0; i < i0 + rows; ++i) {
    uint32_t *yr = y + i * t->ldy + n;
    for (int64_t j = 0; j < nb; ++j) yr[j] = buf[j * ld + i];
  }
}

/* One weight row against the MR-row tile: U blocks in flight, each with its
 * own R = MR / 16 accumulators, so U * R independent vpdpbusd chains. */
#define R (MR / 16)
#define U 4

#define DEFINE_SPMM(NAME, IDX_T)                                                \
  static void NAME(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {        \
    const IDX_T *cols = (const IDX_T *)t->cols;                                 \
    __attribute__((aligned(64))) uint32_t ring[G][NB * MR];                     \
    const int64_t blocks = (n1 - n0 + NB - 1) / NB;                             \
    const uint8_t *xp = t->xp;                                                  \
    const sk_ep ep = ep_of(t);                                                  \
    __m512i zpv[R];                                                             \
    __m512 xsv[R];                                                              \
    _Pragma("GCC unroll 8") for (int r = 0; r < R; ++r) {                       \
      zpv[r] = _mm512_load_si512((const void *)(t->zp + 16 * r));               \
      xsv[r] = ep.fp ? _mm512_loadu_ps(t->xscale + 16 * r) : _mm512_setzero_ps(); \
    }                                                                           \
    for (int64_t blk = 0; blk < blocks + G - 1; ++blk) {                        \
      if (blk < blocks) {                                                       \
        const int64_t n = n0 + blk * NB, nb = n1 - n < NB ? n1 - n : NB;        \
        uint32_t *buf = ring[blk % G];                                          \
        for (int64_t j = 0; j < nb; ++j) {                                      \
          __m512i acc[U][R];                                                    \
          _Pragma("GCC unroll 8") for (int u = 0; u < U; ++u)                   \
          _Pragma("GCC unroll 8") for (int r = 0; r < R; ++r)                   \
            acc[u][r] = _mm512_setzero_si512();                                 \
          int64_t p = t->indptr[n + j];                                         \
          const int64_t e = t->indptr[n + j + 1];                               \
          for (; p + U <= e; p += U) {                                          \
            /* U weight dwords in one load, broadcast by vpermd: a broadcast  \
             * from memory would take a load slot, and loads are the limit */  \
            const __m512i wv = _mm512_castsi128_si512(                          \
                _mm_loadu_si128((const __m128i *)(t->values + 4 * p)));         \
            _Pragma("GCC unroll 8") for (int u = 0; u < U; ++u) {               \
              const uint8_t *xc = xp + (int64_t)cols[p + u] * (MR * 4);         \
              const __m512i w = _mm512_permutexvar_epi32(_mm512_set1_epi32(u), wv); \
              _Pragma("GCC unroll 8") for (int r = 0; r < R; ++r)               \
                acc[u][r] = dpbusd(                                             \
                    acc[u][r], _mm512_load_si512((const void *)(xc + 64 * r)), w); \
            }                                                                   \
          }                                                                     \
          for (; p < e; ++p) {                                                  \
            const uint8_t *xc = xp + (int64_t)cols[p] * (MR * 4);               \
            const __m512i w = _mm512_set1_epi32(load_dword(t->values + 4 * p)); \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; ++r)                 \
              acc[0][r] = dpbusd(                                               \
                  acc[0][r], _mm512_load_si512((const void *)(xc + 64 * r)), w); \
          }                                                                     \
          uint32_t *b = buf + j * MR;                                           \
          _Pragma("GCC unroll 8") for (int r = 0; r < R; ++r) {                 \
            __m512i a = acc[0][r];                                              \
            _Pragma("GCC unroll 8") for (int u = 1; u < U; ++u)                 \
              a = _mm512_add_epi32(a, acc[u][r]);                               \
            _mm512_store_si512((void *)(b + 16 * r),                             \
                               epilogue_r(a, zpv[r], xsv[r], &ep, n + j));      \
          }                                                                     \
        }                                                                       \
      }                                                                         \
      for (int64_t g = 0; g < G; ++g) {                                         \
        const int64_t wb = blk - g;                                             \
        if (wb < 0 || wb >= blocks) continue;                                   \
        const int64_t n = n0 + wb * NB, nb = n1 - n < NB ? n1 - n : NB;         \
        write_group(ring[wb % G], MR, nb, t, n, 16 * g, t->stream_y);           \
      }                                                                         \
    }                                                                           \
    if (t->stream_y) _mm_sfence();                                              \
  }

/* spmv (M == 1) runs over the blocks of many rows as one stream, so there is
 * no per-row loop to mispredict and no per-row horizontal sum: 16 blocks at a
 * time, activation dwords looked up by column, one vpdpbusd gives 16 block
 * dot products, an in-register prefix sum turns them into running totals kept
 * in pre[]; a row's sum is then pre[end] - pre[begin] (wrapping int32, exact),
 * taken for 16 rows at once. */
#define SEG 2048 /* blocks per segment of rows (pre[] lives on the stack) */

static inline __m512i prefix16(__m512i v) {
  const __m512i z = _mm512_setzero_si512();
  v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, z, 15));
  v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, z, 14));
  v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, z, 12));
  return _mm512_add_epi32(v, _mm512_alignr_epi32(v, z, 8));
}

/* Activation dwords by column from registers instead of a gather (a zmm
 * gather of 16 dwords costs ~10 cycles here) when the row is short
 * (ceil(K/4) <= 256 dwords = 16 zmm): vpermi2d picks from every pair of
 * registers (32 dwords) by the low 5 bits, a tree of blends on bits 5, 6, 7
 * picks the pair. P = pairs, a constant of each instantiation. */
#define TAB_MAX_PAIRS 8
static inline __attribute__((always_inline)) __m512i xlookup(const __m512i *tab, const int P,
                                                             __m512i idx) {
  __m512i r[TAB_MAX_PAIRS];
  for (int j = 0; j < P; ++j) r[j] = _mm512_permutex2var_epi32(tab[2 * j], idx, tab[2 * j + 1]);
  int bit = 32;
  for (int cnt = P; cnt > 1; cnt = (cnt + 1) / 2, bit <<= 1) {
    const __mmask16 hi = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(bit));
    for (int j = 0; 2 * j < cnt; ++j)
      r[j] = 2 * j + 1 < cnt ? _mm512_mask_blend_epi32(hi, r[2 * j], r[2 * j + 1]) : r[2 * j];
  }
  return r[0];
}

/* y[n] for rows [n, n + 16) of a segment: sums pre[end] - pre[begin], less
 * zp * row_sum, then int32 or the dequantized float. */
static inline void spmv_out16(const sk_spmm_u8s8_tile *t, int64_t n, int64_t base,
                              const uint32_t *pre) {
  const __m512i bv = _mm512_set1_epi64(base);
  const __m256i e0 = _mm512_cvtepi64_epi32(
      _mm512_sub_epi64(_mm512_loadu_si512((const void *)(t->indptr + n + 1)), bv));
  const __m256i e1 = _mm512_cvtepi64_epi32(
      _mm512_sub_epi64(_mm512_loadu_si512((const void *)(t->indptr + n + 9)), bv));
  const __m512i pe = _mm512_i32gather_epi32(
      _mm512_inserti64x4(_mm512_castsi256_si512(e0), e1, 1), (const void *)pre, 4);
  const __m512i pb = _mm512_alignr_epi32(pe, _mm512_set1_epi32((int)pre[t->indptr[n] - base]), 15);
  const __m512i v = _mm512_sub_epi32(
      _mm512_sub_epi32(pe, pb),
      _mm512_mullo_epi32(_mm512_set1_epi32(t->zp[0]),
                         _mm512_loadu_si512((const void *)(t->row_sums + n))));
  if (t->xscale == NULL) {
    _mm512_storeu_si512((void *)((int32_t *)t->y + n), v);
    return;
  }
  __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(_mm512_set1_ps(t->xscale[0]),
                                                                _mm512_loadu_ps(t->wscale + n)));
  if (t->bias) f = _mm512_add_ps(f, _mm512_loadu_ps(t->bias + n));
  if (t->act == SK_ACT_RELU) f = _mm512_max_ps(_mm512_setzero_ps(), f);
  _mm512_storeu_ps((float *)t->y + n, f);
}

static inline void spmv_out(const sk_spmm_u8s8_tile *t, int64_t n, uint32_t s) {
  const int32_t v = (int32_t)(s - (uint32_t)t->zp[0] * (uint32_t)t->row_sums[n]);
  if (t->xscale == NULL) {
    ((int32_t *)t->y)[n] = v;
    return;
  }
  float f = (float)v * (t->xscale[0] * t->wscale[n]);
  if (t->bias) f += t->bias[n];
  if (t->act == SK_ACT_RELU && f < 0.0f) f = 0.0f;
  ((float *)t->y)[n] = f;
}

/* The stream over rows [n0, n1): segments of rows whose units (blocks or
 * groups) fit in pre[]; DOT(p, k) gives the 16 dot products of units p.. (k:
 * the valid ones); a row longer than a segment is summed on its own. Full
 * steps pass DOT a constant mask (mask arithmetic in the loop cost 1.5x on
 * the lookups), except for gathers: there a constant mask let GCC reuse the
 * gather's destination, one dependency chain through every gather (2x). */
#define SPMV_STREAM(DOT, CONST_FULL)                                            \
  do {                                                                          \
    const __m512i zero = _mm512_setzero_si512(), last = _mm512_set1_epi32(15);  \
    __attribute__((aligned(64))) uint32_t pre[SEG + 16];                        \
    for (int64_t ra = n0; ra < n1;) {                                           \
      /* rows [ra, rb) whose units fit in one segment (at least one row) */    \
      const int64_t base = t->indptr[ra];                                       \
      int64_t rb = ra + 1;                                                      \
      while (rb < n1 && t->indptr[rb + 1] - base <= SEG) ++rb;                  \
      const int64_t end = t->indptr[rb];                                        \
      if (end - base > SEG) { /* one long row: plain accumulation */           \
        __m512i acc = zero;                                                     \
        for (int64_t p = base; p < end; p += 16) {                              \
          const __mmask16 k = end - p >= 16 ? (__mmask16)0xffff                 \
                                            : (__mmask16)((1u << (end - p)) - 1); \
          acc = _mm512_add_epi32(acc, DOT(p, k));                               \
        }                                                                       \
        spmv_out(t, ra, (uint32_t)_mm512_reduce_add_epi32(acc));                \
        ra = rb;                                                                \
        continue;                                                               \
      }                                                                         \
      __m512i carry = zero;                                                     \
      pre[0] = 0;                                                               \
      int64_t p = base;                                                         \
      for (; p + 16 <= end; p += 16) {                                          \
        const __mmask16 full = (CONST_FULL) ? (__mmask16)0xffff                  \
                               : (__mmask16)(end - p >= 16 ? 0xffff : 0);       \
        const __m512i s = _mm512_add_epi32(prefix16(DOT(p, full)), carry);      \
        _mm512_storeu_si512((void *)(pre + 1 + (p - base)), s);                 \
        carry = _mm512_permutexvar_epi32(last, s);                              \
      }                                                                         \
      if (p < end) {                                                            \
        const __mmask16 k = (__mmask16)((1u << (end - p)) - 1);                 \
        const __m512i s = _mm512_add_epi32(prefix16(DOT(p, k)), carry);         \
        _mm512_storeu_si512((void *)(pre + 1 + (p - base)), s);                 \
      }                                                                         \
      int64_t n = ra;                                                           \
      for (; n + 16 <= rb; n += 16) spmv_out16(t, n, base, pre);                \
      for (; n < rb; ++n)                                                       \
        spmv_out(t, n, pre[t->indptr[n + 1] - base] - pre[t->indptr[n] - base]); \
      ra = rb;                                                                  \
    }                                                                           \
  } while (0)

static inline __m512i load_cols16(const uint16_t *p, __mmask16 k) {
  return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p));
}
static inline __m512i load_cols32(const int32_t *p, __mmask16 k) {
  return _mm512_maskz_loadu_epi32(k, p);
}

/* 1x4 blocks; P = 0: gather the dwords (long rows), else look them up. */
#define LOAD_COLS(p, k) \
  _Generic((p), const uint16_t *: load_cols16, const int32_t *: load_cols32)(p, k)
#define DEFINE_SPMV(NAME, IDX_T, P)                                             \
  static void NAME(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {        \
    const IDX_T *cols = (const IDX_T *)t->cols;                                 \
    __m512i tab[2 * TAB_MAX_PAIRS];                                             \
    for (int j = 0; j < 2 * (P); ++j) /* dwords past the row: 0 */             \
      tab[j] = _mm512_maskz_loadu_epi32(                                        \
          t->xp_dwords - 16 * j >= 16 ? (__mmask16)0xffff                       \
          : t->xp_dwords - 16 * j <= 0 ? (__mmask16)0                           \
          : (__mmask16)((1u << (t->xp_dwords - 16 * j)) - 1),                   \
          t->xp + 64 * j);                                                      \
    (void)tab;                                                                  \
    _Pragma("GCC diagnostic push")                                              \
    _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")                 \
    SPMV_STREAM(SPMV_DOT_##P, (P) != 0);                                        \
    _Pragma("GCC diagnostic pop")                                               \
  }
#define SPMV_XV(p, k, P)                                                        \
  ((P) ? xlookup(tab, (P) ? (P) : 1, LOAD_COLS(cols + (p), k))                  \
       : _mm512_mask_i32gather_epi32(zero, k, LOAD_COLS(cols + (p), k), t->xp, 4))
#define SPMV_DOT(p, k, P)                                                       \
  _mm512_dpbusd_epi32(zero, SPMV_XV(p, k, P), _mm512_maskz_loadu_epi32(k, t->values + 4 * (p)))
#define SPMV_DOT_0(p, k) SPMV_DOT(p, k, 0)
#define SPMV_DOT_2(p, k) SPMV_DOT(p, k, 2)
#define SPMV_DOT_4(p, k) SPMV_DOT(p, k, 4)
#define SPMV_DOT_6(p, k) SPMV_DOT(p, k, 6)
#define SPMV_DOT_8(p, k) SPMV_DOT(p, k, 8)

/* g4 at M == 1 (AVX-512 VBMI, checked by the driver): the same stream over
 * groups; a group's 4 activation bytes are looked up from the row held in
 * registers (K <= 1024: 8 pairs of zmm). The 64 column indices of 16 groups
 * split (vpermi2b) into low bytes, which vpermi2b reads (bits 0-6) in every
 * 128-byte window of the row, and high bytes; a tree of blends on bit 7 of the
 * low byte and bits 0, 1 of the high byte picks the window. */
#define VBMI __attribute__((target("avx512vbmi")))

static inline VBMI __attribute__((always_inline)) __m512i blookup(const __m512i *tab,
                                                                   const int P, __m512i lo,
                                                                   __m512i hi) {
  __m512i r[TAB_MAX_PAIRS];
  for (int j = 0; j < P; ++j) r[j] = _mm512_permutex2var_epi8(tab[2 * j], lo, tab[2 * j + 1]);
  const __mmask64 sel[3] = {_mm512_movepi8_mask(lo),
                            _mm512_test_epi8_mask(hi, _mm512_set1_epi8(1)),
                            _mm512_test_epi8_mask(hi, _mm512_set1_epi8(2))};
  for (int cnt = P, b = 0; cnt > 1; cnt = (cnt + 1) / 2, ++b)
    for (int j = 0; 2 * j < cnt; ++j)
      r[j] = 2 * j + 1 < cnt ? _mm512_mask_blend_epi8(sel[b], r[2 * j], r[2 * j + 1]) : r[2 * j];
  return r[0];
}

/* The 16 group dot products of groups p.. (k: the valid ones). */
static inline VBMI __attribute__((always_inline)) __m512i g4_dot(
    const uint16_t *kidx, const int8_t *values, int64_t p, __mmask16 k, const __m512i *tab,
    const int P, __m512i even, __m512i odd) {
  /* 4 words per valid group (k: 1..16 low bits) */
  const __mmask64 kw = ~(__mmask64)0 >> (64 - 4 * __builtin_popcount(k));
  const __m512i k0 = _mm512_maskz_loadu_epi16((__mmask32)kw, kidx + 4 * p);
  const __m512i k1 = _mm512_maskz_loadu_epi16((__mmask32)(kw >> 32), kidx + 4 * p + 32);
  const __m512i xv = blookup(tab, P, _mm512_permutex2var_epi8(k0, even, k1),
                             _mm512_permutex2var_epi8(k0, odd, k1));
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(), xv,
                             _mm512_maskz_loadu_epi32(k, values + 4 * p));
}
#define G4_SPMV_DOT(p, k) g4_dot(kidx, t->values, p, k, tab, GP, even, odd)

#define DEFINE_G4_SPMV(NAME, P)                                                 \
  static VBMI void NAME(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {   \
    enum { GP = P };                                                            \
    const uint16_t *kidx = (const uint16_t *)t->cols;                           \
    __m512i even, odd, tab[2 * TAB_MAX_PAIRS];                                  \
    {                                                                           \
      __attribute__((aligned(64))) uint8_t e[64], o[64];                        \
      for (int i = 0; i < 64; ++i) e[i] = (uint8_t)(2 * i), o[i] = (uint8_t)(2 * i + 1); \
      even = _mm512_load_si512((const void *)e);                                \
      odd = _mm512_load_si512((const void *)o);                                 \
    }                                                                           \
    for (int j = 0; j < 2 * P; ++j) { /* bytes past the row: 0 */              \
      const int64_t left = t->xp_bytes - 64 * j;                                \
      tab[j] = _mm512_maskz_loadu_epi8(left >= 64 ? ~(__mmask64)0               \
                                       : left <= 0 ? (__mmask64)0               \
                                       : ((__mmask64)1 << left) - 1,            \
                                       t->xp + 64 * j);                         \
    }                                                                           \
    SPMV_STREAM(G4_SPMV_DOT, 1);                                                \
  }

DEFINE_G4_SPMV(g4_spmv_p2, 2)
DEFINE_G4_SPMV(g4_spmv_p4, 4)
DEFINE_G4_SPMV(g4_spmv_p6, 6)
DEFINE_G4_SPMV(g4_spmv_p8, 8)

void sk_spmv_u8s8_g4_1x4__avx512vbmi(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  const int64_t windows = (t->xp_bytes + 127) / 128; /* 1..8, the driver checks */
  if (windows <= 2) g4_spmv_p2(t, n0, n1);
  else if (windows <= 4) g4_spmv_p4(t, n0, n1);
  else if (windows <= 6) g4_spmv_p6(t, n0, n1);
  else g4_spmv_p8(t, n0, n1);
}

/* g4 at M == 1 for 1024 < K <= 32768 (AVX-512 VBMI): the row (xp, zero-padded
 * by the driver to whole 128-byte windows) stays in memory and each row is
 * summed on its own, 16 groups a step. A row's groups are sorted by k, so the
 * 16 groups of a step need only the windows from that of the first group's
 * first column to that of the last group's largest: each is one vpermi2b of
 * its two zmm from L1, merged into the bytes whose column lies in it (window
 * id k >> 7, one byte). The padded slots of a row's last group (value 0, k 0)
 * may read anything. */
static VBMI void g4_spmv_wide(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  const uint16_t *kidx = (const uint16_t *)t->cols;
  __m512i even, odd;
  {
    __attribute__((aligned(64))) uint8_t e[64], o[64];
    for (int i = 0; i < 64; ++i) e[i] = (uint8_t)(2 * i), o[i] = (uint8_t)(2 * i + 1);
    even = _mm512_load_si512((const void *)e);
    odd = _mm512_load_si512((const void *)o);
  }
  const __m512i one = _mm512_set1_epi8(1);
  for (int64_t n = n0; n < n1; ++n) {
    __m512i acc = _mm512_setzero_si512();
    const int64_t e = t->indptr[n + 1];
    for (int64_t p = t->indptr[n]; p < e; p += 16) {
      const int64_t cnt = e - p < 16 ? e - p : 16;
      const __mmask16 k = (__mmask16)((1u << cnt) - 1);
      const __mmask64 kw = ~(__mmask64)0 >> (64 - 4 * cnt);
      const __m512i k0 = _mm512_maskz_loadu_epi16((__mmask32)kw, kidx + 4 * p);
      const __m512i k1 = _mm512_maskz_loadu_epi16((__mmask32)(kw >> 32), kidx + 4 * p + 32);
      const __m512i lo = _mm512_permutex2var_epi8(k0, even, k1);
      const __m512i hi = _mm512_permutex2var_epi8(k0, odd, k1);
      /* window = k >> 7 = 2 * hi + bit 7 of lo */
      const __m512i win = _mm512_mask_add_epi8(_mm512_add_epi8(hi, hi), _mm512_movepi8_mask(lo),
                                               _mm512_add_epi8(hi, hi), one);
      const uint16_t *last = kidx + 4 * (p + cnt - 1);
      uint16_t kmax = last[0];
      for (int j = 1; j < 4; ++j) kmax = last[j] > kmax ? last[j] : kmax;
      const int w0 = kidx[4 * p] >> 7, w1 = kmax >> 7;
      __m512i xv = _mm512_setzero_si512();
      for (int w = w0; w <= w1; ++w) {
        const __m512i r = _mm512_permutex2var_epi8(
            _mm512_load_si512((const void *)(t->xp + 128 * w)), lo,
            _mm512_load_si512((const void *)(t->xp + 128 * w + 64)));
        xv = _mm512_mask_mov_epi8(xv, _mm512_cmpeq_epi8_mask(win, _mm512_set1_epi8((char)w)), r);
      }
      acc = dpbusd(acc, xv, _mm512_maskz_loadu_epi32(k, t->values + 4 * p));
    }
    spmv_out(t, n, (uint32_t)_mm512_reduce_add_epi32(acc));
  }
}

VBMI void sk_spmv_u8s8_g4_wide__avx512vbmi(const sk_spmm_u8s8_tile *t, int64_t n0,
                                           int64_t n1) {
  g4_spmv_wide(t, n0, n1);
}

/* The small tile: MR = 16 rows (one zmm per block), for M below 64 and the
 * rows left over past the 32-row tiles. 4 accumulators over blocks p % 4. */
#define DEFINE_SPMM16(NAME, IDX_T)                                              \
  static void NAME(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {        \
    const IDX_T *cols = (const IDX_T *)t->cols;                                 \
    __attribute__((aligned(64))) uint32_t buf[16 * 16];                         \
    const __m512i zp = _mm512_load_si512((const void *)t->zp);                  \
    const __m512 xs = t->xscale ? _mm512_loadu_ps(t->xscale) : _mm512_setzero_ps(); \
    uint32_t *y = (uint32_t *)t->y;                                             \
    for (int64_t n = n0; n < n1; n += 16) {                                     \
      const int64_t nb = n1 - n < 16 ? n1 - n : 16;                             \
      __m512i r[16];                                                            \
      for (int64_t j = 0; j < nb; ++j) {                                        \
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;         \
        int64_t p = t->indptr[n + j];                                           \
        const int64_t e = t->indptr[n + j + 1];                                 \
        const uint8_t *xp = t->xp;                                              \
        for (; p + 4 <= e; p += 4) {                                            \
          const __m512i wv = _mm512_castsi128_si512(                            \
              _mm_loadu_si128((const __m128i *)(t->values + 4 * p)));           \
          a0 = dpbusd(a0, _mm512_load_si512((const void *)(xp + (int64_t)cols[p] * 64)), \
                                   _mm512_permutexvar_epi32(_mm512_set1_epi32(0), wv)); \
          a1 = dpbusd(a1, _mm512_load_si512((const void *)(xp + (int64_t)cols[p + 1] * 64)), \
                                   _mm512_permutexvar_epi32(_mm512_set1_epi32(1), wv)); \
          a2 = dpbusd(a2, _mm512_load_si512((const void *)(xp + (int64_t)cols[p + 2] * 64)), \
                                   _mm512_permutexvar_epi32(_mm512_set1_epi32(2), wv)); \
          a3 = dpbusd(a3, _mm512_load_si512((const void *)(xp + (int64_t)cols[p + 3] * 64)), \
                                   _mm512_permutexvar_epi32(_mm512_set1_epi32(3), wv)); \
        }                                                                       \
        for (; p < e; ++p)                                                      \
          a0 = dpbusd(a0, _mm512_load_si512((const void *)(xp + (int64_t)cols[p] * 64)), \
                                   _mm512_set1_epi32(load_dword(t->values + 4 * p))); \
        __m512i acc = _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)); \
        acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(zp, _mm512_set1_epi32(t->row_sums[n + j]))); \
        if (t->xscale) {                                                        \
          __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc),                     \
                                   _mm512_mul_ps(xs, _mm512_set1_ps(t->wscale[n + j]))); \
          if (t->bias) f = _mm512_add_ps(f, _mm512_set1_ps(t->bias[n + j]));    \
          if (t->act == SK_ACT_RELU) f = _mm512_max_ps(_mm512_setzero_ps(), f); \
          acc = _mm512_castps_si512(f);                                         \
        }                                                                       \
        r[j] = acc;                                                             \
      }                                                                         \
      if (nb == 16 && t->mr == 16) {                                            \
        transpose16(r);                                                         \
        for (int i = 0; i < 16; ++i) _mm512_storeu_si512((void *)(y + i * t->ldy + n), r[i]); \
      } else {                                                                  \
        for (int64_t j = 0; j < nb; ++j) _mm512_store_si512((void *)(buf + j * 16), r[j]); \
        for (int64_t i = 0; i < t->mr; ++i)                                     \
          for (int64_t j = 0; j < nb; ++j) y[i * t->ldy + n + j] = buf[j * 16 + i]; \
      }                                                                         \
    }                                                                           \
  }

/* The 1x4 tile of rows [0, mr) of x (u8 rows ldx apart), as driver.c's
 * pack_tile for a tile of `rows` rows (a multiple of 16): xp[(c * rows + i) * 4
 * + j] = x[i, 4c + j], zero past K and past mr. 16 rows x 16 dwords at a time through the 16x16
 * transpose instead of a 4-byte copy per dword (BERT, M = 128: 7.6 -> ~2 us). */
void sk_pack_1x4_tile__avx512vnni(const uint8_t *x, int64_t ldx, int64_t k, int64_t mr,
                                  int rows, uint8_t *xp) {
  const int64_t kq = (k + 3) / 4;
  for (int64_t i0 = 0; i0 < rows; i0 += 16)
    for (int64_t c0 = 0; c0 < kq; c0 += 16) {
      const int64_t kb = k - 4 * c0 < 64 ? k - 4 * c0 : 64; /* bytes of x here */
      const __mmask64 km = kb == 64 ? ~(__mmask64)0 : ((__mmask64)1 << kb) - 1;
      __m512i r[16];
      for (int64_t i = 0; i < 16; ++i)
        r[i] = i0 + i < mr ? _mm512_maskz_loadu_epi8(km, x + (i0 + i) * ldx + 4 * c0)
                           : _mm512_setzero_si512();
      transpose16(r);
      const int64_t nc = kq - c0 < 16 ? kq - c0 : 16;
      for (int64_t c = 0; c < nc; ++c)
        _mm512_storeu_si512((void *)(xp + ((c0 + c) * rows + i0) * 4), r[c]);
    }
}

/* g4 (unstructured weights as groups of 4 nonzeros at any k, sk_csr_s8_g4):
 * the tile is X transposed, 64 rows of one k in one zmm. A group's 4 columns
 * are loaded and byte-interleaved (unpack epi8, then epi16) into 4 zmm of
 * dwords (x[i, k0], x[i, k1], x[i, k2], x[i, k3]), one vpdpbusd each with the
 * group's 4 weights broadcast: 4 loads, 8 shuffles, 4 vpdpbusd for 4 useful
 * nonzeros x 64 rows, where 1x4 blocks at 90% unstructured need ~14 loads and
 * vpdpbusd for the same work. unpack works inside 128-bit lanes, so the
 * interleave returns row 16q + 4L + d in lane 4L + d of result q when byte
 * 16L + 4q + d holds it: the driver packs rows in that order (sk_g4_pos64),
 * and results come out in natural order. */
#define G4_MR 64
#define G4_RING (G4_MR / 16)

/* One group: 4 columns (one 8-byte load: loads are the limit), 4 weights ->
 * the 4 accumulators of 64 rows. */
static inline __attribute__((always_inline)) void g4_step(const uint8_t *xt, const uint16_t *kp,
                                                          const int8_t *wp, __m512i a[4]) {
  uint64_t k4;
  memcpy(&k4, kp, 8);
  const __m512i xa = _mm512_load_si512((const void *)(xt + (k4 & 0xffff) * G4_MR));
  const __m512i xb = _mm512_load_si512((const void *)(xt + ((k4 >> 16) & 0xffff) * G4_MR));
  const __m512i xc = _mm512_load_si512((const void *)(xt + ((k4 >> 32) & 0xffff) * G4_MR));
  const __m512i xd = _mm512_load_si512((const void *)(xt + (k4 >> 48) * G4_MR));
  const __m512i abl = _mm512_unpacklo_epi8(xa, xb), abh = _mm512_unpackhi_epi8(xa, xb);
  const __m512i cdl = _mm512_unpacklo_epi8(xc, xd), cdh = _mm512_unpackhi_epi8(xc, xd);
  const __m512i w = _mm512_set1_epi32(load_dword(wp));
  a[0] = dpbusd(a[0], _mm512_unpacklo_epi16(abl, cdl), w);
  a[1] = dpbusd(a[1], _mm512_unpackhi_epi16(abl, cdl), w);
  a[2] = dpbusd(a[2], _mm512_unpacklo_epi16(abh, cdh), w);
  a[3] = dpbusd(a[3], _mm512_unpackhi_epi16(abh, cdh), w);
}

void sk_spmm_u8s8_g4_64x4__avx512vnni(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  const uint16_t *kidx = (const uint16_t *)t->cols;
  const int8_t *values = t->values;
  const uint8_t *xt = t->xp;
  __attribute__((aligned(64))) uint32_t ring[G4_RING][NB * G4_MR];
  const int64_t blocks = (n1 - n0 + NB - 1) / NB;
  for (int64_t blk = 0; blk < blocks + G4_RING - 1; ++blk) {
    if (blk < blocks) {
      const int64_t n = n0 + blk * NB, nb = n1 - n < NB ? n1 - n : NB;
      uint32_t *buf = ring[blk % G4_RING];
      for (int64_t j = 0; j < nb; ++j) {
        __m512i a[4], b[4]; /* two groups in flight */
        for (int q = 0; q < 4; ++q) a[q] = b[q] = _mm512_setzero_si512();
        int64_t p = t->indptr[n + j];
        const int64_t e = t->indptr[n + j + 1];
        for (; p + 2 <= e; p += 2) {
          g4_step(xt, kidx + 4 * p, values + 4 * p, a);
          g4_step(xt, kidx + 4 * p + 4, values + 4 * p + 4, b);
        }
        if (p < e) g4_step(xt, kidx + 4 * p, values + 4 * p, a);
        for (int q = 0; q < 4; ++q)
          _mm512_store_si512((void *)(buf + j * G4_MR + 16 * q),
                             epilogue(_mm512_add_epi32(a[q], b[q]), t, 16 * q, n + j));
      }
    }
    for (int64_t g = 0; g < G4_RING; ++g) {
      const int64_t wb = blk - g;
      if (wb < 0 || wb >= blocks) continue;
      const int64_t n = n0 + wb * NB, nb = n1 - n < NB ? n1 - n : NB;
      write_group(ring[wb % G4_RING], G4_MR, nb, t, n, 16 * g, t->stream_y);
    }
  }
  if (t->stream_y) _mm_sfence(); /* the streamed lines before anyone reads y */
}

/* The g4 tile: rows [0, mr) of x into xt[c * 64 + sk_g4_pos64(i)] for c < k,
 * zero rows past mr. Per 64 columns: each 16-row block is loaded as 16 zmm,
 * transposed as dwords (zmm c: 4 columns 4c..4c+3 of the 16 rows), vpshufb'd
 * inside 128-bit lanes into 4 rows x 4 columns -> 4 columns x 4 rows, and the
 * 4 row blocks are merged with a 4x4 dword transpose inside the lanes, which
 * puts row 16r + 4L + d at byte 16L + 4r + d of each column's line. */
void sk_g4_pack64__avx512vnni(const uint8_t *x, int64_t ldx, int64_t k, int64_t mr,
                              uint8_t *xt) {
  const __m512i bytes_by_col = _mm512_broadcast_i32x4(
      _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
  for (int64_t c0 = 0; c0 < k; c0 += 64) {
    const int64_t kc = k - c0 < 64 ? k - c0 : 64;
    const __mmask64 km = kc == 64 ? ~(__mmask64)0 : (((__mmask64)1 << kc) - 1);
    __m512i blk[4][16];
    for (int r = 0; r < 4; ++r) {
      for (int i = 0; i < 16; ++i) {
        const int64_t row = 16 * r + i;
        blk[r][i] = row < mr ? _mm512_maskz_loadu_epi8(km, x + row * ldx + c0)
                             : _mm512_setzero_si512();
      }
      transpose16(blk[r]);
      for (int i = 0; i < 16; ++i) blk[r][i] = _mm512_shuffle_epi8(blk[r][i], bytes_by_col);
    }
    for (int c = 0; c < 16 && 4 * c < kc; ++c) {
      const __m512i t0 = _mm512_unpacklo_epi32(blk[0][c], blk[1][c]);
      const __m512i t1 = _mm512_unpackhi_epi32(blk[0][c], blk[1][c]);
      const __m512i t2 = _mm512_unpacklo_epi32(blk[2][c], blk[3][c]);
      const __m512i t3 = _mm512_unpackhi_epi32(blk[2][c], blk[3][c]);
      const __m512i o[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2),
                            _mm512_unpacklo_epi64(t1, t3), _mm512_unpackhi_epi64(t1, t3)};
      for (int j = 0; j < 4 && 4 * c + j < kc; ++j)
        _mm512_store_si512((void *)(xt + (c0 + 4 * c + j) * 64), o[j]);
    }
  }
}

DEFINE_SPMM16(spmm16_u16, uint16_t)
DEFINE_SPMM16(spmm16_i32, int32_t)
DEFINE_SPMM(spmm_u16, uint16_t)
DEFINE_SPMM(spmm_i32, int32_t)
DEFINE_SPMV(spmv_u16_p0, uint16_t, 0)
DEFINE_SPMV(spmv_u16_p2, uint16_t, 2)
DEFINE_SPMV(spmv_u16_p4, uint16_t, 4)
DEFINE_SPMV(spmv_u16_p6, uint16_t, 6)
DEFINE_SPMV(spmv_u16_p8, uint16_t, 8)
DEFINE_SPMV(spmv_i32_p0, int32_t, 0)
DEFINE_SPMV(spmv_i32_p2, int32_t, 2)
DEFINE_SPMV(spmv_i32_p4, int32_t, 4)
DEFINE_SPMV(spmv_i32_p6, int32_t, 6)
DEFINE_SPMV(spmv_i32_p8, int32_t, 8)

void sk_spmm_u8s8_32x1c4__avx512vnni(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmm_u16(t, n0, n1); else spmm_i32(t, n0, n1);
}

void sk_spmm_u8s8_16x1c4__avx512vnni(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmm16_u16(t, n0, n1); else spmm16_i32(t, n0, n1);
}

void sk_spmv_u8s8_1x1c4__avx512vnni(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  /* pairs of table registers, rounded up to even (unused tables are zero) */
  const int64_t pairs = (t->xp_dwords + 31) / 32, sel = pairs > TAB_MAX_PAIRS ? 0 : (pairs + 1) / 2;
  if (t->index_bytes == 2) {
    switch (sel) {
      case 0: spmv_u16_p0(t, n0, n1); return;
      case 1: spmv_u16_p2(t, n0, n1); return;
      case 2: spmv_u16_p4(t, n0, n1); return;
      case 3: spmv_u16_p6(t, n0, n1); return;
      default: spmv_u16_p8(t, n0, n1); return;
    }
  }
  switch (sel) {
    case 0: spmv_i32_p0(t, n0, n1); return;
    case 1: spmv_i32_p2(t, n0, n1); return;
    case 2: spmv_i32_p4(t, n0, n1); return;
    case 3: spmv_i32_p6(t, n0, n1); return;
    default: spmv_i32_p8(t, n0, n1); return;
  }
}

/* g4 for small M (2..16 rows, AVX-512 VBMI): the tile is X transposed in
 * natural row order, 16 bytes per k (xt[k * 16 + i]). A group's 4 columns
 * (16 rows each) are loaded into the lanes of one zmm (an xmm load and
 * three inserts from memory) and one vpermb turns them into dwords
 * (x[i, k0], x[i, k1], x[i, k2], x[i, k3]) for the 16 rows: one vpdpbusd per
 * group of 4 nonzeros, where the 16-row 1x4 kernel needs one per kept block
 * (~3.4 per 4 nonzeros at 90% unstructured). ~2.7 cycles per group here,
 * most of it the loads and inserts; slower or the same (exact, measured):
 * two 256-bit pairs and vpermt2b, four broadcasts and blends, merge-masked
 * loads (1.4x slower), two vpermt2b halves with two vpdpbusd, weights as
 * embedded broadcasts, 16-bit index loads, 2 groups in flight instead of 4. */
#define G4S_MR 16

static inline VBMI __attribute__((always_inline)) __m512i g4s_x(const uint8_t *xt,
                                                                 const uint16_t *kp,
                                                                 __m512i perm) {
  uint64_t k4;
  memcpy(&k4, kp, 8);
  __m512i v = _mm512_castsi128_si512(
      _mm_load_si128((const __m128i *)(xt + (k4 & 0xffff) * G4S_MR)));
  v = _mm512_inserti32x4(v, _mm_load_si128((const __m128i *)(xt + ((k4 >> 16) & 0xffff) * G4S_MR)), 1);
  v = _mm512_inserti32x4(v, _mm_load_si128((const __m128i *)(xt + ((k4 >> 32) & 0xffff) * G4S_MR)), 2);
  v = _mm512_inserti32x4(v, _mm_load_si128((const __m128i *)(xt + (k4 >> 48) * G4S_MR)), 3);
  return _mm512_permutexvar_epi8(perm, v);
}

/* vpermb index between 16 dwords and 4 runs of 16 bytes: byte j of dword i
 * goes to byte i of run j (inverse: back from the runs to the dwords). */
static VBMI __m512i byte_runs_perm(int inverse) {
  __attribute__((aligned(64))) uint8_t idx[64];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 4; ++j) {
      if (inverse)
        idx[4 * i + j] = (uint8_t)(16 * j + i);
      else
        idx[16 * j + i] = (uint8_t)(4 * i + j);
    }
  return _mm512_load_si512((const void *)idx);
}

static VBMI void g4_spmm16(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  const uint16_t *kidx = (const uint16_t *)t->cols;
  const int8_t *values = t->values;
  const uint8_t *xt = t->xp;
  const __m512i perm = byte_runs_perm(1);
  const sk_ep ep = ep_of(t);
  const __m512i zp = _mm512_load_si512((const void *)t->zp);
  const __m512 xs = ep.fp ? _mm512_loadu_ps(t->xscale) : _mm512_setzero_ps();
  __attribute__((aligned(64))) uint32_t buf[16 * 16];
  uint32_t *y = (uint32_t *)t->y;
  for (int64_t n = n0; n < n1; n += 16) {
    const int64_t nb = n1 - n < 16 ? n1 - n : 16;
    __m512i r[16];
    for (int64_t j = 0; j < nb; ++j) {
      __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
      int64_t p = t->indptr[n + j];
      const int64_t e = t->indptr[n + j + 1];
      for (; p + 4 <= e; p += 4) {
        /* the 4 groups' weights in one load, broadcast by vpermd: loads are
         * the limit (2-4% faster than a broadcast load per group) */
        const __m512i wv = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(values + 4 * p)));
        a0 = dpbusd(a0, g4s_x(xt, kidx + 4 * p, perm), _mm512_permutexvar_epi32(_mm512_set1_epi32(0), wv));
        a1 = dpbusd(a1, g4s_x(xt, kidx + 4 * p + 4, perm), _mm512_permutexvar_epi32(_mm512_set1_epi32(1), wv));
        a2 = dpbusd(a2, g4s_x(xt, kidx + 4 * p + 8, perm), _mm512_permutexvar_epi32(_mm512_set1_epi32(2), wv));
        a3 = dpbusd(a3, g4s_x(xt, kidx + 4 * p + 12, perm), _mm512_permutexvar_epi32(_mm512_set1_epi32(3), wv));
      }
      for (; p < e; ++p)
        a0 = dpbusd(a0, g4s_x(xt, kidx + 4 * p, perm), _mm512_set1_epi32(load_dword(values + 4 * p)));
      r[j] = epilogue_r(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                        zp, xs, &ep, n + j);
    }
    if (nb == 16 && t->mr == 16) {
      transpose16(r);
      for (int i = 0; i < 16; ++i) _mm512_storeu_si512((void *)(y + i * t->ldy + n), r[i]);
    } else {
      for (int64_t j = 0; j < nb; ++j) _mm512_store_si512((void *)(buf + j * 16), r[j]);
      for (int64_t i = 0; i < t->mr; ++i)
        for (int64_t j = 0; j < nb; ++j) y[i * t->ldy + n + j] = buf[j * 16 + i];
    }
  }
}

VBMI void sk_spmm_u8s8_g4_16x4__avx512vbmi(const sk_spmm_u8s8_tile *t, int64_t n0,
                                           int64_t n1) {
  g4_spmm16(t, n0, n1);
}

/* The 16-row g4 tile: rows [0, mr) of x into xt[c * 16 + i] for c < k, zero
 * rows past mr. Per 64 columns: the 16 rows as 16 zmm, transposed as dwords
 * (zmm c: columns 4c..4c+3 of the 16 rows), one vpermb per zmm into the 4
 * columns' 16-byte runs, stored as one line. */
VBMI void sk_g4_pack16__avx512vbmi(const uint8_t *x, int64_t ldx, int64_t k, int64_t mr,
                                   uint8_t *xt) {
  const __m512i perm = byte_runs_perm(0);
  for (int64_t c0 = 0; c0 < k; c0 += 64) {
    const int64_t kc = k - c0 < 64 ? k - c0 : 64;
    const __mmask64 km = kc == 64 ? ~(__mmask64)0 : (((__mmask64)1 << kc) - 1);
    __m512i r[16];
    for (int64_t i = 0; i < 16; ++i)
      r[i] = i < mr ? _mm512_maskz_loadu_epi8(km, x + i * ldx + c0) : _mm512_setzero_si512();
    transpose16(r);
    for (int64_t c = 0; c < 16 && 4 * c < kc; ++c) {
      const __m512i v = _mm512_permutexvar_epi8(perm, r[c]);
      uint8_t *d = xt + (c0 + 4 * c) * G4S_MR;
      if (4 * c + 4 <= kc) _mm512_storeu_si512((void *)d, v);
      else _mm512_mask_storeu_epi8(d, ~(__mmask64)0 >> (64 - 16 * (kc - 4 * c)), v);
    }
  }
}

/* g4 for M = 17..32 (AVX-512 VBMI): the tile is X transposed in natural row
 * order, 32 bytes per k (xt[k * 32 + i]). A group's columns k0, k1 go into
 * one zmm (a ymm load and an insert from memory), k2, k3 into another, and
 * two vpermt2b make the dwords (x[i, k0], x[i, k1], x[i, k2], x[i, k3]) of
 * rows 0-15 and 16-31: the same loads per group as the 16-row kernel for
 * twice the rows (the 64-row kernel's 8 unpacks per group made it ~1.6x the
 * 16-row kernel's time per group). */
#define G4M_MR 32

static inline VBMI __attribute__((always_inline)) void g4m_step(const uint8_t *xt,
                                                                const uint16_t *kp,
                                                                __m512i w, __m512i plo,
                                                                __m512i phi, __m512i *lo,
                                                                __m512i *hi) {
  uint64_t k4;
  memcpy(&k4, kp, 8);
  const __m512i ab = _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(xt + (k4 & 0xffff) * G4M_MR))),
      _mm256_loadu_si256((const __m256i *)(xt + ((k4 >> 16) & 0xffff) * G4M_MR)), 1);
  const __m512i cd = _mm512_inserti64x4(
      _mm512_castsi256_si512(
          _mm256_loadu_si256((const __m256i *)(xt + ((k4 >> 32) & 0xffff) * G4M_MR))),
      _mm256_loadu_si256((const __m256i *)(xt + (k4 >> 48) * G4M_MR)), 1);
  *lo = dpbusd(*lo, _mm512_permutex2var_epi8(ab, plo, cd), w);
  *hi = dpbusd(*hi, _mm512_permutex2var_epi8(ab, phi, cd), w);
}

static VBMI void g4_spmm32(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  const uint16_t *kidx = (const uint16_t *)t->cols;
  const int8_t *values = t->values;
  const uint8_t *xt = t->xp;
  __m512i plo, phi; /* byte 4i + j: column j of row i (lo) or row 16 + i (hi) */
  {
    __attribute__((aligned(64))) uint8_t il[64], ih[64];
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 4; ++j) {
        il[4 * i + j] = (uint8_t)(32 * j + i);
        ih[4 * i + j] = (uint8_t)(32 * j + 16 + i);
      }
    plo = _mm512_load_si512((const void *)il);
    phi = _mm512_load_si512((const void *)ih);
  }
  const sk_ep ep = ep_of(t);
  const __m512i zp0 = _mm512_load_si512((const void *)t->zp);
  const __m512i zp1 = _mm512_load_si512((const void *)(t->zp + 16));
  const __m512 xs0 = ep.fp ? _mm512_loadu_ps(t->xscale) : _mm512_setzero_ps();
  const __m512 xs1 = ep.fp ? _mm512_loadu_ps(t->xscale + 16) : _mm512_setzero_ps();
  __attribute__((aligned(64))) uint32_t buf[16 * G4M_MR]; /* buf[j * 32 + i] */
  uint32_t *y = (uint32_t *)t->y;
  for (int64_t n = n0; n < n1; n += 16) {
    const int64_t nb = n1 - n < 16 ? n1 - n : 16;
    for (int64_t j = 0; j < nb; ++j) {
      __m512i l0 = _mm512_setzero_si512(), l1 = l0, l2 = l0, l3 = l0;
      __m512i h0 = l0, h1 = l0, h2 = l0, h3 = l0;
      int64_t p = t->indptr[n + j];
      const int64_t e = t->indptr[n + j + 1];
      for (; p + 4 <= e; p += 4) {
        const __m512i wv = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(values + 4 * p)));
        g4m_step(xt, kidx + 4 * p, _mm512_permutexvar_epi32(_mm512_set1_epi32(0), wv), plo, phi,
                 &l0, &h0);
        g4m_step(xt, kidx + 4 * p + 4, _mm512_permutexvar_epi32(_mm512_set1_epi32(1), wv), plo,
                 phi, &l1, &h1);
        g4m_step(xt, kidx + 4 * p + 8, _mm512_permutexvar_epi32(_mm512_set1_epi32(2), wv), plo,
                 phi, &l2, &h2);
        g4m_step(xt, kidx + 4 * p + 12, _mm512_permutexvar_epi32(_mm512_set1_epi32(3), wv), plo,
                 phi, &l3, &h3);
      }
      for (; p < e; ++p)
        g4m_step(xt, kidx + 4 * p, _mm512_set1_epi32(load_dword(values + 4 * p)), plo, phi, &l0,
                 &h0);
      const __m512i lo = _mm512_add_epi32(_mm512_add_epi32(l0, l1), _mm512_add_epi32(l2, l3));
      const __m512i hi = _mm512_add_epi32(_mm512_add_epi32(h0, h1), _mm512_add_epi32(h2, h3));
      _mm512_store_si512((void *)(buf + j * G4M_MR), epilogue_r(lo, zp0, xs0, &ep, n + j));
      _mm512_store_si512((void *)(buf + j * G4M_MR + 16), epilogue_r(hi, zp1, xs1, &ep, n + j));
    }
    for (int64_t h = 0; h < 2; ++h) { /* rows 16h .. 16h + 15 of the tile */
      const int64_t rows = t->mr - 16 * h < 16 ? t->mr - 16 * h : 16;
      if (rows == 16 && nb == 16) {
        __m512i r[16];
        for (int j = 0; j < 16; ++j)
          r[j] = _mm512_load_si512((const void *)(buf + j * G4M_MR + 16 * h));
        transpose16(r);
        for (int i = 0; i < 16; ++i)
          _mm512_storeu_si512((void *)(y + (16 * h + i) * t->ldy + n), r[i]);
      } else {
        for (int64_t i = 16 * h; i < 16 * h + rows; ++i)
          for (int64_t j = 0; j < nb; ++j) y[i * t->ldy + n + j] = buf[j * G4M_MR + i];
      }
    }
  }
}

VBMI void sk_spmm_u8s8_g4_32x4__avx512vbmi(const sk_spmm_u8s8_tile *t, int64_t n0,
                                           int64_t n1) {
  g4_spmm32(t, n0, n1);
}

/* The 32-row g4 tile: rows [0, mr) of x into xt[c * 32 + i] for c < k, zero
 * rows past mr. Per 64 columns: each 16-row half as in sk_g4_pack16 (zmm c of
 * a half: the 16-byte runs of columns 4c..4c+3), then vpermt2q pairs the
 * halves' runs of each column into its 32 bytes. */
VBMI void sk_g4_pack32__avx512vbmi(const uint8_t *x, int64_t ldx, int64_t k, int64_t mr,
                                   uint8_t *xt) {
  const __m512i perm = byte_runs_perm(0);
  const __m512i q01 = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
  const __m512i q23 = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
  for (int64_t c0 = 0; c0 < k; c0 += 64) {
    const int64_t kc = k - c0 < 64 ? k - c0 : 64;
    const __mmask64 km = kc == 64 ? ~(__mmask64)0 : (((__mmask64)1 << kc) - 1);
    __m512i r[2][16];
    for (int h = 0; h < 2; ++h) {
      for (int64_t i = 0; i < 16; ++i)
        r[h][i] = 16 * h + i < mr ? _mm512_maskz_loadu_epi8(km, x + (16 * h + i) * ldx + c0)
                                  : _mm512_setzero_si512();
      transpose16(r[h]);
    }
    for (int64_t c = 0; c < 16 && 4 * c < kc; ++c) {
      const __m512i lo = _mm512_permutexvar_epi8(perm, r[0][c]);
      const __m512i hi = _mm512_permutexvar_epi8(perm, r[1][c]);
      const __m512i v[2] = {_mm512_permutex2var_epi64(lo, q01, hi),
                            _mm512_permutex2var_epi64(lo, q23, hi)};
      uint8_t *d = xt + (c0 + 4 * c) * G4M_MR;
      for (int64_t u = 0; u < 2; ++u) { /* columns 4c + 2u, 4c + 2u + 1 */
        const int64_t cols = kc - 4 * c - 2 * u;
        if (cols >= 2) _mm512_storeu_si512((void *)(d + 64 * u), v[u]);
        else if (cols == 1) _mm512_mask_storeu_epi8(d + 64 * u, ~(__mmask64)0 >> 32, v[u]);
      }
    }
  }
}
