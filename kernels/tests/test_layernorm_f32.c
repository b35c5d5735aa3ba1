/* test_layernorm_f32.c - sk_add_layernorm_f32 against a double reference on
 * every ISA: row lengths around the vector widths, row strides, NULL residual /
 * gamma / beta, a sentinel column past each row that must stay untouched.
 * Tolerance 1e-5 (inputs in [-1, 1] plus an offset of 4: normalised values are O(1)),
 * every ISA including NEON (neon.c sums as avx512.c does). The out-of-place
 * entry is checked bit for bit against the in-place one at 1 and 2 threads. */
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
                             with_gb ? b : NULL, 1e-5f) == SK_OK,
        "isa %s m %lld n %lld residual %d gamma/beta %d: status", sk_isa_name((sk_isa)isa),
        (long long)m, (long long)n, with_r, with_gb);
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
      CHECK(fabs(y[i * ldy + c] - want) <= 1e-5,
            "isa %s m %lld n %lld residual %d gamma/beta %d: y[%lld, %lld] = %g want %g",
            sk_isa_name((sk_isa)isa), (long long)m, (long long)n, with_r, with_gb,
            (long long)i, (long long)c, y[i * ldy + c], want);
    }
    CHECK(y[i * ldy + n] == 777.0f, "isa %s m %lld n %lld residual %d gamma/beta %d: wrote "
          "past the row", sk_isa_name((sk_isa)isa), (long long)m, (long long)n, with_r,
          with_gb);
  }
  free(y), free(y0), free(r), free(g), free(b);
}

/* sk_add_layernorm_f32_to: the bits of the in-place kernel on a copy of a, at 1
 * and 2 threads (m large enough for two), with row strides and a sentinel
 * column past each output row. */
static void run_to(int isa, int64_t m, int64_t n) {
  const int64_t lda = n + 2, ldy = n + 1, ldr = n + 3;
  float *a = malloc((size_t)(m * lda) * sizeof *a), *r = malloc((size_t)(m * ldr) * sizeof *r);
  float *ref = malloc((size_t)(m * lda) * sizeof *ref), *y = malloc((size_t)(m * ldy) * sizeof *y);
  float *g = malloc((size_t)n * sizeof *g), *b = malloc((size_t)n * sizeof *b);
  for (int64_t i = 0; i < m * lda; ++i) a[i] = ref[i] = 4.0f + rng_f32();
  for (int64_t i = 0; i < m * ldr; ++i) r[i] = rng_f32();
  for (int64_t c = 0; c < n; ++c) g[c] = rng_f32(), b[c] = rng_f32();
  sk_set_num_threads(1);
  CHECK(sk_add_layernorm_f32(m, n, ref, lda, r, ldr, g, b, 1e-5f) == SK_OK, "isa %d: ref", isa);
  for (int nt = 1; nt <= 2; ++nt) {
    sk_set_num_threads(nt);
    for (int64_t i = 0; i < m * ldy; ++i) y[i] = 777.0f;
    CHECK(sk_add_layernorm_f32_to(m, n, a, lda, r, ldr, g, b, 1e-5f, y, ldy) == SK_OK,
          "isa %d: status", isa);
    for (int64_t i = 0; i < m; ++i) {
      CHECK(memcmp(y + i * ldy, ref + i * lda, (size_t)n * sizeof *y) == 0,
            "isa %d n %lld threads %d: row %lld differs from in place", isa, (long long)n, nt,
            (long long)i);
      CHECK(y[i * ldy + n] == 777.0f, "isa %d: wrote past the row", isa);
    }
  }
  sk_set_num_threads(0);
  CHECK(sk_add_layernorm_f32_to(2, 4, NULL, 4, NULL, 0, NULL, NULL, 1e-5f, y, 4) ==
            SK_ERR_ARGUMENT, "isa %d: NULL a", isa);
  CHECK(sk_add_layernorm_f32_to(2, 4, a, 3, NULL, 0, NULL, NULL, 1e-5f, y, 4) ==
            SK_ERR_ARGUMENT, "isa %d: lda < n", isa);
  free(a), free(r), free(ref), free(y), free(g), free(b);
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
  FOR_EACH_ISA(isa) { /* (after the loop above: its random inputs stay as they were) */
    run_to(isa, 300, 384);
    run_to(isa, 5, 17);
  }
  return sk_test_finish("test_layernorm_f32");
}
