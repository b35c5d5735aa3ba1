/* sparsekit_info.c - what the sparsekit C core finds on this machine: the
 * version, the instruction sets the CPU runs, the one each kernel family
 * uses, and the thread count (the C version of `sparsekit info`).
 *
 *   sparsekit_info          # detected ISAs and the families' choice
 *   sparsekit_info avx2     # the same after sk_set_isa(avx2)
 */
#include <stdio.h>
#include <string.h>

#include "sparsekit.h"

static const char *const families[] = {"spmm_f32",  "spmm_u8s8",     "qgemm_u8s8",
                                       "quantize_u8", "gemm_f32",    "spmv_sell_f32",
                                       "gelu_f32",  "attention_f32", "layernorm_f32"};

int main(int argc, char **argv) {
  printf("sparsekit %s\n", SK_VERSION_STRING);

  printf("cpu supports:");
  for (int i = 0; i < SK_ISA_COUNT; ++i)
    if (sk_cpu_supports((sk_isa)i)) printf(" %s", sk_isa_name((sk_isa)i));
  printf("\n");

  if (argc > 1) { /* force an ISA ceiling by name */
    int isa = -1;
    for (int i = 0; i < SK_ISA_COUNT; ++i)
      if (strcmp(argv[1], sk_isa_name((sk_isa)i)) == 0) isa = i;
    const int rc = isa < 0 ? SK_ERR_ARGUMENT : sk_set_isa((sk_isa)isa);
    if (rc != SK_OK) {
      fprintf(stderr, "cannot use isa '%s' (%s)\n", argv[1],
              rc == SK_ERR_UNSUPPORTED ? "this CPU lacks it" : "unknown name");
      return 2;
    }
  }
  printf("isa: %s (best on this cpu: %s)\n", sk_isa_name(sk_get_isa()),
         sk_isa_name(sk_best_isa()));

  /* A family without a kernel for the chosen ISA uses the best one below it. */
  for (size_t f = 0; f < sizeof families / sizeof families[0]; ++f) {
    const int isa = sk_family_isa(families[f]);
    if (isa < 0) {
      fprintf(stderr, "sk_family_isa(\"%s\") does not know the family\n", families[f]);
      return 1;
    }
    printf("  %-14s %s\n", families[f], sk_isa_name((sk_isa)isa));
  }
  printf("threads: %d (thread backoff %s)\n", sk_get_num_threads(),
         sk_get_thread_backoff() ? "on" : "off");
  return 0;
}
