"""`sparsekit bench-model`: one model before and after compression.

A model benchmark is a list of Variants of the same network (the original,
the compressed one on each system that can run it) plus a way to feed them a
batch. Every variant is checked for quality (accuracy on held-out data, or
cosine similarity to the original's output), its size on disk is measured by
writing it to a file, and all variants are timed together in interleaved
rounds per batch size (timing.py). Speedup is relative to the fastest
variant marked `baseline` (the uncompressed fp32 model) at that batch size.

    model_digits.py  MLP on scikit-learn digits, magnitude-pruned + fine-tuned
    model_minilm.py  all-MiniLM-L6-v2 sentence embeddings
    model_files.py   --torch FILE|MOD:FACTORY, --onnx FILE, --sparsekit FILE
"""
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from sparsekit.bench.machine import describe_machine, environment_warnings, load_warnings
from sparsekit.bench.progress import progress
from sparsekit.bench.report import machine_lines
from sparsekit.bench.schema import MODEL_SCHEMA_ID, validate_model
from sparsekit.bench.timing import measure_interleaved, pin_threads, summarize



class UsageError(ValueError):
    """An argument combination or optional dependency that cannot work: exit 2."""


@dataclass
class Variant:
    name: str
    system: str                          # library that runs it
    compression: str                     # e.g. "none", "pruned 90%", "pruned 90% + int8"
    make_run: Callable                   # make_run(batch_input) -> zero-argument callable
    size_bytes: Optional[int] = None     # size on disk of the saved model
    size_how: str = ""                   # how it was saved
    quality: dict = field(default_factory=dict)  # e.g. {"accuracy": 0.97}
    baseline: bool = False               # an uncompressed fp32 variant


def file_size(save, suffix):
    """Bytes that save(path) writes (all files, as savers may add suffixes)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        save(os.path.join(tmp, "model" + suffix))
        return sum(os.path.getsize(os.path.join(d, f))
                   for d, _, files in os.walk(tmp) for f in files)


def time_variants(variants, batches, make_input, threads, repeat, min_sample, rng,
                  show_progress):
    """{batch: [stats per variant]}, all variants interleaved per batch size."""
    bar = progress(len(batches) * repeat, "sparsekit bench-model", show_progress)
    out = {}
    try:
        with pin_threads(threads):
            for b in batches:
                x = make_input(b)
                runs = [v.make_run(x) for v in variants]
                samples, _ = measure_interleaved(runs, repeat, min_sample, rng,
                                                 on_round=bar.update)
                out[b] = [summarize(s) for s in samples]
    finally:
        bar.close()
    return out


def build_document(title, command, machine, variants, timings, notes, settings,
                   quality_keys):
    batches = sorted(timings)
    rows = []
    for i, v in enumerate(variants):
        per_batch = {}
        for b in batches:
            st = dict(timings[b][i])
            base = min(timings[b][j]["median_s"] for j, u in enumerate(variants) if u.baseline)
            st["throughput_per_s"] = b / st["median_s"]
            st["speedup"] = base / st["median_s"]
            per_batch[str(b)] = st
        rows.append({"name": v.name, "system": v.system, "compression": v.compression,
                     "baseline": v.baseline, "size_bytes": v.size_bytes,
                     "size_how": v.size_how, "quality": v.quality, "batches": per_batch})
    doc = {"schema": MODEL_SCHEMA_ID, "model": title, "command": list(command),
           "machine": machine, "settings": settings,
           "warnings": list(notes), "quality_keys": quality_keys,
           "variants": rows}
    validate_model(doc)  # never write a file our own schema rejects
    return doc


def markdown(doc):
    s = doc["settings"]
    out = [f"# sparsekit bench-model: {doc['model']}", "",
           f"Command: `{shlex.join(doc['command'])}`", ""]
    out += machine_lines(doc) + [""]
    out += [f"> **Note:** {w}" for w in doc["warnings"]]
    out += ["", f"Latency: median per call of {s['repeat']} interleaved rounds, "
            f"{s['threads']} thread{'s' if s['threads'] > 1 else ''} for every system; spread is "
            "the interquartile range. Speedup is against the fastest uncompressed fp32 variant "
            "at the same batch size.", ""]
    batches = list(doc["variants"][0]["batches"]) if doc["variants"] else []
    qk = doc["quality_keys"]
    head = ["variant", "system", "compression", "size on disk"] + qk
    for b in batches:
        head += [f"batch {b}: ms (IQR)", f"batch {b}: per s", f"batch {b}: speedup"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ref_size = next((v["size_bytes"] for v in doc["variants"] if v["baseline"]
                     and v["size_bytes"]), None)
    for v in doc["variants"]:
        size = "—"
        if v["size_bytes"] is not None:
            size = f"{v['size_bytes'] / 1024:.0f} KiB"
            if ref_size:
                size += f" ({v['size_bytes'] / ref_size:.0%})"
        cells = [v["name"], v["system"], v["compression"], size]
        cells += [_quality(k, v["quality"].get(k)) for k in qk]
        for b in batches:
            st = v["batches"][b]
            cells += [f"{st['median_s'] * 1e3:.3f} ({st['q25_s'] * 1e3:.3f}–"
                      f"{st['q75_s'] * 1e3:.3f})", f"{st['throughput_per_s']:.0f}",
                      f"{st['speedup']:.2f}×"]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "Sizes: " + "; ".join(f"{v['name']}: {v['size_how']}"
                                       for v in doc["variants"] if v["size_how"]), ""]
    return "\n".join(out)


def _quality(key, q):
    if q is None:
        return "—"
    if isinstance(q, float):
        return f"{q:.1e}" if "err" in key else f"{q:.4f}"
    return str(q)


def run_bench_model(args):
    """Dispatch on the model source; returns the exit status."""
    if args.model == "digits":
        from sparsekit.bench.model_digits import digits_benchmark as build
    elif args.model == "minilm":
        from sparsekit.bench.model_minilm import minilm_benchmark as build
    elif args.torch:
        from sparsekit.bench.model_files import torch_benchmark as build
    elif args.onnx:
        from sparsekit.bench.model_files import onnx_benchmark as build
    else:
        from sparsekit.bench.model_files import saved_benchmark as build
    machine = describe_machine()
    warnings = environment_warnings() + load_warnings(machine)
    for w in warnings:
        print(f"note: {w}", file=sys.stderr)
    rng = np.random.default_rng(args.seed)
    bench = build(args, rng)  # validates what it needs before any timing
    timings = time_variants(bench["variants"], bench["batches"], bench["make_input"],
                            args.threads, args.repeat, args.min_time, rng,
                            not args.no_progress)
    settings = {"threads": args.threads, "repeat": args.repeat, "seed": args.seed,
                "batches": bench["batches"], **bench.get("settings", {})}
    command = ["sparsekit"] + list(getattr(args, "argv", None) or sys.argv[1:])
    doc = build_document(bench["title"], command, machine, bench["variants"], timings,
                         warnings + bench.get("notes", []), settings, bench["quality_keys"])
    md = markdown(doc)
    print(md)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "model.json"), "w") as f:
            json.dump(doc, f, indent=1)
        with open(os.path.join(args.out, "model.md"), "w") as f:
            f.write(md)
        print(f"\nwrote {args.out}/model.md, {args.out}/model.json", file=sys.stderr)
    return 0
