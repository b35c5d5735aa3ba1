/* test_layernorm_f32.c - sk_add_layernorm_f32 against a double reference on
 * every ISA: row lengths around the vector widths, row strides, NULL residual /
 * gamma / beta, a sentinel column past each row that must stay untouched.
 * Tolerance 1e-5 (inputs in [-1, 1] plus an offset of 4: normalised values are O(1)),
 * every ISA including NEON (neon.c sums as avx512.c does). */
#include <math.h>
#include <string.h>

#include "test_util.h"

static void run(int isa, int64_t m, int64_t n, int with_r, int with_gb) {
  const int64_t ldy = n + 1, ldr = n + 3;
  float *y = malloc((size_t)(m * ldy) * sizeof *y), *y0 = malloc((size_t)(m * ldy) * sizeof *y);
  float *r = malloc((size_t)(m * ldr) * sizeof *r);
  float *g = malloc((size_t)n * sizeof *g), *b = malloc((size_t)n * sizeof *b);
  for (int64_t i = 0; i < m * ldy; ++i) y[i] = y0[i] = 4.0f + rng_f32();
  for (int64_t i = 0; i < m * ldr; ++i) r[i] = rng_f32();
  for (int64_t c = 0; c < n; ++c) g[c] = rng_f32(), b[c] = rng_f32();
  for (int64_t i = 0; i < m; ++i) y[i * ldy + n] = 777.0f;
  CHECK(sk_add_layernorm_f32(m, n, y, ldy, with_r ? r : NULL, ldr, with_gb ? g : NULL,
                             with_gb ? b : NULL, 1e-5f) == SK_OK, "isa %d: status", isa);
  for (int64_t i = 0; i < m; ++i) {
    double z[64], mean = 0.0, var = 0.0;
    for (int64_t c = 0; c < n; ++c) {
      z[c] = (double)y0[i * ldy + c] + (with_r ? r[i * ldr + c] : 0.0);
      mean += z[c] / (double)n;
    }
    for (int64_t c = 0; c < n; ++c) var += (z[c] - mean) * (z[c] - mean) / (double)n;
    for (int64_t c = 0; c < n; ++c) {
      const double want = (z[c] - mean) / sqrt(var + 1e-5) * (with_gb ? g[c] : 1.0) +
                          (with_gb ? b[c] : 0.0);
      CHECK(fabs(y[i * ldy + c] - want) <= 1e-5, "isa %d n %lld: %g want %g", isa,
            (long long)n, y[i * ldy + c], want);
    }
    CHECK(y[i * ldy + n] == 777.0f, "isa %d n %lld: wrote past the row", isa, (long long)n);
  }
  free(y), free(y0), free(r), free(g), free(b);
}

int main(void) {
  FOR_EACH_ISA(isa) {
    /* NEON has its own kernel (neon.c): make sure it is the one running */
    if (isa == SK_ISA_NEON)
      CHECK(sk_family_isa("layernorm_f32") == SK_ISA_NEON, "NEON kernel not registered");
    for (int64_t n = 1; n <= 40; ++n) {
      run(isa, 3, n, 1, 1);
      run(isa, 2, n, n % 2, (n / 2) % 2);
    }
    CHECK(sk_add_layernorm_f32(2, 4, NULL, 4, NULL, 0, NULL, NULL, 1e-5f) == SK_ERR_ARGUMENT,
          "isa %d: NULL y", isa);
    CHECK(sk_add_layernorm_f32(0, 4, NULL, 4, NULL, 0, NULL, NULL, 1e-5f) == SK_OK,
          "isa %d: empty", isa);
  }
  return sk_test_finish("test_layernorm_f32");
}
