"""Go/no-go timing of sparsity-specialised SpMM code (gen.py + harness.c).

    flock /work/wt/bench.lock env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        python benchmarks/spmm_jit/bench.py --sparsity 0.7 --repeats 15

For each shape and sparsity: a random weight as in sparse_vs_dense.py, its
code generated (Python) and assembled + linked (gcc) into a shared library,
loaded with ctypes, checked against a float64 NumPy reference (rel. 1e-4 of
the output's scale), then timed interleaved (1 thread, wall clock, medians of
per-round ratios) against ONNX Runtime MatMul, NumPy, sparsekit.linear on a
CSRMatrix and on CSRMatrix.with_shared_columns(). x is packed and Y written
row-major inside every timed jit call.
"""
import argparse
import ctypes
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from _harness import (interleaved, random_sparse_weight, ratio_median, thread_clock,  # noqa: E402
                      wall_clock)
from gen import generate, generate_t  # noqa: E402
from sparse_vs_dense import SHAPES, make_onnxruntime, shared_csr  # noqa: E402

import sparsekit  # noqa: E402

CFLAGS = ["-O2", "-fPIC", "-mavx512f", "-mavx512vl"]


def aligned(shape, dtype=np.float32, align=64, zero=True):
    n = int(np.prod(shape))
    buf = (np.zeros if zero else np.empty)(n + align, dtype=dtype)
    off = (-buf.ctypes.data % align) // buf.itemsize
    return buf[off:off + n].reshape(shape)


