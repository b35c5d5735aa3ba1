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
/* From this density on the panels are at most SK_SHARED_KPANEL_DENSE columns
 * and the driver runs W in chunks of SK_SHARED_CHUNK_ROWS rows over all tiles
 * (chunk_rows): at 30% density W (~5.4 bytes per nonzero) is far larger than
 * L2, and tile by tile each tile streamed all of it from L3, where the many
 * short (group, panel) pieces of narrow panels each start a new stream. A
 * chunk's W (~160 KiB at K = 768) stays in L2 for the other tiles, and then
 * narrower panels (40 KiB of tile, which leaves L1 room for W and buf) pay.
 * Measured at M = 128, 30% density, tile kernel A/B: 5-7% on all three BERT /
 * MiniLM shapes; at 10% both changes were 2-9% slower, so not there. */
#define SK_SHARED_DENSE 0.17
#define SK_SHARED_KPANEL_DENSE 320
#define SK_SHARED_CHUNK_ROWS 128

struct sk_csr_f32_shared {
  int64_t n, k, nnz;
  int64_t groups, panels, kb;
  int64_t chunk_rows; /* > 0: the driver runs W rows in chunks of this many over all tiles */
  uint16_t *cnt;   /* [groups * panels][8], see above */
  int64_t *wstart; /* [groups + 1] */
  int64_t *cstart; /* [groups + 1] */
  float *w;        /* nnz */
  uint16_t *c;     /* cstart[groups] */
};

#endif
