/*
 * spmm_f32/avx512.c - AVX-512 micro-kernels.
 *
 * spmm: MR = 32 activation rows per tile (2 zmm per nonzero). Each nonzero
 * w[n,k] is broadcast and FMA'd with the packed 32-vector of column k. FMA
 * latency x throughput wants about 8 independent chains, so consecutive
 * nonzeros rotate over four accumulator sets, summed at the row's end.
 * Measured on Zen 5: the loop is bound by loads (one 64-byte line of the
 * packed tile per FMA); MR = 32 beat 64 (by 2-8%), 16 and 128; software
 * prefetch and 8 accumulator sets gave nothing; taking the four broadcasts
 * from one xmm load with vpermps beat vbroadcastss from memory (5-15%).
 * K panels: a row's nonzeros in K panels of <= 512 columns (the 64 KiB of
 * the tile they touch mostly hit L1) gained 11-16% for K = 3072 and 1-9%
 * for K = 768 (more at 70% than at 90% sparsity). Each (row, panel)
 * segment costs ~15 cycles on top of its nonzeros (zeroing and summing the
 * four sets, the tail, the exits), so per row narrower panels lost more than
 * the L1 hits gained.
 * GROUP4 panels (use_group4: K > 512 and enough nonzeros per row and
 * panel): four rows in lock step, one accumulator set each (still
 * 8 chains), so no per-row reduction and one loop exit per four rows; that
 * pays for panels of <= 320 columns (40 KiB of tile): K = 3072 5-6% faster
 * at 90% sparsity, 20-25% at 70%; K = 768 6-8% faster at 70% but 5% slower
 * at 90% (26 nonzeros per panel), where the per-row kernel stays. Exact
 * segment ends from a vector count of the indices below the panel end (no
 * column test per step) were 5-15% slower: the count's own exits mispredict.
 * Column addresses take one shift per nonzero (c << 7 serves both loads;
 * GCC had computed c * 128 and c * 32 apart: 7-13% slower).
 * Results of NB = 64 weight rows (16 when K is one panel) collect in an L1
 * buffer; the write-out then transposes 16x16 blocks in registers and stores
 * each 16-float run of a Y row, streamed (non-temporal) when Y is big: plain
 * stores read every Y line first and evicted the packed tile from L2 (the
 * streamed write-out gained 5-12% on BERT/MiniLM shapes). Packing x uses the
 * same transpose. The last, partial tile (mr < 32 rows) is packed
 * with row stride mr and read with masked loads, so the packed copy is
 * exactly M*K floats.
 *
 * Shared columns (t->shared, shared.h; built per weight at density >= 17%):
 * within a group of 4 rows a column that 2-4 of them use is loaded once and
 * FMA'd into each (quad steps, and pair steps of the three ways to split 4
 * rows into 2 pairs), the rest run as singles (lock step + per-row rests),
 * one accumulator set per row throughout, exact counts (no column tests),
 * panels of <= 384 columns (<= 320 from 17% density, where the driver also
 * runs W in 128-row chunks over all tiles, so W comes from L2: shared.h).
 * ~0.7 column loads per nonzero instead of 1:
 * 15-30% faster at 30% density, 10-12% at 10% on K >= 768 (but there the
 * layout would double the weight's bytes, so it is not built). Measured
 * slower: singles evened out by splitting weights (5-15%), the rests as a
 * masked lock step (8-12%), triples as masked quad steps (3-9%), pair loops
 * unrolled by 2 (4%), singles before the pair steps (2-5%); quads as pairs:
 * same. Also slower or no gain (30% density): broadcasts from memory (2-3%;
 * half of them: 1-3%), each row's rest as masked 4-steps (4-5%), two
 * accumulator sets for the rests, software prefetch of x columns 4-8 pair
 * steps ahead (2-6%) or of the next group's W (NTA: 2-5%; T0: 0-2%),
 * 32- or 128-row blocks. Prefetching the next 64-row block's weights, spread
 * over the current block's steps, was 5-19% slower in every kernel (any hint;
 * W that never leaves L2 would gain only 0-5%), and only the first line of
 * each of its rows or groups gained nothing (benchmarks/spmm_ab).
 *
 * spmv (M == 1): a gather per 16 nonzeros was 2x slower on this core, so
 * x[col] is built from scalar loads and vinsertps, 16 nonzeros per step, then
 * at most one step of 8; the last < 8 are masked instead of looped.
 * The loop runs at ~0.73 cycles per nonzero, near the bound of two FP loads
 * per cycle (1.125 per nonzero). Measured slower: scalar FMAs (two FP loads
 * per nonzero, 1.2 cycles), x through GPR loads paired into vmovq/vpinsrq
 * (all or half of them), 16-bit indices loaded one by one instead of four per
 * 64-bit load; no gain from reducing 8 rows' sums together.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "../internal.h"
#include "shared.h"

#define MR 32          /* activation rows per tile */
#define MRV (MR / 16)  /* zmm accumulators per nonzero */
#define U (8 / MRV)    /* accumulator sets (4), so 8 FMA chains are in flight */
#define NB 64          /* weight rows per write-out block (a multiple of 16) */
#define STREAM_MIN_FLOATS (32 * 1024) /* 128 KiB of Y rows per tile */
#define KPANEL 512     /* widest K panel: 512 x MR floats = 64 KiB of packed tile */
#define KPANEL_G4 320  /* widest panel of the GROUP4 kernels: 40 KiB of packed tile */
#define G4_MIN_SEGMENT 45      /* see use_group4 */
#define G4_MIN_SEGMENT_WIDE 25

