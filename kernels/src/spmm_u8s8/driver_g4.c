/*
 * spmm_u8s8/driver_g4.c - the loops around the g4 micro-kernels
 * (sk_csr_s8_g4: unstructured int8 weights as groups of 4 nonzeros at any k).
 *
 *   Xq[M, K] u8 --transpose--> tiles [K][MR] (rows in the kernel's order)
 *   W rows split into per-thread ranges of equal cost (groups + per-row work)
 *   each thread: for every tile, micro-kernel over its rows -> Y
 *
 * AVX-512 VNNI runs 64-row tiles, and with VBMI one 16-row tile for M = 2..16,
 * one 32-row tile for M = 17..32 (as the last tile past 64 rows too) and its
 * own M == 1 kernels (the row in registers for K <= 1024, in a padded
 * copy up to K = 32768); every other ISA the portable kernel (8 rows; M == 1
 * reads the row in place). Same contract and results as driver.c.
 */
#include <string.h>

#include "driver_common.h"

int sk_csr_s8_g4_validate(const sk_csr_s8_g4 *w, int64_t *bad_row) {
  if (bad_row) *bad_row = -1;
  if (w == NULL || w->n < 0 || w->k < 0 || w->k > 65536 || w->indptr == NULL)
    return SK_ERR_ARGUMENT;
  if (w->indptr[0] != 0) {
    if (bad_row) *bad_row = 0;
    return SK_ERR_FORMAT;
  }
  for (int64_t n = 0; n < w->n; ++n) {
    const int64_t b = w->indptr[n], e = w->indptr[n + 1];
    int64_t sum = 0;
    int ok = e >= b && (e == b || (w->kidx && w->values && w->row_sums));
    for (int64_t p = 4 * b; ok && p < 4 * e; ++p) {
      ok = w->kidx[p] < w->k && w->values[p] >= -127;
      sum += w->values[p];
    }
    if (ok && w->row_sums && w->row_sums[n] != sum) ok = 0;
    if (!ok) {
      if (bad_row) *bad_row = n;
      return SK_ERR_FORMAT;
    }
  }
  return SK_OK;
}

/* Rows [m0, m0+mr) of x into xt[k * MR + pos(i)], zero for rows past mr.
 * k outer: each k's MR bytes are written as one run. */
static void pack_tile_t(const uint8_t *x, int64_t ldx, int64_t k, int64_t m0, int64_t mr,
                        int MR, int swizzle, uint8_t *xt) {
  int64_t pos[64];
  for (int64_t i = 0; i < MR; ++i) pos[i] = swizzle ? sk_g4_pos64(i) : i;
  if (mr < MR) memset(xt, 0, (size_t)(k * MR));
  const uint8_t *x0 = x + m0 * ldx;
  for (int64_t c = 0; c < k; ++c) {
    uint8_t *d = xt + c * MR;
    for (int64_t i = 0; i < mr; ++i) d[pos[i]] = x0[i * ldx + c];
  }
}

int sk_spmv_u8s8_g4_fast(int64_t k) {
#ifdef SK_ARCH_X86
  /* the VNNI ISA is selected only when the OS saves the zmm state */
  return k <= 32768 && sk_family_isa("spmm_u8s8") == SK_ISA_AVX512VNNI &&
         sk_cpu_avx512vbmi();
#else
  (void)k;
  return 0;
#endif
}

int sk_g4_small_fast(void) {
#ifdef SK_ARCH_X86
  return sk_family_isa("spmm_u8s8") == SK_ISA_AVX512VNNI &&
         sk_cpu_avx512vbmi();
#else
  return 0;
#endif
}

int sk_g4_vbmi_cpu(void) {
#ifdef SK_ARCH_X86
  return sk_cpu_supports(SK_ISA_AVX512VNNI) && sk_cpu_avx512vbmi();
#else
  return 0;
#endif
}

/* pack_tile_t (or the VNNI packer) for the shared scaffold: fp32 rows are
 * quantized first into thread t's u8 rows, held behind the tiles in the same
 * block (a second ~100 KB block per call made glibc trim and re-fault the
 * heap). */
typedef struct {
  int64_t k, kp, rows_alloc;
  int vnni, vbmi; /* vbmi: tiles of 16 and 32 rows in natural order */
  int MR;         /* the largest tile: each thread's fp32 rows are MR apart */
} pack_ctx;

