/* C tests of the u8 quantizers and the exact int8 GEMM (qgemm_u8s8) on every
 * ISA this CPU runs: quantization bit-identical across ISAs and to a scalar
 * statement of the math; GEMM int32 results equal to an int64 reference, the
 * f32 and u8 epilogues bit for bit their float32 statements with and without
 * bias and relu, the fp32-input linear equal to quantize + GEMM. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "test_util.h"

static int variant = 0; /* the kernel variant under test (sk_test_set_variant) */
static int set_variant(int isa, int v) {
  variant = v;
  return sk_test_set_variant(isa, v);
}

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
      /* scale 2 on the half-integer row: x / scale hits .5 ties, zp 128 and 255 */
      for (int zi = 0; zi < 2; ++zi) {
        const int32_t z0 = zi ? 255 : 128;
        CHECK(sk_quantize_u8(1, k, x + 3 * ldx, ldx, 2.0f, z0, q, ldq) == SK_OK, "tie rc");
        bad = 0;
        for (int64_t j = 0; j < k; ++j) {
          float v = rintf(x[3 * ldx + j] / 2.0f) + (float)z0;
          v = v < 0 ? 0 : (v > 255 ? 255 : v);
          bad |= q[j] != (uint8_t)v;
        }
        CHECK(!bad, "static ties isa=%s k=%lld zp=%d", sk_isa_name((sk_isa)isa), (long long)k,
              (int)z0);
      }
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

/* One row of kind `kind` (k floats): the ranges the row-block quantizers must
 * get right while the previous row is being quantized. */
static void fill_row(float *x, int64_t k, int kind) {
  const float e = powf(10.0f, (float)((int)(rng_u32() % 7) - 3));
  const float c = rng_f32() * 4.0f;
  for (int64_t j = 0; j < k; ++j) {
    const float v = rng_f32();
    switch (kind) {
      case 0: x[j] = v * e; break;                                   /* any scale */
      case 1: x[j] = c; break;                                       /* constant */
      case 2: x[j] = 0.0f; break;                                    /* zero */
      case 3: x[j] = fabsf(v); break;                                /* one sign */
      case 4: x[j] = -fabsf(v) * 1e4f; break;                        /* the other */
      case 5: x[j] = j % 2 ? 3e38f : -3e38f; break;                  /* huge range */
      case 6: x[j] = (float)((int)(rng_u32() % 511) - 255) * 0.5f; break; /* ties */
      case 7: x[j] = v * 1e-40f; break;                              /* subnormal: FLT_MIN */
      case 8: x[j] = j % 3 ? -0.0f : v * 1e-3f; break;               /* -0 */
      default: x[j] = j == k - 1 ? 7.0f : v; break;                  /* max in the tail */
    }
  }
}

/* Dynamic row blocks (the per-ISA row-block quantizers: a row's range found
 * while the previous row is quantized): bit-identical to the reference for
 * every block size and K tail, unaligned rows, and NaN / infinity reported
 * from any row and lane. */
