/* C tests of the sparse int8 kernels (1x4 blocks) against an int64 reference
 * loop, on every ISA this CPU runs: exact int32 results with extremes (x 0 and
 * 255, q -127 and 127, zero points 0/128/255), block fill 1..4, empty rows,
 * all-zero weights, tails in M, N and K (K % 4 != 0), both index widths,
 * strided x/y, 1 and 2 threads, M across the 32-row and 16-row tiles;
 * validation of bad weights. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "test_util.h"

static int variant = 0; /* the kernel variant under test (sk_test_set_variant) */
static int set_variant(int isa, int v) {
  variant = v;
  return sk_test_set_variant(isa, v);
}

typedef struct {
  int64_t n, k, nb;
  int64_t *indptr;
  void *cols;
  int index_bytes;
  int8_t *values;
  int32_t *row_sums;
  int8_t *dense; /* [n][k] reference */
} bsr;

/* fill 0: random fill 1..4 per block; 1..4: exactly that many per block
 * (fewer only where the block passes K). density: share of nonempty blocks. */
static bsr make_bsr(int64_t n, int64_t k, double density, int fill, int index_bytes) {
  const int64_t kq = (k + 3) / 4;
  bsr w = {n, k, 0, malloc((size_t)(n + 1) * 8), malloc((size_t)(n * kq + 1) * 4),
           index_bytes, malloc((size_t)(n * kq + 1) * 4), malloc((size_t)(n + 1) * 4),
           calloc((size_t)(n * k + 1), 1)};
  w.indptr[0] = 0;
  for (int64_t r = 0; r < n; ++r) {
    const int empty_row = (r % 5) == 3;
    int64_t sum = 0;
    for (int64_t c = 0; c < kq; ++c) {
      if (empty_row || (double)rng_u32() / 4294967296.0 >= density) continue;
      int want = fill ? fill : 1 + (int)(rng_u32() % 4);
      int8_t v[4] = {0, 0, 0, 0};
      int placed = 0;
      for (int j = 0; j < 4 && placed < want; ++j) {
        const int64_t kk = 4 * c + j;
        if (kk >= k) break;
        /* spread the `want` nonzeros over random lanes */
        if ((int)(rng_u32() % (uint32_t)(4 - j)) < want - placed) {
          v[j] = rand_q();
          ++placed;
        }
      }
      if (!placed) continue;
      if (index_bytes == 2) ((uint16_t *)w.cols)[w.nb] = (uint16_t)c;
      else ((int32_t *)w.cols)[w.nb] = (int32_t)c;
      for (int j = 0; j < 4; ++j) {
        w.values[4 * w.nb + j] = v[j];
        sum += v[j];
        if (v[j]) w.dense[r * k + 4 * c + j] = v[j];
      }
      ++w.nb;
    }
    w.row_sums[r] = (int32_t)sum;
    w.indptr[r + 1] = w.nb;
  }
  return w;
}

static void free_bsr(bsr *w) {
  free(w->indptr); free(w->cols); free(w->values); free(w->row_sums); free(w->dense);
}

/* y rows ldy apart (see s32_case_make) */
static void run_case_ld(int isa, int64_t m, int64_t n, int64_t k, double density, int fill,
                        int ib, int zp_per_row, int threads, int64_t ldy) {
  bsr b = make_bsr(n, k, density, fill, ib);
  sk_bsr_s8_1x4 w = {n, k, b.indptr, b.cols, ib, b.values, b.row_sums};
  CHECK(sk_bsr_s8_1x4_validate(&w, NULL) == SK_OK, "validate");
  s32_case c = s32_case_make(m, k, ldy);
  sk_set_num_threads(threads);
  const int rc = sk_spmm_u8s8_s32(&w, m, c.x, c.ldx, c.zp, zp_per_row, c.y, ldy);
  CHECK(rc == SK_OK, "rc=%d", rc);
  const int bad = check_s32_vs_dense(c.x, c.ldx, c.zp, zp_per_row, b.dense, m, n, k, c.y, ldy);
  CHECK(!bad, "isa=%s/%d m=%lld n=%lld k=%lld density=%.2f fill=%d ib=%d zprow=%d t=%d",
        sk_isa_name((sk_isa)isa), variant, (long long)m, (long long)n, (long long)k, density,
        fill,
        ib, zp_per_row, threads);
  s32_case_free(&c); free_bsr(&b);
}

