/* C tests of the sliced ELL (sk_sell_f32_from_csr, sk_sell_f32_validate,
 * sk_linear_sell_f32) against a double-precision CSR reference loop, on every
 * ISA this CPU runs (NEON on AArch64: under qemu in tests/test_c_core.py):
 * tails in M/N/K (N not a multiple of 16, K below and not a multiple of 32),
 * empty rows, density 0 and 1, both CSR index widths, bias
 * and relu, strided x/y, 1 and 2 threads, inf/NaN in x columns no row uses
 * (in some rows of x, next to finite ones), and corrupted layouts the
 * validator must reject. */
#include <math.h>
#include <string.h>

#include "test_util.h"

typedef struct {
  sk_csr_f32 w;
  int64_t *indptr;
  void *indices;
  float *values;
} csr;

/* Row r empty when r % 5 == 3. Columns [0, unused) are used only by the
 * first row of each slice (column 0): the inf/NaN test puts non-finite x
 * there, so those rows' results are +-inf, and every other row's empty slots
 * (which a window starting at column 0 covers) must not turn NaN. */
static csr make_csr(int64_t n, int64_t k, double density, int ib, int64_t unused) {
  csr c;
  c.indptr = malloc((size_t)(n + 1) * 8);
  c.indices = malloc((size_t)(n * k + 1) * 4);
  c.values = malloc((size_t)(n * k + 1) * 4);
  int64_t nnz = 0;
  c.indptr[0] = 0;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t j = 0; j < k; ++j) {
      if (j < unused && (r % 16 != 0 || j > 0)) continue;
      if (r % 5 == 3 || (double)rng_u32() / 4294967296.0 >= density) continue;
      if (ib == 2) ((uint16_t *)c.indices)[nnz] = (uint16_t)j;
      else ((int32_t *)c.indices)[nnz] = (int32_t)j;
      c.values[nnz++] = rng_f32();
    }
    c.indptr[r + 1] = nnz;
  }
  sk_csr_f32 w = {n, k, c.indptr, c.indices, ib, c.values};
  c.w = w;
  return c;
}

static void free_csr(csr *c) { free(c->indptr); free(c->indices); free(c->values); }

typedef struct {
  sk_sell_f32 w;
  int64_t *group_ptr, groups;
  uint32_t *window, *index;
  float *values;
} sell;

static sell make_sell(const csr *c) {
  sell s;
  s.groups = sk_sell_f32_count_groups(&c->w);
  CHECK(s.groups >= 0, "count_groups");
  s.group_ptr = malloc((size_t)((c->w.n + 15) / 16 + 1) * 8);
  s.window = malloc((size_t)(s.groups + 1) * 4);
  s.index = malloc((size_t)(s.groups * 16 + 1) * 4);
  s.values = malloc((size_t)(s.groups * 64 + 1) * 4);
  CHECK(sk_sell_f32_from_csr(&c->w, s.group_ptr, s.window, s.index, s.values) == SK_OK,
        "from_csr");
  sk_sell_f32 w = {c->w.n, c->w.k, s.group_ptr, s.window, s.index, s.values};
  s.w = w;
  return s;
}

static void free_sell(sell *s) { free(s->group_ptr); free(s->window); free(s->index); free(s->values); }

