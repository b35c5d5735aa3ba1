"""A list of per-layer dicts that prints as a table (compression results,
converters' per-layer choices)."""


class Report(list):
    """Per-layer results: a list of dicts (one per layer) with a readable str.
    `columns` fixes the printed order; missing values print as '-'."""

    columns = ()
    title = ""

    def __init__(self, rows=(), columns=None, title=None):
        super().__init__(rows)
        if columns is not None:
            self.columns = tuple(columns)
        if title is not None:
            self.title = title

    def summary(self):
        return ""

    def __str__(self):
        cols = self.columns or (tuple(self[0]) if self else ())
        cells = [[_fmt(r.get(c)) for c in cols] for r in self]
        widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
        lines = [self.title] if self.title else []
        lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
        tail = self.summary()
        if tail:
            lines.append(tail)
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle):  # IPython shows the table
        p.text(str(self))


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, tuple):
        return "x".join(str(x) for x in v)
    return str(v)
