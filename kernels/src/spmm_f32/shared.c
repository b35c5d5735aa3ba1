/*
 * spmm_f32/shared.c - builds the shared-column layout (shared.h) of a CSR
 * weight, once per weight.
 *
 * Why: the AVX-512 tile kernel loads the 32-row column of packed X for every
 * nonzero, and those 64-byte loads (~1.15 per cycle on Zen 5), not the FMAs,
 * bound it. Within a group of 4 rows a column that 2-4 of the rows use can
 * be loaded once and FMA'd into each of them. At 30% density that cuts the
 * loads per nonzero to ~0.7 and made the kernel 15-30% faster (M = 128); at
 * 10% it was 10-12% faster for K >= 768 but would double the bytes of a
 * 90%-sparse weight (issue 2 caps it at 0.65 per dense weight), so the layout
 * is built only from SK_SHARED_MIN_DENSITY to SK_SHARED_MAX_DENSITY.
 *
 * Per (group, panel), each column in use gets its set of rows:
 *   4 rows  -> a quad step;
 *   2 rows  -> the pair's list;
 *   3 rows  -> one of its 3 pairs + a single for the third row, the pair
 *              chosen to even out the two sides of its matching;
 *   1 row   -> a single.
 * Each matching ({0,1}|{2,3}, ...) then pairs its two lists step by step;
 * the longer list's leftover columns become singles of both rows.
 */
#include <stdlib.h>
#include <string.h>

#include "shared.h"

#define SK_SHARED_MIN_DENSITY 0.17
/* K > 512 (several panels: the plain kernel's GROUP4 path or wide panels) it
 * gains from 5% density on: measured 4-13% on 3072x768 / 768x3072 at 5-10%,
 * while K = 384 at 5-10% lost 3-10% (its one-panel kernel is faster there). */
#define SK_SHARED_MIN_DENSITY_WIDE_K 0.05
/* Above this the weight with its layout (~11.5 bytes per nonzero) would take
 * more bytes than the dense fp32 array: not built. */
#define SK_SHARED_MAX_DENSITY 0.35

