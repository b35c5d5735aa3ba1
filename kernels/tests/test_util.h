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

#endif
