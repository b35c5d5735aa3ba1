/*
 * qgemm_ab.c - two builds of the C core's int8 GEMM side by side in one
 * process (dlopen'ed), calls alternated round by round (the order flips each
 * round), thread CPU time per call (steadier than wall time on the shared
 * machine). Prints per-build median / best us, the median of the per-round
 * ratios A/B (> 1: B is faster), and MISMATCH if the two outputs differ in
 * any bit.
 *
 *   gcc -O2 -o /tmp/qgemm_ab benchmarks/qgemm_ab.c -ldl
 *   benchmarks/spmm_ab/build_so.sh /tmp/base/kernels /tmp/a.so   (git archive BASE kernels)
 *   benchmarks/spmm_ab/build_so.sh kernels /tmp/b.so
 *   flock /work/wt/bench.lock /tmp/qgemm_ab /tmp/a.so /tmp/b.so M N K ROUNDS CALLS MODES [THREADS]
 *
 * MODES, one letter per measurement: l = sk_linear_qgemm_u8s8 (fp32 in, bias),
 * s = sk_qgemm_u8s8_s32, f = sk_qgemm_u8s8_f32 (u8 in), q = sk_quantize_rows_u8,
 * p = the vpdpbusd peak loop (AVX-512 VNNI only).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
typedef struct { int64_t n, k; const int8_t *packed; const uint8_t *sum24; const float *scale; int per_channel; } qm;
typedef struct {
  int (*pack)(int64_t, int64_t, const int8_t *, int64_t, int8_t *, uint8_t *);
  int64_t (*bytes)(int64_t, int64_t);
  int (*lin)(const qm *, int64_t, const float *, int64_t, float, int32_t, const float *, int, float *, int64_t);
  int (*s32)(const qm *, int64_t, const uint8_t *, int64_t, const int32_t *, int64_t, int32_t *, int64_t);
  int (*f32)(const qm *, int64_t, const uint8_t *, int64_t, const int32_t *, int64_t, const float *, int64_t, const float *, int, float *, int64_t);
  int (*qr)(int64_t, int64_t, const float *, int64_t, uint8_t *, int64_t, float *, int32_t *);
  int (*peak)(int64_t, int64_t *);
  void (*nt)(int);
  qm w;
} lib;
static double now(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static int cmpd(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
static void *sym(void *h, const char *n) { void *p = dlsym(h, n); if (!p) { fprintf(stderr, "no %s\n", n); exit(1); } return p; }
int main(int argc, char **argv) {
  int64_t M = atol(argv[3]), N = atol(argv[4]), K = atol(argv[5]);
  int rounds = atoi(argv[6]), calls = atoi(argv[7]); const char *modes = argv[8];
  int threads = argc > 9 ? atoi(argv[9]) : 1;
  lib L[2];
  srand(1);
  int8_t *q = malloc(N * K); for (int64_t i = 0; i < N * K; ++i) q[i] = (int8_t)(rand() % 255 - 127);
  float *x = aligned_alloc(64, M * K * 4 + 64); for (int64_t i = 0; i < M * K; ++i) x[i] = (float)rand() / RAND_MAX * 2 - 0.7f;
  float *bias = malloc(N * 4), *ws = malloc(N * 4); for (int64_t i = 0; i < N; ++i) { bias[i] = (float)rand() / RAND_MAX; ws[i] = 0.001f + (float)rand() / RAND_MAX * 0.01f; }
  int64_t k4 = (K + 3) / 4 * 4;
  uint8_t *xq = aligned_alloc(64, M * k4 + 64); float *rs = malloc(M * 4); int32_t *rz = malloc(M * 4);
  float *y[2]; int32_t *c[2];
  for (int l = 0; l < 2; ++l) {
    void *h = dlopen(argv[1 + l], RTLD_NOW | RTLD_LOCAL); if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
    L[l].pack = sym(h, "sk_qmatrix_s8_pack"); L[l].bytes = sym(h, "sk_qmatrix_s8_packed_bytes");
    L[l].lin = sym(h, "sk_linear_qgemm_u8s8"); L[l].s32 = sym(h, "sk_qgemm_u8s8_s32"); L[l].f32 = sym(h, "sk_qgemm_u8s8_f32");
    L[l].qr = sym(h, "sk_quantize_rows_u8"); L[l].peak = sym(h, "sk_qgemm_u8s8_peak_loop"); L[l].nt = sym(h, "sk_set_num_threads");
    L[l].nt(threads);
    int8_t *pk = aligned_alloc(64, L[l].bytes(N, K) + 64); uint8_t *s24 = malloc(3 * N + 64);
    if (L[l].pack(N, K, q, K, pk, s24)) return 2;
    L[l].w = (qm){N, K, pk, s24, ws, 1};
    y[l] = aligned_alloc(64, M * N * 4 + 64); c[l] = aligned_alloc(64, M * N * 4 + 64);
  }
  L[0].qr(M, K, x, K, xq, k4, rs, rz);
  for (const char *m = modes; *m; ++m) {
    double *t[2] = {malloc(rounds * sizeof(double)), malloc(rounds * sizeof(double))};
    for (int r = 0; r < rounds + 1; ++r)
      for (int o = 0; o < 2; ++o) {
        int l = (r & 1) ? 1 - o : o; lib *b = &L[l]; int64_t sink = 0;
        double t0 = now();
        for (int i = 0; i < calls; ++i) switch (*m) {
          case 'l': b->lin(&b->w, M, x, K, 0.f, 0, bias, 0, y[l], N); break;
          case 's': b->s32(&b->w, M, xq, k4, rz, 1, c[l], N); break;
          case 'f': b->f32(&b->w, M, xq, k4, rz, 1, rs, 1, bias, 0, y[l], N); break;
          case 'q': b->qr(M, K, x, K, xq, k4, rs, rz); break;
          case 'p':
            if (b->peak(100000, &sink)) { fprintf(stderr, "no avx512vnni: no peak loop\n"); return 1; }
            break;
        }
        if (r) t[l][r - 1] = (now() - t0) / calls * 1e6;
      }
    if (*m == 'l' || *m == 'f') if (memcmp(y[0], y[1], M * N * 4)) printf("MISMATCH %c\n", *m);
    if (*m == 's') if (memcmp(c[0], c[1], M * N * 4)) printf("MISMATCH s\n");
    double ratio[rounds]; for (int r = 0; r < rounds; ++r) ratio[r] = t[0][r] / t[1][r];
    qsort(ratio, rounds, sizeof(double), cmpd);
    double mn0 = 1e30, mn1 = 1e30; for (int r = 0; r < rounds; ++r) { if (t[0][r] < mn0) mn0 = t[0][r]; if (t[1][r] < mn1) mn1 = t[1][r]; }
    qsort(t[0], rounds, sizeof(double), cmpd); qsort(t[1], rounds, sizeof(double), cmpd);
    double ops = 2.0 * M * N * K;
    if (*m == 'p') ops = 100000.0 * 24 * 64 * 2;
    printf("%c M=%ld N=%ld K=%ld  A med %.1f min %.1f  B med %.1f min %.1f us  A/B med-of-ratios %.4f  GOP/s A %.0f B %.0f\n", *m, M, N, K,
           t[0][rounds / 2], mn0, t[1][rounds / 2], mn1, ratio[rounds / 2], ops / mn0 / 1e3, ops / mn1 / 1e3);
  }
  return 0;
}
