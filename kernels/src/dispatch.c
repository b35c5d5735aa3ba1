/*
 * dispatch.c - CPU feature detection, the forced ISA, threads, and the one
 * place where every kernel family registers its per-ISA implementations.
 *
 * Detection runs once (cpuid + xgetbv on x86: the OS must save the wide
 * registers too). sk_set_isa() forces a ceiling; each family then uses the
 * best implementation it has at or below that ceiling.
 */
#define _POSIX_C_SOURCE 200112L
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef SK_ARCH_X86
#include <cpuid.h>
#endif
#if defined(SK_ARCH_ARM64) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

static const char *const isa_names[SK_ISA_COUNT] = {"scalar", "avx2", "avx512",
                                                    "avx512vnni", "neon"};

const char *sk_isa_name(sk_isa isa) {
  return (isa >= 0 && isa < SK_ISA_COUNT) ? isa_names[isa] : NULL;
}

/* ---- detection ---------------------------------------------------------- */
/* 0: not run, 1: one thread is detecting, 2: done. Threads making their first
 * calls at once must not see a half-filled table (and fall back to scalar):
 * one of them detects, the others wait for it (microseconds), and the
 * release / acquire pair publishes the table. */
static atomic_int detect_state = 0;
static int supported[SK_ISA_COUNT];
static int avx512vbmi_hw = 0; /* AVX-512 VBMI (vpermb, vpermi2b), on top of an ISA */
#ifdef SK_TEST_HOOKS
static atomic_int avx512vbmi_masked = 0; /* test hook: run as a CPU without VBMI */
#endif
#ifdef SK_ARCH_ARM64
static int arm_dotprod_hw = 0, arm_dotprod_on = 0; /* ARMv8.2 sdot/udot */
#endif

#ifdef SK_ARCH_X86
static uint64_t read_xcr0(void) {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return ((uint64_t)edx << 32) | eax;
}

static void detect_x86(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return;
  const int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, avx = (c >> 28) & 1;
  if (!osxsave || !avx) return;
  const uint64_t xcr0 = read_xcr0();
  const int os_ymm = (xcr0 & 0x6) == 0x6;    /* XMM and YMM state */
  const int os_zmm = (xcr0 & 0xe6) == 0xe6;  /* + opmask, ZMM_Hi256, Hi16_ZMM */
  if (__get_cpuid_max(0, NULL) < 7) return;
  __cpuid_count(7, 0, a, b, c, d);
  const int avx2 = (b >> 5) & 1;
  const int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1;
  const int avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
  const int avx512vnni = (c >> 11) & 1;
  supported[SK_ISA_AVX2] = os_ymm && avx2 && fma;
  supported[SK_ISA_AVX512] = supported[SK_ISA_AVX2] && os_zmm && avx512f &&
                             avx512dq && avx512bw && avx512vl;
  supported[SK_ISA_AVX512VNNI] = supported[SK_ISA_AVX512] && avx512vnni;
  avx512vbmi_hw = supported[SK_ISA_AVX512] && ((c >> 1) & 1);
}
#endif

static void detect(void) {
  if (atomic_load_explicit(&detect_state, memory_order_acquire) == 2) return;
  int idle = 0;
  if (!atomic_compare_exchange_strong_explicit(&detect_state, &idle, 1, memory_order_acq_rel,
                                               memory_order_acquire)) {
    while (atomic_load_explicit(&detect_state, memory_order_acquire) != 2) {
    }
    return;
  }
  memset(supported, 0, sizeof supported);
  supported[SK_ISA_SCALAR] = 1;
#ifdef SK_ARCH_X86
  detect_x86();
#endif
#ifdef SK_ARCH_ARM64
  supported[SK_ISA_NEON] = 1; /* Advanced SIMD is mandatory on AArch64 */
#ifdef __linux__
  arm_dotprod_hw = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
  arm_dotprod_on = arm_dotprod_hw;
#endif
#endif
  atomic_store_explicit(&detect_state, 2, memory_order_release);
}

