/*
 * spmm_f32/avx512.c - AVX-512 micro-kernels.
 *
 * spmm: MR = SK_SPMM_F32_MR_AVX512 activation rows per tile (MR / 16 zmm
 * accumulators). Each nonzero w[n,k] is broadcast and FMA'd with the packed
 * MR-vector of column k. FMA latency x throughput needs about 8 independent
 * chains in flight, so with fewer than 8 accumulators two nonzeros go to two
 * accumulator sets that are summed at the end of the row.
 * Results for 16 weight rows collect in a small L1 buffer; the write-out then
 * transposes 16x16 blocks in registers so Y is written with full-width
 * (masked) stores instead of one scalar store per element.
 *
 * spmv (M == 1): a gather per 16 nonzeros is slow on AMD cores, so x[col] is
 * loaded with scalar loads into 8 independent accumulators (no long FMA
 * chain), and four rows are interleaved to overlap their reductions.
 */
#include <immintrin.h>

#include "../internal.h"

#define MR 64          /* activation rows per tile */
#define MRV (MR / 16)  /* zmm accumulators per nonzero */
#define U (8 / MRV)    /* accumulator sets, so 8 FMA chains are in flight */
#define NB 64          /* weight rows per write-out block (a multiple of 16) */

/* Transpose the 16x16 matrix r[0..15] in place (r[i] lane j -> r[j] lane i). */
static inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  /* t[i] holds per 128-bit lane L columns 4L, 4L+1 of rows i, i+1 interleaved;
   * t[i + 1] columns 4L+2, 4L+3 */
  for (int i = 0; i < 16; i += 4) {
    for (int h = 0; h < 2; ++h) {
      const __m512d a = _mm512_castps_pd(t[i + h]), b = _mm512_castps_pd(t[i + 2 + h]);
      r[i + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
      r[i + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    }
  }
  /* r[4q + c] now holds, per 128-bit lane L, column 4L + c of rows 4q..4q+3 */
  for (int c = 0; c < 4; ++c) {
    t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);      /* lanes 0,2 | 0,2 */
    t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);  /* lanes 1,3 | 1,3 */
    t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);       /* lane 0 */
    r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xdd);   /* lane 2 */
    r[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88); /* lane 1 */
    r[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xdd); /* lane 3 */
  }
}

/* y[i * ldy + n + j] = act(buf[j * MR + i] + bias[n + j]) for j < nb, i < mr,
 * in 16x16 blocks; the blocks of one group of 16 Y rows are written one after
 * the other so each Y row gets a contiguous run of up to NB floats. */
static inline void write_block(const float *buf, int64_t nb, const sk_spmm_f32_tile *t,
                               int64_t n) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t i0 = 0; i0 < t->mr; i0 += 16) {
    const int64_t rows = t->mr - i0;
    for (int64_t j0 = 0; j0 < nb; j0 += 16) {
      const int64_t cn = nb - j0 < 16 ? nb - j0 : 16;
      const __mmask16 cols = (__mmask16)((1u << cn) - 1);
      const float *b = buf + j0 * MR + i0;
      __m512 r[16];
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) r[j] = j < cn ? _mm512_load_ps(b + j * MR) : zero;
      transpose16(r);
      const __m512 bias = t->bias ? _mm512_maskz_loadu_ps(cols, t->bias + n + j0) : zero;
      float *y = t->y + i0 * t->ldy + n + j0;
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) {
        if (i >= rows) break;
        __m512 v = r[i];
        if (t->bias) v = _mm512_add_ps(v, bias);
        if (t->act == SK_ACT_RELU) v = _mm512_max_ps(zero, v); /* NaN stays */
        _mm512_mask_storeu_ps(y + i * t->ldy, cols, v);
      }
    }
  }
}

/* xp[k * MR + i] = x[i * ldx + k] for i < mr, 0 for mr <= i < MR: one copy of
 * the tile, transposed 16x16 at a time in registers. */
void sk_spmm_f32_pack_64__avx512(const float *x, int64_t ldx, int64_t k, int64_t mr,
                                 float *xp) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t i0 = 0; i0 < MR; i0 += 16) {
    const int64_t rows = mr - i0;
    for (int64_t k0 = 0; k0 < k; k0 += 16) {
      const int64_t kn = k - k0 < 16 ? k - k0 : 16;
      const __mmask16 cols = (__mmask16)((1u << kn) - 1);
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i)
        r[i] = i < rows ? _mm512_maskz_loadu_ps(cols, x + (i0 + i) * ldx + k0) : zero;
      transpose16(r);
#pragma GCC unroll 16
      for (int c = 0; c < 16; ++c)
        if (c < kn) _mm512_store_ps(xp + (k0 + c) * MR + i0, r[c]);
    }
  }
}

#define XV(p, q) _mm512_load_ps(t->xp + (int64_t)idx[p] * MR + 16 * (q))

