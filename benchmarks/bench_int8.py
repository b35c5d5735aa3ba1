"""Int8 GEMM benchmark: sparsekit vs ONNX Runtime, torch and dense fp32.

    python benchmarks/bench_int8.py [--repeats 21] [--shapes a,b] [--markdown]
    python benchmarks/bench_int8.py --scaling-only     # threads, sparsekit alone

One run measures everything, interleaved (each repeat times every system once,
in rotating order) so that the shared machine's drift hits all of them alike;
figures are medians over the repeats, ratios are between medians of this run.
Each sample records wall time and this thread's CPU time: on a machine shared
with other jobs the 1-thread CPU-time ratios are the steadier ones (every
1-thread system here computes on the calling thread); thread scaling can only
be judged in wall time.

Systems (1 thread each unless said; all weights prepared/packed up front):
  int8 exact GEMM, int32 out
    sk.int8_matmul      sparsekit.int8_matmul(xq u8, zp, QuantizedMatrix)
    ort.MatMulInteger   ONNX Runtime MatMulInteger, B a constant initializer
    torch._int_mm       torch._int_mm (s8 x s8 -> s32)
  fp32 in / fp32 out, dynamic per-call activation quantization, + bias
    sk.linear           sparsekit.linear(x, QuantizedMatrix, bias)
    ort.dyn_quant       ORT quantize_dynamic'd MatMul+Add model (QInt8 weights)
    torch.dyn_quant     torch dynamic quantized nn.Linear (fbgemm engine)
    ort.fp32 / np.fp32  dense fp32 MatMul+Add in ONNX Runtime (MLAS) / NumPy BLAS
Plus the vpdpbusd peak of this core (24 independent zmm chains, best of 20)
so the int8 GEMMs are also shown as % of peak (left out on a CPU without
AVX-512 VNNI, where the qgemm runs another ISA's kernel).
"""
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import sparsekit  # noqa: E402
from sparsekit import _core  # noqa: E402

SHAPES = {  # name: (N, K) = (out, in)
    "bert_ffn_up": (3072, 768),
    "bert_ffn_down": (768, 3072),
    "minilm_ffn_up": (1536, 384),
}


# ---- timing -------------------------------------------------------------------
def _inner_count(fn, target_s):
    fn()
    n, t = 1, 0.0
    while n < 100_000:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
        if t >= target_s / 4:
            break
        n *= 4
    return max(1, int(n * target_s / max(t, 1e-9)))


def interleaved(fns, repeats, target_s=0.005):
    """Every repeat runs each fn (a calibrated batch of calls) in turn, in
    rotating order. Returns name -> {"wall", "cpu", "wall_min"}: median wall
    seconds per call, median CPU seconds of this thread per call (time the OS
    gave to other processes excluded: a fairer 1-thread figure on a shared
    machine), and the best wall sample."""
    inner = {k: _inner_count(f, target_s) for k, f in fns.items()}
    names = list(fns)
    wall, cpu = {k: [] for k in fns}, {k: [] for k in fns}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            f, n = fns[name], inner[name]
            c0, t0 = time.thread_time(), time.perf_counter()
            for _ in range(n):
                f()
            wall[name].append((time.perf_counter() - t0) / n)
            cpu[name].append((time.thread_time() - c0) / n)
    return {k: {"wall": statistics.median(wall[k]), "cpu": statistics.median(cpu[k]),
                "wall_min": min(wall[k])} for k in fns}


def vnni_peak_gops():
    """GOP/s of the vpdpbusd peak loop, or None without AVX-512 VNNI."""
    if not sparsekit.info()["cpu_features"]["avx512vnni"]:
        return None
    iters = 500_000
    best = 0.0
    for _ in range(20):
        t0 = time.perf_counter()
        _core.vnni_peak_loop(iters)
        best = max(best, iters * 24 * 64 * 2 / (time.perf_counter() - t0) / 1e9)
    return best


# ---- the other systems ----------------------------------------------------------
def _ort_session(model, threads):
    import onnxruntime as ort

    from sparsekit.bench.systems import ort_session_options

    return ort.InferenceSession(model if isinstance(model, str) else model.SerializeToString(),
                                ort_session_options(threads),
                                providers=["CPUExecutionProvider"])


def _model(nodes, inputs, outputs, inits):
    from onnx import helper

    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def ort_matmul_integer(q, zp, threads):
    """MatMulInteger with B = q.T (int8 [K, N]) constant, A u8 with a scalar zp."""
    from onnx import TensorProto, helper, numpy_helper

    n, k = q.shape
    m = _model([helper.make_node("MatMulInteger", ["A", "B", "az"], ["Y"])],
               [helper.make_tensor_value_info("A", TensorProto.UINT8, ["M", k])],
               [helper.make_tensor_value_info("Y", TensorProto.INT32, ["M", n])],
               [numpy_helper.from_array(np.ascontiguousarray(q.T), "B"),
                numpy_helper.from_array(np.array(zp, np.uint8), "az")])
    return _ort_session(m, threads)


