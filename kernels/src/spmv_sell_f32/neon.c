/*
 * spmv_sell_f32/neon.c - AArch64 Advanced SIMD kernel for the sliced ELL
 * (sparsekit.h).
 *
 * A 16-row slice is four q-register quarters of 4 lanes. Per group and row of
 * x, the 32-float window (128 bytes) sits in 8 registers as two 64-byte
 * tables, and step j of a quarter gathers its 4 x values with one TBL (4
 * registers, bytes 0-63) and one TBX (bytes 64-127, the index minus 64 via
 * an EOR with 0x40; TBX keeps the TBL result where its index is out of range).
 * Byte indices: the slot byte XOR 0x80, shifted left by 2 with saturation,
 * gives 4 * offset for a used slot and 0xff for an empty one; one TBL over the
 * quarter's 16 index bytes copies step j's byte to all 4 bytes of its lane,
 * and an OR adds the byte number 0-3 (0xff stays 0xff). An index >= 128 is
 * out of range for both lookups, so an empty slot gathers 0 without reading
 * any x: inf/NaN in columns a row does not use cannot reach it, with no mask
 * op and no check of x.
 * Why TBL rather than per-lane loads (LD1 {v.s}[lane]): a lane load needs its
 * offset extracted to a general register and an address formed first (UBFX,
 * ADD, LD1: ~3 ops per slot, ~12 per 4 slots plus a mask for the empty ones)
 * against ~7 ops per 4 slots here (TBL + OR for the index, EOR, TBL4, TBX4,
 * value load, FMLA), no branch and no mask. Each group's index bytes and
 * values are made and loaded once for 2 rows of x (both windows in 16
 * registers; 4 rows would not fit in 32). One accumulator per quarter and row:
 * the 4 quarters are independent chains of 4 FMLAs per group, short next to
 * the group's ~135 instructions.
 * The pragma below: GCC's pre-allocation scheduler hoists the lookups ahead
 * of their FMLAs and runs out of the 32 registers (spills, reloaded constants,
 * copies into the consecutive registers TBL needs): 148 instructions per group
 * at M = 1 and 314 at M = 2 with it, 135 and 200 without (gcc 12 -O3).
 * Speed not measured (no ARM machine here; built and tested under qemu only).
 * Executed instructions counted under qemu (benchmarks/RESULTS.md,
 * "SlicedEllMatrix on NEON"): 3.6-3.8 per nonzero at 90% sparsity, M = 1
 * (scalar kernel 13.7-14.3), 2.8 per nonzero and row at M = 2 and 4 (scalar
 * 14.2). Fewer instructions, not a measured speed: what a 4-register TBL /
 * TBX costs differs between cores, the scalar loop branches on each slot's
 * used bit (data-dependent), and neither is measured here.
 */
#include <arm_neon.h>

#include "../internal.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-schedule-insns")
#endif

/* Lane l's byte j, copied to the lane's 4 bytes: pattern + j. */
static const uint8_t lane_bytes[16] = {0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12};

/* x values of one step of a quarter: byte indices ilo into the window's
 * first 64 bytes lo, ihi = ilo ^ 0x40 into the last 64 bytes hi. */
static inline __attribute__((always_inline)) float32x4_t gather(uint8x16x4_t lo, uint8x16x4_t hi,
                                                               uint8x16_t ilo, uint8x16_t ihi) {
  return vreinterpretq_f32_u8(vqtbx4q_u8(vqtbl4q_u8(lo, ilo), hi, ihi));
}

/* act(acc + bias) of one row's slice s into y (lanes < N only). */
static inline __attribute__((always_inline)) void store_slice(
    const sk_sell_f32 *w, int64_t s, float32x4_t a0, float32x4_t a1, float32x4_t a2,
    float32x4_t a3, const float *bias, sk_activation act, float *y) {
  const float32x4_t acc[4] = {a0, a1, a2, a3}; /* by value: the loop keeps them in registers */
  const int64_t left = w->n - 16 * s;
  if (left < 16) { /* partial last slice */
    float t[16];
    for (int q = 0; q < 4; ++q) vst1q_f32(t + 4 * q, acc[q]);
    for (int64_t i = 0; i < left; ++i) {
      float v = t[i] + (bias ? bias[16 * s + i] : 0.0f);
      if (act == SK_ACT_RELU && !(v > 0.0f)) v = v != v ? v : 0.0f;
      y[16 * s + i] = v;
    }
    return;
  }
  for (int q = 0; q < 4; ++q) {
    float32x4_t v = acc[q];
    if (bias) v = vaddq_f32(v, vld1q_f32(bias + 16 * s + 4 * q));
    if (act == SK_ACT_RELU) v = vmaxq_f32(v, vdupq_n_f32(0.0f)); /* NaN stays */
    vst1q_f32(y + 16 * s + 4 * q, v);
  }
}

