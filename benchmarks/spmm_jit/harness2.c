/* Driver of gen.generate_t's "rows in registers" code: one function per
 * (K panel, group of 24 weight rows), each looping over the 16-row x tiles
 * and keeping the group's 24 accumulators for the whole panel. Panels outer
 * (an x panel, all tiles, stays in L2), groups inner; yt is [T][N][16] for the
 * whole output, and a 48-row slice of Y is written (transposed, streamed) as
 * soon as its two groups finish their last panel. */
#include "tiles.h"

typedef void (*jit2_fn)(const float *xp, float *yt, const float *vals, long ntiles);
extern const jit2_fn jit2_fns[];
extern const long jit2_voff[];
extern const long jit2_npanels, jit2_ngroups, jit2_group, jit2_n, jit2_k;

long jit_info(long what)
{
    switch (what) {
    case 0: return jit2_ngroups * jit2_npanels;
    case 1: return jit2_group;
    case 2: return jit2_n;
    case 3: return jit2_k;
    default: return -1;
    }
}

/* xp: (M+15)/16*16*K floats; yt: (M+15)/16*16*N floats; both 64-byte aligned. */
void jit_linear(const float *x, long m, float *y, const float *vals, float *xp, float *yt)
{
    long ntiles = (m + 15) / 16;
    long slice = 2 * jit2_group;
    if (m <= 0)
        return;
    pack_x(x, m, jit2_k, xp);
    for (long p = 0; p < jit2_npanels; p++) {
        for (long g = 0; g < jit2_ngroups; g++) {
            long f = p * jit2_ngroups + g;
            jit2_fns[f](xp, yt, vals + jit2_voff[f], ntiles);
            long end = (g + 1) * jit2_group < jit2_n ? (g + 1) * jit2_group : jit2_n;
            if (p == jit2_npanels - 1 && (end % slice == 0 || end == jit2_n)) {
                long n0 = (end - 1) / slice * slice;
                unpack_y(yt + n0 * 16, jit2_n, end - n0, m, jit2_n, n0, y);
            }
        }
    }
#ifdef JIT_STREAM_Y
    _mm_sfence();
#endif
}
