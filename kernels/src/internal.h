/*
 * internal.h - what the kernel families share but users do not see:
 * the per-ISA function tables that dispatch.c fills once, and the thread
 * policy. One struct per kernel family; a NULL entry means "not built for
 * this ISA", and dispatch falls back to the next lower ISA that has one.
 */
#ifndef SK_INTERNAL_H
#define SK_INTERNAL_H

#include "sparsekit.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define SK_ARCH_X86 1
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
#define SK_ARCH_ARM64 1
#endif

/* Allocation aligned to a cache line (64 bytes); free with sk_aligned_free. */
void *sk_aligned_alloc(size_t bytes);
void sk_aligned_free(void *p);

/* Threads to use for `work` multiply-adds: 1 for small problems so they do
 * not pay thread start-up, otherwise sk_get_num_threads() (1 while the
 * thread backoff below is active). */
int sk_threads_for_work(double work);

/* Thread backoff (thread_backoff.c): n, or 1 while the other cores are known
 * busy. Every parallel region takes a stamp before it forks and passes it to
 * sk_worker_check_in as the region's first statement:
 *   const int64_t t0 = sk_region_begin(nt);
 *   #pragma omp parallel num_threads(nt) if (nt > 1)
 *   { sk_worker_check_in(t0); ... } */
int sk_backoff_threads(int n);
int64_t sk_region_begin(int nt);
void sk_worker_check_in(int64_t stamp);
/* 1 when this CPU (and OS) runs AVX-512 VBMI, which some AVX-512 VNNI
 * kernels also use (the g4 ones of spmm_u8s8): detected with the ISAs, by
 * cpuid, and 0 while the test hook below masks it. */
int sk_cpu_avx512vbmi(void);
#ifdef SK_TEST_HOOKS
/* Test hooks, only in the C tests' library (kernels/CMakeLists.txt compiles
 * the sources that have them twice): a worker start `delay_ns` late, a clock
 * moved forward, and AVX-512 VBMI masked (masked != 0: the kernels choose
 * their paths as on a CPU with AVX-512 VNNI but without VBMI, such as Intel
 * Cascade Lake). */
void sk_backoff_simulate_start(int64_t delay_ns);
void sk_backoff_advance_clock(int64_t ns);
void sk_test_mask_avx512vbmi(int masked);
#endif

/* Most threads a driver splits one call over (bounds arrays are sized by it). */
#define SK_MAX_THREADS 256

/* Split CSR-like rows [0, n) into `parts` ranges of about equal cost, where
 * row r costs its entries (indptr[r+1] - indptr[r]) plus `row_cost` for its
 * epilogue and output writes; bounds gets parts + 1 entries. */
void sk_split_rows(const int64_t *indptr, int64_t n, int64_t row_cost, int parts,
                   int64_t *bounds);

/* ---- spmm_f32: CSR fp32 weight x dense fp32 activations ----------------
 * Micro-kernel contract (BLIS-style): one tile of mr <= MR activation rows,
 * packed transposed as xp[k * ld + i], times weight rows [n0, n1). The row
 * stride ld is MR for a full tile and mr for the last, partial one (so the
 * packed copy is exactly M*K floats, never more than one copy of X). For
 * each row n the kernel broadcasts each nonzero w[n,k] and multiplies it with
 * the mr-vector xp[k*ld ..], adds bias, applies the activation and writes
 * y[i * ldy + n] for i < mr.
 * The M=1 kernel (spmv) reads x directly (xp == x, mr == 1). */
typedef struct {
  const int64_t *indptr;
  const void *indices; /* uint16_t or int32_t, per index_bytes */
  int index_bytes;
  const float *values;
  const float *xp;
  int64_t mr; /* valid rows in this tile, 1..MR */
  const float *bias;
  sk_activation act;
  float *y;
  int64_t ldy;
  int64_t k; /* columns of W: rows of the packed tile */
  const sk_csr_f32_shared *shared; /* W's shared-column layout, or NULL */
} sk_spmm_f32_tile;

typedef void (*sk_spmm_f32_fn)(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1);