static void run_case(int isa, int64_t m, int64_t n, int64_t k, double density, int fill,
                     int ib, int zp_per_row, int threads) {
  run_case_ld(isa, m, n, k, density, fill, ib, zp_per_row, threads, n + 5);
}

/* Float output: sk_linear_u8s8_bsr_f32 against the int64 reference on the
 * rows sk_quantize_rows_u8 produces (the quantizer is tested bit-exactly in
 * test_qgemm_u8s8), dequantized bit for bit as the kernels do in float32;
 * relu, bias, padding untouched. */
static void linear_case(int isa, int64_t m, int64_t n, int64_t k, int ib, int threads) {
  bsr b = make_bsr(n, k, 0.4, 0, ib);
  sk_bsr_s8_1x4 w = {n, k, b.indptr, b.cols, ib, b.values, b.row_sums};
  const int64_t ldx = k + 2, ldy = n + 3;
  float *x = malloc((size_t)(m * ldx + 1) * 4), *y = malloc((size_t)(m * ldy + 1) * 4);
  float *ws = malloc((size_t)(n + 1) * 4), *bias = malloc((size_t)(n + 1) * 4);
  float *xs = malloc((size_t)(m + 1) * 4);
  int32_t *zp = malloc((size_t)(m + 1) * 4);
  uint8_t *xq = malloc((size_t)(m * k + 1));
  for (int64_t i = 0; i < m * ldx; ++i) x[i] = rng_f32() * (float)(1 + i % 5);
  for (int64_t j = 0; j < n; ++j) {
    ws[j] = 0.002f + (float)(rng_u32() % 100) * 1e-4f;
    bias[j] = rng_f32();
  }
  sk_set_num_threads(threads);
  CHECK(sk_quantize_rows_u8(m, k, x, ldx, xq, k, xs, zp) == SK_OK, "quantize rc");
  for (int variant_f32 = 0; variant_f32 < 4; ++variant_f32) {
    const float *bs = variant_f32 & 1 ? bias : NULL;
    const sk_activation act = variant_f32 & 2 ? SK_ACT_RELU : SK_ACT_NONE;
    for (int64_t i = 0; i < m * ldy; ++i) y[i] = -7.0f;
    CHECK(sk_linear_u8s8_bsr_f32(&w, ws, m, x, ldx, bs, act, y, ldy) == SK_OK, "lin rc");
    int bad = 0;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t r = 0; r < ldy; ++r) {
        const float got = y[i * ldy + r];
        if (r >= n) {
          bad |= got != -7.0f;
          continue;
        }
        int64_t ref = 0;
        for (int64_t kk = 0; kk < k; ++kk)
          ref += ((int64_t)xq[i * k + kk] - zp[i]) * b.dense[r * k + kk];
        /* bit for bit the kernels' float32 statement; volatile: no fma contraction */
        volatile float prod = (float)ref * (xs[i] * ws[r]);
        float want = bs ? prod + bs[r] : prod;
        if (act == SK_ACT_RELU && want < 0.0f) want = 0.0f;
        bad |= memcmp(&want, &got, 4) != 0;
      }
    CHECK(!bad, "linear isa=%s/%d m=%lld n=%lld k=%lld ib=%d t=%d bias=%d relu=%d",
          sk_isa_name((sk_isa)isa), variant, (long long)m, (long long)n, (long long)k, ib,
          threads, bs != NULL, act == SK_ACT_RELU);
  }
  free(x); free(y); free(ws); free(bias); free(xs); free(zp); free(xq); free_bsr(&b);
}

/* static input: sk_linear_u8s8_bsr_f32_static equals, bit for bit,
 * sk_quantize_u8 + sk_spmm_u8s8_s32 + acc * (x_scale * ws) (+ bias) (relu),
 * with and without bias and relu. */