int sk_cpu_supports(sk_isa isa) {
  detect();
  return (isa >= 0 && isa < SK_ISA_COUNT) ? supported[isa] : 0;
}

int sk_cpu_avx512vbmi(void) {
  detect();
#ifdef SK_TEST_HOOKS
  if (atomic_load_explicit(&avx512vbmi_masked, memory_order_relaxed)) return 0;
#endif
  return avx512vbmi_hw;
}

#ifdef SK_TEST_HOOKS
void sk_test_mask_avx512vbmi(int masked) {
  atomic_store_explicit(&avx512vbmi_masked, masked != 0, memory_order_relaxed);
}
#endif

#ifdef SK_ARCH_ARM64
int sk_arm_dotprod(void) {
  detect();
  return arm_dotprod_on;
}

int sk_set_arm_dotprod(int on) {
  detect();
  if (on && !arm_dotprod_hw) return SK_ERR_UNSUPPORTED;
  arm_dotprod_on = on != 0;
  return SK_OK;
}
#endif

sk_isa sk_best_isa(void) {
  detect();
  for (int i = SK_ISA_COUNT - 1; i > 0; --i)
    if (supported[i]) return (sk_isa)i;
  return SK_ISA_SCALAR;
}

/* ---- the forced ISA ----------------------------------------------------- */
/* -1: not forced, use the best. Atomic: a setting changed while other threads
 * run kernels is read whole (each call then uses the old or the new ISA). */
static atomic_int forced_isa = -1;

int sk_set_isa(sk_isa isa) {
  if (isa < 0 || isa >= SK_ISA_COUNT) return SK_ERR_ARGUMENT;
  if (!sk_cpu_supports(isa)) return SK_ERR_UNSUPPORTED;
  atomic_store_explicit(&forced_isa, (int)isa, memory_order_relaxed);
  return SK_OK;
}

sk_isa sk_get_isa(void) {
  const int forced = atomic_load_explicit(&forced_isa, memory_order_relaxed);
  return forced >= 0 ? (sk_isa)forced : sk_best_isa();
}

/* ---- registration: one table per family, indexed by ISA ----------------- */
static const sk_spmm_f32_impl spmm_f32_impls[SK_ISA_COUNT] = {
    [SK_ISA_SCALAR] = {8, sk_spmm_f32_8x1__scalar, sk_spmv_f32__scalar},
#ifdef SK_ARCH_X86
    [SK_ISA_AVX2] = {32, sk_spmm_f32_32x1__avx2, sk_spmv_f32__avx2,
                      sk_spmm_f32_pack_32__avx2},
    [SK_ISA_AVX512] = {32, sk_spmm_f32_32x1__avx512, sk_spmv_f32__avx512,
                        sk_spmm_f32_pack_32__avx512},
#endif
#ifdef SK_ARCH_ARM64
    [SK_ISA_NEON] = {16, sk_spmm_f32_16x1__neon, sk_spmv_f32__neon, NULL},
#endif
};

/* Index of the best non-empty entry at or below the current ISA. x86 and ARM
 * ISAs do not mix: NEON falls back straight to scalar and vice versa. */
static int resolve(int has_entry[SK_ISA_COUNT]) {
  int isa = (int)sk_get_isa();
  if (isa == SK_ISA_NEON) return has_entry[SK_ISA_NEON] ? SK_ISA_NEON : SK_ISA_SCALAR;
  for (; isa > 0; --isa)
    if (has_entry[isa]) return isa;
  return SK_ISA_SCALAR;
}

static int spmm_f32_isa(void) {
  int has[SK_ISA_COUNT];
  for (int i = 0; i < SK_ISA_COUNT; ++i) has[i] = spmm_f32_impls[i].spmm != NULL;
  return resolve(has);
}

const sk_spmm_f32_impl *sk_spmm_f32_select(void) {
  return &spmm_f32_impls[spmm_f32_isa()];
}

