/*
 * gelu_f32/erfc_poly.h - the constants every vector GELU kernel shares, so the
 * ISAs cannot drift apart (their results are meant to be bit-identical where
 * the operation order is the same, see neon.c).
 *
 * SK_ERFC_POLY(fma, set1, t) is P(t) without its constant term: the classic
 * degree-9 Chebyshev fit of erfc(z) = t * exp(-z^2 + P(t)), t = 1/(1 + z/2),
 * by Horner's rule with `fma(acc, t, c)` = acc * t + c rounded once; the
 * caller adds the last step (SK_ERFC_P0, or SK_ERFC_P0 - ln 2 where the 1/2
 * of erfc / 2 is folded in). SK_LN2_HI + SK_LN2_LO is ln 2 split so that
 * n * SK_LN2_HI is exact in the exp range reduction.
 */
#ifndef SK_GELU_ERFC_POLY_H
#define SK_GELU_ERFC_POLY_H

#define SK_ERFC_P0 (-1.26551223f)
#define SK_LOG2E 1.44269504088896341f
#define SK_LN2_HI 0.693145751953125f
#define SK_LN2_LO 1.428606765330187e-06f

#define SK_ERFC_POLY(fma, set1, t)                                              \
  fma(fma(fma(fma(fma(fma(fma(fma(set1(0.17087277f), t, set1(-0.82215223f)), t, \
                                  set1(1.48851587f)),                           \
                              t, set1(-1.13520398f)),                           \
                          t, set1(0.27886807f)),                                \
                      t, set1(-0.18628806f)),                                   \
                  t, set1(0.09678418f)),                                        \
              t, set1(0.37409196f)),                                            \
          t, set1(1.00002368f))

#endif
