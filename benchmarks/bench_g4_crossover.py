"""Where SparseInt8Matrix's groups-of-4 copy (g4) beats its 1x4 blocks, by M.

    python benchmarks/bench_g4_crossover.py                 # M = 8 .. 48, ~1 minute
    python benchmarks/bench_g4_crossover.py --ms 16,17,32   # other Ms
    python benchmarks/bench_g4_crossover.py --scaling       # g4 time by M / its M = 128 time

Both layouts of the same unstructured weight, through the C entry points that
int8_matmul calls (exact int32; the fp32 linear path runs the same kernels
with an epilogue), 1 thread, interleaved, best of the rounds (robust to other
jobs on a shared machine). Prints 1x4 time / g4 time (> 1: g4 faster): what
sparsekit._sparse_int8.G4_MIN_M is set from. --scaling prints the g4 kernel's
time at each M as a share of its M = 128 time: what sparsekit.pack scales its
"spint8_g4" coefficients (measured at M = 128) by below 128. Needs a CPU with
AVX-512 VNNI (elsewhere the g4 copy is not built).
"""
import argparse

import numpy as np

from _harness import FFN_SHAPES, round_times

SHAPES = FFN_SHAPES


def best_time(fns, reps=5, rounds=15):
    """Best seconds per call of each function, rounds interleaved."""
    return [min(o) for o in round_times(fns, rounds, reps)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ms", default="8,12,16,17,20,24,32,40,48", help="comma-separated M values")
    ap.add_argument("--sparsities", default="0.9,0.7")
    ap.add_argument("--scaling", action="store_true",
                    help="g4 time by M as a share of its M = 128 time")
    args = ap.parse_args(argv)
    import sparsekit
    from sparsekit import SparseInt8Matrix
    from sparsekit._native import core

    sparsekit.set_num_threads(1)
    ms = [int(v) for v in args.ms.split(",")]
    if args.scaling:
        ms = sorted(set(ms) | {128})
    rng = np.random.default_rng(0)
    print(f"1 thread, spmm_u8s8 on {core.family_isa('spmm_u8s8')}; "
          + ("g4 time / g4 time at M = 128" if args.scaling else "1x4 time / g4 time"))
    for name, n, k in SHAPES:
        for sp in (float(s) for s in args.sparsities.split(",")):
            wf = rng.standard_normal((n, k)).astype(np.float32)
            wf[rng.random(wf.shape) < sp] = 0
            w = SparseInt8Matrix.from_float(wf)
            if w._g4 is None:
                print(f"{name} {sp:.0%}: no g4 copy (block fill {w.block_fill:.2f}, or no VNNI)")
                continue
            zp = np.array([7], np.int32)
            # the 1x4 arrays once (a g4-only weight rebuilds them on every access)
            blocks = (w.indptr, w.cols, w.values)
            cells = {}
            for m in ms:
                xq = rng.integers(0, 256, (m, k)).astype(np.uint8)
                g4 = lambda: core.spmm_u8s8_g4_s32(*w._g4, w.row_sums, n, k, xq, zp)  # noqa: E731
                if args.scaling:
                    cells[m] = best_time([g4])[0]
                else:
                    blk = lambda: core.spmm_u8s8_s32(*blocks, w.row_sums, n, k, xq, zp)  # noqa: E731
                    a, b = best_time([blk, g4])
                    cells[m] = a / b
            if args.scaling:
                cells = {m: t / cells[128] for m, t in cells.items()}
            print(f"{name} {sp:.0%} (fill {w.block_fill:.2f}): "
                  + "  ".join(f"M={m} {v:.2f}" for m, v in cells.items()), flush=True)


if __name__ == "__main__":
    main()