static const sk_quantize_u8_impl quantize_u8_impls[SK_ISA_COUNT] = {
    [SK_ISA_SCALAR] = {sk_quantize_row_u8__scalar, sk_quantize_row_u8_static__scalar},
#ifdef SK_ARCH_X86
    [SK_ISA_AVX2] = {sk_quantize_row_u8__avx2, sk_quantize_row_u8_static__avx2,
                     sk_quantize_rows_u8__avx2},
    [SK_ISA_AVX512] = {sk_quantize_row_u8__avx512, sk_quantize_row_u8_static__avx512,
                       sk_quantize_rows_u8__avx512},
#endif
#ifdef SK_ARCH_ARM64
    [SK_ISA_NEON] = {sk_quantize_row_u8__neon, sk_quantize_row_u8_static__neon,
                     sk_quantize_rows_u8__neon},
#endif
};

static int quantize_u8_isa(void) {
  int has[SK_ISA_COUNT];
  for (int i = 0; i < SK_ISA_COUNT; ++i) has[i] = quantize_u8_impls[i].dynamic_row != NULL;
  return resolve(has);
}

const sk_quantize_u8_impl *sk_quantize_u8_select(void) {
  return &quantize_u8_impls[quantize_u8_isa()];
}

/* AVX-512 without VNNI runs an exact vpmaddwd kernel, not the VNNI one. */
static const sk_qgemm_u8s8_impl qgemm_u8s8_impls[SK_ISA_COUNT] = {
    [SK_ISA_SCALAR] = {4, 16, sk_qgemm_u8s8_4x16c4__scalar, 16, sk_qgemm_u8s8_4x16c4__scalar},
#ifdef SK_ARCH_X86
    [SK_ISA_AVX2] = {4, 16, sk_qgemm_u8s8_4x16c4__avx2, 16, sk_qgemm_u8s8_4x16c4__avx2},
    [SK_ISA_AVX512] = {4, 32, sk_qgemm_u8s8_4x32c4__avx512, 32, sk_qgemm_u8s8_4x32c4__avx512},
    [SK_ISA_AVX512VNNI] = {8, 48, sk_qgemm_u8s8_8x48c4__avx512vnni, 64,
                           sk_qgemv_u8s8_1x64c4__avx512vnni},
#endif
#ifdef SK_ARCH_ARM64
    [SK_ISA_NEON] = {4, 16, sk_qgemm_u8s8_4x16c4__neon, 64, sk_qgemv_u8s8_1x64c4__neon},
#endif
};

static int qgemm_u8s8_isa(void) {
  int has[SK_ISA_COUNT];
  for (int i = 0; i < SK_ISA_COUNT; ++i) has[i] = qgemm_u8s8_impls[i].gemm != NULL;
  return resolve(has);
}

#ifdef SK_ARCH_ARM64
static const sk_qgemm_u8s8_impl qgemm_u8s8_neondot = {
    4, 16, sk_qgemm_u8s8_4x16c4__neondot, 64, sk_qgemv_u8s8_1x64c4__neondot};
#endif

const sk_qgemm_u8s8_impl *sk_qgemm_u8s8_select(void) {
  const int isa = qgemm_u8s8_isa();
#ifdef SK_ARCH_ARM64
  if (isa == SK_ISA_NEON && arm_dotprod_on) return &qgemm_u8s8_neondot;
#endif
  return &qgemm_u8s8_impls[isa];
}

static const sk_spmm_u8s8_impl spmm_u8s8_impls[SK_ISA_COUNT] = {
    [SK_ISA_SCALAR] = {8, sk_spmm_u8s8_8x1c4__scalar, sk_spmv_u8s8_1x1c4__scalar},
#ifdef SK_ARCH_X86
    [SK_ISA_AVX2] = {32, sk_spmm_u8s8_32x1c4__avx2, sk_spmv_u8s8_1x1c4__avx2},
    [SK_ISA_AVX512VNNI] = {32, sk_spmm_u8s8_32x1c4__avx512vnni,
                           sk_spmv_u8s8_1x1c4__avx512vnni, 16,
                           sk_spmm_u8s8_16x1c4__avx512vnni},
#endif
#ifdef SK_ARCH_ARM64
    [SK_ISA_NEON] = {16, sk_spmm_u8s8_16x1c4__neon, sk_spmv_u8s8_1x1c4__neon, 8,
                     sk_spmm_u8s8_8x1c4__neon},
#endif
};

