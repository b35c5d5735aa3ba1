/*
 * gelu_f32/scalar.c - exact (erf) GELU in place, the portable reference:
 *   gelu(x) = x * Phi(x) = 0.5 * x * erfc(-x / sqrt(2)),
 * evaluated in double with libm's erfc, so the float result is correctly
 * rounded but for rare double-rounding ties. gelu(-inf) = -0, gelu(+inf) = +inf,
 * NaN stays NaN; below x = -20 the result is -0 (true value < 1e-88).
 */
#include <math.h>

#include "../internal.h"

void sk_gelu_f32__scalar(float *y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double x = y[i];
    if (x < -20.0) {
      y[i] = -0.0f;
      continue;
    }
    y[i] = isinf(x) ? (float)x : (float)(0.5 * x * erfc(-x * 0.70710678118654752440));
  }
}
