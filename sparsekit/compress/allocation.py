"""How a model-wide sparsity is shared out between layers (non-uniform
allocation for one-shot pruning).

The total number of removed weights is always round(sparsity * total) over
the pruned layers, so "50 %" is exactly half of their weights; what changes
is which layers give more. Layers differ a lot: in a BERT encoder the
query/key projections lose almost nothing when pruned, while the value,
attention-output and FFN layers carry the damage.

    uniform     every layer at `sparsity` (each layer's count rounded, the
                rounding spread so the total is exact)
    dict        {layer name or fnmatch pattern: sparsity}: those layers are
                pinned, all others share the rest equally (by weight count)
    "owl"       outlier-weighted layerwise sparsity (Yin et al. 2023): a layer
                with more Wanda-score outliers (|W_ij| * ||X_j|| above
                owl_m times the layer mean) keeps more weights; sparsities
                spread over [s - owl_lambda, s + owl_lambda]
"""
import fnmatch

ALLOCATIONS = ("uniform", "owl")


def exact_counts(fractions, sizes, total):
    """Integer removal counts per layer near fractions * sizes that add up to
    `total` exactly (largest remainders get the spare units, ties by order)."""
    raw = [f * n for f, n in zip(fractions, sizes)]
    counts = [min(int(r), n) for r, n in zip(raw, sizes)]
    spare = total - sum(counts)
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    if spare < 0:
        order = sorted(range(len(raw)), key=lambda i: (raw[i] - counts[i], i))
    step = 1 if spare > 0 else -1
    i = 0
    while spare and i < 4 * len(order) + 4:
        j = order[i % len(order)]
        if 0 <= counts[j] + step <= sizes[j]:
            counts[j] += step
            spare -= step
        i += 1
    if spare:
        raise ValueError("sparsity: the allocation cannot reach the requested total")
    return counts


def pinned_fractions(names, sizes, sparsity, table):
    """Fractions per layer from {pattern: sparsity}; unpinned layers share the
    rest of the model-wide budget equally."""
    if not table:
        raise ValueError("allocation: the dict is empty")
    fracs = [None] * len(names)
    for pat, s in table.items():
        if not isinstance(pat, str):
            raise TypeError(f"allocation: keys must be layer names or patterns, got "
                            f"{type(pat).__name__}")
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s < 1:
            raise ValueError(f"allocation: sparsity for {pat!r} must be in [0, 1), got {s!r}")
        hit = False
        for i, n in enumerate(names):
            if fracs[i] is None and (n == pat or fnmatch.fnmatchcase(n, pat)):
                fracs[i] = float(s)
                hit = True
        if not hit:
            raise ValueError(f"allocation: {pat!r} matches no pruned layer")
    total = sparsity * sum(sizes)
    pinned = sum(f * n for f, n in zip(fracs, sizes) if f is not None)
    rest = sum(n for f, n in zip(fracs, sizes) if f is None)
    if rest:
        share = (total - pinned) / rest
        if not 0 <= share < 1:
            raise ValueError(f"allocation: the pinned layers leave the others a sparsity of "
                             f"{share:.4f}, outside [0, 1); pin fewer or other values")
        fracs = [share if f is None else f for f in fracs]
    elif abs(pinned - total) > 0.5:
        raise ValueError(f"allocation: every layer is pinned, and the pinned sparsities "
                         f"give {pinned / sum(sizes):.4f} overall, not {sparsity}")
    return fracs


def owl_fractions(scores, sparsity, owl_lambda=0.08, owl_m=5.0):
    """OWL: layer outlier ratio D = share of scores > owl_m * mean score; the
    layer sparsity is 1 - D rescaled linearly to [s - lambda, s + lambda] and
    shifted so that the weighted mean is s again."""
    if isinstance(owl_lambda, bool) or not isinstance(owl_lambda, (int, float)) \
            or not 0 <= owl_lambda < 1:
        raise ValueError(f"owl_lambda: expected a number in [0, 1), got {owl_lambda!r}")
    if isinstance(owl_m, bool) or not isinstance(owl_m, (int, float)) or not owl_m > 0:
        raise ValueError(f"owl_m: expected a positive number, got {owl_m!r}")
    ratios = [float((s > owl_m * s.mean()).double().mean()) for s in scores]
    sizes = [s.numel() for s in scores]
    lo, hi = min(ratios), max(ratios)
    if hi == lo:
        return [sparsity] * len(scores)
    # more outliers -> lower sparsity
    fr = [sparsity + owl_lambda - 2 * owl_lambda * (r - lo) / (hi - lo) for r in ratios]
    shift = sparsity - sum(f * n for f, n in zip(fr, sizes)) / sum(sizes)
    fr = [min(max(f + shift, 0.0), 0.999) for f in fr]
    return fr
