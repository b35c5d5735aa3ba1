"""Int8 GEMM benchmark: sparsekit vs ONNX Runtime, torch and dense fp32.

    python benchmarks/bench_int8.py [--repeats 9] [--markdown]

One run measures everything, interleaved (each repeat times every system once,
in rotating order) so that the shared machine's drift hits all of them alike;
figures are medians over the repeats, ratios are between medians of this run.

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
Plus the vpdpbusd peak of this core (24 independent zmm chains, best of 5)
so the int8 GEMMs are also shown as % of peak.
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


def interleaved(fns, repeats, target_s=0.02):
    """name -> median seconds per call, every repeat running each fn in turn."""
    inner = {k: _inner_count(f, target_s) for k, f in fns.items()}
    names, samples = list(fns), {k: [] for k in fns}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            f, n = fns[name], inner[name]
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            samples[name].append((time.perf_counter() - t0) / n)
    return {k: statistics.median(v) for k, v in samples.items()}


def vnni_peak_gops():
    iters = 2_000_000
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        _core.vnni_peak_loop(iters)
        best = max(best, iters * 24 * 64 * 2 / (time.perf_counter() - t0) / 1e9)
    return best


# ---- the other systems ----------------------------------------------------------
def _ort_session(model, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model if isinstance(model, str) else model.SerializeToString(),
                                so, providers=["CPUExecutionProvider"])


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
            scal = interleaved({
                "sk.int8_matmul x1": lambda: sparsekit.int8_matmul(xq, 3, qw),
                "sk.int8_matmul x2": two(lambda: sparsekit.int8_matmul(xq, 3, qw)),
                "sk.linear x1": lambda: sparsekit.linear(x, qw, b),
                "sk.linear x2": two(lambda: sparsekit.linear(x, qw, b)),
                "ort.MatMulInteger x1": lambda: ort_mmi[1].run(None, {"A": xq}),
                "ort.MatMulInteger x2": lambda: ort_mmi[2].run(None, {"A": xq}),
            }, repeats)
        else:
            scal = {}
        rows.append((name, n, k, m, t1, scal))
    return rows


def report(rows, peak, markdown):
    out = []
    p = out.append
    for name, n, k, m, t, scal in rows:
        ops = 2.0 * m * n * k
        p(f"\n### {name}  N={n} K={k}  M={m}  (1 thread, median us; GOP/s; % of vpdpbusd peak)")
        p("| system | us | GOP/s | % peak |")
        p("|---|---:|---:|---:|")
        for sysname, sec in t.items():
            g = ops / sec / 1e9
            p(f"| {sysname} | {sec * 1e6:.1f} | {g:.0f} | {100 * g / peak:.0f}% |")
        mm = t["sk.int8_matmul"]
        lin = t["sk.linear"]
        p("")
        p(f"- int8_matmul vs ORT MatMulInteger: **{t['ort.MatMulInteger'] / mm:.2f}x**")
        if m == 1:
            best = min(t["ort.MatMulInteger"], t["torch._int_mm"])
            p(f"- int8_matmul vs faster of torch._int_mm / ORT MatMulInteger: "
              f"**{best / mm:.2f}x** (target >= 1.0)")
        else:
            p(f"- int8_matmul vs torch._int_mm: {t['torch._int_mm'] / mm:.2f}x")
        p(f"- linear vs ORT dynamic-quantized MatMul: **{t['ort.dyn_quant'] / lin:.2f}x**"
          + (" (target >= 1.0)" if m == 128 else ""))
        p(f"- linear vs torch dynamic quantized Linear: **{t['torch.dyn_quant'] / lin:.2f}x**"
          + (" (target >= 1.15)" if m == 128 else ""))
        p(f"- linear vs dense fp32 (ORT MLAS): {t['ort.fp32'] / lin:.2f}x, "
          f"(NumPy BLAS): {t['np.fp32'] / lin:.2f}x")
        if scal:
            p(f"- 2 threads vs 1: int8_matmul "
              f"**{scal['sk.int8_matmul x1'] / scal['sk.int8_matmul x2']:.2f}x**, linear "
              f"**{scal['sk.linear x1'] / scal['sk.linear x2']:.2f}x** (target >= 1.8); "
              f"ORT MatMulInteger {scal['ort.MatMulInteger x1'] / scal['ort.MatMulInteger x2']:.2f}x")
    text = "\n".join(out)
    if not markdown:
        text = text.replace("**", "")
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    import onnxruntime
    import torch

    info = sparsekit.info()
    print(f"CPU: {info['cpu']}; sparsekit {info['version']} qgemm_u8s8="
          f"{info['kernels']['qgemm_u8s8']}; onnxruntime {onnxruntime.__version__}; "
          f"torch {torch.__version__}; numpy {np.__version__}; python {platform.python_version()}")
    peak = vnni_peak_gops()
    print(f"vpdpbusd peak (1 core, 24 zmm chains, best of 5): {peak:.0f} GOP/s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.shapes.split(","):
            n, k = SHAPES[name]
            rows += bench_shape(name, n, k, args.repeats, peak, tmp)
            print(report(rows[-2:], peak, args.markdown), flush=True)


if __name__ == "__main__":
    main()
