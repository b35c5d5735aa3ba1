/* Load-slot micro-benchmark behind "Sparsity-specialized code (go/no-go)" in
 * benchmarks/RESULTS.md: 16 zmm FMAs per iteration on 8 accumulators, with the
 * multiplier in a register, as a 4-byte embedded broadcast ({1to16}), as a full
 * 64-byte memory operand, or from vbroadcastss; then broadcast FMAs plus 8 or
 * 16 extra loads, to see whether broadcast loads and 512-bit loads share one
 * limit. All data in L1.
 *   gcc -O2 -mavx512f benchmarks/spmm_jit/loads_micro.c -o /tmp/loads_micro
 *   flock /work/wt/bench.lock /tmp/loads_micro */
#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
float buf[4096] __attribute__((aligned(64)));
#define ITERS 20000000L
/* 16 FMAs per iteration on 8 accumulators */
#define BODY_REG \
 "vfmadd231ps %%zmm16,%%zmm24,%%zmm0\n vfmadd231ps %%zmm17,%%zmm25,%%zmm1\n vfmadd231ps %%zmm18,%%zmm26,%%zmm2\n vfmadd231ps %%zmm19,%%zmm27,%%zmm3\n" \
 "vfmadd231ps %%zmm20,%%zmm28,%%zmm4\n vfmadd231ps %%zmm21,%%zmm29,%%zmm5\n vfmadd231ps %%zmm22,%%zmm30,%%zmm6\n vfmadd231ps %%zmm23,%%zmm31,%%zmm7\n"
#define BODY_BC(o) \
 "vfmadd231ps " #o "+0(%1)%{1to16%},%%zmm24,%%zmm0\n vfmadd231ps " #o "+4(%1)%{1to16%},%%zmm25,%%zmm1\n vfmadd231ps " #o "+8(%1)%{1to16%},%%zmm26,%%zmm2\n vfmadd231ps " #o "+12(%1)%{1to16%},%%zmm27,%%zmm3\n" \
 "vfmadd231ps " #o "+16(%1)%{1to16%},%%zmm28,%%zmm4\n vfmadd231ps " #o "+20(%1)%{1to16%},%%zmm29,%%zmm5\n vfmadd231ps " #o "+24(%1)%{1to16%},%%zmm30,%%zmm6\n vfmadd231ps " #o "+28(%1)%{1to16%},%%zmm31,%%zmm7\n"
#define BODY_FULL(o) \
 "vfmadd231ps " #o "+0(%1),%%zmm24,%%zmm0\n vfmadd231ps " #o "+64(%1),%%zmm25,%%zmm1\n vfmadd231ps " #o "+128(%1),%%zmm26,%%zmm2\n vfmadd231ps " #o "+192(%1),%%zmm27,%%zmm3\n" \
 "vfmadd231ps " #o "+256(%1),%%zmm28,%%zmm4\n vfmadd231ps " #o "+320(%1),%%zmm29,%%zmm5\n vfmadd231ps " #o "+384(%1),%%zmm30,%%zmm6\n vfmadd231ps " #o "+448(%1),%%zmm31,%%zmm7\n"
#define BODY_BCREG(o) \
 "vbroadcastss " #o "+0(%1),%%zmm16\n vfmadd231ps %%zmm16,%%zmm24,%%zmm0\n vfmadd231ps %%zmm16,%%zmm25,%%zmm1\n vbroadcastss " #o "+4(%1),%%zmm17\n vfmadd231ps %%zmm17,%%zmm26,%%zmm2\n vfmadd231ps %%zmm17,%%zmm27,%%zmm3\n" \
 "vbroadcastss " #o "+8(%1),%%zmm18\n vfmadd231ps %%zmm18,%%zmm28,%%zmm4\n vfmadd231ps %%zmm18,%%zmm29,%%zmm5\n vbroadcastss " #o "+12(%1),%%zmm19\n vfmadd231ps %%zmm19,%%zmm30,%%zmm6\n vfmadd231ps %%zmm19,%%zmm31,%%zmm7\n"
#define EXTRA_LD(o) "vmovaps " #o "+0(%1),%%zmm16\n vmovaps " #o "+64(%1),%%zmm17\n vmovaps " #o "+128(%1),%%zmm18\n vmovaps " #o "+192(%1),%%zmm19\n"
#define EXTRA_BC(o) "vbroadcastss " #o "+0(%1),%%zmm16\n vbroadcastss " #o "+4(%1),%%zmm17\n vbroadcastss " #o "+8(%1),%%zmm18\n vbroadcastss " #o "+12(%1),%%zmm19\n"
#define RUN(name, body) { double t0=now(); long n=ITERS; __asm__ volatile( \
 "vxorps %%zmm0,%%zmm0,%%zmm0\n vmovaps %%zmm0,%%zmm1\n vmovaps %%zmm0,%%zmm2\n vmovaps %%zmm0,%%zmm3\n vmovaps %%zmm0,%%zmm4\n vmovaps %%zmm0,%%zmm5\n vmovaps %%zmm0,%%zmm6\n vmovaps %%zmm0,%%zmm7\n" \
 "1:\n" body "dec %0\n jnz 1b\n" : "+r"(n) : "r"(buf) : "memory","zmm0","zmm1","zmm2","zmm3","zmm4","zmm5","zmm6","zmm7","zmm16","zmm17","zmm18","zmm19"); \
 double dt=now()-t0; printf("%-10s %.3f ns/FMA  %.2f GFMA/s\n", name, dt/(ITERS*16.0)*1e9, ITERS*16.0/dt/1e9);}
int main(void){
  RUN("bc16", BODY_BC(0) BODY_BC(32))
  RUN("bc16+8ld", BODY_BC(0) EXTRA_LD(1024) BODY_BC(32) EXTRA_LD(2048))
  RUN("bc16+8bc", BODY_BC(0) EXTRA_BC(1024) BODY_BC(32) EXTRA_BC(2048))
  RUN("reg16+8ld", BODY_REG EXTRA_LD(1024) BODY_REG EXTRA_LD(2048))
  RUN("bc16+16ld", BODY_BC(0) EXTRA_LD(1024) EXTRA_LD(1536) BODY_BC(32) EXTRA_LD(2048) EXTRA_LD(2560))

  RUN("reg", BODY_REG BODY_REG)
  RUN("bcast-mem", BODY_BC(0) BODY_BC(32))
  RUN("full-mem", BODY_FULL(0) BODY_FULL(512))
  RUN("bcast-reg", BODY_BCREG(0) BODY_BCREG(16))
  RUN("reg", BODY_REG BODY_REG)
  RUN("bcast-mem", BODY_BC(0) BODY_BC(32))
  return 0;}
