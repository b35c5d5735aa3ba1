/* test_util.h - tiny helpers shared by the C tests: a seeded RNG, a failure
 * counter, and a loop over every ISA this CPU can run. */
#ifndef SK_TEST_UTIL_H
#define SK_TEST_UTIL_H

#include <float.h>
#include <string.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "sparsekit.h"
#if defined(__aarch64__)
#include "internal.h" /* sk_set_arm_dotprod */
#endif

static int sk_test_failures = 0;

/* The kernel tests run the threaded paths they ask for even on a busy
 * machine, so the thread backoff is off (test_thread_backoff.c defines
 * SK_TEST_THREAD_BACKOFF to test it). */
#ifndef SK_TEST_THREAD_BACKOFF
__attribute__((constructor)) static void sk_test_no_thread_backoff(void) {
  sk_set_thread_backoff(0);
}
#endif

#define CHECK(cond, ...)                                          \
  do {                                                            \
    if (!(cond)) {                                                \
      fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);       \
      fprintf(stderr, __VA_ARGS__);                               \
      fprintf(stderr, "\n");                                      \
      ++sk_test_failures;                                         \
    }                                                             \
  } while (0)

static uint64_t sk_rng_state = 0x9e3779b97f4a7c15ull;
static inline uint32_t rng_u32(void) {
  sk_rng_state ^= sk_rng_state << 13;
  sk_rng_state ^= sk_rng_state >> 7;
  sk_rng_state ^= sk_rng_state << 17;
  return (uint32_t)(sk_rng_state >> 16);
}
static inline float rng_f32(void) { return (float)rng_u32() / 4294967296.0f * 2.0f - 1.0f; }

#define FOR_EACH_ISA(isa)                                          \
  for (int isa = 0; isa < SK_ISA_COUNT; ++isa)                     \
    if (sk_cpu_supports((sk_isa)isa) && sk_set_isa((sk_isa)isa) == SK_OK)

/* Kernel variants of one ISA: NEON runs once without and (when the CPU has
 * it) once with the ARMv8.2 dot product; every other ISA has one. 1 when
 * variant v of isa is set. */
static inline int sk_test_set_variant(int isa, int v) {
#if defined(__aarch64__)
  if (isa == SK_ISA_NEON) return sk_set_arm_dotprod(v) == SK_OK;
#endif
  return v == 0;
}

static inline int sk_test_finish(const char *name) {
  if (sk_test_failures) {
    printf("%s: %d failures\n", name, sk_test_failures);
    return 1;
  }
  printf("%s: all passed\n", name);
  return 0;
}

/* A u8 activation with the extremes 0 and 255 each about 1 time in 8. */
static inline uint8_t rand_x(void) {
  const uint32_t r = rng_u32() % 8;
  return r == 0 ? 255 : r == 1 ? 0 : (uint8_t)(rng_u32() % 256);
}

/* A nonzero int8 weight with the extremes 127 and -127 each about 1 time in 8. */
static inline int8_t rand_q(void) {
  const uint32_t r = rng_u32() % 8;
  if (r == 0) return 127;
  if (r == 1) return -127;
  const int8_t v = (int8_t)((int)(rng_u32() % 255) - 127);
  return v ? v : 1;
}

/* The u8 side of an int32 case [m, k]: x with rows ldx = k + 3 apart (rand_x),
 * y of rows ldy apart in a 64-byte aligned block (rows of whole lines when ldy
 * is a multiple of 16: the streamed output path of big outputs) holding the
 * sentinel 0x5eed, and zero points of 0, 128 or 255 (per row up to m = 300). */
typedef struct {
  uint8_t *x;
  int64_t ldx;
  int32_t *y;
  int32_t zp[300];
} s32_case;

static inline s32_case s32_case_make(int64_t m, int64_t k, int64_t ldy) {
  static const int32_t zps[3] = {0, 128, 255};
  s32_case c;
  c.ldx = k + 3;
  c.x = malloc((size_t)(m * c.ldx + 1));
  c.y = aligned_alloc(64, (size_t)((m * ldy * 4 + 64) / 64 * 64));
  for (int64_t i = 0; i < m * c.ldx; ++i) c.x[i] = rand_x();
  for (int64_t i = 0; i < m * ldy; ++i) c.y[i] = 0x5eed;
  for (int64_t i = 0; i < 300; ++i) c.zp[i] = zps[rng_u32() % 3];
  return c;
}

static inline void s32_case_free(s32_case *c) {
  free(c->x);
  free(c->y);
}

/* The static-input float outputs y[m, n] against the int32 results acc of the
 * same quantized x, bit for bit the kernels' float32 statement
 * acc * (x_scale * ws[n]) (+ bias[n] unless NULL) (relu if act is
 * SK_ACT_RELU). Returns 1 if bad. */
static inline int check_static_f32(const int32_t *acc, float x_scale, const float *ws,
                                   const float *bias, sk_activation act, int64_t m, int64_t n,
                                   const float *y) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      /* volatile: the test's own multiply and add are not contracted into an fma */
      volatile float prod = (float)acc[i * n + j] * (x_scale * ws[j]);
      float ref = bias ? prod + bias[j] : prod;
      if (act == SK_ACT_RELU && ref < 0.0f) ref = 0.0f;
      if (memcmp(&ref, &y[i * n + j], 4) != 0) return 1;
    }
  return 0;
}

/* The int32 outputs y[m, n] (row stride ldy; columns n..ldy must still hold
 * the sentinel 0x5eed) against an exact int64 reference with the dense int8
 * weight w[n, k]: y = sum_k (x[i, k] - zp[i or 0]) * w[n, k]. Returns 1 if bad. */
static inline int check_s32_vs_dense(const uint8_t *x, int64_t ldx, const int32_t *zp,
                                     int zp_per_row, const int8_t *w, int64_t m, int64_t n,
                                     int64_t k, const int32_t *y, int64_t ldy) {
  for (int64_t i = 0; i < m; ++i) {
    const int64_t z = zp[zp_per_row ? i : 0];
    for (int64_t r = 0; r < ldy; ++r) {
      const int32_t got = y[i * ldy + r];
      if (r >= n) { /* padding must be untouched */
        if (got != 0x5eed) return 1;
        continue;
      }
      int64_t ref = 0;
      for (int64_t kk = 0; kk < k; ++kk) ref += ((int64_t)x[i * ldx + kk] - z) * w[r * k + kk];
      if ((int64_t)got != ref) return 1;
    }
  }
  return 0;
}

#endif