static void test_quantize_row_blocks(void) {
  static const int64_t ms[] = {2, 3, 5, 16, 17, 33};
  static const int64_t big_ks[] = {63, 64, 65, 96, 100, 257};
  for (int64_t kc = 1; kc <= 40 + (int64_t)(sizeof big_ks / sizeof *big_ks); ++kc) {
    const int64_t k = kc <= 40 ? kc : big_ks[kc - 41];
    const int64_t ldx = k + 3, ldq = k + 1, mmax = 33;
    float *buf = malloc((size_t)(mmax * ldx + 1) * 4);
    float *x = buf + 1; /* rows start off 16-byte alignment */
    uint8_t *q = malloc((size_t)(mmax * ldq)), *rq = malloc((size_t)k);
    float s[33], rs;
    int32_t z[33], rz;
    for (size_t mc = 0; mc < sizeof ms / sizeof *ms; ++mc) {
      const int64_t m = ms[mc];
      for (int64_t i = 0; i < m; ++i) fill_row(x + i * ldx, k, (int)((i + mc + k) % 10));
      FOR_EACH_ISA(isa) {
        memset(q, 0xAB, (size_t)(m * ldq));
        CHECK(sk_quantize_rows_u8(m, k, x, ldx, q, ldq, s, z) == SK_OK, "blocks rc");
        int bad = 0;
        for (int64_t i = 0; i < m; ++i) {
          ref_quantize_row(x + i * ldx, k, rq, &rs, &rz);
          bad |= memcmp(&rs, &s[i], 4) != 0 || rz != z[i] || memcmp(rq, q + i * ldq, (size_t)k);
          bad |= q[i * ldq + k] != 0xAB; /* untouched past k */
        }
        CHECK(!bad, "row blocks isa=%s m=%lld k=%lld", sk_isa_name((sk_isa)isa), (long long)m,
              (long long)k);
        if (m != 2 && m != 17) continue;
        static const float nonfinite[] = {NAN, -NAN, INFINITY, -INFINITY};
        const int64_t rows[] = {0, 1, m - 1}, cols[] = {0, k / 2, k - 1};
        for (int f = 0; f < 4; ++f)
          for (int a = 0; a < 3; ++a)
            for (int b = 0; b < 3; ++b) {
              float *p = x + rows[a] * ldx + cols[b];
              const float keep = *p;
              *p = nonfinite[f];
              CHECK(sk_quantize_rows_u8(m, k, x, ldx, q, ldq, s, z) == SK_ERR_NONFINITE,
                    "nonfinite isa=%s m=%lld k=%lld at %lld,%lld", sk_isa_name((sk_isa)isa),
                    (long long)m, (long long)k, (long long)rows[a], (long long)cols[b]);
              *p = keep;
            }
      }
    }
    free(buf); free(q); free(rq);
  }
}

/* One GEMM case on the current ISA: s32, f32 and u8 outputs against int64 /
 * double references, with strided A and C and sentinels past N. */
