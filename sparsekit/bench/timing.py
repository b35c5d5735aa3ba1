"""Timing that survives a noisy, shared machine.

All entries of a group (one layer shape at one thread count) are measured in
interleaved rounds: every round runs every entry once, in a fresh random
order, so a burst of load from a neighbour hits all systems alike instead of
one of them. Each sample repeats the call enough times to last at least
`min_sample` seconds (timer resolution, per-call overhead amortised), after a
warm-up that also primes caches, JIT and thread pools. We report the median
per-call time and the spread (quartiles, min and max) of the samples.

Repeated calls reuse one weight, so a weight that fits in the last-level
cache is timed warm. A model cycles through many layers and reads each
weight from memory; `CacheFlusher` (--cold) streams a buffer larger than the
caches through them before every call, outside the timed region.
"""
import contextlib
import math
import time

import numpy as np

MAX_CALLS_PER_SAMPLE = 10000


@contextlib.contextmanager
def pin_threads(threads):
    """Every library uses `threads` threads inside the block: BLAS and OpenMP
    pools via threadpoolctl (sparsekit registers its own controller), plus
    sparsekit and torch explicitly. ONNX Runtime gets it per session."""
    import sparsekit

    saved_sk = sparsekit.get_num_threads()
    torch = _imported_torch()
    saved_torch = torch.get_num_threads() if torch else None
    try:
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(limits=threads)
    except ImportError:
        limiter = contextlib.nullcontext()
    with limiter:
        sparsekit.set_num_threads(threads)
        if torch:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            sparsekit.set_num_threads(saved_sk)
            if torch:
                torch.set_num_threads(saved_torch)


def _imported_torch():
    import sys

    return sys.modules.get("torch")


def calls_per_sample(run, min_sample):
    """Calls needed for one sample to last `min_sample` seconds (after warm-up)."""
    run()  # warm-up: first-call allocation, JIT, page faults
    t0 = time.perf_counter()
    run()
    once = time.perf_counter() - t0
    if once <= 0:
        return MAX_CALLS_PER_SAMPLE
    return max(1, min(MAX_CALLS_PER_SAMPLE, math.ceil(min_sample / once)))


class CacheFlusher:
    """Evicts the caches by writing through `nbytes` of memory (default 96 MiB,
    3x this design's 32 MiB L3)."""

    def __init__(self, nbytes=96 << 20):
        self.buf = np.zeros(max(nbytes // 8, 1), dtype=np.float64)

    def __call__(self):
        np.add(self.buf, 1.0, out=self.buf)


COLD_CALLS_PER_SAMPLE = 3  # each call pays a flush (a few ms) outside the timer


def measure_interleaved(runs, rounds, min_sample, rng, on_round=None, flush=None):
    """Per-call seconds of each runner, `rounds` samples each, interleaved.

    runs: list of zero-argument callables. flush: None, or a callable run
    (untimed) before every timed call. Returns (list of float arrays, calls).
    """
    calls = [calls_per_sample(r, min_sample) for r in runs]
    if flush is not None:
        calls = [min(c, COLD_CALLS_PER_SAMPLE) for c in calls]
    samples = [[] for _ in runs]
    for _ in range(rounds):
        for i in rng.permutation(len(runs)):
            run, n = runs[i], calls[i]
            if flush is None:
                t0 = time.perf_counter()
                for _ in range(n):
                    run()
                samples[i].append((time.perf_counter() - t0) / n)
                continue
            total = 0.0
            for _ in range(n):
                flush()
                t0 = time.perf_counter()
                run()
                total += time.perf_counter() - t0
            samples[i].append(total / n)
        if on_round:
            on_round()
    return [np.asarray(s) for s in samples], calls


def summarize(samples):
    """median, quartiles, min, max of per-call seconds."""
    q25, med, q75 = np.percentile(samples, [25, 50, 75])
    return {"median_s": float(med), "q25_s": float(q25), "q75_s": float(q75),
            "min_s": float(samples.min()), "max_s": float(samples.max()),
            "samples": int(samples.size)}
