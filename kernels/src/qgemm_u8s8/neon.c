/*
 * qgemm_u8s8/neon.c - exact AArch64 Advanced SIMD micro-kernels (baseline
 * ARMv8.0 NEON, no dot-product extension needed).
 * One packed 64-byte group (16 channels x 4 k, channel-major) is loaded with
 * vld4q_s8, which de-interleaves it into 4 vectors "k = 4g + r for channels
 * 0..15". Each is sign-extended to 16 bits and multiplied by the activation
 * byte a[4g + r] (zero-extended to 16 bits, broadcast from a lane) with
 * smlal/smlal2: u8 x s8 products (|p| <= 255 * 127) summed exactly in int32
 * lanes, one lane per output channel, so no horizontal sums are needed.
 *   gemm: 4 rows x 16 columns (16 accumulators + 8 widened weight vectors).
 *   gemv (M == 1): 1 row x 64 columns (4 panels, 16 independent accumulators).
 * Same tiles with the ARMv8.2 dot product (sdot) at the end of the file,
 * compiled for that extension per function and used only when the CPU has
 * it (dispatch.c: sk_qgemm_u8s8_select).
 * Epilogue in the same operation order as scalar.c.
 */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "../internal.h"

#define MR 4
#define GEMV_PANELS 4

/* Fully unrolled constant-trip loops, so the accumulator arrays can live in
 * registers. */
#define UNROLL _Pragma("GCC unroll 16")

/* 4 activation bytes as 16-bit lanes 0..3 (lanes 4..7 zero) */
static inline int16x4_t load_a4(const uint8_t *a) {
  uint32_t v;
  memcpy(&v, a, 4);
  return vget_low_s16(vreinterpretq_s16_u16(vmovl_u8(vcreate_u8((uint64_t)v))));
}

/* the first n (< 4) bytes only: the row may end there */
static inline int16x4_t load_a_tail(const uint8_t *a, int n) {
  uint64_t v = 0;
  for (int r = 0; r < n; ++r) v |= (uint64_t)a[r] << (8 * r);
  return vget_low_s16(vreinterpretq_s16_u16(vmovl_u8(vcreate_u8(v))));
}

/* acc[i][0..3] (16 channels) += a[i][r] * w[r][channels] over r = 0..3 */
#define MAC_R(acc, wl, wh, av, r)                                  \
  do {                                                             \
    acc[0] = vmlal_lane_s16(acc[0], vget_low_s16(wl), av, r);      \
    acc[1] = vmlal_high_lane_s16(acc[1], wl, av, r);               \
    acc[2] = vmlal_lane_s16(acc[2], vget_low_s16(wh), av, r);      \
    acc[3] = vmlal_high_lane_s16(acc[3], wh, av, r);               \
  } while (0)

/* One packed group of one panel times R rows of activations. */
static inline __attribute__((always_inline)) void group(int32x4_t acc[][4],
                                                        const int8_t *b,
                                                        const int16x4_t *av, const int R) {
  const int8x16x4_t w = vld4q_s8(b);
  const int16x8_t w0l = vmovl_s8(vget_low_s8(w.val[0])), w0h = vmovl_high_s8(w.val[0]);
  const int16x8_t w1l = vmovl_s8(vget_low_s8(w.val[1])), w1h = vmovl_high_s8(w.val[1]);
  const int16x8_t w2l = vmovl_s8(vget_low_s8(w.val[2])), w2h = vmovl_high_s8(w.val[2]);
  const int16x8_t w3l = vmovl_s8(vget_low_s8(w.val[3])), w3h = vmovl_high_s8(w.val[3]);
  UNROLL for (int i = 0; i < R; ++i) {
    MAC_R(acc[i], w0l, w0h, av[i], 0);
    MAC_R(acc[i], w1l, w1h, av[i], 1);
    MAC_R(acc[i], w2l, w2h, av[i], 2);
    MAC_R(acc[i], w3l, w3h, av[i], 3);
  }
}

static inline uint32x4_t lanes_gt_zero(float32x4_t y) { return vcgtq_f32(y, vdupq_n_f32(0.0f)); }

/* Epilogue for 16 columns [n, n + cols) of row i. The accumulators hold
 * sum_k (a - zp_shift) q (zp_shift: 0, or 128 in the dot-product kernels),
 * so the correction is - (zp - zp_shift) * sum_k q (int32 lanes wrap; the
 * final value is exact). */
