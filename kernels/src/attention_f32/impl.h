/*
 * attention_f32/impl.h - softmax attention for short sequences, written once in
 * plain C and compiled per ISA (scalar.c, avx2.c, avx512.c define
 * SK_ATTENTION_NAME and include this file).
 *
 * Per (batch b, head h), one thread:
 *   kt = K[b, :, h, :]^T, keys zero-padded to a multiple of the vector (d x tkp)
 *   per query i: s = scale * q_i kt + mask[b, i, :]   (padding lanes: -inf)
 *                p = exp(s - max s), out_i = (p V) / sum p
 * exp is a Cody-Waite reduction + degree-6 Taylor polynomial (about 2 ulp),
 * exactly 0 below -87 so masked keys weigh nothing. A query with every key
 * masked (-inf) gets out = 0. Vectors are GCC/Clang vector extensions as wide
 * as the ISA's registers (16, 8 or 4 floats).
 */
#include <stdlib.h>

#include "../internal.h"
#include "keys.h"
#include "../vec_f32.h"

/* keys per block: one native vector (wider generic vectors than the ISA has
 * would be lowered through the stack) */
typedef int32_t sk_att_vi __attribute__((vector_size(4 * SK_VF_L)));

static inline __attribute__((always_inline)) sk_vf sk_att_splat(float x) {
  const sk_vf zero = {0};
  return zero + x;
}

static inline __attribute__((always_inline)) sk_vf sk_att_select(sk_att_vi m, sk_vf a, sk_vf b) {
  return (sk_vf)((m & (sk_att_vi)a) | (~m & (sk_att_vi)b));
}

