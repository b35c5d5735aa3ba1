/*
 * attention_f32/neon.c - softmax attention for short sequences, impl.h's
 * method and semantics with AArch64 intrinsics (see impl.h for the method:
 * scaled K transposed per (batch, head), scores, exp, p V; masked keys weigh
 * nothing, a query with every key masked gets 0, no keys -> 0, NaN scores ->
 * NaN, packed sequences via seq_offsets).
 *
 * Blocks: 8 keys (two q registers) x 4 queries for the scores, 8 channels x
 * 4 queries for p V, so 8 independent FMA chains each; q (and p) are loaded
 * 4 at a time and used by lane (fmla by element) instead of one broadcast
 * load per multiply-add.
 *
 * Every lane does impl.h's operations in impl.h's order, with an FMA wherever
 * impl.h's a * b + c contracts to one on FMA ISAs; 8-key blocks and the
 * 8-lane horizontal max / sum are those of the AVX2 build. So the results are
 * bit-identical to the AVX2 build (checked once under qemu: 485568 outputs,
 * t = 1..128, d = 1..64, masked and packed) and differ from the 4- and
 * 16-lane builds only in the order the softmax denominator is summed (up to
 * 2.6e-6 against x86 scalar, which has no FMA, 7e-7 against AArch64 scalar
 * there); the C test's tolerance covers every ISA.
 */
#include <arm_neon.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"
#include "keys.h"

#define KB 8 /* keys per block */
#define QB 4 /* queries per step: independent FMA chains sharing loads */

static inline int64_t padded(int64_t t) { return (t + KB - 1) / KB * KB; }

/* impl.h's sk_att_max: a > b ? a : b per lane (keeps b when either is NaN) */
static inline float32x4_t max4(float32x4_t a, float32x4_t b) {
  return vbslq_f32(vcgtq_f32(a, b), a, b);
}

/* impl.h's sk_att_exp: e^x for x <= 0 (or -inf), 0 below -87 */
static inline float32x4_t exp4(float32x4_t x) {
  const uint32x4_t tiny = vcltq_f32(x, vdupq_n_f32(-87.0f));
  const float32x4_t t = vbslq_f32(tiny, vdupq_n_f32(-87.0f), x);
  const float32x4_t shifter = vdupq_n_f32(12582912.0f); /* 1.5 * 2^23: round to nearest */
  const float32x4_t n =
      vsubq_f32(vfmaq_f32(shifter, t, vdupq_n_f32(1.44269504088896341f)), shifter);
  float32x4_t r = vfmsq_f32(t, n, vdupq_n_f32(0.693145751953125f));
  r = vfmsq_f32(r, n, vdupq_n_f32(1.428606765330187e-06f));
  float32x4_t p = vdupq_n_f32(1.0f / 720.0f);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 120.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 24.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 6.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
  const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  return vbslq_f32(tiny, vdupq_n_f32(0.0f), vmulq_f32(p, vreinterpretq_f32_s32(e)));
}

