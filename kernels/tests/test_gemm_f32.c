/* test_gemm_f32.c - sk_linear_gemm_f32 against a double reference on every
 * ISA: N around the 32-column panel and its 16-column halves (AVX2), M
 * around the 12-row (AVX-512) and 6-row (AVX2) tiles and the X block (K =
 * 2000: 8 rows per block), K = 0 and 1, bias, relu / gelu, row strides; exact
 * sentinels around y (nothing written outside its rows' n columns); argument
 * errors. Tolerance against the double reference: 1e-5 of sum |x w| (+ 1e-6
 * |y| for GELU's own error). And exactly: the act-free output is each ISA's
 * float32 sum (model_sum) bit for bit where the test knows the tile of each
 * row, and the tile kernel writes the same pre-activation whatever the
 * activation, then the driver runs the ISA's sk_gelu_f32 kernel on it, so relu
 * is max(y, 0) and gelu is sk_gelu_f32 of the act-free output, bit for bit. Under ASan
 * (test_c_core.py) the masked tails of each panel are checked to stay inside
 * the buffers. */
#include <string.h>

#include "test_util.h"

static double gelu(double v) { return v < -20.0 ? 0.0 : 0.5 * v * erfc(-v / sqrt(2.0)); }

/* The sum each ISA's tile kernel computes for one output, in float32, bit
 * for bit (bias added after it): scalar (NEON runs it too) x * w then + in k
 * order, each rounded; AVX-512 and AVX2 tiles of 3 or more rows one fma per k
 * in k order; AVX2 tiles of 1 or 2 rows k split over 4 / rows fma chains
 * (chain u takes k = u mod chains, a k tail past the last whole round goes
 * into chain 0), then summed pairwise. rows: rows of the output's tile. */
static float model_sum(int isa, int64_t rows, const float *x, const float *w, int64_t k) {
  if (isa == SK_ISA_SCALAR || isa == SK_ISA_NEON) {
    float acc = 0.0f;
    for (int64_t kk = 0; kk < k; ++kk) {
      volatile float p = x[kk] * w[kk]; /* two roundings, as scalar.c: no fma */
      acc = acc + p;
    }
    return acc;
  }
  const int chains = isa == SK_ISA_AVX2 && rows <= 2 ? (int)(4 / rows) : 1;
  float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  int64_t kk = 0;
  for (; kk + chains <= k; kk += chains)
    for (int u = 0; u < chains; ++u) c[u] = fmaf(x[kk + u], w[kk + u], c[u]);
  for (; kk < k; ++kk) c[0] = fmaf(x[kk], w[kk], c[0]);
  if (chains == 4) return (c[0] + c[1]) + (c[2] + c[3]);
  if (chains == 2) return c[0] + c[1];
  return c[0];
}

/* Rows of the output's tile where model_sum knows them without the driver's
 * blocking: every tile on scalar and AVX-512 (the sum does not depend on it),
 * the one tile of m <= 6 rows on AVX2; 0: not known. */
static int64_t model_rows(int isa, int64_t m) {
  if (isa == SK_ISA_AVX2) return m <= 6 ? m : 0;
  return isa == SK_ISA_SCALAR || isa == SK_ISA_NEON || isa == SK_ISA_AVX512 ? m : 0;
}

/* Exact checks of y (sk_linear_gemm_f32 with `act`): the act-free call's
 * output y0 is model_sum (+ bias) bit for bit where the model applies, and y
 * is act(y0): relu max(y0, 0) (by value: +0 or -0 for 0), gelu sk_gelu_f32(y0)
 * bit for bit. */
