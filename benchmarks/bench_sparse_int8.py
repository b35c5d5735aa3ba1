"""Sparse int8 (SparseInt8Matrix, 1x4 blocks) against the dense and sparse
alternatives, in one run, one thread, interleaved repetitions, medians.

    python benchmarks/bench_sparse_int8.py            # full table (about a minute)
    python benchmarks/bench_sparse_int8.py --quick    # 90% only
    python benchmarks/bench_sparse_int8.py --markdown # the table for RESULTS.md

Times are medians over rounds; each ratio is the median of the per-round
ratios (the systems of one round run back to back, so they share the load of
a busy machine). Systems (all limited to 1 thread):
  ort_int8    ONNX Runtime MatMulInteger, u8 x s8 -> int32, dense weight
  ort_fp32    ONNX Runtime MatMul, fp32, dense weight (MLAS)
  sk_csr      sparsekit.linear with CSRMatrix (sparse fp32)
  sk_qdense   sparsekit.int8_matmul with QuantizedMatrix (dense int8), when built
  sp_i32      SparseInt8Matrix.int8_matmul: u8 x s8 -> exact int32 (like ort_int8)
  sp_lin      sparsekit.linear with SparseInt8Matrix: fp32 in, per-row dynamic
              quantization, fp32 out (does more than ort_int8: quantize + dequant)
Patterns: "unstructured" (each weight kept with probability 1 - sparsity) and
"1x4" (blocks of 4 consecutive K of one output row kept or dropped together).
"""
import argparse
import os
import sys
import time

import numpy as np

os.environ.pop("OPENBLAS_CORETYPE", None)
os.environ.pop("OPENBLAS_L2_SIZE", None)

import sparsekit  # noqa: E402
from sparsekit import CSRMatrix, SparseInt8Matrix  # noqa: E402

SHAPES = {"bert_ffn_up": (3072, 768), "bert_ffn_down": (768, 3072),
          "minilm_ffn_up": (1536, 384)}
SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)


def ort_session(graph_fn):
    import onnxruntime as ort

    from sparsekit.bench.systems import ort_session_options

    return ort.InferenceSession(graph_fn().SerializeToString(), ort_session_options(1),
                                providers=["CPUExecutionProvider"])


def ort_matmul_integer(q):
    """x u8 [M, K] (+ scalar u8 zero point) @ q.T s8 -> int32 [M, N]."""
    from onnx import TensorProto, helper, numpy_helper

    n, k = q.shape

    def graph():
        g = helper.make_graph(
            [helper.make_node("MatMulInteger", ["x", "B", "zp"], ["y"])], "mmi",
            [helper.make_tensor_value_info("x", TensorProto.UINT8, [None, k]),
             helper.make_tensor_value_info("zp", TensorProto.UINT8, [])],
            [helper.make_tensor_value_info("y", TensorProto.INT32, [None, n])],
            [numpy_helper.from_array(np.ascontiguousarray(q.T), "B")])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])

    sess = ort_session(graph)
    zps = {z: np.array(z, dtype=np.uint8) for z in range(256)}
    return lambda xq, zp: sess.run(None, {"x": xq, "zp": zps[zp]})[0]


def ort_matmul_f32(w):
    from onnx import TensorProto, helper, numpy_helper

    n, k = w.shape

    def graph():
        g = helper.make_graph(
            [helper.make_node("MatMul", ["x", "B"], ["y"])], "mm",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
            [numpy_helper.from_array(np.ascontiguousarray(w.T), "B")])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])

    sess = ort_session(graph)
    return lambda x: sess.run(None, {"x": x})[0]