static void run_case(int isa, int64_t m, int64_t n, int64_t k, double density, int ib,
                     int use_bias, int relu, int threads, int64_t unused) {
  csr c = make_csr(n, k, density, ib, unused);
  sell s = make_sell(&c);
  int64_t bad = 0;
  CHECK(sk_sell_f32_validate(&s.w, &bad) == SK_OK && bad == -1, "validate n=%lld k=%lld",
        (long long)n, (long long)k);
  const int64_t ldx = k + 3, ldy = n + 5;
  float *x = malloc((size_t)(m * ldx + 1) * 4);
  float *y = malloc((size_t)(m * ldy + 1) * 4);
  float *bias = malloc((size_t)(n + 1) * 4);
  for (int64_t i = 0; i < m * ldx; ++i) x[i] = rng_f32();
  /* columns most rows do not use: must not leak. Rows 0 and 3 of each 4
   * only, so rows of finite x (the AVX2 kernel's unmasked path) run next to
   * others, in both orders within a pair of rows. */
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < unused && i % 4 % 3 == 0; ++j)
      x[i * ldx + j] = j % 2 ? NAN : INFINITY;
  for (int64_t i = 0; i < m * ldy; ++i) y[i] = 1234.5f; /* sentinel */
  for (int64_t i = 0; i < n; ++i) bias[i] = rng_f32();
  sk_set_num_threads(threads);
  const int rc = sk_linear_sell_f32(&s.w, m, x, ldx, use_bias ? bias : NULL,
                                    relu ? SK_ACT_RELU : SK_ACT_NONE, y, ldy);
  CHECK(rc == SK_OK, "rc %d", rc);
  int bad_out = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t r = 0; r < n; ++r) {
      double ref = use_bias ? bias[r] : 0.0, mag = fabs(ref);
      for (int64_t p = c.indptr[r]; p < c.indptr[r + 1]; ++p) {
        const int64_t j = ib == 2 ? ((uint16_t *)c.indices)[p] : ((int32_t *)c.indices)[p];
        ref += (double)c.values[p] * x[i * ldx + j];
        mag += fabs((double)c.values[p] * x[i * ldx + j]);
      }
      if (relu && ref < 0) ref = 0;
      const float got = y[i * ldy + r];
      if (isinf(ref) ? got != ref : !(fabs(got - ref) <= 1e-5 * mag + 1e-6)) ++bad_out;
    }
  for (int64_t i = 0; i < m; ++i) /* the stride gap stays untouched */
    for (int64_t r = n; r < ldy && i * ldy + r < m * ldy; ++r)
      if (y[i * ldy + r] != 1234.5f) ++bad_out;
  CHECK(bad_out == 0, "isa %s m=%lld n=%lld k=%lld d=%.2f ib=%d bias=%d relu=%d t=%d unused=%lld: %d bad",
        sk_isa_name((sk_isa)isa), (long long)m, (long long)n, (long long)k, density, ib,
        use_bias, relu, threads, (long long)unused, bad_out);
  free(x); free(y); free(bias);
  free_sell(&s); free_csr(&c);
}

/* Every kind of corruption the validator must catch, on a valid base. */
static void test_validate(void) {
  csr c = make_csr(37, 70, 0.3, 2, 0);
  sell s = make_sell(&c);
  int64_t bad;
  CHECK(sk_sell_f32_validate(&s.w, &bad) == SK_OK, "base valid");
  CHECK(sk_sell_f32_validate(NULL, NULL) == SK_ERR_ARGUMENT, "null");
  int64_t g = s.group_ptr[1] + 1; /* a group of slice 1 */
  /* an empty slot with a nonzero value */
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 4; ++j)
      if (!((s.index[g * 16 + i] >> (8 * j)) & 0x80)) {
        float keep = s.values[(g * 4 + j) * 16 + i];
        s.values[(g * 4 + j) * 16 + i] = 1.0f;
        CHECK(sk_sell_f32_validate(&s.w, &bad) == SK_ERR_FORMAT && bad == g, "empty slot value");
        s.values[(g * 4 + j) * 16 + i] = keep;
        uint32_t w0 = s.index[g * 16 + i];
        s.index[g * 16 + i] |= 3u << (8 * j); /* offset without the used bit */
        CHECK(sk_sell_f32_validate(&s.w, &bad) == SK_ERR_FORMAT && bad == g, "empty slot index");
        s.index[g * 16 + i] = w0;
        i = 16;
        break;
      }
  /* a used slot: column past K, bits 5-6, infinity, columns out of order */
  const uint32_t w0 = s.index[g * 16];
  const int64_t c0 = s.window[g];
  CHECK(w0 & 0x80, "lane 0 step 0 used");
  s.index[g * 16] = w0 | 0x40;
  CHECK(sk_sell_f32_validate(&s.w, &bad) == SK_ERR_FORMAT, "bits 5-6");
  s.index[g * 16] = w0;
  s.values[g * 64] = INFINITY;
  CHECK(sk_sell_f32_validate(&s.w, &bad) == SK_ERR_FORMAT, "inf value");
  s.values[g * 64] = 1.0f;
  s.window[g] = (uint32_t)(70 - 31);
  CHECK(sk_sell_f32_validate(&s.w, &bad) == SK_ERR_FORMAT, "window past K");
  s.window[g] = (uint32_t)c0;
  /* the same column twice in a lane (step 1 copies step 0) */
  if ((w0 >> 8) & 0x80) {
    s.index[g * 16] = (w0 & ~0xff00u) | ((w0 & 0xff) << 8);
    CHECK(sk_sell_f32_validate(&s.w, &bad) == SK_ERR_FORMAT && bad == g, "duplicate column");
    s.index[g * 16] = w0;
  }
  /* a lane past N in the last slice */
  const int64_t last = s.group_ptr[3] - 1; /* slice 2 holds rows 32..36 */
  s.index[last * 16 + 15] = 0x80;
  s.values[last * 64 + 15] = 1.0f;
  CHECK(sk_sell_f32_validate(&s.w, &bad) == SK_ERR_FORMAT && bad == last, "lane past N");
  s.index[last * 16 + 15] = 0;
  s.values[last * 64 + 15] = 0.0f;
  /* group_ptr decreasing */
  const int64_t keep = s.group_ptr[1];
  s.group_ptr[1] = s.group_ptr[2] + 1;
  CHECK(sk_sell_f32_validate(&s.w, &bad) == SK_ERR_FORMAT && bad == -1, "group_ptr");
  s.group_ptr[1] = keep;
  CHECK(sk_sell_f32_validate(&s.w, &bad) == SK_OK, "restored");
  free_sell(&s);
  free_csr(&c);
}