static void linear_static_case(int isa, int64_t m, int64_t n, int64_t k, int ib,
                               float x_scale, int32_t x_zp) {
  bsr b = make_bsr(n, k, 0.4, 0, ib);
  sk_bsr_s8_1x4 w = {n, k, b.indptr, b.cols, ib, b.values, b.row_sums};
  float *x = malloc((size_t)(m * k + 1) * 4), *y = malloc((size_t)(m * n + 1) * 4);
  float *ws = malloc((size_t)(n + 1) * 4), *bias = malloc((size_t)(n + 1) * 4);
  uint8_t *xq = malloc((size_t)(m * k + 1));
  int32_t *acc = malloc((size_t)(m * n + 1) * 4);
  for (int64_t i = 0; i < m * k; ++i) x[i] = rng_f32() * (float)(1 + i % 5);
  for (int64_t j = 0; j < n; ++j) {
    ws[j] = 0.002f + (float)(rng_u32() % 100) * 1e-4f;
    bias[j] = rng_f32();
  }
  CHECK(sk_quantize_u8(m, k, x, k, x_scale, x_zp, xq, k) == SK_OK, "quantize");
  CHECK(sk_spmm_u8s8_s32(&w, m, xq, k, &x_zp, 0, acc, n) == SK_OK, "s32 rc");
  for (int variant_f32 = 0; variant_f32 < 4; ++variant_f32) {
    const float *bs = variant_f32 & 1 ? bias : NULL;
    const sk_activation act = variant_f32 & 2 ? SK_ACT_RELU : SK_ACT_NONE;
    CHECK(sk_linear_u8s8_bsr_f32_static(&w, ws, m, x, k, x_scale, x_zp, bs, act, y, n) ==
              SK_OK, "static rc");
    CHECK(!check_static_f32(acc, x_scale, ws, bs, act, m, n, y),
          "static isa=%s m=%lld n=%lld k=%lld ib=%d bias=%d relu=%d",
          sk_isa_name((sk_isa)isa), (long long)m, (long long)n, (long long)k, ib, bs != NULL,
          act == SK_ACT_RELU);
  }
  CHECK(sk_linear_u8s8_bsr_f32_static(&w, ws, m, x, k, -1.0f, x_zp, NULL, SK_ACT_NONE, y, n) ==
            SK_ERR_ARGUMENT, "static scale < 0");
  free(x); free(y); free(ws); free(bias); free(xq); free(acc); free_bsr(&b);
}

static void test_validate(void) {
  int64_t indptr[3] = {0, 2, 3};
  uint16_t cols[3] = {1, 1, 0}; /* row 0 has a duplicate */
  int8_t vals[12] = {1, 2, 3, 4, 5, 6, 0, 0, 7, 8, 9, 10};
  int32_t sums[2] = {21, 34};
  sk_bsr_s8_1x4 w = {2, 7, indptr, cols, 2, vals, sums};
  int64_t bad = -2;
  CHECK(sk_bsr_s8_1x4_validate(&w, &bad) == SK_ERR_FORMAT && bad == 0, "duplicate");
  cols[0] = 0;
  CHECK(sk_bsr_s8_1x4_validate(&w, &bad) == SK_OK && bad == -1, "valid");
  vals[7] = 1; /* position 7 is past K = 7 */
  sums[0] = 22;
  CHECK(sk_bsr_s8_1x4_validate(&w, &bad) == SK_ERR_FORMAT && bad == 0, "padding");
  vals[7] = 0;
  sums[0] = 21;
  vals[9] = -128;
  CHECK(sk_bsr_s8_1x4_validate(&w, &bad) == SK_ERR_FORMAT && bad == 1, "-128");
  vals[9] = 9;
  CHECK(sk_bsr_s8_1x4_validate(&w, &bad) == SK_ERR_FORMAT && bad == 1, "row sum");
  vals[9] = 8;
  sums[1] = 34;
  cols[1] = 2; /* out of range: ceil(7/4) = 2 block columns */
  CHECK(sk_bsr_s8_1x4_validate(&w, &bad) == SK_ERR_FORMAT && bad == 0, "range");
  cols[1] = 1;
  indptr[1] = 4;
  CHECK(sk_bsr_s8_1x4_validate(&w, &bad) == SK_ERR_FORMAT, "indptr");
  indptr[1] = 2;
  int32_t y[2], zp = 300;
  uint8_t x[7] = {0};
  CHECK(sk_spmm_u8s8_s32(&w, 1, x, 7, &zp, 0, y, 2) == SK_ERR_ARGUMENT, "zp range");
  zp = 0;
  CHECK(sk_spmm_u8s8_s32(&w, 1, x, 6, &zp, 0, y, 2) == SK_ERR_ARGUMENT, "ldx");
  CHECK(sk_spmm_u8s8_s32(&w, 1, x, 7, &zp, 0, y, 2) == SK_OK, "ok");
}

