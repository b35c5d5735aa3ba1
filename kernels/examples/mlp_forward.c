/* mlp_forward.c - a pruned, quantized 2-layer MLP on the sparsekit C core,
 * checked against plain C loops.
 *
 *   h  = relu(x W1^T + b1)   W1 [H, K] fp32 with 80% of its weights pruned,
 *                            kept as CSR: sk_linear_csr_f32
 *   hq = quantize(h)         u8, a scale and zero point per row:
 *                            sk_quantize_rows_u8
 *   y  = hq W2q^T + b2       W2 [N, H] as int8 with a scale per output channel,
 *                            packed once: sk_qmatrix_s8_pack, sk_qgemm_u8s8_f32
 *   yq = requantize(y)       u8 for a following int8 layer: sk_qgemm_u8s8_u8
 *
 * Usage: mlp_forward [isa]   (isa: scalar, avx2, ...; default: the best the
 * CPU has). Prints the ISA each kernel family ran and exits 0 when every
 * result matches its reference.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sparsekit.h"

enum { M = 5, K = 96, H = 70, N = 33 }; /* tokens, inputs, hidden, outputs */

static const char *status_name(int rc) {
  switch (rc) {
    case SK_OK: return "SK_OK";
    case SK_ERR_ARGUMENT: return "SK_ERR_ARGUMENT";
    case SK_ERR_UNSUPPORTED: return "SK_ERR_UNSUPPORTED";
    case SK_ERR_NOMEM: return "SK_ERR_NOMEM";
    case SK_ERR_FORMAT: return "SK_ERR_FORMAT";
    case SK_ERR_NONFINITE: return "SK_ERR_NONFINITE";
    default: return "unknown status";
  }
}

/* Every sparsekit call that can fail returns SK_OK (0) or a negative SK_ERR_*. */
#define SK_TRY(call)                                                               \
  do {                                                                             \
    const int rc_ = (call);                                                        \
    if (rc_ != SK_OK) {                                                            \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, status_name(rc_)); \
      exit(1);                                                                     \
    }                                                                              \
  } while (0)

static void *xmalloc(size_t bytes) {
  void *p = malloc(bytes);
  if (p == NULL) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  return p;
}

static uint32_t rng_state = 2463534242u;
static float rand_uniform(void) { /* [-1, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 17;
  rng_state ^= rng_state << 5;
  return (float)(rng_state >> 8) / 8388608.0f - 1.0f;
}

/* ---- layer 1: a pruned fp32 weight as CSR -------------------------------- */

/* CSR of the nonzeros of w[n, k]. K <= 65536, so column indices are uint16. */
typedef struct {
  int64_t *indptr;
  uint16_t *indices;
  float *values;
} csr_storage;

static sk_csr_f32 csr_from_dense(int64_t n, int64_t k, const float *w, csr_storage *s) {
  int64_t nnz = 0;
  for (int64_t i = 0; i < n * k; ++i) nnz += w[i] != 0.0f;
  s->indptr = xmalloc((size_t)(n + 1) * sizeof(int64_t));
  s->indices = xmalloc((size_t)(nnz > 0 ? nnz : 1) * sizeof(uint16_t));
  s->values = xmalloc((size_t)(nnz > 0 ? nnz : 1) * sizeof(float));
  int64_t p = 0;
  s->indptr[0] = 0;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c)
      if (w[r * k + c] != 0.0f) {
        s->indices[p] = (uint16_t)c;
        s->values[p++] = w[r * k + c];
      }
    s->indptr[r + 1] = p;
  }
  sk_csr_f32 csr = {n, k, s->indptr, s->indices, 2, s->values};
  return csr;
}

/* ---- layer 2: int8 weights, symmetric, one scale per output channel ------ */