/* Transpose the 16x16 matrix r[0..15] in place (r[i] lane j -> r[j] lane i). */
static inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  /* t[i] holds per 128-bit lane L columns 4L, 4L+1 of rows i, i+1 interleaved;
   * t[i + 1] columns 4L+2, 4L+3 */
  for (int i = 0; i < 16; i += 4) {
    for (int h = 0; h < 2; ++h) {
      const __m512d a = _mm512_castps_pd(t[i + h]), b = _mm512_castps_pd(t[i + 2 + h]);
      r[i + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
      r[i + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    }
  }
  /* r[4q + c] now holds, per 128-bit lane L, column 4L + c of rows 4q..4q+3 */
  for (int c = 0; c < 4; ++c) {
    t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);      /* lanes 0,2 | 0,2 */
    t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);  /* lanes 1,3 | 1,3 */
    t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);       /* lane 0 */
    r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xdd);   /* lane 2 */
    r[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88); /* lane 1 */
    r[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xdd); /* lane 3 */
  }
}

/* y[i * ldy + n + j] = act(buf[j * MR + i] + bias[n + j]) for j < nb, i < mr.
 * 16x16 blocks are transposed in registers and each of the 16 rows goes
 * straight to Y. When Y's rows are 64-byte aligned (sparsekit allocates Y so)
 * and Y is big, full, aligned 16-float runs are streamed (non-temporal): Y is usually larger than L2,
 * and ordinary stores would read every line first (RFO) and evict the packed
 * tile that the next block needs from L2. Streaming full lines also avoids the
 * L1 set thrashing of ordinary stores spread over rows 4 KiB apart. */
static inline void write_block(const float *buf, int64_t nb, const sk_spmm_f32_tile *t,
                               int64_t n, int stream) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t i0 = 0; i0 < t->mr; i0 += 16) {
    const int64_t rows = t->mr - i0 < 16 ? t->mr - i0 : 16;
    float *y0 = t->y + i0 * t->ldy + n;
    for (int64_t j0 = 0; j0 < nb; j0 += 16) {
      const int64_t cn = nb - j0 < 16 ? nb - j0 : 16;
      const __mmask16 cols = (__mmask16)((1u << cn) - 1);
      const float *b = buf + j0 * MR + i0;
      __m512 r[16];
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) r[j] = j < cn ? _mm512_load_ps(b + j * MR) : zero;
      transpose16(r);
      const __m512 bv = t->bias ? _mm512_maskz_loadu_ps(cols, t->bias + n + j0) : zero;
      if (stream && cn == 16 && ((n + j0) & 15) == 0) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) {
          if (i >= rows) break;
          __m512 v = _mm512_add_ps(r[i], bv);
          if (t->act == SK_ACT_RELU) v = _mm512_max_ps(zero, v); /* NaN stays */
          _mm512_stream_ps(y0 + i * t->ldy + j0, v);
        }
      } else {
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) {
          if (i >= rows) break;
          __m512 v = _mm512_add_ps(r[i], bv);
          if (t->act == SK_ACT_RELU) v = _mm512_max_ps(zero, v); /* NaN stays */
          _mm512_mask_storeu_ps(y0 + i * t->ldy + j0, cols, v);
        }
      }
    }
  }
}

/* xp[kk * ld + i] = x[i * ldx + kk] for i < mr (ld == MR, or mr for the
 * partial tile): transposed 16x16 at a time in registers. */
void sk_spmm_f32_pack_32__avx512(const float *x, int64_t ldx, int64_t k, int64_t mr,
                                 int64_t ld, float *xp) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t i0 = 0; i0 < mr; i0 += 16) {
    const int64_t rows = mr - i0;
    const __mmask16 live = (__mmask16)(rows >= 16 ? 0xffff : (1u << rows) - 1);
    for (int64_t k0 = 0; k0 < k; k0 += 16) {
      const int64_t kn = k - k0 < 16 ? k - k0 : 16;
      const __mmask16 cols = (__mmask16)((1u << kn) - 1);
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i)
        r[i] = i < rows ? _mm512_maskz_loadu_ps(cols, x + (i0 + i) * ldx + k0) : zero;
      transpose16(r);
#pragma GCC unroll 16
      for (int c = 0; c < 16; ++c)
        if (c < kn) _mm512_mask_storeu_ps(xp + (k0 + c) * ld + i0, live, r[c]);
    }
  }
}

/* NV vectors of column k of the packed tile: aligned loads for a full tile,
 * masked unaligned loads (row stride mr) for the partial one. */
