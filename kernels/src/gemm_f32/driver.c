/*
 * gemm_f32/driver.c - packing and the loop around the dense fp32 tile kernels.
 * X is taken in blocks of rows whose packed copy fits ~64 KiB, and at least 12
 * rows (all of X for a transformer's few tokens at batch 1, also at K = 1536
 * with AVX2's 6-row tiles), so each weight panel (32 x K floats,
 * L2-sized) is read from memory once per block and the block stays in L1/L2
 * while every panel streams past it. Threads run in one region per call
 * (not one per block: at K = 1536 a block is 12 rows, ~50 blocks at M = 608,
 * and each region's fork / join plus the master's packing alone held 2 threads
 * to ~1.6x): they pack k ranges of a block, meet at one barrier, and take
 * equal runs of its (panel, tile) units.
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

/* Columns [k0, k1) of rows [0, rows) of x into those tiles, each k-major
 * (xp[k * mr + i] from its start row): threads pack a block's k ranges, so
 * each writes whole cache lines of every tile. */
static void pack_x(const float *x, int64_t ldx, int64_t rows, int64_t k, int mr_max,
                   int64_t k0, int64_t k1, float *xp) {
  const int64_t tiles = tile_count(rows, mr_max);
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t r0 = tile_start(t, rows, tiles), mr = tile_start(t + 1, rows, tiles) - r0;
    float *dst = xp + r0 * k;
    for (int64_t i = 0; i < mr; ++i) {
      const float *src = x + (r0 + i) * ldx;
      for (int64_t kk = k0; kk < k1; ++kk) dst[kk * mr + i] = src[kk];
    }
  }
}

/* Work units [u0, u1) of a block: unit u is tile u % tiles of panel u / tiles
 * (a thread's units are whole tiles, so each output is the same sum for any
 * thread count). A panel's first unit prefetches the panel this thread takes
 * next: its following one, or after its last one its first (`wrap`, the
 * next block's first panel, long evicted at K >= 768). */
static void units(const sk_gemm_f32_impl *impl, sk_gelu_f32_fn gelu, int64_t n, int64_t k,
                  const float *packed, const float *xp, int64_t rows, const float *bias,
                  sk_activation act, float *y, int64_t ldy, int64_t u0, int64_t u1,
                  const float *wrap) {
  const int64_t tiles = tile_count(rows, impl->mr);
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t p = u / tiles, t = u % tiles;
    const int64_t n0 = p * PANEL, nn = n - n0 < PANEL ? n - n0 : PANEL;
    const int64_t r0 = tile_start(t, rows, tiles), mr = tile_start(t + 1, rows, tiles) - r0;
    float *yt = y + r0 * ldy + n0;
    const float *next = NULL;
    if (t == 0) next = (p + 1) * tiles < u1 ? packed + (p + 1) * k * PANEL : wrap;
    impl->tile(xp + r0 * k, mr, packed + p * k * PANEL, k, bias ? bias + n0 : NULL, nn,
               act == SK_ACT_RELU, yt, ldy, next);
    if (act == SK_ACT_GELU)
      for (int64_t i = 0; i < mr; ++i) gelu(yt + i * ldy, nn);
  }
}

/* Thread `id` of `nth` over all blocks: it packs its k range of each block
 * into one of two buffers, waits for the others' (one barrier per block: a
 * buffer is packed again only two blocks later, after everyone passed the
 * barrier in between, so after everyone computed from it), then computes its
 * units of the block. Units split panel-major in equal counts: contiguous
 * panels, each weight panel read by one thread (two at a boundary). */
static void blocks(const sk_gemm_f32_impl *impl, sk_gelu_f32_fn gelu, int64_t n, int64_t k,
                   const float *packed, int64_t m, const float *x, int64_t ldx,
                   const float *bias, sk_activation act, float *y, int64_t ldy, int64_t block,
                   float *xp, int id, int nth) {
  const int64_t npanels = (n + PANEL - 1) / PANEL;
  const int64_t kq = (k + 15) / 16; /* pack k in 64-byte runs */
  const int64_t k0 = kq * id / nth * 16, k1e = kq * (id + 1) / nth * 16;
  const int64_t k1 = k1e < k ? k1e : k;
  for (int64_t r0 = 0, b = 0; r0 < m; r0 += block, ++b) {
    const int64_t rows = m - r0 < block ? m - r0 : block;
    float *xb = xp + (nth > 1 ? b & 1 : 0) * block * k; /* two buffers for threads */
    pack_x(x + r0 * ldx, ldx, rows, k, impl->mr, k0 < k ? k0 : k, k1, xb);
    if (nth > 1) {
#ifdef _OPENMP
#pragma omp barrier
#endif
    }
    const int64_t tiles = tile_count(rows, impl->mr), nunits = npanels * tiles;
    const int64_t u0 = nunits * id / nth, u1 = nunits * (id + 1) / nth;
    const float *wrap = r0 + block < m && u0 < u1 ? packed + u0 / tiles * k * PANEL : NULL;
    units(impl, gelu, n, k, packed, xb, rows, bias, act, y + r0 * ldy, ldy, u0, u1, wrap);
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
  int nt = sk_threads_for_work((double)m * (double)n * (double)k);
  if (nt > SK_MAX_THREADS) nt = SK_MAX_THREADS;
  const int64_t max_units = npanels * tile_count(block, impl->mr);
  if (nt > max_units) nt = (int)max_units;
  const int64_t buffers = nt > 1 && nblocks > 1 ? 2 : 1;
  float *xp = sk_aligned_alloc((size_t)(buffers * block * (k > 0 ? k : 1)) * sizeof(float));
  if (xp == NULL) return SK_ERR_NOMEM;
  if (nt <= 1) {
    blocks(impl, gelu, n, k, packed, m, x, ldx, bias, act, y, ldy, block, xp, 0, 1);
  } else {
    const int64_t t0 = sk_region_begin(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
      sk_worker_check_in(t0);
#ifdef _OPENMP
      blocks(impl, gelu, n, k, packed, m, x, ldx, bias, act, y, ldy, block, xp,
             omp_get_thread_num(), omp_get_num_threads());
#else
      blocks(impl, gelu, n, k, packed, m, x, ldx, bias, act, y, ldy, block, xp, 0, 1);
#endif
    }
  }
  sk_aligned_free(xp);
  return SK_OK;
}