#define DEFINE_SPMM(NAME, IDX_T)                                                \
  static void NAME(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {         \
    const IDX_T *idx = (const IDX_T *)t->indices;                               \
    const float *val = t->values;                                               \
    __attribute__((aligned(64))) float buf[NB * MR];                            \
    for (int64_t n = n0; n < n1; n += NB) {                                     \
      const int64_t nb = n1 - n < NB ? n1 - n : NB;                             \
      for (int64_t j = 0; j < nb; ++j) {                                        \
        __m512 a[U][MRV];                                                       \
        _Pragma("GCC unroll 8") for (int u = 0; u < U; ++u)                     \
        _Pragma("GCC unroll 8") for (int q = 0; q < MRV; ++q)                   \
            a[u][q] = _mm512_setzero_ps();                                      \
        int64_t p = t->indptr[n + j];                                           \
        const int64_t e = t->indptr[n + j + 1];                                 \
        for (; p + U <= e; p += U) {                                            \
          _Pragma("GCC unroll 8") for (int u = 0; u < U; ++u) {                 \
            const __m512 v = _mm512_set1_ps(val[p + u]);                        \
            _Pragma("GCC unroll 8") for (int q = 0; q < MRV; ++q)               \
                a[u][q] = _mm512_fmadd_ps(v, XV(p + u, q), a[u][q]);            \
          }                                                                     \
        }                                                                       \
        for (; p < e; ++p) {                                                    \
          const __m512 v = _mm512_set1_ps(val[p]);                              \
          _Pragma("GCC unroll 8") for (int q = 0; q < MRV; ++q)                 \
              a[0][q] = _mm512_fmadd_ps(v, XV(p, q), a[0][q]);                  \
        }                                                                       \
        _Pragma("GCC unroll 8") for (int u = 1; u < U; ++u)                     \
        _Pragma("GCC unroll 8") for (int q = 0; q < MRV; ++q)                   \
            a[0][q] = _mm512_add_ps(a[0][q], a[u][q]);                          \
        _Pragma("GCC unroll 8") for (int q = 0; q < MRV; ++q)                   \
            _mm512_store_ps(buf + j * MR + 16 * q, a[0][q]);                    \
      }                                                                         \
      write_block(buf, nb, t, n);                                               \
    }                                                                           \
  }

/* ---- M == 1 ------------------------------------------------------------- */
static inline float epilogue1(float v, const sk_spmm_f32_tile *t, int64_t n) {
  if (t->bias) v += t->bias[n];
  if (t->act == SK_ACT_RELU && !(v > 0.0f)) v = v != v ? v : 0.0f;
  return v;
}

/* One row's dot product: 8 partial sums in a ymm-free scalar form the compiler
 * keeps in registers; the scalar loads need no gather. */
#define DEFINE_SPMV(NAME, IDX_T)                                                \
  static void NAME(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {         \
    const IDX_T *idx = (const IDX_T *)t->indices;                               \
    const float *val = t->values, *x = t->xp;                                   \
    for (int64_t n = n0; n < n1; ++n) {                                         \
      float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;                         \
      float s4 = 0.0f, s5 = 0.0f, s6 = 0.0f, s7 = 0.0f;                         \
      int64_t p = t->indptr[n];                                                 \
      const int64_t e = t->indptr[n + 1];                                       \
      for (; p + 8 <= e; p += 8) {                                              \
        s0 = __builtin_fmaf(val[p], x[idx[p]], s0);                             \
        s1 = __builtin_fmaf(val[p + 1], x[idx[p + 1]], s1);                     \
        s2 = __builtin_fmaf(val[p + 2], x[idx[p + 2]], s2);                     \
        s3 = __builtin_fmaf(val[p + 3], x[idx[p + 3]], s3);                     \
        s4 = __builtin_fmaf(val[p + 4], x[idx[p + 4]], s4);                     \
        s5 = __builtin_fmaf(val[p + 5], x[idx[p + 5]], s5);                     \
        s6 = __builtin_fmaf(val[p + 6], x[idx[p + 6]], s6);                     \
        s7 = __builtin_fmaf(val[p + 7], x[idx[p + 7]], s7);                     \
      }                                                                         \
      for (; p < e; ++p) s0 = __builtin_fmaf(val[p], x[idx[p]], s0);            \
      t->y[n] = epilogue1(((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)), t, n); \
    }                                                                           \
  }

DEFINE_SPMM(spmm_u16, uint16_t)
DEFINE_SPMM(spmm_i32, int32_t)
DEFINE_SPMV(spmv_u16, uint16_t)
DEFINE_SPMV(spmv_i32, int32_t)

void sk_spmm_f32_64x1__avx512(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmm_u16(t, n0, n1); else spmm_i32(t, n0, n1);
}

void sk_spmv_f32__avx512(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmv_u16(t, n0, n1); else spmv_i32(t, n0, n1);
}