#define XV_FULL(p, q) XC_FULL((int64_t)idx[p], q)
#define XV_PART(p, q) XC_PART((int64_t)idx[p], q)
#define XC_FULL(c, q) _mm512_load_ps((const float *)(xb + ((uint64_t)(c) << 7)) + 16 * (q))
#define XC_PART(c, q) _mm512_maskz_loadu_ps(km[q], t->xp + (c) * ld + 16 * (q))

/* Columns of four consecutive nonzeros; 16-bit ones come from one 64-bit
 * load split with shifts (load slots are the limit, ALU slots are not). */
static inline void cols4_u16(const uint16_t *idx, int64_t c[4]) {
  uint64_t q;
  memcpy(&q, idx, 8);
  c[0] = (int64_t)(q & 0xffff);
  c[1] = (int64_t)((q >> 16) & 0xffff);
  c[2] = (int64_t)((q >> 32) & 0xffff);
  c[3] = (int64_t)(q >> 48);
}
static inline void cols4_i32(const int32_t *idx, int64_t c[4]) {
  for (int u = 0; u < 4; ++u) c[u] = idx[u];
}

/* Row j's nonzeros from p up to e, and (CHECK) only those with columns below
 * kend, FMA'd into a[][]: four per step, then one at a time. */
#define ROW_SEGMENT(CHECK, NV, US, XV, XC, COLS4)                                \
  for (; p + US <= e; p += US) {                                                \
    int64_t c[4];                                                               \
    COLS4(idx + p, c);                                                          \
    if (CHECK && c[3] >= kend) break;                                           \
    /* broadcasts from a register: fewer load slots than vbroadcastss m32 */    \
    const __m512 vs = _mm512_castps128_ps512(_mm_loadu_ps(val + p));            \
    _Pragma("GCC unroll 8") for (int u = 0; u < US; ++u) {                      \
      const __m512 v = _mm512_permutexvar_ps(_mm512_set1_epi32(u), vs);         \
      _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q)                      \
          a[u][q] = _mm512_fmadd_ps(v, XC(c[u], q), a[u][q]);                   \
    }                                                                           \
  }                                                                             \
  for (; p < e && (!CHECK || (int64_t)idx[p] < kend); ++p) {                    \
    const __m512 v = _mm512_set1_ps(val[p]);                                    \
    _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q)                        \
        a[0][q] = _mm512_fmadd_ps(v, XV(p, q), a[0][q]);                        \
  }

/* Weight row n + j over one panel, starting at nonzero P0: partial sums
 * start at zero (FIRST) or from buf, end in buf; SAVE keeps the row's cursor.
 * CHECK stops at column kend (every panel but the last). */
#define ROW_PART(FIRST, CHECK, P0, SAVE, NV, US, XV, XC, COLS4)                  \
  {                                                                             \
    __m512 a[US][NV];                                                           \
    _Pragma("GCC unroll 8") for (int u = 0; u < US; ++u)                        \
    _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q)                        \
        a[u][q] = _mm512_setzero_ps();                                          \
    if (!FIRST) {                                                               \
      _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q)                      \
          a[0][q] = _mm512_load_ps(buf + j * MR + 16 * q);                      \
    }                                                                           \
    int64_t p = P0;                                                             \
    const int64_t e = t->indptr[n + j + 1];                                     \
    ROW_SEGMENT(CHECK, NV, US, XV, XC, COLS4)                                   \
    SAVE;                                                                       \
    _Pragma("GCC unroll 8") for (int u = 1; u < US; ++u)                        \
    _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q)                        \
        a[0][q] = _mm512_add_ps(a[0][q], a[u][q]);                              \
    _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q)                        \
        _mm512_store_ps(buf + j * MR + 16 * q, a[0][q]);                        \
  }

/* What every tile kernel sets up: masks of the partial tile's rows, the
 * packed x, the partial-sum buffer, and whether Y is streamed. */
#define SPMM_TILE_SETUP(NV)                                                     \
  const int64_t ld = t->mr;                                                     \
  __mmask16 km[NV];                                                             \
  for (int q = 0; q < NV; ++q) {                                                \
    const int64_t live = ld - 16 * q;                                           \
    km[q] = (__mmask16)(live >= 16 ? 0xffff : (1u << live) - 1);               \
  }                                                                             \
  (void)km;                                                                     \
  const char *xb = (const char *)t->xp;                                         \
  (void)xb;                                                                     \
  __attribute__((aligned(64))) float buf[NB * MR];                              \
  /* stream only a big Y (this tile's rows span >= 128 KiB): a small one     \
   * is better left in L2 for whatever reads it next */                         \
  const int stream = ((uintptr_t)t->y & 63) == 0 && (t->ldy & 15) == 0 &&       \
                     t->mr * t->ldy >= STREAM_MIN_FLOATS;

/* ... and the CSR kernels' index and value arrays */
#define SPMM_SETUP(IDX_T, NV)                                                   \
  const IDX_T *idx = (const IDX_T *)t->indices;                                 \
  const float *val = t->values;                                                 \
  SPMM_TILE_SETUP(NV)

/* Blocks of NB weight rows. K > KPANEL is cut into equal panels run one
 * after the other over the block (each row keeps a cursor into its nonzeros
 * and its partial sums in buf), so the slice of the packed tile in use is at
 * most 64 KiB: mostly L1 hits instead of L2 line fills. */
