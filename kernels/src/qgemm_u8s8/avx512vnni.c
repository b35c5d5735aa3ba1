/*
 * qgemm_u8s8/avx512vnni.c - vpdpbusd micro-kernels (exact: vpdpbusd does not
 * saturate; each u8*s8 product pair-sum is added in int32).
 *
 * gemm 8x48c4: 8 rows of A x 3 packed panels (48 columns). A column block's
 * first row tile also prefetches the next block's panels: at a few rows the
 * GEMM streams its weights from memory, and the hardware prefetchers stop at
 * each 4 KiB page (MiniLM's [16, 384] x [384, 1536] from memory: 71 -> 38 us).
 * Per group of 4 k:
 * 3 weight loads (64 B each), 8 broadcasts of 4 A bytes (vpbroadcastd),
 * 24 vpdpbusd into 24 zmm accumulators. Smaller row/panel counts at the
 * edges are separate instantiations of the same inline tile. The s32/f32
 * epilogue is written per tile (column operands loaded once, no reloads
 * of p after each store): its fixed cost per tile is what K = 384..768
 * tiles lose against the peak.
 * gemv 1x64c4 (M == 1): 4 panels, K unrolled by 4 into 16 accumulators so the
 * vpdpbusd latency is hidden while the weights stream in.
 */
#include "epilogue_avx512.h"

#define MR 8
#ifndef PF_HINT
#define PF_HINT _MM_HINT_T1
#endif
#define NP 3

/* acc += u8 a . s8 b per 4-byte group. Inline asm: GCC 12 copies every
 * accumulator through a spare register and the stack around the
 * _mm512_dpbusd_epi32 builtin, which halves the kernel's speed. */
static inline __attribute__((always_inline)) __m512i dp(__m512i acc, __m512i a, __m512i b) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
}

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* Accumulators are named variables, not an array: GCC keeps arrays of
 * vectors in memory across the loop. Rows/panels beyond R/P are constant
 * zeros that the compiler drops. */
#define ROW_DECL(i) __m512i c##i##0 = z, c##i##1 = z, c##i##2 = z;
#define ROW_STEP(i, A4)                                                                  \
  if (R > i) {                                                                           \
    const __m512i av = _mm512_set1_epi32(A4);                                            \
    c##i##0 = dp(c##i##0, av, b0);                                                       \
    if (P > 1) c##i##1 = dp(c##i##1, av, b1);                                            \
    if (P > 2) c##i##2 = dp(c##i##2, av, b2);                                            \
  }