static void store16(const sk_qgemm_u8s8_args *p, int64_t i, int64_t n, int32x4_t acc0,
                    int32x4_t acc1, int32x4_t acc2, int32x4_t acc3, int64_t cols,
                    int32_t zp_shift) {
  const int32x4_t acc[4] = {acc0, acc1, acc2, acc3}; /* by value: the tile's stay in registers */
  int32_t sums[16] = {0};
  for (int64_t j = 0; j < cols; ++j) sums[j] = sk_qsum24(p->sum24, n + j);
  const int32x4_t zp = vdupq_n_s32(p->a_zp[i * p->zp_stride] - zp_shift);
  int32x4_t c[4];
  UNROLL for (int q = 0; q < 4; ++q) c[q] = vmlsq_s32(acc[q], zp, vld1q_s32(sums + 4 * q));
  if (p->out == SK_QOUT_S32) {
    int32_t *dst = (int32_t *)p->c + i * p->ldc + n;
    if (cols == 16) {
      UNROLL for (int q = 0; q < 4; ++q) vst1q_s32(dst + 4 * q, c[q]);
    } else {
      int32_t tmp[16];
      UNROLL for (int q = 0; q < 4; ++q) vst1q_s32(tmp + 4 * q, c[q]);
      memcpy(dst, tmp, (size_t)cols * 4);
    }
    return;
  }
  float ws[16] = {0}, bias[16] = {0};
  for (int64_t j = 0; j < cols; ++j) ws[j] = p->w_scale[(n + j) * p->ws_stride];
  if (p->bias) memcpy(bias, p->bias + n, (size_t)cols * 4);
  const float32x4_t as = vdupq_n_f32(p->a_scale[i * p->as_stride]);
  float32x4_t y[4];
  UNROLL for (int q = 0; q < 4; ++q) {
    y[q] = vmulq_f32(vcvtq_f32_s32(c[q]), vmulq_f32(as, vld1q_f32(ws + 4 * q)));
    /* the product rounded on its own, as in scalar.c: without this empty asm
     * a gnu11 build (CMake's: -ffp-contract=fast) fuses the add into fmla */
    __asm__("" : "+w"(y[q]));
    if (p->bias) y[q] = vaddq_f32(y[q], vld1q_f32(bias + 4 * q));
    if (p->act == SK_ACT_RELU) /* y > 0 ? y : 0, NaN -> 0 as in scalar.c */
      y[q] = vreinterpretq_f32_u32(vandq_u32(lanes_gt_zero(y[q]), vreinterpretq_u32_f32(y[q])));
  }
  if (p->out == SK_QOUT_F32) {
    float *dst = (float *)p->c + i * p->ldc + n;
    if (cols == 16) {
      UNROLL for (int q = 0; q < 4; ++q) vst1q_f32(dst + 4 * q, y[q]);
    } else {
      float tmp[16];
      UNROLL for (int q = 0; q < 4; ++q) vst1q_f32(tmp + 4 * q, y[q]);
      memcpy(dst, tmp, (size_t)cols * 4);
    }
    return;
  }
  const float32x4_t os = vdupq_n_f32(p->out_scale), oz = vdupq_n_f32(p->out_zp);
  uint16x4_t h[4];
  UNROLL for (int q = 0; q < 4; ++q) {
    float32x4_t v = vaddq_f32(vrndnq_f32(vdivq_f32(y[q], os)), oz);
    v = vminnmq_f32(vmaxnmq_f32(v, vdupq_n_f32(0.0f)), vdupq_n_f32(255.0f)); /* NaN -> 0 */
    h[q] = vmovn_u32(vcvtq_u32_f32(v));
  }
  const uint8x16_t u8 = vcombine_u8(vmovn_u16(vcombine_u16(h[0], h[1])),
                                    vmovn_u16(vcombine_u16(h[2], h[3])));
  uint8_t *dst = (uint8_t *)p->c + i * p->ldc + n;
  if (cols == 16) {
    vst1q_u8(dst, u8);
  } else {
    uint8_t tmp[16];
    vst1q_u8(tmp, u8);
    memcpy(dst, tmp, (size_t)cols);
  }
}

/* The accumulators of a tile (R rows x NP panels) zeroed, and stored
 * through store16: shared by the baseline and dot-product tiles. */
