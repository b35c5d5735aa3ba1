/*
 * spmm_u8s8/driver.c - the loops around the sparse int8 micro-kernels.
 *
 *   fp32 X --quantize rows (u8, per-row scale + zero point)-->
 *   --pack--> tiles [K/4][MR][4] u8 (dwords of 4 consecutive k per row)
 *   (u8 input Xq is packed as it is)
 *   W rows split into per-thread ranges of equal cost (blocks + per-row work)
 *   each thread: for every tile, micro-kernel over its rows -> Y (int32 or fp32)
 *
 * M == 1 skips packing: the spmv kernel reads dwords of the row (a zero-padded
 * copy when K % 4 != 0).
 */
#include <string.h>

#include "driver_common.h"

static int64_t col_at(const sk_bsr_s8_1x4 *w, int64_t p) {
  return w->index_bytes == 2 ? (int64_t)((const uint16_t *)w->cols)[p]
                             : (int64_t)((const int32_t *)w->cols)[p];
}

int sk_bsr_s8_1x4_validate(const sk_bsr_s8_1x4 *w, int64_t *bad_row) {
  if (bad_row) *bad_row = -1;
  if (w == NULL || w->n < 0 || w->k < 0 || w->indptr == NULL) return SK_ERR_ARGUMENT;
  if (w->index_bytes != 2 && w->index_bytes != 4) return SK_ERR_ARGUMENT;
  const int64_t kq = (w->k + 3) / 4;
  if ((w->index_bytes == 2 && kq > 65536) || kq > INT32_MAX) return SK_ERR_FORMAT;
  if (w->indptr[0] != 0) {
    if (bad_row) *bad_row = 0;
    return SK_ERR_FORMAT;
  }
  for (int64_t n = 0; n < w->n; ++n) {
    const int64_t b = w->indptr[n], e = w->indptr[n + 1];
    int64_t prev = -1, sum = 0;
    int ok = e >= b && (e == b || (w->cols && w->values && w->row_sums));
    for (int64_t p = b; ok && p < e; ++p) {
      const int64_t c = col_at(w, p);
      ok = c > prev && c < kq;
      for (int j = 0; ok && j < 4; ++j) {
        const int v = w->values[4 * p + j];
        ok = v >= -127 && (v == 0 || 4 * c + j < w->k); /* padding past K is 0 */
        sum += v;
      }
      prev = c;
    }
    if (ok && w->row_sums && w->row_sums[n] != sum) ok = 0;
    if (!ok) {
      if (bad_row) *bad_row = n;
      return SK_ERR_FORMAT;
    }
  }
  return SK_OK;
}

/* The dwords of one row (K bytes) into d[c * MR * 4], zero past K. */
static void pack_row(const uint8_t *row, int64_t k, int MR, uint8_t *d) {
  const int64_t kq = (k + 3) / 4, full = k / 4;
  for (int64_t c = 0; c < full; ++c) memcpy(d + c * MR * 4, row + 4 * c, 4);
  if (full < kq) {
    uint8_t tail[4] = {0, 0, 0, 0};
    memcpy(tail, row + 4 * full, (size_t)(k - 4 * full));
    memcpy(d + full * MR * 4, tail, 4);
  }
}

/* Rows [m0, m0+mr) of the source into xp[(c * MR + i) * 4 ..], zero past K
 * and mr. fp32 rows are quantized first (their zero point and scale into
 * zp[i], xs[i]): into the thread's rows u8 when given, else one at a time on
 * the stack. No u8 copy of all of x: a call allocates one scratch block less
 * (two ~100 KB blocks per call made glibc trim and re-fault the heap: +30 us
 * at M = 128 for BERT's shapes). vpack: the AVX-512 transpose packer. */