static void gemm_case(int isa, int64_t m, int64_t n, int64_t k, int extremes, int per_row,
                      int threads) {
  const int64_t lda = k + 3, ldc = n + 5;
  int8_t *q = malloc((size_t)(n * k + 1));
  uint8_t *a = malloc((size_t)(m * lda + 1)), *s24 = malloc((size_t)(3 * n + 1));
  int8_t *packed = malloc((size_t)sk_qmatrix_s8_packed_bytes(n, k) + 1);
  int32_t *c = malloc((size_t)(m * ldc + 1) * 4), *zp = malloc((size_t)(m + 1) * 4);
  float *y = malloc((size_t)(m * ldc + 1) * 4), *ws = malloc((size_t)(n + 1) * 4);
  float *as = malloc((size_t)(m + 1) * 4), *bias = malloc((size_t)(n + 1) * 4);
  uint8_t *yq = malloc((size_t)(m * ldc + 1));
  for (int64_t i = 0; i < n * k; ++i)
    q[i] = extremes ? (int8_t)((i / k) % 2 ? 127 : -127) : (int8_t)((int)(rng_u32() % 255) - 127);
  for (int64_t i = 0; i < m * lda; ++i) a[i] = extremes ? 255 : (uint8_t)rng_u32();
  for (int64_t i = 0; i < m; ++i) {
    zp[i] = extremes ? (i % 3 == 0 ? 0 : (i % 3 == 1 ? 255 : 128)) : (int32_t)(rng_u32() % 256);
    as[i] = 0.001f + (float)(rng_u32() % 100) * 1e-4f;
  }
  for (int64_t j = 0; j < n; ++j) {
    ws[j] = 0.002f + (float)(rng_u32() % 100) * 1e-4f;
    bias[j] = rng_f32();
  }
  CHECK(sk_qmatrix_s8_pack(n, k, q, k, packed, s24) == SK_OK, "pack");
  sk_qmatrix_s8 w = {n, k, packed, s24, ws, 1};
  sk_set_num_threads(threads);
  for (int64_t i = 0; i < m * ldc; ++i) c[i] = 0x5a5a5a5a;
  for (int64_t i = 0; i < m * ldc; ++i) yq[i] = 0xA5;
  const int64_t zs = per_row ? 1 : 0;
  CHECK(sk_qgemm_u8s8_s32(&w, m, a, lda, zp, zs, c, ldc) == SK_OK, "s32 rc");
  CHECK(sk_qgemm_u8s8_f32(&w, m, a, lda, zp, zs, as, 1, bias, SK_ACT_RELU, y, ldc) == SK_OK,
        "f32 rc");
  CHECK(sk_qgemm_u8s8_u8(&w, m, a, lda, zp, zs, as, 1, NULL, SK_ACT_NONE, 0.5f, 128, yq,
                         ldc) == SK_OK, "u8 rc");
  /* the case, for every failure message */
  char what[160];
  snprintf(what, sizeof what, "isa=%s/%d m=%lld n=%lld k=%lld extremes=%d per_row=%d t=%d",
           sk_isa_name((sk_isa)isa), variant, (long long)m, (long long)n, (long long)k,
           extremes, per_row, threads);
  int bad_s32 = 0, bad_f32 = 0, bad_u8 = 0, bad_sentinel = 0;
  for (int64_t i = 0; i < m; ++i) {
    const int64_t z = zp[per_row ? i : 0];
    for (int64_t j = 0; j < ldc; ++j) {
      if (j >= n) {
        bad_sentinel |= c[i * ldc + j] != 0x5a5a5a5a || yq[i * ldc + j] != 0xA5;
        continue;
      }
      int64_t ref = 0;
      for (int64_t kk = 0; kk < k; ++kk) ref += ((int64_t)a[i * lda + kk] - z) * q[j * k + kk];
      bad_s32 |= (int64_t)c[i * ldc + j] != ref;
      const double sc = (double)as[i] * ws[j];
      double yf = (double)ref * sc + bias[j];
      yf = yf > 0 ? yf : 0;
      bad_f32 |= fabs(y[i * ldc + j] - yf) > 4 * FLT_EPSILON * (fabs((double)ref) * sc + fabs(bias[j])) + 1e-30;
      double v = nearbyint((double)ref * sc / 0.5) + 128;
      v = v < 0 ? 0 : (v > 255 ? 255 : v);
      bad_u8 |= fabs((double)yq[i * ldc + j] - v) > 1;
    }
  }
  CHECK(!bad_s32, "gemm %s out=s32: != int64 reference", what);
  CHECK(!bad_sentinel, "gemm %s out=s32/u8: wrote past n", what);
  CHECK(!bad_f32, "gemm %s out=f32 bias=1 act=relu: beyond 4 eps of the double reference", what);
  CHECK(!bad_u8, "gemm %s out=u8 bias=0 act=none scale=0.5 zp=128: more than 1 step from the "
        "double reference", what);
  /* f32 bit for bit the documented float32 statement on the exact c, and u8
   * byte for byte its requantization (true division, round half even), with
   * and without bias and relu (the volatile keeps the test's own multiply and
   * add from being contracted into an fma) */
  const float out_scale = 0.05f * (float)(1 + (m + n) % 3); /* inexact: a true division */
  const int32_t out_zp = (int32_t)((m * 37 + n) % 256);
  for (int variant_f32 = 0; variant_f32 < 4; ++variant_f32) {
    const float *b = variant_f32 & 1 ? bias : NULL;
    const sk_activation act = variant_f32 & 2 ? SK_ACT_RELU : SK_ACT_NONE;
    const char *act_name = act == SK_ACT_RELU ? "relu" : "none";
    CHECK(sk_qgemm_u8s8_f32(&w, m, a, lda, zp, zs, as, 1, b, act, y, ldc) == SK_OK,
          "gemm %s out=f32 bias=%d act=%s: rc", what, b != NULL, act_name);
    CHECK(sk_qgemm_u8s8_u8(&w, m, a, lda, zp, zs, as, 1, b, act, out_scale, out_zp, yq, ldc) ==
              SK_OK, "gemm %s out=u8 bias=%d act=%s: rc", what, b != NULL, act_name);
    int64_t nbad_f32 = 0, nbad_u8 = 0;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        volatile float prod = (float)c[i * ldc + j] * (as[i] * ws[j]);
        float want = b ? prod + b[j] : prod;
        if (act == SK_ACT_RELU) want = want > 0.0f ? want : 0.0f;
        nbad_f32 += memcmp(&want, &y[i * ldc + j], 4) != 0;
        float v = nearbyintf(want / out_scale) + (float)out_zp;
        v = v >= 0.0f ? (v <= 255.0f ? v : 255.0f) : 0.0f;
        nbad_u8 += yq[i * ldc + j] != (uint8_t)v;
      }
    CHECK(nbad_f32 == 0, "gemm %s out=f32 bias=%d act=%s: %lld outputs != the float32 "
          "statement", what, b != NULL, act_name, (long long)nbad_f32);
    CHECK(nbad_u8 == 0, "gemm %s out=u8 bias=%d act=%s scale=%g zp=%d: %lld bytes != the "
          "requantized float32 statement", what, b != NULL, act_name, (double)out_scale,
          (int)out_zp, (long long)nbad_u8);
  }
  free(q); free(a); free(s24); free(packed); free(c); free(zp); free(y); free(ws); free(as);
  free(bias); free(yq);
}

