/*
 * vec_f32.h - one native float32 vector for kernels written once in plain C
 * with GCC/Clang vector extensions and compiled per ISA (attention_f32,
 * layernorm_f32): SK_VF_L lanes, unaligned load/store, and a * b + c
 * contracted to one FMA where the ISA has it (ISO C mode turns that off).
 */
#ifndef SK_VEC_F32_H
#define SK_VEC_F32_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__clang__)
#pragma clang fp contract(fast)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=fast")
#endif

#if defined(__AVX512F__)
#define SK_VF_L 16
#elif defined(__AVX__)
#define SK_VF_L 8
#else
#define SK_VF_L 4
#endif
typedef float sk_vf __attribute__((vector_size(4 * SK_VF_L)));

static inline __attribute__((always_inline)) sk_vf sk_vf_load(const float *p) {
  sk_vf v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline __attribute__((always_inline)) void sk_vf_store(float *p, sk_vf v) {
  memcpy(p, &v, sizeof v);
}

#endif
