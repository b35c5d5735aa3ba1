"""Predicted vs measured for sparsekit.pack: does it pick the fastest format?

    flock /work/wt/bench.lock python benchmarks/pack_accuracy.py --shapes 384x384 \
        --save acc_384.json                      # time (1 thread, under the lock)
    python benchmarks/pack_accuracy.py --load acc_*.json   # score the model, no timing

Times every format (dense fp32, CSRMatrix, SlicedEllMatrix, CSRMatrix with
shared columns, QuantizedMatrix, SparseInt8Matrix) on random unstructured
weights at each shape x sparsity x M with the same method as `sparsekit pack
--measure` (interleaved rounds, fastest round, each format rotating over
--rotation copies of its weight as a model's consecutive layers, the same
default; a different seed from the fit), then, for quantize=None (dense vs CSR vs SlicedEllMatrix vs
CSR with shared columns; SlicedEllMatrix only where pack would consider it:
its kernel on AVX-512 with M <= SELL_MAX_M or on AVX2 with M <=
SELL_MAX_M_AVX2; the shared columns where the layout
is built, M >= SHARED_MIN_M, density >= SHARED_MIN_DENSITY) and
quantize="int8" (QuantizedMatrix vs SparseInt8Matrix), compares pack's pick
with the measured fastest candidate (--truth all: the fastest timed format of
the mode, a candidate of pack or not, so that pickers with different
candidates are scored alike). Timings saved before SlicedEllMatrix
existed score dense vs CSR as before. A pick counts as right when it is the fastest
or within --tol (10%) of it. Picks are pack's with the table it uses on this
CPU (MEASURED or MEASURED_AVX2, by the ISA of the kernels: score saved timings
under the SPARSEKIT_ISA they were timed with); --model FILE scores a model
printed by --measure (a Python file with MEASURED = {...}) instead, --old pack
as it was before MEASURED_AVX2 (MEASURED everywhere, SlicedEllMatrix on
AVX-512 only).

    SPARSEKIT_ISA=avx2 OPENBLAS_CORETYPE=Haswell flock /work/wt/bench.lock \
        python benchmarks/pack_accuracy.py --ms 1,2,4,8,32,128 --save acc_avx2.json
    SPARSEKIT_ISA=avx2 python benchmarks/pack_accuracy.py --load acc_avx2.json --truth all [--old]
"""
import argparse
import json
import sys

import numpy as np

import importlib

P = importlib.import_module("sparsekit.pack")  # the module (sparsekit.pack is the function)

SHAPES = ((3072, 768), (768, 3072), (1536, 384), (384, 1536), (384, 384), (256, 128),
          (128, 512), (64, 64))
SPARSITIES = (0.0, 0.5, 0.7, 0.9)
MS = (1, 8, 32, 128)
PAIRS = {None: ("dense", "csr", "sell", "csr_shared"), "int8": ("qdense", "spint8")}


def _shared_candidate(c, q, m, shared_isa):
    """Is CSRMatrix with shared columns a candidate of pack for this case?"""
    return (c.get("shared_bytes") is not None and P._shared_wanted(q, m, shared_isa)
            and c["nnz"] >= P.SHARED_MIN_DENSITY * c["n"] * c["k"])


def score(raw, model, tol, isa, show=True, sell_isa=None, shared_isa=None, old=False,
          truth="candidates"):
    """Rows (case, pick, fastest, ok) for every timed case and quantize mode.
    model None: the table pack picks on this CPU. old: pack before the AVX2
    table (MEASURED, SlicedEllMatrix only on AVX-512). truth "all": the
    fastest of every timed format of the mode, pack's candidates or not."""
    cases = {}
    for r in raw:
        key = (r["n"], r["k"], r["sparsity"], r.get("pattern", "unstructured"), r["m"])
        cases.setdefault(key, dict(r, t={}))["t"][r["fmt"]] = r["sec"] * 1e6
    out = []
    for (n, k, s, _, m), c in sorted(cases.items()):
        for q, cands in PAIRS.items():
            slots = 64 * c["sell_groups"] if "sell_groups" in c else None
            if old and sell_isa != "avx512":
                slots = None  # SlicedEllMatrix was a candidate on AVX-512 only
            shared = _shared_candidate(c, q, m, shared_isa)
            pair = tuple(f for f in cands if f in c["t"] and not (
                f == "sell" and (slots is None or not P._sell_wanted(q, m, sell_isa)))
                and not (f == "csr_shared" and not shared))
            if len(pair) < 2:
                continue
            timed = pair if truth == "candidates" else tuple(f for f in cands if f in c["t"])
            ex = P._decide(n, k, c["nnz"], c["nblocks"], c["ngroups"], q, m, model, isa,
                           slots=slots, sell_isa=sell_isa,
                           shared_bytes=c["shared_bytes"] if shared else None,
                           shared_isa=shared_isa)
            pick = ex["choice"]
            fastest = min(timed, key=c["t"].get)
            ratio = c["t"][pick] / c["t"][fastest]
            ok = ratio <= 1 + tol
            out.append(dict(n=n, k=k, s=s, m=m, q=q, pick=pick, fastest=fastest, ratio=ratio,
                            ok=ok, pred={f: ex["predicted_us"].get(f) for f in timed},
                            meas={f: c["t"][f] for f in timed}))
            if show:
                cells = "  ".join(f"{f} {ex['predicted_us'].get(f, float('nan')):8.1f} / "
                                  f"{c['t'][f]:8.1f}" for f in timed)
                print(f"{n:>4}x{k:<4} {s:4.0%} M={m:<3} {str(q):>4}  {cells}  pick {pick:>10} "
                      f"{'ok' if ok else 'WRONG'} ({ratio:.2f}x the fastest)")
    return out


