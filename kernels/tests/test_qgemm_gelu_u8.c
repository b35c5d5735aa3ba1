/* The int8 GEMM with GELU and u8 output (static int8 chains: BERT's FFN
 * up-projection feeding the down-projection): on every ISA its bytes equal,
 * exactly, sk_quantize_u8 of the fp32-output GEMM's GELU result (the unfused
 * path), and its fp32 GELU output is sk_gelu_f32 of the act-free output, bit
 * for bit, for tails in M, N and K, strided A and output, per-row and
 * per-tensor zero points / scales, with and without bias, threaded; bytes
 * past N stay untouched. */
#include <string.h>

#include "test_util.h"

static void gelu_u8_case(int isa, int64_t m, int64_t n, int64_t k, int per_row, int per_channel,
                         int with_bias, int threads, float out_scale, int32_t out_zp) {
  const int64_t lda = k + 3, ldq = n + 5;
  int8_t *q = malloc((size_t)(n * k + 1));
  uint8_t *a = malloc((size_t)(m * lda + 1)), *s24 = malloc((size_t)(3 * n + 1));
  int8_t *packed = malloc((size_t)sk_qmatrix_s8_packed_bytes(n, k) + 1);
  int32_t *zp = malloc((size_t)(m + 1) * 4);
  float *y = malloc((size_t)(m * n + 1) * 4), *ws = malloc((size_t)(n + 1) * 4);
  float *as = malloc((size_t)(m + 1) * 4), *bias = malloc((size_t)(n + 1) * 4);
  uint8_t *yq = malloc((size_t)(m * ldq + 1)), *ref = malloc((size_t)(m * n + 1));
  for (int64_t i = 0; i < n * k; ++i) q[i] = rand_q();
  for (int64_t i = 0; i < m * lda; ++i) a[i] = rand_x();
  for (int64_t i = 0; i < m; ++i) {
    zp[i] = (int32_t)(rng_u32() % 256);
    /* |y| up to a few units: most of GELU's curve, both signs, clamping */
    as[i] = (0.5f + (float)(rng_u32() % 100) * 0.01f) / (float)(64 * k);
  }
  for (int64_t j = 0; j < n; ++j) {
    ws[j] = 0.5f + (float)(rng_u32() % 100) * 0.01f;
    bias[j] = rng_f32() * 2.0f;
  }
  CHECK(sk_qmatrix_s8_pack(n, k, q, k, packed, s24) == SK_OK, "pack");
  sk_qmatrix_s8 w = {n, k, packed, s24, ws, per_channel};
  sk_set_num_threads(threads);
  const int64_t zs = per_row ? 1 : 0;
  const float *b = with_bias ? bias : NULL;
  for (int64_t i = 0; i < m * ldq; ++i) yq[i] = 0xA5;
  CHECK(sk_qgemm_u8s8_f32(&w, m, a, lda, zp, zs, as, zs, b, SK_ACT_GELU, y, n) == SK_OK,
        "f32 rc");
  /* the fp32 GELU output is sk_gelu_f32 of the act-free statement, bit for bit */
  float *y0 = malloc((size_t)(m * n + 1) * 4);
  CHECK(sk_qgemm_u8s8_f32(&w, m, a, lda, zp, zs, as, zs, b, SK_ACT_NONE, y0, n) == SK_OK,
        "f32 none rc");
  sk_gelu_f32(y0, m * n);
  CHECK(memcmp(y0, y, (size_t)(m * n) * 4) == 0,
        "gelu f32 isa=%s m=%lld n=%lld k=%lld per_row=%d per_channel=%d bias=%d t=%d: "
        "!= sk_gelu_f32(act-free output)", sk_isa_name((sk_isa)isa), (long long)m,
        (long long)n, (long long)k, per_row, per_channel, with_bias, threads);
  free(y0);
  CHECK(sk_quantize_u8(m, n, y, n, out_scale, out_zp, ref, n) == SK_OK, "quantize rc");
  CHECK(sk_qgemm_u8s8_u8(&w, m, a, lda, zp, zs, as, zs, b, SK_ACT_GELU, out_scale, out_zp, yq,
                         ldq) == SK_OK, "u8 rc");
  int64_t bad = 0, sentinel = 0, lo = 0, hi = 0, mid = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < ldq; ++j) {
      const uint8_t v = yq[i * ldq + j];
      if (j >= n) {
        sentinel += v != 0xA5;
        continue;
      }
      bad += v != ref[i * n + j];
      lo += v == 0;
      hi += v == 255;
      mid += v != 0 && v != 255;
    }
  CHECK(bad == 0 && sentinel == 0,
        "gelu u8 isa=%s m=%lld n=%lld k=%lld per_row=%d per_channel=%d bias=%d t=%d: "
        "%lld bytes differ, %lld sentinels overwritten", sk_isa_name((sk_isa)isa),
        (long long)m, (long long)n, (long long)k, per_row, per_channel, with_bias, threads,
        (long long)bad, (long long)sentinel);
  /* the data must exercise the curve, not only the clamps */
  CHECK(m * n < 64 || mid > m * n / 4, "gelu u8: only %lld of %lld bytes inside (0, 255)",
        (long long)mid, (long long)(m * n));
  free(q); free(a); free(s24); free(packed); free(zp); free(y); free(ws); free(as); free(bias);
  free(yq); free(ref);
}