/* pair id of rows a < b: (0,1) 0, (0,2) 1, (0,3) 2, (1,2) 3, (1,3) 4, (2,3) 5 */
static const int PAIR_ID[4][4] = {{-1, 0, 1, 2}, {0, -1, 3, 4}, {1, 3, -1, 5}, {2, 4, 5, -1}};
static const int PAIR_ROWS[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
static const int PARTNER[6] = {5, 4, 3, 2, 1, 0}; /* the pair of the other two rows */
/* matching m: its first pair (rows 0 and m + 1) and the other pair */
static const int MATCH_A[3] = {0, 1, 2};

void sk_csr_f32_shared_free(sk_csr_f32_shared *s) {
  if (s == NULL) return;
  free(s->cnt);
  free(s->wstart);
  free(s->cstart);
  free(s->w);
  free(s->c);
  free(s);
}

int64_t sk_csr_f32_shared_nbytes(const sk_csr_f32_shared *s) {
  if (s == NULL) return 0;
  return (int64_t)sizeof(*s) + s->groups * s->panels * 8 * 2 + 2 * (s->groups + 1) * 8 +
         s->nnz * 4 + s->cstart[s->groups] * 2;
}

/* The columns [k0, k1) of rows 4g.. (their nonzeros in wd, row r at wd[r*k],
 * the rows using column c in mask[c]) appended to s as one (group, panel). */
static void build_panel(sk_csr_f32_shared *s, int64_t gp, int64_t k0, int64_t k1,
                        const float *wd, uint8_t *mask, uint8_t *single, int32_t *lists,
                        int64_t *wn, int64_t *cn) {
  const int64_t k = s->k, kb = s->kb;
  int32_t *pl[6], *ql = lists + 6 * kb;
  int64_t pn[6] = {0}, nq = 0;
  for (int i = 0; i < 6; ++i) pl[i] = lists + i * kb;
  for (int64_t c = k0; c < k1; ++c) {
    const int m = mask[c], pc = __builtin_popcount((unsigned)m);
    single[c] = 0;
    if (pc == 1) {
      single[c] = (uint8_t)m;
    } else if (pc == 4) {
      ql[nq++] = (int32_t)c;
    } else if (pc == 2) {
      const int id = PAIR_ID[__builtin_ctz((unsigned)m)][31 - __builtin_clz((unsigned)m)];
      pl[id][pn[id]++] = (int32_t)c;
    }
  }
  for (int64_t c = k0; c < k1; ++c) { /* triples, in column order */
    const int m = mask[c];
    if (__builtin_popcount((unsigned)m) != 3) continue;
    int best = -1, third = -1;
    int64_t best_gap = INT64_MIN;
    for (int a = 0; a < 4; ++a)
      for (int b = a + 1; b < 4; ++b) {
        if (!((m >> a) & (m >> b) & 1)) continue;
        const int id = PAIR_ID[a][b];
        const int64_t gap = pn[PARTNER[id]] - pn[id];
        if (gap > best_gap) {
          best_gap = gap;
          best = id;
          third = __builtin_ctz((unsigned)(m & ~(1 << a) & ~(1 << b)));
        }
      }
    pl[best][pn[best]++] = (int32_t)c;
    single[c] = (uint8_t)(1 << third);
  }
  uint16_t *cnt = s->cnt + gp * 8;
  cnt[0] = (uint16_t)nq;
  for (int64_t i = 0; i < nq; ++i) {
    for (int r = 0; r < 4; ++r) s->w[(*wn)++] = wd[r * k + ql[i]];
    s->c[(*cn)++] = (uint16_t)ql[i];
  }
  for (int mm = 0; mm < 3; ++mm) {
    const int ia = MATCH_A[mm], ib = PARTNER[ia];
    const int64_t steps = pn[ia] < pn[ib] ? pn[ia] : pn[ib];
    cnt[1 + mm] = (uint16_t)steps;
    for (int64_t i = 0; i < steps; ++i) {
      float ws[4];
      for (int h = 0; h < 2; ++h) {
        ws[PAIR_ROWS[ia][h]] = wd[PAIR_ROWS[ia][h] * k + pl[ia][i]];
        ws[PAIR_ROWS[ib][h]] = wd[PAIR_ROWS[ib][h] * k + pl[ib][i]];
      }
      memcpy(s->w + *wn, ws, sizeof ws);
      *wn += 4;
      s->c[(*cn)++] = (uint16_t)pl[ia][i];
      s->c[(*cn)++] = (uint16_t)pl[ib][i];
    }
    for (int side = 0; side < 2; ++side) { /* the longer list's rest: singles */
      const int id = side ? ib : ia;
      for (int64_t i = steps; i < pn[id]; ++i)
        single[pl[id][i]] |= (uint8_t)((1 << PAIR_ROWS[id][0]) | (1 << PAIR_ROWS[id][1]));
    }
  }
  for (int r = 0; r < 4; ++r) {
    int64_t ns = 0;
    for (int64_t c = k0; c < k1; ++c)
      if ((single[c] >> r) & 1) {
        s->w[(*wn)++] = wd[r * k + c];
        s->c[(*cn)++] = (uint16_t)c;
        ++ns;
      }
    cnt[4 + r] = (uint16_t)ns;
  }
}

sk_csr_f32_shared *sk_csr_f32_shared_build(const sk_csr_f32 *w, int force) {
  if (sk_csr_f32_validate(w, NULL) != SK_OK || w->index_bytes != 2 || w->n == 0 || w->k == 0)
    return NULL;
  const int64_t n = w->n, k = w->k, nnz = w->indptr[n];
  if (!force) {
#ifdef SK_ARCH_X86
    if (!sk_cpu_supports(SK_ISA_AVX512)) return NULL;
#else
    return NULL; /* only the AVX-512 kernel reads it */
#endif
    const double density = (double)nnz / ((double)n * (double)k);
    const double lo = k > 512 ? SK_SHARED_MIN_DENSITY_WIDE_K : SK_SHARED_MIN_DENSITY;
    if (density < lo || density > SK_SHARED_MAX_DENSITY) return NULL;
  }
  sk_csr_f32_shared *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  s->n = n;
  s->k = k;
  s->nnz = nnz;
  s->groups = (n + 3) / 4;
  const int dense = (double)nnz >= SK_SHARED_DENSE * (double)n * (double)k;
  const int64_t kpanel = dense ? SK_SHARED_KPANEL_DENSE : SK_SHARED_KPANEL;
  s->chunk_rows = dense ? SK_SHARED_CHUNK_ROWS : 0;
  s->panels = (k + kpanel - 1) / kpanel;
  s->kb = (k + s->panels - 1) / s->panels;
  s->cnt = malloc((size_t)(s->groups * s->panels * 8) * sizeof(uint16_t));
  s->wstart = malloc((size_t)(s->groups + 1) * sizeof(int64_t));
  s->cstart = malloc((size_t)(s->groups + 1) * sizeof(int64_t));
  s->w = malloc((size_t)(nnz > 0 ? nnz : 1) * sizeof(float));
  s->c = malloc((size_t)(nnz > 0 ? nnz : 1) * sizeof(uint16_t));
  float *wd = calloc((size_t)(4 * k), sizeof(float)); /* the group's rows, dense */
  uint8_t *mask = calloc((size_t)k, 1), *single = calloc((size_t)k, 1);
  int32_t *lists = malloc((size_t)(7 * s->kb) * sizeof(int32_t));
  if (!s->cnt || !s->wstart || !s->cstart || !s->w || !s->c || !wd || !mask || !single ||
      !lists) {
    free(wd), free(mask), free(single), free(lists);
    sk_csr_f32_shared_free(s);
    return NULL;
  }
  const uint16_t *idx = (const uint16_t *)w->indices;
  int64_t wn = 0, cn = 0;
  for (int64_t g = 0; g < s->groups; ++g) {
    s->wstart[g] = wn;
    s->cstart[g] = cn;
    for (int r = 0; r < 4 && 4 * g + r < n; ++r)
      for (int64_t p = w->indptr[4 * g + r]; p < w->indptr[4 * g + r + 1]; ++p) {
        wd[r * k + idx[p]] = w->values[p];
        mask[idx[p]] |= (uint8_t)(1 << r);
      }
    for (int64_t pi = 0; pi < s->panels; ++pi) {
      const int64_t k0 = pi * s->kb, k1 = k0 + s->kb < k ? k0 + s->kb : k;
      build_panel(s, g * s->panels + pi, k0, k1, wd, mask, single, lists, &wn, &cn);
    }
    for (int r = 0; r < 4 && 4 * g + r < n; ++r)
      for (int64_t p = w->indptr[4 * g + r]; p < w->indptr[4 * g + r + 1]; ++p) {
        wd[r * k + idx[p]] = 0.0f;
        mask[idx[p]] = 0;
      }
  }
  s->wstart[s->groups] = wn;
  s->cstart[s->groups] = cn;
  free(wd), free(mask), free(single), free(lists);
  if (cn < nnz) { /* give back the columns that pairs and quads saved */
    uint16_t *c = realloc(s->c, (size_t)(cn > 0 ? cn : 1) * sizeof(uint16_t));
    if (c != NULL) s->c = c;
  }
  return s;
}