/* linear: fp32 in, fp32 out == quantize_rows (dynamic) or sk_quantize_u8
 * (static x_scale, x_zp) then the f32 epilogue, bit for bit, with and without
 * bias and with each activation, whatever the thread count (row tiles are
 * quantized by whichever thread needs them first; more threads than cores
 * make them contend). */
static void linear_case(int isa, int64_t m, int64_t n, int64_t k, int threads) {
  sk_set_num_threads(threads);
  const int64_t kp = (k + 3) / 4 * 4;
  float *x = malloc((size_t)(m * k + 1) * 4), *y = malloc((size_t)(m * n + 1) * 4);
  float *y2 = malloc((size_t)(m * n + 1) * 4), *ws = malloc((size_t)(n + 1) * 4);
  float *rs = malloc((size_t)(m + 1) * 4), *bias = malloc((size_t)(n + 1) * 4);
  int32_t *rz = malloc((size_t)(m + 1) * 4);
  uint8_t *xq = malloc((size_t)(m * kp + 1)), *s24 = malloc((size_t)(3 * n + 1));
  int8_t *q = malloc((size_t)(n * k + 1));
  int8_t *packed = malloc((size_t)sk_qmatrix_s8_packed_bytes(n, k) + 1);
  memset(xq, 0, (size_t)(m * kp + 1));
  for (int64_t i = 0; i < m * k; ++i) x[i] = rng_f32() * 3.0f;
  for (int64_t i = 0; i < n * k; ++i) q[i] = (int8_t)((int)(rng_u32() % 255) - 127);
  for (int64_t j = 0; j < n; ++j) ws[j] = 0.01f, bias[j] = rng_f32();
  sk_qmatrix_s8_pack(n, k, q, k, packed, s24);
  sk_qmatrix_s8 w = {n, k, packed, s24, ws, 0};
  static const sk_activation acts[3] = {SK_ACT_NONE, SK_ACT_RELU, SK_ACT_GELU};
  static const char *const act_names[3] = {"none", "relu", "gelu"};
  const float x_scale = 6.0f / 255.0f;
  const int32_t x_zp = 128;
  for (int v = 0; v < 12; ++v) {
    const float *b = v & 1 ? bias : NULL;
    const sk_activation act = acts[(v >> 1) % 3];
    const int stat = v >= 6;
    char what[160];
    snprintf(what, sizeof what, "isa=%s/%d m=%lld n=%lld k=%lld t=%d static=%d bias=%d act=%s",
             sk_isa_name((sk_isa)isa), variant, (long long)m, (long long)n, (long long)k,
             threads, stat, b != NULL, act_names[act]);
    CHECK(sk_linear_qgemm_u8s8(&w, m, x, k, stat ? x_scale : 0.0f, x_zp, b, act, y, n) ==
              SK_OK, "linear %s out=f32: rc", what);
    if (stat) {
      CHECK(sk_quantize_u8(m, k, x, k, x_scale, x_zp, xq, kp) == SK_OK, "q static %s", what);
      CHECK(sk_qgemm_u8s8_f32(&w, m, xq, kp, &x_zp, 0, &x_scale, 0, b, act, y2, n) == SK_OK,
            "f static %s", what);
    } else {
      CHECK(sk_quantize_rows_u8(m, k, x, k, xq, kp, rs, rz) == SK_OK, "q %s", what);
      CHECK(sk_qgemm_u8s8_f32(&w, m, xq, kp, rz, 1, rs, 1, b, act, y2, n) == SK_OK, "f %s",
            what);
    }
    CHECK(memcmp(y, y2, (size_t)(m * n) * 4) == 0, "linear %s out=f32: != quantize + gemm",
          what);
  }
  x[k / 2] = NAN;
  CHECK(sk_linear_qgemm_u8s8(&w, m, x, k, 0.0f, 0, NULL, SK_ACT_NONE, y, n) == SK_ERR_NONFINITE,
        "linear isa=%s/%d m=%lld n=%lld k=%lld: NaN not reported", sk_isa_name((sk_isa)isa),
        variant, (long long)m, (long long)n, (long long)k);
  free(x); free(y); free(y2); free(ws); free(rs); free(rz); free(xq); free(s24); free(q);
  free(packed); free(bias);
}