/* Slice s for mb = 1 or 2 rows of x (x, y: the first row's). */
static inline __attribute__((always_inline)) void slice_rows(
    const sk_sell_f32 *w, int64_t s, const int mb, const float *x, int64_t ldx,
    const float *bias, sk_activation act, float *y, int64_t ldy) {
  float32x4_t acc0[4], acc1[4]; /* rows 0 and 1, by quarter */
  for (int q = 0; q < 4; ++q) acc0[q] = acc1[q] = vdupq_n_f32(0.0f);
  const uint8x16_t pattern = vld1q_u8(lane_bytes);
  const uint8x16_t byte_no = vreinterpretq_u8_u32(vdupq_n_u32(0x03020100u));
  const int64_t g1 = w->group_ptr[s + 1];
  for (int64_t g = w->group_ptr[s]; g < g1; ++g) {
    const float *vg = w->values + g * 64;
    const uint8_t *xw = (const uint8_t *)(x + w->window[g]);
    const uint8x16x4_t lo0 = vld1q_u8_x4(xw), hi0 = vld1q_u8_x4(xw + 64);
    uint8x16x4_t lo1 = lo0, hi1 = hi0;
    if (mb == 2) {
      lo1 = vld1q_u8_x4(xw + 4 * ldx);
      hi1 = vld1q_u8_x4(xw + 4 * ldx + 64);
    }
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      const uint8x16_t word = vld1q_u8((const uint8_t *)(w->index + g * 16 + 4 * q));
      const uint8x16_t sel = vqshlq_n_u8(veorq_u8(word, vdupq_n_u8(0x80)), 2);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const uint8x16_t ilo =
            vorrq_u8(vqtbl1q_u8(sel, vaddq_u8(pattern, vdupq_n_u8((uint8_t)j))), byte_no);
        const uint8x16_t ihi = veorq_u8(ilo, vdupq_n_u8(0x40));
        const float32x4_t v = vld1q_f32(vg + 16 * j + 4 * q);
        acc0[q] = vfmaq_f32(acc0[q], v, gather(lo0, hi0, ilo, ihi));
        if (mb == 2) acc1[q] = vfmaq_f32(acc1[q], v, gather(lo1, hi1, ilo, ihi));
      }
    }
  }
  store_slice(w, s, acc0[0], acc0[1], acc0[2], acc0[3], bias, act, y);
  if (mb == 2) store_slice(w, s, acc1[0], acc1[1], acc1[2], acc1[3], bias, act, y + ldy);
}

/* Each row count in its own function: inlined into one, the loops share the
 * registers with the others' hoisted constants (gcc 12 then reloads the
 * lookup patterns inside the M = 1 loop: 177 instructions per group, not 135). */
static __attribute__((noinline)) void slice_1(const sk_sell_f32 *w, int64_t s, const float *x,
                                              const float *bias, sk_activation act, float *y) {
  slice_rows(w, s, 1, x, 0, bias, act, y, 0);
}

static __attribute__((noinline)) void slice_2(const sk_sell_f32 *w, int64_t s, const float *x,
                                              int64_t ldx, const float *bias,
                                              sk_activation act, float *y, int64_t ldy) {
  slice_rows(w, s, 2, x, ldx, bias, act, y, ldy);
}

void sk_spmv_sell_f32__neon(const sk_sell_f32 *w, int64_t s0, int64_t s1, int64_t m,
                            const float *x, int64_t ldx, const float *bias,
                            sk_activation act, float *y, int64_t ldy) {
  if (w->k < 32) { /* windows reach past x: each row through a zero-padded copy */
    float pad[32];
    for (int64_t r = 0; r < m; ++r) {
      for (int i = 0; i < 32; ++i) pad[i] = i < w->k ? x[r * ldx + i] : 0.0f;
      for (int64_t s = s0; s < s1; ++s) slice_1(w, s, pad, bias, act, y + r * ldy);
    }
    return;
  }
  for (int64_t s = s0; s < s1; ++s) {
    int64_t r = 0;
    for (; r + 2 <= m; r += 2) slice_2(w, s, x + r * ldx, ldx, bias, act, y + r * ldy, ldy);
    if (r < m) slice_1(w, s, x + r * ldx, bias, act, y + r * ldy);
  }
}
