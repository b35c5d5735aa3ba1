"""Checks for the integer inputs of text models (token ids, attention masks)
and the sequence offsets of a padded batch's real tokens.

    attention_mask [B, T] (1 = real token, 0 = padding)
        └ keep [B, T] bool ─► offsets int64 [B + 1]: sequence b is rows
          offsets[b]:offsets[b + 1] of the packed [N, C] real tokens
          (row-major order, N = number of ones)

Checked on every call (O(B * T), a few microseconds): these arrays come
straight from the user's tokenizer.
"""
import numpy as np


def int_ids(a, name, ndim=2):
    """`a` as an integer ndarray with `ndim` axes (floats and bools refused)."""
    if hasattr(a, "detach") and hasattr(a, "numpy"):  # a torch tensor
        a = a.detach().cpu().numpy()
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array (token ids), got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array [batch, tokens], "
                         f"got shape {arr.shape}")
    return arr


def check_range(arr, hi, name):
    """Every value of an integer array in [0, hi)."""
    if arr.size and (arr.min() < 0 or arr.max() >= hi):
        raise ValueError(f"{name}: values must be in [0, {hi}), got [{arr.min()}, "
                         f"{arr.max()}]")


def keep_of(mask, shape, name="attention_mask"):
    """bool [B, T] of an attention mask of `shape` [B, T] (ints or bools, 0/1)."""
    if hasattr(mask, "detach") and hasattr(mask, "numpy"):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask)
    if m.dtype.kind not in "iub":
        raise TypeError(f"{name}: expected an integer or bool array of 0/1, got dtype "
                        f"{m.dtype}")
    if m.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)} (batch, tokens) like the "
                         f"input ids / hidden states, got {m.shape}")
    if m.dtype == np.bool_:
        return m
    keep = m != 0
    if m.size and not np.array_equal(m, keep):
        raise ValueError(f"{name}: expected only 0 (padding) and 1 (token)")
    return keep


def offsets_of(keep):
    """int64 [B + 1] start of each sequence among the real tokens."""
    off = np.zeros(keep.shape[0] + 1, dtype=np.int64)
    np.cumsum(keep.sum(1), out=off[1:])
    return off


def keep_for(hidden, mask, name="attention_mask"):
    """keep [B, T] for hidden states [B, T, C] (padded) or [N, C] (packed: the
    real tokens of the mask, N of them)."""
    if hidden.ndim == 3:
        return keep_of(mask, hidden.shape[:2], name)
    if hidden.ndim != 2:
        raise ValueError(f"hidden: expected [batch, tokens, C] or packed real tokens "
                         f"[N, C], got shape {hidden.shape}")
    m = np.asarray(mask.detach().cpu().numpy() if hasattr(mask, "detach") else mask)
    if m.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array [batch, tokens], got shape {m.shape}")
    keep = keep_of(m, m.shape, name)
    n = int(np.count_nonzero(keep))
    if n != hidden.shape[0]:
        raise ValueError(f"{name}: has {n} real tokens but the packed hidden states have "
                         f"{hidden.shape[0]} rows")
    return keep
