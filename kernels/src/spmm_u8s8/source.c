/*
 * spmm_u8s8/source.c - the u8 activations both sparse int8 drivers (1x4
 * blocks in driver.c, groups of 4 in driver_g4.c) run on: checking the
 * caller's u8 rows, quantizing fp32 rows into them, and the per-row zero
 * points / scales padded to whole tiles.
 */
#include <float.h>

#include "../internal.h"

int sk_u8_source_check(int64_t m, int64_t k, const uint8_t *xq, int64_t ldx,
                       const int32_t *zero_point, int zp_per_row, const void *y,
                       int64_t ldy, int64_t n) {
  if (m < 0 || (m > 0 && (xq == NULL || y == NULL || zero_point == NULL)))
    return SK_ERR_ARGUMENT;
  if (ldx < k || ldy < n) return SK_ERR_ARGUMENT;
  const int64_t nzp = zp_per_row ? m : (m > 0);
  for (int64_t i = 0; i < nzp; ++i)
    if (zero_point[i] < 0 || zero_point[i] > 255) return SK_ERR_ARGUMENT;
  return SK_OK;
}

int sk_u8_source_run_quantized(const void *w, int64_t k, int64_t m, const float *x,
                               int64_t ldx, sk_u8_source_fn run, const float *wscale,
                               const float *bias, sk_activation act, float *y,
                               int64_t ldy) {
  /* one u8 copy of x (rows of K bytes) plus per-row scale and zero point;
   * one short row lives on the stack (M == 1 calls take ~15 us in all) */
  __attribute__((aligned(64))) uint8_t row[SK_U8_ROW_STACK];
  float row_xs;
  int32_t row_zp;
  const int one = m == 1 && k <= SK_U8_ROW_STACK;
  uint8_t *xq = one ? row : (uint8_t *)sk_aligned_alloc((size_t)(m * (k > 0 ? k : 1)));
  float *xs = one ? &row_xs : (float *)sk_aligned_alloc((size_t)m * sizeof(float));
  int32_t *zp = one ? &row_zp : (int32_t *)sk_aligned_alloc((size_t)m * sizeof(int32_t));
  int rc = SK_ERR_NOMEM;
  if (xq != NULL && xs != NULL && zp != NULL) {
    if (sk_threads_for_work((double)m * (double)k * 2.0) == 1) {
      /* sk_quantize_rows_u8's row loop without its parallel region (~1 us) */
      const sk_u8_source f = {NULL, ldx, NULL, 1, NULL, x};
      rc = sk_u8_source_quantize_rows(&f, 0, m, k, xq, k, zp, xs);
    } else {
      rc = sk_quantize_rows_u8(m, k, x, ldx, xq, k, xs, zp);
    }
    if (rc == SK_OK) {
      const sk_u8_source s = {xq, k, zp, 1, xs, NULL};
      rc = run(w, m, &s, wscale, bias, act, y, ldy);
    }
  }
  if (!one) {
    sk_aligned_free(xq);
    sk_aligned_free(xs);
    sk_aligned_free(zp);
  }
  return rc;
}

int sk_u8_source_run_static(const void *w, int64_t k, int64_t m, const float *x,
                            int64_t ldx, float x_scale, int32_t x_zp, sk_u8_source_fn run,
                            const float *wscale, const float *bias, sk_activation act,
                            float *y, int64_t ldy) {
  if (!(x_scale > 0.0f) || !(x_scale <= FLT_MAX) || x_zp < 0 || x_zp > 255)
    return SK_ERR_ARGUMENT;
  /* one short row lives on the stack, as in sk_u8_source_run_quantized */
  __attribute__((aligned(64))) uint8_t row[SK_U8_ROW_STACK];
  const int one = m == 1 && k <= SK_U8_ROW_STACK;
  uint8_t *xq = one ? row : (uint8_t *)sk_aligned_alloc((size_t)(m * (k > 0 ? k : 1)));
  float *xs = one ? &x_scale : (float *)sk_aligned_alloc((size_t)m * sizeof(float));
  int rc = SK_ERR_NOMEM;
  if (xq != NULL && xs != NULL) {
    if (sk_threads_for_work((double)m * (double)k * 2.0) == 1) {
      /* sk_quantize_u8's row loop without its parallel region (~1 us) */
      const sk_quantize_u8_impl *q = sk_quantize_u8_select();
      rc = SK_OK;
      for (int64_t i = 0; i < m && rc == SK_OK; ++i)
        rc = q->static_row(x + i * ldx, k, x_scale, x_zp, xq + i * k) == SK_OK
                 ? SK_OK : SK_ERR_NONFINITE;
    } else {
      rc = sk_quantize_u8(m, k, x, ldx, x_scale, x_zp, xq, k);
    }
    if (rc == SK_OK) {
      for (int64_t i = 0; i < m; ++i) xs[i] = x_scale;
      const sk_u8_source s = {xq, k, &x_zp, 0, xs, NULL};
      rc = run(w, m, &s, wscale, bias, act, y, ldy);
    }
  }
  if (!one) {
    sk_aligned_free(xq);
    sk_aligned_free(xs);
  }
  return rc;
}

int sk_u8_source_row_params(const sk_u8_source *s, int64_t m, int64_t rows,
                            int32_t **zp, float **xscale) {
  *zp = (int32_t *)sk_aligned_alloc((size_t)rows * sizeof(int32_t));
  const int fp = s->xscale != NULL || s->xf != NULL;
  *xscale = fp ? (float *)sk_aligned_alloc((size_t)rows * sizeof(float)) : NULL;
  if (*zp == NULL || (fp && *xscale == NULL)) {
    sk_aligned_free(*zp);
    sk_aligned_free(*xscale);
    return SK_ERR_NOMEM;
  }
  if (s->xf) { /* filled while packing; padding rows zero */
    for (int64_t i = m; i < rows; ++i) (*zp)[i] = 0, (*xscale)[i] = 0.0f;
    return SK_OK;
  }
  for (int64_t i = 0; i < rows; ++i) { /* rows past m are padding: zero */
    (*zp)[i] = i < m ? s->zp[s->zp_per_row ? i : 0] : 0;
    if (*xscale) (*xscale)[i] = i < m ? s->xscale[i] : 0.0f;
  }
  return SK_OK;
}

int sk_u8_source_quantize_row(const sk_u8_source *s, int64_t i, int64_t k, uint8_t *row,
                              int32_t *zp, float *xscale) {
  /* the row function of sk_quantize_rows_u8: the same u8 values and params */
  return sk_quantize_u8_select()->dynamic_row(s->xf + i * s->ldx, k, row, xscale, zp) == SK_OK
             ? SK_OK : SK_ERR_NONFINITE;
}

int sk_u8_source_quantize_rows(const sk_u8_source *s, int64_t i, int64_t rows, int64_t k,
                               uint8_t *u8, int64_t ldq, int32_t *zp, float *xscale) {
  return sk_quantize_u8_rows_dynamic(sk_quantize_u8_select(), s->xf + i * s->ldx, s->ldx, rows,
                                     k, u8, ldq, xscale, zp);
}
