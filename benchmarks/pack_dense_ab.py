"""A/B of sparsekit.pack's dense-vs-sparse crossovers (CSR at M >= 32, SlicedEllMatrix
at small M): what pack picks against the alternatives, timed directly (no model).

    flock /work/wt/bench.lock python benchmarks/pack_dense_ab.py
    flock /work/wt/bench.lock python benchmarks/pack_dense_ab.py --ms 32 --shapes 3072x768
    SPARSEKIT_ISA=avx2 flock /work/wt/bench.lock python benchmarks/pack_dense_ab.py \
        --avx2-cpu --ms 8,32,128      # MEASURED_AVX2's picks against the AVX2 kernels

For each BERT FFN shape x sparsity x M: a random unstructured weight, timed
through sparsekit.linear as dense fp32 the way pack returns it (a
PackedDenseMatrix where sparsekit's fp32 GEMM is used, _dense_f32.for_linear),
as NumPy dense (a float32 ndarray, for reference), as CSRMatrix, as
CSRMatrix with shared columns where the layout is built, and at M <=
SELL_MAX_M as SlicedEllMatrix (its time over packed dense printed too). 1 thread
(threadpoolctl and sparsekit), every format timed once per round in the same
order, --rounds rounds; printed: the median time per call and the median of
the per-round ratios CSR / packed dense (> 1: dense faster), with pack's
pick (from the table it uses on this CPU; --model FILE: a Python file with
MEASURED = {...} as --measure prints, too, or with --table MEASURED_AVX2 that
table of it). --flush MB: the weight cold (a buffer read before every call);
--rotation COPIES: each format timed rotating over that many copies of its
weight, as `sparsekit pack --measure` times (a model's consecutive layers).

    flock /work/wt/bench.lock python benchmarks/pack_dense_ab.py --ms 1,2,8 \
        --sparsities 0.3,0.4,0.5,0.6,0.7 --rotation 8 --no-numpy   # SlicedEllMatrix too
"""
import argparse
import importlib
import statistics
import sys
import time

import numpy as np

P = importlib.import_module("sparsekit.pack")  # the module (sparsekit.pack is the function)


def _weight(rng, n, k, s):
    w = rng.standard_normal((n, k)).astype(np.float32)
    return np.where(rng.random((n, k)) >= s, w, 0).astype(np.float32)


def _load_model(path, name="MEASURED"):
    ns = {}
    exec(open(path).read(), ns)
    return ns[name]


def run(shapes, sparsities, ms, rounds, model=None, seed=1, flush_mb=0, numpy=True,
        avx2_cpu=False, rotation=1):
    import sparsekit
    from sparsekit._dense_f32 import for_linear
    from sparsekit._pack_measure import _rotation

    rng = np.random.default_rng(seed)
    junk = np.zeros(flush_mb * 2**18, np.float32)
    rows = []
    for n, k in shapes:
        for s in sparsities:
            w = _weight(rng, n, k, s)
            csr = sparsekit.CSRMatrix.from_dense(w)
            built = {"dense": for_linear(w.copy(), avx2_cpu), "numpy": w, "csr": csr}
            if not numpy:
                del built["numpy"]
            shared = csr.with_shared_columns()
            if shared.shared_columns:
                built["csr_shared"] = shared
            if min(ms) <= P.SELL_MAX_M:  # timed at M <= SELL_MAX_M (its widest rule)
                built["sell"] = sparsekit.SlicedEllMatrix.from_csr(csr)
            built = {f: _rotation(obj, rotation) for f, obj in built.items()}
            for m in ms:
                x = rng.standard_normal((m, k)).astype(np.float32)
                inner = 1 if flush_mb else max(1, min(20, int(3e-3 / (1e-9 * n * k * m / 8))))
                inner = -(-inner // rotation)  # whole passes over the copies
                here = {f: v for f, v in built.items() if f != "sell" or m <= P.SELL_MAX_M}
                t = {f: [] for f in here}
                for objs in here.values():
                    for obj in objs:
                        sparsekit.linear(x, obj)
                for _ in range(rounds):
                    for f, objs in here.items():
                        if flush_mb:  # the weight cold, as after the other layers of a model
                            junk[::16].sum()  # one read per cache line (clean lines)
                        t0 = time.perf_counter()
                        for _ in range(inner):
                            for obj in objs:
                                sparsekit.linear(x, obj)
                        t[f].append((time.perf_counter() - t0) / (inner * len(objs)))
                ratio = statistics.median(c / d for c, d in zip(t["csr"], t["dense"]))
                sell = (statistics.median(c / d for c, d in zip(t["sell"], t["dense"]))
                        if "sell" in t else None)
                picks = {"table": P.explain(w, m=m)["choice"]}
                if model is not None:
                    picks["model"] = P.explain(w, m=m, model=model)["choice"]
                row = dict(shape=f"{n}x{k}", s=s, m=m, ratio=ratio, sell_ratio=sell,
                           picks=picks, rotation=rotation,
                           us={f: statistics.median(v) * 1e6 for f, v in t.items()})
                rows.append(row)
                us = "  ".join(f"{f} {v:8.1f}" for f, v in row["us"].items())
                sell = "" if sell is None else f"  sell/dense {sell:5.2f}"
                print(f"{row['shape']:>9} s={s:.2f} M={m:<4} {us}  csr/dense {ratio:5.2f}{sell}  "
                      f"pack: " + ", ".join(f"{a}={b}" for a, b in picks.items()), flush=True)
    return rows


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="3072x768,768x3072")
    ap.add_argument("--sparsities", default="0.3,0.35,0.4,0.45,0.5")
    ap.add_argument("--ms", default="32,128")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--model", default=None, help="also show this model's picks")
    ap.add_argument("--table", default="MEASURED", help="the name of the table in --model")
    ap.add_argument("--flush", type=int, default=0, metavar="MB",
                    help="read a buffer of this many MB before every timed call (one call "
                         "per timing): the weight comes cold, as in a model's forward pass, "
                         "where the other layers' weights ran in between (default 0: warm, "
                         "calls back to back)")
    ap.add_argument("--rotation", type=int, default=1, metavar="COPIES",
                    help="time each format rotating over this many copies of its weight, one "
                         "call per copy, as a model's consecutive layers of the shape (as "
                         "`sparsekit pack --measure` does by default, ROTATION copies; "
                         "default 1: the one weight)")
    ap.add_argument("--no-numpy", action="store_true", help="do not time NumPy dense")
    ap.add_argument("--save", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--avx2-cpu", action="store_true",
                    help="dense as a CPU without AVX-512 holds it (with SPARSEKIT_ISA=avx2: "
                         "the packed GEMM's AVX2 kernel, what MEASURED_AVX2 prices)")
    a = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    import sparsekit

    sparsekit.set_num_threads(1)
    shapes = [tuple(int(v) for v in sh.split("x")) for sh in a.shapes.split(",")]
    with threadpool_limits(1):
        rows = run(shapes, [float(v) for v in a.sparsities.split(",")],
            [int(v) for v in a.ms.split(",")], a.rounds,
            None if a.model is None else _load_model(a.model, a.table), flush_mb=a.flush,
            numpy=not a.no_numpy, avx2_cpu=a.avx2_cpu, rotation=a.rotation)
    if a.save:
        import json

        with open(a.save, "w") as f:
            json.dump(rows, f)


if __name__ == "__main__":
    main(sys.argv[1:])