static void check_exact(int isa, int64_t m, int64_t n, int64_t k, const float *packed,
                        const float *w, const float *x, int64_t ldx, const float *bias, int act,
                        const float *y, int64_t ldy) {
  float *y0 = malloc((size_t)(m * ldy + 1) * sizeof *y0);
  CHECK(sk_linear_gemm_f32(n, k, packed, m, x, ldx, bias, SK_ACT_NONE, y0, ldy) == SK_OK,
        "act-free rc");
  const int64_t rows = model_rows(isa, m);
  int64_t bad_sum = 0, first_sum = -1;
  float want_sum = 0.0f;
  for (int64_t i = 0; rows > 0 && i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float want = model_sum(isa, rows, x + i * ldx, w + j * k, k);
      if (bias) want = want + bias[j];
      if (memcmp(&want, &y0[i * ldy + j], sizeof want) != 0 && bad_sum++ == 0)
        first_sum = i * ldy + j, want_sum = want;
    }
  CHECK(bad_sum == 0,
        "isa %s m %lld n %lld k %lld bias %d: %lld act-free outputs != the kernel's float32 "
        "sum (first y[%lld, %lld] = %.9g, want %.9g)", sk_isa_name((sk_isa)isa),
        (long long)m, (long long)n, (long long)k, bias != NULL, (long long)bad_sum,
        (long long)(first_sum / ldy), (long long)(first_sum % ldy),
        bad_sum ? y0[first_sum] : 0.0, (double)want_sum);
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < m; ++i) {
    float *r = y0 + i * ldy;
    if (act == SK_ACT_GELU) sk_gelu_f32(r, n);
    for (int64_t j = 0; j < n; ++j) {
      const float want = act == SK_ACT_RELU ? (r[j] > 0.0f ? r[j] : 0.0f) : r[j];
      const int same = act == SK_ACT_RELU ? y[i * ldy + j] == want
                                          : memcmp(&y[i * ldy + j], &want, sizeof want) == 0;
      if (!same && bad++ == 0) first = i * ldy + j;
    }
  }
  static const char *const names[3] = {"none", "relu", "gelu"};
  static const char *const wants[3] = {"the act-free call's", "max(y, 0) of the act-free",
                                       "sk_gelu_f32 of the act-free"};
  CHECK(bad == 0,
        "isa %s m %lld n %lld k %lld bias %d act %s: %lld outputs != %s output (first "
        "y[%lld, %lld] = %.9g, want %.9g)", sk_isa_name((sk_isa)isa), (long long)m,
        (long long)n, (long long)k, bias != NULL, names[act], (long long)bad, wants[act],
        (long long)(first / ldy), (long long)(first % ldy), bad ? y[first] : 0.0,
        bad ? (double)(act == SK_ACT_RELU ? (y0[first] > 0 ? y0[first] : 0) : y0[first])
            : 0.0);
  free(y0);
}

static void check_case(int isa, int64_t m, int64_t n, int64_t k, int with_bias, int act) {
  const int64_t ldx = k + 3, ldy = n + 5;
  float *w = malloc((size_t)(n * k + 1) * sizeof *w);
  float *x = malloc((size_t)(m * ldx + 1) * sizeof *x);
  float *bias = malloc((size_t)(n + 1) * sizeof *bias);
  float *y = malloc((size_t)(m * ldy + 1) * sizeof *y);
  const int64_t floats = sk_gemm_f32_packed_floats(n, k);
  float *packed = malloc((size_t)(floats + 1) * sizeof *packed);
  for (int64_t i = 0; i < n * k; ++i) w[i] = rng_f32();
  for (int64_t i = 0; i < m * ldx; ++i) x[i] = rng_f32();
  for (int64_t i = 0; i < n; ++i) bias[i] = rng_f32();
  for (int64_t i = 0; i < m * ldy; ++i) y[i] = 777.0f;
  CHECK(sk_gemm_f32_pack(n, k, w, k, packed) == SK_OK, "pack");
  const int rc = sk_linear_gemm_f32(n, k, packed, m, x, ldx, with_bias ? bias : NULL,
                                    (sk_activation)act, y, ldy);
  CHECK(rc == SK_OK, "isa %s m %lld n %lld k %lld bias %d act %d: rc %d",
        sk_isa_name((sk_isa)isa), (long long)m, (long long)n, (long long)k, with_bias, act, rc);
  check_exact(isa, m, n, k, packed, w, x, ldx, with_bias ? bias : NULL, act, y, ldy);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < ldy; ++j) {
      const float got = y[i * ldy + j];
      if (j >= n) {
        CHECK(got == 777.0f, "isa %s m %lld n %lld k %lld bias %d act %d: wrote y[%lld, %lld] "
              "past n", sk_isa_name((sk_isa)isa), (long long)m, (long long)n, (long long)k,
              with_bias, act, (long long)i, (long long)j);
        continue;
      }
      double ref = with_bias ? bias[j] : 0.0, mag = 1.0;
      for (int64_t kk = 0; kk < k; ++kk) {
        ref += (double)x[i * ldx + kk] * w[j * k + kk];
        mag += fabs((double)x[i * ldx + kk] * w[j * k + kk]);
      }
      if (act == SK_ACT_RELU) ref = ref > 0 ? ref : 0;
      if (act == SK_ACT_GELU) ref = gelu(ref);
      CHECK(fabs(got - ref) <= 1e-5 * mag + 1e-6 * fabs(ref),
            "isa %s m %lld n %lld k %lld bias %d act %d: y[%lld, %lld] = %.9g, want %.9g",
            sk_isa_name((sk_isa)isa), (long long)m, (long long)n, (long long)k, with_bias, act,
            (long long)i, (long long)j, got, ref);
    }
  free(w);
  free(x);
  free(bias);
  free(y);
  free(packed);
}

/* The same call at 1, 2 and 3 threads gives the same bits: threads pack k
 * ranges of each X block and take whole tiles. Several blocks (K = 1500:
 * 12-row blocks), a short last panel, uneven tiles, K = 17 (a thread packs
 * no k). */