int main(void) {
  static const int64_t ms[] = {1, 2, 7, 16, 17, 29, 33, 50, 64, 65, 113, 130};
  static const int64_t ns[] = {1, 3, 16, 17, 40};
  static const int64_t ks[] = {1, 4, 5, 31, 100};
  static const double densities[] = {0.0, 0.3, 1.0};
  test_validate();
  FOR_EACH_ISA(isa) for (int var = 0; var < 2; ++var) {
    if (!set_variant(isa, var)) continue;
    if (var) printf("isa %s: variant %d tested too\n", sk_isa_name((sk_isa)isa), var);
    CHECK(sk_family_isa("spmm_u8s8") >= 0, "family isa");
    if (isa == SK_ISA_NEON) CHECK(sk_family_isa("spmm_u8s8") == SK_ISA_NEON, "neon isa");
    for (size_t a = 0; a < sizeof ms / sizeof *ms; ++a)
      for (size_t b = 0; b < sizeof ns / sizeof *ns; ++b)
        for (size_t c = 0; c < sizeof ks / sizeof *ks; ++c)
          for (size_t d = 0; d < sizeof densities / sizeof *densities; ++d) {
            const int v = (int)(a + b + c + d);
            run_case(isa, ms[a], ns[b], ks[c], densities[d], v % 5, v % 2 ? 2 : 4, v % 3 != 0,
                     1 + (v % 2));
          }
    run_case(isa, 200, 700, 3001, 0.3, 0, 2, 1, 2); /* big enough to thread */
    /* outputs of 1 MiB or more (streamed on AVX-512): whole-line rows and
     * not, tails in M and N, one and two threads */
    run_case_ld(isa, 130, 2050, 100, 0.3, 0, 2, 1, 1, 2064);
    run_case_ld(isa, 100, 2701, 37, 0.3, 4, 4, 0, 2, 2704);
    run_case_ld(isa, 70, 4003, 50, 0.3, 1, 2, 1, 2, 4003);
    linear_case(isa, 130, 2050, 64, 2, 1);
    run_case(isa, 1, 700, 3001, 0.3, 0, 4, 0, 2);
    /* M == 1 with K/4 of 33, 251, 256, 257 dwords: activation lookup from
     * registers with 2..8 register pairs, and the gather just past it */
    run_case(isa, 1, 300, 130, 0.5, 0, 2, 0, 1);
    run_case(isa, 1, 300, 1001, 0.5, 0, 2, 1, 1);
    run_case(isa, 1, 300, 1024, 0.5, 4, 4, 1, 1);
    run_case(isa, 1, 300, 1025, 0.5, 0, 2, 1, 1);
    run_case(isa, 3, 50, 4099, 1.0, 4, 2, 1, 1); /* K up to 4096 + tail, dense */
    linear_case(isa, 1, 37, 61, 2, 1);
    linear_case(isa, 5, 40, 130, 4, 1);
    linear_case(isa, 37, 70, 99, 2, 2);
    linear_case(isa, 64, 33, 257, 4, 1);
    linear_static_case(isa, 1, 37, 61, 2, 0.03f, 128);
    linear_static_case(isa, 37, 70, 99, 4, 0.01f, 0);
    linear_static_case(isa, 130, 50, 257, 2, 0.02f, 255);
  }
  return sk_test_finish("test_spmm_u8s8");
}
