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
 * layer does; the sk_*_validate functions are there for C users), then run
 * unchecked.
 *
 * How to call it (a worked example: kernels/examples/mlp_forward.c):
 * - Status: an int result is SK_OK (0) or a negative SK_ERR_* code (below).
 *   Each call checks its sizes, strides, pointers and enums (SK_ERR_ARGUMENT),
 *   not the contents of a weight: run its format's sk_*_validate once.
 * - Memory: the caller owns every buffer, including the prepared weights
 *   (sized by sk_qmatrix_s8_packed_bytes, sk_gemm_f32_packed_floats,
 *   sk_sell_f32_count_groups; the packed int8 and fp32 GEMM weights 64-byte
 *   aligned). Calls whose comment names scratch malloc it and free it before
 *   returning (SK_ERR_NOMEM if that fails); sk_csr_f32_shared_build returns an
 *   object for sk_csr_f32_shared_free. No other call allocates.
 * - Threads: each call runs OpenMP threads inside, up to sk_set_num_threads
 *   (0: OpenMP's default, OMP_NUM_THREADS), fewer for small work or while the
 *   thread backoff below is active. Results do not depend on the count.
 * - ISA: detected on first use; every family then runs the best kernel it has
 *   at or below sk_get_isa(). sk_set_isa lowers that ceiling (to compare or
 *   test paths); sk_family_isa names what a family runs ("spmm_f32",
 *   "spmm_u8s8", "qgemm_u8s8", "quantize_u8", "gemm_f32", "spmv_sell_f32",
 *   "gelu_f32", "attention_f32", "layernorm_f32"). The C core reads no
 *   environment variable of its own (SPARSEKIT_ISA is the Python layer's).
 * - The settings (ISA, threads, backoff) are process-wide (atomic) values;
 *   CPU detection runs once, whichever threads call first. A setting changed
 *   while other threads run kernels applies to the calls that start after it.
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

/* Thread backoff (on by default): when a worker thread starts more than
 * 0.5 ms late (another process holds the other core), calls run on one
 * thread for 0.25 s, doubling up to 2 s while probes stay late. Results do
 * not change; only the thread count does. */
void sk_set_thread_backoff(int on);
int sk_get_thread_backoff(void);
typedef struct {
  int enabled, active;      /* active: calls run on one thread right now */
  double window_s;          /* current backoff window, 0 after an on-time start */
  double last_late_us;      /* how late the last late worker started, 0 if never */
  double since_last_late_s; /* seconds since then, -1 if never */
} sk_thread_backoff_info;
void sk_thread_backoff_state(sk_thread_backoff_info *s);

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

/* SK_ACT_GELU is the exact (erf) GELU, x * Phi(x); the int8 GEMM
 * (sk_qgemm_u8s8_f32 / _u8, sk_linear_qgemm_u8s8) and the dense fp32 GEMM
 * (sk_linear_gemm_f32: bit for bit sk_gelu_f32 of its output without it) take it. */
typedef enum { SK_ACT_NONE = 0, SK_ACT_RELU = 1, SK_ACT_GELU = 2 } sk_activation;

/* y[i] = gelu(y[i]) = 0.5 * y[i] * erfc(-y[i] / sqrt(2)) in place, i < n: within
 * 1e-6 relative of the exact value on every ISA (y < -20 gives -0, NaN stays). */
void sk_gelu_f32(float *y, int64_t n);

/* Softmax attention, fp32, for short sequences (one thread per batch x head):
 *   out[b, i, h, :] = sum_j p_j * v[b, j, h, :],
 *   p = softmax_j(scale * q[b, i, h, :] . k[b, j, h, :] + mask[b, i, j])
 * for b < nb, h < nh, i < tq, j < tk. q, k, v, out are [batch, token, head, d]
 * with strides in elements (batch, token, head; d is contiguous), so q/k/v may
 * be column slices of one fused projection. mask is additive (-inf drops a
 * key; stride 0 broadcasts) or NULL. A query with every key at -inf gets 0.
 * Packed (unpadded) sequences: seq_offsets (nb + 1 ascending values, or NULL)
 * puts batch b at tokens seq_offsets[b] .. seq_offsets[b + 1] of one batch row
 * (tq = tk = its length, batch strides and tq/tk unused, mask must be NULL).
 * softmax uses a polynomial exp (about 2 ulp). Returns SK_OK, SK_ERR_ARGUMENT
 * or SK_ERR_NOMEM (scratch: d * tk floats per thread). */
typedef struct {
  const float *q, *k, *v, *mask;
  float *out;
  int64_t q_stride[3], k_stride[3], v_stride[3], out_stride[3], mask_stride[2];
  const int64_t *seq_offsets;
} sk_attention_f32_args;
int sk_attention_f32(int64_t nb, int64_t nh, int64_t tq, int64_t tk, int64_t d, float scale,
                     const sk_attention_f32_args *args);

/* Residual add + LayerNorm in place, rows i < m of n values (row strides ldy, ldr):
 *   y[i] = (z - mean z) / sqrt(var z + eps) * gamma + beta,  z = y[i] + r[i]
 * (biased variance, like torch.nn.LayerNorm); r, gamma, beta may be NULL
 * (no residual, gamma 1, beta 0). Returns SK_OK or SK_ERR_ARGUMENT. */
int sk_add_layernorm_f32(int64_t m, int64_t n, float *y, int64_t ldy, const float *r,
                         int64_t ldr, const float *gamma, const float *beta, float eps);
/* The same with y written from a (y = LayerNorm(a + r), row stride lda); a may
 * be y itself (then as sk_add_layernorm_f32), else a and y must not overlap. */
int sk_add_layernorm_f32_to(int64_t m, int64_t n, const float *a, int64_t lda, const float *r,
                            int64_t ldr, const float *gamma, const float *beta, float eps,
                            float *y, int64_t ldy);

/* Check a CSR weight (sizes, indptr, index range, sorted/unique). Returns
 * SK_OK or SK_ERR_FORMAT; `bad_row` (if not NULL) receives the first bad row. */
int sk_csr_f32_validate(const sk_csr_f32 *w, int64_t *bad_row);

/* Y[m, n] = act(sum_k X[m, k] * W[n, k] + bias[n]) for m < M, n < N.
 * x: M rows of K floats, row stride ldx >= K. y: M rows of N, ldy >= N.
 * bias may be NULL. Uses scratch of at most M*K floats (one copy of X). */
int sk_linear_csr_f32(const sk_csr_f32 *w, int64_t m, const float *x,
                      int64_t ldx, const float *bias, sk_activation act,
                      float *y, int64_t ldy);

/* Optional derived layout of a CSR weight for the AVX-512 kernel at M > 1:
 * within each group of 4 rows, a column that 2-4 of the rows use is loaded
 * once and multiplied into each of them (the loads of X, not the FMAs, bound
 * that kernel). Built once per weight; it holds a copy of the values (4 bytes
 * per nonzero), at most one uint16 column per nonzero and 16 bytes per 4 rows
 * and 384-column panel (sk_csr_f32_shared_nbytes). Returns NULL where it would
 * not be used (no AVX-512 on this CPU; density below 17% (5% for K > 512),
 * or above 35% where
 * W with the layout would outgrow dense fp32; all skipped when `force`), for
 * int32 indices or an empty or invalid w, and when out of memory. */
typedef struct sk_csr_f32_shared sk_csr_f32_shared;
sk_csr_f32_shared *sk_csr_f32_shared_build(const sk_csr_f32 *w, int force);
void sk_csr_f32_shared_free(sk_csr_f32_shared *s);
int64_t sk_csr_f32_shared_nbytes(const sk_csr_f32_shared *s);

/* sk_linear_csr_f32 that may use the layout `s` built from this w (NULL: none);
 * a layout of another shape or nnz is rejected (SK_ERR_ARGUMENT). */
int sk_linear_csr_f32_shared(const sk_csr_f32 *w, const sk_csr_f32_shared *s, int64_t m,
                             const float *x, int64_t ldx, const float *bias,
                             sk_activation act, float *y, int64_t ldy);

/* ---- u8 activation quantization (asymmetric, per row) ------------------ *
 * The exact math, identical on every ISA and in sparsekit's Python reference
 * (quantize_rows_reference; all float32 unless said; rint = round half to
 * even, the default mode):
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

/* ---- exact int8 GEMM: u8 activations x s8 weights -> s32 (qgemm_u8s8) --
 * Weights q[N,K] are symmetric int8 in [-127, 127] (-128 is rejected) with a
 * float scale per output channel (or one per tensor): W ~ q * scale.
 * Packed layout, the kernel contract on every ISA: panels of 16 output
 * channels, K in groups of 4, zero padding past N and K:
 *   packed[((p * K4 + g) * 16 + j) * 4 + r] = q[16 p + j, 4 g + r]
 *   p < ceil(N/16), g < K4 = ceil(K/4), j < 16, r < 4
 * so one 64-byte block is the weight operand of one vpdpbusd (16 channels
 * x 4 k). sum24 holds sum_k q[n, k] per channel as 3-byte little-endian two's
 * complement (|sum| <= 127 * 65536 < 2^23), for the zero-point correction
 *   sum_k (a[m,k] - zp[m]) q[n,k] = sum_k a[m,k] q[n,k] - zp[m] sum_k q[n,k].
 * K <= SK_QGEMM_MAX_K keeps every intermediate inside int32: the results are
 * exact (bit-identical to an int64 reference) on every ISA. */
#define SK_QGEMM_MAX_K 65536

typedef struct {
  int64_t n, k;
  const int8_t *packed;  /* sk_qmatrix_s8_packed_bytes(n, k) bytes, 64-aligned */
  const uint8_t *sum24;  /* 3 * n bytes                                       */
  const float *scale;    /* n floats when per_channel, else 1                 */
  int per_channel;
} sk_qmatrix_s8;

/* Bytes of the packed weights: ceil(n/16) * ceil(k/4) * 64. */
int64_t sk_qmatrix_s8_packed_bytes(int64_t n, int64_t k);
/* Pack q[n, k] (row stride ldq) into `packed` and `sum24`. Returns
 * SK_ERR_FORMAT if a value is -128 (outputs then unspecified). */
int sk_qmatrix_s8_pack(int64_t n, int64_t k, const int8_t *q, int64_t ldq, int8_t *packed,
                       uint8_t *sum24);

/* Activations a[m, k] u8 at row stride lda >= k; zero points
 * a_zp[i * zp_stride] in [0, 255] (zp_stride 0: one for all rows, 1: per
 * row). c[i, n] = sum_k (a[i,k] - zp_i) q[n,k], exact int32. */
int sk_qgemm_u8s8_s32(const sk_qmatrix_s8 *w, int64_t m, const uint8_t *a, int64_t lda,
                      const int32_t *a_zp, int64_t zp_stride, int32_t *c, int64_t ldc);

/* Dequantizing epilogue, fp32 out (row scales a_scale[i * scale_stride]):
 *   y[i, n] = act((float)c[i, n] * (a_scale_i * w_scale_n) + bias[n])
 * with c as in sk_qgemm_u8s8_s32 (bias may be NULL). */
int sk_qgemm_u8s8_f32(const sk_qmatrix_s8 *w, int64_t m, const uint8_t *a, int64_t lda,
                      const int32_t *a_zp, int64_t zp_stride, const float *a_scale,
                      int64_t scale_stride, const float *bias, sk_activation act,
                      float *y, int64_t ldy);

/* Requantizing epilogue for static int8 chains, u8 out:
 *   yq[i, n] = (uint8)clamp(rint(y[i, n] / out_scale) + out_zp, 0, 255)
 * with y as in sk_qgemm_u8s8_f32; out_scale > 0, out_zp in [0, 255]. With
 * SK_ACT_GELU, yq is bit for bit sk_quantize_u8 (out_scale, out_zp) of
 * sk_qgemm_u8s8_f32's GELU output (a non-finite y clamps: +inf -> 255,
 * NaN -> 0, no error), without that fp32 output leaving the cache. */
int sk_qgemm_u8s8_u8(const sk_qmatrix_s8 *w, int64_t m, const uint8_t *a, int64_t lda,
                     const int32_t *a_zp, int64_t zp_stride, const float *a_scale,
                     int64_t scale_stride, const float *bias, sk_activation act,
                     float out_scale, int32_t out_zp, uint8_t *yq, int64_t ldyq);

/* fp32 in, fp32 out: x is quantized to u8 inside (per row, dynamic, when
 * x_scale == 0; static per tensor with x_scale > 0 and x_zp otherwise), then
 * sk_qgemm_u8s8_f32. Scratch: one u8 copy of x (rows padded to 4), 8 bytes
 * per row of x and 4 per 8 rows (the GEMMs on u8 input use none).
 * SK_ERR_NONFINITE if x holds NaN or infinity. */
int sk_linear_qgemm_u8s8(const sk_qmatrix_s8 *w, int64_t m, const float *x, int64_t ldx,
                         float x_scale, int32_t x_zp, const float *bias, sk_activation act,
                         float *y, int64_t ldy);

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

/* The same with static (per-tensor) activation quantization: x is quantized
 * with x_scale > 0 and x_zp in [0, 255] as sk_quantize_u8 does, then
 * y[m, n] = act(acc * (x_scale * wscale[n]) + bias[n]). SK_ERR_NONFINITE if
 * x holds NaN or infinity. Scratch: one u8 copy of x, 4 bytes per row. */
int sk_linear_u8s8_bsr_f32_static(const sk_bsr_s8_1x4 *w, const float *wscale, int64_t m,
                                  const float *x, int64_t ldx, float x_scale, int32_t x_zp,
                                  const float *bias, sk_activation act, float *y,
                                  int64_t ldy);

/* Unstructured int8 weight as groups of 4 nonzeros of one row at any k
 * ("g4"): group p of row n, p in [indptr[n], indptr[n+1]), adds
 * values[4p + j] * x[kidx[4p + j]] for j < 4; kidx < K, the last group of a row
 * padded with value 0. Unstructured pruning leaves 1x4 blocks mostly empty
 * (90% sparsity: 34% of blocks kept, 1.2 of 4 slots used); groups are full, so
 * the kernel does about 1 / block_fill fewer multiplies. K <= 65536. */
typedef struct {
  int64_t n, k;
  const int64_t *indptr;  /* N + 1 entries, indptr[0] == 0, monotone */
  const uint16_t *kidx;   /* 4 * ngroups activation columns, < K     */
  const int8_t *values;   /* 4 * ngroups int8 in [-127, 127]          */
  const int32_t *row_sums;
} sk_csr_s8_g4;

/* Check sizes, indptr, kidx range, value range and row_sums.
 * SK_OK or SK_ERR_FORMAT (+ first bad row). */
int sk_csr_s8_g4_validate(const sk_csr_s8_g4 *w, int64_t *bad_row);

/* As sk_spmm_u8s8_s32 / sk_linear_u8s8_bsr_f32, for a g4 weight. */
int sk_spmm_u8s8_g4_s32(const sk_csr_s8_g4 *w, int64_t m, const uint8_t *xq,
                        int64_t ldx, const int32_t *zero_point, int zp_per_row,
                        int32_t *y, int64_t ldy);
int sk_linear_u8s8_g4_f32(const sk_csr_s8_g4 *w, const float *wscale, int64_t m,
                          const float *x, int64_t ldx, const float *bias,
                          sk_activation act, float *y, int64_t ldy);
int sk_linear_u8s8_g4_f32_static(const sk_csr_s8_g4 *w, const float *wscale, int64_t m,
                                 const float *x, int64_t ldx, float x_scale, int32_t x_zp,
                                 const float *bias, sk_activation act, float *y, int64_t ldy);

/* ---- fp32 sliced ELL with 32-column windows (small M, mainly M = 1) ----
 * W[N,K] in slices of 16 rows (lane i of slice s is row 16 s + i). Each slice
 * is a run of "groups": group g covers the 32 columns [window[g],
 * window[g] + 32) and holds up to 4 nonzeros ("steps") of each of the 16
 * rows, so a kernel gathers x for 16 rows at once with one register permute
 * (vpermt2ps) per step instead of 16 loads.
 *   group_ptr[s] .. group_ptr[s + 1]: the groups of slice s (slices + 1
 *                  entries, slices = ceil(N / 16), group_ptr[0] == 0)
 *   window[g]:     first column; window[g] + 32 <= K when K >= 32, else 0
 *   index[16 g + i]: lane i's 4 steps, byte j = step j: bits 0-4 the column
 *                  offset in the window, bit 7 set when the slot holds a
 *                  nonzero; an empty slot's byte is 0
 *   values[64 g + 16 j + i]: lane i's step j (0 in an empty slot)
 * Each row's nonzeros appear in column order (groups, then steps); rows past
 * N in the last slice have none. sk_sell_f32_from_csr builds this greedily:
 * a group starts at the smallest column any of its rows has left (moved down
 * to K - 32 if needed) and takes each row's next <= 4 nonzeros inside the
 * window. At 90% sparsity ~57% of the slots are filled: ~0.88 bytes per
 * dense weight (values 4, index 1, window 4/64 per slot). */
typedef struct {
  int64_t n, k;
  const int64_t *group_ptr;
  const uint32_t *window;
  const uint32_t *index;
  const float *values;
} sk_sell_f32;

/* Groups sk_sell_f32_from_csr makes of the valid CSR w (-1: bad arguments). */
int64_t sk_sell_f32_count_groups(const sk_csr_f32 *w);
/* Build the sliced ELL of the valid CSR w into group_ptr (ceil(N/16) + 1),
 * window (G), index (16 G) and values (64 G), G = sk_sell_f32_count_groups(w). */
int sk_sell_f32_from_csr(const sk_csr_f32 *w, int64_t *group_ptr, uint32_t *window,
                         uint32_t *index, float *values);
/* Check a sliced ELL as described above (sizes from group_ptr). Returns SK_OK
 * or SK_ERR_FORMAT; `bad_group` (if not NULL) receives the first bad group
 * (or -1 when group_ptr itself is bad). */
int sk_sell_f32_validate(const sk_sell_f32 *w, int64_t *bad_group);

/* Y[m, n] = act(sum_k X[m, k] * W[n, k] + bias[n]), as sk_linear_csr_f32.
 * Each group's indices and values are loaded once for up to 4 rows of X, so
 * it suits M <= ~8; larger M is correct but a CSRMatrix is faster there.
 * No scratch memory. */
int sk_linear_sell_f32(const sk_sell_f32 *w, int64_t m, const float *x, int64_t ldx,
                       const float *bias, sk_activation act, float *y, int64_t ldy);

/* ---- dense fp32 GEMM with a packed weight (small M first) -------------
 * W[N, K] packed once in panels of 32 rows, k-major inside a panel:
 *   packed[(p * K + k) * 32 + j] = W[32 p + j, k]   (0 for rows past N)
 * sk_gemm_f32_packed_floats(n, k) floats, 64-byte aligned for the kernels.
 * sk_linear_gemm_f32: Y[m, n] = act(sum_k X[m, k] * W[n, k] + bias[n])
 * (act: none, relu or gelu, bit for bit max(y, 0) / sk_gelu_f32 of the output
 * without it; bias may be NULL), each sum in k order except on AVX2 for tiles of
 * 1-2 rows (k split over several fma chains, added at the end). Each
 * weight panel is read once per block of up to ~64 KiB of X (so once for the
 * few rows of a transformer at batch 1: BLAS packs the weight on every call).
 * Scratch: one packed copy of a block of X. Returns SK_OK, SK_ERR_ARGUMENT
 * or SK_ERR_NOMEM. */
int64_t sk_gemm_f32_packed_floats(int64_t n, int64_t k);
int sk_gemm_f32_pack(int64_t n, int64_t k, const float *w, int64_t ldw, float *packed);
int sk_linear_gemm_f32(int64_t n, int64_t k, const float *packed, int64_t m, const float *x,
                       int64_t ldx, const float *bias, sk_activation act, float *y,
                       int64_t ldy);

#ifdef __cplusplus
}
#endif
#endif /* SPARSEKIT_H */
