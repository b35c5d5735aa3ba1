/* Driver around the generated sparsity-specialised code (see gen.py).
 *
 * The generated object exports one function per chunk of R weight rows:
 *   void chunk(const float *xp, float *yt, const float *vals, long ntiles)
 * which, for every 16-row tile of x, computes yt[t][r][0:16] = the tile's
 * partial column of Y for chunk row r (tile-major, transposed). Here: pack x
 * into tiles ([T][K][16], zero-padded), run each chunk, and transpose its
 * yt (R*M floats, L1-resident) into Y. Scratch is passed in so the timed
 * call allocates nothing. Compiled with -mavx512f; x86-64 only (a
 * go/no-go experiment, not library code). */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

typedef void (*jit_chunk_fn)(const float *xp, float *yt, const float *vals, long ntiles);
extern const jit_chunk_fn jit_chunks[];
extern const long jit_voff[];  /* first value of each chunk, in code order */
extern const long jit_nchunks, jit_rows, jit_n, jit_k;

long jit_info(long what)
{
    switch (what) {
    case 0: return jit_nchunks;
    case 1: return jit_rows;
    case 2: return jit_n;
    case 3: return jit_k;
    default: return -1;
    }
}

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

/* yt [T][rows][16] of chunk rows n0.. -> y[:, n0:n0+rows]. */
static void unpack_y(const float *yt, long rows, long m, long n, long n0, float *y)
{
    long ntiles = (m + 15) / 16;
    for (long t = 0; t < ntiles; t++) {
        long mrows = m - 16 * t < 16 ? m - 16 * t : 16;
        for (long r0 = 0; r0 < rows; r0 += 16) {
            long cols = rows - r0 < 16 ? rows - r0 : 16;
            __mmask16 cmask = (__mmask16)((1u << cols) - 1u);
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < cols ? _mm512_loadu_ps(yt + (t * rows + r0 + i) * 16) : _mm512_setzero_ps();
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

/* y [M, N] = x [M, K] . W^T for the W baked into the linked code.
 * xp: (M+15)/16*16*K floats; yt: (M+15)/16*16*R floats; both 64-byte aligned. */
void jit_linear(const float *x, long m, float *y, const float *vals, float *xp, float *yt)
{
    long ntiles = (m + 15) / 16;
    if (m <= 0)
        return;
    pack_x(x, m, jit_k, xp);
    for (long c = 0; c < jit_nchunks; c++) {
        long n0 = c * jit_rows;
        long rows = jit_n - n0 < jit_rows ? jit_n - n0 : jit_rows;
        jit_chunks[c](xp, yt, vals + jit_voff[c], ntiles);
        unpack_y(yt, rows, m, jit_n, n0, y);
    }
#ifdef JIT_STREAM_Y
    _mm_sfence();
#endif
}