static int spmm_u8s8_isa(void) {
  int has[SK_ISA_COUNT];
  for (int i = 0; i < SK_ISA_COUNT; ++i) has[i] = spmm_u8s8_impls[i].spmm != NULL;
  return resolve(has);
}

#ifdef SK_ARCH_ARM64
static const sk_spmm_u8s8_impl spmm_u8s8_neondot = {16, sk_spmm_u8s8_16x1c4__neondot,
                                                    sk_spmv_u8s8_1x1c4__neondot, 8,
                                                    sk_spmm_u8s8_8x1c4__neondot};
#endif

const sk_spmm_u8s8_impl *sk_spmm_u8s8_select(void) {
  const int isa = spmm_u8s8_isa();
#ifdef SK_ARCH_ARM64
  if (isa == SK_ISA_NEON && arm_dotprod_on) return &spmm_u8s8_neondot;
#endif
  return &spmm_u8s8_impls[isa];
}

static const sk_gelu_f32_fn gelu_f32_impls[SK_ISA_COUNT] = {
    [SK_ISA_SCALAR] = sk_gelu_f32__scalar,
#ifdef SK_ARCH_X86
    [SK_ISA_AVX2] = sk_gelu_f32__avx2,
    [SK_ISA_AVX512] = sk_gelu_f32__avx512,
#endif
#ifdef SK_ARCH_ARM64
    [SK_ISA_NEON] = sk_gelu_f32__neon,
#endif
};

static int gelu_f32_isa(void) {
  int has[SK_ISA_COUNT];
  for (int i = 0; i < SK_ISA_COUNT; ++i) has[i] = gelu_f32_impls[i] != NULL;
  return resolve(has);
}

sk_gelu_f32_fn sk_gelu_f32_select(void) { return gelu_f32_impls[gelu_f32_isa()]; }

void sk_gelu_f32(float *y, int64_t n) {
  if (y != NULL && n > 0) sk_gelu_f32_select()(y, n);
}

static const sk_attention_f32_fn attention_f32_impls[SK_ISA_COUNT] = {
    [SK_ISA_SCALAR] = sk_attention_f32__scalar,
#ifdef SK_ARCH_X86
    [SK_ISA_AVX2] = sk_attention_f32__avx2,
    [SK_ISA_AVX512] = sk_attention_f32__avx512,
#endif
#ifdef SK_ARCH_ARM64
    [SK_ISA_NEON] = sk_attention_f32__neon,
#endif
};

static int attention_f32_isa(void) {
  int has[SK_ISA_COUNT];
  for (int i = 0; i < SK_ISA_COUNT; ++i) has[i] = attention_f32_impls[i] != NULL;
  return resolve(has);
}

int sk_attention_f32(int64_t nb, int64_t nh, int64_t tq, int64_t tk, int64_t d, float scale,
                     const sk_attention_f32_args *a) {
  if (a == NULL || nb < 0 || nh < 0 || tq < 0 || tk < 0 || d < 0) return SK_ERR_ARGUMENT;
  if (a->seq_offsets != NULL) { /* packed: tq, tk are each sequence's length */
    if (nb > 0 && (a->mask != NULL || a->seq_offsets[0] < 0)) return SK_ERR_ARGUMENT;
    for (int64_t b = 0; b < nb; ++b)
      if (a->seq_offsets[b + 1] < a->seq_offsets[b]) return SK_ERR_ARGUMENT;
    tq = tk = nb > 0 ? a->seq_offsets[nb] - a->seq_offsets[0] : 0;
  }
  if (nb == 0 || nh == 0 || tq == 0 || d == 0) return SK_OK;
  if (a->q == NULL || a->out == NULL || (tk > 0 && (a->k == NULL || a->v == NULL)))
    return SK_ERR_ARGUMENT;
  if (tk > INT64_MAX / 64 / d) return SK_ERR_ARGUMENT;
  return attention_f32_impls[attention_f32_isa()](nb, nh, tq, tk, d, scale, a);
}

