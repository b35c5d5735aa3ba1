"""speedup.png: speedup over the fastest dense fp32 versus sparsity.

One panel per (format) column and per (model, M, threads) row; one line per
system and pattern, the geometric mean over the row's layers, with error bars
from the quartiles of the samples. Formats whose speed does not depend on
sparsity (dense, int8) are drawn flat, their quartiles as a band.
"""
import math

FORMAT_ORDER = ("csr", "sparse-int8", "auto", "int8", "dense")
PATTERN_STYLE = ["-", "--", ":", "-."]


def _row_key(r):
    m = "pixels" if r["model"] == "resnet50" else f"M={r['M']}"
    return (r["model"], m, r["threads"])


def _minor_label(v, _):
    """Label the 2s and 5s of each decade on a log axis."""
    if v <= 0:
        return ""
    lead = v / 10 ** math.floor(math.log10(v))
    return f"{v:g}×" if round(lead, 6) in (2.0, 5.0) else ""


def _geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def plot_speedup(doc, path):
    """Draw the plot; returns None, or a note saying why there is no plot."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return "matplotlib is not installed: no speedup.png (pip install matplotlib)"
    results = [r for r in doc["results"] if r["speedup"]]
    if not results:
        return "no results with a speedup to plot"
    rows = sorted({_row_key(r) for r in results}, key=lambda t: (t[0], str(t[1]), t[2]))
    formats = [f for f in FORMAT_ORDER if any(r["format"] == f for r in results)]
    levels = sorted({r["sparsity"] for r in results if r["sparsity"] is not None})
    span = (min(levels), max(levels)) if levels else (0.0, 1.0)
    if span[0] == span[1]:
        span = (span[0] - 0.05, span[1] + 0.05)
    patterns = sorted({r["pattern"] for r in results if r["sparsity"] is not None})
    style = {p: PATTERN_STYLE[i % len(PATTERN_STYLE)] for i, p in enumerate(patterns)}
    fig, axes = plt.subplots(len(rows), len(formats), squeeze=False, sharey=True,
                             figsize=(3.6 * len(formats) + 1, 3.0 * len(rows) + 0.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    sys_color = {}
    for ri, row in enumerate(rows):
        for fi, fmt in enumerate(formats):
            ax = axes[ri][fi]
            sel = [r for r in results if _row_key(r) == row and r["format"] == fmt]
            lines = {}
            for r in sel:
                lines.setdefault((r["system"], r["pattern"]), {}).setdefault(
                    r["sparsity"], []).append((r["speedup"], r["speedup_low"] or r["speedup"],
                                               r["speedup_high"] or r["speedup"]))
            for (system, pattern), pts in sorted(lines.items()):
                color = sys_color.setdefault(system, colors[len(sys_color) % len(colors)])
                if None in pts:  # sparsity-independent: flat line, band = quartiles
                    y, lo, hi = (_geomean([p[i] for p in pts[None]]) for i in range(3))
                    ax.plot(span, [y, y], color=color, label=system)
                    ax.fill_between(span, [lo, lo], [hi, hi], color=color, alpha=0.15, lw=0)
                else:
                    xs = sorted(pts)
                    y, lo, hi = ([_geomean([p[i] for p in pts[x]]) for x in xs] for i in range(3))
                    ax.errorbar(xs, y, yerr=[[a - b for a, b in zip(y, lo)],
                                             [b - a for a, b in zip(y, hi)]],
                                fmt=style[pattern], marker="o", ms=4, capsize=2, color=color,
                                label=f"{system} ({pattern})")
            ax.axhline(1.0, color="gray", lw=0.8)
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
            ax.yaxis.set_minor_formatter(FuncFormatter(_minor_label))
            ax.set_title(f"{fmt} — {row[0]} {row[1]}, {row[2]} thr", fontsize=9)
            if ri == len(rows) - 1:
                ax.set_xlabel("sparsity")
            if fi == 0:
                ax.set_ylabel("speedup vs fastest dense fp32")
            if lines:  # colours name systems, line styles name patterns
                systems = sorted({sy for sy, _ in lines})
                pats = sorted({pa for sy, pa in lines if None not in lines[(sy, pa)]})
                handles = [Line2D([], [], color=sys_color[sy], label=sy) for sy in systems]
                if len(pats) > 1:
                    handles += [Line2D([], [], color="black", ls=style[pa], label=pa)
                                for pa in pats]
                ax.legend(handles=handles, fontsize=6)
            ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"sparsekit bench on {doc['machine']['cpu']} "
                 f"(geometric mean over layers; 1 = fastest dense fp32)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