#define DEFINE_SPMM(NAME, IDX_T, NV, US, XV, XC, COLS4)                          \
  static void NAME(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {         \
    SPMM_SETUP(IDX_T, NV)                                                       \
    _Static_assert(US == 4, "one xmm load feeds the US broadcasts");            \
    const int64_t panels = t->k > KPANEL ? (t->k + KPANEL - 1) / KPANEL : 1;    \
    const int64_t kb = (t->k + panels - 1) / panels;                            \
    int64_t cur[NB];                                                            \
    for (int64_t n = n0; n < n1; n += NB) {                                     \
      const int64_t nb = n1 - n < NB ? n1 - n : NB;                             \
      if (panels == 1) {                                                        \
        /* nothing to reuse across rows: write out every 16, so buf takes   \
         * 2 KiB of L1, not 8 */                                                \
        const int64_t kend = t->k; /* unchecked: one panel */                   \
        (void)kend;                                                             \
        for (int64_t s0 = 0; s0 < nb; s0 += 16) {                               \
          const int64_t ns = n + s0, nbs = nb - s0 < 16 ? nb - s0 : 16;         \
          {                                                                     \
            const int64_t n = ns; /* the macros index rows from n */            \
            for (int64_t j = 0; j < nbs; ++j)                                   \
              ROW_PART(1, 0, t->indptr[n + j], (void)0, NV, US, XV, XC, COLS4)  \
            write_block(buf, nbs, t, n, stream);                                \
          }                                                                     \
        }                                                                       \
        continue;                                                               \
      } else {                                                                  \
        for (int64_t j = 0; j < nb; ++j) cur[j] = t->indptr[n + j];             \
        int64_t kend = kb;                                                      \
        for (int64_t j = 0; j < nb; ++j)                                        \
          ROW_PART(1, 1, cur[j], cur[j] = p, NV, US, XV, XC, COLS4)             \
        for (int64_t pi = 1; pi < panels - 1; ++pi) {                           \
          kend = (pi + 1) * kb;                                                 \
          for (int64_t j = 0; j < nb; ++j)                                      \
            ROW_PART(0, 1, cur[j], cur[j] = p, NV, US, XV, XC, COLS4)           \
        }                                                                       \
        for (int64_t j = 0; j < nb; ++j)                                        \
          ROW_PART(0, 0, cur[j], (void)0, NV, US, XV, XC, COLS4)                \
      }                                                                         \
      write_block(buf, nb, t, n, stream);                                       \
    }                                                                           \
    if (stream) _mm_sfence(); /* streamed stores visible before we return */    \
  }

/* The last column of four consecutive nonzeros. */
#define LAST4(ip) ((int64_t)(ip)[3])

/* Row n + j's rest of one panel (from p up to e, and (CHECK) only columns
 * below kend) into the one accumulator set A[NV]. */
#define ROW_REST(CHECK, NV, XV, XC, COLS4, A)                                   \
  for (; p + 4 <= e; p += 4) {                                                  \
    int64_t c[4];                                                               \
    COLS4(idx + p, c);                                                          \
    if (CHECK && c[3] >= kend) break;                                           \
    const __m512 vs = _mm512_castps128_ps512(_mm_loadu_ps(val + p));            \
    _Pragma("GCC unroll 4") for (int u = 0; u < 4; ++u) {                       \
      const __m512 v = _mm512_permutexvar_ps(_mm512_set1_epi32(u), vs);         \
      _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q)                      \
          A[q] = _mm512_fmadd_ps(v, XC(c[u], q), A[q]);                         \
    }                                                                           \
  }                                                                             \
  for (; p < e && (!CHECK || (int64_t)idx[p] < kend); ++p) {                    \
    const __m512 v = _mm512_set1_ps(val[p]);                                    \
    _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q)                        \
        A[q] = _mm512_fmadd_ps(v, XV(p, q), A[q]);                              \
  }

/* Weight rows n + j .. n + j + 3 over one panel (CHECK: it ends at column
 * kend; else at each row's end), four nonzeros of each row per step in lock
 * step, one accumulator set per row (4 x NV zmm: 8 FMA chains at NV = 2).
 * Against ROW_PART per row this drops the reduction of four sets and shares
 * one loop exit among four rows, which is what made short segments (narrow
 * panels) expensive. Each row's rest then runs alone into its set. */
