"""Dense fp32 with the weight packed once (gemm_f32, PackedDenseMatrix) against
NumPy (sparsekit.linear on the ndarray: OpenBLAS, which packs the weight on
every call), on MiniLM's Linear shapes, 1 thread for both.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE flock /work/wt/bench.lock \\
        python benchmarks/bench_gemm_f32.py --isa avx2,avx512 --m 1,2,6,12,32,128,512

OpenBLAS picks its kernels once per process: OPENBLAS_CORETYPE=Haswell gives
its AVX2 kernels (what an AVX2-only CPU runs) on an AVX-512 CPU. Prints GFLOP/s
(median of 5 timing runs, each ~0.2 GFLOP) and NumPy's time /
the kernel's per forced ISA.

`--scaling` instead times the packed kernel alone at 1 and 2 threads, the two
interleaved (`--pairs` timing runs each, ~20 ms per run), on MiniLM's and
BERT-base's Linear shapes, and prints the medians and their ratio:

    flock /work/wt/bench.lock python benchmarks/bench_gemm_f32.py --scaling --m 12,128,608
"""
import argparse
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import sparsekit
from sparsekit._dense_f32 import PackedDenseMatrix

SHAPES = [(384, 384), (1536, 384), (384, 1536)]  # (N, K): MiniLM's Linears
BERT_SHAPES = [(768, 768), (3072, 768), (768, 3072)]  # BERT-base's


def median_time(f, reps):
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        runs.append((time.perf_counter() - t0) / reps)
    return float(np.median(runs))


def scaling(ms, pairs, isa):
    """1 vs 2 threads on the packed kernel, interleaved: medians and their ratio."""
    rng = np.random.default_rng(0)
    before, backoff = sparsekit.get_num_threads(), sparsekit.get_thread_backoff()
    sparsekit.set_thread_backoff(False)  # 2 threads means 2 threads, busy machine or not
    sparsekit.set_isa(isa)
    print(f"gemm_f32 ISA {sparsekit._core.family_isa('gemm_f32')}, {pairs} interleaved "
          "runs per thread count, medians")
    try:
        for n, k in SHAPES + BERT_SHAPES:
            w = rng.standard_normal((n, k)).astype(np.float32)
            b = rng.standard_normal(n).astype(np.float32)
            p = PackedDenseMatrix(w)
            for m in ms:
                x = rng.standard_normal((m, k)).astype(np.float32)
                flop = 2 * m * n * k
                reps = max(2, int(2e9 / flop))  # ~20 ms per run at ~100 GFLOP/s
                times = {1: [], 2: []}
                for t in (1, 2):  # warm up both
                    sparsekit.set_num_threads(t)
                    sparsekit.linear(x, p, b)
                for _ in range(pairs):
                    for t in (1, 2):
                        sparsekit.set_num_threads(t)
                        t0 = time.perf_counter()
                        for _ in range(reps):
                            sparsekit.linear(x, p, b)
                        times[t].append((time.perf_counter() - t0) / reps)
                t1, t2 = float(np.median(times[1])), float(np.median(times[2]))
                print(f"N={n:5d} K={k:5d} M={m:4d}  1 thread {t1 * 1e3:7.3f} ms "
                      f"{flop / t1 / 1e9:6.1f} GFLOP/s | 2 threads {t2 * 1e3:7.3f} ms "
                      f"{flop / t2 / 1e9:6.1f} GFLOP/s | {t1 / t2:5.2f}x", flush=True)
    finally:
        sparsekit.set_num_threads(before)
        sparsekit.set_thread_backoff(backoff)
        sparsekit.set_isa("auto")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--isa", default="avx2,avx512")
    ap.add_argument("--m", default="1,2,6,12,32,128,512")
    ap.add_argument("--scaling", action="store_true",
                    help="1 vs 2 threads of the packed kernel (MiniLM and BERT-base shapes)")
    ap.add_argument("--pairs", type=int, default=9)
    args = ap.parse_args()
    if args.scaling:
        scaling([int(v) for v in args.m.split(",")], args.pairs, args.isa.split(",")[-1])
        return
    isas = args.isa.split(",")
    ms = [int(v) for v in args.m.split(",")]
    sparsekit.set_num_threads(1)
    rng = np.random.default_rng(0)
    blas = [f"{d.get('internal_api')}:{d.get('architecture')}" for d in threadpool_info()
            if d.get("internal_api") == "openblas"]
    print("NumPy BLAS:", blas)
    with threadpool_limits(1):
        for n, k in SHAPES:
            w = rng.standard_normal((n, k)).astype(np.float32)
            b = rng.standard_normal(n).astype(np.float32)
            p = PackedDenseMatrix(w)
            for m in ms:
                x = rng.standard_normal((m, k)).astype(np.float32)
                reps = max(2, int(2e8 / (2 * m * n * k)))
                flop = 2 * m * n * k
                tn = median_time(lambda: sparsekit.linear(x, w, b), reps)
                row = f"N={n:5d} K={k:5d} M={m:5d} numpy {flop / tn / 1e9:6.1f} GFLOP/s"
                for isa in isas:
                    sparsekit.set_isa(isa)
                    tp = median_time(lambda: sparsekit.linear(x, p, b), reps)
                    row += f" | {isa} {flop / tp / 1e9:6.1f} GFLOP/s {tn / tp:5.2f}x"
                sparsekit.set_isa("auto")
                print(row, flush=True)


if __name__ == "__main__":
    main()
