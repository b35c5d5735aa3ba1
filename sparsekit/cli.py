"""Command line: `sparsekit info`, `sparsekit bench`, `sparsekit bench-model`,
`sparsekit pack` (also `python -m sparsekit ...`); `sparsekit COMMAND --help` for each."""
import argparse
import json
import sys


def _cmd_info(args):
    import sparsekit

    data = sparsekit.info()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"sparsekit {data['version']} on {data['cpu']} ({data['machine']})")
    if not data["compiled"]:
        print(f"  C core       : unavailable ({data['core_error']}); "
              "CSRMatrix runs on the Numba backend")
        return 0
    feats = ", ".join(k for k, v in data["cpu_features"].items() if v)
    print(f"  cpu features : {feats}")
    print(f"  isa          : {data['isa']} (best available: {data['best_isa']})")
    for family, isa in data["kernels"].items():
        print(f"  {family:<13}: {isa}")
    print(f"  threads      : {data['num_threads']}")
    b = data["thread_backoff"]
    print(f"  thread backoff: {'on' if b['enabled'] else 'off'}"
          f"{' (active: 1 thread now)' if b['active'] else ''}"
          f", last late start {b['last_late_us']:.0f} us")
    return 0


def _pack_module():
    import importlib

    return importlib.import_module("sparsekit.pack")  # sparsekit.pack is the function


def build_parser():
    parser = argparse.ArgumentParser(prog="sparsekit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="print detected CPU features and chosen kernels")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)
    p = sub.add_parser("pack", help="print sparsekit.pack's crossover table, or re-measure "
                                    "its cost model on this CPU (--measure)")
    _pack_module()._cli_arguments(p)
    p.set_defaults(func=lambda args: _pack_module()._cli_run(args) or 0)
    from sparsekit.bench.cli import add_subcommands  # bench, bench-model

    add_subcommands(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in bench reports
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