#define ROW_STORE(i)                                                                     \
  if (R > i) {                                                                           \
    sk_q_store16_avx512(p, m0 + i, n0, c##i##0, s0, sk_q_cols(nr));                      \
    if (P > 1) sk_q_store16_avx512(p, m0 + i, n0 + 16, c##i##1, s1, sk_q_cols(nr - 16)); \
    if (P > 2) sk_q_store16_avx512(p, m0 + i, n0 + 32, c##i##2, s2, sk_q_cols(nr - 32)); \
  }
#define ALL_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

static ALWAYS_INLINE void tile(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t n0,
                               int64_t nr, const int R, const int P) {
  const __m512i z = _mm512_setzero_si512();
  ALL_ROWS(ROW_DECL)
  const int64_t lda = p->lda, ps = p->k4 * 64;
  const uint8_t *a = p->a + m0 * lda;
  const int8_t *b = p->b + (n0 / 16) * ps;
  const int64_t kfull = p->kfull;
  __m512i b0 = z, b1 = z, b2 = z;
  const char *pf = (const char *)p->prefetch;
  const int64_t pstep = p->prefetch_step;
  /* the first row tile of a column block fetches the next block's weights
   * (NP panels on) meanwhile: at a few rows the GEMM streams its weights from
   * memory, and the hardware prefetchers stop at each 4 KiB page */
  const int64_t pn = n0 / 16 + NP, left = (p->n + 15) / 16 - pn; /* next block's panels */
  const int64_t nnext = m0 == 0 ? (left < NP ? left : NP) : 0;
  const char *wn = nnext > 0 ? (const char *)(p->b + pn * ps) : NULL;
  for (int64_t g = 0; g < kfull; ++g) {
    if (pf) {
      _mm_prefetch(pf + pstep * g, PF_HINT);
      if (pstep > 64) _mm_prefetch(pf + pstep * g + 64, PF_HINT);
    }
    if (wn) {
      _mm_prefetch(wn + g * 64, _MM_HINT_T0);
      if (nnext > 1) _mm_prefetch(wn + ps + g * 64, _MM_HINT_T0);
      if (nnext > 2) _mm_prefetch(wn + 2 * ps + g * 64, _MM_HINT_T0);
    }
    b0 = _mm512_loadu_si512(b + g * 64);
    if (P > 1) b1 = _mm512_loadu_si512(b + ps + g * 64);
    if (P > 2) b2 = _mm512_loadu_si512(b + 2 * ps + g * 64);
#define STEP_FULL(i) ROW_STEP(i, sk_q_load4(a + i * lda + 4 * g))
    ALL_ROWS(STEP_FULL)
  }
  if (kfull < p->k4) {
    const int64_t g = kfull;
    b0 = _mm512_loadu_si512(b + g * 64);
    if (P > 1) b1 = _mm512_loadu_si512(b + ps + g * 64);
    if (P > 2) b2 = _mm512_loadu_si512(b + 2 * ps + g * 64);
#define STEP_TAIL(i) ROW_STEP(i, sk_q_tail4(a + i * lda + 4 * g, p->ktail))
    ALL_ROWS(STEP_TAIL)
  }
  const __m512i s0 = sk_q_sums16(p, n0, nr);
  const __m512i s1 = P > 1 ? sk_q_sums16(p, n0 + 16, nr - 16) : z;
  const __m512i s2 = P > 2 ? sk_q_sums16(p, n0 + 32, nr - 32) : z;
  if (p->out == SK_QOUT_U8) { /* static chains: the general 16-column epilogue */
    ALL_ROWS(ROW_STORE)
    return;
  }
  /* s32 and f32: fields of p copied to locals (stores through c could
   * otherwise alias p and force reloads), column operands loaded once */
  const __mmask16 k0 = sk_q_cols(nr), k1 = P > 1 ? sk_q_cols(nr - 16) : 0,
                  k2 = P > 2 ? sk_q_cols(nr - 32) : 0;
  const int32_t *zp = p->a_zp + m0 * p->zp_stride;
  const int64_t zps = p->zp_stride, ldc = p->ldc;
  if (p->out == SK_QOUT_S32) {
    int32_t *c = (int32_t *)p->c + m0 * ldc + n0;
#define S32_STORE(i, j)                                                                  \
  if (P > j)                                                                             \
    _mm512_mask_storeu_epi32(c + i * ldc + 16 * j, k##j,                                 \
                             _mm512_sub_epi32(c##i##j, _mm512_mullo_epi32(zv, s##j)));
#define S32_ROW(i)                                                                       \
  if (R > i) {                                                                           \
    const __m512i zv = _mm512_set1_epi32(zp[i * zps]);                                   \
    S32_STORE(i, 0) S32_STORE(i, 1) S32_STORE(i, 2)                                      \
  }
    ALL_ROWS(S32_ROW)
    return;
  }
  /* f32, same operation order as scalar.c: float(c) * (a_scale * w_scale)
   * (+ bias) (relu); the bias add and the relu are compiled in or out (hb,
   * hr: constants in each branch below), not masked ops run on every tile.
   * The add has an explicit rounding: a plain one may be contracted with the
   * multiply into an fma (other rounding) in gnu11 builds (-ffp-contract=fast) */
#define NEAREST (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
  const float *as = p->a_scale + m0 * p->as_stride;
  const int64_t ass = p->as_stride;
  const float *bias = p->bias ? p->bias + n0 : NULL;
  const int relu = p->act == SK_ACT_RELU;
  const float *ws = p->w_scale + (p->ws_stride ? n0 : 0);
  const __m512 zf = _mm512_setzero_ps();
#define COL_F32(j)                                                                       \
  const __m512 w##j = P > j ? (p->ws_stride ? _mm512_maskz_loadu_ps(k##j, ws + 16 * j)   \
                                            : _mm512_set1_ps(ws[0]))                     \
                            : zf;                                                        \
  const __m512 bb##j = P > j && bias ? _mm512_maskz_loadu_ps(k##j, bias + 16 * j) : zf;
  COL_F32(0) COL_F32(1) COL_F32(2)
  float *y = (float *)p->c + m0 * ldc + n0;
#define F32_STORE(i, j)                                                                  \
  if (P > j) {                                                                           \
    const __m512i cc = _mm512_sub_epi32(c##i##j, _mm512_mullo_epi32(zv, s##j));          \
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(cc), _mm512_mul_ps(av, w##j));           \
    if (hb) v = _mm512_add_round_ps(v, bb##j, NEAREST);                                  \
    if (hr) v = _mm512_max_ps(v, zf);                                                    \
    _mm512_mask_storeu_ps(y + i * ldc + 16 * j, k##j, v);                                \
  }
#define F32_ROW(i)                                                                       \
  if (R > i) {                                                                           \
    const __m512i zv = _mm512_set1_epi32(zp[i * zps]);                                   \
    const __m512 av = _mm512_set1_ps(as[i * ass]);                                       \
    F32_STORE(i, 0) F32_STORE(i, 1) F32_STORE(i, 2)                                      \
  }
#define F32_ROWS(HB, HR)                                                                 \
  {                                                                                      \
    const int hb = HB, hr = HR;                                                          \
    ALL_ROWS(F32_ROW)                                                                    \
  }
  if (bias) {
    if (relu) F32_ROWS(1, 1) else F32_ROWS(1, 0)
  } else {
    if (relu) F32_ROWS(0, 1) else F32_ROWS(0, 0)
  }
}

#define TILE(R, P)                                                                       \
  static void tile_##R##_##P(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t n0,        \
                             int64_t nr) {                                               \
    tile(p, m0, n0, nr, R, P);                                                           \
  }
#define TILES(R) TILE(R, 1) TILE(R, 2) TILE(R, 3)
TILES(1) TILES(2) TILES(3) TILES(4) TILES(5) TILES(6) TILES(7) TILES(8)

typedef void (*tile_fn)(const sk_qgemm_u8s8_args *, int64_t, int64_t, int64_t);
#define ROW(R) {tile_##R##_1, tile_##R##_2, tile_##R##_3}
static const tile_fn tiles[MR][NP] = {ROW(1), ROW(2), ROW(3), ROW(4),
                                      ROW(5), ROW(6), ROW(7), ROW(8)};

void sk_qgemm_u8s8_8x48c4__avx512vnni(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr,
                                      int64_t n0, int64_t nr) {
  tiles[mr - 1][(nr + 15) / 16 - 1](p, m0, n0, nr);
}

/* ---- M == 1 ---------------------------------------------------------------- */
#define GP 4 /* panels per gemv call */
#define GU 4 /* k groups unrolled into separate accumulators */

#define GSTEP(u, G)                                                                      \
  {                                                                                      \
    const __m512i av = _mm512_set1_epi32(sk_q_load4(a + 4 * (G)));                       \
    d##u##0 = dp(d##u##0, av, _mm512_loadu_si512(b + (G) * 64));                         \
    if (P > 1)                                                                           \
      d##u##1 = dp(d##u##1, av, _mm512_loadu_si512(b + ps + (G) * 64));                  \
    if (P > 2)                                                                           \
      d##u##2 =                                                                          \
          dp(d##u##2, av, _mm512_loadu_si512(b + 2 * ps + (G) * 64));                    \
    if (P > 3)                                                                           \
      d##u##3 =                                                                          \
          dp(d##u##3, av, _mm512_loadu_si512(b + 3 * ps + (G) * 64));                    \
  }

static ALWAYS_INLINE void gemv(const sk_qgemm_u8s8_args *p, int64_t n0, int64_t nr,
                               const int P) {
  const __m512i z = _mm512_setzero_si512();
  __m512i d00 = z, d01 = z, d02 = z, d03 = z, d10 = z, d11 = z, d12 = z, d13 = z;
  __m512i d20 = z, d21 = z, d22 = z, d23 = z, d30 = z, d31 = z, d32 = z, d33 = z;
  const int64_t ps = p->k4 * 64, kfull = p->kfull;
  const uint8_t *a = p->a;
  const int8_t *b = p->b + (n0 / 16) * ps;
  int64_t g = 0;
  for (; g + GU <= kfull; g += GU) {
    GSTEP(0, g) GSTEP(1, g + 1) GSTEP(2, g + 2) GSTEP(3, g + 3)
  }
  for (; g < kfull; ++g) GSTEP(0, g)
  if (kfull < p->k4) { /* partial last group: the A bytes past K are not read */
    const __m512i av = _mm512_set1_epi32(sk_q_tail4(a + 4 * g, p->ktail));
    d10 = dp(d10, av, _mm512_loadu_si512(b + g * 64));
    if (P > 1) d11 = dp(d11, av, _mm512_loadu_si512(b + ps + g * 64));
    if (P > 2) d12 = dp(d12, av, _mm512_loadu_si512(b + 2 * ps + g * 64));
    if (P > 3) d13 = dp(d13, av, _mm512_loadu_si512(b + 3 * ps + g * 64));
  }
#define GSUM(j) _mm512_add_epi32(_mm512_add_epi32(d0##j, d1##j), _mm512_add_epi32(d2##j, d3##j))
#define GSTORE(j)                                                                        \
  sk_q_store16_avx512(p, 0, n0 + 16 * j, GSUM(j), sk_q_sums16(p, n0 + 16 * j, nr - 16 * j), \
                      sk_q_cols(nr - 16 * j));
  GSTORE(0)
  if (P > 1) GSTORE(1)
  if (P > 2) GSTORE(2)
  if (P > 3) GSTORE(3)
}

static void gemv_1(const sk_qgemm_u8s8_args *p, int64_t n0, int64_t nr) { gemv(p, n0, nr, 1); }
static void gemv_2(const sk_qgemm_u8s8_args *p, int64_t n0, int64_t nr) { gemv(p, n0, nr, 2); }
static void gemv_3(const sk_qgemm_u8s8_args *p, int64_t n0, int64_t nr) { gemv(p, n0, nr, 3); }
static void gemv_4(const sk_qgemm_u8s8_args *p, int64_t n0, int64_t nr) { gemv(p, n0, nr, 4); }

void sk_qgemv_u8s8_1x64c4__avx512vnni(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr,
                                      int64_t n0, int64_t nr) {
  static void (*const fns[GP])(const sk_qgemm_u8s8_args *, int64_t, int64_t) = {
      gemv_1, gemv_2, gemv_3, gemv_4};
  (void)m0;
  (void)mr;
  fns[(nr + 15) / 16 - 1](p, n0, nr);
}

/* ---- peak: 24 independent accumulator chains, nothing else -------------- */
int64_t sk_qgemm_u8s8_peak_loop__avx512vnni(int64_t iters) {
  const __m512i a = _mm512_set1_epi32(0x01010101), b = _mm512_set1_epi32(0x01ff01ff);
#define PDECL(i) __m512i e##i = _mm512_set1_epi32(i);
#define PSTEP(i) e##i = dp(e##i, a, b);
#define PSUM(i) s = _mm512_add_epi32(s, e##i);
#define P24(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)             \
  X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)
  P24(PDECL)
  for (int64_t t = 0; t < iters; ++t) {
    P24(PSTEP)
  }
  __m512i s = _mm512_setzero_si512();
  P24(PSUM)
  return _mm512_reduce_add_epi32(s);
}
