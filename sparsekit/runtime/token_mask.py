"""Checks for the integer inputs of text models (token ids, attention masks)
and the sequence offsets of a padded batch's real tokens.

    attention_mask [B, T] (1 = real token, 0 = padding)
        └ keep [B, T] bool ─► offsets int64 [B + 1]: sequence b is rows
          offsets[b]:offsets[b + 1] of the packed [N, C] real tokens
          (row-major order, N = number of ones)

These arrays come straight from the user's tokenizer, so they are checked.
A converted model checks its attention_mask once, in a PrepareMask node at the
start, which gives a TokenMask; the mask-taking layers (SelfAttention,
PackTokens, UnpackTokens, the pools) accept a TokenMask without re-checking
it (only that its shape fits the hidden states), and still check a raw mask
passed to them directly (as graphs saved before PrepareMask existed do).
"""
import numpy as np

from sparsekit.runtime.layers import Layer, register


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


class TokenMask:
    """A checked attention mask: `keep` bool [B, T]; computed on first use and
    then kept: `offsets` int64 [B + 1], `n` (real tokens), `full` (no
    padding), `rows` (flat indices of the real tokens) and `additive` (float32
    [B, 1, T]: 0 for a token, -inf for padding, the attention kernel's mask)."""

    __slots__ = ("keep", "_offsets", "_full", "_rows", "_additive")

    def __init__(self, keep):
        if type(keep) is not np.ndarray or keep.dtype != np.bool_ or keep.ndim != 2:
            raise TypeError("keep: expected a 2-D bool ndarray (see PrepareMask)")
        self.keep = keep
        self._offsets = self._full = self._rows = self._additive = None

    @property
    def shape(self):
        return self.keep.shape

    @property
    def offsets(self):
        if self._offsets is None:
            self._offsets = offsets_of(self.keep)
        return self._offsets

    @property
    def n(self):
        return int(self.offsets[-1])

    @property
    def full(self):
        if self._full is None:
            self._full = bool(self.keep.all())
        return self._full

    @property
    def rows(self):
        if self._rows is None:
            self._rows = np.flatnonzero(self.keep)
        return self._rows

    @property
    def additive(self):
        if self._additive is None:
            self._additive = np.where(self.keep, np.float32(0),
                                      np.float32(-np.inf))[:, None, :]
        return self._additive

    def __repr__(self):
        return f"TokenMask(shape={self.keep.shape}, n={self.n})"


@register
class PrepareMask(Layer):
    """attention_mask [B, T] (ints or bools, 0/1) -> a checked TokenMask, so
    that the layers after it skip the check."""

    def __call__(self, attention_mask):
        if type(attention_mask) is TokenMask:
            return attention_mask
        m = attention_mask
        if hasattr(m, "detach") and hasattr(m, "numpy"):
            m = m.detach().cpu().numpy()
        m = np.asarray(m)
        if m.ndim != 2:
            raise ValueError(f"attention_mask: expected a 2-D array [batch, tokens], got "
                             f"shape {m.shape}")
        return TokenMask(keep_of(m, m.shape))


def mask_for(hidden, mask, name="attention_mask"):
    """The TokenMask for hidden states [B, T, C] (padded) or [N, C] (packed:
    the real tokens of the mask, N of them): a TokenMask is only matched to
    the hidden states' shape, anything else is checked first."""
    if type(mask) is TokenMask:
        if hidden.ndim == 3:
            if hidden.shape[:2] != mask.keep.shape:
                raise ValueError(f"{name}: expected shape {hidden.shape[:2]} (batch, tokens) "
                                 f"like the input ids / hidden states, got {mask.keep.shape}")
        elif hidden.ndim == 2:
            if hidden.shape[0] != mask.n:
                raise ValueError(f"{name}: has {mask.n} real tokens but the packed hidden "
                                 f"states have {hidden.shape[0]} rows")
        else:
            raise ValueError(f"hidden: expected [batch, tokens, C] or packed real tokens "
                             f"[N, C], got shape {hidden.shape}")
        return mask
    return TokenMask(keep_for(hidden, mask, name))


def keep_for(hidden, mask, name="attention_mask"):
    """keep [B, T] for hidden states [B, T, C] (padded) or [N, C] (packed: the
    real tokens of the mask, N of them)."""
    if type(mask) is TokenMask:
        return mask_for(hidden, mask, name).keep
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