#define GROUP4(FIRST, CHECK, NV, XV, XC, COLS4)                                \
  {                                                                             \
    __m512 g[4][NV];                                                            \
    int64_t pp[4], ee[4], steps = INT64_MAX;                                    \
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; ++r) {                       \
      pp[r] = cur[j + r];                                                       \
      ee[r] = t->indptr[n + j + r + 1];                                         \
      const int64_t s = (ee[r] - pp[r]) >> 2;                                   \
      steps = s < steps ? s : steps;                                            \
      _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q)                      \
          g[r][q] = FIRST ? _mm512_setzero_ps()                                 \
                          : _mm512_load_ps(buf + (j + r) * MR + 16 * q);        \
    }                                                                           \
    for (; steps > 0; --steps) {                                                \
      /* columns are sorted: a row is past the panel when its 4th is */        \
      if (CHECK && ((LAST4(idx + pp[0]) >= kend) | (LAST4(idx + pp[1]) >= kend) | \
                    (LAST4(idx + pp[2]) >= kend) | (LAST4(idx + pp[3]) >= kend))) \
        break;                                                                  \
      _Pragma("GCC unroll 4") for (int r = 0; r < 4; ++r) {                     \
        int64_t c[4];                                                           \
        COLS4(idx + pp[r], c);                                                  \
        const __m512 vs = _mm512_castps128_ps512(_mm_loadu_ps(val + pp[r]));    \
        _Pragma("GCC unroll 4") for (int u = 0; u < 4; ++u) {                   \
          const __m512 v = _mm512_permutexvar_ps(_mm512_set1_epi32(u), vs);     \
          _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q)                  \
              g[r][q] = _mm512_fmadd_ps(v, XC(c[u], q), g[r][q]);               \
        }                                                                       \
        pp[r] += 4;                                                             \
      }                                                                         \
    }                                                                           \
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; ++r) {                       \
      int64_t p = pp[r];                                                        \
      const int64_t e = ee[r];                                                  \
      ROW_REST(CHECK, NV, XV, XC, COLS4, g[r])                                  \
      cur[j + r] = p;                                                           \
      _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q)                      \
          _mm512_store_ps(buf + (j + r) * MR + 16 * q, g[r][q]);                \
    }                                                                           \
  }

/* The block's rows over one panel (as in GROUP4): four at a time, then the
 * 1-3 left one at a time. */
#define BLOCK_PANEL(FIRST, CHECK, NV, US, XV, XC, COLS4)                        \
  {                                                                             \
    int64_t j = 0;                                                              \
    for (; j + 4 <= nb; j += 4) GROUP4(FIRST, CHECK, NV, XV, XC, COLS4)         \
    for (; j < nb; ++j) ROW_PART(FIRST, CHECK, cur[j], cur[j] = p, NV, US, XV, XC, COLS4) \
  }

/* NAME: the tile kernel for many panels or long segments (use_group4):
 * panels of at most KPANEL_G4 columns (<= 40 KiB of the packed tile, so the
 * slice stays in L1 next to W's stream and buf), each run over the block
 * four rows at a time (BLOCK_PANEL). */
#define DEFINE_SPMM_PANELS(NAME, IDX_T, NV, US, XV, XC, COLS4)                   \
  static void NAME(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {         \
    SPMM_SETUP(IDX_T, NV)                                                       \
    _Static_assert(US == 4, "one xmm load feeds the US broadcasts");            \
    const int64_t panels = (t->k + KPANEL_G4 - 1) / KPANEL_G4;                  \
    const int64_t kb = (t->k + panels - 1) / panels;                            \
    int64_t cur[NB];                                                            \
    for (int64_t n = n0; n < n1; n += NB) {                                     \
      const int64_t nb = n1 - n < NB ? n1 - n : NB;                             \
      for (int64_t j = 0; j < nb; ++j) cur[j] = t->indptr[n + j];               \
      int64_t kend = kb;                                                        \
      BLOCK_PANEL(1, 1, NV, US, XV, XC, COLS4)                                  \
      for (int64_t pi = 1; pi < panels - 1; ++pi) {                             \
        kend = (pi + 1) * kb;                                                   \
        BLOCK_PANEL(0, 1, NV, US, XV, XC, COLS4)                                \
      }                                                                         \
      BLOCK_PANEL(0, 0, NV, US, XV, XC, COLS4) /* to each row's end */          \
      write_block(buf, nb, t, n, stream);                                       \
    }                                                                           \
    if (stream) _mm_sfence(); /* streamed stores visible before we return */    \
  }

/* ---- shared columns (shared.h) ----------------------------------------- */
#define BCAST(vs, r) _mm512_permutexvar_ps(_mm512_set1_epi32(r), vs)

/* Rows A0, A1 of the group take column ca, rows B0, B1 column cb: two column
 * loads (of NV vectors) feed four rows' FMAs. */
#define PAIR_STEPS(COUNT, NV, XC, A0, A1, B0, B1)                               \
  for (int64_t s = (COUNT); s > 0; --s) {                                       \
    uint32_t q2;                                                                \
    memcpy(&q2, c, 4);                                                          \
    const int64_t ca = q2 & 0xffff, cb = q2 >> 16;                              \
    const __m512 vs = _mm512_castps128_ps512(_mm_loadu_ps(w));                  \
    __m512 xa[NV], xc[NV];                                                      \
    _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q) {                      \
      xa[q] = XC(ca, q);                                                        \
      xc[q] = XC(cb, q);                                                        \
    }                                                                           \
    const __m512 va0 = BCAST(vs, A0), va1 = BCAST(vs, A1);                      \
    const __m512 vb0 = BCAST(vs, B0), vb1 = BCAST(vs, B1);                      \
    _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q) {                      \
      g[A0][q] = _mm512_fmadd_ps(va0, xa[q], g[A0][q]);                         \
      g[A1][q] = _mm512_fmadd_ps(va1, xa[q], g[A1][q]);                         \
      g[B0][q] = _mm512_fmadd_ps(vb0, xc[q], g[B0][q]);                         \
      g[B1][q] = _mm512_fmadd_ps(vb1, xc[q], g[B1][q]);                         \
    }                                                                           \
    w += 4;                                                                     \
    c += 2;                                                                     \
  }

