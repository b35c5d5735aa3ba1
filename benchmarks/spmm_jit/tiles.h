/* Packing x into 16-row tiles and writing tile-major, transposed Y back:
 * shared by harness.c and harness2.c (the go/no-go experiment's drivers). */
#ifndef SPMM_JIT_TILES_H
#define SPMM_JIT_TILES_H
#include <immintrin.h>
#include <stddef.h>

/* In-register 16x16 transpose: r[i][j] -> r[j][i]. */
static inline void transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int p = 0; p < 8; p++) {
        t[2 * p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
        t[2 * p + 1] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
    for (int q = 0; q < 4; q++) {
        __m512d a = _mm512_castps_pd(t[4 * q]), b = _mm512_castps_pd(t[4 * q + 2]);
        __m512d c = _mm512_castps_pd(t[4 * q + 1]), d = _mm512_castps_pd(t[4 * q + 3]);
        u[4 * q + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    for (int c = 0; c < 4; c++) {
        __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
        __m512 v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
        __m512 w0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        __m512 w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(v0, w0, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
        r[4 + c] = _mm512_shuffle_f32x4(v1, w1, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
    }
}

/* x [M, K] row-major -> xp [T][K][16], rows past M zero. */
static void pack_x(const float *x, long m, long k, float *xp)
{
    long ntiles = (m + 15) / 16;
    for (long t = 0; t < ntiles; t++) {
        long rows = m - 16 * t < 16 ? m - 16 * t : 16;
        __mmask16 rmask = (__mmask16)((1u << rows) - 1u);
        float *dst = xp + t * k * 16;
        long k0 = 0;
        for (; k0 < k; k0 += 16) {
            long cols = k - k0 < 16 ? k - k0 : 16;
            __mmask16 cmask = (__mmask16)((1u << cols) - 1u);
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = (rmask >> i) & 1 ? _mm512_maskz_loadu_ps(cmask, x + (16 * t + i) * k + k0)
                                        : _mm512_setzero_ps();
            transpose16(r);
            for (long j = 0; j < cols; j++)
                _mm512_storeu_ps(dst + (k0 + j) * 16, r[j]);
        }
    }
}

/* yt [T][ystride][16] (rows from yt on) -> y[:, n0:n0+rows]. */
static void unpack_y(const float *yt, long ystride, long rows, long m, long n, long n0, float *y)
{
    long ntiles = (m + 15) / 16;
    for (long t = 0; t < ntiles; t++) {
        long mrows = m - 16 * t < 16 ? m - 16 * t : 16;
        for (long r0 = 0; r0 < rows; r0 += 16) {
            long cols = rows - r0 < 16 ? rows - r0 : 16;
            __mmask16 cmask = (__mmask16)((1u << cols) - 1u);
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < cols ? _mm512_loadu_ps(yt + (t * ystride + r0 + i) * 16) : _mm512_setzero_ps();
            transpose16(r);
            for (long i = 0; i < mrows; i++) {
                float *dst = y + (16 * t + i) * n + n0 + r0;
#ifdef JIT_STREAM_Y
                /* Y bigger than L2: write around the cache, no read for ownership */
                if (cols == 16 && ((size_t)dst & 63) == 0) {
                    _mm512_stream_ps(dst, r[i]);
                    continue;
                }
#endif
                _mm512_mask_storeu_ps(dst, cmask, r[i]);
            }
        }
    }
}

#endif
