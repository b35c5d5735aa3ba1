"""SparseInt8Matrix with only its groups-of-4 copy (g4) against the 1x4 blocks, by M.

    python benchmarks/bench_g4_only.py                          # ~1.5 minutes
    python benchmarks/bench_g4_only.py --ms 1,2,16 --sparsities 0.7
    python benchmarks/bench_g4_only.py --old-core path/to/_core.so   # + another build's g4
    python benchmarks/bench_g4_only.py --linear     # sparsekit.linear, as built vs both copies

For each weight (random N(0,1) values pruned at random: unstructured) and M:
the 1x4-block kernel and the g4 kernel through the C entry points that
int8_matmul calls (exact int32, checked equal first), 1 thread, interleaved
rounds, medians (and the ratio 1x4 time / g4 time: > 1, g4 faster);
--old-core adds the g4 kernel of another build of sparsekit._core (e.g. main's:
64-row tiles at every M > 1) in the same rounds. Then bytes per dense weight of
the weight as this CPU builds it (g4 only where block fill < G4_ONLY_FILL and
AVX-512 VNNI + VBMI) and with both copies. Needs AVX-512 VNNI + VBMI (the
16-row g4 kernel).
"""
import argparse
import importlib.util

import numpy as np

from _harness import FFN_SHAPES, round_times

SHAPES = FFN_SHAPES


def median_times(fns, rounds, reps=5):
    """Median seconds per call of each function, rounds interleaved."""
    return [float(np.median(o)) for o in round_times(fns, rounds, reps)]


def load_core(path):
    spec = importlib.util.spec_from_file_location("other_build._core", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ms", default="1,2,4,8,16,17,32,64,128")
    ap.add_argument("--sparsities", default="0.7,0.8,0.9")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--old-core", default=None, help="another build's _core .so (its g4 kernel)")
    ap.add_argument("--shapes", default=None,
                    help="NxK,... instead of the three FFN shapes (N out, K in)")
    ap.add_argument("--linear", action="store_true",
                    help="sparsekit.linear on the weight as built vs with both copies")
    args = ap.parse_args(argv)
    import sparsekit
    import sparsekit._sparse_int8 as si
    from sparsekit import SparseInt8Matrix
    from sparsekit._native import core

    sparsekit.set_num_threads(1)
    old = load_core(args.old_core) if args.old_core else None
    if old is not None and hasattr(old, "set_num_threads"):
        old.set_num_threads(1)
    ms = [int(v) for v in args.ms.split(",")]
    rng = np.random.default_rng(0)
    print(f"1 thread, spmm_u8s8 on {core.family_isa('spmm_u8s8')}, g4 kernels at every M: "
          f"{core.g4_small_fast()}; {args.rounds} interleaved rounds x 5 calls, medians (us); "
          + ("ratio = both-copies time / as-built time" if args.linear else
             "ratio = 1x4 time / g4 time" + ("; old = --old-core's g4" if old else "")))
    if args.linear:
        print("| shape | sparsity | fill | B/w as built | B/w both copies | M | "
              "both copies us | as built us | both / built |")
        print("|---" * 9 + "|")
    else:
        print("| shape | sparsity | fill | B/w as built | B/w both copies | M | 1x4 us | g4 us |"
              + (" old g4 us |" if old else "") + " 1x4/g4 |"
              + (" 1x4/old g4 | old/new g4 |" if old else ""))
        print("|---" * (10 + (3 if old else 0)) + "|")
    shapes = SHAPES if args.shapes is None else [
        (v, *(int(d) for d in v.split("x"))) for v in args.shapes.split(",")]
    for name, n, k in shapes:
        for sp in (float(s) for s in args.sparsities.split(",")):
            wf = rng.standard_normal((n, k)).astype(np.float32)
            wf[rng.random(wf.shape) < sp] = 0
            w = SparseInt8Matrix.from_float(wf)
            orig = si._g4_only
            si._g4_only = lambda w: False
            try:
                both = SparseInt8Matrix.from_float(wf)
            finally:
                si._g4_only = orig
            if w._g4 is None:
                print(f"{name} {sp:.0%}: no g4 copy (block fill {w.block_fill:.2f}, or no VNNI)")
                continue
            blocks = w._blocks()
            zp = np.array([7], np.int32)
            if args.linear:
                for m in ms:
                    x = rng.standard_normal((m, k)).astype(np.float32)
                    fns = [lambda: sparsekit.linear(x, both), lambda: sparsekit.linear(x, w)]
                    assert np.array_equal(fns[0](), fns[1]())
                    t = median_times(fns, args.rounds)
                    print(f"| {name} | {sp:.0%} | {w.block_fill:.2f} | {w.bytes_per_weight:.3f} | "
                          f"{both.bytes_per_weight:.3f} | {m} | {t[0] * 1e6:.1f} | "
                          f"{t[1] * 1e6:.1f} | {t[0] / t[1]:.2f} |", flush=True)
                continue
            for m in ms:
                xq = rng.integers(0, 256, (m, k)).astype(np.uint8)
                fns = [lambda: core.spmm_u8s8_s32(*blocks, w.row_sums, n, k, xq, zp),
                       lambda: core.spmm_u8s8_g4_s32(*w._g4, w.row_sums, n, k, xq, zp)]
                if old is not None:
                    fns.append(lambda: old.spmm_u8s8_g4_s32(*w._g4, w.row_sums, n, k, xq, zp))
                ref = fns[0]()
                assert all(np.array_equal(f(), ref) for f in fns[1:])
                t = median_times(fns, args.rounds)
                cells = [f"{v * 1e6:.1f}" for v in t] + [f"{t[0] / t[1]:.2f}"]
                if old is not None:
                    cells += [f"{t[0] / t[2]:.2f}", f"{t[2] / t[1]:.2f}"]
                print(f"| {name} | {sp:.0%} | {w.block_fill:.2f} | {w.bytes_per_weight:.3f} | "
                      f"{both.bytes_per_weight:.3f} | {m} | " + " | ".join(cells) + " |",
                      flush=True)


if __name__ == "__main__":
    main()
