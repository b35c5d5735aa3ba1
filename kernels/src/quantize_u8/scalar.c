/*
 * quantize_u8/scalar.c - portable row quantizer, the reference the SIMD
 * files must match bit for bit (x / scale is an IEEE division everywhere;
 * nearbyintf rounds half to even under the default rounding mode).
 */
#include <float.h>
#include <math.h>

#include "../internal.h"

int sk_quantize_row_u8_static__scalar(const float *x, int64_t k, float scale,
                                      int32_t zero_point, uint8_t *q) {
  const float z = (float)zero_point;
  int bad = 0;
  for (int64_t i = 0; i < k; ++i) {
    bad |= !(fabsf(x[i]) <= FLT_MAX);
    float v = nearbyintf(x[i] / scale) + z;
    v = v >= 0.0f ? v : 0.0f; /* NaN -> 0 too: the float->int cast stays defined */
    v = v <= 255.0f ? v : 255.0f;
    q[i] = (uint8_t)v;
  }
  return bad ? SK_ERR_NONFINITE : SK_OK;
}

int sk_quantize_row_u8__scalar(const float *x, int64_t k, uint8_t *q, float *scale,
                               int32_t *zero_point) {
  float mn = 0.0f, mx = 0.0f;
  int bad = 0;
  for (int64_t i = 0; i < k; ++i) {
    const float v = x[i];
    bad |= !(fabsf(v) <= FLT_MAX);
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
  }
  sk_quantize_u8_params(mn, mx, scale, zero_point);
  const int rc = sk_quantize_row_u8_static__scalar(x, k, *scale, *zero_point, q);
  return bad ? SK_ERR_NONFINITE : rc;
}
