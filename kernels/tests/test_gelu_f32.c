/* test_gelu_f32.c - sk_gelu_f32 against GELU in double (libm erfc) on every
 * ISA: lengths around the vector width (tails), a dense sweep of [-30, 30],
 * special values. Tolerance 1e-6 relative + 1e-40 (denormal results), the same
 * for NEON (neon.c does avx2.c's operations, so no extra slack). And exactly:
 * the AVX2 and NEON kernels are one sequence of IEEE operations (avx2.c,
 * neon.c), which model_avx2 below writes out per lane, so both must give its
 * bits on every input (NEON then equals AVX2 without both on one machine). */
#include <math.h>
#include <string.h>

#include "gelu_f32/erfc_poly.h"
#include "test_util.h"

static float pow2i(int32_t k) { /* 2^k for k in [-126, 127], from its bits */
  const uint32_t bits = (uint32_t)(k + 127) << 23;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static float identity(float c) { return c; }

/* avx2.c's gelu8 for one lane, operation for operation (fmaf: one rounding,
 * as _mm256_fmadd_ps / vfmaq_f32; nearbyintf: half to even in the default
 * mode, as _mm256_round_ps / vrndnq_f32). The clamps pick the constant for a
 * NaN, as minps / maxps with the constant second and fminnm / fmaxnm do. */
static float model_avx2(float x) {
  float ax = fabsf(x);
  ax = ax < 22.0f ? ax : 22.0f;
  const float z = ax * 0.70710678118654752f;
  const float t = 1.0f / fmaf(z, 0.5f, 1.0f);
  float q = SK_ERFC_POLY(fmaf, identity, t);
  q = fmaf(q, t, SK_ERFC_P0);
  const float xx = ax * ax;
  const float zz = xx * 0.5f;
  const float err = fmaf(ax, ax, -xx) * 0.5f;
  const float neg_zz = 0.0f - zz;
  const float a = neg_zz > -104.0f ? neg_zz : -104.0f;
  const float b = q - err;
  const float n = nearbyintf((a + b) * SK_LOG2E);
  float r = fmaf(-n, SK_LN2_HI, a);
  r = fmaf(-n, SK_LN2_LO, r);
  r = r + b;
  float p = 1.0f / 5040.0f;
  p = fmaf(p, r, 1.0f / 720.0f);
  p = fmaf(p, r, 1.0f / 120.0f);
  p = fmaf(p, r, 1.0f / 24.0f);
  p = fmaf(p, r, 1.0f / 6.0f);
  p = fmaf(p, r, 0.5f);
  p = fmaf(p, r, 1.0f);
  p = fmaf(p, r, 1.0f);
  const int32_t ni = (int32_t)n, n1 = ni >> 1; /* n is whole: exact */
  const float s1 = pow2i(n1), s2 = pow2i(ni - n1);
  const float th = (t * 0.5f) * p;
  const float half_erfc = (th * s1) * s2;
  const float pos = x * (1.0f - half_erfc);
  const float neg = ((x * th) * s1) * s2;
  const float y = x < 0.0f ? neg : pos;
  return x < -20.0f ? -0.0f : y;
}

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
    CHECK(ok, "isa %s n %lld: gelu(%.9g) = %.9g, want %.9g", sk_isa_name((sk_isa)isa),
          (long long)n, x[i], y[i], r);
    if (isa == SK_ISA_AVX2 || isa == SK_ISA_NEON) {
      const float want = model_avx2(x[i]);
      CHECK(memcmp(&want, &y[i], sizeof want) == 0 || (isnan(want) && isnan(y[i])),
            "isa %s n %lld: gelu(%.9g) = %.9g, not the bits of avx2.c's operations %.9g",
            sk_isa_name((sk_isa)isa), (long long)n, x[i], y[i], want);
    }
  }
  CHECK(y[n] == 12345.0f, "isa %s n %lld: wrote past the end", sk_isa_name((sk_isa)isa),
        (long long)n);
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
