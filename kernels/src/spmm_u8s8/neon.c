/*
 * spmm_u8s8/neon.c - exact AArch64 Advanced SIMD micro-kernels (baseline
 * ARMv8.0 NEON) for 1x4-blocked int8 weights.
 * spmm: MR = 16 activation rows. The tile's 64 bytes of one block column
 * (16 rows x 4 k, row-major dwords) are de-interleaved by vld4q_u8 into
 * "k = 4c + j for rows 0..15", zero-extended to 16 bits and multiplied by
 * the weight byte w[j] (sign-extended, broadcast from a lane) with
 * smlal/smlal2: exact u8 x s8 products, one int32 lane per activation row.
 * Even and odd j go to separate accumulators (8 in all) to shorten the
 * dependency chains. Leftover rows (and M <= 8) run an 8-row tile.
 * spmv (M == 1): 8 blocks at a time, activation dwords gathered by column,
 * both operands widened to 16 bits and multiplied lane by lane (smlal), the
 * lanes summed at the end; the row's last < 8 blocks in scalar code.
 * Sums wrap like scalar.c's uint32 arithmetic; the epilogue follows its order.
 * Both kernels again with the ARMv8.2 dot product at the end of the file,
 * compiled for it per function and used only when the CPU has it.
 */
#include <arm_neon.h>
#include <string.h>

#include "../internal.h"

#define MR 16

/* Fully unrolled constant-trip loops, so the accumulator arrays can live in
 * registers. */
#define UNROLL _Pragma("GCC unroll 16")

static inline uint32_t load_dword(const void *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

/* the 4 weight bytes of a block, sign-extended to 16-bit lanes 0..3 */
static inline int16x4_t load_w4(const int8_t *w) {
  return vget_low_s16(vmovl_s8(vreinterpret_s8_u32(vdup_n_u32(load_dword(w)))));
}

/* acc[0..3] (16 rows) += x[rows][j] * w[j] */
#define MAC_J(acc, xl, xh, w, j)                                   \
  do {                                                             \
    acc[0] = vmlal_lane_s16(acc[0], vget_low_s16(xl), w, j);       \
    acc[1] = vmlal_high_lane_s16(acc[1], xl, w, j);                \
    acc[2] = vmlal_lane_s16(acc[2], vget_low_s16(xh), w, j);       \
    acc[3] = vmlal_high_lane_s16(acc[3], xh, w, j);                \
  } while (0)

static inline int16x8_t widen_lo(uint8x16_t v) {
  return vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(v)));
}
static inline int16x8_t widen_hi(uint8x16_t v) {
  return vreinterpretq_s16_u16(vmovl_high_u8(v));
}

static inline float dequant1(int32_t v, const sk_spmm_u8s8_tile *t, int64_t i, int64_t n) {
  float f = (float)v * (t->xscale[i] * t->wscale[n]);
  if (t->bias) f += t->bias[n];
  if (t->act == SK_ACT_RELU && f < 0.0f) f = 0.0f;
  return f;
}

/* Zero-point correction and (float output) dequantization of rows i..i+3 of
 * channel n, returned as raw 32-bit lanes (int32 or float bits). acc holds
 * sum (x - zp_shift) w (zp_shift 128 in the dot-product kernels). */
static inline uint32x4_t epilogue(int32x4_t acc, const sk_spmm_u8s8_tile *t, int64_t i,
                                  int64_t n, int32_t zp_shift) {
  const int32x4_t zp = vsubq_s32(vld1q_s32(t->zp + i), vdupq_n_s32(zp_shift));
  acc = vmlsq_s32(acc, zp, vdupq_n_s32(t->row_sums[n]));
  if (t->xscale == NULL) return vreinterpretq_u32_s32(acc);
  const float32x4_t s = vmulq_f32(vld1q_f32(t->xscale + i), vdupq_n_f32(t->wscale[n]));
  float32x4_t f = vmulq_f32(vcvtq_f32_s32(acc), s);
  if (t->bias) f = vaddq_f32(f, vdupq_n_f32(t->bias[n]));
  if (t->act == SK_ACT_RELU) /* f < 0 ? 0 : f, NaN kept as in scalar.c */
    f = vbslq_f32(vcltq_f32(f, vdupq_n_f32(0.0f)), vdupq_n_f32(0.0f), f);
  return vreinterpretq_u32_f32(f);
}

