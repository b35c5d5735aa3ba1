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

#ifdef __cplusplus
}
#endif
#endif /* SPARSEKIT_H */
