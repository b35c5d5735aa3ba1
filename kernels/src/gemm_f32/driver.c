/*
 * gemm_f32/driver.c - packing and the loop around the dense fp32 tile kernels.
 * X is taken in blocks of rows whose packed copy fits ~64 KiB, and at least 12
 * rows (all of X for a transformer's few tokens at batch 1, also at K = 1536
 * with AVX2's 6-row tiles), so each weight panel (32 x K floats,
 * L2-sized) is read from memory once per block and the block stays in L1/L2
 * while every panel streams past it. Threads split the panels of a block.
 */
#include <string.h>

#include "../internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define PANEL 32
#define BLOCK_FLOATS (16 * 1024) /* packed X per block: 64 KiB */
#define MIN_BLOCK_ROWS 12 /* but at least this many rows: each weight streams once per block */

int64_t sk_gemm_f32_packed_floats(int64_t n, int64_t k) {
  if (n < 0 || k < 0) return -1;
  return (n + PANEL - 1) / PANEL * PANEL * k;
}

int sk_gemm_f32_pack(int64_t n, int64_t k, const float *w, int64_t ldw, float *packed) {
  if (n < 0 || k < 0 || (n > 0 && k > 0 && (w == NULL || packed == NULL)) ||
      (n > 1 && ldw < k))
    return SK_ERR_ARGUMENT;
  for (int64_t p = 0; p < (n + PANEL - 1) / PANEL; ++p) {
    float *dst = packed + p * k * PANEL;
    for (int64_t kk = 0; kk < k; ++kk)
      for (int64_t j = 0; j < PANEL; ++j) {
        const int64_t r = p * PANEL + j;
        dst[kk * PANEL + j] = r < n ? w[r * ldw + kk] : 0.0f;
      }
  }
  return SK_OK;
}

/* Tiles of a block of `rows` rows: as few as mr_max allows, of sizes that
 * differ by at most one (13 rows: 7 + 6, not 12 + 1, whose 1-row tile would
 * be bound by its weight loads). Tile t starts at row tile_start(t). */
static int64_t tile_count(int64_t rows, int mr_max) { return (rows + mr_max - 1) / mr_max; }
static int64_t tile_start(int64_t t, int64_t rows, int64_t tiles) {
  return t * (rows / tiles) + (t < rows % tiles ? t : rows % tiles);
}

/* rows [0, rows) of x into those tiles, each k-major (xp[k * mr + i] from its start row) */
static void pack_x(const float *x, int64_t ldx, int64_t rows, int64_t k, int mr_max,
                   float *xp) {
  const int64_t tiles = tile_count(rows, mr_max);
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t r0 = tile_start(t, rows, tiles), mr = tile_start(t + 1, rows, tiles) - r0;
    float *dst = xp + r0 * k;
    for (int64_t i = 0; i < mr; ++i) {
      const float *src = x + (r0 + i) * ldx;
      for (int64_t kk = 0; kk < k; ++kk) dst[kk * mr + i] = src[kk];
    }
  }
}

static void panels(const sk_gemm_f32_impl *impl, sk_gelu_f32_fn gelu, int64_t n, int64_t k,
                   const float *packed, const float *xp, int64_t rows, const float *bias,
                   sk_activation act, float *y, int64_t ldy, int64_t p0, int64_t p1) {
  const int64_t npanels = (n + PANEL - 1) / PANEL;
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t n0 = p * PANEL, nn = n - n0 < PANEL ? n - n0 : PANEL;
    const int64_t tiles = tile_count(rows, impl->mr);
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t r0 = tile_start(t, rows, tiles), mr = tile_start(t + 1, rows, tiles) - r0;
      float *yt = y + r0 * ldy + n0;
      const float *next = t == 0 && p + 1 < npanels ? packed + (p + 1) * k * PANEL : NULL;
      impl->tile(xp + r0 * k, mr, packed + p * k * PANEL, k, bias ? bias + n0 : NULL, nn,
                 act == SK_ACT_RELU, yt, ldy, next);
      if (act == SK_ACT_GELU)
        for (int64_t i = 0; i < mr; ++i) gelu(yt + i * ldy, nn);
    }
  }
}

int sk_linear_gemm_f32(int64_t n, int64_t k, const float *packed, int64_t m, const float *x,
                       int64_t ldx, const float *bias, sk_activation act, float *y,
                       int64_t ldy) {
  if (n < 0 || k < 0 || m < 0 || (m > 1 && (ldx < k || ldy < n)) ||
      (act != SK_ACT_NONE && act != SK_ACT_RELU && act != SK_ACT_GELU))
    return SK_ERR_ARGUMENT;
  if (m == 0 || n == 0) return SK_OK;
  if (y == NULL || (k > 0 && (packed == NULL || x == NULL))) return SK_ERR_ARGUMENT;
  const sk_gemm_f32_impl *impl = sk_gemm_f32_select();
  const sk_gelu_f32_fn gelu = sk_gelu_f32_select();
  const int64_t npanels = (n + PANEL - 1) / PANEL;
  int64_t block = k > 0 ? BLOCK_FLOATS / k / impl->mr * impl->mr : m;
  if (block < MIN_BLOCK_ROWS) /* whole tiles; a few tokens stay one block at any K */
    block = (MIN_BLOCK_ROWS + impl->mr - 1) / impl->mr * impl->mr;
  if (block > m) block = m;
  const int64_t nblocks = (m + block - 1) / block;
  block = (m + nblocks - 1) / nblocks; /* blocks of about equal rows, as tiles */
  float *xp = sk_aligned_alloc((size_t)(block * (k > 0 ? k : 1)) * sizeof(float));
  if (xp == NULL) return SK_ERR_NOMEM;
  int nt = sk_threads_for_work((double)m * (double)n * (double)k);
  if (nt > SK_MAX_THREADS) nt = SK_MAX_THREADS;
  if (nt > npanels) nt = (int)npanels;
  for (int64_t r0 = 0; r0 < m; r0 += block) {
    const int64_t rows = m - r0 < block ? m - r0 : block;
    pack_x(x + r0 * ldx, ldx, rows, k, impl->mr, xp);
    float *yb = y + r0 * ldy;
    if (nt <= 1) {
      panels(impl, gelu, n, k, packed, xp, rows, bias, act, yb, ldy, 0, npanels);
      continue;
    }
    const int64_t t0 = sk_region_begin(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
      sk_worker_check_in(t0);
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
      for (int64_t p = 0; p < npanels; ++p)
        panels(impl, gelu, n, k, packed, xp, rows, bias, act, yb, ldy, p, p + 1);
    }
  }
  sk_aligned_free(xp);
  return SK_OK;
}
