/*
 * qgemm_u8s8/driver.c - packing and the loops around the int8 micro-kernels.
 *
 *   x fp32 [M,K] --quantize (per row or static)--> a u8 [M,K4*4] (one copy;
 *   each row tile quantized right before its first use, see run_fused)
 *   output columns split in NR-wide blocks, handed to threads dynamically;
 *   per block (its B panel stays in L2): all MR-row tiles of A
 *   M == 1 runs the GEMV kernel (more columns per call, more accumulators).
 */
#include <float.h>
#include <stdatomic.h>
#include <string.h>

#include "../internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

int64_t sk_qmatrix_s8_packed_bytes(int64_t n, int64_t k) {
  if (n < 0 || k < 0) return 0;
  return ((n + 15) / 16) * ((k + 3) / 4) * 64;
}

int sk_qmatrix_s8_pack(int64_t n, int64_t k, const int8_t *q, int64_t ldq, int8_t *packed,
                       uint8_t *sum24) {
  if (n < 0 || k < 0 || k > SK_QGEMM_MAX_K || ldq < k) return SK_ERR_ARGUMENT;
  if ((n > 0 && (packed == NULL || sum24 == NULL)) || (n > 0 && k > 0 && q == NULL))
    return SK_ERR_ARGUMENT;
  const int64_t k4 = (k + 3) / 4;
  memset(packed, 0, (size_t)sk_qmatrix_s8_packed_bytes(n, k));
  int bad = 0;
  for (int64_t r = 0; r < n; ++r) {
    int32_t sum = 0;
    int8_t *dst = packed + (r / 16) * k4 * 64 + (r % 16) * 4;
    for (int64_t kk = 0; kk < k; ++kk) {
      const int8_t v = q[r * ldq + kk];
      bad |= v == -128;
      sum += v;
      dst[(kk / 4) * 64 + kk % 4] = v;
    }
    const uint32_t u = (uint32_t)sum;
    sum24[3 * r] = (uint8_t)u;
    sum24[3 * r + 1] = (uint8_t)(u >> 8);
    sum24[3 * r + 2] = (uint8_t)(u >> 16);
  }
  return bad ? SK_ERR_FORMAT : SK_OK;
}

static int check_common(const sk_qmatrix_s8 *w, int64_t m, const void *a, int64_t lda,
                        const int32_t *a_zp, int64_t zp_stride, const void *c,
                        int64_t ldc) {
  if (w == NULL || m < 0 || w->n < 0 || w->k < 0 || w->k > SK_QGEMM_MAX_K) return 0;
  if (w->n > 0 && (w->packed == NULL || w->sum24 == NULL || w->scale == NULL)) return 0;
  if (lda < w->k || ldc < w->n || (zp_stride != 0 && zp_stride != 1)) return 0;
  if (m > 0 && w->n > 0 && (a == NULL || c == NULL || a_zp == NULL)) return 0;
  return 1;
}

/* Quantize rows [i0, i1) of x into xq (rows of k4 * 4 bytes, zero-padded),
 * with their scales and zero points; nonzero if x held NaN or infinity. */
static int quantize_rows(const sk_quantize_u8_impl *qimpl, const float *x, int64_t ldx,
                         int64_t k, float x_scale, int32_t x_zp, int64_t i0, int64_t i1,
                         uint8_t *xq, float *rs, int32_t *rz) {
  const int64_t k4 = (k + 3) / 4;
  int bad = 0;
  if (x_scale > 0.0f) {
    for (int64_t i = i0; i < i1; ++i) {
      bad |= qimpl->static_row(x + i * ldx, k, x_scale, x_zp, xq + i * k4 * 4) != SK_OK;
      rs[i] = x_scale;
      rz[i] = x_zp;
    }
  } else { /* the whole tile in one sweep where the ISA has one */
    bad = sk_quantize_u8_rows_dynamic(qimpl, x + i0 * ldx, ldx, i1 - i0, k, xq + i0 * k4 * 4,
                                      k4 * 4, rs + i0, rz + i0) != SK_OK;
  }
  for (int64_t i = i0; i < i1; ++i)
    for (int64_t j = k; j < k4 * 4; ++j) xq[i * k4 * 4 + j] = 0;
  return bad;
}

