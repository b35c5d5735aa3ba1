/*
 * attention_f32/keys.h - the per-head set-up every attention kernel shares
 * (impl.h for scalar / AVX2 / AVX-512, neon.c): an empty key set zeroes the
 * head's output, and K is transposed and pre-scaled once per head so the
 * query loops read contiguous, zero-padded rows of keys.
 */
#ifndef SK_ATTENTION_KEYS_H
#define SK_ATTENTION_KEYS_H

#include <string.h>

#include "../internal.h"

/* No keys: every query is fully masked, its output 0. */
static inline void sk_att_zero_head(const sk_attention_f32_args *a, int64_t b, int64_t h,
                                    int64_t tq, int64_t d) {
  for (int64_t i = 0; i < tq; ++i)
    memset(a->out + b * a->out_stride[0] + i * a->out_stride[1] + h * a->out_stride[2], 0,
           sizeof(float) * (size_t)d);
}

/* kt[c, j] = scale * k[j, c] for the tk keys of (b, h), zero for j in [tk, tkp). */
static inline void sk_att_pack_keys(const sk_attention_f32_args *a, int64_t b, int64_t h,
                                    int64_t tk, int64_t tkp, int64_t d, float scale,
                                    float *kt) {
  const float *kb = a->k + b * a->k_stride[0] + h * a->k_stride[2];
  for (int64_t j = 0; j < tk; ++j) {
    const float *kr = kb + j * a->k_stride[1];
    for (int64_t c = 0; c < d; ++c) kt[c * tkp + j] = kr[c] * scale;
  }
  for (int64_t c = 0; c < d; ++c)
    for (int64_t j = tk; j < tkp; ++j) kt[c * tkp + j] = 0.0f;
}

#endif
