"""Keep-masks from importance scores, for the three sparsity patterns.

Every weight is seen as a matrix W[N, K] = weight.reshape(out, -1) (the GEMM
view a converter uses). Patterns:
  unstructured  any element may go;
  "N:M"         in each group of M consecutive inputs (along K) N are kept;
  "1xB"         whole blocks of 1 row x B consecutive inputs go (1x4 is what
                the sparse int8 kernel wants). When K is not a multiple of B the
                last block of each row is a partial block of K % B inputs: blocks
                are then ranked by mean score per real input and removed until
                the number of removed weights is as close as possible to
                sparsity * size (ties: the count at or above the request), so
                the requested sparsity is met to within one block.
Masks are bool tensors shaped like the score matrix, True = keep.
"""
import re

from sparsekit.compress._torch import torch

PATTERN_RE = re.compile(r"^\s*(\d+)\s*([:x×])\s*(\d+)\s*$")


def parse_pattern(pattern):
    """("unstructured",), ("nm", n, m) or ("block", b)."""
    if pattern in (None, "unstructured"):
        return ("unstructured",)
    if not isinstance(pattern, str):
        raise TypeError(f"pattern: expected a string, got {type(pattern).__name__}")
    m = PATTERN_RE.match(pattern)
    if m:
        a, sep, b = int(m.group(1)), m.group(2), int(m.group(3))
        if sep == ":" and 0 < a < b:
            return ("nm", a, b)
        if sep in "x×" and a == 1 and b >= 1:
            return ("block", b)
    raise ValueError(f"pattern: expected 'unstructured', 'N:M' with 0 < N < M (e.g. '2:4') "
                     f"or '1xB' (e.g. '1x4'), got {pattern!r}")


def check_sparsity(sparsity, pattern):
    """The fraction to remove as a float; N:M fixes it (None accepted)."""
    kind = pattern[0]
    if kind == "nm":
        implied = 1.0 - pattern[1] / pattern[2]
        if sparsity is None:
            return implied
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise TypeError(f"sparsity: expected a number in [0, 1), got {sparsity!r}")
    sparsity = float(sparsity)
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity: expected a value in [0, 1), got {sparsity}")
    if kind == "nm" and abs(sparsity - implied) > 1e-9:
        raise ValueError(f"sparsity: pattern {pattern[1]}:{pattern[2]} removes exactly "
                         f"{implied:g}, got {sparsity}")
    return sparsity


def _drop_lowest(scores, count):
    """Bool mask over a 1-D tensor: False at the `count` lowest (stable ties)."""
    keep = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if count > 0:
        order = torch.sort(scores.reshape(-1), stable=True).indices
        keep[order[:count]] = False
    return keep


def block_scores(scores, b):
    """Sum of scores over 1 x b blocks: [N, K] -> [N, ceil(K / b)]."""
    n, k = scores.shape
    pad = (-k) % b
    if pad:
        scores = torch.nn.functional.pad(scores, (0, pad))
    return scores.reshape(n, -1, b).sum(-1)


def expand_blocks(block_mask, b, k):
    return block_mask.repeat_interleave(b, dim=1)[:, :k]