/* What follows each micro-kernel call: nothing, GELU on the finished fp32
 * tile (the micro-kernels apply only RELU), or, for GELU with u8 output, the
 * chain below. */
typedef struct {
  sk_gelu_f32_fn gelu;                   /* NULL: no post-op            */
  sk_quantize_row_u8_static_fn requant;  /* non-NULL: GELU then u8 out  */
  uint8_t *yq;
  int64_t ldyq;
  float out_scale;
  int32_t out_zp;
} post_op;

/* Tiles of at most this many floats (MR x NR, or the GEMV's columns) go
 * through the GELU + u8 chain; every impl's tiles fit (checked in run). */
#define GELU_U8_TILE 512

/* GELU with u8 output: the tile is computed in fp32 into a buffer in L1 by
 * the micro-kernel's f32 epilogue (with every pointer rebased to the tile,
 * so its row and column offsets are 0), then GELU'd and requantized by the
 * static row quantizer that sk_quantize_u8 uses: the bytes are exactly
 * quantize(gelu(y)) of the fp32-output path on every ISA, and the fp32 tile
 * never leaves the cache. */
static void gelu_u8_tile(sk_qgemm_u8s8_fn fn, const sk_qgemm_u8s8_args *p, int64_t m0,
                         int64_t rows, int64_t n0, int64_t cols, const post_op *post) {
  _Alignas(64) float buf[GELU_U8_TILE];
  _Alignas(64) uint8_t qbuf[GELU_U8_TILE];
  sk_qgemm_u8s8_args t = *p;
  t.a = p->a + m0 * p->lda;
  t.a_zp = p->a_zp + m0 * p->zp_stride;
  t.a_scale = p->a_scale + m0 * p->as_stride;
  t.b = p->b + (n0 / 16) * p->k4 * 64;
  t.sum24 = p->sum24 + 3 * n0;
  t.w_scale = p->w_scale + n0 * p->ws_stride;
  t.bias = p->bias ? p->bias + n0 : NULL;
  t.n = cols;
  t.act = SK_ACT_NONE;
  t.out = SK_QOUT_F32;
  t.c = buf;
  t.ldc = cols;
  fn(&t, 0, rows, 0, cols);
  /* the tile is contiguous (ldc == cols): one call each for all its rows
   * (per-row calls cost more than the work at 48 columns) */
  post->gelu(buf, rows * cols);
  /* a non-finite y (only from scales near FLT_MAX) is clamped as the u8
   * epilogue clamps it (+inf -> 255, NaN -> 0), not reported */
  (void)post->requant(buf, rows * cols, post->out_scale, post->out_zp, qbuf);
  for (int64_t i = 0; i < rows; ++i)
    memcpy(post->yq + (m0 + i) * post->ldyq + n0, qbuf + i * cols, (size_t)cols);
}

/* One micro-kernel call on rows [m0, m0 + rows) x columns [n0, n0 + cols),
 * then its post-op while the tile is in L1. */
static void run_tile(sk_qgemm_u8s8_fn fn, const sk_qgemm_u8s8_args *p, int64_t m0,
                     int64_t rows, int64_t n0, int64_t cols, const post_op *post) {
  if (post->requant) {
    gelu_u8_tile(fn, p, m0, rows, n0, cols, post);
    return;
  }
  fn(p, m0, rows, n0, cols);
  for (int64_t i = 0; post->gelu && i < rows; ++i)
    post->gelu((float *)p->c + (m0 + i) * p->ldc + n0, cols);
}