/* The greedy layout: a window at the row's first column, moved down to K - 32. */
static void test_layout(void) {
  int64_t indptr[2] = {0, 3};
  uint16_t cols[3] = {5, 6, 60};
  float vals[3] = {1, 2, 3};
  sk_csr_f32 w = {1, 64, indptr, cols, 2, vals};
  CHECK(sk_sell_f32_count_groups(&w) == 2, "groups");
  int64_t gp[2];
  uint32_t win[2], idx[32];
  float v[128];
  CHECK(sk_sell_f32_from_csr(&w, gp, win, idx, v) == SK_OK, "build");
  CHECK(gp[0] == 0 && gp[1] == 2 && win[0] == 5 && win[1] == 32, "windows %u %u", win[0], win[1]);
  CHECK(idx[0] == (0x80u | (0x81u << 8)) && idx[16] == (0x80u | 28u), "index %x %x", idx[0], idx[16]);
  CHECK(v[0] == 1 && v[16] == 2 && v[64] == 3 && v[1] == 0, "values");
}

int main(void) {
  static const int64_t ms[] = {1, 2, 3, 4, 5, 7, 9};
  static const int64_t ns[] = {1, 15, 16, 17, 33, 70};
  static const int64_t ks[] = {1, 5, 31, 32, 33, 100};
  static const double densities[] = {0.0, 0.1, 0.5, 1.0};
  test_layout();
  test_validate();
  FOR_EACH_ISA(isa) {
    CHECK(sk_family_isa("spmv_sell_f32") >= 0, "family isa");
    /* every ISA with a kernel runs its own (AVX-512 VNNI runs AVX-512's) */
    if (isa == SK_ISA_SCALAR || isa == SK_ISA_AVX2 || isa == SK_ISA_AVX512 || isa == SK_ISA_NEON)
      CHECK(sk_family_isa("spmv_sell_f32") == isa, "isa %s runs %d", sk_isa_name((sk_isa)isa),
            sk_family_isa("spmv_sell_f32"));
    for (size_t a = 0; a < sizeof ms / sizeof *ms; ++a)
      for (size_t b = 0; b < sizeof ns / sizeof *ns; ++b)
        for (size_t c = 0; c < sizeof ks / sizeof *ks; ++c)
          for (size_t d = 0; d < sizeof densities / sizeof *densities; ++d) {
            const int v = (int)(a + b + c + d);
            run_case(isa, ms[a], ns[b], ks[c], densities[d], v % 2 ? 2 : 4, v % 3 != 0, v % 2,
                     1, ks[c] > 3 && v % 4 == 0 ? 3 : 0);
          }
    run_case(isa, 1, 3000, 700, 0.1, 2, 1, 0, 2, 0); /* big enough to thread */
    run_case(isa, 3, 3000, 700, 0.1, 4, 1, 1, 2, 40);
    run_case(isa, 8, 100, 3072, 0.3, 2, 0, 1, 2, 0);
    run_case(isa, 7, 200, 300, 0.2, 2, 1, 0, 1, 20); /* K small next to the groups */
    run_case(isa, 0, 10, 10, 0.5, 2, 1, 1, 1, 0);
  }
  return sk_test_finish("test_spmv_sell_f32");
}
