"""Run a sweep: for each layer shape and thread count (a "group"), prepare
every system on the same weights and input, check its answer, then time all
of them together in interleaved rounds (timing.py) and express each as a
speedup over the fastest dense fp32 system of that group.

    layers × threads ─► group ─► dense systems on one dense weight
                               └► sparse systems × (pattern, sparsity) weights
                        group ─► interleaved rounds ─► median, spread, speedup

Dense systems' speed does not depend on how many weights are zero, so they
run once per group; sparse ones once per (pattern, sparsity).
"""
import numpy as np

from sparsekit.bench.patterns import fixed_sparsity, pruned_weight
from sparsekit.bench.progress import progress
from sparsekit.bench.systems import SPARSE_FORMATS
from sparsekit.bench.timing import CacheFlusher, measure_interleaved, pin_threads, summarize

# largest error (relative to max |reference|) accepted before a result is flagged
TOLERANCE = {"fp32": 1e-4, "int8": 0.1}


def sparsity_points(patterns, sparsities):
    """(pattern, sparsity) pairs; an N:M pattern has exactly one sparsity."""
    points = []
    for p in patterns:
        fixed = fixed_sparsity(p)
        if fixed is not None:
            points.append((p, fixed))
        else:
            points.extend((p, s) for s in sparsities)
    return points


def _entries(systems, points):
    dense = [(s, "dense", None) for s in systems if s.format not in SPARSE_FORMATS]
    sparse = [(s, p, sp) for p, sp in points for s in systems if s.format in SPARSE_FORMATS]
    return dense + sparse


def _relative_error(y, ref):
    scale = max(float(np.abs(ref).max()) if ref.size else 0.0, 1e-30)
    return float(np.abs(np.asarray(y, np.float64) - ref).max()) / scale if ref.size else 0.0


def run_sweep(layers, points, threads_list, systems, repeat, min_sample, seed=0,
              show_progress=True, cold=False):
    """Returns (results, errors): result records and [(where, message)].
    cold: flush the caches before every timed call (timing.CacheFlusher)."""
    flush = CacheFlusher() if cold else None
    entries = _entries(systems, points)
    groups = [(layer, t) for layer in layers for t in threads_list]
    bar = progress(len(groups) * (len(entries) + repeat), "sparsekit bench", show_progress)
    results, errors = [], []
    try:
        for gi, (layer, threads) in enumerate(groups):
            rng = np.random.default_rng([seed, gi])
            bar.set_postfix_str(f"{layer.model}/{layer.name} M={layer.m} threads={threads}")
            with pin_threads(threads):
                results += _run_group(layer, threads, entries, repeat, min_sample, rng,
                                      bar, errors, flush)
    finally:
        bar.close()
    return results, errors


def _run_group(layer, threads, entries, repeat, min_sample, rng, bar, errors, flush=None):
    n, k, m = layer.n, layer.k, layer.m
    x = rng.standard_normal((m, k)).astype(np.float32)
    x64 = x.astype(np.float64)
    weights = {}
    ready = []  # (system, pattern, sparsity, prepared, rel_err, actual sparsity)
    for system, pattern, sparsity in entries:
        key = (pattern, sparsity)
        if key not in weights:
            w = pruned_weight(n, k, sparsity or 0.0, pattern, rng)
            weights[key] = (w, x64 @ w.astype(np.float64).T, 1.0 - np.count_nonzero(w) / w.size)
        w, ref, actual = weights[key]
        try:
            prep = system.prepare(w, x, threads)
            err = _relative_error(prep.to_numpy(prep.run()), ref)
        except Exception as e:  # one failing system must not sink the sweep
            where = f"{system.name} on {layer.model}/{layer.name} {n}x{k} M={m} " \
                    f"{pattern} {sparsity} threads={threads}"
            errors.append((where, f"{type(e).__name__}: {e}"))
        else:
            ready.append((system, pattern, sparsity, prep, err, actual))
        bar.update()
    samples, calls = measure_interleaved([r[3].run for r in ready], repeat, min_sample, rng,
                                         on_round=bar.update, flush=flush)
    records = []
    for (system, pattern, sparsity, prep, err, actual), s, c in zip(ready, samples, calls):
        rec = {
            "model": layer.model, "layer": layer.name, "N": n, "K": k, "M": m,
            "threads": threads, "system": system.name, "library": system.library,
            "format": system.format, "precision": system.precision,
            "pattern": pattern, "sparsity": sparsity,
            "actual_sparsity": None if sparsity is None else round(actual, 6),
            "calls_per_sample": int(c),
            "detail": prep.detail,
            "weight_bytes": prep.weight_bytes,
            "bytes_per_weight": None if prep.weight_bytes is None
            else prep.weight_bytes / (n * k),
            "max_rel_err": err,
            "check": "ok" if err <= TOLERANCE[system.precision] else "FAIL",
        }
        rec.update(summarize(s))
        rec["gflops"] = 2.0 * m * n * k / rec["median_s"] / 1e9 if rec["median_s"] > 0 else None
        records.append(rec)
    _add_speedups(records)
    return records


def _add_speedups(records):
    """speedup = median of the fastest dense fp32 system / this median."""
    dense = [r for r in records if r["format"] == "dense" and r["precision"] == "fp32"]
    best = min(dense, key=lambda r: r["median_s"]) if dense else None
    for r in records:
        r["baseline_system"] = best["system"] if best else None
        ok = best is not None and r["q25_s"] > 0
        r["speedup"] = best["median_s"] / r["median_s"] if ok else None
        # the spread of this system's samples, as speedups (baseline median fixed)
        r["speedup_low"] = best["median_s"] / r["q75_s"] if ok else None
        r["speedup_high"] = best["median_s"] / r["q25_s"] if ok else None