/* Packs rows [0, mr) of x (row stride ldx, k columns) into one tile:
 * xp[kk * ld + i] = x[i * ldx + kk], ld == MR (full tile) or mr (partial). */
typedef void (*sk_spmm_f32_pack_fn)(const float *x, int64_t ldx, int64_t k, int64_t mr,
                                    int64_t ld, float *xp);

typedef struct {
  int mr;              /* rows per tile of the spmm kernel */
  sk_spmm_f32_fn spmm; /* tile kernel */
  sk_spmm_f32_fn spmv; /* M == 1 kernel */
  sk_spmm_f32_pack_fn pack; /* NULL: the portable packing loop in driver.c */
} sk_spmm_f32_impl;

/* The table entry chosen for the current ISA. */
const sk_spmm_f32_impl *sk_spmm_f32_select(void);

void sk_spmm_f32_8x1__scalar(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1);
void sk_spmv_f32__scalar(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1);
#ifdef SK_ARCH_X86
void sk_spmm_f32_32x1__avx2(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1);
void sk_spmv_f32__avx2(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1);
void sk_spmm_f32_pack_32__avx2(const float *x, int64_t ldx, int64_t k, int64_t mr,
                               int64_t ld, float *xp);
void sk_spmm_f32_32x1__avx512(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1);
void sk_spmv_f32__avx512(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1);
void sk_spmm_f32_pack_32__avx512(const float *x, int64_t ldx, int64_t k, int64_t mr,
                                 int64_t ld, float *xp);
#endif
#ifdef SK_ARCH_ARM64
void sk_spmm_f32_16x1__neon(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1);
void sk_spmv_f32__neon(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1);
#endif

/* ---- quantize_u8: fp32 rows -> u8 (math in sparsekit.h) ----------------
 * Per-ISA row functions; they return SK_OK or SK_ERR_NONFINITE. The dynamic
 * one finds the row's range, derives (scale, zero_point) with
 * sk_quantize_u8_params, then quantizes like the static one. */
typedef int (*sk_quantize_row_u8_fn)(const float *x, int64_t k, uint8_t *q, float *scale,
                                     int32_t *zero_point);
typedef int (*sk_quantize_row_u8_static_fn)(const float *x, int64_t k, float scale,
                                            int32_t zero_point, uint8_t *q);
/* Dynamic rows [0, rows) of x (row strides ldx, ldq): the same bytes,
 * scales and zero points as dynamic_row on each row, in fewer passes over x. */
typedef int (*sk_quantize_rows_u8_fn)(const float *x, int64_t ldx, int64_t rows, int64_t k,
                                      uint8_t *q, int64_t ldq, float *scale,
                                      int32_t *zero_point);
typedef struct {
  sk_quantize_row_u8_fn dynamic_row;
  sk_quantize_row_u8_static_fn static_row;
  sk_quantize_rows_u8_fn dynamic_rows; /* NULL: dynamic_row row by row */
} sk_quantize_u8_impl;

const sk_quantize_u8_impl *sk_quantize_u8_select(void);
/* (scale, zero_point) of a row whose range is [mn, mx], mn <= 0 <= mx. */
void sk_quantize_u8_params(float mn, float mx, float *scale, int32_t *zero_point);
/* The same from a range kept as maxima of the floats' bit patterns (the
 * row-block quantizers): hi_bits the signed max (max(x, +0)), lo_bits the
 * unsigned max (the most negative x if any x has its sign bit set). */
void sk_quantize_u8_params_bits(int32_t hi_bits, uint32_t lo_bits, float *scale,
                                int32_t *zero_point);
/* Dynamic rows [0, rows) through q's dynamic_rows (or dynamic_row per row);
 * SK_OK or SK_ERR_NONFINITE. */
int sk_quantize_u8_rows_dynamic(const sk_quantize_u8_impl *q, const float *x, int64_t ldx,
                                int64_t rows, int64_t k, uint8_t *xq, int64_t ldq,
                                float *scale, int32_t *zero_point);

int sk_quantize_row_u8__scalar(const float *x, int64_t k, uint8_t *q, float *scale,
                               int32_t *zero_point);
