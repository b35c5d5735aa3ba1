/* C tests of the g4 sparse int8 kernels (groups of 4 nonzeros at any k)
 * against an int64 reference loop on every ISA this CPU runs: exact int32 with
 * extremes (x 0 and 255, q -127 and 127, zero points 0/128/255), empty rows,
 * all-zero and dense weights, rows whose last group is padded, tails in M
 * (across the 16-, 32-, 64- and 8-row tiles, and a last tile of 16 or 32 rows
 * after 64-row ones), N and K, strided x/y, 1 and 2 threads, the
 * float path; validation of bad weights. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "internal.h" /* sk_test_mask_avx512vbmi */
#include "test_util.h"

/* 1 while the AVX-512 VBMI test hook masks VBMI (the paths of a VNNI CPU
 * without it): failure messages say so after the ISA's name. */
static int vbmi_masked = 0;
static const char *isa_label(int isa) {
  return vbmi_masked ? "avx512vnni(VBMI masked)" : sk_isa_name((sk_isa)isa);
}

typedef struct {
  int64_t n, k, ng;
  int64_t *indptr;
  uint16_t *kidx;
  int8_t *values;
  int32_t *row_sums;
  int8_t *dense; /* [n][k] reference */
} g4;

/* density: share of nonzero weights; every 5th row (r % 5 == 3) empty. */
static g4 make_g4(int64_t n, int64_t k, double density) {
  g4 w = {n, k, 0, malloc((size_t)(n + 1) * 8), malloc((size_t)(n * (k + 3) + 4) * 2),
          malloc((size_t)(n * (k + 3) + 4)), malloc((size_t)(n + 1) * 4), calloc((size_t)(n * k + 1), 1)};
  w.indptr[0] = 0;
  for (int64_t r = 0; r < n; ++r) {
    int64_t sum = 0, slot = 0;
    for (int64_t c = 0; c < k; ++c) {
      if ((r % 5) == 3 || (double)rng_u32() / 4294967296.0 >= density) continue;
      const int8_t v = rand_q();
      w.dense[r * k + c] = v;
      w.kidx[4 * w.ng + slot] = (uint16_t)c;
      w.values[4 * w.ng + slot] = v;
      sum += v;
      if (++slot == 4) slot = 0, ++w.ng;
    }
    if (slot) { /* pad the last group: weight 0 at some valid column */
      for (; slot < 4; ++slot) {
        w.kidx[4 * w.ng + slot] = (uint16_t)(rng_u32() % (uint32_t)k);
        w.values[4 * w.ng + slot] = 0;
      }
      ++w.ng;
    }
    w.row_sums[r] = (int32_t)sum;
    w.indptr[r + 1] = w.ng;
  }
  return w;
}

static void free_g4(g4 *w) {
  free(w->indptr); free(w->kidx); free(w->values); free(w->row_sums); free(w->dense);
}

/* y rows ldy apart (see s32_case_make) */
static void run_case_ld(int isa, int64_t m, int64_t n, int64_t k, double density,
                        int zp_per_row, int threads, int64_t ldy) {
  g4 b = make_g4(n, k, density);
  sk_csr_s8_g4 w = {n, k, b.indptr, b.kidx, b.values, b.row_sums};
  CHECK(sk_csr_s8_g4_validate(&w, NULL) == SK_OK, "validate");
  s32_case c = s32_case_make(m, k, ldy);
  sk_set_num_threads(threads);
  const int rc = sk_spmm_u8s8_g4_s32(&w, m, c.x, c.ldx, c.zp, zp_per_row, c.y, ldy);
  CHECK(rc == SK_OK, "rc=%d", rc);
  const int bad = check_s32_vs_dense(c.x, c.ldx, c.zp, zp_per_row, b.dense, m, n, k, c.y, ldy);
  CHECK(!bad, "isa=%s m=%lld n=%lld k=%lld density=%.2f zprow=%d t=%d",
        isa_label(isa), (long long)m, (long long)n, (long long)k, density,
        zp_per_row, threads);
  s32_case_free(&c); free_g4(&b);
}

static void run_case(int isa, int64_t m, int64_t n, int64_t k, double density,
                     int zp_per_row, int threads) {
  run_case_ld(isa, m, n, k, density, zp_per_row, threads, n + 5);
}

/* float path: y = acc * (xscale * wscale) (+ bias) (relu) bit for bit in
 * float32, with and without bias and relu, against the int32 path fed with the
 * same quantized rows (sk_quantize_rows_u8). */
static int isa_now; /* the ISA under test, for the float paths' messages */