/* fp32 input, M > 1: no separate quantization pass. Each row tile is
 * quantized by the first thread that needs it, right before its
 * micro-kernel, and that micro-kernel prefetches the next tile's fp32 rows
 * (contiguous: ldx == k) while it computes, so x's trip from L3 or memory
 * overlaps the GEMM. Tiles are claimed through `state` (0 untouched,
 * 1 being quantized, 2 ready): no barrier, so a thread that starts late
 * never holds the other back; one waiting for a tile in progress quantizes
 * a later unclaimed tile meanwhile. */
typedef struct {
  const sk_quantize_u8_impl *qimpl;
  const float *x;
  int64_t ldx, k, m, mr, tiles;
  float x_scale;
  int32_t x_zp;
  uint8_t *xq;
  float *rs;
  int32_t *rz;
  atomic_int *state;
} fused_ctx;

static int claim(const fused_ctx *f, int64_t t) {
  int expected = 0;
  return atomic_load_explicit(&f->state[t], memory_order_relaxed) == 0 &&
         atomic_compare_exchange_strong_explicit(&f->state[t], &expected, 1,
                                                 memory_order_acquire, memory_order_relaxed);
}

static int quantize_tile(const fused_ctx *f, int64_t t) {
  const int64_t i0 = t * f->mr, i1 = i0 + f->mr < f->m ? i0 + f->mr : f->m;
  const int bad =
      quantize_rows(f->qimpl, f->x, f->ldx, f->k, f->x_scale, f->x_zp, i0, i1, f->xq, f->rs, f->rz);
  atomic_store_explicit(&f->state[t], 2, memory_order_release); /* publishes the rows */
  return bad;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Returns nonzero if a tile this thread quantized held NaN or infinity. */
static int ready_tile(const fused_ctx *f, int64_t t) {
  int bad = 0;
  while (atomic_load_explicit(&f->state[t], memory_order_acquire) != 2) {
    if (claim(f, t)) return bad | quantize_tile(f, t);
    int64_t u = t + 1;
    while (u < f->tiles && !claim(f, u)) ++u;
    if (u < f->tiles)
      bad |= quantize_tile(f, u);
    else
      cpu_relax(); /* the rest is claimed: wait for tile t */
  }
  return bad;
}

static int run_fused(const sk_qgemm_u8s8_impl *impl, const sk_qgemm_u8s8_args *p, int nt,
                     int64_t blocks, const fused_ctx *f, const post_op *post) {
  const int64_t n = p->n, m = f->m, mr = f->mr;
  for (int64_t t = 0; t < f->tiles; ++t) atomic_init(&f->state[t], 0);
  int bad = 0;
  const int pf_rows = mr == 8 && f->ldx == f->k; /* 128 bytes per group: a tile */
  if (nt == 1) {
    /* one thread: the first two column blocks run tile-outer, so each
     * tile's fp32 rows are prefetched over two micro-kernels (x's fetch from
     * L3 gets twice the time), then the rest block by block */
    const int64_t lead = blocks < 2 ? blocks : 2;
    sk_qgemm_u8s8_args lp = *p;
    for (int64_t m0 = 0, t = 0; m0 < m; m0 += mr, ++t) {
      const int64_t rows = m - m0 < mr ? m - m0 : mr;
      bad |= ready_tile(f, t);
      const int pf = pf_rows && m0 + 2 * mr <= m;
      for (int64_t b = 0; b < lead; ++b) {
        const int64_t n0 = b * impl->nr, cols = n - n0 < impl->nr ? n - n0 : impl->nr;
        lp.prefetch_step = (int)(128 / lead);
        lp.prefetch = pf ? (const char *)(f->x + (m0 + mr) * f->ldx) + b * 64 * lp.kfull : NULL;
        run_tile(impl->gemm, &lp, m0, rows, n0, cols, post);
      }
    }
    lp.prefetch = NULL;
    for (int64_t b = lead; b < blocks; ++b) {
      const int64_t n0 = b * impl->nr, cols = n - n0 < impl->nr ? n - n0 : impl->nr;
      for (int64_t m0 = 0; m0 < m; m0 += mr) {
        const int64_t rows = m - m0 < mr ? m - m0 : mr;
        run_tile(impl->gemm, &lp, m0, rows, n0, cols, post);
      }
    }
    return bad;
  }
  const int64_t t0 = sk_region_begin(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : bad)
#endif
  {
    sk_worker_check_in(t0);
    sk_qgemm_u8s8_args lp = *p; /* own copy: `prefetch` differs per call */
    lp.prefetch_step = 128;
    int64_t known = 0;          /* tiles below are ready, as this thread knows */
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1) nowait
#endif
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t n0 = b * impl->nr, cols = n - n0 < impl->nr ? n - n0 : impl->nr;
      for (int64_t m0 = 0, t = 0; m0 < m; m0 += mr, ++t) {
        const int64_t rows = m - m0 < mr ? m - m0 : mr;
        lp.prefetch = NULL;
        if (t >= known) {
          bad |= ready_tile(f, t);
          known = t + 1;
          if (pf_rows && m0 + 2 * mr <= m &&
              atomic_load_explicit(&f->state[t + 1], memory_order_relaxed) == 0)
            lp.prefetch = f->x + (m0 + mr) * f->ldx;
        }
        run_tile(impl->gemm, &lp, m0, rows, n0, cols, post);
      }
    }
  }
  return bad;
}

