/*
 * spmm_u8s8/driver_common.h - the thread scaffold both sparse int8 drivers
 * share (driver.c: 1x4 blocks, driver_g4.c: groups of 4). Each layout keeps
 * its own packer, tile sizes, kernels and stream_y choice; only the loops
 * around them live here.
 */
#ifndef SK_SPMM_U8S8_DRIVER_COMMON_H
#define SK_SPMM_U8S8_DRIVER_COMMON_H

#include "../internal.h"

/* Threads for `work` (at most n and SK_MAX_THREADS) and their ranges of W
 * rows of equal cost in bounds[0..nt]. */
int sk_u8_split(const int64_t *indptr, int64_t n, int64_t row_cost, double work,
                int64_t *bounds);

/* M == 1: spmv over thread t's rows [bounds[t], bounds[t + 1]); no parallel
 * region for one thread (it costs ~1 us at M == 1). */
void sk_u8_spmv_run(sk_spmm_u8s8_fn spmv, const sk_spmm_u8s8_tile *base, int nt,
                    const int64_t *bounds);

/* Packs rows [m0, m0 + mr) of s, padded to R rows, into xp on thread t;
 * `scratch` is the whole block (for a packer's per-thread rows behind the
 * tiles). fp32 rows put their zero points and scales into zp[m0..], xs[m0..].
 * SK_ERR_NONFINITE on NaN or infinity. */
typedef int (*sk_u8_pack_fn)(const void *ctx, const sk_u8_source *s, int64_t m0,
                             int64_t mr, int R, uint8_t *xp, uint8_t *scratch,
                             int32_t *zp, float *xs, int t);

/* The row tiles of an [m, K] source: nbig tiles of MR rows, then tiles of
 * MS rows; the tile at row m0 is packed at scratch + m0 * row_bytes. */
typedef struct {
  int64_t m, nbig, tiles;
  int MR, MS;
  int64_t row_bytes;
  size_t scratch_bytes; /* the tiles and whatever the packer keeps behind them */
  sk_spmm_u8s8_fn big, small; /* kernels of the MR-row and MS-row tiles */
  sk_u8_pack_fn pack;
  const void *ctx;
} sk_u8_tiles;

/* Allocates the scratch and the per-row parameters, packs every tile in
 * parallel, then runs each tile's kernel over every thread's W rows. */
int sk_u8_tiles_run(const sk_u8_tiles *p, const sk_u8_source *s,
                    const sk_spmm_u8s8_tile *base, int nt, const int64_t *bounds);

/* The int32 entry of a weight that passed its own check: u8 rows, zero
 * points and output checked, then run() (nothing to do for m == 0 or n == 0). */
int sk_u8_entry_s32(const void *w, int64_t k, int64_t n, sk_u8_source_fn run, int64_t m,
                    const uint8_t *xq, int64_t ldx, const int32_t *zero_point,
                    int zp_per_row, int32_t *y, int64_t ldy);

/* The float entry's argument checks (after the weight's own). */
int sk_u8_check_f32(int64_t k, int64_t n, const float *wscale, int64_t m, const float *x,
                    int64_t ldx, sk_activation act, const float *y, int64_t ldy);

#endif