static void run_linear(int64_t m, int64_t n, int64_t k) {
  g4 b = make_g4(n, k, 0.2);
  sk_csr_s8_g4 w = {n, k, b.indptr, b.kidx, b.values, b.row_sums};
  float *x = malloc((size_t)(m * k) * 4), *y = malloc((size_t)(m * n) * 4);
  float *ws = malloc((size_t)n * 4), *bias = malloc((size_t)n * 4), *xs = malloc((size_t)m * 4);
  uint8_t *xq = malloc((size_t)(m * k));
  int32_t *zp = malloc((size_t)m * 4), *acc = malloc((size_t)(m * n) * 4);
  for (int64_t i = 0; i < m * k; ++i) x[i] = (float)((int)(rng_u32() % 2001) - 1000) / 100.0f;
  for (int64_t j = 0; j < n; ++j) ws[j] = 0.01f * (float)(1 + j % 7), bias[j] = rng_f32();
  CHECK(sk_quantize_rows_u8(m, k, x, k, xq, k, xs, zp) == SK_OK, "quantize");
  CHECK(sk_spmm_u8s8_g4_s32(&w, m, xq, k, zp, 1, acc, n) == SK_OK, "s32 rc");
  for (int variant = 0; variant < 4; ++variant) {
    const float *bs = variant & 1 ? bias : NULL;
    const sk_activation act = variant & 2 ? SK_ACT_RELU : SK_ACT_NONE;
    CHECK(sk_linear_u8s8_g4_f32(&w, ws, m, x, k, bs, act, y, n) == SK_OK, "linear rc");
    int bad = 0;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        volatile float prod = (float)acc[i * n + j] * (xs[i] * ws[j]); /* no fma contraction */
        float ref = bs ? prod + bs[j] : prod;
        if (act == SK_ACT_RELU && ref < 0.0f) ref = 0.0f;
        if (memcmp(&ref, &y[i * n + j], 4) != 0) bad = 1;
      }
    CHECK(!bad, "linear isa=%s m=%lld n=%lld k=%lld bias=%d relu=%d",
          isa_label(isa_now), (long long)m, (long long)n, (long long)k, bs != NULL,
          act == SK_ACT_RELU);
  }
  free(x); free(y); free(ws); free(bias); free(xs); free(xq); free(zp); free(acc); free_g4(&b);
}

static void test_validate(void) {
  int64_t indptr[3] = {0, 1, 2};
  uint16_t kidx[8] = {0, 1, 2, 3, 6, 6, 0, 0};
  int8_t vals[8] = {1, 2, 3, 4, 5, 6, 0, 0};
  int32_t sums[2] = {10, 11};
  sk_csr_s8_g4 w = {2, 7, indptr, kidx, vals, sums};
  int64_t bad = -2;
  CHECK(sk_csr_s8_g4_validate(&w, &bad) == SK_OK && bad == -1, "valid");
  kidx[5] = 7; /* past K */
  CHECK(sk_csr_s8_g4_validate(&w, &bad) == SK_ERR_FORMAT && bad == 1, "kidx range");
  kidx[5] = 6;
  vals[2] = -128;
  sums[0] = 1 + 2 - 128 + 4; /* the sum agrees: only the value is bad */
  CHECK(sk_csr_s8_g4_validate(&w, &bad) == SK_ERR_FORMAT && bad == 0, "-128");
  vals[2] = 3;
  CHECK(sk_csr_s8_g4_validate(&w, &bad) == SK_ERR_FORMAT && bad == 0, "row sum");
  sums[0] = 10;
  indptr[2] = 0; /* decreasing */
  CHECK(sk_csr_s8_g4_validate(&w, &bad) == SK_ERR_FORMAT && bad == 1, "indptr");
  indptr[2] = 2;
  int32_t y[2], zp = 300;
  uint8_t x[7] = {0};
  CHECK(sk_spmm_u8s8_g4_s32(&w, 1, x, 7, &zp, 0, y, 2) == SK_ERR_ARGUMENT, "zp range");
  zp = 0;
  CHECK(sk_spmm_u8s8_g4_s32(&w, 1, x, 6, &zp, 0, y, 2) == SK_ERR_ARGUMENT, "ldx");
  CHECK(sk_spmm_u8s8_g4_s32(&w, 1, x, 7, &zp, 0, y, 2) == SK_OK, "ok");
  w.k = 65537;
  CHECK(sk_spmm_u8s8_g4_s32(&w, 1, x, 65537, &zp, 0, y, 2) == SK_ERR_ARGUMENT, "K > 65536");
}

/* static input: sk_linear_u8s8_g4_f32_static equals, bit for bit,
 * sk_quantize_u8 + the int32 path + acc * (x_scale * ws) (+ bias) (relu),
 * with and without bias and relu, and
 * rejects a bad scale / zero point and non-finite x. */
