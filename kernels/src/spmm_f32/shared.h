/*
 * spmm_f32/shared.h - the shared-column layout of a CSR weight (built by
 * shared.c, read by the AVX-512 tile kernel).
 *
 * Rows in groups of 4 (4g .. 4g+3), K in panels of kb columns. Per (group,
 * panel), in this order in w (weights) and c (columns):
 *   cnt[0] quad steps:  1 column used by all 4 rows, 4 weights (rows 0-3)
 *   cnt[1..3] pair steps of matching m (rows {0,1}|{2,3}, {0,2}|{1,3},
 *       {0,3}|{1,2}): 2 columns, the first used by the first pair, the
 *       second by the other; 4 weights in row order
 *   cnt[4..7] single nonzeros of rows 0-3, each row's sorted by column:
 *       1 column and 1 weight each
 * Every nonzero appears once, so w holds nnz floats and c at most nnz
 * columns. A group's panels follow one another; wstart / cstart give where
 * each group begins.
 */
#ifndef SK_SPMM_F32_SHARED_H
#define SK_SPMM_F32_SHARED_H

#include "../internal.h"

#ifndef SK_SHARED_KPANEL
#define SK_SHARED_KPANEL 384 /* widest panel: 48 KiB of a 32-row packed tile */
#endif

struct sk_csr_f32_shared {
  int64_t n, k, nnz;
  int64_t groups, panels, kb;
  uint16_t *cnt;   /* [groups * panels][8], see above */
  int64_t *wstart; /* [groups + 1] */
  int64_t *cstart; /* [groups + 1] */
  float *w;        /* nnz */
  uint16_t *c;     /* cstart[groups] */
};

#endif