class JitLinear:
    """A weight's generated code as a callable y = x @ w.T."""

    def __init__(self, w, workdir, rows=64, kb=24, interleave=False, tag="w", ablate=(),
                 prefetch=False, stream_y=False):
        self.n, self.k = w.shape
        # rows == "t": gen.generate_t (24 rows in registers per K panel of kb columns)
        self.scheme = "t" if rows == "t" else "b"
        self.rows = self.n if self.scheme == "t" else rows
        if self.scheme == "t":
            text, vals, st = generate_t(w, kb, prefetch)
        else:
            text, vals, st = generate(w, rows, kb, interleave, ablate, prefetch)
        s = workdir / f"{tag}.S"
        s.write_text(text)
        src = "harness2.c" if self.scheme == "t" else "harness.c"
        hobj = workdir / f"{src[:-2]}_{int(stream_y)}.o"
        if not hobj.exists():
            subprocess.run(["gcc", *CFLAGS, *(["-DJIT_STREAM_Y"] if stream_y else []),
                            "-c", str(HERE / src), "-o", str(hobj)], check=True)
        t0 = time.perf_counter()
        obj = workdir / f"{tag}.o"
        subprocess.run(["gcc", "-c", str(s), "-o", str(obj)], check=True)
        st["asm_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        so = workdir / f"{tag}.so"
        subprocess.run(["gcc", "-shared", str(obj), str(hobj), "-o", str(so)], check=True)
        st["link_s"] = time.perf_counter() - t0
        out = subprocess.run(["size", "-A", str(obj)], check=True, capture_output=True,
                             text=True).stdout
        st["code_bytes"] = next(int(l.split()[1]) for l in out.splitlines()
                                if l.startswith(".text"))
        st["asm_mb"] = len(text) / 1e6
        s.unlink()  # tens of MB
        self.lib = ctypes.CDLL(str(so))
        self.lib.jit_linear.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p,
                                        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self.lib.jit_linear.restype = None
        self.vals = aligned(vals.shape)
        self.vals[...] = vals
        self.stats = st
        self._bufs = {}

    def __call__(self, x):
        m = x.shape[0]
        if m not in self._bufs:
            t = (m + 15) // 16
            self._bufs[m] = (aligned((t * 16 * self.k,)), aligned((t * 16 * self.rows,)))
        xp, yt = self._bufs[m]
        y = aligned((m, self.n), zero=False)
        self.lib.jit_linear(x.ctypes.data, m, y.ctypes.data, self.vals.ctypes.data,
                            xp.ctypes.data, yt.ctypes.data)
        return y


def check(jit, w, rng):
    for m in (1, 5, 16, 37, 128):
        x = rng.standard_normal((m, w.shape[1])).astype(np.float32)
        ref = x.astype(np.float64) @ w.T.astype(np.float64)
        got = jit(np.ascontiguousarray(x))
        err = np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30)
        if not err <= 1e-4:
            raise AssertionError(f"jit disagrees with NumPy at M={m}: rel err {err:.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--sparsity", default="0.7")
    ap.add_argument("--m", default="128")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--target-s", type=float, default=0.02)
    ap.add_argument("--variants", default="64:30:1:1",
                    help="comma list of rows:kb:prefetch:stream_y, one jit system each "
                         "(rows per chunk, K block, prefetch next block's code and values, "
                         "non-temporal Y stores); rows 't': gen.generate_t with K panels of kb")
    ap.add_argument("--no-peers", action="store_true", help="jit and ORT only")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: the thread's CPU time (leaves out preemption on a busy machine)")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    sparsekit.set_num_threads(1)
    workdir = Path(tempfile.mkdtemp(prefix="spmm_jit_"))
    for shape in a.shapes.split(","):
        n, k = SHAPES[shape]
        for sp in map(float, a.sparsity.split(",")):
            w = random_sparse_weight(rng, n, k, sp)
            jits = {}
            for v in a.variants.split(","):
                p = v.split(":")
                rows = p[0] if p[0] == "t" else int(p[0])
                kb, pf, sy = map(int, p[1:4])
                j = JitLinear(w, workdir, rows, kb, False, tag=f"{shape}_{sp}_{v.replace(':', '_')}",
                              prefetch=bool(pf), stream_y=bool(sy))
                check(j, w, rng)
                st = j.stats
                print(f"{shape} sparsity {sp} jit {v}: nnz {st['nnz']}, code {st['code_bytes']} B "
                      f"({st['code_bytes'] / st['nnz']:.2f} B/nnz), generate {st['gen_s']:.2f} s "
                      f"(asm text {st['asm_mb']:.0f} MB), assemble {st['asm_s']:.2f} s, "
                      f"link {st['link_s']:.2f} s", flush=True)
                jits[f"jit_{v}"] = j
            for m in map(int, a.m.split(",")):
                x = rng.standard_normal((m, k)).astype(np.float32)
                fns = {name: (lambda j=j: j(x)) for name, j in jits.items()}
                fns["onnxruntime"], _ = make_onnxruntime(w, x, 1)
                if not a.no_peers:
                    fns["numpy"] = lambda: x @ w.T
                    c = sparsekit.CSRMatrix.from_dense(w)
                    fns["sk_csr"] = lambda: sparsekit.linear(x, c)
                    cs = shared_csr(w) if m >= 32 else None
                    if cs is not None:
                        fns["sk_shared"] = lambda: sparsekit.linear(x, cs)
                with threadpool_limits(limits=1):
                    t = interleaved(fns, repeats=a.repeats, target_s=a.target_s,
                                    clock=thread_clock if a.clock == "cpu" else wall_clock)
                ref = "onnxruntime"
                parts = [f"{name} {t[name]['median'] * 1e3:.3f} ms "
                         f"({ratio_median(t, ref, name):.2f}x ORT, spread {t[name]['spread']:.0%}; "
                         f"min {t[name]['min'] * 1e3:.3f} ms, {t[ref]['min'] / t[name]['min']:.2f}x)"
                         for name in fns]
                print(f"  M={m}: " + "; ".join(parts), flush=True)
                nnz = jits[next(iter(jits))].stats["nnz"]
                for name in jits:
                    s = t[name]["median"]
                    fma = nnz * ((m + 15) // 16)
                    print(f"    {name}: {fma / s / 1e9:.2f} G FMA/s "
                          f"({fma / s / 8.5e9:.0%} of 8.5 G/s peak)")
    for f in workdir.iterdir():
        f.unlink()
    workdir.rmdir()


if __name__ == "__main__":
    main()