/* M == 1 output of channel n from s = sum (x - zp_shift) w, wrapping */
static inline void store1(const sk_spmm_u8s8_tile *t, int64_t n, uint32_t s, int32_t zp_shift) {
  const uint32_t zp = (uint32_t)t->zp[0] - (uint32_t)zp_shift;
  const int32_t v = (int32_t)(s - zp * (uint32_t)t->row_sums[n]);
  if (t->xscale == NULL) ((int32_t *)t->y)[n] = v;
  else ((float *)t->y)[n] = dequant1(v, t, 0, n);
}

/* Channel n of the tile's rows from the even/odd accumulators (Q vectors of
 * 4 rows: 4 for MR rows, 2 for MR_SMALL) into y. */
static inline __attribute__((always_inline)) void store_rows(const sk_spmm_u8s8_tile *t,
                                                             int64_t n, const int32x4_t *ae,
                                                             const int32x4_t *ao, const int Q,
                                                             int32_t zp_shift) {
  uint32_t *y = (uint32_t *)t->y;
  uint32_t buf[MR];
  UNROLL for (int q = 0; q < Q; ++q)
    vst1q_u32(buf + 4 * q, epilogue(vaddq_s32(ae[q], ao[q]), t, 4 * q, n, zp_shift));
  const int64_t mr = t->mr < 4 * Q ? t->mr : 4 * Q; /* mr <= 4 Q: tells the compiler */
  for (int64_t i = 0; i < mr; ++i) y[i * t->ldy + n] = buf[i];
}

