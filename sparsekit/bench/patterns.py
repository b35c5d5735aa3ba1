"""Pruned weights with a chosen sparsity pattern, generated with NumPy alone.

unstructured  exactly round(s·N·K) zeros at uniformly random positions
n:m           in every group of m consecutive weights along K keep the n of
              largest magnitude (2:4 is what sparse tensor cores and
              torch.ao's semi-structured sparsity use); sparsity is 1 - n/m
RxC           whole R×C blocks (R rows by C consecutive K) are zero, e.g. 1x4,
              the block shape the VNNI dot product consumes four at a time

Values are standard normal, so pruning is equivalent to magnitude pruning of
a random matrix and the kernels see realistic, non-repeating values.
"""
import re

import numpy as np

_NM = re.compile(r"^(\d+):(\d+)$")
_BLOCK = re.compile(r"^(\d+)x(\d+)$")


def parse_pattern(text):
    """Normalised pattern name, or ValueError saying what is accepted."""
    t = text.strip().lower()
    if t == "unstructured":
        return t
    m = _NM.match(t)
    if m:
        n, g = int(m.group(1)), int(m.group(2))
        if not 0 < n < g:
            raise ValueError(f"N:M pattern {text!r} needs 0 < N < M")
        return f"{n}:{g}"
    m = _BLOCK.match(t)
    if m:
        r, c = int(m.group(1)), int(m.group(2))
        if r < 1 or c < 1 or r * c < 2:
            raise ValueError(f"block pattern {text!r} needs R, C >= 1 and R*C >= 2")
        return f"{r}x{c}"
    raise ValueError(f"unknown pattern {text!r}: expected unstructured, N:M (e.g. 2:4) "
                     "or RxC blocks (e.g. 1x4)")


def fixed_sparsity(pattern):
    """The sparsity an N:M pattern implies, or None if the pattern takes any."""
    m = _NM.match(pattern)
    return 1.0 - int(m.group(1)) / int(m.group(2)) if m else None


def pruned_weight(n, k, sparsity, pattern, rng):
    """A float32 [n, k] weight pruned to `sparsity` with `pattern`."""
    w = rng.standard_normal((n, k)).astype(np.float32)
    if pattern == "dense" or (sparsity == 0 and fixed_sparsity(pattern) is None):
        return w
    if pattern == "unstructured":
        drop = rng.permutation(n * k)[: int(round(sparsity * n * k))]
        w.reshape(-1)[drop] = 0.0
        return w
    m = _NM.match(pattern)
    if m:
        return _prune_n_of_m(w, int(m.group(1)), int(m.group(2)))
    r, c = map(int, _BLOCK.match(pattern).groups())
    return _prune_blocks(w, r, c, sparsity, rng)


def _prune_n_of_m(w, keep, group):
    n, k = w.shape
    full = k - k % group
    g = w[:, :full].reshape(n, full // group, group)
    order = np.argsort(-np.abs(g), axis=2, kind="stable")
    np.put_along_axis(g, order[:, :, keep:], 0.0, axis=2)
    if full < k:  # a short tail group keeps at most `keep` weights too
        t = w[:, full:]
        order = np.argsort(-np.abs(t), axis=1, kind="stable")
        np.put_along_axis(t, order[:, keep:], 0.0, axis=1)
    return w


def _prune_blocks(w, r, c, sparsity, rng):
    n, k = w.shape
    br, bc = -(-n // r), -(-k // c)  # tail blocks are partial
    drop = np.zeros(br * bc, dtype=bool)
    drop[rng.permutation(br * bc)[: int(round(sparsity * br * bc))]] = True
    mask = np.repeat(np.repeat(drop.reshape(br, bc), r, axis=0), c, axis=1)[:n, :k]
    w[mask] = 0.0
    return w
