/*
 * sparsekit.h - the public C API of the sparsekit kernel core.
 *
 * One header, no Python, C11. Link against libsparsekit (static or shared,
 * built by kernels/CMakeLists.txt). All functions are thread-safe; kernels
 * parallelise internally with OpenMP.
 *
 * Conventions (see DESIGN.md): a linear layer is Y[M,N] = X[M,K] * W[N,K]^T + b.
 * M is tokens/batch, W is the sparse or quantized operand, stored row-major
 * [out, in] like PyTorch. Row strides are given in elements.
 *
 * The kernels trust their arguments: validate once at the boundary (the Python
 * layer does; sk_csr_validate is there for C users), then run unchecked.
 */
#ifndef SPARSEKIT_H
#define SPARSEKIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SK_VERSION_MAJOR 0
#define SK_VERSION_MINOR 1
#define SK_VERSION_PATCH 0
#define SK_VERSION_STRING "0.1.0"

/* ---- status codes ------------------------------------------------------ */
enum {
  SK_OK = 0,
  SK_ERR_ARGUMENT = -1,    /* a null pointer, negative size or bad enum */
  SK_ERR_UNSUPPORTED = -2, /* the CPU lacks the requested ISA           */
  SK_ERR_NOMEM = -3,       /* scratch allocation failed                 */
  SK_ERR_FORMAT = -4,      /* a matrix failed validation                */
  SK_ERR_NONFINITE = -5    /* fp32 input holds NaN or infinity          */
};

/* ---- instruction sets and dispatch ------------------------------------- */
typedef enum {
  SK_ISA_SCALAR = 0,
  SK_ISA_AVX2 = 1,       /* AVX2 + FMA                                    */
  SK_ISA_AVX512 = 2,     /* AVX-512 F/BW/VL/DQ                            */
  SK_ISA_AVX512VNNI = 3, /* AVX-512 + VNNI (vpdpbusd)                     */
  SK_ISA_NEON = 4,       /* AArch64 Advanced SIMD                         */
  SK_ISA_COUNT = 5
} sk_isa;

/* Name of an ISA ("scalar", "avx2", ...); NULL for an unknown value. */
const char *sk_isa_name(sk_isa isa);
/* 1 when this CPU (and OS) can run code for `isa`, else 0. */
int sk_cpu_supports(sk_isa isa);
/* Best ISA this CPU supports among those compiled in. */
sk_isa sk_best_isa(void);
/* Force every kernel family to `isa` (or the best below it that the family
 * has). Returns SK_ERR_UNSUPPORTED when the CPU lacks it. */
int sk_set_isa(sk_isa isa);
/* The ISA currently forced (sk_best_isa() unless sk_set_isa was called). */
sk_isa sk_get_isa(void);
/* ISA actually used by a kernel family ("spmm_f32", ...). -1 if unknown. */
int sk_family_isa(const char *family);

/* ---- threads ----------------------------------------------------------- */
/* n >= 1 sets the thread count; n == 0 follows OpenMP's default
 * (omp_get_max_threads of the calling thread). */
void sk_set_num_threads(int n);
int sk_get_num_threads(void);

/* ---- fp32 CSR x dense -------------------------------------------------- */
/* A CSR weight W[N,K]: row n holds values[indptr[n] .. indptr[n+1]) at
 * columns indices[...]. Column indices are uint16 when K <= 65536
 * (index_bytes == 2) and int32 otherwise (index_bytes == 4). */
typedef struct {
  int64_t n, k;
  const int64_t *indptr; /* N + 1 entries, indptr[0] == 0, monotone     */
  const void *indices;   /* nnz entries, sorted and unique within a row */
  int index_bytes;       /* 2 or 4                                      */
  const float *values;   /* nnz entries                                 */
} sk_csr_f32;

typedef enum { SK_ACT_NONE = 0, SK_ACT_RELU = 1 } sk_activation;

/* Check a CSR weight (sizes, indptr, index range, sorted/unique). Returns
 * SK_OK or SK_ERR_FORMAT; `bad_row` (if not NULL) receives the first bad row. */
int sk_csr_f32_validate(const sk_csr_f32 *w, int64_t *bad_row);

/* Y[m, n] = act(sum_k X[m, k] * W[n, k] + bias[n]) for m < M, n < N.
 * x: M rows of K floats, row stride ldx >= K. y: M rows of N, ldy >= N.
 * bias may be NULL. Uses scratch of at most M*K floats (one copy of X). */