#define DEFINE_SPMM(NAME, IDX_T)                                               \
  static void NAME(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {       \
    const IDX_T *cols = (const IDX_T *)t->cols;                                \
    for (int64_t n = n0; n < n1; ++n) {                                        \
      int32x4_t ae[4], ao[4];                                                  \
      UNROLL for (int q = 0; q < 4; ++q) ae[q] = ao[q] = vdupq_n_s32(0);       \
      for (int64_t p = t->indptr[n]; p < t->indptr[n + 1]; ++p) {              \
        const int16x4_t w = load_w4(t->values + 4 * p);                       \
        const uint8x16x4_t x = vld4q_u8(t->xp + (int64_t)cols[p] * (MR * 4)); \
        MAC_J(ae, widen_lo(x.val[0]), widen_hi(x.val[0]), w, 0);               \
        MAC_J(ao, widen_lo(x.val[1]), widen_hi(x.val[1]), w, 1);               \
        MAC_J(ae, widen_lo(x.val[2]), widen_hi(x.val[2]), w, 2);               \
        MAC_J(ao, widen_lo(x.val[3]), widen_hi(x.val[3]), w, 3);               \
      }                                                                        \
      store_rows(t, n, ae, ao, 4, 0);                                          \
    }                                                                          \
  }

/* 4 activation dwords at block columns c[p..p+3] as one vector (memcpy
 * loads: the scratch row is bytes) */
#define GATHER4(xp, c, p)                                                      \
  vsetq_lane_u32(load_dword(xp + 4 * (int64_t)c[p + 3]),                       \
    vsetq_lane_u32(load_dword(xp + 4 * (int64_t)c[p + 2]),                     \
      vsetq_lane_u32(load_dword(xp + 4 * (int64_t)c[p + 1]),                   \
        vdupq_n_u32(load_dword(xp + 4 * (int64_t)c[p])), 1), 2), 3)

/* acc0/acc1 += lane-wise products of 4 blocks (16 bytes of x and of w) */
static inline void mac16(int32x4_t *acc0, int32x4_t *acc1, uint32x4_t xd, int8x16_t w) {
  const uint8x16_t x = vreinterpretq_u8_u32(xd);
  const int16x8_t xl = widen_lo(x), xh = widen_hi(x);
  const int16x8_t wl = vmovl_s8(vget_low_s8(w)), wh = vmovl_high_s8(w);
  *acc0 = vmlal_s16(*acc0, vget_low_s16(xl), vget_low_s16(wl));
  *acc1 = vmlal_high_s16(*acc1, xl, wl);
  *acc0 = vmlal_s16(*acc0, vget_low_s16(xh), vget_low_s16(wh));
  *acc1 = vmlal_high_s16(*acc1, xh, wh);
}

#define DEFINE_SPMV(NAME, IDX_T)                                               \
  static void NAME(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {       \
    const IDX_T *cols = (const IDX_T *)t->cols;                                \
    const uint8_t *xp = t->xp;                                                 \
    for (int64_t n = n0; n < n1; ++n) {                                        \
      int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;                \
      const int64_t e = t->indptr[n + 1];                                      \
      int64_t p = t->indptr[n];                                                \
      for (; p + 8 <= e; p += 8) {                                             \
        mac16(&a0, &a1, GATHER4(xp, cols, p), vld1q_s8(t->values + 4 * p));    \
        mac16(&a2, &a3, GATHER4(xp, cols, p + 4), vld1q_s8(t->values + 4 * p + 16)); \
      }                                                                        \
      uint32_t s = vaddvq_u32(vreinterpretq_u32_s32(                           \
          vaddq_s32(vaddq_s32(a0, a1), vaddq_s32(a2, a3))));                   \
      for (; p < e; ++p) {                                                     \
        const uint8_t *x = xp + 4 * (int64_t)cols[p];                          \
        const int8_t *w = t->values + 4 * p;                                   \
        s += (uint32_t)(x[0] * w[0] + x[1] * w[1] + x[2] * w[2] + x[3] * w[3]); \
      }                                                                        \
      store1(t, n, s, 0);                                                      \
    }                                                                          \
  }

/* Small tiles (leftover rows, M <= 8): 8 rows, vld4_u8 on 32 bytes. */
#define MR_SMALL 8
#define DEFINE_SPMM8(NAME, IDX_T)                                              \
  static void NAME(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {       \
    const IDX_T *cols = (const IDX_T *)t->cols;                                \
    for (int64_t n = n0; n < n1; ++n) {                                        \
      int32x4_t ae[2], ao[2];                                                  \
      ae[0] = ae[1] = ao[0] = ao[1] = vdupq_n_s32(0);                          \
      for (int64_t p = t->indptr[n]; p < t->indptr[n + 1]; ++p) {              \
        const int16x4_t w = load_w4(t->values + 4 * p);                       \
        const uint8x8x4_t x = vld4_u8(t->xp + (int64_t)cols[p] * (MR_SMALL * 4)); \
        MAC8_J(ae, x.val[0], w, 0);                                            \
        MAC8_J(ao, x.val[1], w, 1);                                            \
        MAC8_J(ae, x.val[2], w, 2);                                            \
        MAC8_J(ao, x.val[3], w, 3);                                            \
      }                                                                        \
      store_rows(t, n, ae, ao, 2, 0);                                          \
    }                                                                          \
  }

/* acc[0..1] (8 rows) += x[rows][j] * w[j] */
#define MAC8_J(acc, xj, w, j)                                                  \
  do {                                                                         \
    const int16x8_t x16 = vreinterpretq_s16_u16(vmovl_u8(xj));                 \
    acc[0] = vmlal_lane_s16(acc[0], vget_low_s16(x16), w, j);                  \
    acc[1] = vmlal_high_lane_s16(acc[1], x16, w, j);                           \
  } while (0)

DEFINE_SPMM(spmm_u16, uint16_t)
DEFINE_SPMM8(spmm8_u16, uint16_t)
DEFINE_SPMM8(spmm8_i32, int32_t)
DEFINE_SPMM(spmm_i32, int32_t)
DEFINE_SPMV(spmv_u16, uint16_t)
DEFINE_SPMV(spmv_i32, int32_t)

void sk_spmm_u8s8_16x1c4__neon(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmm_u16(t, n0, n1); else spmm_i32(t, n0, n1);
}

void sk_spmm_u8s8_8x1c4__neon(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmm8_u16(t, n0, n1); else spmm8_i32(t, n0, n1);
}

void sk_spmv_u8s8_1x1c4__neon(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmv_u16(t, n0, n1); else spmv_i32(t, n0, n1);
}

/* ---- ARMv8.2 dot product (sdot), chosen at run time when the CPU has it --
 * The tile's dwords are already sdot's operand (4 k of one row per lane), so
 * one sdot does a block for 4 rows. sdot takes signed bytes only: activations
 * are flipped to x - 128 (xor 0x80) and the epilogue adds 128 * row_sums[n]
 * back (zp_shift = 128). |sum (x - 128) w| <= 128 * 127 * K stays exact
 * wherever the scalar sum does. */
#define DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))

static inline DOTPROD int8x16_t flip(uint8x16_t x) {
  return vreinterpretq_s8_u8(veorq_u8(x, vdupq_n_u8(0x80)));
}

static inline DOTPROD int8x16_t dup_w(const int8_t *w) {
  return vreinterpretq_s8_u32(vdupq_n_u32(load_dword(w)));
}

/* acc[0..3] (16 rows) += block dot products of the tile's column c */
#define DOT_BLOCK(acc, xc, w)                                                  \
  do {                                                                         \
    const uint8x16x4_t x = vld1q_u8_x4(xc);                                    \
    acc[0] = vdotq_s32(acc[0], flip(x.val[0]), w);                             \
    acc[1] = vdotq_s32(acc[1], flip(x.val[1]), w);                             \
    acc[2] = vdotq_s32(acc[2], flip(x.val[2]), w);                             \
    acc[3] = vdotq_s32(acc[3], flip(x.val[3]), w);                             \
  } while (0)

/* Two blocks per step into separate accumulators (8 chains in flight). */
#define DEFINE_DOT_SPMM(NAME, IDX_T)                                           \
  static DOTPROD void NAME(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) { \
    const IDX_T *cols = (const IDX_T *)t->cols;                                \
    for (int64_t n = n0; n < n1; ++n) {                                        \
      int32x4_t ae[4], ao[4];                                                  \
      UNROLL for (int q = 0; q < 4; ++q) ae[q] = ao[q] = vdupq_n_s32(0);       \
      const int64_t e = t->indptr[n + 1];                                      \
      int64_t p = t->indptr[n];                                                \
      for (; p + 2 <= e; p += 2) {                                             \
        DOT_BLOCK(ae, t->xp + (int64_t)cols[p] * (MR * 4), dup_w(t->values + 4 * p)); \
        DOT_BLOCK(ao, t->xp + (int64_t)cols[p + 1] * (MR * 4),                 \
                  dup_w(t->values + 4 * p + 4));                               \
      }                                                                        \
      if (p < e) DOT_BLOCK(ae, t->xp + (int64_t)cols[p] * (MR * 4), dup_w(t->values + 4 * p)); \
      store_rows(t, n, ae, ao, 4, 128);                                        \
    }                                                                          \
  }

/* spmv: 8 blocks per step (two sdot, one lane per block); the last < 8 in
 * scalar code on the same flipped values. */
#define DEFINE_DOT_SPMV(NAME, IDX_T)                                           \
  static DOTPROD void NAME(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) { \
    const IDX_T *cols = (const IDX_T *)t->cols;                                \
    const uint8_t *xp = t->xp;                                                 \
    for (int64_t n = n0; n < n1; ++n) {                                        \
      int32x4_t a0 = vdupq_n_s32(0), a1 = a0;                                  \
      const int64_t e = t->indptr[n + 1];                                      \
      int64_t p = t->indptr[n];                                                \
      for (; p + 8 <= e; p += 8) {                                             \
        a0 = vdotq_s32(a0, flip(vreinterpretq_u8_u32(GATHER4(xp, cols, p))),   \
                       vld1q_s8(t->values + 4 * p));                           \
        a1 = vdotq_s32(a1, flip(vreinterpretq_u8_u32(GATHER4(xp, cols, p + 4))), \
                       vld1q_s8(t->values + 4 * p + 16));                      \
      }                                                                        \
      uint32_t s = vaddvq_u32(vreinterpretq_u32_s32(vaddq_s32(a0, a1)));       \
      for (; p < e; ++p) {                                                     \
        const uint8_t *x = xp + 4 * (int64_t)cols[p];                          \
        const int8_t *w = t->values + 4 * p;                                   \
        s += (uint32_t)((x[0] - 128) * w[0] + (x[1] - 128) * w[1] +            \
                        (x[2] - 128) * w[2] + (x[3] - 128) * w[3]);            \
      }                                                                        \
      store1(t, n, s, 128);                                                    \
    }                                                                          \
  }

/* Small tiles: 8 rows (two sdot per block), two blocks per step. */
#define DOT_BLOCK8(acc, xc, w)                                                 \
  do {                                                                         \
    const uint8x16x2_t x = vld1q_u8_x2(xc);                                    \
    acc[0] = vdotq_s32(acc[0], flip(x.val[0]), w);                             \
    acc[1] = vdotq_s32(acc[1], flip(x.val[1]), w);                             \
  } while (0)

#define DEFINE_DOT_SPMM8(NAME, IDX_T)                                          \
  static DOTPROD void NAME(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) { \
    const IDX_T *cols = (const IDX_T *)t->cols;                                \
    for (int64_t n = n0; n < n1; ++n) {                                        \
      int32x4_t ae[2], ao[2];                                                  \
      ae[0] = ae[1] = ao[0] = ao[1] = vdupq_n_s32(0);                          \
      const int64_t e = t->indptr[n + 1];                                      \
      int64_t p = t->indptr[n];                                                \
      for (; p + 2 <= e; p += 2) {                                             \
        DOT_BLOCK8(ae, t->xp + (int64_t)cols[p] * (MR_SMALL * 4), dup_w(t->values + 4 * p)); \
        DOT_BLOCK8(ao, t->xp + (int64_t)cols[p + 1] * (MR_SMALL * 4),          \
                   dup_w(t->values + 4 * p + 4));                              \
      }                                                                        \
      if (p < e)                                                               \
        DOT_BLOCK8(ae, t->xp + (int64_t)cols[p] * (MR_SMALL * 4), dup_w(t->values + 4 * p)); \
      store_rows(t, n, ae, ao, 2, 128);                                        \
    }                                                                          \
  }

DEFINE_DOT_SPMM(dot_spmm_u16, uint16_t)
DEFINE_DOT_SPMM8(dot_spmm8_u16, uint16_t)
DEFINE_DOT_SPMM8(dot_spmm8_i32, int32_t)
DEFINE_DOT_SPMM(dot_spmm_i32, int32_t)
DEFINE_DOT_SPMV(dot_spmv_u16, uint16_t)
DEFINE_DOT_SPMV(dot_spmv_i32, int32_t)

void sk_spmm_u8s8_16x1c4__neondot(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) dot_spmm_u16(t, n0, n1); else dot_spmm_i32(t, n0, n1);
}

void sk_spmm_u8s8_8x1c4__neondot(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) dot_spmm8_u16(t, n0, n1); else dot_spmm8_i32(t, n0, n1);
}

void sk_spmv_u8s8_1x1c4__neondot(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) dot_spmv_u16(t, n0, n1); else dot_spmv_i32(t, n0, n1);
}