int sk_quantize_row_u8_static__scalar(const float *x, int64_t k, float scale,
                                      int32_t zero_point, uint8_t *q);
#ifdef SK_ARCH_X86
int sk_quantize_row_u8__avx2(const float *x, int64_t k, uint8_t *q, float *scale,
                             int32_t *zero_point);
int sk_quantize_row_u8_static__avx2(const float *x, int64_t k, float scale,
                                    int32_t zero_point, uint8_t *q);
int sk_quantize_rows_u8__avx2(const float *x, int64_t ldx, int64_t rows, int64_t k,
                              uint8_t *q, int64_t ldq, float *scale, int32_t *zero_point);
int sk_quantize_row_u8__avx512(const float *x, int64_t k, uint8_t *q, float *scale,
                               int32_t *zero_point);
int sk_quantize_row_u8_static__avx512(const float *x, int64_t k, float scale,
                                      int32_t zero_point, uint8_t *q);
int sk_quantize_rows_u8__avx512(const float *x, int64_t ldx, int64_t rows, int64_t k,
                                uint8_t *q, int64_t ldq, float *scale, int32_t *zero_point);
#endif
#ifdef SK_ARCH_ARM64
int sk_quantize_row_u8__neon(const float *x, int64_t k, uint8_t *q, float *scale,
                             int32_t *zero_point);
int sk_quantize_row_u8_static__neon(const float *x, int64_t k, float scale,
                                    int32_t zero_point, uint8_t *q);
int sk_quantize_rows_u8__neon(const float *x, int64_t ldx, int64_t rows, int64_t k,
                              uint8_t *q, int64_t ldq, float *scale, int32_t *zero_point);
#endif

/* ---- gelu_f32: exact GELU in place (a post-op applied by GEMM drivers while
 * the output tile is in cache; math and accuracy in sparsekit.h) ---------- */
typedef void (*sk_gelu_f32_fn)(float *y, int64_t n);
sk_gelu_f32_fn sk_gelu_f32_select(void);
void sk_gelu_f32__scalar(float *y, int64_t n);
#ifdef SK_ARCH_X86
void sk_gelu_f32__avx2(float *y, int64_t n);
void sk_gelu_f32__avx512(float *y, int64_t n);
#endif
#ifdef SK_ARCH_ARM64
void sk_gelu_f32__neon(float *y, int64_t n);
#endif

/* ---- attention_f32: softmax attention, one (batch, head) per thread ------ */
typedef int (*sk_attention_f32_fn)(int64_t nb, int64_t nh, int64_t tq, int64_t tk, int64_t d,
                                   float scale, const sk_attention_f32_args *a);
int sk_attention_f32__scalar(int64_t nb, int64_t nh, int64_t tq, int64_t tk, int64_t d,
                             float scale, const sk_attention_f32_args *a);
#ifdef SK_ARCH_X86
int sk_attention_f32__avx2(int64_t nb, int64_t nh, int64_t tq, int64_t tk, int64_t d,
                           float scale, const sk_attention_f32_args *a);
int sk_attention_f32__avx512(int64_t nb, int64_t nh, int64_t tq, int64_t tk, int64_t d,
                             float scale, const sk_attention_f32_args *a);
#endif
#ifdef SK_ARCH_ARM64
int sk_attention_f32__neon(int64_t nb, int64_t nh, int64_t tq, int64_t tk, int64_t d,
                           float scale, const sk_attention_f32_args *a);
#endif

/* ---- layernorm_f32: residual add + LayerNorm over rows ------------------ */
typedef void (*sk_add_layernorm_f32_fn)(int64_t m, int64_t n, float *y, int64_t ldy,
                                        const float *r, int64_t ldr, const float *gamma,
                                        const float *beta, float eps);
void sk_add_layernorm_f32__scalar(int64_t m, int64_t n, float *y, int64_t ldy, const float *r,
                                  int64_t ldr, const float *gamma, const float *beta, float eps);
#ifdef SK_ARCH_X86
void sk_add_layernorm_f32__avx2(int64_t m, int64_t n, float *y, int64_t ldy, const float *r,
                                int64_t ldr, const float *gamma, const float *beta, float eps);
