"""Small timing helpers shared by the benchmark scripts.

Timings on a shared machine drift, so systems are compared inside one run:
every repeat times each candidate once, in rotating order (interleaved), and
results are reported as medians with their spread; ratios are taken within a
repeat. Single-threaded runs can use the calling thread's CPU time
(`thread_clock`) instead of wall time: it leaves out the time the thread sat
preempted by other processes, which on a loaded machine is most of the noise.
"""
import statistics
import time

import numpy as np


thread_clock = time.thread_time  # CPU time of the calling thread only
wall_clock = time.perf_counter

# the FFN weight shapes (name, N out, K in)
FFN_SHAPES = [("bert_ffn_up", 3072, 768), ("bert_ffn_down", 768, 3072),
              ("minilm_ffn_up", 1536, 384)]


def round_times(fns, rounds, reps=5):
    """Seconds per call of each function in every round (a list per function),
    the functions interleaved within each round, `reps` calls per timing."""
    out = [[] for _ in fns]
    for _ in range(rounds):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(reps):
                f()
            out[i].append((time.perf_counter() - t0) / reps)
    return out


def calibrate(fn, target_s=0.02, max_inner=10_000, clock=wall_clock):
    """How many back-to-back calls of `fn` take about `target_s` seconds."""
    fn()  # warm-up: caches, lazy initialisation, thread pools
    inner, elapsed = 1, 0.0
    while inner < max_inner:
        t0 = clock()
        for _ in range(inner):
            fn()
        elapsed = clock() - t0
        if elapsed >= target_s / 4:
            break
        inner *= 4
    return max(1, min(max_inner, int(inner * target_s / max(elapsed, 1e-9))))


def interleaved(fns, repeats=7, target_s=0.02, clock=wall_clock):
    """Median seconds per call (by `clock`) of each callable in `fns` (name -> fn).

    Returns name -> {"median", "min", "spread", "samples"} where spread is
    (max - min) / median over the repeats and samples[r] is repeat r."""
    inner = {name: calibrate(fn, target_s, clock=clock) for name, fn in fns.items()}
    samples = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            fn, n = fns[name], inner[name]
            t0 = clock()
            for _ in range(n):
                fn()
            samples[name].append((clock() - t0) / n)
    out = {}
    for name, s in samples.items():
        med = statistics.median(s)
        out[name] = {"median": med, "min": min(s), "spread": (max(s) - min(s)) / med,
                     "samples": s}
    return out


def ratio_median(t, num, den):
    """Median over repeats of t[num] / t[den], each ratio taken within one
    repeat (both timed moments apart), which cancels slow drifts in load."""
    return statistics.median(a / b for a, b in zip(t[num]["samples"], t[den]["samples"]))


def random_sparse_weight(rng, n, k, sparsity):
    """float32 [n, k] with uniform random unstructured zeros (about `sparsity`)."""
    w = rng.standard_normal((n, k)).astype(np.float32)
    w[rng.random((n, k)) < sparsity] = 0.0
    return w


def median_batch_times(systems, batches, repeats):
    """Model-level timing: {(system, batch): median seconds} by wall clock and
    by process CPU time (every system runs on the calling process's threads, so
    CPU time leaves out time preempted by other jobs). systems: {name: f(input)};
    batches: {batch size: [inputs]}, round r feeding inputs[r % len]. One warm-up
    call each, then `repeats` rounds, every system once per batch per round."""
    wall = {(s, b): [] for s in systems for b in batches}
    cpu = {(s, b): [] for s in systems for b in batches}
    for f in systems.values():
        for inputs in batches.values():
            f(inputs[0])
    for r in range(repeats):
        for b, inputs in batches.items():
            for s, f in systems.items():
                x = inputs[r % len(inputs)]
                c0, t0 = time.process_time(), time.perf_counter()
                f(x)
                wall[(s, b)].append(time.perf_counter() - t0)
                cpu[(s, b)].append(time.process_time() - c0)
    med = lambda data: {key: statistics.median(v) for key, v in data.items()}  # noqa: E731
    return med(wall), med(cpu)