/* One group of 4 rows (buf rows 4gi..) over one panel: quad steps, the three
 * matchings' pair steps, then the singles (four rows in lock step, then each
 * row's rest), all into one accumulator set per row. Counts are exact, so no
 * column tests. */
#define GROUP_SHARED(FIRST, NV, XV, XC)                                         \
  {                                                                             \
    const uint16_t *cnt = L->cnt + ((g0 + gi) * L->panels + pi) * 8;            \
    const float *w = L->w + wc[gi];                                             \
    const uint16_t *c = L->c + cc[gi];                                          \
    float *bg = buf + 4 * gi * MR;                                              \
    __m512 g[4][NV];                                                            \
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; ++r)                         \
    _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q)                        \
        g[r][q] = FIRST ? _mm512_setzero_ps() : _mm512_load_ps(bg + r * MR + 16 * q); \
    for (int64_t s = cnt[0]; s > 0; --s) {                                      \
      const int64_t cq = c[0];                                                  \
      const __m512 vs = _mm512_castps128_ps512(_mm_loadu_ps(w));                \
      __m512 xq[NV];                                                            \
      _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q) xq[q] = XC(cq, q);   \
      _Pragma("GCC unroll 4") for (int r = 0; r < 4; ++r) {                     \
        const __m512 v = BCAST(vs, r);                                          \
        _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q)                    \
            g[r][q] = _mm512_fmadd_ps(v, xq[q], g[r][q]);                       \
      }                                                                         \
      w += 4;                                                                   \
      c += 1;                                                                   \
    }                                                                           \
    PAIR_STEPS(cnt[1], NV, XC, 0, 1, 2, 3)                                      \
    PAIR_STEPS(cnt[2], NV, XC, 0, 2, 1, 3)                                      \
    PAIR_STEPS(cnt[3], NV, XC, 0, 3, 1, 2)                                      \
    int64_t pp[4], ee[4], steps = INT64_MAX, off = 0;                           \
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; ++r) {                       \
      pp[r] = off;                                                              \
      off += cnt[4 + r];                                                        \
      ee[r] = off;                                                              \
      const int64_t st = cnt[4 + r] >> 2;                                       \
      steps = st < steps ? st : steps;                                          \
    }                                                                           \
    for (; steps > 0; --steps) {                                                \
      _Pragma("GCC unroll 4") for (int r = 0; r < 4; ++r) {                     \
        int64_t cl[4];                                                          \
        cols4_u16(c + pp[r], cl);                                               \
        const __m512 vs = _mm512_castps128_ps512(_mm_loadu_ps(w + pp[r]));     \
        _Pragma("GCC unroll 4") for (int u = 0; u < 4; ++u) {                   \
          const __m512 v = BCAST(vs, u);                                        \
          _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q)                  \
              g[r][q] = _mm512_fmadd_ps(v, XC(cl[u], q), g[r][q]);              \
        }                                                                       \
        pp[r] += 4;                                                             \
      }                                                                         \
    }                                                                           \
    {                                                                           \
      const uint16_t *idx = c;                                                  \
      const float *val = w;                                                     \
      const int64_t kend = 0; /* unused: no column test */                      \
      (void)kend;                                                               \
      _Pragma("GCC unroll 4") for (int r = 0; r < 4; ++r) {                     \
        int64_t p = pp[r];                                                      \
        const int64_t e = ee[r];                                                \
        ROW_REST(0, NV, XV, XC, cols4_u16, g[r])                                \
      }                                                                         \
    }                                                                           \
    w += off;                                                                   \
    c += off;                                                                   \
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; ++r)                         \
    _Pragma("GCC unroll 8") for (int q = 0; q < NV; ++q)                        \
        _mm512_store_ps(bg + r * MR + 16 * q, g[r][q]);                         \
    wc[gi] = w - L->w;                                                          \
    cc[gi] = c - L->c;                                                          \
  }

/* NAME: the tile kernel over the shared-column layout t->shared (rows n0, n1
 * on group bounds): blocks of NB rows, each run panel by panel over its
 * groups, partial sums in buf between panels. */