void sk_add_layernorm_f32__avx512(int64_t m, int64_t n, float *y, int64_t ldy, const float *r,
                                  int64_t ldr, const float *gamma, const float *beta, float eps);
#endif
#ifdef SK_ARCH_ARM64
void sk_add_layernorm_f32__neon(int64_t m, int64_t n, float *y, int64_t ldy, const float *r,
                                int64_t ldr, const float *gamma, const float *beta, float eps);
#endif
/* Out of place (y from a); an ISA without one (NEON) copies a, then runs in place. */
typedef void (*sk_add_layernorm_f32_to_fn)(int64_t m, int64_t n, const float *a, int64_t lda,
                                           const float *r, int64_t ldr, const float *gamma,
                                           const float *beta, float eps, float *y, int64_t ldy);
void sk_add_layernorm_f32_to__scalar(int64_t m, int64_t n, const float *a, int64_t lda,
                                     const float *r, int64_t ldr, const float *gamma,
                                     const float *beta, float eps, float *y, int64_t ldy);
#ifdef SK_ARCH_X86
void sk_add_layernorm_f32_to__avx2(int64_t m, int64_t n, const float *a, int64_t lda,
                                   const float *r, int64_t ldr, const float *gamma,
                                   const float *beta, float eps, float *y, int64_t ldy);
void sk_add_layernorm_f32_to__avx512(int64_t m, int64_t n, const float *a, int64_t lda,
                                     const float *r, int64_t ldr, const float *gamma,
                                     const float *beta, float eps, float *y, int64_t ldy);
#endif

/* ---- qgemm_u8s8: u8 x packed s8 -> s32, then an epilogue ---------------
 * Micro-kernel contract: rows [m0, m0 + mr) of A (mr <= MR) times output
 * columns [n0, n0 + nr) (n0 a multiple of 16, nr <= NR, n0 + nr <= N) of the
 * packed weights, K4 groups of 4 bytes. A rows can be read as whole 4-byte
 * groups for g < kfull; group kfull (if < K4) holds only ktail valid bytes
 * (the packed weights are zero past K, so A's bytes there never matter but
 * must not be read past the row). The epilogue writes
 *   S32: c - zp*sum24;  F32: act(float(..) * (a_scale * w_scale) + bias);
 *   U8: F32 requantized with out_scale / out_zp (round half to even).
 * GELU is not theirs: the driver applies it to finished fp32 tiles (with
 * u8 output, to an fp32 tile buffer it then requantizes). */
enum { SK_QOUT_S32 = 0, SK_QOUT_F32 = 1, SK_QOUT_U8 = 2 };

typedef struct {
  const uint8_t *a;
  int64_t lda;
  int64_t kfull, k4;
  int ktail;
  const int8_t *b;      /* packed weights */
  int64_t n;            /* valid output channels */
  const uint8_t *sum24; /* channel sums, 3 bytes each (see sk_qsum24) */
  const int32_t *a_zp;
  int64_t zp_stride;
  const float *a_scale;
  int64_t as_stride;
  const float *w_scale;
  int64_t ws_stride;    /* 1 per channel, 0 per tensor */
  const float *bias;
  sk_activation act;
  int out;              /* SK_QOUT_* */
  void *c;
  int64_t ldc;
  float out_scale, out_zp;
  /* optional (kernels may ignore it): while running group g < kfull, fetch
   * bytes [s g, s g + s) of `prefetch` towards the cache, s = prefetch_step
   * (64 or 128; the driver points it at the fp32 rows it quantizes next) */
  const void *prefetch;
  int prefetch_step;
} sk_qgemm_u8s8_args;

typedef void (*sk_qgemm_u8s8_fn)(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr,
                                 int64_t n0, int64_t nr);

typedef struct {
  int mr, nr;              /* tile of the gemm kernel                  */
  sk_qgemm_u8s8_fn gemm;
  int gemv_nr;             /* columns per call of the M == 1 kernel    */
  sk_qgemm_u8s8_fn gemv;
} sk_qgemm_u8s8_impl;