/* rows [i0, i0 + nq) of one (batch, head), nq <= QB; s: QB x tkp */
static void queries(const sk_attention_f32_args *a, int64_t b, int64_t h, int64_t i0, int nq,
                    int64_t tk, int64_t d, const float *kt, float *s) {
  const int64_t tkp = padded(tk);
  const float *qi[QB], *mr[QB] = {NULL};
  float *oi[QB];
  float inv[QB];
  for (int r = 0; r < QB; ++r) { /* rows past nq repeat the last one */
    const int64_t i = i0 + (r < nq ? r : nq - 1);
    qi[r] = a->q + b * a->q_stride[0] + i * a->q_stride[1] + h * a->q_stride[2];
    oi[r] = a->out + b * a->out_stride[0] + i * a->out_stride[1] + h * a->out_stride[2];
    if (a->mask != NULL) mr[r] = a->mask + b * a->mask_stride[0] + i * a->mask_stride[1];
  }
  /* scores: s[r, j] = sum_c q[r, c] * kt[c, j] (+ mask), padding lanes -inf */
  const int32x4_t lane_lo = {0, 1, 2, 3}, lane_hi = {4, 5, 6, 7};
  for (int64_t jb = 0; jb < tkp; jb += KB) {
    float32x4_t lo[QB], hi[QB];
    for (int r = 0; r < QB; ++r) lo[r] = hi[r] = vdupq_n_f32(0.0f);
    const float *kc = kt + jb;
    int64_t c = 0;
    for (; c + 4 <= d; c += 4) {
      float32x4_t qv[QB];
      for (int r = 0; r < QB; ++r) qv[r] = vld1q_f32(qi[r] + c);
#define SK_ATT_SCORE_STEP(l)                                        \
  do {                                                              \
    const float32x4_t k0 = vld1q_f32(kc + (c + l) * tkp);           \
    const float32x4_t k1 = vld1q_f32(kc + (c + l) * tkp + 4);       \
    for (int r = 0; r < QB; ++r) {                                  \
      lo[r] = vfmaq_laneq_f32(lo[r], k0, qv[r], l);                 \
      hi[r] = vfmaq_laneq_f32(hi[r], k1, qv[r], l);                 \
    }                                                               \
  } while (0)
      SK_ATT_SCORE_STEP(0);
      SK_ATT_SCORE_STEP(1);
      SK_ATT_SCORE_STEP(2);
      SK_ATT_SCORE_STEP(3);
#undef SK_ATT_SCORE_STEP
    }
    for (; c < d; ++c) {
      const float32x4_t k0 = vld1q_f32(kc + c * tkp), k1 = vld1q_f32(kc + c * tkp + 4);
      for (int r = 0; r < QB; ++r) {
        lo[r] = vfmaq_n_f32(lo[r], k0, qi[r][c]);
        hi[r] = vfmaq_n_f32(hi[r], k1, qi[r][c]);
      }
    }
    /* unrolled: lo / hi stay registers (a loop over r would keep them in
     * memory, stored on every step of the loop above) */
#pragma GCC unroll 4
    for (int r = 0; r < QB; ++r) {
      float *sr = s + r * tkp + jb;
      vst1q_f32(sr, lo[r]);
      vst1q_f32(sr + 4, hi[r]);
      if (a->mask != NULL) { /* additive mask: whole blocks, then the last keys */
        if (jb + KB <= tk) {
          vst1q_f32(sr, vaddq_f32(lo[r], vld1q_f32(mr[r] + jb)));
          vst1q_f32(sr + 4, vaddq_f32(hi[r], vld1q_f32(mr[r] + jb + 4)));
        } else {
          for (int64_t j = jb; j < tk; ++j) sr[j - jb] += mr[r][j];
        }
      }
      if (jb + KB > tk) { /* padding lanes of the last block: -inf */
        const int32x4_t valid = vdupq_n_s32((int32_t)(tk - jb));
        const float32x4_t ninf = vdupq_n_f32(-INFINITY);
        vst1q_f32(sr, vbslq_f32(vcltq_s32(lane_lo, valid), vld1q_f32(sr), ninf));
        vst1q_f32(sr + 4, vbslq_f32(vcltq_s32(lane_hi, valid), vld1q_f32(sr + 4), ninf));
      }
    }
  }
  /* softmax of each row (rows past nq too: p V reads them) */
  for (int r = 0; r < QB; ++r) {
    float *sr = s + r * tkp;
    float32x4_t m0 = vld1q_f32(sr), m1 = vld1q_f32(sr + 4);
    for (int64_t jb = KB; jb < tkp; jb += KB) {
      m0 = max4(vld1q_f32(sr + jb), m0);
      m1 = max4(vld1q_f32(sr + jb + 4), m1);
    }
    float32x4_t m = max4(m0, m1); /* the 8-lane horizontal max of impl.h */
    m = max4(m, vextq_f32(m, m, 2));
    m = max4(m, vextq_f32(m, m, 1));
    const float mx = vgetq_lane_f32(m, 0);
    if (!(mx > -INFINITY)) { /* every key masked (or NaN scores): p = 0, out = 0 / NaN */
      memset(sr, 0, sizeof(float) * (size_t)tkp);
      inv[r] = mx == -INFINITY ? 0.0f : NAN;
      continue;
    }
    const float32x4_t vmx = vdupq_n_f32(mx);
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0;
    for (int64_t jb = 0; jb < tkp; jb += KB) {
      const float32x4_t p0 = exp4(vsubq_f32(vld1q_f32(sr + jb), vmx));
      const float32x4_t p1 = exp4(vsubq_f32(vld1q_f32(sr + jb + 4), vmx));
      vst1q_f32(sr + jb, p0);
      vst1q_f32(sr + jb + 4, p1);
      a0 = vaddq_f32(a0, p0);
      a1 = vaddq_f32(a1, p1);
    }
    const float32x4_t u = vaddq_f32(a0, a1); /* the 8-lane horizontal sum of impl.h */
    const float32x4_t w = vaddq_f32(u, vextq_f32(u, u, 2));
    inv[r] = 1.0f / (vgetq_lane_f32(w, 0) + vgetq_lane_f32(w, 1));
  }
  /* out_i = (p V) / sum p: 8 channels, then 4, then one at a time */
  const float *vb = a->v + b * a->v_stride[0] + h * a->v_stride[2];
  const int64_t ldv = a->v_stride[1];
  int64_t c0 = 0;
  for (; c0 + 8 <= d; c0 += 8) {
    float32x4_t lo[QB], hi[QB];
    for (int r = 0; r < QB; ++r) lo[r] = hi[r] = vdupq_n_f32(0.0f);
    int64_t j = 0;
    for (; j + 4 <= tk; j += 4) {
      float32x4_t pv[QB];
      for (int r = 0; r < QB; ++r) pv[r] = vld1q_f32(s + r * tkp + j);
#define SK_ATT_PV_STEP(l)                                           \
  do {                                                              \
    const float32x4_t v0 = vld1q_f32(vb + (j + l) * ldv + c0);      \
    const float32x4_t v1 = vld1q_f32(vb + (j + l) * ldv + c0 + 4);  \
    for (int r = 0; r < QB; ++r) {                                  \
      lo[r] = vfmaq_laneq_f32(lo[r], v0, pv[r], l);                 \
      hi[r] = vfmaq_laneq_f32(hi[r], v1, pv[r], l);                 \
    }                                                               \
  } while (0)
      SK_ATT_PV_STEP(0);
      SK_ATT_PV_STEP(1);
      SK_ATT_PV_STEP(2);
      SK_ATT_PV_STEP(3);
#undef SK_ATT_PV_STEP
    }
    for (; j < tk; ++j) {
      const float32x4_t v0 = vld1q_f32(vb + j * ldv + c0), v1 = vld1q_f32(vb + j * ldv + c0 + 4);
      for (int r = 0; r < QB; ++r) {
        lo[r] = vfmaq_n_f32(lo[r], v0, s[r * tkp + j]);
        hi[r] = vfmaq_n_f32(hi[r], v1, s[r * tkp + j]);
      }
    }
#pragma GCC unroll 4
    for (int r = QB - 1; r >= 0; --r) { /* unrolled, as above */
      if (r >= nq) continue;
      vst1q_f32(oi[r] + c0, vmulq_n_f32(lo[r], inv[r]));
      vst1q_f32(oi[r] + c0 + 4, vmulq_n_f32(hi[r], inv[r]));
    }
  }
  if (c0 + 4 <= d) {
    float32x4_t o[QB];
    for (int r = 0; r < QB; ++r) o[r] = vdupq_n_f32(0.0f);
    for (int64_t j = 0; j < tk; ++j) {
      const float32x4_t v0 = vld1q_f32(vb + j * ldv + c0);
      for (int r = 0; r < QB; ++r) o[r] = vfmaq_n_f32(o[r], v0, s[r * tkp + j]);
    }
#pragma GCC unroll 4
    for (int r = QB - 1; r >= 0; --r)
      if (r < nq) vst1q_f32(oi[r] + c0, vmulq_n_f32(o[r], inv[r]));
    c0 += 4;
  }
  for (; c0 < d; ++c0)
    for (int r = nq - 1; r >= 0; --r) {
      float acc = 0.0f;
      for (int64_t j = 0; j < tk; ++j) acc = fmaf(s[r * tkp + j], vb[j * ldv + c0], acc);
      oi[r][c0] = acc * inv[r];
    }
}

