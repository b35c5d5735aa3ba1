"""Two builds of the C core side by side in one process: sk_linear_csr_f32
(`csr`) and with the shared-column layout (`shared`) on the same random
weight, interleaved rounds (the order flips every round), each result checked
against a float64 reference; prints per-build medians and minima (us) and
their ratios A/B (> 1: B is faster). 1 thread unless --threads.

    mkdir /tmp/a && git archive HEAD kernels | tar -x -C /tmp/a
    (cd /tmp/a && git apply $OLDPWD/benchmarks/spmm_ab/prefetch_next_block.patch)
    benchmarks/spmm_ab/build_so.sh /tmp/a/kernels /tmp/off.so -DSK_SPMM_PF=0
    benchmarks/spmm_ab/build_so.sh /tmp/a/kernels /tmp/t1.so -DSK_SPMM_PF=1
    flock /work/wt/bench.lock env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        python benchmarks/spmm_ab/ab.py /tmp/off.so /tmp/t1.so --rounds 15 --calls 20

The two paths must differ (dlopen returns the same handle for one path).
Knobs of the patch (all compile-time): SK_SPMM_PF 0 off / 1 prefetcht1 /
2 prefetcht0 / 3 prefetchnta; SK_SPMM_PF_CSR, SK_SPMM_PF_SHARED (which
kernels); SK_SPMM_PF_FRONT (first panel only); SK_SPMM_PF_DIST (blocks ahead);
SK_SPMM_PF_STARTS (only each next row's / group's first line);
SK_SPMM_PF_SCALE=0 (bookkeeping, no prefetch); SK_SPMM_PF_WRAP=2048 (the same
prefetch count, all within the first 2 KiB of each range).
"""
import argparse
import ctypes
import time

import numpy as np
import scipy.sparse as sp


class CSR(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int64), ("k", ctypes.c_int64), ("indptr", ctypes.c_void_p),
                ("indices", ctypes.c_void_p), ("index_bytes", ctypes.c_int), ("values", ctypes.c_void_p)]

def load(path):
    L = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
    L.sk_csr_f32_shared_build.restype = ctypes.c_void_p
    L.sk_csr_f32_shared_build.argtypes = [ctypes.POINTER(CSR), ctypes.c_int]
    L.sk_linear_csr_f32_shared.argtypes = [ctypes.POINTER(CSR), ctypes.c_void_p, ctypes.c_int64,
        ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int64]
    return L

# up_384 / down_96: 1/8 of the BERT weights (fit in L2), for the "W from L3" bound
SHAPES = {"up_384": (384, 768), "down_96": (96, 3072), "bert_ffn_up": (3072, 768), "bert_ffn_down": (768, 3072), "minilm_ffn_up": (1536, 384)}
ap = argparse.ArgumentParser()
ap.add_argument("libs", nargs=2)
ap.add_argument("--shapes", default="bert_ffn_up,bert_ffn_down,minilm_ffn_up")
ap.add_argument("--sparsity", default="0.7,0.9")
ap.add_argument("--m", default="128")
ap.add_argument("--rounds", type=int, default=7)
ap.add_argument("--calls", type=int, default=20)
ap.add_argument("--layouts", default="csr,shared")
ap.add_argument("--threads", type=int, default=1)
a = ap.parse_args()
libs = [load(p) for p in a.libs]
for L in libs:
    L.sk_set_num_threads(a.threads)
    L.sk_set_thread_backoff(0)  # a busy machine would otherwise drop to 1 thread
rng = np.random.default_rng(0)
print(f"{'shape':14} {'sp':>4} {'M':>4} {'lay':6} {'A med':>8} {'B med':>8} {'A/B med':>7} {'A min':>8} {'B min':>8} {'A/B min':>7}")
for name in a.shapes.split(","):
    N, K = SHAPES[name]
    for s in map(float, a.sparsity.split(",")):
        w = sp.random(N, K, density=1 - s, format="csr", random_state=1, dtype=np.float32)
        w.sort_indices()
        indptr = w.indptr.astype(np.int64); idx = w.indices.astype(np.uint16); val = w.data.astype(np.float32)
        csr = CSR(N, K, indptr.ctypes.data, idx.ctypes.data, 2, val.ctypes.data)
        for M in map(int, a.m.split(",")):
            x = rng.standard_normal((M, K)).astype(np.float32)
            ref = (x.astype(np.float64) @ w.toarray().T.astype(np.float64))
            for lay in a.layouts.split(","):
                lays = [L.sk_csr_f32_shared_build(ctypes.byref(csr), 0) if lay == "shared" else None for L in libs]
                if lay == "shared" and lays[0] is None: continue
                ys = []  # 64-byte aligned, as sparsekit allocates Y (streamed write-out)
                for _ in libs:
                    raw = np.zeros(M * N + 16, np.float32)
                    off = (-raw.ctypes.data % 64) // 4
                    ys.append(raw[off:off + M * N].reshape(M, N))
                def call(i):
                    r = libs[i].sk_linear_csr_f32_shared(ctypes.byref(csr), lays[i], M, x.ctypes.data, K, None, 0, ys[i].ctypes.data, N)
                    assert r == 0
                for i in range(2):
                    call(i); err = np.abs(ys[i] - ref).max() / max(np.abs(ref).max(), 1e-30); assert err < 1e-5, err
                t = [[], []]
                for r in range(a.rounds):
                    for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                        call(i)
                        for _ in range(a.calls):
                            t0 = time.perf_counter(); call(i); t[i].append(time.perf_counter() - t0)
                md = [np.median(v) * 1e6 for v in t]; mn = [np.min(v) * 1e6 for v in t]
                print(f"{name:14} {s:4.2f} {M:4d} {lay:6} {md[0]:8.1f} {md[1]:8.1f} {md[0]/md[1]:7.3f} {mn[0]:8.1f} {mn[1]:8.1f} {mn[0]/mn[1]:7.3f}", flush=True)
                for i, L in enumerate(libs):
                    if lays[i]: L.sk_csr_f32_shared_free(ctypes.c_void_p(lays[i]))