const sk_qgemm_u8s8_impl *sk_qgemm_u8s8_select(void);

/* Channel sum n of the packed weight: 3-byte little-endian two's complement. */
static inline int32_t sk_qsum24(const uint8_t *sum24, int64_t n) {
  const uint8_t *s = sum24 + 3 * n;
  const uint32_t u = (uint32_t)s[0] | ((uint32_t)s[1] << 8) | ((uint32_t)s[2] << 16);
  return (int32_t)(u ^ 0x800000u) - 0x800000; /* sign-extend bit 23 */
}
/* Private microbenchmark of this CPU's vpdpbusd peak: `iters` rounds of 24
 * independent zmm vpdpbusd. SK_ERR_UNSUPPORTED without AVX-512 VNNI. */
int sk_qgemm_u8s8_peak_loop(int64_t iters, int64_t *sink);

void sk_qgemm_u8s8_4x16c4__scalar(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr,
                                  int64_t n0, int64_t nr);
#ifdef SK_ARCH_X86
void sk_qgemm_u8s8_4x16c4__avx2(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr,
                                int64_t n0, int64_t nr);
void sk_qgemm_u8s8_4x32c4__avx512(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr,
                                  int64_t n0, int64_t nr);
void sk_qgemm_u8s8_8x48c4__avx512vnni(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr,
                                      int64_t n0, int64_t nr);
void sk_qgemv_u8s8_1x64c4__avx512vnni(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr,
                                      int64_t n0, int64_t nr);
int64_t sk_qgemm_u8s8_peak_loop__avx512vnni(int64_t iters);
#endif
#ifdef SK_ARCH_ARM64
void sk_qgemm_u8s8_4x16c4__neon(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr,
                                int64_t n0, int64_t nr);
void sk_qgemv_u8s8_1x64c4__neon(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr,
                                int64_t n0, int64_t nr);
/* ARMv8.2 dot-product variants, only called when the CPU has it */
void sk_qgemm_u8s8_4x16c4__neondot(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr,
                                   int64_t n0, int64_t nr);
void sk_qgemv_u8s8_1x64c4__neondot(const sk_qgemm_u8s8_args *p, int64_t m0, int64_t mr,
                                   int64_t n0, int64_t nr);
/* Whether the NEON int8 kernels use the dot-product extension: on by default
 * when the CPU has it; tests switch it off to run the baseline NEON kernels.
 * sk_set_arm_dotprod(1) returns SK_ERR_UNSUPPORTED without the extension. */
int sk_arm_dotprod(void);
int sk_set_arm_dotprod(int on);
#endif

/* ---- spmm_u8s8: 1x4-blocked int8 weight x u8 activations ---------------
 * Micro-kernel contract: one tile of MR activation rows packed as dwords,
 * xp[(c * MR + i) * 4 + j] = x[m0 + i, 4c + j] (zero past K and past `mr`
 * rows). For weight row n and each block (c, w0..w3) the kernel broadcasts
 * the 4 weight bytes and accumulates dot4(x[i, 4c..], w) for all MR rows
 * (vpdpbusd: u8 activations x s8 weights), then
 *   v = acc - zp[i] * row_sums[n]            (int32, wrapping)
 *   y = v                                    (xscale == NULL, int32 out)
 *   y = act(v * (xscale[i] * wscale[n]) + bias[n])   (float out)
 * and writes y[i * ldy + n] for i < mr. The M == 1 kernel (spmv) reads one
 * row xp = x padded with zeros to 4 * ceil(K/4) bytes, MR == 1. */
typedef struct {
  const int64_t *indptr;
  const void *cols; /* uint16_t or int32_t, per index_bytes */
  int index_bytes;
  const int8_t *values;
  const int32_t *row_sums;
  const uint8_t *xp;
  int64_t xp_dwords;    /* spmv: dwords in the padded row, ceil(K/4) */
  int64_t mr;           /* valid rows in this tile, 1..MR */
  const int32_t *zp;    /* MR zero points of this tile (0 past mr) */
  const float *xscale;  /* MR row scales, or NULL for int32 output */
  const float *wscale;  /* N channel scales (float output only) */
  const float *bias;
  sk_activation act;
  void *y; /* float or int32_t rows */
  int64_t ldy;
  int64_t xp_bytes; /* g4 spmv: bytes of the row xp (K) */
  /* g4 spmm (AVX-512): write y's full lines with non-temporal stores, for an
   * output too big to stay in cache (skips reading each line before it is
   * written); 0 = plain stores */
  int stream_y;
} sk_spmm_u8s8_tile;