#define DEFINE_SPMM_SHARED(NAME, NV, XV, XC)                                    \
  static void NAME(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {         \
    const sk_csr_f32_shared *L = t->shared;                                     \
    SPMM_TILE_SETUP(NV)                                                         \
    int64_t wc[NB / 4], cc[NB / 4];                                             \
    for (int64_t n = n0; n < n1; n += NB) {                                     \
      const int64_t nb = n1 - n < NB ? n1 - n : NB;                             \
      const int64_t ng = (nb + 3) / 4, g0 = n / 4;                              \
      for (int64_t gi = 0; gi < ng; ++gi) {                                     \
        wc[gi] = L->wstart[g0 + gi];                                            \
        cc[gi] = L->cstart[g0 + gi];                                            \
      }                                                                         \
      int64_t pi = 0;                                                           \
      for (int64_t gi = 0; gi < ng; ++gi) GROUP_SHARED(1, NV, XV, XC)           \
      for (pi = 1; pi < L->panels; ++pi)                                        \
        for (int64_t gi = 0; gi < ng; ++gi) GROUP_SHARED(0, NV, XV, XC)         \
      write_block(buf, nb, t, n, stream);                                       \
    }                                                                           \
    if (stream) _mm_sfence(); /* streamed stores visible before we return */    \
  }

/* ---- M == 1 ------------------------------------------------------------- */
static inline float epilogue1(float v, const sk_spmm_f32_tile *t, int64_t n) {
  if (t->bias) v += t->bias[n];
  if (t->act == SK_ACT_RELU && !(v > 0.0f)) v = v != v ? v : 0.0f;
  return v;
}

/* x[idx[c(p)], .. idx[c(p+3)]] as one xmm: scalar loads combined with
 * vinsertps (a gather is slow on AMD cores). c() clamps positions for the
 * row's tail. */
#define X4(p, c)                                                                \
  _mm_insert_ps(_mm_insert_ps(_mm_insert_ps(_mm_load_ss(x + idx[c(p)]),         \
                                            _mm_load_ss(x + idx[c((p) + 1)]), 0x10), \
                              _mm_load_ss(x + idx[c((p) + 2)]), 0x20),          \
                _mm_load_ss(x + idx[c((p) + 3)]), 0x30)
#define X8(p, c) _mm256_insertf128_ps(_mm256_castps128_ps256(X4(p, c)), X4((p) + 4, c), 1)

/* The same for 8 whole positions; 16-bit indices come 4 to a 64-bit load
 * and are split with shifts, which saves load slots (the limit here). */
static inline __m128 x4_from(const float *x, uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  __m128 v = _mm_load_ss(x + a);
  v = _mm_insert_ps(v, _mm_load_ss(x + b), 0x10);
  v = _mm_insert_ps(v, _mm_load_ss(x + c), 0x20);
  return _mm_insert_ps(v, _mm_load_ss(x + d), 0x30);
}
static inline __m128 x4_u16(const float *x, const uint16_t *idx) {
  uint64_t q;
  memcpy(&q, idx, 8);
  return x4_from(x, q & 0xffff, (q >> 16) & 0xffff, (q >> 32) & 0xffff, q >> 48);
}
static inline __m128 x4_i32(const float *x, const int32_t *idx) {
  return x4_from(x, (uint32_t)idx[0], (uint32_t)idx[1], (uint32_t)idx[2], (uint32_t)idx[3]);
}
#define X8W(f, p) _mm256_insertf128_ps(_mm256_castps128_ps256(f(x, idx + (p))), \
                                       f(x, idx + (p) + 4), 1)
#define CLAMP(q) ((q) < last ? (q) : last)

/* One row's dot product: 16 nonzeros per step into two ymm partial sums, then
 * one step of 8 if left; the last < 8 take one step over the 8 positions that
 * end the row, the ones before masked to zero (values and x, so an inf in x
 * cannot turn into NaN): no tail loop and no clamping (3-10% over clamped
 * positions; the matrix's first row keeps them when it has < 8 nonzeros). */
#define DEFINE_SPMV(NAME, IDX_T, X4W)                                              \
  static void NAME(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {         \
    const IDX_T *idx = (const IDX_T *)t->indices;                               \
    const float *val = t->values, *x = t->xp;                                   \
    for (int64_t n = n0; n < n1; ++n) {                                         \
      __m256 a0 = _mm256_setzero_ps(), a1 = a0;                                 \
      int64_t p = t->indptr[n];                                                 \
      const int64_t e = t->indptr[n + 1];                                       \
      for (; p + 16 <= e; p += 16) {                                            \
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + p), X8W(X4W, p), a0);       \
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(val + p + 8), X8W(X4W, p + 8), a1); \
      }                                                                         \
      if (p + 8 <= e) {                                                         \
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + p), X8W(X4W, p), a0);       \
        p += 8;                                                                 \
      }                                                                         \
      if (p < e && e >= 8) {                                                    \
        /* the 8 positions ending at e, the earlier ones masked off: they hold \
         * valid columns (this row's or the previous rows'), so no clamping */ \
        const __mmask8 k = (__mmask8)(0xff00u >> (e - p));                      \
        a1 = _mm256_fmadd_ps(_mm256_maskz_loadu_ps(k, val + e - 8),             \
                             _mm256_maskz_mov_ps(k, X8W(X4W, e - 8)), a1);      \
      } else if (p < e) { /* the matrix's first < 8 nonzeros: clamped */        \
        const int64_t last = e - 1;                                             \
        const __mmask8 k = (__mmask8)((1u << (e - p)) - 1);                     \
        a1 = _mm256_fmadd_ps(_mm256_maskz_loadu_ps(k, val + p),                 \
                             _mm256_maskz_mov_ps(k, X8(p, CLAMP)), a1);          \
      }                                                                         \
      a0 = _mm256_add_ps(a0, a1);                                               \
      __m128 h = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1)); \
      h = _mm_add_ps(h, _mm_movehl_ps(h, h));                                   \
      t->y[n] = epilogue1(_mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h))), t, n); \
    }                                                                           \
  }

