"""sparsekit.linear at 2 threads vs 1 on a quiet and on a busy machine.

    flock /work/wt/bench.lock env PYTHONPATH=$PWD python benchmarks/thread_backoff.py --hog

Every call is timed on its own (wall clock), 1- and 2-thread calls alternate,
and between calls the calling thread does `gap` ms of other single-threaded
work (a model's other layers), during which OpenMP's idle worker goes to sleep.
--hog starts a busy-looping process (the "other job" on a shared machine) for
a second pass and kills it at the end. Reports median, mean and p99 per call,
the mean of all calls (1- and 2-thread: the run's throughput, which a spinning
OpenMP worker also costs the 1-thread calls), and how many 2-thread calls ran
while the thread backoff was active (sparsekit's answer to the busy case;
SPARSEKIT_THREAD_BACKOFF=0 or an older sparsekit shows the case without it).
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sparsekit  # noqa: E402
from _harness import random_sparse_weight  # noqa: E402

SHAPES = {"bert_ffn_up": (3072, 768), "minilm_ffn_up": (1536, 384)}


def busy(ms):
    end = time.perf_counter() + ms * 1e-3
    while time.perf_counter() < end:
        pass


def backoff_active():
    b = sparsekit.info().get("thread_backoff")
    return bool(b and b["active"])


def run(c, x, calls, gap_ms):
    times = {1: [], 2: []}
    active = 0
    for i in range(2 * calls):
        th = 1 + (i + i // 2) % 2  # 1,2,2,1,1,2,...: each follows each equally
        sparsekit.set_num_threads(th)
        if th == 2:
            active += backoff_active()
        busy(gap_ms)
        t0 = time.perf_counter()
        sparsekit.linear(x, c)
        times[th].append(time.perf_counter() - t0)
    sparsekit.set_num_threads(1)
    return {th: np.array(t) * 1e3 for th, t in times.items()}, active


def report(label, t, active, calls):
    s = {th: (np.median(v), v.mean(), np.percentile(v, 99)) for th, v in t.items()}
    print(f"| {label} | {s[1][0]:.3f} / {s[1][1]:.3f} / {s[1][2]:.2f} "
          f"| {s[2][0]:.3f} / {s[2][1]:.3f} / {s[2][2]:.2f} "
          f"| {s[1][0] / s[2][0]:.2f}x | {s[1][1] / s[2][1]:.2f}x "
          f"| {(s[1][1] + s[2][1]) / 2:.3f} | {active}/{calls} |",
          flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="bert_ffn_up", choices=list(SHAPES))
    ap.add_argument("--m", type=int, default=128)
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--calls", type=int, default=400, help="calls per thread count and gap")
    ap.add_argument("--gaps", default="0,2", help="comma-separated ms of other work per call")
    ap.add_argument("--hog", action="store_true", help="also run with a busy loop beside")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    n, k = SHAPES[args.shape]
    c = sparsekit.CSRMatrix.from_dense(random_sparse_weight(rng, n, k, args.sparsity))
    x = rng.standard_normal((args.m, k)).astype(np.float32)
    print(f"{args.shape} M={args.m} sparsity {args.sparsity}; sparsekit {sparsekit.__file__}; "
          f"backoff {sparsekit.info().get('thread_backoff')}")
    print("\n| load, gap | 1 thread ms: median / mean / p99 | 2 threads ms: median / mean / p99 "
          "| 2 vs 1 (median) | 2 vs 1 (mean) | all calls, mean ms | 2-thread calls backed off |")
    print("|---|---|---|---|---|---|---|")
    gaps = [float(g) for g in args.gaps.split(",")]
    run(c, x, 20, 0)  # warm-up: thread pool, caches
    for load in ["quiet", "busy loop beside"] if args.hog else ["quiet"]:
        hog = None
        if load != "quiet":
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.3)
        try:
            for g in gaps:
                load1 = open("/proc/loadavg").read().split()[0]
                t, active = run(c, x, args.calls, g)
                report(f"{load} (loadavg {load1}), {g:g} ms", t, active, args.calls)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    print(f"\nbackoff at the end: {sparsekit.info().get('thread_backoff')}")


if __name__ == "__main__":
    main()