def pruned_weight(rng, n, k, sparsity, pattern):
    w = rng.standard_normal((n, k)).astype(np.float32)
    if pattern == "unstructured":
        keep = rng.random((n, k)) >= sparsity
    elif pattern == "1x4":
        keep = np.repeat(rng.random((n, (k + 3) // 4)) >= sparsity, 4, axis=1)[:, :k]
    else:
        raise ValueError(f"pattern: {pattern!r}")
    return np.where(keep, w, 0).astype(np.float32)


def timed(fn, reps):
    """Median seconds of `reps` calls, each timed alone (a generator so the
    caller can interleave systems)."""
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        yield time.perf_counter() - t0


def measure(systems, reps, inner):
    """Interleave: each round runs every system `inner` times; medians per call."""
    times = {name: [] for name in systems}
    for fn in systems.values():  # warm up
        fn()
    for _ in range(reps):
        for name, fn in systems.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t0) / inner)
    return {name: np.array(v) for name, v in times.items()}


def quantized_dense(wf):
    qm = getattr(sparsekit, "QuantizedMatrix", None)
    if qm is None or not hasattr(sparsekit, "int8_matmul"):
        return None
    return qm.from_float(wf)


def run_case(rng, shape_name, m, sparsity, pattern, reps):
    n, k = SHAPES[shape_name]
    wf = pruned_weight(rng, n, k, sparsity, pattern)
    sp = SparseInt8Matrix.from_float(wf)
    csr = CSRMatrix.from_dense(wf)
    x = rng.standard_normal((m, k)).astype(np.float32)
    xq, _, _ = sparsekit.quantize_rows(x)
    zp = 128
    ort_i8 = ort_matmul_integer(sp.q)
    ort_f32 = ort_matmul_f32(wf)
    # the exact path must agree with ORT before we time it
    np.testing.assert_array_equal(sp.int8_matmul(xq, zp), ort_i8(xq, zp))
    systems = {
        "ort_int8": lambda: ort_i8(xq, zp),
        "ort_fp32": lambda: ort_f32(x),
        "sk_csr": lambda: sparsekit.linear(x, csr),
        "sp_i32": lambda: sp.int8_matmul(xq, zp),
        "sp_lin": lambda: sparsekit.linear(x, sp),
    }
    qd = quantized_dense(wf)
    if qd is not None:
        systems["sk_qdense"] = lambda: sparsekit.int8_matmul(xq, zp, qd)
    inner = 20 if m == 1 else 3
    t = measure(systems, reps, inner)
    return {"shape": shape_name, "m": m, "sparsity": sparsity, "pattern": pattern,
            "block_fill": sp.block_fill, "bytes_per_weight": sp.bytes_per_weight,
            "times": {name: float(STAT(v)) for name, v in t.items()},
            # median: ratios round by round (systems of one round share the machine's
            # load); min: ratio of the fastest rounds (the least disturbed)
            "ratios": {(a, b): float(np.median(t[a] / t[b]) if STAT is np.median
                                     else np.min(t[a]) / np.min(t[b]))
                       for a in t for b in t}}


STAT = np.median
COLUMNS = ("ort_int8", "ort_fp32", "sk_csr", "sk_qdense", "sp_i32", "sp_lin")


def format_rows(rows, markdown):
    head = ["shape", "M", "sparsity", "pattern", "fill", "B/w"] + \
           [f"{c} us" for c in COLUMNS] + \
           ["ort_int8/sp_i32", "ort_int8/sp_lin", "qdense/sp_i32", "csr/sp_lin"]
    out = []
    if markdown:
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
    else:
        out.append("  ".join(f"{h:>10}" for h in head))
    for r in rows:
        t = r["times"]
        us = [f"{t[c] * 1e6:.1f}" if c in t else "-" for c in COLUMNS]

        def ratio(a, b):
            return f"{r['ratios'][a, b]:.2f}" if a in t and b in t else "-"

        cells = [r["shape"], str(r["m"]), f"{r['sparsity']:.2f}", r["pattern"],
                 f"{r['block_fill']:.2f}", f"{r['bytes_per_weight']:.3f}"] + us + \
                [ratio("ort_int8", "sp_i32"), ratio("ort_int8", "sp_lin"),
                 ratio("sk_qdense", "sp_i32"), ratio("sk_csr", "sp_lin")]
        if markdown:
            out.append("| " + " | ".join(cells) + " |")
        else:
            out.append("  ".join(f"{c:>10}" for c in cells))
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="90%% sparsity only")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--shape", default="bert_ffn_up", choices=sorted(SHAPES))
    ap.add_argument("--reps", type=int, default=25)
    ap.add_argument("--stat", default="median", choices=("median", "min"),
                    help="median (default), or min: the fastest round, for a machine "
                         "shared with other jobs")
    args = ap.parse_args(argv)
    global STAT
    STAT = np.median if args.stat == "median" else np.min
    from threadpoolctl import threadpool_limits

    sparsekit.set_num_threads(1)
    rng = np.random.default_rng(0)
    sparsities = (0.9,) if args.quick else SPARSITIES
    rows = []
    with threadpool_limits(1):
        for m in (128, 1):
            for pattern in ("unstructured", "1x4"):
                for s in sparsities:
                    rows.append(run_case(rng, args.shape, m, s, pattern, args.reps))
                    print(format_rows(rows[-1:], False).splitlines()[-1], file=sys.stderr)
    info = sparsekit.info()
    print(f"# {info['cpu']}; sparsekit {info['version']}; spmm_u8s8 isa "
          f"{info['kernels'].get('spmm_u8s8')}; 1 thread; {args.reps} interleaved rounds; "
          + ("times are medians, ratios medians of per-round ratios" if args.stat == "median"
             else "times are the fastest round, ratios of those"))
    print(format_rows(rows, args.markdown))
    return rows


if __name__ == "__main__":
    main()