static void run_linear_static(int64_t m, int64_t n, int64_t k, float x_scale, int32_t x_zp) {
  g4 b = make_g4(n, k, 0.2);
  sk_csr_s8_g4 w = {n, k, b.indptr, b.kidx, b.values, b.row_sums};
  float *x = malloc((size_t)(m * k + 1) * 4), *y = malloc((size_t)(m * n + 1) * 4);
  float *ws = malloc((size_t)n * 4), *bias = malloc((size_t)n * 4);
  uint8_t *xq = malloc((size_t)(m * k + 1));
  int32_t *acc = malloc((size_t)(m * n + 1) * 4);
  for (int64_t i = 0; i < m * k; ++i) x[i] = (float)((int)(rng_u32() % 2001) - 1000) / 100.0f;
  for (int64_t j = 0; j < n; ++j) ws[j] = 0.01f * (float)(1 + j % 7), bias[j] = rng_f32();
  CHECK(sk_quantize_u8(m, k, x, k, x_scale, x_zp, xq, k) == SK_OK, "quantize");
  CHECK(sk_spmm_u8s8_g4_s32(&w, m, xq, k, &x_zp, 0, acc, n) == SK_OK, "s32 rc");
  for (int variant = 0; variant < 4; ++variant) {
    const float *bs = variant & 1 ? bias : NULL;
    const sk_activation act = variant & 2 ? SK_ACT_RELU : SK_ACT_NONE;
    CHECK(sk_linear_u8s8_g4_f32_static(&w, ws, m, x, k, x_scale, x_zp, bs, act, y, n) ==
              SK_OK, "static rc");
    CHECK(!check_static_f32(acc, x_scale, ws, bs, act, m, n, y),
          "static isa=%s m=%lld n=%lld k=%lld bias=%d relu=%d", isa_label(isa_now),
          (long long)m, (long long)n, (long long)k, bs != NULL, act == SK_ACT_RELU);
  }
  CHECK(sk_linear_u8s8_g4_f32_static(&w, ws, m, x, k, 0.0f, x_zp, bias, SK_ACT_NONE, y, n) ==
            (m > 0 ? SK_ERR_ARGUMENT : SK_OK), "static scale 0");
  CHECK(sk_linear_u8s8_g4_f32_static(&w, ws, m, x, k, x_scale, 256, bias, SK_ACT_NONE, y, n) ==
            (m > 0 ? SK_ERR_ARGUMENT : SK_OK), "static zero point 256");
  if (m > 0 && k > 0) {
    x[m * k - 1] = NAN;
    CHECK(sk_linear_u8s8_g4_f32_static(&w, ws, m, x, k, x_scale, x_zp, NULL, SK_ACT_NONE, y,
                                       n) == SK_ERR_NONFINITE, "static NaN");
  }
  free(x); free(y); free(ws); free(bias); free(xq); free(acc); free_g4(&b);
}