/* Run the tiles with `p` filled except a/lda/kfull/ktail when `x` is given:
 * then x is quantized into scratch (static when x_scale > 0), tile by tile
 * inside the GEMM for M > 1 (run_fused), up front for M == 1. */
static int run(const sk_qmatrix_s8 *w, int64_t m, sk_qgemm_u8s8_args *p, const float *x,
               int64_t ldx, float x_scale, int32_t x_zp) {
  const int64_t n = w->n, k = w->k, k4 = (k + 3) / 4;
  if (m == 0 || n == 0) return SK_OK;
  const sk_qgemm_u8s8_impl *impl = sk_qgemm_u8s8_select();
  const int nr = m == 1 ? impl->gemv_nr : impl->nr;
  const int64_t blocks = (n + nr - 1) / nr;

  /* scratch, for fp32 input only: the u8 rows, row scales and zero points,
   * one state per row tile (run_fused) */
  uint8_t *scratch = NULL;
  const int64_t tiles = (m + impl->mr - 1) / impl->mr;
  if (x) {
    scratch = (uint8_t *)sk_aligned_alloc((size_t)m * (size_t)(k4 * 4) + (size_t)m * 8 +
                                          (size_t)tiles * sizeof(atomic_int));
    if (scratch == NULL) return SK_ERR_NOMEM;
  }
  p->sum24 = w->sum24;
  p->b = w->packed;
  p->n = n;
  p->k4 = k4;
  p->w_scale = w->scale;
  p->ws_stride = w->per_channel ? 1 : 0;
  uint8_t *xq = NULL;
  float *rs = NULL;
  int32_t *rz = NULL;
  if (x) {
    xq = scratch; /* 64-byte aligned, rows of k4 * 4 bytes */
    rs = (float *)(xq + m * k4 * 4);
    rz = (int32_t *)(rs + m);
    p->a = xq;
    p->lda = k4 * 4;
    p->kfull = k4; /* rows padded with zeros to whole groups */
    p->ktail = 0;
    p->a_zp = rz;
    p->zp_stride = 1;
    p->a_scale = rs;
    p->as_stride = 1;
  } else {
    p->kfull = k / 4;
    p->ktail = (int)(k % 4);
  }

  int nt = sk_threads_for_work((double)m * (double)n * (double)k);
  if (nt > blocks) nt = (int)blocks;
  const sk_quantize_u8_impl *qimpl = sk_quantize_u8_select();
  /* GELU is not in the micro-kernels' epilogues (they apply only RELU): it
   * is a post-op on each finished fp32 tile, the same for every ISA; with
   * u8 output the tile is fp32 in a buffer first (gelu_u8_tile) */
  post_op post = {NULL, NULL, NULL, 0, 0.0f, 0};
  if (p->act == SK_ACT_GELU) {
    post.gelu = sk_gelu_f32_select();
    if (p->out == SK_QOUT_U8) {
      if ((int64_t)impl->mr * impl->nr > GELU_U8_TILE || impl->gemv_nr > GELU_U8_TILE) {
        if (scratch) sk_aligned_free(scratch);
        return SK_ERR_UNSUPPORTED; /* a new impl with bigger tiles: raise the bound */
      }
      post.requant = qimpl->static_row;
      post.yq = (uint8_t *)p->c;
      post.ldyq = p->ldc;
      post.out_scale = p->out_scale;
      post.out_zp = (int32_t)p->out_zp;
    }
  }
  int bad = 0;
  if (x && m > 1) {
    const fused_ctx f = {qimpl, x, ldx, k, m, impl->mr, tiles, x_scale, x_zp,
                         xq, rs, rz, (atomic_int *)(rz + m)};
    bad = run_fused(impl, p, nt, blocks, &f, &post);
    sk_aligned_free(scratch);
    return bad ? SK_ERR_NONFINITE : SK_OK;
  }
  const int64_t t0 = sk_region_begin(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : bad)
#endif
  {
    sk_worker_check_in(t0);
    if (x) {
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 4)
#endif
      for (int64_t i = 0; i < m; ++i)
        bad |= quantize_rows(qimpl, x, ldx, k, x_scale, x_zp, i, i + 1, xq, rs, rz);
      /* the implicit barrier of `omp for` publishes every row */
    }
    /* Blocks are handed out dynamically: on a shared machine one thread may
     * start late, and the other then takes over its share. */
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1) nowait
#endif
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t n0 = b * nr, cols = n - n0 < nr ? n - n0 : nr;
      if (m == 1) {
        run_tile(impl->gemv, p, 0, 1, n0, cols, &post);
      } else {
        for (int64_t m0 = 0; m0 < m; m0 += impl->mr) {
          const int64_t rows = m - m0 < impl->mr ? m - m0 : impl->mr;
          run_tile(impl->gemm, p, m0, rows, n0, cols, &post);
        }
      }
    }
  }
  if (scratch) sk_aligned_free(scratch);
  return bad ? SK_ERR_NONFINITE : SK_OK;
}