/* e^x for x <= 0 (or -inf): 0 below -87 */
static inline __attribute__((always_inline)) sk_vf sk_att_exp(sk_vf x) {
  const sk_att_vi tiny = x < sk_att_splat(-87.0f);
  const sk_vf t = sk_att_select(tiny, sk_att_splat(-87.0f), x);
  /* round to nearest with the 1.5 * 2^23 shifter (no libm call) */
  const sk_vf n = (t * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  sk_vf r = t - n * 0.693145751953125f;
  r = r - n * 1.428606765330187e-06f;
  sk_vf p = sk_att_splat(1.0f / 720.0f);
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const sk_att_vi e = (__builtin_convertvector(n, sk_att_vi) + 127) << 23; /* 2^n, n >= -126 */
  return sk_att_select(tiny, sk_att_splat(0.0f), p * (sk_vf)e);
}

/* lane numbers, and the horizontal max / sum as log2(L) rotate-and-combine
 * steps in registers */
#if SK_VF_L == 16
#define SK_VF_LANES {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
#define SK_ATT_ROT8(v) __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7)
#define SK_ATT_ROT4(v) __builtin_shufflevector(v, v, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3)
#define SK_ATT_ROT2(v) __builtin_shufflevector(v, v, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1)
#define SK_ATT_ROT1(v) __builtin_shufflevector(v, v, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0)
#elif SK_VF_L == 8
#define SK_VF_LANES {0, 1, 2, 3, 4, 5, 6, 7}
#define SK_ATT_ROT4(v) __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3)
#define SK_ATT_ROT2(v) __builtin_shufflevector(v, v, 2, 3, 4, 5, 6, 7, 0, 1)
#define SK_ATT_ROT1(v) __builtin_shufflevector(v, v, 1, 2, 3, 4, 5, 6, 7, 0)
#else
#define SK_VF_LANES {0, 1, 2, 3}
#define SK_ATT_ROT2(v) __builtin_shufflevector(v, v, 2, 3, 0, 1)
#define SK_ATT_ROT1(v) __builtin_shufflevector(v, v, 1, 2, 3, 0)
#endif

static inline __attribute__((always_inline)) sk_vf sk_att_max(sk_vf a, sk_vf b) {
  return sk_att_select(a > b, a, b);
}

static inline __attribute__((always_inline)) float sk_att_hmax(sk_vf v) {
#if SK_VF_L == 16
  v = sk_att_max(v, SK_ATT_ROT8(v));
#endif
#if SK_VF_L >= 8
  v = sk_att_max(v, SK_ATT_ROT4(v));
#endif
  v = sk_att_max(v, SK_ATT_ROT2(v));
  v = sk_att_max(v, SK_ATT_ROT1(v));
  return v[0];
}

static inline __attribute__((always_inline)) float sk_att_hsum(sk_vf v) {
#if SK_VF_L == 16
  v += SK_ATT_ROT8(v);
#endif
#if SK_VF_L >= 8
  v += SK_ATT_ROT4(v);
#endif
  v += SK_ATT_ROT2(v);
  v += SK_ATT_ROT1(v);
  return v[0];
}

#define SK_ATT_QB 4 /* queries per step: independent FMA chains sharing loads */

/* rows [i0, i0 + nq) of one (batch, head), nq <= SK_ATT_QB; s: SK_ATT_QB x tkp */
static void sk_att_queries(const sk_attention_f32_args *a, int64_t b, int64_t h, int64_t i0,
                           int nq, int64_t tk, int64_t d, const float *kt, float *s,
                           float *acc) {
  const int64_t tkp = (tk + SK_VF_L - 1) / SK_VF_L * SK_VF_L;
  const float *qi[SK_ATT_QB];
  float *oi[SK_ATT_QB];
  float inv[SK_ATT_QB];
  for (int r = 0; r < SK_ATT_QB; ++r) { /* rows past nq repeat the last one */
    const int64_t i = i0 + (r < nq ? r : nq - 1);
    qi[r] = a->q + b * a->q_stride[0] + i * a->q_stride[1] + h * a->q_stride[2];
    oi[r] = a->out + b * a->out_stride[0] + i * a->out_stride[1] + h * a->out_stride[2];
  }
  const float *mr[SK_ATT_QB];
  for (int r = 0; r < SK_ATT_QB && a->mask != NULL; ++r) {
    const int64_t i = i0 + (r < nq ? r : nq - 1);
    mr[r] = a->mask + b * a->mask_stride[0] + i * a->mask_stride[1];
  }
  for (int64_t jb = 0; jb < tkp; jb += SK_VF_L) {
    sk_vf sc[SK_ATT_QB];
    for (int r = 0; r < SK_ATT_QB; ++r) sc[r] = sk_att_splat(0.0f);
    for (int64_t c = 0; c < d; ++c) {
      const sk_vf kv = sk_vf_load(kt + c * tkp + jb);
      for (int r = 0; r < SK_ATT_QB; ++r) sc[r] += qi[r][c] * kv;
    }
    if (a->mask != NULL) { /* additive mask: whole vectors, then the last keys */
      for (int r = 0; r < SK_ATT_QB; ++r) {
        if (jb + SK_VF_L <= tk) {
          sc[r] += sk_vf_load(mr[r] + jb);
        } else {
          for (int64_t j = jb; j < tk; ++j) sc[r][j - jb] += mr[r][j];
        }
      }
    }
    if (jb + SK_VF_L > tk) { /* padding lanes of the last block: -inf */
      const sk_att_vi lane = SK_VF_LANES;
      const sk_att_vi valid = lane < (int32_t)(tk - jb);
      for (int r = 0; r < SK_ATT_QB; ++r)
        sc[r] = sk_att_select(valid, sc[r], sk_att_splat(-INFINITY));
    }
    for (int r = 0; r < SK_ATT_QB; ++r) sk_vf_store(s + r * tkp + jb, sc[r]);
  }
  for (int r = 0; r < SK_ATT_QB; ++r) {
    float *sr = s + r * tkp;
    sk_vf vmax = sk_vf_load(sr);
    for (int64_t jb = SK_VF_L; jb < tkp; jb += SK_VF_L) vmax = sk_att_max(sk_vf_load(sr + jb), vmax);
    const float mx = sk_att_hmax(vmax);
    if (!(mx > -INFINITY)) { /* every key masked (or NaN scores): p = 0, out = 0 / NaN */
      for (int64_t j = 0; j < tkp; ++j) sr[j] = 0.0f;
      inv[r] = mx == -INFINITY ? 0.0f : NAN;
      continue;
    }
    sk_vf vsum = sk_att_splat(0.0f);
    for (int64_t jb = 0; jb < tkp; jb += SK_VF_L) {
      const sk_vf p = sk_att_exp(sk_vf_load(sr + jb) - mx);
      sk_vf_store(sr + jb, p);
      vsum += p;
    }
    inv[r] = 1.0f / sk_att_hsum(vsum);
  }
  /* out_i = (p V) / sum p, 16 channels at a time, then the channel tail */
  const float *vb = a->v + b * a->v_stride[0] + h * a->v_stride[2];
  const int64_t d16 = d / SK_VF_L * SK_VF_L;
  for (int64_t c0 = 0; c0 < d16; c0 += SK_VF_L) {
    sk_vf o[SK_ATT_QB];
    for (int r = 0; r < SK_ATT_QB; ++r) o[r] = sk_att_splat(0.0f);
    for (int64_t j = 0; j < tk; ++j) {
      const sk_vf vv = sk_vf_load(vb + j * a->v_stride[1] + c0);
      for (int r = 0; r < SK_ATT_QB; ++r) o[r] += s[r * tkp + j] * vv;
    }
    for (int r = nq - 1; r >= 0; --r) sk_vf_store(oi[r] + c0, o[r] * inv[r]);
  }
  for (int r = 0; r < nq && d16 < d; ++r) {
    for (int64_t c = d16; c < d; ++c) acc[c] = 0.0f;
    for (int64_t j = 0; j < tk; ++j) {
      const float *vr = vb + j * a->v_stride[1];
      for (int64_t c = d16; c < d; ++c) acc[c] += s[r * tkp + j] * vr[c];
    }
    for (int64_t c = d16; c < d; ++c) oi[r][c] = acc[c] * inv[r];
  }
}

static void sk_att_head(const sk_attention_f32_args *a, int64_t b, int64_t h, int64_t tq,
                        int64_t tk, int64_t d, float scale, float *kt, float *s,
                        float *acc) {
  const int64_t tkp = (tk + SK_VF_L - 1) / SK_VF_L * SK_VF_L;
  if (tk == 0) {
    sk_att_zero_head(a, b, h, tq, d);
    return;
  }
  sk_att_pack_keys(a, b, h, tk, tkp, d, scale, kt);
  for (int64_t i0 = 0; i0 < tq; i0 += SK_ATT_QB) {
    const int nq = tq - i0 < SK_ATT_QB ? (int)(tq - i0) : SK_ATT_QB;
    sk_att_queries(a, b, h, i0, nq, tk, d, kt, s, acc);
  }
}

int SK_ATTENTION_NAME(int64_t nb, int64_t nh, int64_t tq, int64_t tk, int64_t d, float scale,
                      const sk_attention_f32_args *a) {
  const int64_t *off = a->seq_offsets;
  int64_t tmax = tk;
  if (off != NULL) { /* packed sequences: batch b is tokens off[b] .. off[b + 1] */
    tmax = 0;
    for (int64_t b = 0; b < nb; ++b)
      tmax = off[b + 1] - off[b] > tmax ? off[b + 1] - off[b] : tmax;
  }
  const int64_t tkp = (tmax + SK_VF_L - 1) / SK_VF_L * SK_VF_L;
  const int64_t pairs = nb * nh;
  const int threads =
      sk_threads_for_work((double)pairs * (double)(off ? tmax : tq) * (double)tkp * (double)d * 2.0);
  int bad = 0;
  const int64_t t0 = sk_region_begin(threads);
#pragma omp parallel num_threads(threads) if (threads > 1) reduction(| : bad)
  {
    sk_worker_check_in(t0);
    float *scratch = malloc(sizeof(float) * (size_t)(d * tkp + SK_ATT_QB * tkp + d));
    /* every thread reaches the worksharing loop, even one whose malloc failed */
#pragma omp for schedule(static)
    for (int64_t p = 0; p < pairs; ++p) {
      if (scratch == NULL) {
        bad = 1;
        continue;
      }
      const int64_t b = p / nh, h = p % nh;
      float *kt = scratch, *s = scratch + d * tkp, *acc = scratch + d * tkp + SK_ATT_QB * tkp;
      if (off == NULL) {
        sk_att_head(a, b, h, tq, tk, d, scale, kt, s, acc);
      } else {
        sk_attention_f32_args ab = *a;
        ab.q += off[b] * a->q_stride[1];
        ab.k += off[b] * a->k_stride[1];
        ab.v += off[b] * a->v_stride[1];
        ab.out += off[b] * a->out_stride[1];
        sk_att_head(&ab, 0, h, off[b + 1] - off[b], off[b + 1] - off[b], d, scale, kt, s, acc);
      }
    }
    free(scratch);
  }
  return bad ? SK_ERR_NOMEM : SK_OK;
}
