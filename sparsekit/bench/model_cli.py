"""Arguments of `sparsekit bench-model`; the work is in model.py."""
import argparse

from sparsekit.bench.cli import _arg, _positive_int, _sparsity
from sparsekit.bench.cli import _positive as _seconds  # noqa: F401  (seconds > 0)

MODELS = ("digits", "minilm")


def _batch_list(text):
    try:
        vals = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}")
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive batch sizes, got {text!r}")
    return vals


# the same argument checks as `sparsekit bench`
_fraction = _arg(_sparsity)
_positive = _arg(_positive_int)


def add_bench_model(sub):
    p = sub.add_parser(
        "bench-model", help="a whole model before and after compression",
        description="Latency, throughput, size on disk and accuracy (or cosine to the "
                    "uncompressed model) of a model before and after compression, on "
                    "sparsekit and on the installed peers.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", choices=MODELS,
                     help="digits: an MLP trained on scikit-learn's digits, pruned by "
                          "magnitude and fine-tuned; minilm: all-MiniLM-L6-v2 (offline)")
    src.add_argument("--torch", metavar="FILE|MODULE:FACTORY",
                     help="a torch.nn.Module saved with torch.save(model), or an importable "
                          "factory returning one (needs --input-shape)")
    src.add_argument("--onnx", metavar="FILE", help="an ONNX model (needs sparsekit.onnx)")
    src.add_argument("--sparsekit", metavar="FILE",
                     help="a saved sparsekit model (needs sparsekit.load)")
    p.add_argument("--sparsity", type=_fraction,
                   help="magnitude pruning per layer (digits default 0.9; minilm default 0: "
                        "pruning without retraining hurts MiniLM)")
    p.add_argument("--batch", type=_batch_list, metavar="B,...",
                   help="batch sizes for latency/throughput (default 1,256 digits; 1,32 minilm)")
    p.add_argument("--input-shape", metavar="D1,D2,...",
                   help="per-sample input shape for --torch, and for --onnx/--sparsekit "
                        "when the file does not say (e.g. 64 or 3,32,32)")
    p.add_argument("--epochs", type=_positive, default=20,
                   help="digits: training epochs, and again for fine-tuning after pruning")
    p.add_argument("--hidden", type=_positive, default=512,
                   help="digits: width of the two hidden layers")
    p.add_argument("--threads", type=_positive, default=1, help="threads for every system")
    p.add_argument("--repeat", type=_positive, default=9, help="interleaved rounds")
    p.add_argument("--min-time", type=_seconds, default=0.02, metavar="SECONDS",
                   help="shortest timing sample; fast calls repeat to fill it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="DIR", help="write DIR/model.md and DIR/model.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_bench_model, parser=p)
    return p


def _cmd_bench_model(args):
    from sparsekit.bench.model import UsageError, run_bench_model

    try:
        return run_bench_model(args)
    except UsageError as e:  # unusable argument combinations, unmet optional needs
        args.parser.error(str(e))
