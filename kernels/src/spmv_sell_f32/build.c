/*
 * spmv_sell_f32/build.c - CSR -> sliced ELL with 32-column windows, and its
 * validation (the layout is described in sparsekit.h).
 *
 * The groups are built greedily per slice of 16 rows: a group's window starts
 * at the smallest column any row still has (moved down to K - 32, so a full
 * window never reads past x), and each row takes its next nonzeros inside the
 * window, at most 4. A window that floats with the data instead of fixed
 * 32-column blocks fills ~57% of the slots at 90% sparsity instead of ~40%
 * (a fixed block needs as many steps as its busiest row, rounded up to 4),
 * and every group is the same 4 steps, so the kernel has no per-window trip
 * count to mispredict.
 */
#include <string.h>

#include "../internal.h"

#define LANES 16
#define STEPS 4
#define WIDTH 32

static inline int64_t csr_col(const sk_csr_f32 *w, int64_t p) {
  return w->index_bytes == 2 ? (int64_t)((const uint16_t *)w->indices)[p]
                             : (int64_t)((const int32_t *)w->indices)[p];
}

/* One pass over all slices; with window == NULL it only counts groups. */
static int64_t build(const sk_csr_f32 *w, int64_t *group_ptr, uint32_t *window,
                     uint32_t *index, float *values) {
  const int64_t slices = (w->n + LANES - 1) / LANES;
  int64_t g = 0;
  for (int64_t s = 0; s < slices; ++s) {
    int64_t p[LANES], e[LANES];
    for (int i = 0; i < LANES; ++i) {
      const int64_t r = s * LANES + i;
      p[i] = r < w->n ? w->indptr[r] : 0;
      e[i] = r < w->n ? w->indptr[r + 1] : 0;
    }
    if (group_ptr) group_ptr[s] = g;
    for (;;) {
      int64_t c0 = -1;
      for (int i = 0; i < LANES; ++i)
        if (p[i] < e[i] && (c0 < 0 || csr_col(w, p[i]) < c0)) c0 = csr_col(w, p[i]);
      if (c0 < 0) break;
      if (c0 > w->k - WIDTH) c0 = w->k >= WIDTH ? w->k - WIDTH : 0;
      if (window) {
        window[g] = (uint32_t)c0;
        memset(index + g * LANES, 0, LANES * sizeof(uint32_t));
        memset(values + g * LANES * STEPS, 0, LANES * STEPS * sizeof(float));
      }
      for (int i = 0; i < LANES; ++i)
        for (int j = 0; j < STEPS && p[i] < e[i]; ++j, ++p[i]) {
          const int64_t c = csr_col(w, p[i]);
          if (c >= c0 + WIDTH) break;
          if (window) {
            index[g * LANES + i] |= (uint32_t)((c - c0) | 0x80) << (8 * j);
            values[(g * STEPS + j) * LANES + i] = w->values[p[i]];
          }
        }
      ++g;
    }
  }
  if (group_ptr) group_ptr[slices] = g;
  return g;
}

int64_t sk_sell_f32_count_groups(const sk_csr_f32 *w) {
  if (w == NULL || w->n < 0 || w->k < 0 || w->indptr == NULL) return -1;
  if (w->index_bytes != 2 && w->index_bytes != 4) return -1;
  return build(w, NULL, NULL, NULL, NULL);
}

int sk_sell_f32_from_csr(const sk_csr_f32 *w, int64_t *group_ptr, uint32_t *window,
                         uint32_t *index, float *values) {
  if (sk_sell_f32_count_groups(w) < 0 || group_ptr == NULL) return SK_ERR_ARGUMENT;
  if (w->indptr[w->n] > 0 && (window == NULL || index == NULL || values == NULL))
    return SK_ERR_ARGUMENT;
  build(w, group_ptr, window, index, values);
  return SK_OK;
}

/* Group g of slice s: window in range, empty slots zero, no lane past N, and
 * each lane's columns rising (last[i]: lane i's previous column, -1). */
static int group_ok(const sk_sell_f32 *w, int64_t s, int64_t g, int64_t last[LANES]) {
  const int64_t c0 = w->window[g];
  if (w->k >= WIDTH ? c0 > w->k - WIDTH : c0 != 0) return 0;
  for (int i = 0; i < LANES; ++i) {
    const uint32_t word = w->index[g * LANES + i];
    for (int j = 0; j < STEPS; ++j) {
      const uint32_t b = (word >> (8 * j)) & 0xff;
      const float v = w->values[(g * STEPS + j) * LANES + i];
      if (!(b & 0x80)) {
        if (b != 0 || v != 0.0f) return 0;
        continue;
      }
      const int64_t c = c0 + (b & 0x7f);
      if ((b & 0x60) || c >= w->k || s * LANES + i >= w->n || c <= last[i]) return 0;
      if (v != v || v - v != 0.0f) return 0; /* NaN or infinity */
      last[i] = c;
    }
  }
  return 1;
}

int sk_sell_f32_validate(const sk_sell_f32 *w, int64_t *bad_group) {
  if (bad_group) *bad_group = -1;
  if (w == NULL || w->n < 0 || w->k < 0 || w->group_ptr == NULL) return SK_ERR_ARGUMENT;
  const int64_t slices = (w->n + LANES - 1) / LANES;
  if (w->group_ptr[0] != 0) return SK_ERR_FORMAT;
  for (int64_t s = 0; s < slices; ++s)
    if (w->group_ptr[s + 1] < w->group_ptr[s]) return SK_ERR_FORMAT;
  if (w->group_ptr[slices] > 0 && (w->window == NULL || w->index == NULL || w->values == NULL))
    return SK_ERR_ARGUMENT;
  for (int64_t s = 0; s < slices; ++s) {
    int64_t last[LANES];
    for (int i = 0; i < LANES; ++i) last[i] = -1;
    for (int64_t g = w->group_ptr[s]; g < w->group_ptr[s + 1]; ++g)
      if (!group_ok(w, s, g, last)) {
        if (bad_group) *bad_group = g;
        return SK_ERR_FORMAT;
      }
  }
  return SK_OK;
}
