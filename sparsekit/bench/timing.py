"""Timing that survives a noisy, shared machine.

All entries of a group (one layer shape at one thread count) are measured in
interleaved rounds: every round runs every entry once, in a fresh random
order, so a burst of load from a neighbour hits all systems alike instead of
one of them. Each sample repeats the call enough times to last at least
`min_sample` seconds (timer resolution, per-call overhead amortised), after a
warm-up that also primes caches, JIT and thread pools. We report the median
per-call time and the spread (quartiles, min and max) of the samples.
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


def measure_interleaved(runs, rounds, min_sample, rng, on_round=None):
    """Per-call seconds of each runner, `rounds` samples each, interleaved.

    runs: list of zero-argument callables. Returns a list of float arrays.
    """
    calls = [calls_per_sample(r, min_sample) for r in runs]
    samples = [[] for _ in runs]
    for _ in range(rounds):
        for i in rng.permutation(len(runs)):
            run, n = runs[i], calls[i]
            t0 = time.perf_counter()
            for _ in range(n):
                run()
            samples[i].append((time.perf_counter() - t0) / n)
        if on_round:
            on_round()
    return [np.asarray(s) for s in samples], calls


def summarize(samples):
    """median, quartiles, min, max of per-call seconds."""
    q25, med, q75 = np.percentile(samples, [25, 50, 75])
    return {"median_s": float(med), "q25_s": float(q25), "q75_s": float(q75),
            "min_s": float(samples.min()), "max_s": float(samples.max()),
            "samples": int(samples.size)}
