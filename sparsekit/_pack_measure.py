"""Measuring and fitting sparsekit.pack's cost model, its crossover table,
and the `sparsekit pack` command line (`python -m sparsekit.pack`).

`sparsekit pack --measure` times the formats on this machine and prints a
table to paste into sparsekit/_pack_tables.py; at each M it times together
only the formats pack can choose at that M (timing_plan); `--save` / `--fit`
split a long run. The decision itself is in sparsekit/pack.py.
"""
import math
import sys

import numpy as np

from sparsekit.pack import (
    MEASURED, QUANTIZE, SHARED_ISAS, SHARED_MIN_DENSITY, _big_units, _candidates, _decide,
    _dense_weight, _g4_applies, _gap_units, _log2k_units, _predict, _running_kernels,
    _sell_groups, _sell_isa, _sell_wanted, _shared_isa, _shared_wanted, _stats, _table,
)

# ---- measuring the model ----------------------------------------------------
# large (BERT FFN) and small layers: the small ones pin the fixed per-call cost
# and the activation term, which the large ones cannot tell apart
MEASURE_SHAPES = ((3072, 768), (768, 3072), (1536, 384), (384, 1536), (256, 128), (384, 384),
                  (128, 512), (64, 64))
MEASURE_SPARSITIES = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
MEASURE_MS = (1, 8, 32, 128)


def _build(fmt, w):
    from sparsekit import formats

    if fmt == "dense":  # what pack returns: packed where sparsekit's fp32 GEMM wins
        return _dense_weight(w, _dense_for_table() == "MEASURED_AVX2")
    if fmt == "csr":
        return formats.CSRMatrix.from_dense(w)
    if fmt == "csr_shared":  # None where no layout is built: nothing to time
        c = formats.CSRMatrix.from_dense(w).with_shared_columns()
        return c if c.shared_columns else None
    if fmt == "sell":
        return formats.SlicedEllMatrix.from_dense(w)
    if fmt == "qdense":
        return formats.QuantizedMatrix.from_float(w)
    return formats.SparseInt8Matrix.from_float(w)


def _dense_for_table():
    """The fp32 table a measurement here is for (pack's choice of table for
    the kernels running now): MEASURED_AVX2 where spmm_f32 / spmv_sell_f32 run
    AVX2. That table is for CPUs without AVX-512, whose runtime keeps dense
    weights on the packed GEMM's AVX2 kernel at every M (_dense_f32.wanted),
    so there "dense" is timed packed even on an AVX-512 CPU forced to AVX2
    (where pack itself returns a NumPy array: its AVX-512 BLAS wins there)."""
    return _table(None, _running_kernels())[0]


# Each format is timed rotating over ROTATION copies of its weight (distinct
# memory, the same values), one call per copy in turn, as a model's consecutive
# layers of that shape would run: the copies evict each other, so a weight whose
# copies together exceed the caches (the BERT FFN shapes: 8 x 9.4 MB dense)
# comes from memory on every call, whatever else is timed in the same
# interleave. Timed on one weight back to back (rotation 1, the tables before
# branch sellpick) a weight that fits in L3 stayed there: on the BERT FFN
# shapes at M = 1 the packed dense GEMM took 316 us instead of 789 from memory,
# SlicedEllMatrix's AVX2 kernel 335 instead of 440 (Zen 3, medians), and which
# formats shared the interleave decided how warm each one was
# (benchmarks/RESULTS.md, "SlicedEllMatrix at small M: warm vs a model's layers").
ROTATION = 8


def _rotation(obj, copies):
    """obj and copies - 1 deep copies of it: the weights one timing rotates over."""
    import copy

    return [obj] + [copy.deepcopy(obj) for _ in range(copies - 1)]


