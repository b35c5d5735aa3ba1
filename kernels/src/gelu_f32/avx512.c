/*
 * gelu_f32/avx512.c - exact (erf) GELU in place, 16 floats per step, masked
 * tail. With z = |x| / sqrt(2):
 *   x <  0: gelu = x * erfc(z) / 2        (no cancellation for tiny results)
 *   x >= 0: gelu = x * (1 - erfc(z) / 2)
 * erfc(z) = t * exp(-z^2 + P(t)), t = 1 / (1 + z/2), P a degree-9 polynomial
 * (the classic Chebyshev fit, fractional error < 1.2e-7 for all z >= 0).
 * -z^2 is carried as zz + its FMA rounding error into the exp range reduction,
 * so large z lose no relative accuracy. Measured: within 5e-7 relative of the
 * double reference (tests/test_gelu.py states the tolerance).
 * Same special values as scalar.c: x < -20 -> -0 (by underflow), +inf -> +inf,
 * NaN -> NaN.
 */
#include <immintrin.h>

#include "../internal.h"
#include "erfc_poly.h"

/* exp(a + b) = *mant * 2^n for a + b in [-104, 89] (caller clamps), |b| small;
 * the caller scales the mantissa first, so only a denormal final result loses
 * bits. */
static inline __m512 exp_sum(__m512 a, __m512 b, __m512 *mant) {
  const __m512 n = _mm512_roundscale_ps(
      _mm512_mul_ps(_mm512_add_ps(a, b), _mm512_set1_ps(SK_LOG2E)),
      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  /* ln2 split: the high part has few bits, so n * hi is exact and a - n*hi
   * has no rounding error when it is small */
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SK_LN2_HI), a);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SK_LN2_LO), r);
  r = _mm512_add_ps(r, b);
  /* e^r, |r| <= 0.35: Taylor to degree 6 (truncation < 1.3e-7 relative) */
  __m512 p = _mm512_set1_ps(1.0f / 720.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  *mant = p;
  return n;
}

static inline __m512 gelu16(__m512 x) {
  /* x < -22 (and -inf) -> -22, whose result underflows to -0 like the scalar
   * reference's x < -20 (true values there are < 1e-88); max(c, x) keeps NaN.
   * |x| clamped to 22 as well, so +inf never reaches the polynomial. */
  x = _mm512_max_ps(_mm512_set1_ps(-22.0f), x);
  const __m512 ax = _mm512_min_ps(_mm512_abs_ps(x), _mm512_set1_ps(22.0f));
  /* t = 1 / (1 + z/2), z = |x|/sqrt(2): 14-bit reciprocal + one Newton step
   * (~2^-27 relative), much cheaper than a division */
  const __m512 d = _mm512_fmadd_ps(ax, _mm512_set1_ps(0.35355339059327376f),
                                   _mm512_set1_ps(1.0f));
  __m512 t = _mm512_rcp14_ps(d);
  t = _mm512_fmadd_ps(t, _mm512_fnmadd_ps(d, t, _mm512_set1_ps(1.0f)), t);
  /* P(t) - ln 2: the constant term absorbs the 1/2 of erfc / 2 */
  __m512 q = SK_ERFC_POLY(_mm512_fmadd_ps, _mm512_set1_ps, t);
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(SK_ERFC_P0 - 0.69314718056f));
  /* -z^2 = -x^2 / 2 from x itself (rounding z first would cost 2 z^2 ulp in
   * the exponent): a + the FMA rounding error folded into b is exact; below
   * -104 the exp is 0 in float anyway */
  const __m512 xx = _mm512_mul_ps(ax, ax);
  const __m512 a = _mm512_max_ps(_mm512_mul_ps(xx, _mm512_set1_ps(-0.5f)),
                                 _mm512_set1_ps(-104.0f));
  const __m512 b = _mm512_fmadd_ps(_mm512_fmsub_ps(ax, ax, xx), _mm512_set1_ps(-0.5f), q);
  __m512 mant;
  const __m512 e2 = exp_sum(a, b, &mant);      /* erfc / 2 = t * mant * 2^e2 */
  const __m512 th = _mm512_mul_ps(t, mant);
  const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  /* x < 0: x * erfc / 2, scaled last (scalef underflows gracefully);
   * otherwise x * (1 - erfc / 2) */
  const __m512 half_erfc = _mm512_scalef_ps(th, e2);
  const __m512 y = _mm512_mul_ps(x, _mm512_sub_ps(_mm512_set1_ps(1.0f), half_erfc));
  return _mm512_mask_scalef_ps(y, neg, _mm512_mul_ps(x, th), e2);
}

void sk_gelu_f32__avx512(float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, gelu16(_mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, gelu16(_mm512_maskz_loadu_ps(m, y + i)));
  }
}
