/*
 * spmm_f32/avx2.c - AVX2 + FMA micro-kernels.
 *
 * spmm: MR = 32 activation rows per tile (4 ymm per nonzero); consecutive
 * nonzeros alternate between two accumulator sets so 8 FMA chains are in
 * flight (16 ymm registers hold 8 accumulators comfortably). Results of
 * NB = 64 weight rows collect in an L1 buffer and are written to Y through
 * 8x8 in-register transposes (full-width stores, not one scalar store per
 * element). Packing x uses the same transpose.
 *
 * spmv (M == 1): x[col] is built from scalar loads combined with vinsertps
 * (gathers are slow on AMD cores), 16 nonzeros per step, then one step of 8;
 * the last < 8 take the 8 positions that end the row, the earlier lanes masked
 * with a compare (clamped positions only for the matrix's first < 8
 * nonzeros), so there is no tail loop.
 */
#include <immintrin.h>
#include <string.h>

#include "../internal.h"

#define MR 32         /* activation rows per tile */
#define MRV (MR / 8)  /* ymm accumulators per nonzero */
#define NB 64         /* weight rows per write-out block (a multiple of 8) */

/* Transpose the 8x8 matrix r[0..7] in place (r[i] lane j -> r[j] lane i). */
static inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  /* u[4h + c] = column c (low half) / c + 4 (high half) of rows 4h..4h+3 */
  for (int h = 0; h < 8; h += 4) {
    u[h] = _mm256_shuffle_ps(t[h], t[h + 2], 0x44);
    u[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], 0xee);
    u[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
    u[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xee);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}

/* y[i * ldy + n + j] = act(buf[j * MR + i] + bias[n + j]) for j < nb, i < mr. */
static inline void write_block(const float *buf, int64_t nb, const sk_spmm_f32_tile *t,
                               int64_t n) {
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t i0 = 0; i0 < t->mr; i0 += 8) {
    const int64_t rows = t->mr - i0;
    for (int64_t j0 = 0; j0 < nb; j0 += 8) {
      const int64_t cn = nb - j0 < 8 ? nb - j0 : 8;
      const float *b = buf + j0 * MR + i0;
      __m256 r[8];
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) r[j] = j < cn ? _mm256_load_ps(b + j * MR) : zero;
      transpose8(r);
      __m256 bias = zero;
      if (t->bias && cn == 8) bias = _mm256_loadu_ps(t->bias + n + j0);
      float *y = t->y + i0 * t->ldy + n + j0;
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        if (i >= rows) break;
        __m256 v = r[i];
        if (cn == 8) {
          if (t->bias) v = _mm256_add_ps(v, bias);
          if (t->act == SK_ACT_RELU) v = _mm256_max_ps(zero, v); /* NaN stays */
          _mm256_storeu_ps(y + i * t->ldy, v);
        } else { /* the last few rows of W: no masked store (slow on AMD) */
          float tmp[8];
          _mm256_storeu_ps(tmp, v);
          for (int64_t j = 0; j < cn; ++j) {
            float s = tmp[j];
            if (t->bias) s += t->bias[n + j0 + j];
            if (t->act == SK_ACT_RELU && !(s > 0.0f)) s = s != s ? s : 0.0f;
            y[i * t->ldy + j] = s;
          }
        }
      }
    }
  }
}

/* xp[kk * ld + i] = x[i * ldx + kk] for i < mr; ld == MR, or mr for the
 * partial tile, which is packed with scalar moves (no masked stores). */
void sk_spmm_f32_pack_32__avx2(const float *x, int64_t ldx, int64_t k, int64_t mr,
                               int64_t ld, float *xp) {
  if (mr != MR) {
    for (int64_t i = 0; i < mr; ++i)
      for (int64_t kk = 0; kk < k; ++kk) xp[kk * ld + i] = x[i * ldx + kk];
    return;
  }
  const int64_t k8 = k & ~(int64_t)7;
  for (int64_t i0 = 0; i0 < MR; i0 += 8) {
    for (int64_t k0 = 0; k0 < k8; k0 += 8) {
      __m256 r[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(x + (i0 + i) * ldx + k0);
      transpose8(r);
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) _mm256_store_ps(xp + (k0 + c) * MR + i0, r[c]);
    }
    for (int64_t kk = k8; kk < k; ++kk)
      for (int64_t i = 0; i < 8; ++i) xp[kk * MR + i0 + i] = x[(i0 + i) * ldx + kk];
  }
}

/* NV vectors of column k of the packed tile: aligned loads for a full tile,
 * masked loads (row stride mr) for the partial one. */