def _load_model(path):
    ns = {}
    exec(open(path).read(), ns)
    return ns["MEASURED"]


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default=None, help="e.g. 384x384,3072x768 (default: all)")
    ap.add_argument("--sparsities", default=None, help="e.g. 0.4,0.5 (default: 0,.5,.7,.9)")
    ap.add_argument("--ms", default=None, help="e.g. 8,32 (default: 1,8,32,128)")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--save", default=None, help="write the raw timings here")
    ap.add_argument("--load", nargs="+", default=None, help="score saved timings, no timing")
    ap.add_argument("--model", default=None)
    ap.add_argument("--old", action="store_true",
                    help="score pack as it was before MEASURED_AVX2 (MEASURED everywhere, "
                         "SlicedEllMatrix on AVX-512 only)")
    ap.add_argument("--truth", choices=("candidates", "all"), default="candidates",
                    help="the fastest of pack's candidates (default) or of every timed format")
    ap.add_argument("--tol", type=float, default=0.10)
    ap.add_argument("--rotation", type=int, default=P.ROTATION,
                    help="time each format rotating over this many copies of its weight, as "
                         "`sparsekit pack --measure` does (default: its default; 1: one weight "
                         "back to back, warm, as before branch sellpick)")
    args = ap.parse_args(argv)
    from sparsekit._native import core as _core

    isa = _core.family_isa("spmm_u8s8")
    sell_isa = _core.family_isa("spmv_sell_f32")
    shared_isa = _core.family_isa("spmm_f32")
    if args.load:
        raw = [r for p in args.load for r in json.load(open(p))]
    else:
        from threadpoolctl import threadpool_limits

        import sparsekit

        shapes = SHAPES if args.shapes is None else tuple(
            tuple(int(v) for v in sh.split("x")) for sh in args.shapes.split(","))
        sparsekit.set_num_threads(1)
        with threadpool_limits(1):
            sp = SPARSITIES if args.sparsities is None else tuple(
                float(v) for v in args.sparsities.split(","))
            ms = MS if args.ms is None else tuple(int(v) for v in args.ms.split(","))
            raw = P.measure_raw(shapes, sp, ms, reps=args.reps, seed=1,
                                patterns=("unstructured",), rotation=args.rotation)
        if args.save:
            with open(args.save, "w") as f:
                json.dump(raw, f)
    model = None if args.model is None else _load_model(args.model)  # None: pack's table
    if args.old and model is None:
        model = P.MEASURED
    rotations = sorted({r.get("rotation", 1) for r in raw})
    print(f"timed rotating over {'/'.join(map(str, rotations))} copies of each weight "
          f"(1: warm, back to back)")
    rows = score(raw, model, args.tol, isa, sell_isa=sell_isa, shared_isa=shared_isa,
                 old=args.old, truth=args.truth)
    for q in PAIRS:
        for m in (None,) + tuple(sorted({r["m"] for r in rows})):
            sel = [r for r in rows if r["q"] == q and m in (None, r["m"])]
            if sel:
                bad = [r for r in sel if not r["ok"]]
                fmts = sorted({f for r in sel for f in r["meas"]})
                print(f"quantize={q}{'' if m is None else f', M={m}'} ({'/'.join(fmts)}): "
                      f"{len(sel) - len(bad)} / {len(sel)} picks within {args.tol:.0%} of "
                      f"the measured fastest; worst {max(r['ratio'] for r in sel):.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