static inline __attribute__((always_inline)) void zero_tile(int32x4_t acc[][4], const int T) {
  UNROLL for (int t = 0; t < T; ++t)
    UNROLL for (int q = 0; q < 4; ++q) acc[t][q] = vdupq_n_s32(0);
}

static inline __attribute__((always_inline)) void store_tile(const sk_qgemm_u8s8_args *p,
                                                             int32x4_t acc[][4], int64_t m0,
                                                             int64_t n0, int64_t nr, const int R,
                                                             const int NP, int32_t zp_shift) {
  UNROLL for (int j = 0; j < NP; ++j) {
    const int64_t cols = nr - 16 * j < 16 ? nr - 16 * j : 16;
    UNROLL for (int i = 0; i < R; ++i) {
      const int32x4_t *c = acc[j * R + i];
      store16(p, m0 + i, n0 + 16 * j, c[0], c[1], c[2], c[3], cols, zp_shift);
    }
  }
}

/* R rows x NP panels (16 columns each) starting at row m0, column n0. */
static inline __attribute__((always_inline)) void tile(const sk_qgemm_u8s8_args *p, int64_t m0,
                                                       int64_t n0, int64_t nr, const int R,
                                                       const int NP) {
  int32x4_t acc[MR * GEMV_PANELS][4]; /* [panel * R + row] */
  zero_tile(acc, R * NP);
  const int64_t lda = p->lda, k4 = p->k4, kfull = p->kfull;
  const uint8_t *a = p->a + m0 * lda;
  const int8_t *b = p->b + (n0 / 16) * k4 * 64;
  int16x4_t av[MR];
  for (int64_t g = 0; g < kfull; ++g) {
    UNROLL for (int i = 0; i < R; ++i) av[i] = load_a4(a + i * lda + 4 * g);
    UNROLL for (int j = 0; j < NP; ++j) {
      group(acc + j * R, b + (j * k4 + g) * 64, av, R);
      /* keeps GCC from hoisting every panel's loads first (and spilling) */
      if (NP > 1) __asm__ volatile("" ::: "memory");
    }
  }
  if (kfull < k4) { /* last group: ktail bytes of A, the packed zeros beyond */
    UNROLL for (int i = 0; i < R; ++i) av[i] = load_a_tail(a + i * lda + 4 * kfull, p->ktail);
    UNROLL for (int j = 0; j < NP; ++j) group(acc + j * R, b + (j * k4 + kfull) * 64, av, R);
  }
  store_tile(p, acc, m0, n0, nr, R, NP, 0);
}

/* The tile shapes the drivers ask for, and the two entry points: GEMM tiles
 * of 1-4 rows x one panel (by mr), GEMV tiles of one row x 1-4 panels (by nr).
 * BODY(p, m0, n0, nr, R, NP) is the always-inline tile; ATTR its target. */
#define TILE_FN(ATTR, BODY, R, NP)                                                   \
  static ATTR void BODY##_##R##x##NP(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t n0, \
                                     int64_t nr) {                                   \
    BODY(p, m0, n0, nr, R, NP);                                                      \
  }
#define DEFINE_ENTRIES(ATTR, BODY, GEMM, GEMV)                                       \
  TILE_FN(ATTR, BODY, 1, 1)                                                          \
  TILE_FN(ATTR, BODY, 2, 1)                                                          \
  TILE_FN(ATTR, BODY, 3, 1)                                                          \
  TILE_FN(ATTR, BODY, 4, 1)                                                          \
  TILE_FN(ATTR, BODY, 1, 2)                                                          \
  TILE_FN(ATTR, BODY, 1, 3)                                                          \
  TILE_FN(ATTR, BODY, 1, 4)                                                          \
  void GEMM(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr, int64_t n0, int64_t nr) { \
    switch (mr) {                                                                    \
      case 4: BODY##_4x1(p, m0, n0, nr); break;                                      \
      case 3: BODY##_3x1(p, m0, n0, nr); break;                                      \
      case 2: BODY##_2x1(p, m0, n0, nr); break;                                      \
      default: BODY##_1x1(p, m0, n0, nr); break;                                     \
    }                                                                                \
  }                                                                                  \
  /* M == 1: up to GEMV_PANELS panels per call, one row (mr == 1). */                \
  void GEMV(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr, int64_t n0, int64_t nr) { \
    (void)mr;                                                                        \
    switch ((nr + 15) / 16) {                                                        \
      case 4: BODY##_1x4(p, m0, n0, nr); break;                                      \
      case 3: BODY##_1x3(p, m0, n0, nr); break;                                      \
      case 2: BODY##_1x2(p, m0, n0, nr); break;                                      \
      default: BODY##_1x1(p, m0, n0, nr); break;                                     \
    }                                                                                \
  }