#define XV_FULL(p, q) _mm256_load_ps(t->xp + (int64_t)idx[p] * MR + 8 * (q))
#define XV_PART(p, q) _mm256_maskload_ps(t->xp + (int64_t)idx[p] * ld + 8 * (q), km[q])

#define DEFINE_SPMM(NAME, IDX_T, NV, XV)                                        \
  static void NAME(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {         \
    const IDX_T *idx = (const IDX_T *)t->indices;                               \
    const float *val = t->values;                                               \
    const int64_t ld = t->mr;                                                   \
    __m256i km[NV];                                                             \
    for (int q = 0; q < NV; ++q)                                                \
      km[q] = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(ld - 8 * q)),         \
                                 _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));    \
    (void)km;                                                                   \
    __attribute__((aligned(32))) float buf[NB * MR];                            \
    for (int64_t n = n0; n < n1; n += NB) {                                     \
      const int64_t nb = n1 - n < NB ? n1 - n : NB;                             \
      for (int64_t j = 0; j < nb; ++j) {                                        \
        __m256 a[NV], b[NV];                                                    \
        _Pragma("GCC unroll 4") for (int q = 0; q < NV; ++q) a[q] = b[q] =      \
            _mm256_setzero_ps();                                                \
        int64_t p = t->indptr[n + j];                                           \
        const int64_t e = t->indptr[n + j + 1];                                 \
        for (; p + 2 <= e; p += 2) {                                            \
          const __m256 v0 = _mm256_broadcast_ss(val + p);                       \
          const __m256 v1 = _mm256_broadcast_ss(val + p + 1);                   \
          _Pragma("GCC unroll 4") for (int q = 0; q < NV; ++q) {                \
            a[q] = _mm256_fmadd_ps(v0, XV(p, q), a[q]);                         \
            b[q] = _mm256_fmadd_ps(v1, XV(p + 1, q), b[q]);                     \
          }                                                                     \
        }                                                                       \
        if (p < e) {                                                            \
          const __m256 v = _mm256_broadcast_ss(val + p);                        \
          _Pragma("GCC unroll 4") for (int q = 0; q < NV; ++q)                  \
              a[q] = _mm256_fmadd_ps(v, XV(p, q), a[q]);                        \
        }                                                                       \
        _Pragma("GCC unroll 4") for (int q = 0; q < NV; ++q)                    \
            _mm256_store_ps(buf + j * MR + 8 * q, _mm256_add_ps(a[q], b[q]));   \
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

static inline __m128 x4_from(const float *x, uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  __m128 v = _mm_load_ss(x + a);
  v = _mm_insert_ps(v, _mm_load_ss(x + b), 0x10);
  v = _mm_insert_ps(v, _mm_load_ss(x + c), 0x20);
  return _mm_insert_ps(v, _mm_load_ss(x + d), 0x30);
}
/* 16-bit indices come 4 to a 64-bit load and are split with shifts. */
static inline __m256 x8_u16(const float *x, const uint16_t *idx) {
  uint64_t q, r;
  memcpy(&q, idx, 8);
  memcpy(&r, idx + 4, 8);
  const __m128 lo = x4_from(x, q & 0xffff, (q >> 16) & 0xffff, (q >> 32) & 0xffff, q >> 48);
  const __m128 hi = x4_from(x, r & 0xffff, (r >> 16) & 0xffff, (r >> 32) & 0xffff, r >> 48);
  return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
}
static inline __m256 x8_i32(const float *x, const int32_t *idx) {
  const __m128 lo = x4_from(x, (uint32_t)idx[0], (uint32_t)idx[1], (uint32_t)idx[2],
                            (uint32_t)idx[3]);
  const __m128 hi = x4_from(x, (uint32_t)idx[4], (uint32_t)idx[5], (uint32_t)idx[6],
                            (uint32_t)idx[7]);
  return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
}

/* Positions p .. p+7 clamped to `last`, lanes at or past `e` zeroed. */
#define DEFINE_TAIL8(NAME, IDX_T)                                               \
  static inline __m256 NAME(const float *x, const float *val, const IDX_T *idx,  \
                            int64_t p, int64_t e, __m256 acc) {                 \
    const int64_t last = e - 1;                                                 \
    uint32_t c[8];                                                              \
    float v[8];                                                                 \
    for (int i = 0; i < 8; ++i) {                                               \
      const int64_t q = p + i < last ? p + i : last;                            \
      c[i] = (uint32_t)idx[q];                                                  \
      v[i] = val[q];                                                            \
    }                                                                           \
    const __m256 live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(                 \
        _mm256_set1_epi32((int)(e - p)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))); \
    const __m128 lo = x4_from(x, c[0], c[1], c[2], c[3]);                       \
    const __m128 hi = x4_from(x, c[4], c[5], c[6], c[7]);                       \
    const __m256 xv = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);  \
    return _mm256_fmadd_ps(_mm256_and_ps(live, _mm256_loadu_ps(v)),             \
                           _mm256_and_ps(live, xv), acc);                       \
  }