def block_sizes(k, b, device=None):
    """Real inputs in each 1 x b block of a row of K: b, ..., b, K - b * (nb - 1)."""
    nb = -(-k // b)
    sizes = torch.full((nb,), b, dtype=torch.int64, device=device)
    sizes[-1] = k - b * (nb - 1)
    return sizes


def drop_blocks(sums, sizes, sparsity):
    """Keep-mask over blocks [R, nb] with real sizes `sizes` [R, nb] (ragged
    blocks): per row, drop the lowest-mean blocks until the dropped weight count
    is closest to round(sparsity * row size), ties to the count at or above it."""
    r, nb = sums.shape
    target = torch.round(sparsity * sizes.sum(1).to(torch.float64)).to(torch.int64)
    order = torch.sort(sums.to(torch.float64) / sizes, dim=1, stable=True).indices
    cum = torch.cumsum(torch.gather(sizes, 1, order), dim=1)
    # j_hi blocks are the fewest reaching the target; j_hi - 1 stay below it
    j_hi = torch.clamp((cum < target[:, None]).sum(1) + 1, max=nb)
    rows = torch.arange(r, device=sums.device)
    above = cum[rows, j_hi - 1] - target
    below = target - torch.where(j_hi >= 2, cum[rows, torch.clamp(j_hi - 2, min=0)],
                                 torch.zeros_like(j_hi))
    j = torch.where(above <= below, j_hi, j_hi - 1)
    dropped_sorted = torch.arange(nb, device=sums.device)[None, :] < j[:, None]
    keep = torch.ones_like(dropped_sorted)
    keep.scatter_(1, order, ~dropped_sorted)
    return keep


def nm_mask(scores, n_keep, m, name="weight"):
    """Keep the n_keep largest of every m consecutive scores along K."""
    n, k = scores.shape
    if k % m:
        raise ValueError(f"pattern: {n_keep}:{m} needs the input size of layer {name!r} "
                         f"(in_features, or in_channels*kh*kw) to be a multiple of {m}, "
                         f"got K = {k}; skip it (skip=[{name!r}]) or pick another pattern")
    groups = scores.reshape(n, k // m, m)
    top = torch.topk(groups, n_keep, dim=-1, sorted=False).indices
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, top, True)
    return keep.reshape(n, k)


def mask_from_scores(scores, sparsity, pattern, per_row=False, name="weight"):
    """Keep-mask for one [N, K] score matrix. `per_row` makes each output row
    its own comparison group (what Wanda does); otherwise the whole layer is."""
    n, k = scores.shape
    kind = pattern[0]
    if kind == "nm":
        return nm_mask(scores, pattern[1], pattern[2], name)
    if kind == "block":
        b = pattern[1]
        bs = block_scores(scores, b)
        if k % b == 0:  # whole blocks: removing round(sparsity * blocks) is exact
            keep = mask_from_scores(bs, sparsity, ("unstructured",), per_row)
        else:
            sizes = block_sizes(k, b, scores.device).expand(n, -1)
            if per_row:
                keep = drop_blocks(bs, sizes, sparsity)
            else:
                keep = drop_blocks(bs.reshape(1, -1), sizes.reshape(1, -1),
                                   sparsity).reshape(bs.shape)
        return expand_blocks(keep, b, k)
    if per_row:
        # round(sparsity * size) in all; rows differ by at most one (the first
        # rows take the spare ones) when sparsity * K is not whole
        total = int(round(sparsity * n * k))
        if total == 0:
            return torch.ones_like(scores, dtype=torch.bool)
        count, spare = divmod(total, n)
        order = torch.sort(scores, dim=1, stable=True).indices
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(k, device=scores.device).expand(n, k))
        limit = torch.full((n, 1), count, dtype=torch.int64, device=scores.device)
        limit[:spare] += 1
        return rank >= limit
    return _drop_lowest(scores, int(round(sparsity * scores.numel()))).reshape(n, k)


def global_masks(score_list, sparsity, pattern, names):
    """Keep-masks for several layers ranked together (one threshold overall)."""
    kind = pattern[0]
    if kind == "nm":  # N:M is local by definition
        return [nm_mask(s, pattern[1], pattern[2], nm) for s, nm in zip(score_list, names)]
    units = [block_scores(s, pattern[1]) if kind == "block" else s for s in score_list]
    flat = torch.cat([u.reshape(-1).to(torch.float64) for u in units])
    if kind == "block" and any(s.shape[1] % pattern[1] for s in score_list):
        sizes = torch.cat([block_sizes(s.shape[1], pattern[1], s.device).expand(
            s.shape[0], -1).reshape(-1) for s in score_list])
        keep = drop_blocks(flat[None, :], sizes[None, :], sparsity)[0]
    else:
        keep = _drop_lowest(flat, int(round(sparsity * flat.numel())))
    out, start = [], 0
    for s, u in zip(score_list, units):
        m = keep[start:start + u.numel()].reshape(u.shape)
        start += u.numel()
        out.append(expand_blocks(m, pattern[1], s.shape[1]) if kind == "block" else m)
    return out