DEFINE_ENTRIES(, tile, sk_qgemm_u8s8_4x16c4__neon, sk_qgemv_u8s8_1x64c4__neon)

/* ---- ARMv8.2 dot product (sdot), chosen at run time when the CPU has it --
 * sdot multiplies signed bytes only, so the activations are flipped to
 * a - 128 (xor 0x80, now in [-128, 127]) and the epilogue adds 128 * sum_k q
 * back (store16's zp_shift). The packed 16-byte quarter (4 channels x 4 k)
 * is exactly sdot's operand: one lane per channel, no widening, 16 multiply-
 * adds per instruction. |sum_k (a - 128) q| <= 128 * 127 * 65536 < 2^31. */
#define DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))

/* group gg (0..3) of the 4 loaded into av: acc += w . a[lane gg] */
#define DOT_GROUP(gg)                                                              \
  do {                                                                             \
    int8x16_t w[4];                                                                \
    UNROLL for (int q = 0; q < 4; ++q) w[q] = vld1q_s8(bj + (gg) * 64 + 16 * q);   \
    UNROLL for (int i = 0; i < R; ++i)                                             \
      UNROLL for (int q = 0; q < 4; ++q)                                           \
        acc[j * R + i][q] = vdotq_laneq_s32(acc[j * R + i][q], w[q], av[i], (gg)); \
    __asm__ volatile("" ::: "memory"); /* one group's weights live at a time */    \
  } while (0)

static inline DOTPROD __attribute__((always_inline)) void
dot_tile(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t n0, int64_t nr, const int R,
         const int NP) {
  int32x4_t acc[MR * GEMV_PANELS][4]; /* [panel * R + row] */
  zero_tile(acc, R * NP);
  const int64_t lda = p->lda, k4 = p->k4, kfull = p->kfull;
  const uint8_t *a = p->a + m0 * lda;
  const int8_t *b = p->b + (n0 / 16) * k4 * 64;
  const uint8x16_t flip = vdupq_n_u8(0x80);
  int8x16_t av[MR];
  int64_t g = 0;
  for (; g + 4 <= kfull; g += 4) { /* 16 bytes of each A row: 4 groups */
    UNROLL for (int i = 0; i < R; ++i)
      av[i] = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(a + i * lda + 4 * g), flip));
    UNROLL for (int j = 0; j < NP; ++j) {
      const int8_t *bj = b + (j * k4 + g) * 64;
      /* the lane must be a literal even without optimization */
      DOT_GROUP(0);
      DOT_GROUP(1);
      DOT_GROUP(2);
      DOT_GROUP(3);
    }
  }
  for (; g < k4; ++g) { /* the last < 4 groups, one at a time; ktail bytes in the last */
    UNROLL for (int i = 0; i < R; ++i) {
      const uint8_t *ai = a + i * lda + 4 * g;
      uint32_t v = 0;
      if (g < kfull) memcpy(&v, ai, 4);
      else for (int r = 0; r < p->ktail; ++r) v |= (uint32_t)ai[r] << (8 * r);
      /* bytes past ktail become -128 but meet packed zeros */
      av[i] = vreinterpretq_s8_u8(veorq_u8(vreinterpretq_u8_u32(vdupq_n_u32(v)), flip));
    }
    UNROLL for (int j = 0; j < NP; ++j) {
      const int8_t *bj = b + (j * k4 + g) * 64;
      UNROLL for (int q = 0; q < 4; ++q) {
        const int8x16_t w = vld1q_s8(bj + 16 * q);
        UNROLL for (int i = 0; i < R; ++i)
          acc[j * R + i][q] = vdotq_s32(acc[j * R + i][q], w, av[i]);
      }
    }
  }
  store_tile(p, acc, m0, n0, nr, R, NP, 128);
}

DEFINE_ENTRIES(DOTPROD, dot_tile, sk_qgemm_u8s8_4x16c4__neondot,
               sk_qgemv_u8s8_1x64c4__neondot)