static void check_threads_bitwise(int isa, int64_t m, int64_t n, int64_t k, int act) {
  const int64_t ldx = k + 1, ldy = n + 2;
  float *w = malloc((size_t)(n * k + 1) * sizeof *w);
  float *x = malloc((size_t)(m * ldx + 1) * sizeof *x);
  float *bias = malloc((size_t)n * sizeof *bias);
  float *y[3];
  float *packed = malloc((size_t)(sk_gemm_f32_packed_floats(n, k) + 1) * sizeof *packed);
  for (int64_t i = 0; i < n * k; ++i) w[i] = rng_f32();
  for (int64_t i = 0; i < m * ldx; ++i) x[i] = rng_f32();
  for (int64_t i = 0; i < n; ++i) bias[i] = rng_f32();
  CHECK(sk_gemm_f32_pack(n, k, w, k, packed) == SK_OK, "pack");
  for (int t = 0; t < 3; ++t) {
    y[t] = malloc((size_t)(m * ldy) * sizeof *y[t]);
    for (int64_t i = 0; i < m * ldy; ++i) y[t][i] = 777.0f;
    sk_set_num_threads(t + 1);
    CHECK(sk_linear_gemm_f32(n, k, packed, m, x, ldx, bias, (sk_activation)act, y[t], ldy) ==
              SK_OK, "threads %d", t + 1);
  }
  sk_set_num_threads(0);
  for (int t = 1; t < 3; ++t)
    CHECK(memcmp(y[t], y[0], (size_t)(m * ldy) * sizeof *y[0]) == 0,
          "isa %s m %lld n %lld k %lld act %d: %d threads differ from 1",
          sk_isa_name((sk_isa)isa), (long long)m, (long long)n, (long long)k, act, t + 1);
  for (int t = 0; t < 3; ++t) free(y[t]);
  free(w);
  free(x);
  free(bias);
  free(packed);
}

int main(void) {
  const int64_t ns[] = {1, 9, 16, 17, 31, 32, 33, 70};
  const int64_t ms[] = {1, 2, 3, 5, 6, 7, 12, 13, 25};
  const int64_t ks[] = {0, 1, 17, 2000};
  FOR_EACH_ISA(isa) {
    for (size_t a = 0; a < sizeof ns / sizeof *ns; ++a)
      for (size_t b = 0; b < sizeof ms / sizeof *ms; ++b)
        for (size_t c = 0; c < sizeof ks / sizeof *ks; ++c)
          check_case(isa, ms[b], ns[a], ks[c], (int)((a + b + c) % 2), (int)((a + c) % 3));
    for (int threads = 1; threads <= 3; ++threads) {
      sk_set_num_threads(threads);
      check_case(isa, 30, 200, 300, 1, SK_ACT_GELU);
    }
    sk_set_num_threads(0);
    check_threads_bitwise(isa, 70, 200, 1500, SK_ACT_NONE);
    check_threads_bitwise(isa, 61, 97, 800, SK_ACT_GELU);
    check_threads_bitwise(isa, 300, 70, 17, SK_ACT_RELU);
  }
  float w[4] = {1, 2, 3, 4}, x[2] = {1, 1}, y[2] = {0, 0}, packed[64];
  CHECK(sk_gemm_f32_packed_floats(-1, 2) == -1, "negative n");
  CHECK(sk_gemm_f32_pack(2, 2, w, 1, packed) == SK_ERR_ARGUMENT, "ldw < k");
  CHECK(sk_gemm_f32_pack(2, 2, NULL, 2, packed) == SK_ERR_ARGUMENT, "null w");
  CHECK(sk_gemm_f32_pack(2, 2, w, 2, packed) == SK_OK, "pack 2x2");
  CHECK(sk_linear_gemm_f32(2, 2, packed, 1, x, 2, NULL, (sk_activation)7, y, 2) ==
            SK_ERR_ARGUMENT, "bad activation");
  CHECK(sk_linear_gemm_f32(2, 2, packed, 2, x, 1, NULL, SK_ACT_NONE, y, 2) == SK_ERR_ARGUMENT,
        "ldx < k");
  CHECK(sk_linear_gemm_f32(2, 2, NULL, 1, x, 2, NULL, SK_ACT_NONE, y, 2) == SK_ERR_ARGUMENT,
        "null packed");
  CHECK(sk_linear_gemm_f32(2, 2, packed, 0, NULL, 2, NULL, SK_ACT_NONE, NULL, 2) == SK_OK,
        "m = 0 is a no-op");
  CHECK(sk_linear_gemm_f32(2, 2, packed, 1, x, 2, NULL, SK_ACT_NONE, y, 2) == SK_OK &&
            y[0] == 3.0f && y[1] == 7.0f, "2x2: %g %g", y[0], y[1]);
  return sk_test_finish("test_gemm_f32");
}