DEFINE_SPMM(spmm_u16, uint16_t, MRV, U, XV_FULL, XC_FULL, cols4_u16)
DEFINE_SPMM(spmm_i32, int32_t, MRV, U, XV_FULL, XC_FULL, cols4_i32)
DEFINE_SPMM(part1_u16, uint16_t, 1, 4, XV_PART, XC_PART, cols4_u16)
DEFINE_SPMM(part1_i32, int32_t, 1, 4, XV_PART, XC_PART, cols4_i32)
DEFINE_SPMM(part2_u16, uint16_t, 2, 4, XV_PART, XC_PART, cols4_u16)
DEFINE_SPMM(part2_i32, int32_t, 2, 4, XV_PART, XC_PART, cols4_i32)
DEFINE_SPMM_PANELS(panels_u16, uint16_t, MRV, U, XV_FULL, XC_FULL, cols4_u16)
DEFINE_SPMM_PANELS(panels_i32, int32_t, MRV, U, XV_FULL, XC_FULL, cols4_i32)
DEFINE_SPMM_PANELS(panels1_u16, uint16_t, 1, 4, XV_PART, XC_PART, cols4_u16)
DEFINE_SPMM_PANELS(panels1_i32, int32_t, 1, 4, XV_PART, XC_PART, cols4_i32)
DEFINE_SPMM_PANELS(panels2_u16, uint16_t, 2, 4, XV_PART, XC_PART, cols4_u16)
DEFINE_SPMM_PANELS(panels2_i32, int32_t, 2, 4, XV_PART, XC_PART, cols4_i32)
DEFINE_SPMM_SHARED(shared_full, MRV, XV_FULL, XC_FULL)
DEFINE_SPMM_SHARED(shared_part1, 1, XV_PART, XC_PART)
DEFINE_SPMM_SHARED(shared_part2, 2, XV_PART, XC_PART)
DEFINE_SPMV(spmv_u16, uint16_t, x4_u16)
DEFINE_SPMV(spmv_i32, int32_t, x4_i32)

/* Whether rows [n0, n1) run in GROUP4 panels: when their mean nonzeros per
 * row and GROUP4 panel (seg) are >= G4_MIN_SEGMENT, or >= G4_MIN_SEGMENT_WIDE
 * where the per-row kernel's panels are wider than 384 columns (> 48 KiB of
 * tile, which spills L1). Measured against the per-row kernel at M = 128:
 * K = 3072: seg 31 (90% sparse) 6% faster, 92 (70%) 25%, 15 (95%) 2% slower;
 * K = 1536: seg 31 2% faster; K = 768 (per-row panels of 384): seg 26 5%
 * slower, 51 6% faster, 77 8% faster; K = 1100 (367): seg 27 10% slower. */
static int use_group4(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {
  if (t->k <= KPANEL || n1 <= n0) return 0;
  const int64_t panels = (t->k + KPANEL_G4 - 1) / KPANEL_G4;
  const int64_t kb = (t->k + panels - 1) / panels;
  const double seg = (double)(t->indptr[n1] - t->indptr[n0]) * (double)kb /
                     ((double)(n1 - n0) * (double)t->k);
  const int64_t row_panels = (t->k + KPANEL - 1) / KPANEL;
  const int64_t row_kb = (t->k + row_panels - 1) / row_panels;
  return seg >= G4_MIN_SEGMENT || (row_kb > 384 && seg >= G4_MIN_SEGMENT_WIDE);
}

void sk_spmm_f32_32x1__avx512(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {
  /* [GROUP4][index width]: full tile, then partial tiles of 1-16 and 17-31
   * rows */
  static const sk_spmm_f32_fn full[2][2] = {{spmm_u16, spmm_i32}, {panels_u16, panels_i32}};
  static const sk_spmm_f32_fn part[2][MRV][2] = {
      {{part1_u16, part1_i32}, {part2_u16, part2_i32}},
      {{panels1_u16, panels1_i32}, {panels2_u16, panels2_i32}}};
  if (t->shared != NULL && t->index_bytes == 2 && (n0 & 3) == 0 &&
      ((n1 & 3) == 0 || n1 == t->shared->n)) {
    static const sk_spmm_f32_fn shared[MRV + 1] = {shared_full, shared_part1, shared_part2};
    shared[t->mr == MR ? 0 : 1 + (t->mr - 1) / 16](t, n0, n1);
    return;
  }
  const int wide = t->index_bytes != 2, g4 = use_group4(t, n0, n1);
  if (t->mr == MR) full[g4][wide](t, n0, n1);
  else part[g4][(t->mr - 1) / 16][wide](t, n0, n1);
}

void sk_spmv_f32__avx512(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmv_u16(t, n0, n1); else spmv_i32(t, n0, n1);
}
