"""`sparsekit bench` and `sparsekit bench-model`: argument parsing only; the
work is in sweep.py / report.py and model.py. Registered into sparsekit/cli.py
by add_subcommands(subparsers)."""
import argparse
import sys

from sparsekit.bench import shapes
from sparsekit.bench.patterns import parse_pattern
from sparsekit.bench.systems import FORMATS, PeerUnavailable, parse_peers

# what --quick measures (anything given explicitly still wins): BERT's FFN
# up-projection at a batch of 128 tokens and at a single token, 1 thread; with
# every peer and format installed about 12 s of CPU time here, so it stays
# under the minute promised even on a shared, busy machine
QUICK = {"layers": [shapes.Layer("bert-base", "ffn_up", 3072, 768, 128),
                    shapes.Layer("bert-base", "ffn_up", 3072, 768, 1)],
         "sparsity": [0.5, 0.7, 0.9, 0.95], "pattern": ["unstructured", "2:4", "1x4"],
         "repeat": 7, "min_time": 0.003}
DEFAULT = {"preset": ["bert-base"], "sparsity": [0.5, 0.7, 0.9, 0.95],
           "pattern": ["unstructured", "2:4", "1x4"], "repeat": 9, "min_time": 0.005}


def _list_of(conv, what):
    def parse(text):
        items = [p.strip() for p in text.split(",") if p.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma list of {what}, got {text!r}")
        try:
            return [conv(p) for p in items]
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


def _arg(conv):
    """argparse type from a converter raising ValueError (message kept verbatim)."""
    def parse(text):
        try:
            return conv(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


def _sparsity(text):
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not 0.0 <= v < 1.0:
        raise ValueError(f"sparsity {text} is outside [0, 1)")
    return v


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None
    if v < 1:
        raise ValueError(f"expected a positive integer, got {v}")
    return v


def _shape(text):
    parts = text.split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected N,K,M (three integers), got {text!r}")
    try:
        return shapes.custom_layer(*(_positive_int(p) for p in parts))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None


def _format(text):
    if text not in FORMATS:
        raise ValueError(f"unknown format {text!r}: expected some of {', '.join(FORMATS)}")
    return text


def _peers(text):
    try:
        return parse_peers(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {v}")
    return v


def add_bench(sub):
    p = sub.add_parser(
        "bench", help="sparse vs dense, int8 vs fp32, against installed peers",
        description="Time sparse and quantized linear layers against dense fp32 and the "
                    "installed peers (NumPy, SciPy, PyTorch, ONNX Runtime) in one run. "
                    "For a fair NumPy baseline run it as `env -u OPENBLAS_CORETYPE "
                    "-u OPENBLAS_L2_SIZE sparsekit bench ...`. Exit status 1 if any "
                    "system gave a wrong answer or raised.")
    p.add_argument("--preset", type=_list_of(_preset, "presets"), action="extend",
                   help=f"layer shapes of a model: {', '.join(shapes.PRESETS)} "
                        "(comma list or repeated; default bert-base)")
    p.add_argument("--shape", type=_shape, action="append", metavar="N,K,M",
                   help="a layer Y[M,N] = X[M,K]·W[N,K]ᵀ (repeatable)")
    p.add_argument("--m", type=_list_of(_positive_int, "integers"), metavar="M,...",
                   help="tokens M for the transformer presets and --quick's layer (default "
                        "1,128; --quick 128,1); a --shape N,K,M has its own M")
    p.add_argument("--sparsity", type=_list_of(_sparsity, "sparsities"),
                   help="fractions of zero weights in [0, 1) (default 0.5,0.7,0.9,0.95)")
    p.add_argument("--pattern", type=_list_of(parse_pattern, "patterns"),
                   help="unstructured, N:M (e.g. 2:4), RxC blocks (e.g. 1x4) "
                        "(default unstructured,2:4,1x4)")
    p.add_argument("--format", type=_list_of(_format, "formats"),
                   help=f"weight formats: {', '.join(FORMATS)} (default all; dense fp32 is "
                        "always measured as the baseline)")
    p.add_argument("--threads", type=_list_of(_positive_int, "thread counts"),
                   help="thread counts, every system limited alike (default 1)")
    p.add_argument("--peers", type=_peers, default=("auto", set()),
                   help="auto (every installed peer), none, or a comma list of numpy, "
                        "scipy, torch, onnxruntime")
    p.add_argument("--repeat", type=_arg(_positive_int), metavar="R",
                   help="interleaved rounds per measurement (default 9, --quick 7)")
    p.add_argument("--min-time", type=_positive, metavar="SECONDS",
                   help="shortest sample; fast calls repeat to fill it (default 0.005, "
                        "--quick 0.003)")
    p.add_argument("--cold", action="store_true",
                   help="flush the caches before every timed call, as when a model streams "
                        "many layers' weights from memory (default: warm, weights reused)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, inputs and order")
    p.add_argument("--quick", action="store_true",
                   help="a small sweep that runs in under a minute: bert-base ffn_up "
                        "(3072x768) at M=128 and M=1 (or at --m); 50-95%% sparse; 1 thread")
    p.add_argument("--out", metavar="DIR",
                   help="write DIR/results.md, DIR/results.json, DIR/speedup.png")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_bench, parser=p)
    return p


def _preset(text):
    if text not in shapes.PRESETS:
        raise ValueError(f"unknown preset {text!r}: expected some of {', '.join(shapes.PRESETS)}")
    return text


def _cmd_bench(args):
    from sparsekit.bench.run import run_bench

    parser = args.parser
    defaults = QUICK if args.quick else DEFAULT
    layers = list(args.shape or [])
    for name in args.preset or []:
        layers += shapes.preset_layers(name, args.m or shapes.DEFAULT_M)
    m_used = any(name in shapes.M_PRESETS for name in args.preset or [])
    if not layers:
        m_used = True
        layers = list(QUICK["layers"]) if args.quick else [
            la for name in DEFAULT["preset"]
            for la in shapes.preset_layers(name, args.m or shapes.DEFAULT_M)]
        if args.quick and args.m:  # --quick's one weight shape at the M asked for
            layers = [layers[0]._replace(m=m) for m in args.m]
    if args.m and not m_used:
        parser.error("argument --m: sets M of the transformer presets "
                     f"({', '.join(shapes.M_PRESETS)}) and of --quick's layer; a --shape "
                     "N,K,M gives its own M and resnet50's M is fixed")
    peers_mode, peer_libs = args.peers
    try:
        return run_bench(
            layers=layers,
            sparsities=args.sparsity or defaults["sparsity"],
            patterns=args.pattern or defaults["pattern"],
            formats=args.format or list(FORMATS),
            threads=args.threads or [1],
            peers=(peers_mode, peer_libs),
            repeat=args.repeat or defaults["repeat"],
            min_time=args.min_time or defaults["min_time"],
            seed=args.seed, quick=args.quick, out=args.out,
            show_progress=not args.no_progress, cold=args.cold,
            command=["sparsekit"] + list(getattr(args, "argv", None) or sys.argv[1:]))
    except PeerUnavailable as e:
        parser.error(f"argument --peers: {e}")


def add_subcommands(sub):
    add_bench(sub)
    from sparsekit.bench.model_cli import add_bench_model

    add_bench_model(sub)

