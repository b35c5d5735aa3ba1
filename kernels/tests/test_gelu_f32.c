/* test_gelu_f32.c - sk_gelu_f32 against GELU in double (libm erfc) on every
 * ISA: lengths around the vector width (tails), a dense sweep of [-30, 30],
 * special values. Tolerance 1e-6 relative + 1e-40 (denormal results), the same
 * for NEON (neon.c does avx2.c's operations, so no extra slack). */
#include <math.h>
#include <string.h>

#include "test_util.h"

static double ref(float xf) {
  const double x = xf;
  if (isnan(x)) return x;
  if (x < -20.0) return -0.0;
  if (isinf(x)) return x;
  return 0.5 * x * erfc(-x / sqrt(2.0));
}

static void check_run(int isa, const float *x, int64_t n) {
  float *y = malloc((size_t)(n + 1) * sizeof *y);
  memcpy(y, x, (size_t)n * sizeof *y);
  y[n] = 12345.0f; /* sentinel: nothing past n is written */
  sk_gelu_f32(y, n);
  for (int64_t i = 0; i < n; ++i) {
    const double r = ref(x[i]);
    const int ok = (isnan(r) && isnan(y[i])) || (double)y[i] == r ||
                   fabs((double)y[i] - r) <= 1e-6 * fabs(r) + 1e-40;
    CHECK(ok, "isa %d n %lld: gelu(%.9g) = %.9g, want %.9g", isa, (long long)n, x[i], y[i],
          r);
  }
  CHECK(y[n] == 12345.0f, "isa %d n %lld: wrote past the end", isa, (long long)n);
  free(y);
}

int main(void) {
  enum { SWEEP = 60001 };
  static float sweep[SWEEP];
  for (int i = 0; i < SWEEP; ++i) sweep[i] = -30.0f + 60.0f * (float)i / (SWEEP - 1);
  const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e38f, -1e38f, -20.0f,
                           -19.99f, -13.0f, 1e-45f, -1e-45f, 5.0f, -5.0f, 0.5f, -0.5f};
  float tail[40];
  FOR_EACH_ISA(isa) {
    /* NEON has its own kernel (neon.c): make sure it is the one running */
    if (isa == SK_ISA_NEON)
      CHECK(sk_family_isa("gelu_f32") == SK_ISA_NEON, "NEON kernel not registered");
    check_run(isa, sweep, SWEEP);
    check_run(isa, special, (int64_t)(sizeof special / sizeof *special));
    for (int64_t n = 0; n <= 40; ++n) {
      for (int64_t i = 0; i < n; ++i) tail[i] = 6.0f * rng_f32();
      check_run(isa, tail, n);
    }
    sk_gelu_f32(NULL, 5); /* no-op, not a crash */
  }
  return sk_test_finish("test_gelu_f32");
}
