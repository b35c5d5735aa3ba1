"""Softmax attention in plain NumPy: SelfAttention's path when sparsekit's C
core (attention_f32) is not built. Same semantics as the kernel:

    per head: p = softmax(scale * q kᵀ + m), out = p v       (float32)
    padded [B, T, H, D] + keep [B, T]: masked keys get m = -inf and weigh
        exactly 0; a query whose keys are all masked gets 0
    packed [1, N, H, D] + offsets [B + 1]: sequence b (tokens offsets[b]:
        offsets[b + 1]) attends to its own tokens only

Slower than the kernel (it materialises the [H, T, T] scores), correct for
any T.
"""
import numpy as np


def _softmax_av(s, v, keep_keys=None):
    """softmax over the last axis of scores s [.., H, Tq, Tk] (in place), then
    @ v [.., H, Tk, D]; keep_keys [.., 1, 1, Tk] bool masks keys."""
    if keep_keys is not None:
        np.copyto(s, np.float32(-np.inf), where=~keep_keys)
    mx = s.max(-1, keepdims=True)
    none = mx == -np.inf  # every key masked: p = 0
    mx[none] = 0
    s -= mx
    np.exp(s, out=s)
    total = s.sum(-1, keepdims=True)
    total[none] = 1
    s /= total
    return s @ v


def attention(q, k, v, scale, keep=None, offsets=None):
    """out [B, T, H, D] float32 for q, k, v [B, T, H, D]: padded with keep
    [B, T] bool (None: no padding), or packed (B = 1) with offsets [S + 1]."""
    scale = np.float32(scale)
    if q.size == 0 or k.shape[1] == 0:  # no queries, or no keys: every query gets 0
        return np.zeros(q.shape, np.float32)
    qh, kh, vh = (np.ascontiguousarray(a.transpose(0, 2, 1, 3)) for a in (q, k, v))
    if offsets is None:  # [B, H, T, D]
        s = qh @ kh.transpose(0, 1, 3, 2)
        s *= scale
        mask = None if keep is None else keep[:, None, None, :]
        return _softmax_av(s, vh, mask).transpose(0, 2, 1, 3)
    out = np.zeros(q.shape, np.float32)
    for b in range(len(offsets) - 1):
        lo, hi = int(offsets[b]), int(offsets[b + 1])
        if hi > lo:
            qs, ks, vs = qh[0, :, lo:hi], kh[0, :, lo:hi], vh[0, :, lo:hi]
            s = qs @ ks.transpose(0, 2, 1)
            s *= scale
            out[0, lo:hi] = _softmax_av(s, vs).transpose(1, 0, 2)
    return out
