"""`sparsekit bench` end to end: choose systems, describe the machine, sweep,
write the reports, print the summary."""
import sys

from sparsekit.bench.machine import describe_machine, environment_warnings, load_warnings
from sparsekit.bench.report import build_document, markdown, write_all
from sparsekit.bench.sweep import run_sweep, sparsity_points
from sparsekit.bench.systems import select_systems


def run_bench(layers, sparsities, patterns, formats, threads, peers, repeat, min_time, seed,
              quick, out, show_progress, command, cold=False):
    peers_mode, peer_libs = peers
    systems, skipped = select_systems(formats, peers_mode, peer_libs)
    machine = describe_machine()  # load average before we add our own
    warnings = environment_warnings() + load_warnings(machine)
    usable = machine["usable_cpus"]
    if max(threads) > usable:
        warnings.append(f"--threads {max(threads)} exceeds the {usable} CPUs this process may "
                        "use: those timings measure oversubscription")
    for w in warnings:
        print(f"note: {w}", file=sys.stderr)
    points = sparsity_points(patterns, sparsities)
    results, errors = run_sweep(layers, points, threads, systems, repeat, min_time, seed,
                                show_progress, cold)
    settings = {"repeat": repeat, "min_sample_s": min_time, "threads": list(threads),
                "patterns": list(patterns), "sparsities": list(sparsities),
                "formats": list(formats), "peers": peers_mode if peers_mode != "list"
                else ",".join(sorted(peer_libs)), "seed": seed, "quick": bool(quick), "cold_cache": bool(cold),
                "layers": [la._asdict() for la in layers]}
    doc = build_document(command, machine, settings, warnings, systems, skipped, results,
                         errors)
    if out:
        paths, note = write_all(doc, out)
        if note:
            print(f"note: {note}", file=sys.stderr)
        print(markdown(doc, full=False))
        written = ", ".join(p for p in paths.values() if p)
        print(f"\nwrote {written}", file=sys.stderr)
    else:
        print(markdown(doc))
    return 1 if any(r["check"] == "FAIL" for r in results) or errors else 0