static void head(const sk_attention_f32_args *a, int64_t b, int64_t h, int64_t tq, int64_t tk,
                 int64_t d, float scale, float *kt, float *s) {
  const int64_t tkp = padded(tk);
  if (tk == 0) {
    sk_att_zero_head(a, b, h, tq, d);
    return;
  }
  sk_att_pack_keys(a, b, h, tk, tkp, d, scale, kt);
  for (int64_t i0 = 0; i0 < tq; i0 += QB) {
    const int nq = tq - i0 < QB ? (int)(tq - i0) : QB;
    queries(a, b, h, i0, nq, tk, d, kt, s);
  }
}

int sk_attention_f32__neon(int64_t nb, int64_t nh, int64_t tq, int64_t tk, int64_t d,
                           float scale, const sk_attention_f32_args *a) {
  const int64_t *off = a->seq_offsets;
  int64_t tmax = tk;
  if (off != NULL) { /* packed sequences: batch b is tokens off[b] .. off[b + 1] */
    tmax = 0;
    for (int64_t b = 0; b < nb; ++b)
      tmax = off[b + 1] - off[b] > tmax ? off[b + 1] - off[b] : tmax;
  }
  const int64_t tkp = padded(tmax);
  const int64_t pairs = nb * nh;
  const int threads = sk_threads_for_work((double)pairs * (double)(off ? tmax : tq) *
                                          (double)tkp * (double)d * 2.0);
  int bad = 0;
  const int64_t t0 = sk_region_begin(threads);
#pragma omp parallel num_threads(threads) if (threads > 1) reduction(| : bad)
  {
    sk_worker_check_in(t0);
    float *scratch = malloc(sizeof(float) * (size_t)(d * tkp + QB * tkp + 1));
    /* every thread reaches the worksharing loop, even one whose malloc failed */
#pragma omp for schedule(static)
    for (int64_t p = 0; p < pairs; ++p) {
      if (scratch == NULL) {
        bad = 1;
        continue;
      }
      const int64_t b = p / nh, h = p % nh;
      float *kt = scratch, *s = scratch + d * tkp;
      if (off == NULL) {
        head(a, b, h, tq, tk, d, scale, kt, s);
      } else {
        sk_attention_f32_args ab = *a;
        ab.q += off[b] * a->q_stride[1];
        ab.k += off[b] * a->k_stride[1];
        ab.v += off[b] * a->v_stride[1];
        ab.out += off[b] * a->out_stride[1];
        head(&ab, 0, h, off[b + 1] - off[b], off[b + 1] - off[b], d, scale, kt, s);
      }
    }
    free(scratch);
  }
  return bad ? SK_ERR_NOMEM : SK_OK;
}
