"""sparsekit fp32 CSR linear vs dense and sparse peers, as ratios in one run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/sparse_vs_dense.py --quick

Y[M,N] = X[M,K] . W^T with W uniform-random unstructured sparse, on BERT-base
and MiniLM feed-forward shapes. For every (shape, M, sparsity) all systems are
timed interleaved (see _harness.py) and reported as speed relative to the
fastest dense fp32 system (NumPy/OpenBLAS or ONNX Runtime MatMul): 5.0x means
five times faster than the best dense. Every system is limited to the same
thread count (threadpoolctl for BLAS/OpenMP pools, torch.set_num_threads,
ORT intra_op_num_threads, sparsekit.set_num_threads).

Peers that are not installed (torch, onnxruntime, scipy) are skipped with a note.
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE change NumPy's BLAS kernels; unset them
for this command only, as above (the script warns when they are set).
"""
import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import interleaved, random_sparse_weight, ratio_median, thread_clock, wall_clock  # noqa: E402

import sparsekit  # noqa: E402

SHAPES = {  # name: (N, K) = (out, in)
    "bert_ffn_up": (3072, 768),
    "bert_ffn_down": (768, 3072),
    "minilm_ffn_up": (1536, 384),
}
DENSE = ("numpy", "onnxruntime")
SPARSE_PEERS = ("scipy", "torch")

# (M, sparsity, minimum speed-up over the fastest dense) from issue 2
TARGETS_DENSE = [(128, 0.9, 5.0), (128, 0.7, 2.5), (1, 0.9, 2.5)]
TARGET_PEERS = (128, 0.9, 2.0)
TARGET_THREADS = 1.8


# ---- systems: each returns (callable, note) or (None, reason) -----------------
def make_numpy(w, x, threads):
    return (lambda: x @ w.T), "x @ w.T (OpenBLAS sgemm)"


