/* test_attention_f32.c - sk_attention_f32 against a double reference on every
 * ISA: shapes around the vector widths (tq, tk, d = 1..33), a key-padding
 * mask with a fully masked query, packed sequences (seq_offsets, one empty),
 * outputs in exactly sized heap buffers so ASan sees any access past them.
 * Tolerance: 1e-5 * (sum_j p_j |v_j|) + 1e-6 (inputs in [-1, 1]). */
#include <math.h>
#include <string.h>

#include "test_util.h"

/* [b, t, h, d] contiguous */
static float *rand_bthd(int64_t b, int64_t t, int64_t h, int64_t d) {
  const int64_t n = b * t * h * d;
  float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
  for (int64_t i = 0; i < n; ++i) p[i] = rng_f32();
  return p;
}

/* out for query i of (b, h) over keys [k0, k0 + tk) of batch row kb */
static void ref_row(const float *q, const float *k, const float *v, const float *mrow,
                    int64_t qoff, int64_t koff, int64_t tk, int64_t h_all, int64_t h,
                    int64_t d, float scale, double *out, double *bound) {
  double s[64], mx = -INFINITY, sum = 0.0;
  for (int64_t j = 0; j < tk; ++j) {
    double dot = 0.0;
    for (int64_t c = 0; c < d; ++c)
      dot += (double)q[(qoff * h_all + h) * d + c] * k[((koff + j) * h_all + h) * d + c];
    s[j] = dot * scale + (mrow ? mrow[j] : 0.0f);
    if (s[j] > mx) mx = s[j];
  }
  for (int64_t c = 0; c < d; ++c) out[c] = bound[c] = 0.0;
  if (mx == -INFINITY) return;
  for (int64_t j = 0; j < tk; ++j) sum += s[j] = exp(s[j] - mx);
  for (int64_t j = 0; j < tk; ++j)
    for (int64_t c = 0; c < d; ++c) {
      const double w = v[((koff + j) * h_all + h) * d + c];
      out[c] += s[j] / sum * w;
      bound[c] += s[j] / sum * fabs(w);
    }
}

static void set_strides(sk_attention_f32_args *a, int64_t t, int64_t h, int64_t d) {
  int64_t *all[] = {a->q_stride, a->k_stride, a->v_stride, a->out_stride};
  for (int i = 0; i < 4; ++i) {
    all[i][0] = t * h * d;
    all[i][1] = h * d;
    all[i][2] = d;
  }
}

static void check_out(int isa, const char *what, const float *got, const double *want,
                      const double *bound, int64_t d) {
  for (int64_t c = 0; c < d; ++c)
    CHECK(fabs(got[c] - want[c]) <= 1e-5 * bound[c] + 1e-6, "isa %d %s: out %g want %g", isa,
          what, got[c], want[c]);
}

static void padded(int isa, int64_t b, int64_t h, int64_t t, int64_t d) {
  float *q = rand_bthd(b, t, h, d), *k = rand_bthd(b, t, h, d), *v = rand_bthd(b, t, h, d);
  float *out = rand_bthd(b, t, h, d);
  float *mask = malloc((size_t)(b * t * t) * sizeof *mask);
  for (int64_t i = 0; i < b * t * t; ++i) mask[i] = rng_u32() % 4 == 0 ? -INFINITY : 0.0f;
  for (int64_t j = 0; j < t; ++j) mask[j] = -INFINITY; /* batch 0, query 0: no key */
  sk_attention_f32_args a = {q, k, v, mask, out, {0}, {0}, {0}, {0}, {t * t, t}, NULL};
  set_strides(&a, t, h, d);
  CHECK(sk_attention_f32(b, h, t, t, d, 0.7f, &a) == SK_OK, "isa %d: status", isa);
  double want[64], bound[64];
  for (int64_t bb = 0; bb < b; ++bb)
    for (int64_t i = 0; i < t; ++i)
      for (int64_t hh = 0; hh < h; ++hh) {
        ref_row(q, k, v, mask + (bb * t + i) * t, bb * t + i, bb * t, t, h, hh, d, 0.7f, want,
                bound);
        check_out(isa, "padded", out + ((bb * t + i) * h + hh) * d, want, bound, d);
      }
  free(q), free(k), free(v), free(out), free(mask);
}

static void packed(int isa, int64_t h, int64_t d) {
  const int64_t off[] = {0, 5, 5, 21, 22}, nb = 4, n = 22;
  float *q = rand_bthd(1, n, h, d), *k = rand_bthd(1, n, h, d), *v = rand_bthd(1, n, h, d);
  float *out = rand_bthd(1, n, h, d);
  sk_attention_f32_args a = {q, k, v, NULL, out, {0}, {0}, {0}, {0}, {0, 0}, off};
  set_strides(&a, n, h, d);
  CHECK(sk_attention_f32(nb, h, 0, 0, d, 0.5f, &a) == SK_OK, "isa %d: packed status", isa);
  double want[64], bound[64];
  for (int64_t bb = 0; bb < nb; ++bb)
    for (int64_t i = off[bb]; i < off[bb + 1]; ++i)
      for (int64_t hh = 0; hh < h; ++hh) {
        ref_row(q, k, v, NULL, i, off[bb], off[bb + 1] - off[bb], h, hh, d, 0.5f, want, bound);
        check_out(isa, "packed", out + (i * h + hh) * d, want, bound, d);
      }
  const int64_t bad[] = {0, 6, 3};
  a.seq_offsets = bad;
  CHECK(sk_attention_f32(2, h, 0, 0, d, 0.5f, &a) == SK_ERR_ARGUMENT, "isa %d: descending",
        isa);
  free(q), free(k), free(v), free(out);
}

int main(void) {
  const int64_t dims[] = {1, 3, 4, 8, 15, 16, 17, 32, 33};
  FOR_EACH_ISA(isa) {
    /* NEON has its own kernel (neon.c): make sure it is the one running */
    if (isa == SK_ISA_NEON)
      CHECK(sk_family_isa("attention_f32") == SK_ISA_NEON, "NEON kernel not registered");
    for (size_t i = 0; i < sizeof dims / sizeof *dims; ++i) {
      padded(isa, 2, 2, dims[i], dims[(i + 3) % 9]);
      packed(isa, 3, dims[i]);
    }
    CHECK(sk_attention_f32(1, 1, 1, 1, 1, 1.0f, NULL) == SK_ERR_ARGUMENT, "isa %d: NULL", isa);
  }
  return sk_test_finish("test_attention_f32");
}
