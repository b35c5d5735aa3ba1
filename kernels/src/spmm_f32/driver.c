/*
 * spmm_f32/driver.c - the loops around the fp32 CSR micro-kernels.
 *
 *   X[M,K] --pack--> xp tiles [K][MR], the last one [K][mr] (exactly one copy of X)
 *   W rows split into per-thread ranges of equal cost (nonzeros + per-row work)
 *   each thread: for every tile, micro-kernel over its rows -> Y[M,N]
 *
 * M == 1 skips packing and runs the spmv kernel straight on x.
 */
#include <string.h>

#include "../internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define SK_MAX_THREADS 256

int sk_csr_f32_validate(const sk_csr_f32 *w, int64_t *bad_row) {
  if (bad_row) *bad_row = -1;
  if (w == NULL || w->n < 0 || w->k < 0 || w->indptr == NULL) return SK_ERR_ARGUMENT;
  if (w->index_bytes != 2 && w->index_bytes != 4) return SK_ERR_ARGUMENT;
  if (w->index_bytes == 2 && w->k > 65536) return SK_ERR_FORMAT;
  if (w->indptr[0] != 0) {
    if (bad_row) *bad_row = 0;
    return SK_ERR_FORMAT;
  }
  for (int64_t n = 0; n < w->n; ++n) {
    const int64_t b = w->indptr[n], e = w->indptr[n + 1];
    int64_t prev = -1;
    int ok = e >= b;
    for (int64_t p = b; ok && p < e; ++p) {
      const int64_t c = w->index_bytes == 2 ? (int64_t)((const uint16_t *)w->indices)[p]
                                            : (int64_t)((const int32_t *)w->indices)[p];
      ok = c > prev && c < w->k;
      prev = c;
    }
    if (!ok) {
      if (bad_row) *bad_row = n;
      return SK_ERR_FORMAT;
    }
  }
  return SK_OK;
}

/* The portable packing: xp[kk * ld + i] = x[i * ldx + kk] for i < mr. */
static void pack_tile(const float *x, int64_t ldx, int64_t k, int64_t mr, int64_t ld,
                      float *xp) {
  for (int64_t i = 0; i < mr; ++i) {
    const float *row = x + i * ldx;
    for (int64_t kk = 0; kk < k; ++kk) xp[kk * ld + i] = row[kk];
  }
}

/* Split rows [0, n) into `parts` ranges of about equal cost, where row r
 * costs its nonzeros plus a constant for its output writes. */
static void split_rows(const int64_t *indptr, int64_t n, int parts, int64_t *bounds) {
  const int64_t row_cost = 8;
  const int64_t total = indptr[n] + row_cost * n;
  bounds[0] = 0;
  for (int p = 1; p < parts; ++p) {
    const int64_t target = total * p / parts;
    int64_t lo = bounds[p - 1], hi = n; /* first row r with cost(r) >= target */
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (indptr[mid] + row_cost * mid < target) lo = mid + 1; else hi = mid;
    }
    bounds[p] = lo;
  }
  bounds[parts] = n;
}

int sk_linear_csr_f32(const sk_csr_f32 *w, int64_t m, const float *x, int64_t ldx,
                      const float *bias, sk_activation act, float *y, int64_t ldy) {
  if (w == NULL || m < 0 || (m > 0 && (x == NULL || y == NULL))) return SK_ERR_ARGUMENT;
  if (ldx < w->k || ldy < w->n) return SK_ERR_ARGUMENT;
  if (act != SK_ACT_NONE && act != SK_ACT_RELU) return SK_ERR_ARGUMENT;
  if (m == 0 || w->n == 0) return SK_OK;

  const sk_spmm_f32_impl *impl = sk_spmm_f32_select();
  const int64_t nnz = w->indptr[w->n];
  int nt = sk_threads_for_work((double)(nnz + w->n) * (double)m);
  if (nt > SK_MAX_THREADS) nt = SK_MAX_THREADS;
  if (nt > w->n) nt = (int)w->n;
  int64_t bounds[SK_MAX_THREADS + 1];
  split_rows(w->indptr, w->n, nt, bounds);

  sk_spmm_f32_tile base = {w->indptr, w->indices, w->index_bytes, w->values,
                           x, 1, bias, act, y, ldy};
  if (m == 1) {
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
#ifdef _OPENMP
      const int t = omp_get_thread_num();
#else
      const int t = 0;
#endif
      impl->spmv(&base, bounds[t], bounds[t + 1]);
    }
    return SK_OK;
  }

  const int MR = impl->mr;
  const int64_t tiles = (m + MR - 1) / MR;
  float *xp = (float *)sk_aligned_alloc((size_t)(m * w->k) * sizeof(float));
  if (xp == NULL) return SK_ERR_NOMEM;

#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
  {
#ifdef _OPENMP
    const int t = omp_get_thread_num();
#pragma omp for schedule(static)
#else
    const int t = 0;
#endif
    for (int64_t i = 0; i < tiles; ++i) {
      const int64_t m0 = i * MR, mr = m - m0 < MR ? m - m0 : MR;
      float *tile = xp + m0 * w->k; /* full tiles before: MR*K floats each */
      if (impl->pack) impl->pack(x + m0 * ldx, ldx, w->k, mr, mr, tile);
      else pack_tile(x + m0 * ldx, ldx, w->k, mr, mr, tile);
    }
    /* the implicit barrier of `omp for` makes every tile visible here */
    for (int64_t i = 0; i < tiles; ++i) {
      sk_spmm_f32_tile tile = base;
      tile.xp = xp + i * MR * w->k; /* row stride MR, or mr when partial */
      tile.mr = m - i * MR < MR ? m - i * MR : MR;
      tile.y = y + i * MR * ldy;
      impl->spmm(&tile, bounds[t], bounds[t + 1]);
    }
  }
  sk_aligned_free(xp);
  return SK_OK;
}