typedef void (*sk_spmm_u8s8_fn)(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);

/* The u8 activations the sparse int8 drivers run on (spmm_u8s8/source.c):
 * rows, per-row zero points and (fp32 output only) per-row scales. */
typedef struct {
  const uint8_t *xq;
  int64_t ldx;
  const int32_t *zp;
  int zp_per_row;
  const float *xscale; /* NULL: int32 output */
  /* or fp32 rows (ldx apart, xq NULL; float output, M > 1) that the driver
   * quantizes while packing its tiles: no u8 copy of all of x */
  const float *xf;
} sk_u8_source;

/* Longest row quantized into a stack buffer (M == 1, and fused packing). */
#define SK_U8_ROW_STACK 4096

/* A driver's inner run over weight `w` (an sk_bsr_s8_1x4 or sk_csr_s8_g4). */
typedef int (*sk_u8_source_fn)(const void *w, int64_t m, const sk_u8_source *s,
                               const float *wscale, const float *bias, sk_activation act,
                               void *y, int64_t ldy);

/* SK_OK when u8 rows, zero points (0..255) and output fit an [m, n] x [n, k] call. */
int sk_u8_source_check(int64_t m, int64_t k, const uint8_t *xq, int64_t ldx,
                       const int32_t *zero_point, int zp_per_row, const void *y,
                       int64_t ldy, int64_t n);
/* Quantize fp32 rows per row to u8 (one copy of x) and call run() on them. */
int sk_u8_source_run_quantized(const void *w, int64_t k, int64_t m, const float *x,
                               int64_t ldx, sk_u8_source_fn run, const float *wscale,
                               const float *bias, sk_activation act, float *y,
                               int64_t ldy);
/* The same with static (per-tensor) quantization: x_scale > 0 (finite),
 * x_zp in [0, 255], sk_quantize_u8; every row's scale is x_scale. */
int sk_u8_source_run_static(const void *w, int64_t k, int64_t m, const float *x,
                            int64_t ldx, float x_scale, int32_t x_zp, sk_u8_source_fn run,
                            const float *wscale, const float *bias, sk_activation act,
                            float *y, int64_t ldy);
/* Per-row zero points and scales (NULL for int32 output) padded with zeros
 * to `rows` >= m rows, so a tile kernel may read whole tiles (with xf: rows
 * < m are left for sk_u8_source_quantize_row). */
int sk_u8_source_row_params(const sk_u8_source *s, int64_t m, int64_t rows,
                            int32_t **zp, float **xscale);
/* Row i of s->xf quantized into row[0, k), *zp, *xscale; SK_ERR_NONFINITE on
 * NaN or infinity. */
int sk_u8_source_quantize_row(const sk_u8_source *s, int64_t i, int64_t k, uint8_t *row,
                              int32_t *zp, float *xscale);
/* Rows [i, i + rows) of s->xf the same way into u8 (row stride ldq), zp[0..),
 * xscale[0..), in one sweep where the ISA has one. */
int sk_u8_source_quantize_rows(const sk_u8_source *s, int64_t i, int64_t rows, int64_t k,
                               uint8_t *u8, int64_t ldq, int32_t *zp, float *xscale);

typedef struct {
  int mr;               /* rows per tile of the spmm kernel */
  sk_spmm_u8s8_fn spmm; /* tile kernel */
  sk_spmm_u8s8_fn spmv; /* M == 1 kernel */
  int mr_small;         /* rows per tile of spmm_small (leftover rows, small M) */
  sk_spmm_u8s8_fn spmm_small; /* NULL: leftover rows use spmm */
} sk_spmm_u8s8_impl;

