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
#include "tiles.h"

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
        unpack_y(yt, rows, rows, m, jit_n, n0, y);
    }
#ifdef JIT_STREAM_Y
    _mm_sfence();
#endif
}