/* GELU changes the bytes (a kernel that skipped it would pass nothing above
 * only if quantize(y) == quantize(gelu(y)) everywhere, which this excludes):
 * y = -1 per element gives gelu(-1) = -0.1587, 0.01 per unit. */
static void test_gelu_applied(void) {
  int8_t q[4] = {-1, 0, 0, 0};
  uint8_t a[4] = {1, 0, 0, 0}, s24[3], yq[1] = {0};
  int8_t packed[64];
  const float ws = 1.0f, as = 1.0f;
  const int32_t zp = 0;
  CHECK(sk_qmatrix_s8_pack(1, 4, q, 4, packed, s24) == SK_OK, "pack");
  sk_qmatrix_s8 w = {1, 4, packed, s24, &ws, 0};
  CHECK(sk_qgemm_u8s8_u8(&w, 1, a, 4, &zp, 0, &as, 0, NULL, SK_ACT_GELU, 0.01f, 100, yq, 1) ==
        SK_OK, "rc");
  CHECK(yq[0] == 84, "gelu(-1) / 0.01 + 100 = 84.13 -> 84, got %d", yq[0]);
}

/* Scales whose product overflows give y = +-inf or NaN (0 * inf): the bytes
 * are clamped like the u8 epilogue's (+inf -> 255, gelu(-inf) = -0 -> zp,
 * NaN -> 0), and the call succeeds. */
static void test_nonfinite_clamps(void) {
  int8_t q[3 * 4] = {1, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0, 0};
  uint8_t a[4] = {7, 0, 0, 0}, s24[9], yq[3] = {1, 1, 1};
  int8_t packed[64];
  const float ws = 3e38f, as = 3e38f;
  const int32_t zp = 0;
  CHECK(sk_qmatrix_s8_pack(3, 4, q, 4, packed, s24) == SK_OK, "pack");
  sk_qmatrix_s8 w = {3, 4, packed, s24, &ws, 0};
  CHECK(sk_qgemm_u8s8_u8(&w, 1, a, 4, &zp, 0, &as, 0, NULL, SK_ACT_GELU, 1.0f, 9, yq, 3) ==
        SK_OK, "rc");
  CHECK(yq[0] == 255 && yq[1] == 9 && yq[2] == 0, "non-finite: got %d %d %d", yq[0], yq[1],
        yq[2]);
}

int main(void) {
  static const int64_t ms[] = {1, 2, 5, 9, 17};
  static const int64_t ns[] = {1, 16, 17, 48, 65, 100};
  static const int64_t ks[] = {1, 7, 64, 131};
  FOR_EACH_ISA(isa) for (int var = 0; var < 2; ++var) {
    if (!sk_test_set_variant(isa, var)) continue;
    CHECK(sk_family_isa("qgemm_u8s8") == isa, "qgemm family isa");
    test_gelu_applied();
    test_nonfinite_clamps();
    for (size_t x = 0; x < sizeof ms / sizeof *ms; ++x)
      for (size_t y = 0; y < sizeof ns / sizeof *ns; ++y)
        for (size_t z = 0; z < sizeof ks / sizeof *ks; ++z) {
          const int v = (int)(x + y + z);
          gelu_u8_case(isa, ms[x], ns[y], ks[z], v % 2, (v / 2) % 2, v % 3 != 0,
                       1 + (v % 4 == 0), 0.02f + 0.01f * (float)(v % 3), (int32_t)(v * 7 % 60));
        }
    gelu_u8_case(isa, 70, 300, 200, 1, 1, 1, 2, 0.03f, 12);  /* threaded, several tiles */
    gelu_u8_case(isa, 1, 1536, 384, 0, 1, 1, 2, 0.03f, 12); /* BERT's M == 1 shape */
    gelu_u8_case(isa, 33, 1536, 384, 0, 1, 1, 1, 0.05f, 3);
  }
  return sk_test_finish("test_qgemm_gelu_u8");
}
