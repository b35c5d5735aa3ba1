"""Write a sweep's results: results.json (schema.py), results.md, speedup.png."""
import json
import os
import shlex

from sparsekit.bench.schema import SCHEMA_ID, validate


def build_document(command, machine, settings, warnings, systems, skipped, results, errors):
    doc = {
        "schema": SCHEMA_ID,
        "command": list(command),
        "machine": machine,
        "settings": settings,
        "warnings": list(warnings),
        "systems": [s.describe() for s in systems],
        "skipped_systems": [dict(s.describe(), reason=why) for s, why in skipped],
        "results": results,
        "errors": [{"where": w, "error": e} for w, e in errors],
    }
    validate(doc)  # never write a file our own schema rejects
    return doc


def write_json(doc, path):
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def _ms(s):
    return f"{s * 1e3:.3f}"


def _pct(s):
    return "—" if s is None else f"{s * 100:g}%"


def _x(v):
    return "—" if v is None else f"{v:.2f}×"


def group_key(r):
    return (r["model"], r["layer"], r["N"], r["K"], r["M"], r["threads"])


def machine_lines(doc):
    m = doc["machine"]
    v = ", ".join(f"{k} {ver}" for k, ver in m["versions"].items() if ver)
    kernels = ", ".join(f"{k}={isa}" for k, isa in m["kernels"].items())
    load = m.get("loadavg")
    return [
        f"- CPU: {m['cpu']} ({m['arch']}), {m['usable_cpus']} usable of "
        f"{m.get('logical_cpus')} logical CPUs; features: {', '.join(m['cpu_features'])}",
        f"- sparsekit ISA: {m['isa']} (kernels: {kernels}); default threads "
        f"{m.get('default_threads')}",
        f"- versions: {v}; Python {m.get('python')}; {m.get('os')}",
        f"- load average at start: {', '.join(f'{x:.2f}' for x in load) if load else 'n/a'}"
        f"; date {m['date']}",
    ]


def markdown(doc, full=True):
    """The report; full=False leaves out the table of every measurement."""
    s = doc["settings"]
    out = ["# sparsekit bench", "", f"Command: `{shlex.join(doc['command'])}`", ""]
    out += machine_lines(doc)
    out.append("")
    for w in doc["warnings"]:
        out += [f"> **Note:** {w}", ""]
    out += [
        f"Each number is the median of {s['repeat']} interleaved rounds (every system once per "
        f"round, in random order; each sample at least {s['min_sample_s'] * 1e3:g} ms of "
        "repeated calls). **Speedup** = median time of the fastest dense fp32 system on the "
        "same layer and thread count ÷ this system's median (above 1 is faster); in brackets "
        "the same for this system's quartiles, its spread. Dense systems do not depend on "
        "sparsity and are measured once per layer. Y[M,N] = X[M,K]·W[N,K]ᵀ. " + (
            "Caches were flushed before every timed call (--cold): weights come from memory, "
            "as in a model with many layers." if s.get("cold_cache") else
            "Every call reuses one weight, so weights that fit in the last-level cache are "
            "timed warm (--cold times them from memory)."), ""]
    results = doc["results"]
    groups = {}
    for r in results:
        groups.setdefault(group_key(r), []).append(r)
    out += ["## Speedup over the fastest dense fp32", ""]
    for key, rows in groups.items():
        out += _summary_table(key, rows)
    if not full:
        return "\n".join(out + _notes(doc))
    out += ["## All measurements", "",
            "| layer | N×K | M | threads | system | format | pattern | sparsity | median ms "
            "| IQR ms | min ms | GFLOP/s (dense-equiv.) | speedup | bytes/weight | max rel err |",
            "|" + "---|" * 15]
    for r in results:
        bpw = "—" if r["bytes_per_weight"] is None else f"{r['bytes_per_weight']:.3f}"
        system = r["system"] + (f" → {r['detail']}" if r["format"] == "auto" else "")
        err = f"{r['max_rel_err']:.1e}" + ("" if r["check"] == "ok" else " **FAIL**")
        out.append(
            f"| {r['model']}/{r['layer']} | {r['N']}×{r['K']} | {r['M']} | {r['threads']} "
            f"| {system} | {r['format']} | {r['pattern']} | {_pct(r['sparsity'])} "
            f"| {_ms(r['median_s'])} | {_ms(r['q25_s'])}–{_ms(r['q75_s'])} | {_ms(r['min_s'])} "
            f"| {r['gflops']:.1f} | {_x(r['speedup'])} | {bpw} | {err} |")
    out.append("")
    return "\n".join(out + _notes(doc))


def _notes(doc):
    out = []
    if doc["skipped_systems"]:
        out += ["## Not measured", ""]
        out += [f"- {s['name']}: {s['reason']}" for s in doc["skipped_systems"]]
        out.append("")
    if doc["errors"]:
        out += ["## Errors", ""]
        out += [f"- {e['where']}: {e['error']}" for e in doc["errors"]]
        out.append("")
    return out


# what sparsekit.pack chose, in the summary cells
_SHORT = {"ndarray": "[dense]", "CSRMatrix": "[csr]", "QuantizedMatrix": "[int8]",
          "SparseInt8Matrix": "[sparse-int8]", "SlicedEllMatrix": "[sliced-ell]"}


def _summary_table(key, rows):
    model, layer, n, k, m, threads = key
    levels = sorted({r["sparsity"] for r in rows if r["sparsity"] is not None})
    head = ["system", "format", "pattern", "dense"] + [_pct(x) for x in levels]
    lines = [f"**{model}/{layer}** N={n} K={k} M={m}, {threads} thread"
             f"{'s' if threads > 1 else ''} (baseline: {rows[0]['baseline_system']})", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    table = {}
    for r in rows:
        cells = table.setdefault((r["system"], r["format"], r["pattern"]), {})
        spread = "" if r["speedup_low"] is None else \
            f" ({r['speedup_low']:.2f}–{r['speedup_high']:.2f})"
        chose = f" {_SHORT.get(r['detail'], r['detail'])}" if r["format"] == "auto" else ""
        cells[r["sparsity"]] = _x(r["speedup"]) + spread + chose + (
            "" if r["check"] == "ok" else " FAIL")
    for (system, fmt, pattern), cells in table.items():
        vals = [cells.get(None, "")] + [cells.get(x, "") for x in levels]
        lines.append(f"| {system} | {fmt} | {pattern} | " + " | ".join(vals) + " |")
    return lines + [""]


def write_markdown(doc, path):
    with open(path, "w") as f:
        f.write(markdown(doc))


def write_all(doc, out_dir):
    """results.json, results.md and (if matplotlib is importable) speedup.png.
    Returns {kind: path or None} and a note when the plot was not drawn."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "results.json"),
             "markdown": os.path.join(out_dir, "results.md"), "plot": None}
    write_json(doc, paths["json"])
    write_markdown(doc, paths["markdown"])
    from sparsekit.bench.plot import plot_speedup

    png = os.path.join(out_dir, "speedup.png")
    note = plot_speedup(doc, png)
    if note is None:
        paths["plot"] = png
    return paths, note