static int pack_tile(const sk_u8_source *s, int64_t k, int64_t m0, int64_t mr, int MR,
                     uint8_t *xp, int32_t *zp, float *xs, uint8_t *u8, int vpack) {
  const uint8_t *x = s->xf ? NULL : s->xq + m0 * s->ldx;
  int64_t ldx = s->ldx;
  if (s->xf && u8) {
    if (sk_u8_source_quantize_rows(s, m0, mr, k, u8, k, zp + m0, xs + m0) != SK_OK)
      return SK_ERR_NONFINITE;
    x = u8, ldx = k;
  }
#ifdef SK_ARCH_X86
  if (vpack && x) {
    sk_pack_1x4_tile__avx512vnni(x, ldx, k, mr, MR, xp);
    return SK_OK;
  }
#else
  (void)vpack;
#endif
  const int64_t kq = (k + 3) / 4;
  if (mr < MR) memset(xp, 0, (size_t)(kq * MR * 4));
  for (int64_t i = 0; i < mr; ++i) {
    if (x) {
      pack_row(x + i * ldx, k, MR, xp + i * 4);
      continue;
    }
    uint8_t row[SK_U8_ROW_STACK];
    if (sk_u8_source_quantize_row(s, m0 + i, k, row, zp + m0 + i, xs + m0 + i) != SK_OK)
      return SK_ERR_NONFINITE;
    pack_row(row, k, MR, xp + i * 4);
  }
  return SK_OK;
}

/* pack_tile for the shared scaffold: thread t's u8 rows (fp32 source and the
 * vector packer) sit behind the tiles in the scratch. */
typedef struct {
  int64_t k, tiles_bytes, kp;
  int MR, vpack, rows_u8;
} pack_ctx;

static int pack(const void *ctx, const sk_u8_source *s, int64_t m0, int64_t mr, int R,
                uint8_t *xp, uint8_t *scratch, int32_t *zp, float *xs, int t) {
  const pack_ctx *c = (const pack_ctx *)ctx;
  uint8_t *u8 = c->rows_u8 ? scratch + c->tiles_bytes + (int64_t)t * c->MR * c->kp : NULL;
  return pack_tile(s, c->k, m0, mr, R, xp, zp, xs, u8, c->vpack);
}

/* The u8 activations the kernels run on: rows, per-row zero points and
 * (float output only) per-row scales. */
static int run(const void *weight, int64_t m, const sk_u8_source *s,
               const float *wscale, const float *bias, sk_activation act, void *y,
               int64_t ldy) {
  const sk_bsr_s8_1x4 *w = (const sk_bsr_s8_1x4 *)weight;
  const sk_spmm_u8s8_impl *impl = sk_spmm_u8s8_select();
  const int64_t kq = (w->k + 3) / 4;
  const int64_t nblocks = w->indptr[w->n];
  int64_t bounds[SK_MAX_THREADS + 1];
  const int nt = sk_u8_split(w->indptr, w->n, 4 /* a row's epilogue ~ 4 blocks */,
                             (double)(4 * nblocks + 4 * w->n) * (double)m, bounds);

  sk_spmm_u8s8_tile base = {w->indptr, w->cols, w->index_bytes, w->values, w->row_sums,
                            NULL, kq, 1, NULL, NULL, wscale, bias, act, y, ldy, 0, 0};
  if (m == 1) {
    /* the kernels read whole dwords: the row itself when K % 4 == 0, else a
     * copy padded with zeros */
    uint8_t *row = NULL;
    if (w->k % 4 != 0) {
      row = (uint8_t *)sk_aligned_alloc((size_t)(kq * 4));
      if (row == NULL) return SK_ERR_NOMEM;
      memset(row, 0, (size_t)(kq * 4));
      memcpy(row, s->xq, (size_t)w->k);
    }
    base.xp = row ? row : s->xq;
    base.zp = s->zp;
    base.xscale = s->xscale;
    sk_u8_spmv_run(impl->spmv, &base, nt, bounds);
    sk_aligned_free(row);
    return SK_OK;
  }

  /* outputs of 1 MiB or more streamed (the 32-row AVX-512 kernel; see
   * driver_g4.c) */
  base.stream_y = (double)m * (double)w->n * 4.0 >= (double)(1 << 20);
  /* Tiles: full MR-row tiles, and the rows left over in small tiles of
   * mr_small rows when the ISA has that kernel (M = 8 should not pay for 64). */
  const int MR = impl->mr, MS = impl->spmm_small ? impl->mr_small : impl->mr;
  int64_t nbig = m / MR, rem = m - nbig * MR, nsmall = 0;
  if (rem > 0 && (MS == MR || rem > MR - MS)) ++nbig, rem = 0;
  nsmall = (rem + MS - 1) / MS;
  const int64_t rows_alloc = nbig * MR + nsmall * MS; /* >= m, padded rows */
#ifdef SK_ARCH_X86
  const int vpack = sk_family_isa("spmm_u8s8") == SK_ISA_AVX512VNNI && MR % 16 == 0 &&
                    MS % 16 == 0;
#else
  const int vpack = 0;
#endif
  /* fp32 rows for the vector packer: per-thread u8 rows in the same block */
  const int64_t kp = w->k > 0 ? w->k : 1, rows_u8 = s->xf && vpack ? (int64_t)nt * MR : 0;
  const pack_ctx ctx = {w->k, rows_alloc * kq * 4, kp, MR, vpack, rows_u8 > 0};
  const sk_u8_tiles tiles = {m, nbig, nbig + nsmall, MR, MS, kq * 4,
                             (size_t)(rows_alloc * kq * 4 + rows_u8 * kp), impl->spmm,
                             impl->spmm_small ? impl->spmm_small : impl->spmm, pack, &ctx};
  return sk_u8_tiles_run(&tiles, s, &base, nt, bounds);
}