static void quantize_weights(int64_t n, int64_t k, const float *w, int8_t *q, float *scale) {
  for (int64_t r = 0; r < n; ++r) {
    float amax = 0.0f;
    for (int64_t c = 0; c < k; ++c) amax = fmaxf(amax, fabsf(w[r * k + c]));
    scale[r] = amax > 0.0f ? amax / 127.0f : 1.0f;
    for (int64_t c = 0; c < k; ++c) q[r * k + c] = (int8_t)lrintf(w[r * k + c] / scale[r]);
  }
}

int main(int argc, char **argv) {
  if (argc > 1) { /* force an ISA (a ceiling: a family without it uses the next best) */
    int isa = -1;
    for (int i = 0; i < SK_ISA_COUNT; ++i)
      if (strcmp(argv[1], sk_isa_name((sk_isa)i)) == 0) isa = i;
    if (isa < 0) {
      fprintf(stderr, "unknown isa '%s'\n", argv[1]);
      return 2;
    }
    SK_TRY(sk_set_isa((sk_isa)isa)); /* SK_ERR_UNSUPPORTED if the CPU lacks it */
  }
  printf("sparsekit %s, isa %s (spmm_f32: %s, quantize_u8: %s, qgemm_u8s8: %s), %d threads\n",
         SK_VERSION_STRING, sk_isa_name(sk_get_isa()), sk_isa_name(sk_family_isa("spmm_f32")),
         sk_isa_name(sk_family_isa("quantize_u8")), sk_isa_name(sk_family_isa("qgemm_u8s8")),
         sk_get_num_threads());

  /* The model and an input. W1 keeps about 1 weight in 5. */
  float *x = xmalloc(sizeof(float) * M * K), *w1 = xmalloc(sizeof(float) * H * K);
  float *b1 = xmalloc(sizeof(float) * H), *w2 = xmalloc(sizeof(float) * N * H);
  float *b2 = xmalloc(sizeof(float) * N);
  for (int i = 0; i < M * K; ++i) x[i] = rand_uniform();
  for (int i = 0; i < H * K; ++i) {
    const float v = rand_uniform();
    w1[i] = fabsf(v) < 0.2f ? 2.5f * v : 0.0f;
  }
  for (int i = 0; i < H; ++i) b1[i] = 0.1f * rand_uniform();
  for (int i = 0; i < N * H; ++i) w2[i] = 0.2f * rand_uniform();
  for (int i = 0; i < N; ++i) b2[i] = 0.1f * rand_uniform();

  /* Prepare the weights once: CSR for W1 (validated: the kernels trust it),
   * int8 packed for W2 (the packed buffer must be 64-byte aligned). */
  csr_storage w1_storage;
  const sk_csr_f32 w1_csr = csr_from_dense(H, K, w1, &w1_storage);
  int64_t bad_row = -1;
  SK_TRY(sk_csr_f32_validate(&w1_csr, &bad_row));

  int8_t *w2_q = xmalloc((size_t)N * H);
  float *w2_scale = xmalloc(sizeof(float) * N);
  quantize_weights(N, H, w2, w2_q, w2_scale);
  const int64_t packed_bytes = sk_qmatrix_s8_packed_bytes(N, H); /* a multiple of 64 */
  int8_t *w2_packed = aligned_alloc(64, (size_t)packed_bytes);
  uint8_t *w2_sum24 = xmalloc(3 * (size_t)N);
  if (w2_packed == NULL) return 1;
  SK_TRY(sk_qmatrix_s8_pack(N, H, w2_q, H, w2_packed, w2_sum24));
  const sk_qmatrix_s8 w2_int8 = {N, H, w2_packed, w2_sum24, w2_scale, 1 /* per channel */};

  /* The forward pass: four calls. */
  float *h = xmalloc(sizeof(float) * M * H), *y = xmalloc(sizeof(float) * M * N);
  uint8_t *hq = xmalloc((size_t)M * H), *yq = xmalloc((size_t)M * N);
  float h_scale[M];
  int32_t h_zp[M];
  SK_TRY(sk_linear_csr_f32(&w1_csr, M, x, K, b1, SK_ACT_RELU, h, H));
  SK_TRY(sk_quantize_rows_u8(M, H, h, H, hq, H, h_scale, h_zp));
  SK_TRY(sk_qgemm_u8s8_f32(&w2_int8, M, hq, H, h_zp, 1, h_scale, 1, b2, SK_ACT_NONE, y, N));
  /* A static output quantization, as calibration would give: y in [-2, 2]. */
  const float out_scale = 4.0f / 255.0f;
  const int32_t out_zp = 128;
  SK_TRY(sk_qgemm_u8s8_u8(&w2_int8, M, hq, H, h_zp, 1, h_scale, 1, b2, SK_ACT_NONE, out_scale,
                          out_zp, yq, N));

  /* ---- the references: plain loops --------------------------------------- */
  int failures = 0;
  double h_err = 0.0, y_err = 0.0, y_vs_fp32 = 0.0;
  for (int m = 0; m < M; ++m)
    for (int j = 0; j < H; ++j) { /* fp32 layer: the dense W1, in double */
      double acc = b1[j], mag = fabs(b1[j]);
      for (int k = 0; k < K; ++k) {
        acc += (double)x[m * K + k] * w1[j * K + k];
        mag += fabs((double)x[m * K + k] * w1[j * K + k]);
      }
      const double ref = acc > 0.0 ? acc : 0.0, err = fabs(h[m * H + j] - ref);
      h_err = err > h_err ? err : h_err;
      failures += err > 1e-5 * mag + 1e-7;
    }
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      /* int8 layer: the integer sum is exact, the epilogue is one float step */
      int64_t acc = 0;
      double fp32 = b2[n], bound = 0.0;
      for (int k = 0; k < H; ++k) {
        acc += ((int64_t)hq[m * H + k] - h_zp[m]) * w2_q[n * H + k];
        fp32 += (double)h[m * H + k] * w2[n * H + k];
        /* each factor is off by at most half its quantization step */
        bound += fabs(h[m * H + k]) * w2_scale[n] / 2 + fabs(w2[n * H + k]) * h_scale[m] / 2 +
                 (double)w2_scale[n] * h_scale[m] / 4;
      }
      const double scale = (double)h_scale[m] * w2_scale[n];
      const double ref = (double)acc * scale + b2[n];
      const double err = fabs(y[m * N + n] - ref);
      y_err = err > y_err ? err : y_err;
      failures += err > 4 * 1.2e-7 * (fabs((double)acc) * scale + fabs(b2[n])) + 1e-30;
      /* ... and within the quantization error of the fp32 layer */
      const double qerr = fabs(y[m * N + n] - fp32);
      y_vs_fp32 = qerr > y_vs_fp32 ? qerr : y_vs_fp32;
      failures += qerr > bound + 1e-5;
      /* requantized: rint(y / out_scale) + out_zp, clamped to u8, from the
       * same y as sk_qgemm_u8s8_f32's */
      const float v = nearbyintf(y[m * N + n] / out_scale) + (float)out_zp;
      const int expect = v < 0.0f ? 0 : v > 255.0f ? 255 : (int)v;
      failures += yq[m * N + n] != expect;
    }
  printf("layer 1 (csr fp32 + relu): max |error| %.2e vs double\n", h_err);
  printf("layer 2 (int8 gemm): max |error| %.2e vs exact int, %.2e vs the fp32 layer\n", y_err,
         y_vs_fp32);
  printf("y[0, 0..3] = %.4f %.4f %.4f %.4f, requantized %d %d %d %d\n", y[0], y[1], y[2], y[3],
         yq[0], yq[1], yq[2], yq[3]);

  free(x); free(w1); free(b1); free(w2); free(b2);
  free(w1_storage.indptr); free(w1_storage.indices); free(w1_storage.values);
  free(w2_q); free(w2_scale); free(w2_packed); free(w2_sum24);
  free(h); free(y); free(hq); free(yq);
  printf("%s\n", failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