static const sk_add_layernorm_f32_fn layernorm_f32_impls[SK_ISA_COUNT] = {
    [SK_ISA_SCALAR] = sk_add_layernorm_f32__scalar,
#ifdef SK_ARCH_X86
    [SK_ISA_AVX2] = sk_add_layernorm_f32__avx2,
    [SK_ISA_AVX512] = sk_add_layernorm_f32__avx512,
#endif
#ifdef SK_ARCH_ARM64
    [SK_ISA_NEON] = sk_add_layernorm_f32__neon,
#endif
};

static int layernorm_f32_isa(void) {
  int has[SK_ISA_COUNT];
  for (int i = 0; i < SK_ISA_COUNT; ++i) has[i] = layernorm_f32_impls[i] != NULL;
  return resolve(has);
}

int sk_add_layernorm_f32(int64_t m, int64_t n, float *y, int64_t ldy, const float *r,
                         int64_t ldr, const float *gamma, const float *beta, float eps) {
  if (m < 0 || n < 0 || (m > 1 && ldy < n) || (r != NULL && m > 1 && ldr < n))
    return SK_ERR_ARGUMENT;
  if (m == 0 || n == 0) return SK_OK;
  if (y == NULL) return SK_ERR_ARGUMENT;
  layernorm_f32_impls[layernorm_f32_isa()](m, n, y, ldy, r, ldr, gamma, beta, eps);
  return SK_OK;
}

static const sk_add_layernorm_f32_to_fn layernorm_f32_to_impls[SK_ISA_COUNT] = {
    [SK_ISA_SCALAR] = sk_add_layernorm_f32_to__scalar,
#ifdef SK_ARCH_X86
    [SK_ISA_AVX2] = sk_add_layernorm_f32_to__avx2,
    [SK_ISA_AVX512] = sk_add_layernorm_f32_to__avx512,
#endif
};

int sk_add_layernorm_f32_to(int64_t m, int64_t n, const float *a, int64_t lda, const float *r,
                            int64_t ldr, const float *gamma, const float *beta, float eps,
                            float *y, int64_t ldy) {
  if (m < 0 || n < 0 || (m > 1 && (ldy < n || lda < n)) || (r != NULL && m > 1 && ldr < n))
    return SK_ERR_ARGUMENT;
  if (m == 0 || n == 0) return SK_OK;
  if (y == NULL || a == NULL) return SK_ERR_ARGUMENT;
  const int isa = layernorm_f32_isa();
  if (layernorm_f32_to_impls[isa] != NULL) {
    layernorm_f32_to_impls[isa](m, n, a, lda, r, ldr, gamma, beta, eps, y, ldy);
    return SK_OK;
  }
  for (int64_t i = 0; i < m; ++i)
    if (y + i * ldy != a + i * lda) memmove(y + i * ldy, a + i * lda, (size_t)n * sizeof *y);
  layernorm_f32_impls[isa](m, n, y, ldy, r, ldr, gamma, beta, eps);
  return SK_OK;
}

static const sk_sell_f32_fn spmv_sell_f32_impls[SK_ISA_COUNT] = {
    [SK_ISA_SCALAR] = sk_spmv_sell_f32__scalar,
#ifdef SK_ARCH_X86
    [SK_ISA_AVX2] = sk_spmv_sell_f32__avx2,
    [SK_ISA_AVX512] = sk_spmv_sell_f32__avx512,
#endif
#ifdef SK_ARCH_ARM64
    [SK_ISA_NEON] = sk_spmv_sell_f32__neon,
#endif
};

