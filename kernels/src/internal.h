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
 * not pay thread start-up, otherwise sk_get_num_threads(). */
int sk_threads_for_work(double work);

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
void sk_spmm_f32_64x1__avx512(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1);
void sk_spmv_f32__avx512(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1);
void sk_spmm_f32_pack_64__avx512(const float *x, int64_t ldx, int64_t k, int64_t mr,
                                 int64_t ld, float *xp);
#endif
#ifdef SK_ARCH_ARM64
void sk_spmm_f32_16x1__neon(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1);
void sk_spmv_f32__neon(const sk_spmm_f32_tile *t, int64_t n0, int64_t n1);
#endif

#endif /* SK_INTERNAL_H */