static int check_weight(const sk_bsr_s8_1x4 *w) {
  if (w == NULL || w->n < 0 || w->k < 0 || w->indptr == NULL) return SK_ERR_ARGUMENT;
  if (w->index_bytes != 2 && w->index_bytes != 4) return SK_ERR_ARGUMENT;
  if (w->n > 0 && (w->row_sums == NULL ||
                   (w->indptr[w->n] > 0 && (w->cols == NULL || w->values == NULL))))
    return SK_ERR_ARGUMENT;
  return SK_OK;
}

int sk_spmm_u8s8_s32(const sk_bsr_s8_1x4 *w, int64_t m, const uint8_t *xq, int64_t ldx,
                     const int32_t *zero_point, int zp_per_row, int32_t *y, int64_t ldy) {
  const int rc = check_weight(w);
  if (rc != SK_OK) return rc;
  return sk_u8_entry_s32(w, w->k, w->n, run, m, xq, ldx, zero_point, zp_per_row, y, ldy);
}

int sk_linear_u8s8_bsr_f32(const sk_bsr_s8_1x4 *w, const float *wscale, int64_t m,
                           const float *x, int64_t ldx, const float *bias,
                           sk_activation act, float *y, int64_t ldy) {
  int rc = check_weight(w);
  if (rc == SK_OK) rc = sk_u8_check_f32(w->k, w->n, wscale, m, x, ldx, act, y, ldy);
  if (rc != SK_OK) return rc;
  if (m == 0 || w->n == 0) return SK_OK;
  if (m > 1 && w->k <= SK_U8_ROW_STACK) { /* quantize while packing */
    const sk_u8_source s = {NULL, ldx, NULL, 1, NULL, x};
    return run(w, m, &s, wscale, bias, act, y, ldy);
  }
  return sk_u8_source_run_quantized(w, w->k, m, x, ldx, run, wscale, bias, act, y, ldy);
}

int sk_linear_u8s8_bsr_f32_static(const sk_bsr_s8_1x4 *w, const float *wscale, int64_t m, const float *x,
                                  int64_t ldx, float x_scale, int32_t x_zp, const float *bias,
                                  sk_activation act, float *y, int64_t ldy) {
  int rc = check_weight(w);
  if (rc == SK_OK) rc = sk_u8_check_f32(w->k, w->n, wscale, m, x, ldx, act, y, ldy);
  if (rc != SK_OK) return rc;
  if (m == 0 || w->n == 0) return SK_OK;
  return sk_u8_source_run_static(w, w->k, m, x, ldx, x_scale, x_zp, run, wscale, bias, act,
                                 y, ldy);
}