int sk_qgemm_u8s8_s32(const sk_qmatrix_s8 *w, int64_t m, const uint8_t *a, int64_t lda,
                      const int32_t *a_zp, int64_t zp_stride, int32_t *c, int64_t ldc) {
  if (!check_common(w, m, a, lda, a_zp, zp_stride, c, ldc)) return SK_ERR_ARGUMENT;
  sk_qgemm_u8s8_args p;
  memset(&p, 0, sizeof p);
  p.a = a;
  p.lda = lda;
  p.a_zp = a_zp;
  p.zp_stride = zp_stride;
  p.out = SK_QOUT_S32;
  p.c = c;
  p.ldc = ldc;
  return run(w, m, &p, NULL, 0, 0.0f, 0);
}

static int fill_f32(sk_qgemm_u8s8_args *p, const uint8_t *a, int64_t lda,
                    const int32_t *a_zp, int64_t zp_stride, const float *a_scale,
                    int64_t scale_stride, const float *bias, sk_activation act) {
  if (act != SK_ACT_NONE && act != SK_ACT_RELU && act != SK_ACT_GELU) return 0;
  if (scale_stride != 0 && scale_stride != 1) return 0;
  memset(p, 0, sizeof *p);
  p->a = a;
  p->lda = lda;
  p->a_zp = a_zp;
  p->zp_stride = zp_stride;
  p->a_scale = a_scale;
  p->as_stride = scale_stride;
  p->bias = bias;
  p->act = act;
  return 1;
}

