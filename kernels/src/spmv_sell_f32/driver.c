/*
 * spmv_sell_f32/driver.c - the loop around the sliced-ELL kernels: threads
 * take chunks of slices of about equal group counts (dynamically, a few per
 * thread, as the CSR driver does); each kernel call runs its slices for all
 * rows of x. No scratch memory.
 */
#include "../internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define SK_CHUNKS_PER_THREAD 4
#define SLOTS_PER_GROUP 64

int sk_linear_sell_f32(const sk_sell_f32 *w, int64_t m, const float *x, int64_t ldx,
                       const float *bias, sk_activation act, float *y, int64_t ldy) {
  if (w == NULL || w->group_ptr == NULL || w->n < 0 || w->k < 0 || m < 0 ||
      (m > 0 && (x == NULL || y == NULL)))
    return SK_ERR_ARGUMENT;
  if ((m > 1 && (ldx < w->k || ldy < w->n)) || (act != SK_ACT_NONE && act != SK_ACT_RELU))
    return SK_ERR_ARGUMENT;
  if (m == 0 || w->n == 0) return SK_OK;

  const sk_sell_f32_fn kernel = sk_spmv_sell_f32_select();
  const int64_t slices = (w->n + 15) / 16, groups = w->group_ptr[slices];
  int nt = sk_threads_for_work((double)(groups + slices) * SLOTS_PER_GROUP * (double)m);
  if (nt > SK_MAX_THREADS) nt = SK_MAX_THREADS;
  if (nt > slices) nt = (int)slices;
  if (nt <= 1) {
    kernel(w, 0, slices, m, x, ldx, bias, act, y, ldy);
    return SK_OK;
  }
  int parts = nt * SK_CHUNKS_PER_THREAD;
  if (parts > slices) parts = (int)slices;
  int64_t bounds[SK_MAX_THREADS * SK_CHUNKS_PER_THREAD + 1];
  sk_split_rows(w->group_ptr, slices, 1 /* a slice's epilogue ~ one group */, parts, bounds);
  const int64_t t0 = sk_region_begin(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
  {
    sk_worker_check_in(t0);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (int c = 0; c < parts; ++c)
      kernel(w, bounds[c], bounds[c + 1], m, x, ldx, bias, act, y, ldy);
  }
  return SK_OK;
}