int sk_linear_csr_f32(const sk_csr_f32 *w, int64_t m, const float *x,
                      int64_t ldx, const float *bias, sk_activation act,
                      float *y, int64_t ldy);

/* ---- u8 activation quantization (asymmetric, per row) ------------------ *
 * The exact math, identical on every ISA and in sparsekit's NumPy reference
 * (all float32 unless said; rint = round half to even, the default mode):
 *   mn = min(0, min_k x[k]),  mx = max(0, max_k x[k])   (the range holds 0)
 *   all-zero row (mx == mn):  scale = 1, zero_point = 0, q = 0
 *   otherwise scale = (float)(((double)mx - (double)mn) / 255.0), raised to
 *            FLT_MIN if it underflows below it,
 *            zero_point = (int)clamp(rint(-mn / scale), 0, 255)
 *   q[k] = (uint8)clamp(rint(x[k] / scale) + zero_point, 0, 255)
 * (a true division, not a multiply by 1/scale). x ~ (q - zero_point) * scale.
 * Rows of x hold k floats at stride ldx >= k; rows of xq get k bytes at
 * stride ldq >= k (bytes past k are not written). Returns SK_ERR_NONFINITE
 * if x holds NaN or infinity (the outputs are then unspecified). */
int sk_quantize_rows_u8(int64_t m, int64_t k, const float *x, int64_t ldx, uint8_t *xq,
                        int64_t ldq, float *scale, int32_t *zero_point);

/* Static (per-tensor) quantization with a given scale > 0 and zero_point in
 * [0, 255]: q = (uint8)clamp(rint(x / scale) + zero_point, 0, 255). */
int sk_quantize_u8(int64_t m, int64_t k, const float *x, int64_t ldx, float scale,
                   int32_t zero_point, uint8_t *xq, int64_t ldq);

/* ---- sparse int8: 1x4-blocked int8 weight x u8 activations -------------- */
/* A pruned symmetric-int8 weight W[N,K] kept as 1x4 blocks along K (the 4
 * bytes one vpdpbusd lane multiplies). Block p of row n, p in
 * [indptr[n], indptr[n+1]), holds q[n, 4c .. 4c+3] with c = cols[p] in
 * values[4p .. 4p+3]; partially filled blocks are zero-padded, and so are
 * positions at or past K. cols are sorted and unique within a row, uint16 when
 * ceil(K/4) <= 65536 (index_bytes == 2) else int32. row_sums[n] = sum_k q[n,k]
 * folds the activation zero points: sum_k (x - zp) q = sum_k x q - zp row_sums. */
typedef struct {
  int64_t n, k;
  const int64_t *indptr; /* N + 1 entries, indptr[0] == 0, monotone  */
  const void *cols;      /* block columns (k / 4), nblocks entries    */
  int index_bytes;       /* 2 or 4                                    */
  const int8_t *values;  /* 4 * nblocks int8 in [-127, 127]            */
  const int32_t *row_sums;
} sk_bsr_s8_1x4;

/* Check sizes, indptr, block columns (range, sorted/unique), value range,
 * zero padding past K and row_sums. SK_OK or SK_ERR_FORMAT (+ first bad row). */
int sk_bsr_s8_1x4_validate(const sk_bsr_s8_1x4 *w, int64_t *bad_row);

/* Exact int32: y[m, n] = sum_k (xq[m, k] - zp[m]) * q[n, k] for m < M, n < N.
 * zero_point holds M entries (zp_per_row != 0) or one; values 0..255.
 * Exact whenever the true sum fits in int32 (always for K <= 66000).
 * xq: M rows of K bytes, ldx >= K; y: ldy >= N. Scratch: one packed copy of xq. */
int sk_spmm_u8s8_s32(const sk_bsr_s8_1x4 *w, int64_t m, const uint8_t *xq,
                     int64_t ldx, const int32_t *zero_point, int zp_per_row,
                     int32_t *y, int64_t ldy);

/* Dynamically quantized linear: each row of x is quantized to u8 (per-row
 * scale and zero point, sk_quantize_rows_u8), multiplied exactly, then
 * y[m, n] = act(acc * (xscale[m] * wscale[n]) + bias[n]). wscale: N floats,
 * bias may be NULL. Scratch: one u8 copy of x plus its packed copy. */
int sk_linear_u8s8_bsr_f32(const sk_bsr_s8_1x4 *w, const float *wscale, int64_t m,
                           const float *x, int64_t ldx, const float *bias,
                           sk_activation act, float *y, int64_t ldy);

#ifdef __cplusplus
}
#endif
#endif /* SPARSEKIT_H */
