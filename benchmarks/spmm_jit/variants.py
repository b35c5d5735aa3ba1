"""A/B of generator variants and ablations for one weight shape (jit only).

    flock /work/wt/bench.lock python benchmarks/spmm_jit/variants.py 3072 768 0.7 \
        64:30:1:1,64:30:1:1:no_y,64:30:1:1:zeroW 16,32,128 9

Variants are rows:kb:prefetch:stream_y[:ablation+ablation], ablations:
no_y (no Y-partial load/add/store: wrong results, timing only), seed (start
each row segment from its partial instead of adding it at the end), zeroW (an
all-zero weight of the same shape: only packing x, zero stores and writing Y).
Thread CPU time, rounds interleaved; ratios are the median per-round ratio to
the first variant.
"""
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from _harness import random_sparse_weight  # noqa: E402
from bench import JitLinear, check  # noqa: E402


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    n, k, sp = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    rounds = int(sys.argv[6]) if len(sys.argv) > 6 else 7
    rng = np.random.default_rng(0)
    d = Path(tempfile.mkdtemp(prefix="spmm_jit_var_"))
    w = random_sparse_weight(rng, n, k, sp)
    js = {}
    for name in sys.argv[4].split(","):
        p = name.split(":")
        rows = p[0] if p[0] == "t" else int(p[0])
        kb, pf, st = map(int, p[1:4])
        ab = tuple(p[4].split("+")) if len(p) > 4 else ()
        ww = np.zeros_like(w) if "zeroW" in ab else w
        ab = tuple(a for a in ab if a != "zeroW")
        tag = "v" + name.replace(":", "_").replace("+", "_")
        js[name] = JitLinear(ww, d, rows, kb, False, tag=tag, prefetch=bool(pf),
                             stream_y=bool(st), ablate=ab)
        if "no_y" not in ab:
            check(js[name], ww, rng)
    ms = [int(v) for v in sys.argv[5].split(",")]
    xs = {m: rng.standard_normal((m, k)).astype(np.float32) for m in ms}
    nnz = np.count_nonzero(w)
    res = {}
    for _ in range(rounds):
        for name, j in js.items():
            for m in ms:
                x = xs[m]
                j(x)
                reps = max(3, int(1e7 / (nnz * m / 16)))
                t0 = time.thread_time()
                for _ in range(reps):
                    j(x)
                res.setdefault((name, m), []).append((time.thread_time() - t0) / reps)
    base = list(js)[0]
    for (name, m), v in res.items():
        s = statistics.median(v)
        rel = statistics.median(a / b for a, b in zip(res[(base, m)], v))
        print(f"{name} M={m}: {s * 1e6:.0f} us (min {min(v) * 1e6:.0f}), "
              f"{nnz * ((m + 15) // 16) / s / 1e9:.2f} G FMA/s, {rel:.3f}x vs {base}")
    for f in d.iterdir():
        f.unlink()
    d.rmdir()


if __name__ == "__main__":
    main()