static int pack(const void *ctx, const sk_u8_source *s, int64_t m0, int64_t mr, int R,
                uint8_t *xt, uint8_t *scratch, int32_t *zp, float *xs, int t) {
  const pack_ctx *c = (const pack_ctx *)ctx;
  int rc = SK_OK;
  const uint8_t *x = s->xf ? NULL : s->xq + m0 * s->ldx;
  int64_t ldx = s->ldx;
  if (s->xf) {
    uint8_t *u8 = scratch + (c->rows_alloc + (int64_t)t * c->MR) * c->kp;
    rc = sk_u8_source_quantize_rows(s, m0, mr, c->k, u8, c->kp, zp + m0, xs + m0);
    x = u8, ldx = c->kp;
  }
#ifdef SK_ARCH_X86
  if (c->vbmi && R == 16) {
    sk_g4_pack16__avx512vbmi(x, ldx, c->k, mr, xt);
    return rc;
  }
  if (c->vbmi && R == 32) {
    sk_g4_pack32__avx512vbmi(x, ldx, c->k, mr, xt);
    return rc;
  }
  if (c->vnni) {
    sk_g4_pack64__avx512vnni(x, ldx, c->k, mr, xt);
    return rc;
  }
#endif
  pack_tile_t(x, ldx, c->k, 0, mr, R, 0, xt);
  return rc;
}

/* M = 2..3: the M == 1 kernel once per row beats a 16-row tile where it
 * holds the row in registers (K <= 1024: one row ~0.25-0.3 of the 16-row
 * tile's time, benchmarks/RESULTS.md "g4 at M = 2..32"); the wide one (K >
 * 1024) at M = 2 only, and only for weights of >= 15% density: at 90%
 * sparsity its rows take ~0.5 of the 16-row tile. */
int sk_g4_rows_fast(int64_t m, int64_t n, int64_t k, int64_t ngroups) {
  if (m < 2 || m > 3 || !sk_spmv_u8s8_g4_fast(k)) return 0;
  if (k <= 1024) return 1;
  return m == 2 && 4.0 * (double)ngroups >= 0.15 * (double)n * (double)k;
}

/* Needs u8 rows (fp32 rows are quantized first). */
static int rows_by_spmv(const sk_csr_s8_g4 *w, int64_t m) {
  return sk_g4_rows_fast(m, w->n, w->k, w->indptr[w->n]);
}

static int run(const void *weight, int64_t m, const sk_u8_source *s,
               const float *wscale, const float *bias, sk_activation act, void *y,
               int64_t ldy) {
  const sk_csr_s8_g4 *w = (const sk_csr_s8_g4 *)weight;
  const int vnni = sk_family_isa("spmm_u8s8") == SK_ISA_AVX512VNNI;
  const int64_t ngroups = w->indptr[w->n];
  int64_t bounds[SK_MAX_THREADS + 1];
  const int nt = sk_u8_split(w->indptr, w->n, 2 /* a row's epilogue ~ 2 groups */,
                             (double)(16 * ngroups + 4 * w->n) * (double)m, bounds);

  sk_spmm_u8s8_tile base = {w->indptr, w->kidx, 2, w->values, w->row_sums,
                            NULL, 0, 1, NULL, NULL, wscale, bias, act, y, ldy, 0, 0};
  if (m == 1 || (s->xf == NULL && rows_by_spmv(w, m))) { /* each row is a [K][1] tile */
    base.xp_bytes = w->k;
    sk_spmm_u8s8_fn spmv = sk_spmv_u8s8_g4_1x4__scalar;
    uint8_t *row = NULL; /* the wide kernel's zero-padded copy of each row */
#ifdef SK_ARCH_X86
    if (sk_spmv_u8s8_g4_fast(w->k) && w->k <= 1024) {
      spmv = sk_spmv_u8s8_g4_1x4__avx512vbmi; /* the row in registers */
    } else if (sk_spmv_u8s8_g4_fast(w->k)) {
      /* the wide kernel reads whole 128-byte windows: a zero-padded copy */
      const int64_t padded = (w->k + 127) / 128 * 128;
      row = (uint8_t *)sk_aligned_alloc((size_t)padded);
      if (row == NULL) return SK_ERR_NOMEM;
      memset(row + w->k, 0, (size_t)(padded - w->k));
      spmv = sk_spmv_u8s8_g4_wide__avx512vbmi;
    }
#endif
    for (int64_t i = 0; i < m; ++i) {
      base.xp = s->xq + i * s->ldx;
      if (row) {
        memcpy(row, base.xp, (size_t)w->k);
        base.xp = row;
      }
      base.zp = s->zp + (s->zp_per_row ? i : 0);
      base.xscale = s->xscale ? s->xscale + i : NULL;
      base.y = (char *)y + (size_t)(i * ldy) * 4;
      sk_u8_spmv_run(spmv, &base, nt, bounds);
    }
    sk_aligned_free(row);
    return SK_OK;
  }

  /* AVX-512 VNNI: 64-row tiles. With VBMI, M <= 16 is one 16-row tile and
   * M = 17..32 one 32-row tile (the 64-row kernel would do 2-4x the work,
   * at a higher cost per group), and past 64 rows a last tile of <= 16 or
   * <= 32 rows gets those kernels too. */
  int MR = 8, MS = 8;
  int64_t nbig = (m + 7) / 8;
  sk_spmm_u8s8_fn big = sk_spmm_u8s8_g4_8x4__scalar, small = big;
#ifdef SK_ARCH_X86
  const int vbmi = vnni && sk_g4_small_fast();
  if (vnni) {
    MR = MS = 64;
    big = small = sk_spmm_u8s8_g4_64x4__avx512vnni;
    nbig = (m + 63) / 64;
    const int64_t rest = m % 64;
    if (vbmi && rest > 0 && rest <= 32) {
      nbig = m / 64;
      MS = rest <= 16 ? 16 : 32;
      small = MS == 16 ? sk_spmm_u8s8_g4_16x4__avx512vbmi : sk_spmm_u8s8_g4_32x4__avx512vbmi;
      if (nbig == 0) MR = MS, big = small;
    }
  }
#else
  const int vbmi = 0;
#endif
  /* an output of 1 MiB or more (a core's L2 here) goes out to memory anyway:
   * stream it (bert_ffn_up at M = 128, 1.5 MB: 8% faster) */
  base.stream_y = (double)m * (double)w->n * 4.0 >= (double)(1 << 20);
  const int64_t ntiles = nbig + (nbig * MR < m ? 1 : 0);
  const int64_t rows_alloc = nbig * MR + (ntiles - nbig) * MS;
  const int64_t kp = w->k > 0 ? w->k : 1;
  const int64_t rows_u8 = s->xf ? (int64_t)nt * MR : 0; /* fp32 rows: see pack() */
  const pack_ctx ctx = {w->k, kp, rows_alloc, vnni, vbmi, MR};
  const sk_u8_tiles tiles = {m, nbig, ntiles, MR, MS, w->k,
                             (size_t)((rows_alloc + rows_u8) * kp), big, small, pack, &ctx};
  return sk_u8_tiles_run(&tiles, s, &base, nt, bounds);
}

