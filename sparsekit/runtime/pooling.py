"""Pooling a sequence's tokens into one vector (sentence-transformers'
Pooling modes, BERT's pooler input), padded [B, T, C] or packed [N, C]
hidden states with the attention mask (raw or a TokenMask):

    MeanPool  mean of the real tokens (no token: 0)
    MaxPool   per channel max over the real tokens (no token: -inf, as
              sentence-transformers' masked_fill(-inf).max)
    ClsPool   position 0 (the [CLS] token), as BertModel's pooler and
              sentence-transformers' cls pooling take it
    Concat    [a, b] along the last axis (several pooling modes at once)
    ─► [B, C]
"""
import numpy as np

from sparsekit.runtime.layers import Layer, register
from sparsekit.runtime.sequence import as_hidden
from sparsekit.runtime.token_mask import mask_for


@register
class MeanPool(Layer):
    """Mean of each sequence's real tokens (sentence-transformers' mean
    pooling: sum over mask / max(count, 1e-9); a sequence with no token gives
    0). hidden [B, T, C] or packed [N, C]; returns [B, C]."""

    n_inputs = 2

    def __call__(self, hidden, attention_mask):
        h = as_hidden(hidden)
        tm = mask_for(h, attention_mask)
        keep = tm.keep
        counts = np.maximum(keep.sum(1, dtype=np.float32), np.float32(1e-9))[:, None]
        if h.ndim == 3:
            s = np.einsum("btc,bt->bc", h, keep.astype(np.float32))
        else:
            off = tm.offsets
            s = np.zeros((keep.shape[0], h.shape[1]), np.float32)
            for b in range(keep.shape[0]):
                if off[b + 1] > off[b]:
                    s[b] = h[off[b]:off[b + 1]].sum(0)
        return s / counts


@register
class MaxPool(Layer):
    """Per channel max over each sequence's real tokens (sentence-transformers'
    max pooling; a sequence with no token gives -inf). hidden [B, T, C] or
    packed [N, C]; returns [B, C]."""

    n_inputs = 2

    def __call__(self, hidden, attention_mask):
        h = as_hidden(hidden)
        tm = mask_for(h, attention_mask)
        out = np.full((tm.shape[0], h.shape[-1]), -np.inf, np.float32)
        if h.ndim == 3:
            if h.shape[1]:
                np.max(np.where(tm.keep[..., None], h, np.float32(-np.inf)), axis=1, out=out)
            return out
        counts = np.diff(tm.offsets)
        some = counts > 0
        if some.any():  # reduceat from each non-empty start to the next one
            out[some] = np.maximum.reduceat(h, tm.offsets[:-1][some], axis=0)
        return out


@register
class ClsPool(Layer):
    """Each sequence's position 0 (the [CLS] token), exactly what BertModel's
    pooler and sentence-transformers' "cls" pooling take. Padded hidden
    [B, T, C]: hidden[:, 0] whatever the mask says. Packed [N, C] (padding
    dropped): position 0 must then be a real token of every sequence, as it
    is in the right-padded batches of BERT tokenizers; a left-padded
    sequence raises (convert with drop_padding=False for those). No tokens at
    all (T = 0) gives 0. Returns [B, C]."""

    n_inputs = 2

    def __call__(self, hidden, attention_mask):
        h = as_hidden(hidden)
        tm = mask_for(h, attention_mask)
        b, t = tm.shape
        if not t:
            return np.zeros((b, h.shape[-1]), np.float32)
        if h.ndim == 3:
            return np.ascontiguousarray(h[:, 0])
        starts = tm.keep[:, 0]
        if not starts.all():
            raise ValueError(
                f"attention_mask: sequence {int(np.argmin(starts))} starts with padding; "
                "cls pooling takes position 0 and packed hidden states (padding dropped) "
                "have no row for it. Pad on the right (as BERT tokenizers do) or convert "
                "with drop_padding=False")
        return h[tm.offsets[:-1]]


@register
class Concat(Layer):
    """[a, b] joined along the last axis (same leading shape)."""

    n_inputs = 2

    def __call__(self, a, b):
        a, b = as_hidden(a), as_hidden(b)
        if a.shape[:-1] != b.shape[:-1]:
            raise ValueError(f"b: expected leading shape {a.shape[:-1]} like a, got {b.shape}")
        return np.concatenate([a, b], axis=-1)