def ort_fp32_linear(w, b, threads):
    from onnx import TensorProto, helper, numpy_helper

    n, k = w.shape
    m = _model([helper.make_node("MatMul", ["X", "W"], ["T"]),
                helper.make_node("Add", ["T", "b"], ["Y"])],
               [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["M", k])],
               [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
               [numpy_helper.from_array(np.ascontiguousarray(w.T), "W"),
                numpy_helper.from_array(b, "b")])
    return m


def ort_dynamic_quant_linear(w, b, threads, tmpdir):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = os.path.join(tmpdir, f"fp32_{w.shape[0]}x{w.shape[1]}.onnx")
    dst = src.replace("fp32_", "dq_")
    onnx.save(ort_fp32_linear(w, b, threads), src)
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True)
    return _ort_session(dst, threads)


def torch_dynamic_linear(w, b):
    import torch

    torch.backends.quantized.engine = "fbgemm"
    lin = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
        lin.bias.copy_(torch.from_numpy(b))
    return torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin),
                                                  {torch.nn.Linear}, dtype=torch.qint8)


# ---- the benchmark ---------------------------------------------------------------
def bench_shape(name, n, k, repeats, peak, tmpdir):
    import torch
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32) * 0.1
    qw = sparsekit.QuantizedMatrix.from_float(w)
    q = qw.q
    qt = torch.from_numpy(np.ascontiguousarray(q.T))
    tdq = torch_dynamic_linear(w, b)
    ort_mmi = {t: ort_matmul_integer(q, 3, t) for t in (1, 2)}
    ort_dq = {t: ort_dynamic_quant_linear(w, b, t, tmpdir) for t in (1, 2)}
    ort_f32 = _ort_session(ort_fp32_linear(w, b, 1), 1)
    rows = []
    for m in (128, 1):
        x = rng.standard_normal((m, k)).astype(np.float32)
        xq = rng.integers(0, 256, (m, k)).astype(np.uint8)
        xs8 = torch.from_numpy((xq.astype(np.int16) - 128).astype(np.int8))
        xt = torch.from_numpy(x)
        sparsekit.set_num_threads(1)
        torch.set_num_threads(1)
        fns = {
            "sk.int8_matmul": lambda: sparsekit.int8_matmul(xq, 3, qw),
            "ort.MatMulInteger": lambda: ort_mmi[1].run(None, {"A": xq}),
            "torch._int_mm": lambda: torch._int_mm(xs8, qt),
            "sk.linear": lambda: sparsekit.linear(x, qw, b),
            "ort.dyn_quant": lambda: ort_dq[1].run(None, {"X": x}),
            "torch.dyn_quant": lambda: tdq(xt),
            "ort.fp32": lambda: ort_f32.run(None, {"X": x}),
            "np.fp32": lambda: x @ w.T + b,
        }
        with threadpool_limits(1):
            t1 = interleaved(fns, repeats)
        if m == 128:  # thread scaling, measured in its own interleaved set
            def two(fn):
                def run():
                    sparsekit.set_num_threads(2)
                    try:
                        fn()
                    finally:
                        sparsekit.set_num_threads(1)
                return run
            # each library in its own interleaved set: a thread pool that
            # spins after its calls (ORT's does) would steal the second core
            # from the other library's workers and measure the contention
            scal = interleaved({
                "sk.int8_matmul x1": lambda: sparsekit.int8_matmul(xq, 3, qw),
                "sk.int8_matmul x2": two(lambda: sparsekit.int8_matmul(xq, 3, qw)),
                "sk.linear x1": lambda: sparsekit.linear(x, qw, b),
                "sk.linear x2": two(lambda: sparsekit.linear(x, qw, b)),
            }, repeats)
            scal.update(interleaved({
                "ort.MatMulInteger x1": lambda: ort_mmi[1].run(None, {"A": xq}),
                "ort.MatMulInteger x2": lambda: ort_mmi[2].run(None, {"A": xq}),
            }, repeats))
        else:
            scal = {}
        rows.append((name, n, k, m, t1, scal))
    return rows