def _time_formats(built, x, reps):
    """Seconds per sparsekit.linear(x, w) for each format of built ({format:
    [copies of its weight]}, _rotation): interleaved rounds; per round and
    format one timing of whole passes over its copies (at least ~2 ms of
    calls, at most 50); the fastest round (the least disturbed by other
    tenants)."""
    import time

    import sparsekit

    copies = next(iter(built.values()))
    n, k = copies[0].shape
    m = x.shape[0]
    inner = max(1, int(2e-3 / max(1e-6, 1e-9 * n * k * m / 4)))
    passes = -(-min(inner, 50) // len(copies))  # whole passes: every copy as often
    t = {f: [] for f in built}
    for objs in built.values():
        for obj in objs:
            sparsekit.linear(x, obj)  # warm up (first-touch, lazy set-up)
    for _ in range(reps):
        for f, objs in built.items():
            t0 = time.perf_counter()
            for _ in range(passes):
                for obj in objs:
                    sparsekit.linear(x, obj)
            t[f].append((time.perf_counter() - t0) / (passes * len(objs)))
    return {f: float(np.min(v)) for f, v in t.items()}


def _random_weight(rng, n, k, s, pattern):
    """A random [n, k] weight with a share s of zeros, unstructured or in 1x4 blocks."""
    w = rng.standard_normal((n, k)).astype(np.float32)
    if pattern == "unstructured":
        keep = rng.random((n, k)) >= s
    else:
        keep = np.repeat(rng.random((n, (k + 3) // 4)) >= s, 4, axis=1)[:, :k]
    return np.where(keep, w, 0).astype(np.float32)


def all_formats():
    """Every format this build can time (csr_shared where its kernel reads it)."""
    return ["dense", "csr", "sell", "spint8"] + (
        ["qdense"] if "qdense" in _candidates("int8") else []) + (
        ["csr_shared"] if _shared_isa() in SHARED_ISAS else [])


def _choosable(fmt, m, sell_isa, shared_isa):
    """Can pack pick fmt at M rows per call where spmv_sell_f32 runs on
    sell_isa and spmm_f32 on shared_isa? pack's own M rules (_candidates,
    _sell_wanted, _shared_wanted); the rules on the weight itself aside."""
    quantize = next((q for q in QUANTIZE if fmt in _candidates(q)), "unknown")
    if quantize == "unknown":
        raise ValueError(f"formats: unknown format {fmt!r} (expected some of "
                         f"{', '.join(c for q in QUANTIZE for c in _candidates(q))})")
    if fmt == "sell":
        return _sell_wanted(quantize, m, sell_isa)
    if fmt == "csr_shared":
        return _shared_wanted(quantize, m, shared_isa)
    return True


def timing_plan(fmts, ms, sell_isa=None, shared_isa=None):
    """What --measure times at each M (kernels: this CPU's unless given):
    [(m, together, alone)]. together: the formats of fmts pack can choose at
    that M, timed in one interleave: a format it cannot choose there, timed
    alongside, evicts their arrays (SlicedEllMatrix's slowed CSRMatrix by
    5-25% at M >= 32 and moved the crossovers ~0.05 later; benchmarks/
    RESULTS.md, branch packrefit). alone: a format pack cannot choose at that
    M but can at some M between it and the next lower M timed (0 for the
    lowest), where the model interpolates (or clamps to) this row, e.g.
    SlicedEllMatrix at M = 32 for M = 9..16 on AVX-512; each is timed on its
    own. Other formats are not timed at that M (their rows there are never
    read). Raises ValueError for an unknown format or an M < 1."""
    sell_isa = _sell_isa() if sell_isa is None else sell_isa
    shared_isa = _shared_isa() if shared_isa is None else shared_isa
    plan = []
    for m in ms:
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
            raise ValueError(f"ms: expected activation row counts >= 1, got {m!r}")
        below = max((v for v in ms if v < m), default=0)
        together = [f for f in fmts if _choosable(f, m, sell_isa, shared_isa)]
        alone = [f for f in fmts if f not in together and any(
            _choosable(f, v, sell_isa, shared_isa) for v in range(below + 1, m))]
        plan.append((int(m), together, alone))
    return plan


def _describe_plan(plan, fmts):
    """timing_plan as lines for the log."""
    lines = []
    for m, together, alone in plan:
        skipped = [f for f in fmts if f not in together and f not in alone]
        lines.append(f"M={m}: together {','.join(together) or '-'}; alone "
                     f"{','.join(alone) or '-'}; not timed {','.join(skipped) or '-'}")
    return lines


def measure_raw(shapes=MEASURE_SHAPES, sparsities=MEASURE_SPARSITIES, ms=MEASURE_MS, reps=7,
                seed=0, log=None, patterns=("unstructured", "1x4"), fmts=None,
                rotation=ROTATION):
    """Time sparsekit.linear for every candidate format (or those in fmts),
    at each M as timing_plan says, each rotating over `rotation` copies of
    its weight (_time_formats). Returns one dict per (weight, M, format
    timed): n, k, sparsity, pattern, m, fmt, nnz, nblocks, ngroups,
    sell_groups, shared_bytes (bytes of the CSRMatrix with its shared-column
    layout, None where none is built; csr_shared is timed only where one is),
    rotation, sec - what _model_from_raw fits."""
    if isinstance(rotation, bool) or not isinstance(rotation, int) or rotation < 1:
        raise ValueError(f"rotation: expected a number of weight copies >= 1, got {rotation!r}")
    rng = np.random.default_rng(seed)
    fmts = all_formats() if fmts is None else list(fmts)
    plan = timing_plan(fmts, ms)
    for line in _describe_plan(plan, fmts) if log else ():
        log(line)
    raw = []
    for n, k in shapes:
        for s in sparsities:
            for pattern in patterns:
                if pattern == "1x4" and s == 0.0:
                    continue
                w = _random_weight(rng, n, k, s, pattern)
                nnz, nblocks, ngroups = _stats(w)
                sell_groups = _sell_groups(w)
                built = {f: _build(f, w) for f in fmts
                         if not (pattern == "1x4" and f in ("dense", "qdense"))}
                built = {f: _rotation(obj, rotation) for f, obj in built.items()
                         if obj is not None}
                shared_bytes = built["csr_shared"][0].nbytes if "csr_shared" in built else None
                for m, together, alone in plan:
                    x = rng.standard_normal((m, k)).astype(np.float32)
                    for group in [together] + [[f] for f in alone]:
                        timed = {f: built[f] for f in group if f in built}
                        if not timed:
                            continue
                        for f, sec in _time_formats(timed, x, reps).items():
                            raw.append(dict(n=n, k=k, sparsity=s, pattern=pattern, m=m,
                                            fmt=f, nnz=nnz, nblocks=nblocks,
                                            ngroups=ngroups, sell_groups=sell_groups,
                                            shared_bytes=shared_bytes, rotation=rotation,
                                            sec=sec))
                            if log:
                                log(f"{n}x{k} s={s:.2f} {pattern:>12} M={m:<4} {f:>10} "
                                    f"{sec * 1e6:9.1f} us")
    return raw


def _samples(raw, isa, csr_base=None):
    """raw timings -> samples[key][m] = [(units, n, m*k, big units, log2k units,
    gap units, seconds)]. CSRMatrix from unstructured weights only: at the same nonzeros
    1x4-pruned ones run up to ~35% faster (neighbouring activation rows), which
    the units do not tell apart; fitted to those, the model would under-predict
    unstructured weights, the common case (so 1x4 weights in CSR are over-predicted:
    the safe side). The same for csr_shared, and only from SHARED_MIN_DENSITY on
    (where pack considers it).
    csr_base: a model whose CSRMatrix coefficients stay (csr_shared fitted
    alone): each csr_shared time is then scaled by csr_base's CSRMatrix
    prediction over the CSRMatrix time of the same weight and M in the same
    run, so the model's csr / csr_shared ratio is the measured one even where
    csr_base's CSR table has drifted from today's CSR kernel (measured: the
    CSR kernels ran ~10% faster at M >= 32 than that table predicts)."""
    samples = {}
    last_csr = {}  # (n, k, sparsity, pattern, m) -> the CSRMatrix time just before
    for r in raw:
        n, k, m, f = r["n"], r["k"], r["m"], r["fmt"]
        pattern = r.get("pattern", "unstructured")
        if f == "csr":
            last_csr[(n, k, r["sparsity"], pattern, m)] = r["sec"]
        if f in ("csr", "csr_shared") and pattern != "unstructured":
            continue
        sec = r["sec"]
        if f == "csr_shared":
            if r["nnz"] < SHARED_MIN_DENSITY * n * k:
                continue
            if csr_base is not None:
                csr_sec = last_csr.get((n, k, r["sparsity"], pattern, m))
                if csr_sec is None:
                    raise ValueError("csr_shared fitted alone needs the CSRMatrix timings "
                                     "of the same run (--formats csr,csr_shared)")
                sec *= _predict(csr_base, "csr", m, n, k, r["nnz"]) * 1e-6 / csr_sec
        key = f
        if f == "spint8" and _g4_applies(r["nnz"], r["nblocks"], m, isa, k, n,
                                         r["ngroups"]):
            key = "spint8_g4_m1" if m == 1 else "spint8_g4"
        u = {"dense": n * k, "qdense": n * k, "csr": r["nnz"], "csr_shared": r["nnz"],
             "spint8": r["nblocks"],
             "spint8_g4": r["ngroups"], "spint8_g4_m1": r["ngroups"],
             "sell": 64 * r.get("sell_groups", 0)}[key]
        samples.setdefault(key, {}).setdefault(m, []).append(
            (u, n, m * k, _big_units(key, u), _log2k_units(key, u, k),
             _gap_units(key, u, n, k), sec))
    return samples


def measure(shapes=MEASURE_SHAPES, sparsities=MEASURE_SPARSITIES, ms=MEASURE_MS, reps=7,
            seed=0, log=None):
    """Time sparsekit.linear for every candidate format and fit the model.
    Returns the model dict (what MEASURED holds)."""
    raw = measure_raw(shapes, sparsities, ms, reps, seed, log)
    return _model_from_raw(raw)


def _model_from_raw(raw, csr_base=None):
    import sparsekit
    from sparsekit._native import core as _core

    isa = _core.family_isa("spmm_u8s8")
    return {"isa": isa, "sell_isa": _core.family_isa("spmv_sell_f32"),
            "shared_isa": _core.family_isa("spmm_f32"), "kernels": _running_kernels(),
            "coef": _fit(_samples(raw, isa, csr_base)),
            "source": f"measured by `sparsekit pack --measure` on "
                      f"{sparsekit.info()['cpu']} (1 thread)"}


def _fit(samples):
    from scipy.optimize import nnls

    coef = {}
    for f, per_m in samples.items():
        per_m = {m: rows for m, rows in per_m.items() if rows}
        if not per_m:
            continue
        coef[f] = {}
        for m, rows in per_m.items():
            a = np.array([[1.0, u * 1e-3, n * 1e-3, mk * 1e-3, du * 1e-3, lk * 1e-3,
                           gu * 1e-3]
                          for u, n, mk, du, lk, gu, _ in rows])  # us
            b = np.array([sec * 1e6 for *_, sec in rows])
            # relative error matters, not absolute: weight each row by 1/t
            x, _ = nnls(a / b[:, None], np.ones_like(b))
            x = x if x[6] else x[:6]  # the gap term: CSRMatrix only (older tables: 6)
            coef[f][m] = tuple(round(float(v), 4) for v in x)
    return coef


def crossover_table(model=None, shapes=((3072, 768), (768, 3072)), ms=(1, 8, 32, 128)):
    """Lowest sparsity (in steps of 1%) from which pack picks the sparse format,
    per shape and M (the rules included): CSRMatrix vs dense fp32 where
    SlicedEllMatrix is no candidate (M above SELL_MAX_M / SELL_MAX_M_AVX2 for
    the model's "sell_isa", or that ISA not in SELL_ISAS), SlicedEllMatrix
    (unstructured, where it is a candidate; None above), SparseInt8Matrix vs
    QuantizedMatrix for unstructured
    pruning (a share 1 - s^4 of the 1x4 blocks is kept) and for 1x4-block
    pruning. And "shared": the (lowest, highest) sparsity at which pack picks
    CSRMatrix with shared columns for an unstructured weight (all fp32
    candidates, SlicedEllMatrix where it is one), None where it never does;
    it builds the layouts, so it is None on CPUs without AVX-512."""
    model = MEASURED if model is None else model
    cases = ((None, ("csr",), "csr"), (None, ("sell",), "sell"),
             ("int8", ("spint8",), "spint8"), ("int8", ("spint8",), "spint8_1x4"))
    sell_isa = model.get("sell_isa", "avx512")
    out = []
    for n, k in shapes:
        kq = (k + 3) // 4
        uniform = np.random.default_rng(0).random((n, k), dtype=np.float32)
        slots_at = {}  # pct -> slots of an unstructured weight at that sparsity
        for m in ms:
            row = {"shape": f"{n}x{k}", "m": m}
            for quantize, sparse, col in cases:
                row[col] = None
                for pct in range(0, 100):
                    s = pct / 100
                    nnz = round(n * k * (1 - s))
                    kept = (1 - s) if col == "spint8_1x4" else (1 - s ** 4)
                    nblocks = max(1, round(n * kq * kept)) if nnz else 0
                    ngroups = n * math.ceil(k * (1 - s) / 4)
                    slots = None
                    if col == "sell" and _sell_wanted(quantize, m, sell_isa):
                        if pct not in slots_at:
                            slots_at[pct] = 64 * _sell_groups(
                                (uniform >= s).astype(np.float32))
                        slots = slots_at[pct]
                    if col == "sell" and slots is None:
                        break  # not a candidate at this M
                    ex = _decide(n, k, nnz, nblocks, ngroups, quantize, m, model,
                                 model["isa"], slots=slots, sell_isa=sell_isa)
                    if ex["choice"] in sparse:
                        row[col] = s
                        break
            row["shared"] = _shared_range(model, n, k, m, uniform, slots_at)
            out.append(row)
    return out


_SHARED_AT = {}  # (n, k, sparsity in percent) -> (nnz, nbytes with the layout or None)


def _shared_range(model, n, k, m, uniform, slots_at):
    """crossover_table's "shared" column for one shape and M (slots_at: the
    SlicedEllMatrix slots per sparsity in percent)."""
    from sparsekit.formats import CSRMatrix

    sell_isa = model.get("sell_isa", "avx512")
    shared_isa = model.get("shared_isa", "avx512")
    if "csr_shared" not in model["coef"] or not _shared_wanted(None, m, shared_isa):
        return None
    picked = []
    for pct in range(50, 100):  # the layout is never built above 35% density
        s = pct / 100
        if (n, k, pct) not in _SHARED_AT:  # the same uniform weights in every call
            c = CSRMatrix.from_dense((uniform >= s).astype(np.float32)).with_shared_columns()
            _SHARED_AT[(n, k, pct)] = (c.nnz, c.nbytes if c.shared_columns else None)
        nnz, shared_bytes = _SHARED_AT[(n, k, pct)]
        if shared_bytes is None:
            continue
        slots = None
        if _sell_wanted(None, m, sell_isa):
            if pct not in slots_at:
                slots_at[pct] = 64 * _sell_groups((uniform >= s).astype(np.float32))
            slots = slots_at[pct]
        ex = _decide(n, k, nnz, 1, 1, None, m, model, model["isa"], slots=slots,
                     sell_isa=sell_isa, shared_bytes=shared_bytes, shared_isa=shared_isa)
        if ex["choice"] == "csr_shared":
            picked.append(s)
    return (min(picked), max(picked)) if picked else None


def median_runs(runs):
    """Raw timings of several runs (lists from measure_raw / --save) as one:
    a case (weight, pattern, M, format) timed in more than one run at the
    median of its times (the machine is shared: one run's slow spell should
    not pull the fit), each case once, in the order first timed."""
    rotations = {r.get("rotation", 1) for run in runs for r in run}
    if len(rotations) > 1:  # warm and cold timings of a case are not one case
        raise ValueError(f"runs: timed with different --rotation ({sorted(rotations)}); fit "
                         f"runs of one rotation")
    cases = {}
    for r in (r for run in runs for r in run):
        key = (r["n"], r["k"], r["sparsity"], r.get("pattern", "unstructured"), r["m"],
               r["fmt"])
        cases.setdefault(key, []).append(r)
    return [dict(rs[0], sec=float(np.median([r["sec"] for r in rs]))) for rs in cases.values()]


def _cli_arguments(ap):
    """The options of `sparsekit pack` (sparsekit/cli.py); without --measure
    or --fit it prints the crossover table of MEASURED."""
    ap.add_argument("--measure", action="store_true",
                    help="time the formats and print the fitted model (paste as MEASURED); "
                         "at each M only the formats pack can choose there are timed "
                         "together (see --plan)")
    ap.add_argument("--plan", action="store_true",
                    help="print which formats --measure would time together (and alone) at "
                         "each M with these --formats / --ms, and time nothing")
    ap.add_argument("--reps", type=int, default=7,
                    help="timed rounds per case with --measure (formats interleaved; the "
                         "fastest round is kept; default 7)")
    ap.add_argument("--shapes", default=None,
                    help="measure only these shapes, e.g. 3072x768,384x384 (to split a long "
                         "run; save each part with --save and fit them together with --fit)")
    ap.add_argument("--save", default=None, help="also write the raw timings to this JSON file")
    ap.add_argument("--fit", nargs="+", default=None, metavar="JSON",
                    help="fit the model from raw timings saved by --save (no timing); a "
                         "case timed in several files counts once, at its median")
    ap.add_argument("--formats", default=None,
                    help="time (with --measure) and fit only these formats, e.g. sell (of dense, "
                         "csr, csr_shared, sell, spint8, qdense); the others keep their "
                         "coefficients from MEASURED, and these keep theirs at the M not "
                         "timed (--ms, or where pack cannot choose them: --plan)")
    ap.add_argument("--ms", default=None, help="time only these M, e.g. 1,8 (default "
                                               "1,8,32,128)")
    ap.add_argument("--sparsities", default=None,
                    help="time only these sparsities, e.g. 0.7,0.8 (default "
                         + ",".join(str(v) for v in MEASURE_SPARSITIES) + ")")
    ap.add_argument("--patterns", default=None,
                    help="time only these pruning patterns (unstructured, 1x4; default both)")
    ap.add_argument("--rotation", type=int, default=ROTATION,
                    help="time each format rotating over this many copies of its weight, as "
                         f"a model's consecutive layers (default {ROTATION}; 1: one weight back "
                         "to back, warm in the caches, as the tables before branch sellpick)")


def _main(argv):
    """`python -m sparsekit.pack ...`: the same as `sparsekit pack ...`."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m sparsekit.pack")
    _cli_arguments(ap)
    _cli_run(ap.parse_args(argv))


def _measure_options(args):
    """measure_raw's shapes, sparsities, ms, fmts, patterns and rotation from
    the parsed --shapes, --sparsities, --ms, --formats, --patterns and
    --rotation (their defaults where not given; fmts None: all_formats())."""
    def split(text):
        return [v.strip() for v in text.split(",") if v.strip()]

    try:
        shapes = MEASURE_SHAPES if args.shapes is None else tuple(
            tuple(int(v) for v in sh.split("x")) for sh in split(args.shapes))
        if any(len(sh) != 2 for sh in shapes):
            raise ValueError
    except ValueError:
        raise ValueError(f"--shapes: expected NxK[,NxK...], got {args.shapes!r}") from None
    try:
        ms = MEASURE_MS if args.ms is None else tuple(int(v) for v in split(args.ms))
        sparsities = MEASURE_SPARSITIES if args.sparsities is None else tuple(
            float(v) for v in split(args.sparsities))
    except ValueError:
        raise ValueError(f"--ms / --sparsities: expected comma-separated numbers, got "
                         f"{args.ms!r} / {args.sparsities!r}") from None
    rotation = getattr(args, "rotation", ROTATION)
    if rotation < 1:
        raise ValueError(f"--rotation: expected a number of weight copies >= 1, got {rotation}")
    return dict(shapes=shapes, sparsities=sparsities, ms=ms,
                fmts=None if args.formats is None else split(args.formats),
                patterns=("unstructured", "1x4") if args.patterns is None else tuple(
                    split(args.patterns)), rotation=rotation)


def _cli_run(args):
    """Run `sparsekit pack` with parsed `args` (see _cli_arguments)."""
    import json
    import pprint

    if args.fit:
        raw = median_runs([json.load(open(path)) for path in args.fit])
    elif getattr(args, "plan", False):
        opts = _measure_options(args)
        fmts = all_formats() if opts["fmts"] is None else opts["fmts"]
        for line in _describe_plan(timing_plan(fmts, opts["ms"]), fmts):
            print(line)
        return
    elif args.measure:
        from threadpoolctl import threadpool_limits

        import sparsekit

        opts = _measure_options(args)
        sparsekit.set_num_threads(1)
        with threadpool_limits(1):
            raw = measure_raw(reps=args.reps, log=lambda s: print(s, file=sys.stderr), **opts)
        if args.save:
            with open(args.save, "w") as f:
                json.dump(raw, f)
    # the table pack uses for fp32 on this CPU (forced ISAs included)
    base_name, base = _table(None, _running_kernels())
    if not (args.fit or args.measure):
        for row in crossover_table(base):
            print(row)
        print(f"# {base_name}: the table pack uses for fp32 on this CPU")
        return
    fitted = set(args.formats.split(",")) if args.formats else None
    # csr_shared without csr: relative to the table's CSRMatrix coefficients (_samples)
    model = _model_from_raw(raw, base if fitted and "csr_shared" in fitted
                            and "csr" not in fitted else None)
    if args.formats:  # fit these formats only; the others keep the table's coefficients
        fitted |= {key for key in model["coef"] if key.split("_")[0] in fitted}
        coef = {f: dict(v) for f, v in base["coef"].items()}
        # per M: a format's rows at the M not timed now stay (--ms)
        coef.update({f: {**coef.get(f, {}), **v} for f, v in model["coef"].items()
                     if f in fitted})
        model = dict(base, coef=coef, sell_isa=model["sell_isa"],
                     shared_isa=model["shared_isa"])
        print(f"# fitted: {sorted(fitted & set(coef))}; the others' coefficients from "
              f"{base_name}")
    print("MEASURED = " + pprint.pformat(model, width=100))
    for row in crossover_table(model):
        print("#", row)
