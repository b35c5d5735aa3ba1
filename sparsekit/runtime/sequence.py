"""Layers over token sequences with an attention mask: dropping padding and
putting it back (the pools over a sequence's tokens: runtime/pooling.py).

    hidden [B, T, C] ──PackTokens(mask)──► real tokens [N, C] (row-major order)
    [N, C] ──(per-token layers: Linear, AddLayerNorm, SelfAttention packed)──►
    [N, C] ──UnpackTokens(mask)──► [B, T, C], 0 at padding positions

Packing lets every per-token layer run on the N real tokens instead of B * T
rows; a token's result does not depend on other rows except through attention,
which sees each sequence's own tokens either way.
"""
import numpy as np

from sparsekit._validate import as_float_array
from sparsekit.runtime.layers import Layer, register
from sparsekit.runtime.token_mask import mask_for


def as_hidden(x):
    """Hidden states as float32 (ndarrays that are already float32 pass as they
    are: the per-layer fast path); the text layers and pools share it."""
    if type(x) is np.ndarray and x.dtype == np.float32:
        return x
    return as_float_array(x, "hidden")


@register
class PackTokens(Layer):
    """[B, T, C] hidden states + attention_mask [B, T] -> the real tokens [N, C]."""

    n_inputs = 2

    def __call__(self, hidden, attention_mask):
        h = as_hidden(hidden)
        if h.ndim != 3:
            raise ValueError(f"hidden: expected [batch, tokens, C], got shape {h.shape}")
        tm = mask_for(h, attention_mask)
        flat = h.reshape(-1, h.shape[2])
        return flat if tm.full else np.take(flat, tm.rows, axis=0)


@register
class UnpackTokens(Layer):
    """Packed real tokens [N, C] + attention_mask [B, T] -> [B, T, C] with 0 at
    padding positions."""

    n_inputs = 2

    def __call__(self, packed, attention_mask):
        p = as_hidden(packed)
        if p.ndim != 2:
            raise ValueError(f"packed: expected [N, C], got shape {p.shape}")
        tm = mask_for(p, attention_mask)
        b, t = tm.shape
        if tm.full:
            return p.reshape(b, t, p.shape[1])
        out = np.zeros((b * t, p.shape[1]), np.float32)
        out[tm.rows] = p
        return out.reshape(b, t, p.shape[1])


# MeanPool lived here first; sparsekit.runtime.pooling has the pools now
from sparsekit.runtime.pooling import MeanPool  # noqa: E402,F401
