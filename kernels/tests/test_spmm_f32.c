/* C tests of sk_linear_csr_f32 against a double-precision reference loop, on
 * every ISA this CPU runs: tails in M/N/K, empty rows, density 0 and 1, both
 * index widths, bias and relu, strided x/y, 1 and 2 threads. M covers each
 * partial-tile width class (MR = 8 scalar, 32 AVX2 and AVX-512; partial tiles
 * of 1..MR-1 rows after 0..7 full ones); N crosses the 64-row write-out
 * blocks; K crosses the 8/16-column packing blocks. */
#include <math.h>
#include <string.h>

#include "test_util.h"
#include "spmm_f32/shared.h"

typedef struct {
  int64_t n, k, nnz;
  int64_t *indptr;
  void *indices;
  int index_bytes;
  float *values;
} csr;

static csr make_csr(int64_t n, int64_t k, double density, int index_bytes) {
  csr c = {n, k, 0, malloc((size_t)(n + 1) * 8), NULL, index_bytes, NULL};
  c.indices = malloc((size_t)(n * k + 1) * 4);
  c.values = malloc((size_t)(n * k + 1) * 4);
  c.indptr[0] = 0;
  for (int64_t r = 0; r < n; ++r) {
    const int empty_row = (r % 5) == 3; /* every 5th row empty */
    for (int64_t j = 0; j < k; ++j) {
      if (empty_row || (double)rng_u32() / 4294967296.0 >= density) continue;
      if (index_bytes == 2) ((uint16_t *)c.indices)[c.nnz] = (uint16_t)j;
      else ((int32_t *)c.indices)[c.nnz] = (int32_t)j;
      c.values[c.nnz++] = rng_f32();
    }
    c.indptr[r + 1] = c.nnz;
  }
  return c;
}

static void free_csr(csr *c) { free(c->indptr); free(c->indices); free(c->values); }

static int64_t col(const csr *c, int64_t p) {
  return c->index_bytes == 2 ? ((uint16_t *)c->indices)[p] : ((int32_t *)c->indices)[p];
}

/* aligned_y: Y 64-byte aligned with a row stride of a multiple of 16 floats
 * (the AVX-512 kernel then streams full 16-float runs past the caches). */
/* shared: through sk_linear_csr_f32_shared with the layout built (forced) */
static void run_case_y(int isa, int64_t m, int64_t n, int64_t k, double density, int ib,
                       int use_bias, int relu, int threads, int aligned_y, int shared) {
  csr c = make_csr(n, k, density, ib);
  const int64_t ldx = k + 3; /* strided rows */
  const int64_t ldy = aligned_y ? (n + 5 + 15) / 16 * 16 : n + 5;
  float *x = malloc((size_t)(m * ldx + 1) * 4);
  float *y = aligned_y ? aligned_alloc(64, (size_t)(m * ldy + 16) * 4)
                       : malloc((size_t)(m * ldy + 1) * 4);
  float *bias = malloc((size_t)(n + 1) * 4);
  for (int64_t i = 0; i < m * ldx; ++i) x[i] = rng_f32();
  for (int64_t i = 0; i < m * ldy; ++i) y[i] = 1234.5f; /* sentinel */
  for (int64_t i = 0; i < n; ++i) bias[i] = rng_f32();
  sk_csr_f32 w = {n, k, c.indptr, c.indices, ib, c.values};
  CHECK(sk_csr_f32_validate(&w, NULL) == SK_OK, "validate");
  sk_set_num_threads(threads);
  sk_csr_f32_shared *s = shared ? sk_csr_f32_shared_build(&w, 1) : NULL;
  CHECK(!shared || (s != NULL) == (ib == 2 && n > 0 && k > 0), "shared build");
  int rc = sk_linear_csr_f32_shared(&w, s, m, x, ldx, use_bias ? bias : NULL,
                                    relu ? SK_ACT_RELU : SK_ACT_NONE, y, ldy);
  CHECK(rc == SK_OK, "rc=%d", rc);
  sk_csr_f32_shared_free(s);
  int bad = 0;
  for (int64_t i = 0; i < m && !bad; ++i) {
    for (int64_t r = 0; r < ldy; ++r) {
      float got = y[i * ldy + r];
      if (r >= n) { /* padding must be untouched */
        if (got != 1234.5f) bad = 1;
        continue;
      }
      double ref = use_bias ? bias[r] : 0.0, mag = fabs(ref);
      for (int64_t p = c.indptr[r]; p < c.indptr[r + 1]; ++p) {
        ref += (double)c.values[p] * x[i * ldx + col(&c, p)];
        mag += fabs((double)c.values[p] * x[i * ldx + col(&c, p)]);
      }
      if (relu && ref < 0) ref = 0;
      if (fabs(got - ref) > 1e-5 * (mag + 1.0)) bad = 1;
    }
  }
  CHECK(!bad, "isa=%s m=%lld n=%lld k=%lld density=%.2f ib=%d bias=%d relu=%d t=%d al=%d sh=%d",
        sk_isa_name((sk_isa)isa), (long long)m, (long long)n, (long long)k, density, ib,
        use_bias, relu, threads, aligned_y, shared);
  free(x); free(y); free(bias); free_csr(&c);
}

