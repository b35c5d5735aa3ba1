/*
 * quantize_u8/driver.c - fp32 rows -> u8, asymmetric (math in sparsekit.h).
 * The per-ISA files hold the row loops; this file holds the one place where
 * (scale, zero_point) are derived from a range, and the row/thread loop.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "../internal.h"

void sk_quantize_u8_params(float mn, float mx, float *scale, int32_t *zero_point) {
  if (!(mx > mn)) { /* all-zero row: any scale works, 1 keeps dequant exact */
    *scale = 1.0f;
    *zero_point = 0;
    return;
  }
  /* in double so mx - mn cannot overflow; one rounding to float */
  float s = (float)(((double)mx - (double)mn) / 255.0);
  if (s < FLT_MIN) s = FLT_MIN;
  float z = nearbyintf(-mn / s);
  z = z >= 0.0f ? (z <= 255.0f ? z : 255.0f) : 0.0f; /* NaN (from inf input) -> 0 */
  *scale = s;
  *zero_point = (int32_t)z;
}

void sk_quantize_u8_params_bits(int32_t hi_bits, uint32_t lo_bits, float *scale,
                                int32_t *zero_point) {
  const uint32_t neg = lo_bits >= 0x80000000u ? lo_bits : 0u; /* no sign bit set: min is +0 */
  float mn, mx;
  memcpy(&mx, &hi_bits, sizeof mx);
  memcpy(&mn, &neg, sizeof mn);
  sk_quantize_u8_params(mn, mx, scale, zero_point);
}

int sk_quantize_u8_rows_dynamic(const sk_quantize_u8_impl *q, const float *x, int64_t ldx,
                                int64_t rows, int64_t k, uint8_t *xq, int64_t ldq,
                                float *scale, int32_t *zero_point) {
  if (q->dynamic_rows && rows > 1)
    return q->dynamic_rows(x, ldx, rows, k, xq, ldq, scale, zero_point) == SK_OK
               ? SK_OK : SK_ERR_NONFINITE;
  int bad = 0;
  for (int64_t i = 0; i < rows; ++i)
    bad |= q->dynamic_row(x + i * ldx, k, xq + i * ldq, scale + i, zero_point + i) != SK_OK;
  return bad ? SK_ERR_NONFINITE : SK_OK;
}

/* Rows per call of the block quantizer in sk_quantize_rows_u8: each block's
 * first row is read twice, the others once (plus the re-read from L1). */
#define ROW_BLOCK 16

int sk_quantize_rows_u8(int64_t m, int64_t k, const float *x, int64_t ldx, uint8_t *xq,
                        int64_t ldq, float *scale, int32_t *zero_point) {
  if (m < 0 || k < 0 || ldx < k || ldq < k) return SK_ERR_ARGUMENT;
  if (m > 0 && (x == NULL || xq == NULL || scale == NULL || zero_point == NULL))
    return SK_ERR_ARGUMENT;
  const sk_quantize_u8_impl *impl = sk_quantize_u8_select();
  int bad = 0;
  /* a few operations per element: count each as two multiply-adds */
  const int nt = sk_threads_for_work((double)m * (double)k * 2.0);
  const int64_t t0 = sk_region_begin(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : bad)
#endif
  {
    sk_worker_check_in(t0);
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t i = 0; i < m; i += ROW_BLOCK) {
      const int64_t rows = m - i < ROW_BLOCK ? m - i : ROW_BLOCK;
      bad |= sk_quantize_u8_rows_dynamic(impl, x + i * ldx, ldx, rows, k, xq + i * ldq, ldq,
                                         scale + i, zero_point + i) != SK_OK;
    }
  }
  return bad ? SK_ERR_NONFINITE : SK_OK;
}

int sk_quantize_u8(int64_t m, int64_t k, const float *x, int64_t ldx, float scale,
                   int32_t zero_point, uint8_t *xq, int64_t ldq) {
  if (m < 0 || k < 0 || ldx < k || ldq < k) return SK_ERR_ARGUMENT;
  if (m > 0 && (x == NULL || xq == NULL)) return SK_ERR_ARGUMENT;
  if (!(scale > 0.0f) || !(scale <= FLT_MAX) || zero_point < 0 || zero_point > 255)
    return SK_ERR_ARGUMENT;
  const sk_quantize_u8_impl *impl = sk_quantize_u8_select();
  int bad = 0;
  const int nt = sk_threads_for_work((double)m * (double)k * 2.0);
  const int64_t t0 = sk_region_begin(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : bad)
#endif
  {
    sk_worker_check_in(t0);
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t i = 0; i < m; ++i)
      bad |= impl->static_row(x + i * ldx, k, scale, zero_point, xq + i * ldq) != SK_OK;
  }
  return bad ? SK_ERR_NONFINITE : SK_OK;
}
