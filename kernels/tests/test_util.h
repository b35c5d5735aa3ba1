/* test_util.h - tiny helpers shared by the C tests: a seeded RNG, a failure
 * counter, and a loop over every ISA this CPU can run. */
#ifndef SK_TEST_UTIL_H
#define SK_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>

#include "sparsekit.h"

static int sk_test_failures = 0;

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