static void run_case(int isa, int64_t m, int64_t n, int64_t k, double density, int ib,
                     int use_bias, int relu, int threads) {
  run_case_y(isa, m, n, k, density, ib, use_bias, relu, threads, 0, 0);
  run_case_y(isa, m, n, k, density, ib, use_bias, relu, threads, 1, 0);
}

static void run_case_shared(int isa, int64_t m, int64_t n, int64_t k, double density,
                            int use_bias, int relu, int threads) {
  run_case_y(isa, m, n, k, density, 2, use_bias, relu, threads, 0, 1);
  run_case_y(isa, m, n, k, density, 2, use_bias, relu, threads, 1, 1);
}

/* The shared-column layout: every nonzero once, each kind of step present at
 * these densities (so the kernel's quad and pair paths run in the cases
 * below), built only where it is used unless forced, and a layout of
 * another weight rejected. */
static void test_shared_layout(void) {
  csr c = make_csr(70, 1000, 0.6, 2);
  sk_csr_f32 w = {70, 1000, c.indptr, c.indices, 2, c.values};
  sk_csr_f32_shared *s = sk_csr_f32_shared_build(&w, 1);
  /* dense (>= 17%): panels of <= 320 columns, W run in row chunks */
  CHECK(s != NULL && s->panels == 4 && s->groups == 18 && s->chunk_rows == SK_SHARED_CHUNK_ROWS,
        "layout shape");
  /* the steps put back where they belong give W: every nonzero once */
  static const int pair_rows[3][4] = {{0, 1, 2, 3}, {0, 2, 1, 3}, {0, 3, 1, 2}};
  float *back = calloc((size_t)(72 * 1000), sizeof(float));
  int64_t quads = 0, pairs = 0, singles = 0, wi = 0, ci = 0, twice = 0;
#define PUT(row, col, v)                                                        \
  do {                                                                          \
    float *b_ = &back[(row) * 1000 + (col)];                                    \
    twice += *b_ != 0.0f;                                                       \
    *b_ = (v);                                                                  \
  } while (0)
  for (int64_t g = 0; g < s->groups; ++g) {
    CHECK(s->wstart[g] == wi && s->cstart[g] == ci, "group starts");
    for (int64_t pi = 0; pi < s->panels; ++pi) {
      const uint16_t *cnt = s->cnt + (g * s->panels + pi) * 8;
      const int64_t k0 = pi * s->kb, k1 = k0 + s->kb;
      for (int q = 0; q < cnt[0]; ++q, wi += 4, ++ci, ++quads)
        for (int r = 0; r < 4; ++r) PUT(4 * g + r, s->c[ci], s->w[wi + r]);
      for (int m = 0; m < 3; ++m)
        for (int q = 0; q < cnt[1 + m]; ++q, wi += 4, ci += 2, ++pairs)
          for (int h = 0; h < 4; ++h)
            PUT(4 * g + pair_rows[m][h], s->c[ci + h / 2], s->w[wi + pair_rows[m][h]]);
      for (int r = 0; r < 4; ++r)
        for (int q = 0; q < cnt[4 + r]; ++q, ++wi, ++ci, ++singles) {
          CHECK(s->c[ci] >= k0 && s->c[ci] < k1, "column in its panel");
          PUT(4 * g + r, s->c[ci], s->w[wi]);
        }
    }
  }
#undef PUT
  CHECK(s->wstart[s->groups] == wi && s->cstart[s->groups] == ci, "lengths");
  int same = twice == 0;
  for (int64_t r = 0; r < 70; ++r)
    for (int64_t p = c.indptr[r]; p < c.indptr[r + 1]; ++p) {
      const int64_t j = ((uint16_t *)c.indices)[p];
      same &= back[r * 1000 + j] == c.values[p];
      back[r * 1000 + j] = 0;
    }
  for (int64_t i = 0; i < 72 * 1000; ++i) same &= back[i] == 0;
  CHECK(same, "the layout puts back to W");
  free(back);
  CHECK(4 * quads + 4 * pairs + singles == c.nnz, "every nonzero once");
  CHECK(quads > 0 && pairs > 0 && singles > 0, "all kinds of steps");
  CHECK(sk_csr_f32_shared_nbytes(s) >= 4 * c.nnz, "nbytes");
  float x[1000] = {0}, y[70];
  sk_csr_f32 other = w;
  other.n = 69;
  CHECK(sk_linear_csr_f32_shared(&other, s, 1, x, 1000, NULL, SK_ACT_NONE, y, 70) ==
            SK_ERR_ARGUMENT, "layout of another weight");
  sk_csr_f32_shared_free(s);
  free_csr(&c);
  c = make_csr(70, 1000, 0.3, 2); /* 24% dense (every 5th row empty) */
  w.indptr = c.indptr, w.indices = c.indices, w.values = c.values;
  s = sk_csr_f32_shared_build(&w, 0);
  CHECK((s != NULL) == (sk_cpu_supports(SK_ISA_AVX512) != 0), "built where used");
  sk_csr_f32_shared_free(s);
  free_csr(&c);
  c = make_csr(70, 1000, 0.05, 2);
  w.indptr = c.indptr, w.indices = c.indices, w.values = c.values;
  CHECK(sk_csr_f32_shared_build(&w, 0) == NULL, "too sparse: not built");
  s = sk_csr_f32_shared_build(&w, 1); /* forced, sparse: 384-column panels, tile by tile */
  CHECK(s != NULL && s->panels == 3 && s->chunk_rows == 0, "sparse layout shape");
  sk_csr_f32_shared_free(s);
  free_csr(&c);
  c = make_csr(70, 1000, 0.6, 2);
  w.indptr = c.indptr, w.indices = c.indices, w.values = c.values;
  CHECK(sk_csr_f32_shared_build(&w, 0) == NULL, "too dense: not built");
  free_csr(&c);
}