const sk_spmm_u8s8_impl *sk_spmm_u8s8_select(void);

void sk_spmm_u8s8_8x1c4__scalar(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
void sk_spmv_u8s8_1x1c4__scalar(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
#ifdef SK_ARCH_X86
void sk_spmm_u8s8_32x1c4__avx2(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
void sk_spmv_u8s8_1x1c4__avx2(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
void sk_spmm_u8s8_32x1c4__avx512vnni(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
void sk_spmv_u8s8_1x1c4__avx512vnni(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
void sk_spmm_u8s8_16x1c4__avx512vnni(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
/* driver.c's tile packing by 16x16 transposes (rows a multiple of 16). */
void sk_pack_1x4_tile__avx512vnni(const uint8_t *x, int64_t ldx, int64_t k, int64_t mr,
                                  int rows, uint8_t *xp);
#endif
#ifdef SK_ARCH_ARM64
void sk_spmm_u8s8_16x1c4__neon(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
void sk_spmm_u8s8_8x1c4__neon(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
void sk_spmv_u8s8_1x1c4__neon(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
/* ARMv8.2 dot-product variants (see sk_arm_dotprod) */
void sk_spmm_u8s8_16x1c4__neondot(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
void sk_spmm_u8s8_8x1c4__neondot(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
void sk_spmv_u8s8_1x1c4__neondot(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
#endif

/* g4 kernels (sk_csr_s8_g4) on the same tile struct: cols = kidx, xp = the
 * tile transposed, xp[k * MR + pos(i)] = x[m0 + i, k] (zero past mr rows).
 * Scalar: pos(i) = i, MR = 8 (MR = 1 for spmv: xp is the row itself).
 * AVX-512 VNNI: MR = 64, pos(i) = sk_g4_pos64(i), the order in which its
 * byte interleave hands rows back (see avx512vnni.c). */
static inline int64_t sk_g4_pos64(int64_t i) {
  return 16 * ((i >> 2) & 3) + 4 * (i >> 4) + (i & 3);
}
void sk_spmm_u8s8_g4_8x4__scalar(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
void sk_spmv_u8s8_g4_1x4__scalar(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
#ifdef SK_ARCH_X86
void sk_spmm_u8s8_g4_64x4__avx512vnni(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
void sk_g4_pack64__avx512vnni(const uint8_t *x, int64_t ldx, int64_t k, int64_t mr,
                              uint8_t *xt);
/* Small M (2..16 rows) with AVX-512 VBMI: one 16-row tile in natural row
 * order, xp[k * 16 + i] (pos(i) = i), packed by sk_g4_pack16__avx512vbmi. */
void sk_spmm_u8s8_g4_16x4__avx512vbmi(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
void sk_g4_pack16__avx512vbmi(const uint8_t *x, int64_t ldx, int64_t k, int64_t mr,
                              uint8_t *xt);
/* M = 17..32 (and a last tile of 17..32 rows) with AVX-512 VBMI: one 32-row
 * tile in natural row order, xp[k * 32 + i], packed by sk_g4_pack32__avx512vbmi. */
void sk_spmm_u8s8_g4_32x4__avx512vbmi(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
void sk_g4_pack32__avx512vbmi(const uint8_t *x, int64_t ldx, int64_t k, int64_t mr,
                              uint8_t *xt);
/* M == 1 for 1024 < K <= 32768 with AVX-512 VBMI: the row in memory, zero-padded
 * to whole 128-byte windows (xp 64-byte aligned). */
void sk_spmv_u8s8_g4_wide__avx512vbmi(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
/* M == 1 with the row in registers (vpermi2b): needs AVX-512 VBMI, K <= 1024. */
void sk_spmv_u8s8_g4_1x4__avx512vbmi(const sk_spmm_u8s8_tile *t, int64_t n0, int64_t n1);
#endif
/* 1 when g4 at M == 1 runs a vector kernel for this K (AVX-512 VNNI + VBMI,
 * K <= 32768: the row in registers up to 1024, the wide kernel above), 0 when
 * it runs the portable one. */
int sk_spmv_u8s8_g4_fast(int64_t k);
/* 1 when g4 at M = 2..16 runs its 16-row vector kernel (AVX-512 VNNI + VBMI). */
int sk_g4_small_fast(void);
/* 1 when this CPU has AVX-512 VNNI (usable) and VBMI, whatever is selected. */
int sk_g4_vbmi_cpu(void);
/* 1 when a g4 call with m rows (2..3) runs the M == 1 kernel once per row
 * (K <= 1024, or M == 2 at >= 15% density, ngroups groups over n x k). */
int sk_g4_rows_fast(int64_t m, int64_t n, int64_t k, int64_t ngroups);

/* ---- spmv_sell_f32: sliced-ELL fp32 weight (sparsekit.h) x small M ------
 * A kernel runs slices [s0, s1) for all m rows of x (in blocks of up to 4
 * rows that share each group's loads) and writes y[i * ldy + 16 s + lane]
 * = act(sum + bias) for the slice's rows < N. Windows past K (K < 32 only)
 * must be read masked. */
typedef void (*sk_sell_f32_fn)(const sk_sell_f32 *w, int64_t s0, int64_t s1, int64_t m,
                               const float *x, int64_t ldx, const float *bias,
                               sk_activation act, float *y, int64_t ldy);
sk_sell_f32_fn sk_spmv_sell_f32_select(void);
void sk_spmv_sell_f32__scalar(const sk_sell_f32 *w, int64_t s0, int64_t s1, int64_t m,
                              const float *x, int64_t ldx, const float *bias,
                              sk_activation act, float *y, int64_t ldy);
#ifdef SK_ARCH_X86
void sk_spmv_sell_f32__avx2(const sk_sell_f32 *w, int64_t s0, int64_t s1, int64_t m,
                            const float *x, int64_t ldx, const float *bias,
                            sk_activation act, float *y, int64_t ldy);
void sk_spmv_sell_f32__avx512(const sk_sell_f32 *w, int64_t s0, int64_t s1, int64_t m,
                              const float *x, int64_t ldx, const float *bias,
                              sk_activation act, float *y, int64_t ldy);
#endif
#ifdef SK_ARCH_ARM64
void sk_spmv_sell_f32__neon(const sk_sell_f32 *w, int64_t s0, int64_t s1, int64_t m,
                            const float *x, int64_t ldx, const float *bias,
                            sk_activation act, float *y, int64_t ldy);
#endif

/* ---- gemm_f32: dense fp32 with a packed weight (layout in sparsekit.h) ----
 * Tile kernel: mr <= MR rows of X packed k-major (xp[k * mr + i]) times one
 * weight panel (32 columns, k-major); writes the nn <= 32 valid columns of
 * y[i * ldy + j], bias (NULL: none; its nn entries) and relu added. GELU is
 * applied by the driver after the tile (sk_gelu_f32_select). next: a panel
 * to prefetch meanwhile (the following one, for a block's first tile), or NULL. */
typedef void (*sk_gemm_f32_fn)(const float *xp, int64_t mr, const float *wp, int64_t k,
                               const float *bias, int64_t nn, int relu, float *y,
                               int64_t ldy, const float *next);
typedef struct {
  int mr;              /* rows per tile */
  sk_gemm_f32_fn tile; /* tile kernel */
} sk_gemm_f32_impl;
const sk_gemm_f32_impl *sk_gemm_f32_select(void);
void sk_gemm_f32_tile__scalar(const float *xp, int64_t mr, const float *wp, int64_t k,
                              const float *bias, int64_t nn, int relu, float *y, int64_t ldy,
                              const float *next);
#ifdef SK_ARCH_X86
void sk_gemm_f32_tile__avx2(const float *xp, int64_t mr, const float *wp, int64_t k,
                            const float *bias, int64_t nn, int relu, float *y, int64_t ldy,
                            const float *next);
void sk_gemm_f32_tile__avx512(const float *xp, int64_t mr, const float *wp, int64_t k,
                              const float *bias, int64_t nn, int relu, float *y, int64_t ldy,
                              const float *next);
#endif

#endif /* SK_INTERNAL_H */
