/*
 * spmm_u8s8/driver_common.c - the thread scaffold of both sparse int8 drivers
 * (see driver_common.h).
 */
#include "driver_common.h"

#ifdef _OPENMP
#include <omp.h>
#endif

int sk_u8_split(const int64_t *indptr, int64_t n, int64_t row_cost, double work,
                int64_t *bounds) {
  int nt = sk_threads_for_work(work);
  if (nt > SK_MAX_THREADS) nt = SK_MAX_THREADS;
  if (nt > n) nt = (int)n;
  sk_split_rows(indptr, n, row_cost, nt, bounds);
  return nt;
}

void sk_u8_spmv_run(sk_spmm_u8s8_fn spmv, const sk_spmm_u8s8_tile *base, int nt,
                    const int64_t *bounds) {
  if (nt == 1) {
    spmv(base, bounds[0], bounds[1]);
    return;
  }
  const int64_t t0 = sk_region_begin(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
  {
    sk_worker_check_in(t0);
#ifdef _OPENMP
    const int t = omp_get_thread_num();
#else
    const int t = 0;
#endif
    spmv(base, bounds[t], bounds[t + 1]);
  }
}

int sk_u8_entry_s32(const void *w, int64_t k, int64_t n, sk_u8_source_fn run, int64_t m,
                    const uint8_t *xq, int64_t ldx, const int32_t *zero_point,
                    int zp_per_row, int32_t *y, int64_t ldy) {
  const int rc = sk_u8_source_check(m, k, xq, ldx, zero_point, zp_per_row, y, ldy, n);
  if (rc != SK_OK) return rc;
  if (m == 0 || n == 0) return SK_OK;
  const sk_u8_source s = {xq, ldx, zero_point, zp_per_row, NULL, NULL};
  return run(w, m, &s, NULL, NULL, SK_ACT_NONE, y, ldy);
}

int sk_u8_check_f32(int64_t k, int64_t n, const float *wscale, int64_t m, const float *x,
                    int64_t ldx, sk_activation act, const float *y, int64_t ldy) {
  if (m < 0 || (m > 0 && (x == NULL || y == NULL)) || (n > 0 && wscale == NULL))
    return SK_ERR_ARGUMENT;
  if (ldx < k || ldy < n) return SK_ERR_ARGUMENT;
  if (act != SK_ACT_NONE && act != SK_ACT_RELU) return SK_ERR_ARGUMENT;
  return SK_OK;
}

static int64_t tile_m0(const sk_u8_tiles *p, int64_t i) {
  return i < p->nbig ? i * p->MR : p->nbig * p->MR + (i - p->nbig) * p->MS;
}

int sk_u8_tiles_run(const sk_u8_tiles *p, const sk_u8_source *s,
                    const sk_spmm_u8s8_tile *base, int nt, const int64_t *bounds) {
  const int64_t m = p->m, rows_alloc = tile_m0(p, p->tiles); /* >= m, padded rows */
  uint8_t *xp = (uint8_t *)sk_aligned_alloc(p->scratch_bytes);
  int32_t *zp;
  float *xs;
  if (xp == NULL || sk_u8_source_row_params(s, m, rows_alloc, &zp, &xs) != SK_OK) {
    sk_aligned_free(xp);
    return SK_ERR_NOMEM;
  }
  /* tile i covers rows [m0, m0 + mr) of X and rows [m0, m0 + R) of the
   * scratch (R = its MR); row r of the scratch is X's row r. */
  int bad = 0;
  const int64_t t0 = sk_region_begin(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
  {
    sk_worker_check_in(t0);
#ifdef _OPENMP
    const int t = omp_get_thread_num();
#pragma omp for schedule(static) reduction(| : bad)
#else
    const int t = 0;
#endif
    for (int64_t i = 0; i < p->tiles; ++i) {
      const int R = i < p->nbig ? p->MR : p->MS;
      const int64_t m0 = tile_m0(p, i), mr = m - m0 < R ? m - m0 : R;
      bad |= p->pack(p->ctx, s, m0, mr, R, xp + m0 * p->row_bytes, xp, zp, xs, t) != SK_OK;
    }
    /* the implicit barrier of `omp for` makes every tile (and bad) visible here */
    for (int64_t i = 0; i < p->tiles && !bad; ++i) {
      const int R = i < p->nbig ? p->MR : p->MS;
      const int64_t m0 = tile_m0(p, i);
      sk_spmm_u8s8_tile tile = *base;
      tile.xp = xp + m0 * p->row_bytes;
      tile.mr = m - m0 < R ? m - m0 : R;
      tile.zp = zp + m0;
      tile.xscale = xs ? xs + m0 : NULL;
      tile.y = (char *)base->y + (size_t)(m0 * base->ldy) * 4;
      (i < p->nbig ? p->big : p->small)(&tile, bounds[t], bounds[t + 1]);
    }
  }
  sk_aligned_free(xp);
  sk_aligned_free(zp);
  sk_aligned_free(xs);
  return bad ? SK_ERR_NONFINITE : SK_OK;
}