static int check_weight(const sk_csr_s8_g4 *w) {
  if (w == NULL || w->n < 0 || w->k < 0 || w->k > 65536 || w->indptr == NULL)
    return SK_ERR_ARGUMENT;
  if (w->n > 0 && (w->row_sums == NULL ||
                   (w->indptr[w->n] > 0 && (w->kidx == NULL || w->values == NULL))))
    return SK_ERR_ARGUMENT;
  return SK_OK;
}

int sk_spmm_u8s8_g4_s32(const sk_csr_s8_g4 *w, int64_t m, const uint8_t *xq, int64_t ldx,
                        const int32_t *zero_point, int zp_per_row, int32_t *y, int64_t ldy) {
  const int rc = check_weight(w);
  if (rc != SK_OK) return rc;
  return sk_u8_entry_s32(w, w->k, w->n, run, m, xq, ldx, zero_point, zp_per_row, y, ldy);
}

int sk_linear_u8s8_g4_f32(const sk_csr_s8_g4 *w, const float *wscale, int64_t m,
                          const float *x, int64_t ldx, const float *bias, sk_activation act,
                          float *y, int64_t ldy) {
  int rc = check_weight(w);
  if (rc == SK_OK) rc = sk_u8_check_f32(w->k, w->n, wscale, m, x, ldx, act, y, ldy);
  if (rc != SK_OK) return rc;
  if (m == 0 || w->n == 0) return SK_OK;
  if (m > 1 && !rows_by_spmv(w, m)) { /* quantize while packing */
    const sk_u8_source s = {NULL, ldx, NULL, 1, NULL, x};
    return run(w, m, &s, wscale, bias, act, y, ldy);
  }
  return sk_u8_source_run_quantized(w, w->k, m, x, ldx, run, wscale, bias, act, y, ldy);
}

int sk_linear_u8s8_g4_f32_static(const sk_csr_s8_g4 *w, const float *wscale, int64_t m, const float *x,
                                 int64_t ldx, float x_scale, int32_t x_zp, const float *bias,
                                 sk_activation act, float *y, int64_t ldy) {
  int rc = check_weight(w);
  if (rc == SK_OK) rc = sk_u8_check_f32(w->k, w->n, wscale, m, x, ldx, act, y, ldy);
  if (rc != SK_OK) return rc;
  if (m == 0 || w->n == 0) return SK_OK;
  return sk_u8_source_run_static(w, w->k, m, x, ldx, x_scale, x_zp, run, wscale, bias, act,
                                 y, ldy);
}
