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
 * offset moved to a general register first (UMOV/UBFX per slot) and inserts
 * into a register one lane at a time, ~3 ops per slot against ~2 here (TBL,
 * TBX, the shared index ops, FMLA per 4 slots: ~8), and empty slots would
 * still need a mask. Each group's index bytes and values are computed and
 * loaded once for 2 rows of x (the window of both in 16 registers).
 * Speed not measured (no ARM machine; built and tested under qemu only).
 * Instructions per nonzero from the gcc -O3 assembly: see benchmarks/RESULTS.md.
 */
#include <arm_neon.h>

#include "../internal.h"

#define MB 2 /* rows of x per pass over a slice's groups */

/* Lane l's byte j, copied to the lane's 4 bytes: pattern + j. */
static const uint8_t lane_bytes[16] = {0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12};

static inline __attribute__((always_inline)) uint8x16x4_t load_table(const float *p) {
  uint8x16x4_t t;
  t.val[0] = vreinterpretq_u8_f32(vld1q_f32(p));
  t.val[1] = vreinterpretq_u8_f32(vld1q_f32(p + 4));
  t.val[2] = vreinterpretq_u8_f32(vld1q_f32(p + 8));
  t.val[3] = vreinterpretq_u8_f32(vld1q_f32(p + 12));
  return t;
}

static inline __attribute__((always_inline)) void slice_rows(
    const sk_sell_f32 *w, int64_t s, const int mb, const float *x, int64_t ldx,
    const float *bias, sk_activation act, float *y, int64_t ldy) {
  /* acc[r][q][a]: row r, quarter q; M = 1 alternates two sets by step */
  float32x4_t acc[MB][4][2];
  for (int r = 0; r < MB; ++r)
    for (int q = 0; q < 4; ++q) acc[r][q][0] = acc[r][q][1] = vdupq_n_f32(0.0f);
  const uint8x16_t pattern = vld1q_u8(lane_bytes);
  const uint8x16_t byte_no = vreinterpretq_u8_u32(vdupq_n_u32(0x03020100u));
  const int64_t g1 = w->group_ptr[s + 1];
  for (int64_t g = w->group_ptr[s]; g < g1; ++g) {
    const float *vg = w->values + g * 64;
    const float *xw = x + w->window[g];
    uint8x16x4_t lo[MB], hi[MB];
    for (int r = 0; r < mb; ++r) {
      lo[r] = load_table(xw + r * ldx);
      hi[r] = load_table(xw + r * ldx + 16);
    }
    for (int q = 0; q < 4; ++q) {
      const uint8x16_t word = vld1q_u8((const uint8_t *)(w->index + g * 16 + 4 * q));
      const uint8x16_t sel = vqshlq_n_u8(veorq_u8(word, vdupq_n_u8(0x80)), 2);
      for (int j = 0; j < 4; ++j) {
        const uint8x16_t ilo =
            vorrq_u8(vqtbl1q_u8(sel, vaddq_u8(pattern, vdupq_n_u8((uint8_t)j))), byte_no);
        const uint8x16_t ihi = veorq_u8(ilo, vdupq_n_u8(0x40));
        const float32x4_t v = vld1q_f32(vg + 16 * j + 4 * q);
        const int a = mb == 1 ? j & 1 : 0;
        for (int r = 0; r < mb; ++r) {
          const uint8x16_t xb = vqtbx4q_u8(vqtbl4q_u8(lo[r], ilo), hi[r], ihi);
          acc[r][q][a] = vfmaq_f32(acc[r][q][a], v, vreinterpretq_f32_u8(xb));
        }
      }
    }
  }
  const int64_t left = w->n - 16 * s;
  for (int r = 0; r < mb; ++r) {
    float t[16];
    for (int q = 0; q < 4; ++q) {
      float32x4_t v = mb == 1 ? vaddq_f32(acc[r][q][0], acc[r][q][1]) : acc[r][q][0];
      if (left < 16) {
        vst1q_f32(t + 4 * q, v);
        continue;
      }
      if (bias) v = vaddq_f32(v, vld1q_f32(bias + 16 * s + 4 * q));
      if (act == SK_ACT_RELU) v = vmaxq_f32(v, vdupq_n_f32(0.0f)); /* NaN stays */
      vst1q_f32(y + r * ldy + 16 * s + 4 * q, v);
    }
    for (int64_t i = 0; i < left && left < 16; ++i) { /* partial last slice */
      float v = t[i] + (bias ? bias[16 * s + i] : 0.0f);
      if (act == SK_ACT_RELU && !(v > 0.0f)) v = v != v ? v : 0.0f;
      y[r * ldy + 16 * s + i] = v;
    }
  }
}

void sk_spmv_sell_f32__neon(const sk_sell_f32 *w, int64_t s0, int64_t s1, int64_t m,
                            const float *x, int64_t ldx, const float *bias,
                            sk_activation act, float *y, int64_t ldy) {
  if (w->k < 32) { /* windows reach past x: each row through a zero-padded copy */
    float pad[32];
    for (int64_t r = 0; r < m; ++r) {
      for (int i = 0; i < 32; ++i) pad[i] = i < w->k ? x[r * ldx + i] : 0.0f;
      for (int64_t s = s0; s < s1; ++s) slice_rows(w, s, 1, pad, 32, bias, act, y + r * ldy, ldy);
    }
    return;
  }
  for (int64_t s = s0; s < s1; ++s) {
    int64_t r = 0;
    for (; r + 2 <= m; r += 2) slice_rows(w, s, 2, x + r * ldx, ldx, bias, act, y + r * ldy, ldy);
    if (r < m) slice_rows(w, s, 1, x + r * ldx, ldx, bias, act, y + r * ldy, ldy);
  }
}