int sk_qgemm_u8s8_f32(const sk_qmatrix_s8 *w, int64_t m, const uint8_t *a, int64_t lda,
                      const int32_t *a_zp, int64_t zp_stride, const float *a_scale,
                      int64_t scale_stride, const float *bias, sk_activation act,
                      float *y, int64_t ldy) {
  sk_qgemm_u8s8_args p;
  if (!check_common(w, m, a, lda, a_zp, zp_stride, y, ldy)) return SK_ERR_ARGUMENT;
  if (!fill_f32(&p, a, lda, a_zp, zp_stride, a_scale, scale_stride, bias, act))
    return SK_ERR_ARGUMENT;
  if (m > 0 && w->n > 0 && a_scale == NULL) return SK_ERR_ARGUMENT;
  p.out = SK_QOUT_F32;
  p.c = y;
  p.ldc = ldy;
  return run(w, m, &p, NULL, 0, 0.0f, 0);
}

int sk_qgemm_u8s8_u8(const sk_qmatrix_s8 *w, int64_t m, const uint8_t *a, int64_t lda,
                     const int32_t *a_zp, int64_t zp_stride, const float *a_scale,
                     int64_t scale_stride, const float *bias, sk_activation act,
                     float out_scale, int32_t out_zp, uint8_t *yq, int64_t ldyq) {
  sk_qgemm_u8s8_args p;
  if (!check_common(w, m, a, lda, a_zp, zp_stride, yq, ldyq)) return SK_ERR_ARGUMENT;
  if (!fill_f32(&p, a, lda, a_zp, zp_stride, a_scale, scale_stride, bias, act))
    return SK_ERR_ARGUMENT;
  if (m > 0 && w->n > 0 && a_scale == NULL) return SK_ERR_ARGUMENT;
  if (!(out_scale > 0.0f) || !(out_scale <= FLT_MAX) || out_zp < 0 || out_zp > 255)
    return SK_ERR_ARGUMENT;
  p.out = SK_QOUT_U8;
  p.c = yq;
  p.ldc = ldyq;
  p.out_scale = out_scale;
  p.out_zp = (float)out_zp;
  return run(w, m, &p, NULL, 0, 0.0f, 0);
}

int sk_linear_qgemm_u8s8(const sk_qmatrix_s8 *w, int64_t m, const float *x, int64_t ldx,
                         float x_scale, int32_t x_zp, const float *bias, sk_activation act,
                         float *y, int64_t ldy) {
  static const int32_t dummy_zp = 0;
  sk_qgemm_u8s8_args p;
  if (!check_common(w, m, x, ldx, &dummy_zp, 0, y, ldy)) return SK_ERR_ARGUMENT;
  if (!(x_scale >= 0.0f) || !(x_scale <= FLT_MAX) || x_zp < 0 || x_zp > 255)
    return SK_ERR_ARGUMENT;
  if (!fill_f32(&p, NULL, 0, NULL, 0, NULL, 0, bias, act)) return SK_ERR_ARGUMENT;
  p.out = SK_QOUT_F32;
  p.c = y;
  p.ldc = ldy;
  return run(w, m, &p, x, ldx, x_scale, x_zp);
}

int sk_qgemm_u8s8_peak_loop(int64_t iters, int64_t *sink) {
#ifdef SK_ARCH_X86
  if (sk_cpu_supports(SK_ISA_AVX512VNNI)) {
    *sink = sk_qgemm_u8s8_peak_loop__avx512vnni(iters);
    return SK_OK;
  }
#endif
  (void)iters;
  (void)sink;
  return SK_ERR_UNSUPPORTED;
}
