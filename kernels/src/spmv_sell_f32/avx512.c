/*
 * spmv_sell_f32/avx512.c - AVX-512 kernel for the sliced ELL (sparsekit.h).
 *
 * One zmm lane per row of a 16-row slice. Per group: x's 32-column window in
 * two zmm, the group's 4 steps of indices in one zmm (byte j = step j), and
 * per step one vpermt2ps (it reads only the low 5 bits of each dword, so step
 * j's indices are just the word shifted by 8 j), one masked FMA (the mask is
 * the slot's bit 7: empty slots never touch x, so inf/NaN in x columns a row
 * does not use cannot leak into it). Up to 4 rows of x share each group's
 * index and value loads; M = 1 keeps 4 accumulators (one per step), M = 2..4
 * 4 or 2 per row.
 * Measured on Zen 5 (M = 1, 1 thread, C driver): 0.26 cycles per nonzero on
 * minilm_ffn_up at 90% sparsity (W in L2), 0.34 on the BERT shapes (W from
 * L3), against 0.7-0.9 for the CSR spmv kernel; masking the FMA costs nothing
 * measurable against an unmasked one.
 * Software prefetch of the groups 4 ahead (5 lines each) pays while W is
 * small: at M = 1 / 2, minilm_ffn_up 13% / 14% faster at 90% (0.5 MB of
 * groups) and 4% / 15% at 70% (1.1 MB), bert_ffn_up at 90% (2.0 MB) 5% / 20%,
 * bert_ffn_down 3%; at 70% (4 MB) BERT ran 5-12% slower with it. So it runs
 * for weights up to 2 MiB, at M <= 2 (not measured above). Distances of 2
 * and 8 groups were no better than 4.
 */
#include <immintrin.h>
#include <stdint.h>

#include "../internal.h"

#define MB 4 /* rows of x per pass over a slice's groups */
#define PF_GROUPS 4 /* prefetch distance, in groups (320 bytes each) */
#define PF_MAX_BYTES (2 << 20) /* prefetch only weights up to this size */


static inline __attribute__((always_inline)) void slice_rows(
    const sk_sell_f32 *w, int64_t s, const int mb, const int short_k, const int pf,
    const float *x,
    int64_t ldx, const float *bias, sk_activation act, float *y, int64_t ldy) {
  enum { NA = 4 };
  const int na = mb <= 2 ? 4 : 2; /* accumulators per row */
  __m512 acc[MB][NA];
  for (int r = 0; r < MB; ++r)
    for (int q = 0; q < NA; ++q) acc[r][q] = _mm512_setzero_ps();
  const __m512i used = _mm512_set1_epi32(0x80);
  const __mmask16 klo = (__mmask16)(w->k >= 16 ? 0xffff : (1u << w->k) - 1);
  const __mmask16 khi = (__mmask16)(w->k >= 32 ? 0xffff : w->k > 16 ? (1u << (w->k - 16)) - 1 : 0);
  const int64_t g1 = w->group_ptr[s + 1];
  for (int64_t g = w->group_ptr[s]; g < g1; ++g) {
    const __m512i id = _mm512_loadu_si512((const void *)(w->index + g * 16));
    const float *vg = w->values + g * 64;
    if (pf) { /* addresses may lie past the arrays: computed on integers, never faulting */
      const char *pv = (const char *)((uintptr_t)vg + PF_GROUPS * 256);
      const char *pi = (const char *)((uintptr_t)(w->index + g * 16) + PF_GROUPS * 64);
      _mm_prefetch(pv, _MM_HINT_T0);
      _mm_prefetch(pv + 64, _MM_HINT_T0);
      _mm_prefetch(pv + 128, _MM_HINT_T0);
      _mm_prefetch(pv + 192, _MM_HINT_T0);
      _mm_prefetch(pi, _MM_HINT_T0);
    }
    __m512i ij[4];
    __mmask16 kj[4];
    __m512 v[4];
    for (int j = 0; j < 4; ++j) {
      ij[j] = j ? _mm512_srli_epi32(id, 8 * j) : id;
      kj[j] = _mm512_test_epi32_mask(ij[j], used);
      v[j] = _mm512_loadu_ps(vg + 16 * j);
    }
    const float *xw = x + w->window[g];
    for (int r = 0; r < mb; ++r, xw += ldx) {
      const __m512 xlo = short_k ? _mm512_maskz_loadu_ps(klo, xw) : _mm512_loadu_ps(xw);
      const __m512 xhi = short_k ? _mm512_maskz_loadu_ps(khi, xw + 16) : _mm512_loadu_ps(xw + 16);
      for (int j = 0; j < 4; ++j) {
        const __m512 xv = _mm512_permutex2var_ps(xlo, ij[j], xhi);
        const int q = j % na;
        acc[r][q] = _mm512_mask3_fmadd_ps(v[j], xv, acc[r][q], kj[j]);
      }
    }
  }
  const int64_t left = w->n - 16 * s;
  const __mmask16 out = (__mmask16)(left >= 16 ? 0xffff : (1u << left) - 1);
  const __m512 b = bias ? _mm512_maskz_loadu_ps(out, bias + 16 * s) : _mm512_setzero_ps();
  const __m512 zero = _mm512_setzero_ps();
  for (int r = 0; r < mb; ++r) {
    __m512 t = na == 4 ? _mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]),
                                       _mm512_add_ps(acc[r][2], acc[r][3]))
                       : _mm512_add_ps(acc[r][0], acc[r][1]);
    t = _mm512_add_ps(t, b);
    if (act == SK_ACT_RELU) t = _mm512_max_ps(zero, t); /* NaN stays */
    _mm512_mask_storeu_ps(y + r * ldy + 16 * s, out, t);
  }
}

#define RUN(MBC, SHORT, PF) slice_rows(w, s, MBC, SHORT, PF, xr, ldx, bias, act, yr, ldy)

void sk_spmv_sell_f32__avx512(const sk_sell_f32 *w, int64_t s0, int64_t s1, int64_t m,
                              const float *x, int64_t ldx, const float *bias,
                              sk_activation act, float *y, int64_t ldy) {
  const int short_k = w->k < 32; /* windows past K: masked loads of x */
  const int64_t groups = w->group_ptr[(w->n + 15) / 16];
  const int pf = groups * 320 <= PF_MAX_BYTES;
  for (int64_t s = s0; s < s1; ++s)
    for (int64_t r0 = 0; r0 < m; r0 += MB) {
      const float *xr = x + r0 * ldx;
      float *yr = y + r0 * ldy;
      const int64_t mb = m - r0 < MB ? m - r0 : MB;
      if (short_k) {
        RUN((int)mb, 1, 0);
      } else if (mb == 1) {
        if (pf) RUN(1, 0, 1); else RUN(1, 0, 0);
      } else if (mb == 2) {
        if (pf) RUN(2, 0, 1); else RUN(2, 0, 0);
      } else if (mb == 3) {
        RUN(3, 0, 0);
      } else {
        RUN(4, 0, 0);
      }
    }
}
