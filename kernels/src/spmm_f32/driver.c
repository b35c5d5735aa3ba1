/*
 * spmm_f32/driver.c - the loops around the fp32 CSR micro-kernels.
 *
 *   X[M,K] --pack--> xp tiles [K][MR], the last one [K][mr] (exactly one copy of X)
 *   threads: whole tiles per thread when there are enough (each packs its own
 *   and runs all of W over them), else W rows split into 4 chunks per thread
 *   of equal cost (nonzeros + per-row work), taken dynamically; a chunk runs
 *   the micro-kernel over its rows for every tile -> Y[M,N]
 *
 * One thread and a dense shared layout (chunk_rows, shared.h): pack every
 * tile first, then each chunk of W rows over all tiles.
 * M == 1 skips packing and runs the spmv kernel straight on x.
 * A weight's shared-column layout (shared.h), when given, rides along in the
 * tile for the kernels that read it (AVX-512); row chunks start at multiples
 * of 16, so they never split its groups of 4 rows.
 */

#include "../internal.h"
#include "shared.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define SK_CHUNKS_PER_THREAD 4

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

/* Tile i (rows [i*MR, i*MR + mr) of x): pack it if `pack`, then run the
 * micro-kernel over weight rows [n0, n1). */
static void run_tile(const sk_spmm_f32_impl *impl, const sk_spmm_f32_tile *base,
                     const float *x, int64_t ldx, int64_t k, int64_t m, int64_t i,
                     float *xp, int pack, int64_t n0, int64_t n1) {
  const int64_t MR = impl->mr, m0 = i * MR, mr = m - m0 < MR ? m - m0 : MR;
  float *packed = xp + m0 * k; /* full tiles before: MR*K floats each */
  if (pack) {
    if (impl->pack) impl->pack(x + m0 * ldx, ldx, k, mr, mr, packed);
    else pack_tile(x + m0 * ldx, ldx, k, mr, mr, packed);
  }
  if (n1 <= n0) return;
  sk_spmm_f32_tile tile = *base;
  tile.xp = packed; /* row stride MR, or mr when partial */
  tile.mr = mr;
  tile.y = base->y + m0 * base->ldy;
  impl->spmm(&tile, n0, n1);
}

int sk_linear_csr_f32(const sk_csr_f32 *w, int64_t m, const float *x, int64_t ldx,
                      const float *bias, sk_activation act, float *y, int64_t ldy) {
  return sk_linear_csr_f32_shared(w, NULL, m, x, ldx, bias, act, y, ldy);
}