static int spmv_sell_f32_isa(void) {
  int has[SK_ISA_COUNT];
  for (int i = 0; i < SK_ISA_COUNT; ++i) has[i] = spmv_sell_f32_impls[i] != NULL;
  return resolve(has);
}

sk_sell_f32_fn sk_spmv_sell_f32_select(void) {
  return spmv_sell_f32_impls[spmv_sell_f32_isa()];
}

static const sk_gemm_f32_impl gemm_f32_impls[SK_ISA_COUNT] = {
    [SK_ISA_SCALAR] = {4, sk_gemm_f32_tile__scalar},
#ifdef SK_ARCH_X86
    [SK_ISA_AVX2] = {6, sk_gemm_f32_tile__avx2},
    [SK_ISA_AVX512] = {12, sk_gemm_f32_tile__avx512},
#endif
};

static int gemm_f32_isa(void) {
  int has[SK_ISA_COUNT];
  for (int i = 0; i < SK_ISA_COUNT; ++i) has[i] = gemm_f32_impls[i].tile != NULL;
  return resolve(has);
}

const sk_gemm_f32_impl *sk_gemm_f32_select(void) { return &gemm_f32_impls[gemm_f32_isa()]; }

int sk_family_isa(const char *family) {
  if (strcmp(family ? family : "", "qgemm_u8s8") == 0) return qgemm_u8s8_isa();
  if (family == NULL) return -1;
  if (strcmp(family, "spmm_f32") == 0) return spmm_f32_isa();
  if (strcmp(family, "quantize_u8") == 0) return quantize_u8_isa();
  if (strcmp(family, "spmm_u8s8") == 0) return spmm_u8s8_isa();
  if (strcmp(family, "gelu_f32") == 0) return gelu_f32_isa();
  if (strcmp(family, "attention_f32") == 0) return attention_f32_isa();
  if (strcmp(family, "layernorm_f32") == 0) return layernorm_f32_isa();
  if (strcmp(family, "spmv_sell_f32") == 0) return spmv_sell_f32_isa();
  if (strcmp(family, "gemm_f32") == 0) return gemm_f32_isa();
  return -1;
}

/* ---- threads ------------------------------------------------------------ */
static atomic_int num_threads = 0; /* 0: follow OpenMP's default */

void sk_set_num_threads(int n) {
  atomic_store_explicit(&num_threads, n > 0 ? n : 0, memory_order_relaxed);
}

int sk_get_num_threads(void) {
  const int n = atomic_load_explicit(&num_threads, memory_order_relaxed);
  if (n > 0) return n;
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/* Below this many multiply-adds a second thread costs more than it saves
 * (an OpenMP fork/join is a few microseconds). */
#define SK_MIN_WORK_PER_THREAD 65536.0

int sk_threads_for_work(double work) {
  int n = sk_get_num_threads();
  int by_work = (int)(work / SK_MIN_WORK_PER_THREAD);
  if (by_work < 1) by_work = 1;
  return sk_backoff_threads(n < by_work ? n : by_work);
}

void sk_split_rows(const int64_t *indptr, int64_t n, int64_t row_cost, int parts,
                   int64_t *bounds) {
  const int64_t total = indptr[n] + row_cost * n;
  bounds[0] = 0;
  for (int p = 1; p < parts; ++p) {
    const int64_t target = total * p / parts;
    int64_t lo = bounds[p - 1], hi = n; /* first row r with cost(r) >= target */
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (indptr[mid] + row_cost * mid < target) lo = mid + 1; else hi = mid;
    }
    bounds[p] = lo;
  }
  bounds[parts] = n;
}

/* ---- memory ------------------------------------------------------------- */
void *sk_aligned_alloc(size_t bytes) {
  void *p = NULL;
  if (bytes == 0) bytes = 64;
  if (posix_memalign(&p, 64, bytes) != 0) return NULL;
  return p;
}

void sk_aligned_free(void *p) { free(p); }