def report(rows, peak, markdown):
    out = []
    p = out.append

    def ratio(t, a, b, what):  # how many times faster b is than a
        return f"**{t[a][what] / t[b][what]:.2f}x**"

    def both(t, a, b):
        return f"{ratio(t, a, b, 'wall')} wall, {ratio(t, a, b, 'cpu')} cpu"

    for name, n, k, m, t, scal in rows:
        ops = 2.0 * m * n * k
        p(f"\n### {name}  N={n} K={k}  M={m}  (1 thread; medians)")
        p("| system | wall us | cpu us | GOP/s (cpu) | % of vpdpbusd peak (cpu) |")
        p("|---|---:|---:|---:|---:|")
        for sysname, v in t.items():
            g = ops / v["cpu"] / 1e9
            pct = f"{100 * g / peak:.0f}%" if peak else "-"
            p(f"| {sysname} | {v['wall'] * 1e6:.1f} | {v['cpu'] * 1e6:.1f} | {g:.0f} | {pct} |")
        p("")
        p(f"- int8_matmul vs ORT MatMulInteger: "
          f"{both(t, 'ort.MatMulInteger', 'sk.int8_matmul')}")
        if m == 1:
            faster = min(("ort.MatMulInteger", "torch._int_mm"), key=lambda s: t[s]["wall"])
            p(f"- int8_matmul vs the faster of torch._int_mm / ORT MatMulInteger ({faster}): "
              f"{both(t, faster, 'sk.int8_matmul')} (target >= 1.0)")
        else:
            p(f"- int8_matmul vs torch._int_mm: {both(t, 'torch._int_mm', 'sk.int8_matmul')}")
        tgt = m == 128
        p(f"- linear vs ORT dynamic-quantized MatMul: {both(t, 'ort.dyn_quant', 'sk.linear')}"
          + (" (target >= 1.0)" if tgt else ""))
        p(f"- linear vs torch dynamic quantized Linear: "
          f"{both(t, 'torch.dyn_quant', 'sk.linear')}" + (" (target >= 1.15)" if tgt else ""))
        p(f"- linear vs dense fp32: ORT MLAS {both(t, 'ort.fp32', 'sk.linear')}; "
          f"NumPy BLAS {both(t, 'np.fp32', 'sk.linear')}")
        if scal:
            def r(a, what):
                return scal[a + " x1"][what] / scal[a + " x2"][what]
            p(f"- 2 threads vs 1, wall (ratio of medians; of best samples): int8_matmul "
              f"**{r('sk.int8_matmul', 'wall'):.2f}x**; {r('sk.int8_matmul', 'wall_min'):.2f}x, "
              f"linear **{r('sk.linear', 'wall'):.2f}x**; {r('sk.linear', 'wall_min'):.2f}x "
              f"(target >= 1.8); ORT MatMulInteger {r('ort.MatMulInteger', 'wall'):.2f}x; "
              f"{r('ort.MatMulInteger', 'wall_min'):.2f}x")
    text = "\n".join(out)
    if not markdown:
        text = text.replace("**", "")
    return text


def scaling_only(shapes, repeats):
    """sparsekit alone (no torch / ONNX Runtime in the process, so no other
    thread pool competes for the second core): 2 threads vs 1 at M = 128."""
    rng = np.random.default_rng(0)
    lines = ["| shape | int8_matmul x1 us | x2 us | ratio (medians) | ratio (best) | "
             "linear x1 us | x2 us | ratio (medians) | ratio (best) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in shapes:
        n, k = SHAPES[name]
        w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        qw = sparsekit.QuantizedMatrix.from_float(w)
        x = rng.standard_normal((128, k)).astype(np.float32)
        xq = rng.integers(0, 256, (128, k)).astype(np.uint8)

        def with_threads(t, fn):
            def run():
                sparsekit.set_num_threads(t)
                fn()
            return run
        mm = lambda: sparsekit.int8_matmul(xq, 3, qw)  # noqa: E731
        lin = lambda: sparsekit.linear(x, qw, b)  # noqa: E731
        t = interleaved({"mm1": with_threads(1, mm), "mm2": with_threads(2, mm),
                         "lin1": with_threads(1, lin), "lin2": with_threads(2, lin)}, repeats)
        cell = []
        for a in ("mm", "lin"):
            one, two = t[a + "1"], t[a + "2"]
            cell.append(f"{one['wall'] * 1e6:.0f} | {two['wall'] * 1e6:.0f} | "
                        f"**{one['wall'] / two['wall']:.2f}x** | "
                        f"{one['wall_min'] / two['wall_min']:.2f}x")
        lines.append(f"| {name} | " + " | ".join(cell) + " |")
    sparsekit.set_num_threads(1)
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--scaling-only", action="store_true",
                    help="only 2 threads vs 1, sparsekit alone in the process")
    args = ap.parse_args()
    if args.scaling_only:
        print(f"CPU: {sparsekit.info()['cpu']}; 2 threads vs 1 at M=128, wall medians")
        print(scaling_only(args.shapes.split(","), args.repeats))
        return
    import onnxruntime
    import torch

    info = sparsekit.info()
    print(f"CPU: {info['cpu']}; sparsekit {info['version']} qgemm_u8s8="
          f"{info['kernels']['qgemm_u8s8']}; onnxruntime {onnxruntime.__version__}; "
          f"torch {torch.__version__}; numpy {np.__version__}; python {platform.python_version()}")
    peak = vnni_peak_gops()
    print("vpdpbusd peak (1 core, 24 zmm chains, best of 20): "
          + (f"{peak:.0f} GOP/s" if peak else "- (no avx512vnni on this CPU)"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.shapes.split(","):
            n, k = SHAPES[name]
            rows += bench_shape(name, n, k, args.repeats, peak, tmp)
            print(report(rows[-2:], peak, args.markdown), flush=True)


if __name__ == "__main__":
    main()