static void test_pack_rejects(void) {
  int8_t q[6] = {1, 2, 3, -128, 5, 6}, packed[64];
  uint8_t s24[6];
  CHECK(sk_qmatrix_s8_packed_bytes(2, 3) == 64, "packed bytes");
  CHECK(sk_qmatrix_s8_pack(2, 3, q, 3, packed, s24) == SK_ERR_FORMAT, "-128");
  q[3] = -127;
  CHECK(sk_qmatrix_s8_pack(2, 3, q, 3, packed, s24) == SK_OK, "ok");
  CHECK(packed[0] == 1 && packed[2] == 3 && packed[3] == 0 && packed[4] == -127, "layout");
  CHECK(s24[0] == 6 && s24[1] == 0 && s24[2] == 0, "sum 6");
  CHECK(s24[3] == (uint8_t)(-116 & 0xff) && s24[5] == 0xff, "sum -116");
}

int main(void) {
  test_quantize();
  test_quantize_row_blocks();
  test_pack_rejects();
  static const int64_t ms[] = {1, 2, 5, 8, 9, 17};
  static const int64_t ns[] = {1, 16, 17, 48, 63, 65, 100};
  static const int64_t ks[] = {1, 3, 4, 7, 64, 131};
  FOR_EACH_ISA(isa) for (int var = 0; var < 2; ++var) {
    if (!set_variant(isa, var)) continue;
    if (var) printf("isa %s: variant %d tested too\n", sk_isa_name((sk_isa)isa), var);
    CHECK(sk_family_isa("qgemm_u8s8") == isa, "qgemm family isa");
    if (isa == SK_ISA_NEON) CHECK(sk_family_isa("quantize_u8") == SK_ISA_NEON, "quantize isa");
    for (size_t a = 0; a < sizeof ms / sizeof *ms; ++a)
      for (size_t b = 0; b < sizeof ns / sizeof *ns; ++b)
        for (size_t c = 0; c < sizeof ks / sizeof *ks; ++c) {
          const int v = (int)(a + b + c);
          gemm_case(isa, ms[a], ns[b], ks[c], 0, v % 2, 1 + (v % 3 == 0));
        }
    gemm_case(isa, 9, 50, 4099, 1, 1, 1); /* largest magnitudes, K tail */
    gemm_case(isa, 3, 33, 4096, 1, 0, 2);
    gemm_case(isa, 3, 17, SK_QGEMM_MAX_K, 1, 1, 1); /* 255 * 127 * 65536: near 2^31 */
    gemm_case(isa, 70, 300, 200, 0, 1, 2); /* big enough to thread */
    gemm_case(isa, 1, 700, 300, 0, 0, 2);
    linear_case(isa, 1, 40, 37, 1);
    linear_case(isa, 23, 70, 130, 1);
    linear_case(isa, 40, 100, 301, 1); /* several full tiles: prefetching, K tail */
    linear_case(isa, 64, 97, 256, 1);
    linear_case(isa, 64, 300, 260, 2); /* big enough to thread */
    linear_case(isa, 97, 500, 130, 4);
  }
  return sk_test_finish("test_qgemm_u8s8");
}