def make_onnxruntime(w, x, threads):
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as e:
        return None, f"onnxruntime/onnx not installed ({e.name})"
    n, k = w.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "wt"], ["y"])], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
        [numpy_helper.from_array(np.ascontiguousarray(w.T), "wt")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    from sparsekit.bench.systems import ort_session_options

    sess = ort.InferenceSession(model.SerializeToString(), ort_session_options(threads),
                                providers=["CPUExecutionProvider"])
    feed = {"x": x}
    return (lambda: sess.run(None, feed)[0]), f"MatMul, onnxruntime {ort.__version__}"


def make_scipy(w, x, threads):
    try:
        import scipy
        import scipy.sparse
    except ImportError:
        return None, "scipy not installed"
    wc = scipy.sparse.csr_matrix(w)
    return (lambda: (wc @ x.T).T), f"(W_csr @ x.T).T, scipy {scipy.__version__}"


def make_torch(w, x, threads):
    try:
        import torch
    except ImportError:
        return None, "torch not installed"
    torch.set_num_threads(threads)
    wc = torch.from_numpy(w).to_sparse_csr()
    xt = torch.from_numpy(x)
    return ((lambda: torch.mm(wc, xt.t()).t()),
            f"torch.mm(W_csr, x.T).T, torch {torch.__version__}")


def make_sparsekit(w, x, threads):
    c = sparsekit.CSRMatrix.from_dense(w)
    return (lambda: sparsekit.linear(x, c)), f"sparsekit.linear, CSRMatrix ({c.indices.dtype})"


SELL_MAX_M = 8  # SlicedEllMatrix is a small-M format (CSR's tiled kernel wins above)


def make_sparsekit_sell(w, x, threads):
    note = f"sparsekit.linear, SlicedEllMatrix (timed at M <= {SELL_MAX_M} only)"
    if x.shape[0] > SELL_MAX_M:
        return None, note
    s = sparsekit.SlicedEllMatrix.from_dense(w)
    return (lambda: sparsekit.linear(x, s)), note


SHARED_MIN_M = 32  # the shared-column layout feeds the tiled kernel (M >= 32 here)


def shared_csr(w):
    """CSRMatrix.with_shared_columns() of w, or None where it builds no layout."""
    c = sparsekit.CSRMatrix.from_dense(w).with_shared_columns()
    return c if c.shared_columns else None


def make_sparsekit_shared(w, x, threads):
    note = (f"sparsekit.linear, CSRMatrix.with_shared_columns() (timed at M >= {SHARED_MIN_M} "
            "where the layout is built: AVX-512, density 17-35%, 5-35% for K > 512)")
    c = shared_csr(w) if x.shape[0] >= SHARED_MIN_M else None
    if c is None:
        return None, note
    return (lambda: sparsekit.linear(x, c)), note


MAKERS = {"numpy": make_numpy, "onnxruntime": make_onnxruntime, "scipy": make_scipy,
          "torch": make_torch, "sparsekit": make_sparsekit,
          "sparsekit_sell": make_sparsekit_sell, "sparsekit_shared": make_sparsekit_shared}
# sparsekit's other fp32 formats, timed beside CSRMatrix where they apply:
# system -> (name in the target lines, bytes per dense weight of w)
VARIANTS = {"sparsekit_sell": ("a SlicedEllMatrix",
                               lambda w: sparsekit.SlicedEllMatrix.from_dense(w).nbytes / w.size),
            "sparsekit_shared": ("CSRMatrix.with_shared_columns()",
                                 lambda w: shared_csr(w).nbytes / w.size)}


def set_threads(threads):
    sparsekit.set_num_threads(threads)
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass


# ---- one configuration -------------------------------------------------------
def run_config(shape, m, sparsity, threads, repeats, target_s, rng, notes, clock):
    n, k = SHAPES[shape]
    w = random_sparse_weight(rng, n, k, sparsity)
    x = rng.standard_normal((m, k)).astype(np.float32)
    fns = {}
    for name, maker in MAKERS.items():
        fn, note = maker(w, x, threads)
        notes.setdefault(name, note)
        if fn is not None:
            fns[name] = fn
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    for name, fn in fns.items():  # every system must compute the same thing
        got = np.asarray(fn(), dtype=np.float64).reshape(m, n)
        if not np.allclose(got, ref, rtol=1e-3, atol=1e-3):
            raise AssertionError(f"{name} disagrees with the reference on {shape} M={m}")
    with threadpool_limits(limits=threads):
        set_threads(threads)
        t = interleaved(fns, repeats=repeats, target_s=target_s,
                        clock=thread_clock if clock == "cpu" and threads == 1 else wall_clock)
    dense = {d: t[d]["median"] for d in DENSE if d in t}
    best_dense = min(dense, key=dense.get)
    row = {"shape": shape, "n": n, "k": k, "m": m, "sparsity": sparsity,
           "threads": threads, "best_dense": best_dense,
           "seconds": {s: v["median"] for s, v in t.items()},
           "spread": {s: v["spread"] for s, v in t.items()},
           "speedup_vs_best_dense": {s: ratio_median(t, best_dense, s) for s in t}}
    peers = [p for p in SPARSE_PEERS if p in t]
    row["speedup_vs_peers"] = {p: ratio_median(t, p, "sparsekit") for p in peers}
    c = sparsekit.CSRMatrix.from_dense(w)
    row["bytes_per_weight"] = c.nbytes / (n * k)
    row["variant_bytes_per_weight"] = {v: VARIANTS[v][1](w) for v in VARIANTS if v in t}
    return row


def run_scaling(shape, m, sparsity, repeats, target_s, rng):
    """sparsekit at 2 threads vs 1, interleaved in one run."""
    n, k = SHAPES[shape]
    c = sparsekit.CSRMatrix.from_dense(random_sparse_weight(rng, n, k, sparsity))
    x = rng.standard_normal((m, k)).astype(np.float32)

    def at(th):
        def fn():
            sparsekit.set_num_threads(th)
            return sparsekit.linear(x, c)
        return fn

    # single timed calls, many repeats: a stall of the second thread then
    # spoils one sample, not all of them. Each timed call follows an untimed
    # one at the same thread count: after a 1-thread call the OpenMP worker
    # sleeps, and its wake-up (~0.3-0.5 ms on some VMs) is not the kernel's
    # scaling. The thread backoff is off: on a busy machine it would run the
    # 2-thread calls on one thread (1.00x).
    backoff = sparsekit.get_thread_backoff()
    sparsekit.set_thread_backoff(False)
    samples = {"1": [], "2": []}
    try:
        with threadpool_limits(limits=2):
            for r in range(repeats * 5):
                for th in (("1", "2") if r % 2 else ("2", "1")):
                    fn = at(int(th))
                    fn()
                    t0 = wall_clock()
                    fn()
                    samples[th].append(wall_clock() - t0)
    finally:
        sparsekit.set_thread_backoff(backoff)
        sparsekit.set_num_threads(1)
    t = {th: {"median": float(np.median(v)), "min": min(v), "samples": v,
              "spread": (max(v) - min(v)) / float(np.median(v))} for th, v in samples.items()}
    return {"shape": shape, "m": m, "sparsity": sparsity,
            "seconds_1": t["1"]["median"], "seconds_2": t["2"]["median"],
            "spread_2": t["2"]["spread"], "speedup": ratio_median(t, "1", "2"),
            "speedup_best": t["1"]["min"] / t["2"]["min"]}


# ---- report ------------------------------------------------------------------
def fmt_ratio(v):
    return f"{v:.2f}x"


def markdown(rows, scaling, notes, meta):
    out = ["## fp32 sparse × dense: sparsekit vs dense and sparse peers", ""]
    out.append(f"- date: {meta['date']}; CPU: {meta['cpu']}; sparsekit kernel ISA: "
               f"{meta['isa']}; python {meta['python']}")
    out.append(f"- command: `{meta['command']}`")
    if meta["load"][0] is not None:
        out.append(f"- machine load (1-min load average) before/after: {meta['load'][0]:.1f} / "
                   f"{meta['load'][1]:.1f} on {os.cpu_count()} CPUs")
    out.append("- cells: speed relative to the fastest dense fp32 of the row (higher is "
               "better; dense ms is that system's median time). Each ratio is the median "
               "over interleaved repeats of the ratio within one repeat; `±` is the "
               "sparsekit time spread (max-min)/median.")
    out.append("- clock: " + ("CPU time of the calling thread for 1-thread rows (leaves out "
                              "preemption by other processes), wall time otherwise"
                              if meta["clock"] == "cpu" else "wall time"))
    for name, note in notes.items():
        out.append(f"- {name}: {note}")
    if not meta["warnings"]:
        out.append("- OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: not set")
    for w in meta["warnings"]:
        out.append(f"- WARNING: {w}")
    out.append("")
    systems = [s for s in ("numpy", "onnxruntime", "scipy", "torch", "sparsekit") + tuple(VARIANTS)
               if any(s in r["seconds"] for r in rows)]
    variants = [v for v in VARIANTS if v in systems]
    head = ["shape", "M", "sparsity", "threads", "best dense", "dense ms"] + systems + \
           ["sk vs best sparse peer", "bytes/weight"] + [f"{v} bytes/weight" for v in variants]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for r in rows:
        cells = [r["shape"], str(r["m"]), f"{r['sparsity']:.2f}", str(r["threads"]),
                 r["best_dense"], f"{r['seconds'][r['best_dense']] * 1e3:.3f}"]
        for s in systems:
            v = r["speedup_vs_best_dense"].get(s)
            cell = "-" if v is None else fmt_ratio(v)
            if s.startswith("sparsekit") and v is not None:
                cell = f"**{cell}** ±{r['spread'][s] * 100:.0f}%"
            cells.append(cell)
        peers = r["speedup_vs_peers"]
        cells.append(fmt_ratio(min(peers.values())) if peers else "-")
        cells.append(f"{r['bytes_per_weight']:.3f}")
        for variant in variants:
            v = r.get("variant_bytes_per_weight", {}).get(variant)
            cells.append("-" if v is None else f"{v:.3f}")
        out.append("| " + " | ".join(cells) + " |")
    if scaling:
        out += ["", "### sparsekit, 2 threads vs 1 (interleaved in one run, wall time)", "",
                "On a shared machine the second thread waits for a free core; `best` is "
                "the ratio of the fastest repeats, i.e. what the code does when both "
                "cores are free. The thread backoff is off for this table (2 threads "
                "means 2 threads), and each timed call follows an untimed one at the "
                "same thread count (the worker is awake).", "",
                "| shape | M | sparsity | 1 thread ms | 2 threads ms | speed-up (median) "
                "| speed-up (best) |",
                "|---|---|---|---|---|---|---|"]
        for s in scaling:
            out.append(f"| {s['shape']} | {s['m']} | {s['sparsity']:.2f} | "
                       f"{s['seconds_1'] * 1e3:.3f} | {s['seconds_2'] * 1e3:.3f} | "
                       f"{s['speedup']:.2f}x | {s['speedup_best']:.2f}x |")
    out += ["", "### targets (issue 2)", ""] + [f"- {line}" for line in targets(rows, scaling)]
    return "\n".join(out) + "\n"


def targets(rows, scaling):
    lines = []
    one = [r for r in rows if r["threads"] == 1]
    for m, sp, need in TARGETS_DENSE:
        got = {r["shape"]: r["speedup_vs_best_dense"].get("sparsekit") for r in one
               if r["m"] == m and abs(r["sparsity"] - sp) < 1e-9}
        if got:
            ok = all(v >= need for v in got.values())
            detail = ", ".join(f"{s} {v:.2f}x" for s, v in got.items())
            lines.append(f"M={m}, {sp:.0%} sparse, >= {need}x fastest dense: "
                         f"{'MET' if ok else 'MISSED'} ({detail})")
        for variant, (label, _) in VARIANTS.items():
            got = {r["shape"]: r["speedup_vs_best_dense"][variant] for r in one
                   if r["m"] == m and abs(r["sparsity"] - sp) < 1e-9
                   and variant in r["speedup_vs_best_dense"]}
            if got:
                ok = all(v >= need for v in got.values())
                detail = ", ".join(f"{s} {v:.2f}x" for s, v in got.items())
                lines.append(f"M={m}, {sp:.0%} sparse, >= {need}x fastest dense, with "
                             f"{label}: {'MET' if ok else 'MISSED'} ({detail})")
    m, sp, need = TARGET_PEERS
    got = {(r["shape"], p): v for r in one if r["m"] == m and abs(r["sparsity"] - sp) < 1e-9
           for p, v in r["speedup_vs_peers"].items()}
    if got:
        ok = all(v >= need for v in got.values())
        detail = ", ".join(f"{s}/{p} {v:.2f}x" for (s, p), v in got.items())
        lines.append(f"M={m}, {sp:.0%} sparse, >= {need}x scipy and torch CSR: "
                     f"{'MET' if ok else 'MISSED'} ({detail})")
    big = [s for s in scaling if s["m"] >= 128]
    if big:
        ok = all(s["speedup"] >= TARGET_THREADS for s in big)
        detail = ", ".join(f"{s['shape']} {s['speedup']:.2f}x (best {s['speedup_best']:.2f}x)"
                           for s in big)
        lines.append(f"2 threads vs 1 at M=128 >= {TARGET_THREADS}x (medians): "
                     f"{'MET' if ok else 'MISSED'} ({detail})")
    bpw = [r["bytes_per_weight"] for r in rows
           if r["shape"] == "bert_ffn_up" and abs(r["sparsity"] - 0.9) < 1e-9]
    if bpw:
        lines.append(f"CSRMatrix of 90%-sparse bert_ffn_up <= 0.65 bytes/weight: "
                     f"{'MET' if max(bpw) <= 0.65 else 'MISSED'} ({max(bpw):.3f})")
    return lines


def cpu_name():
    try:
        text = Path("/proc/cpuinfo").read_text()
        fields = dict(line.split(":", 1) for line in text.splitlines()[:30] if ":" in line)
        fam = fields.get("cpu family\t", "").strip()
        model = fields.get("model name\t", platform.processor()).strip()
        return f"{model} (family {fam}), {os.cpu_count()} logical CPUs"
    except OSError:
        return platform.processor() or platform.machine()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="small subset (M in {1,128}, sparsity {0.7,0.9}), under a minute")
    ap.add_argument("--threads", default="1",
                    help="comma-separated thread counts for the main table (default 1)")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shape names")
    ap.add_argument("--m", default=None, help="comma-separated M values")
    ap.add_argument("--sparsity", default=None, help="comma-separated sparsities")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved repeats")
    ap.add_argument("--no-scaling", action="store_true", help="skip the 2-vs-1 thread table")
    ap.add_argument("--out", help="also write the markdown table to this file")
    ap.add_argument("--json", help="also write raw results as JSON to this file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: time 1-thread runs by the calling thread's CPU time, which "
                         "leaves out preemption by other processes on a shared machine "
                         "(every system computes in the calling thread at 1 thread); "
                         "multi-thread runs always use wall time")
    args = ap.parse_args(argv)

    ms = [1, 128] if args.quick else [1, 16, 32, 128]
    sps = [0.7, 0.9] if args.quick else [0.5, 0.7, 0.9, 0.95]
    if args.m:
        ms = [int(v) for v in args.m.split(",")]
    if args.sparsity:
        sps = [float(v) for v in args.sparsity.split(",")]
    repeats = args.repeats or (7 if args.quick else 9)
    target_s = 0.01 if args.quick else 0.02
    threads = [int(v) for v in args.threads.split(",")]
    shapes = args.shapes.split(",")
    for s in shapes:
        if s not in SHAPES:
            ap.error(f"--shapes: unknown shape {s!r}, expected some of {list(SHAPES)}")

    warnings = [f"{v}={os.environ[v]} is set: NumPy's OpenBLAS may not use its best kernels; "
                "run with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`"
                for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ]
    for w in warnings:
        print("warning:", w, file=sys.stderr)
    rng = np.random.default_rng(args.seed)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    notes, rows, scaling = {}, [], []
    for th in threads:
        for shape in shapes:
            for m in ms:
                for sp in sps:
                    row = run_config(shape, m, sp, th, repeats, target_s, rng, notes,
                                     args.clock)
                    rows.append(row)
                    print(f"{shape:14s} M={m:<4d} sparsity={sp:.2f} threads={th}: sparsekit "
                          f"{row['speedup_vs_best_dense']['sparsekit']:.2f}x fastest dense "
                          f"({row['best_dense']})"
                          + "".join(f", {VARIANTS[v][0]} {row['speedup_vs_best_dense'][v]:.2f}x"
                                    for v in VARIANTS if v in row["seconds"]),
                          file=sys.stderr, flush=True)
    if not args.no_scaling and (os.cpu_count() or 1) >= 2:
        for shape in shapes:
            scaling.append(run_scaling(shape, 128, 0.9, repeats, target_s, rng))
    elif not args.no_scaling:
        notes["scaling"] = "skipped: fewer than 2 CPUs"
    for name in MAKERS:
        if not any(name in r["seconds"] for r in rows):
            notes[name] = "SKIPPED: " + notes.get(name, "unavailable")

    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu_name(), "isa": sparsekit.info()["kernels"].get("spmm_f32"),
            "python": platform.python_version(),
            "command": " ".join(["python", "benchmarks/sparse_vs_dense.py"] + sys.argv[1:]),
            "warnings": warnings, "clock": args.clock,
            "load": (load_before, os.getloadavg()[0] if hasattr(os, "getloadavg") else None)}
    md = markdown(rows, scaling, notes, meta)
    print(md)
    if args.out:
        Path(args.out).write_text(md)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"meta": meta, "notes": notes, "rows": rows, "scaling": scaling}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