static void test_validate(void) {
  int64_t indptr[3] = {0, 2, 3};
  uint16_t idx[3] = {1, 1, 0}; /* row 0 has a duplicate */
  float vals[3] = {1, 2, 3};
  sk_csr_f32 w = {2, 4, indptr, idx, 2, vals};
  int64_t bad = -2;
  CHECK(sk_csr_f32_validate(&w, &bad) == SK_ERR_FORMAT && bad == 0, "duplicate");
  idx[1] = 4; /* out of range */
  CHECK(sk_csr_f32_validate(&w, &bad) == SK_ERR_FORMAT && bad == 0, "range");
  idx[1] = 2;
  CHECK(sk_csr_f32_validate(&w, &bad) == SK_OK, "valid");
  indptr[1] = 4; /* not monotone */
  CHECK(sk_csr_f32_validate(&w, &bad) == SK_ERR_FORMAT, "indptr");
}

int main(void) {
  static const int64_t ms[] = {1, 2, 7, 17, 31, 33, 50, 64, 65, 127, 130, 192};
  static const int64_t ns[] = {1, 3, 16, 17, 40, 70, 129};
  static const int64_t ks[] = {1, 5, 31, 100};
  static const double densities[] = {0.0, 0.1, 0.5, 1.0};
  test_validate();
  test_shared_layout();
  CHECK(sk_set_isa((sk_isa)99) == SK_ERR_ARGUMENT, "bad isa");
  FOR_EACH_ISA(isa) {
    CHECK(sk_family_isa("spmm_f32") >= 0, "family isa");
    for (size_t a = 0; a < sizeof ms / sizeof *ms; ++a)
      for (size_t b = 0; b < sizeof ns / sizeof *ns; ++b)
        for (size_t c = 0; c < sizeof ks / sizeof *ks; ++c)
          for (size_t d = 0; d < sizeof densities / sizeof *densities; ++d) {
            const int v = (int)(a + b + c + d);
            run_case(isa, ms[a], ns[b], ks[c], densities[d], v % 2 ? 2 : 4, v % 3 != 0,
                     v % 2, 1 + (v % 2));
          }
    run_case(isa, 200, 3000, 700, 0.1, 2, 1, 1, 2); /* big enough to thread */
    run_case(isa, 255, 700, 300, 0.2, 4, 0, 1, 2);  /* full tiles + a partial one */
    run_case(isa, 128, 700, 300, 0.2, 2, 1, 0, 2);  /* threads split whole tiles */
    run_case(isa, 261, 700, 300, 0.2, 2, 1, 1, 2);  /* ... with a partial last tile */
    run_case(isa, 1, 3000, 700, 0.1, 4, 1, 0, 2);
    /* Y rows >= 128 KiB per tile: the AVX-512 write-out streams (aligned Y) */
    run_case(isa, 64, 1100, 600, 0.1, 2, 0, 0, 1);
    run_case(isa, 40, 1030, 100, 0.3, 2, 1, 1, 2);
    /* K longer than the AVX-512 kernel's K panel (512): several panels, each
     * row resumed where the last one stopped; dense rows fill every panel */
    run_case(isa, 45, 70, 1300, 0.05, 2, 1, 1, 1);
    run_case(isa, 64, 70, 1300, 1.0, 4, 0, 0, 1);
    run_case(isa, 33, 17, 2049, 0.3, 2, 1, 0, 2);
    /* The AVX-512 GROUP4 panels (K > 512 and >= 25-45 nonzeros per row and
     * 320-column panel): four rows in lock step (then 1-3 single rows:
     * N = 67), with partial tiles of 18 and 16 rows, both index widths,
     * dense rows, and rows of very different lengths; then K > 1024 too
     * sparse for them (the per-row kernel) */
    run_case(isa, 50, 67, 1500, 0.1, 4, 1, 1, 1);
    run_case(isa, 80, 67, 1500, 0.1, 2, 0, 0, 1);
    run_case(isa, 96, 66, 1100, 1.0, 4, 1, 0, 2);
    run_case(isa, 32, 65, 3000, 0.1, 2, 1, 1, 1);
    run_case(isa, 32, 65, 3000, 0.01, 2, 1, 1, 1);
    run_case(isa, 45, 67, 700, 0.4, 4, 1, 0, 1);
    run_case(isa, 64, 30, 1000, 0.3, 2, 0, 1, 1);
    /* The shared-column layout (AVX-512 reads it, the others ignore it):
     * groups of 4 rows with 1-3 rows left (N), blocks of 64 rows, row chunks
     * of 2 threads, one or several panels (<= 384 columns, <= 320 from 17%
     * density), partial tiles of both
     * widths, density 0 to 1 (1: every column a quad step) */
    {
      static const int64_t sm[] = {1, 2, 17, 32, 33, 70};
      static const int64_t sn[] = {1, 6, 67, 130};
      static const int64_t sk[] = {1, 100, 385, 1000};
      static const double sd[] = {0.0, 0.3, 1.0};
      for (size_t a = 0; a < sizeof sm / sizeof *sm; ++a)
        for (size_t b = 0; b < sizeof sn / sizeof *sn; ++b)
          for (size_t c = 0; c < sizeof sk / sizeof *sk; ++c)
            for (size_t d = 0; d < sizeof sd / sizeof *sd; ++d) {
              const int v = (int)(a + b + c + d);
              run_case_shared(isa, sm[a], sn[b], sk[c], sd[d], v % 2, v % 3 == 0, 1 + (v % 2));
            }
      run_case_shared(isa, 130, 3000, 700, 0.3, 1, 1, 2); /* threads split rows */
      run_case_shared(isa, 128, 1030, 800, 0.2, 1, 0, 2); /* ... or whole tiles; streamed Y */
      /* 1 thread, dense layout: chunks of 128 rows (the last short) over
       * all tiles, the last one partial; 3 panels of <= 320 columns */
      run_case_shared(isa, 100, 300, 700, 0.3, 1, 1, 1);
      run_case_shared(isa, 70, 260, 385, 0.2, 0, 0, 1);
    }
  }
  return sk_test_finish("test_spmm_f32");
}