/* The 8 positions ending at e, lanes before p zeroed: those hold valid
 * columns (this row's or earlier rows'), so nothing needs clamping. */
#define DEFINE_TAIL8_END(NAME, IDX_T, X8)                                       \
  static inline __m256 NAME(const float *x, const float *val, const IDX_T *idx,  \
                            int64_t p, int64_t e, __m256 acc) {                 \
    const __m256 live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(                 \
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)(7 - (e - p))))); \
    return _mm256_fmadd_ps(_mm256_and_ps(live, _mm256_loadu_ps(val + e - 8)),   \
                           _mm256_and_ps(live, X8(x, idx + e - 8)), acc);       \
  }

#define DEFINE_SPMV(NAME, IDX_T, X8, TAIL8, TAIL8_END)                                     \
  static void NAME(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {         \
    const IDX_T *idx = (const IDX_T *)t->indices;                               \
    const float *val = t->values, *x = t->xp;                                   \
    for (int64_t n = n0; n < n1; ++n) {                                         \
      __m256 a0 = _mm256_setzero_ps(), a1 = a0;                                 \
      int64_t p = t->indptr[n];                                                 \
      const int64_t e = t->indptr[n + 1];                                       \
      for (; p + 16 <= e; p += 16) {                                            \
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + p), X8(x, idx + p), a0);     \
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(val + p + 8), X8(x, idx + p + 8), a1); \
      }                                                                         \
      for (; p + 8 <= e; p += 8)                                                \
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + p), X8(x, idx + p), a0);     \
      if (p < e && e >= 8) a1 = TAIL8_END(x, val, idx, p, e, a1);               \
      else if (p < e) a1 = TAIL8(x, val, idx, p, e, a1);                        \
      a0 = _mm256_add_ps(a0, a1);                                               \
      __m128 h = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1)); \
      h = _mm_add_ps(h, _mm_movehl_ps(h, h));                                   \
      t->y[n] = epilogue1(_mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h))), t, n); \
    }                                                                           \
  }

DEFINE_SPMM(spmm_u16, uint16_t, MRV, XV_FULL)
DEFINE_SPMM(spmm_i32, int32_t, MRV, XV_FULL)
DEFINE_SPMM(part1_u16, uint16_t, 1, XV_PART)
DEFINE_SPMM(part1_i32, int32_t, 1, XV_PART)
DEFINE_SPMM(part2_u16, uint16_t, 2, XV_PART)
DEFINE_SPMM(part2_i32, int32_t, 2, XV_PART)
DEFINE_SPMM(part3_u16, uint16_t, 3, XV_PART)
DEFINE_SPMM(part3_i32, int32_t, 3, XV_PART)
DEFINE_SPMM(part4_u16, uint16_t, 4, XV_PART)
DEFINE_SPMM(part4_i32, int32_t, 4, XV_PART)
DEFINE_TAIL8(tail8_u16, uint16_t)
DEFINE_TAIL8(tail8_i32, int32_t)
DEFINE_TAIL8_END(tail8_end_u16, uint16_t, x8_u16)
DEFINE_TAIL8_END(tail8_end_i32, int32_t, x8_i32)
DEFINE_SPMV(spmv_u16, uint16_t, x8_u16, tail8_u16, tail8_end_u16)
DEFINE_SPMV(spmv_i32, int32_t, x8_i32, tail8_i32, tail8_end_i32)

void sk_spmm_f32_32x1__avx2(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {
  static const sk_spmm_f32_fn part[4][2] = {{part1_u16, part1_i32}, {part2_u16, part2_i32},
                                            {part3_u16, part3_i32}, {part4_u16, part4_i32}};
  const int wide = t->index_bytes != 2;
  if (t->mr == MR) (wide ? spmm_i32 : spmm_u16)(t, n0, n1);
  else part[(t->mr - 1) / 8][wide](t, n0, n1);
}

void sk_spmv_f32__avx2(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1) {
  if (t->index_bytes == 2) spmv_u16(t, n0, n1); else spmv_i32(t, n0, n1);
}