/* Every case on the current ISA (isa: its number, for the messages). */
static void run_all(int isa) {
  isa_now = isa;
  /* M = 2..16: one 16-row tile on AVX-512 VBMI (3, 15: partial; 16 full),
   * 17..32 one 32-row tile (17, 24: rows 16.. partial), past 64 a last tile
   * of 16 (65, 80, 130) or 32 rows (96) or 64 (97); without VBMI one 64-row
   * tile (partial up to 63 rows) */
  static const int64_t ms[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 24, 32, 33, 63, 64, 65, 80, 96, 97, 130};
  static const int64_t ns[] = {1, 3, 16, 17, 40};
  static const int64_t ks[] = {1, 4, 5, 31, 100, 130};
  static const double densities[] = {0.0, 0.1, 0.5, 1.0};
  for (size_t a = 0; a < sizeof ms / sizeof *ms; ++a)
    for (size_t b = 0; b < sizeof ns / sizeof *ns; ++b)
      for (size_t c = 0; c < sizeof ks / sizeof *ks; ++c)
        for (size_t d = 0; d < sizeof densities / sizeof *densities; ++d) {
          const int v = (int)(a + b + c + d);
          run_case(isa, ms[a], ns[b], ks[c], densities[d], v % 3 != 0, 1 + (v % 2));
        }
  run_case(isa, 130, 300, 1500, 0.1, 1, 2); /* big enough to thread */
  run_case(isa, 65, 9, 35000, 0.01, 0, 1); /* wide K: columns past 2^15 */
  /* outputs of 1 MiB or more (streamed on AVX-512): whole-line rows and
   * not, tails in M and N, one and two threads */
  run_case_ld(isa, 130, 2050, 100, 0.1, 1, 1, 2064);
  run_case_ld(isa, 100, 2701, 37, 0.2, 0, 2, 2704);
  run_case_ld(isa, 70, 4003, 50, 0.1, 1, 2, 4003);
  run_linear(67, 45, 99);
  run_linear(1, 45, 99);
  run_linear(16, 45, 99); /* the 16-row tile from fp32 rows */
  run_linear(20, 45, 99); /* the 32-row tile from fp32 rows */
  run_linear(90, 45, 99); /* a 64-row tile, then a 32-row one */
  run_case(isa, 96, 300, 1500, 0.1, 0, 2); /* 64 + 32 rows, threads */
  run_case(isa, 24, 300, 3000, 0.1, 1, 2); /* 32-row tile, wide K, threads */
  sk_set_num_threads(2);
  run_linear(80, 700, 900); /* fp32 rows of tiles of 64 and 16 rows, threads */
  run_linear(5, 33, 200);
  run_case(isa, 16, 300, 3000, 0.1, 1, 2); /* 16-row tile, wide K, threads */
  run_case(isa, 9, 100, 4100, 0.05, 0, 1);
  /* M = 2, 3 as rows of the M == 1 kernel (AVX-512 VBMI: K <= 1024, or the
   * wide kernel at M = 2 and density >= 0.15) or the 16-row tile */
  run_case(isa, 2, 100, 4100, 0.3, 1, 1);
  run_case(isa, 2, 300, 2000, 0.3, 0, 2);
  run_case(isa, 2, 100, 4100, 0.05, 0, 1);
  run_case(isa, 3, 100, 4100, 0.3, 1, 1);
  run_case(isa, 3, 300, 1000, 0.3, 1, 2);
  run_case_ld(isa, 2, 37, 700, 0.4, 1, 1, 50);
  run_linear(2, 45, 99);
  run_linear(3, 70, 1000);
  run_linear(2, 70, 3000);
  /* M == 1 with every register-table size of the AVX-512 VBMI kernel (K <=
   * 1024: 2, 4, 6, 8 windows of 128 bytes), the wide kernel past it (up to
   * K = 32768: 256 windows) and the portable one beyond, 16-row epilogue
   * tails, two threads */
  static const int64_t k1[] = {129, 300, 700, 1000, 1024, 1025, 2047, 4099, 32768, 32769};
  for (size_t c = 0; c < sizeof k1 / sizeof *k1; ++c) {
    run_case(isa, 1, 37, k1[c], 0.1, 0, 1);
    run_case(isa, 1, 300, k1[c], 0.2, 0, 2);
  }
  run_linear(1, 70, 1000);
  run_linear(1, 70, 3000); /* the wide M == 1 kernel, float epilogue */
  run_case(isa, 1, 50, 32768, 0.002, 1, 1); /* groups spanning many windows */
  run_linear_static(67, 45, 99, 0.05f, 100);
  run_linear_static(1, 45, 99, 0.02f, 0);
  run_linear_static(12, 45, 99, 0.02f, 17);
  run_linear_static(30, 45, 99, 0.02f, 17);
  run_linear_static(2, 45, 99, 0.02f, 17);
  run_linear_static(2, 45, 3000, 0.02f, 200);
  run_linear_static(130, 70, 1000, 0.013f, 255);
}

int main(void) {
  test_validate();
  FOR_EACH_ISA(isa) run_all(isa);
  /* AVX-512 VNNI without VBMI (Intel Cascade Lake): the driver then runs the
   * 64-row tile at every M and the portable M == 1 kernel; on a CPU with VBMI
   * the test hook masks it so those paths are checked here too */
  if (sk_g4_vbmi_cpu() && sk_set_isa(SK_ISA_AVX512VNNI) == SK_OK) {
    sk_test_mask_avx512vbmi(1);
    vbmi_masked = 1;
    CHECK(!sk_g4_vbmi_cpu() && !sk_g4_small_fast() && !sk_spmv_u8s8_g4_fast(100) &&
              !sk_g4_rows_fast(2, 100, 100, 2500),
          "VBMI masked: a VBMI kernel is still chosen");
    run_all(SK_ISA_AVX512VNNI);
    vbmi_masked = 0;
    sk_test_mask_avx512vbmi(0);
    CHECK(sk_g4_vbmi_cpu() && sk_g4_small_fast(), "VBMI unmasked: the VBMI kernels are back");
    printf("isa avx512vnni without VBMI (masked): tested\n");
  } else {
    printf("isa avx512vnni without VBMI: not tested (this CPU has no AVX-512 VNNI + VBMI to "
           "mask)\n");
  }
  return sk_test_finish("test_spmm_u8s8_g4");
}