int sk_linear_csr_f32_shared(const sk_csr_f32 *w, const sk_csr_f32_shared *s, int64_t m,
                             const float *x, int64_t ldx, const float *bias,
                             sk_activation act, float *y, int64_t ldy) {
  if (w == NULL || m < 0 || (m > 0 && (x == NULL || y == NULL))) return SK_ERR_ARGUMENT;
  if (s != NULL && (s->n != w->n || s->k != w->k || s->nnz != w->indptr[w->n] ||
                    w->index_bytes != 2))
    return SK_ERR_ARGUMENT;
  if (ldx < w->k || ldy < w->n) return SK_ERR_ARGUMENT;
  if (act != SK_ACT_NONE && act != SK_ACT_RELU) return SK_ERR_ARGUMENT;
  if (m == 0 || w->n == 0) return SK_OK;

  const sk_spmm_f32_impl *impl = sk_spmm_f32_select();
  const int64_t nnz = w->indptr[w->n];
  int nt = sk_threads_for_work((double)(nnz + w->n) * (double)m);
  if (nt > SK_MAX_THREADS) nt = SK_MAX_THREADS;
  if (nt > w->n) nt = (int)w->n;
  /* A few chunks per thread, taken dynamically: on a shared machine one
   * thread may start late or run slow, and the others then take its work. */
  int parts = nt > 1 ? nt * SK_CHUNKS_PER_THREAD : 1;
  if (parts > w->n) parts = (int)w->n;
  int64_t bounds[SK_MAX_THREADS * SK_CHUNKS_PER_THREAD + 1];
  sk_split_rows(w->indptr, w->n, 8 /* a row's output writes ~ 8 nonzeros */, parts, bounds);
  /* Chunks start at multiples of 16 rows, so their Y columns stay 64-byte
   * aligned (the AVX-512 write-out streams only aligned runs); an emptied
   * chunk just does nothing. */
  if (m > 1)
    for (int c = 1; c < parts; ++c) {
      int64_t b = (bounds[c] + 8) / 16 * 16;
      if (b > w->n) b = w->n;
      bounds[c] = b < bounds[c - 1] ? bounds[c - 1] : b;
    }

  sk_spmm_f32_tile base = {w->indptr, w->indices, w->index_bytes, w->values,
                           x, 1, bias, act, y, ldy, w->k, s};
  /* One thread runs without an OpenMP region: entering one costs more than a
   * tiny layer's whole kernel. */
  if (m == 1) {
    if (nt == 1) {
      impl->spmv(&base, 0, w->n);
      return SK_OK;
    }
    const int64_t t0 = sk_region_begin(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
      sk_worker_check_in(t0);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
      for (int c = 0; c < parts; ++c) impl->spmv(&base, bounds[c], bounds[c + 1]);
    }
    return SK_OK;
  }

  const int MR = impl->mr;
  const int64_t tiles = (m + MR - 1) / MR;
  float *xp = (float *)sk_aligned_alloc((size_t)(m * w->k) * sizeof(float));
  if (xp == NULL) return SK_ERR_NOMEM;

  /* Enough whole tiles for every thread: a thread packs its own tiles and
   * runs all of W over them (no barrier, each core's L2 holds only its tiles).
   * Otherwise pack first, then split W's rows. */
  const int by_tiles = nt > 1 && (tiles >= 4 * nt || (tiles % nt == 0 && m % MR == 0));
  if (nt == 1 && s != NULL && s->chunk_rows > 0 && tiles > 1) {
    /* a dense layout: each chunk of W rows over all tiles, so the chunk is
     * read from L3 once and from L2 by the other tiles (shared.h) */
    for (int64_t i = 0; i < tiles; ++i) run_tile(impl, &base, x, ldx, w->k, m, i, xp, 1, 0, 0);
    for (int64_t n0 = 0; n0 < w->n; n0 += s->chunk_rows) {
      const int64_t n1 = w->n - n0 < s->chunk_rows ? w->n : n0 + s->chunk_rows;
      for (int64_t i = 0; i < tiles; ++i) run_tile(impl, &base, x, ldx, w->k, m, i, xp, 0, n0, n1);
    }
  } else if (nt == 1) {
    for (int64_t i = 0; i < tiles; ++i) run_tile(impl, &base, x, ldx, w->k, m, i, xp, 1, 0, w->n);
  } else if (by_tiles) {
    const int64_t t0 = sk_region_begin(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
      sk_worker_check_in(t0);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
      for (int64_t i = 0; i < tiles; ++i) run_tile(impl, &base, x, ldx, w->k, m, i, xp, 1, 0, w->n);
    }
  } else {
    /* Packing is a small share of the work; doing it before the parallel
     * region saves a barrier, which costs a scheduler time slice when another
     * process holds the second core. */
    for (int64_t i = 0; i < tiles; ++i) run_tile(impl, &base, x, ldx, w->k, m, i, xp, 1, 0, 0);
    const int64_t t0 = sk_region_begin(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
      sk_worker_check_in(t0);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
      for (int c = 0; c < parts; ++c) {
        for (int64_t i = 0; i < tiles; ++i)
          run_tile(impl, &base, x, ldx, w->k, m, i, xp, 0, bounds[c], bounds[c + 1]);
      }
    }
  }
  sk_aligned_free(xp);
  return SK_OK;
}
