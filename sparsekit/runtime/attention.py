"""Multi-head self-attention (bidirectional, BERT encoder style) on sparsekit's
attention_f32 kernel, with query, key and value as one fused Linear.

    hidden [B, T, C] + attention_mask [B, T]          (padded batch)
    or packed real tokens [N, C] + attention_mask     (see PackTokens)
        └ qkv = Linear(W [3C, C], b [3C])(hidden)     one GEMM, input read (and
                                                       for int8 quantized) once
        └ q, k, v = column blocks of qkv, viewed as [.., T, heads, C / heads]
        └ attention_f32: softmax(scale * q . k + mask) @ v per head
          (runtime.attention_numpy when the C core is not built)
             padded: masked keys get -inf (weigh exactly 0)
             packed: each sequence attends to its own tokens only (offsets)
        ─► [B, T, C] or [N, C]

The output projection (BERT's attention.output.dense) is a separate Linear.
The weight is stored as one [3C, C] matrix in any sparsekit format (rows:
query, then key, then value), so save / load handle it like a Linear's.
"""
import numpy as np

from sparsekit.runtime.layers import Layer, Linear, register
from sparsekit.runtime.token_mask import mask_for


def _core():
    """The C core, or None when it is not built (then attention runs in NumPy:
    runtime.attention_numpy)."""
    from sparsekit import _native

    return _native.core if _native.AVAILABLE else None


@register
class SelfAttention(Layer):
    """weight [3C, C] (query, key, value rows stacked; a sparsekit format or a
    float array), bias [3C] or None, num_heads dividing C, scale (default
    1 / sqrt(C / num_heads)). Inputs: hidden, attention_mask."""

    n_inputs = 2

    def __init__(self, weight, bias=None, num_heads=1, scale=None):
        self.qkv = Linear(weight, bias)
        self.weight = self.qkv.weight
        self.bias = self.qkv.bias
        n3, c = self.weight.shape
        if n3 != 3 * c:
            raise ValueError(f"weight: expected [3 C, C] (query, key, value rows), got "
                             f"{tuple(self.weight.shape)}")
        self.num_heads = int(num_heads)
        if self.num_heads < 1 or c % self.num_heads:
            raise ValueError(f"num_heads: expected a divisor of C = {c}, got {num_heads}")
        self.hidden_size = c
        self.scale = float(scale) if scale is not None else (c // self.num_heads) ** -0.5
        if not np.isfinite(self.scale):
            raise ValueError(f"scale: expected a finite number, got {scale}")

    def __call__(self, hidden, attention_mask):
        h = hidden
        if type(h) is not np.ndarray or h.dtype != np.float32:
            from sparsekit._validate import as_float_array

            h = as_float_array(h, "hidden")
        c, nh = self.hidden_size, self.num_heads
        if h.ndim not in (2, 3) or h.shape[-1] != c:
            raise ValueError(f"hidden: expected [batch, tokens, {c}] or packed [N, {c}], "
                             f"got shape {h.shape}")
        tm = mask_for(h, attention_mask)
        qkv = self.qkv(h)
        lead = h.shape[:-1] if h.ndim == 3 else (1,) + h.shape[:1]
        q, k, v = (qkv[..., i * c:(i + 1) * c].reshape(lead + (nh, c // nh))
                   for i in range(3))
        core = _core()
        if core is None:
            from sparsekit.runtime.attention_numpy import attention

            out = attention(q, k, v, self.scale, None if h.ndim == 2 or tm.full else tm.keep,
                            tm.offsets if h.ndim == 2 else None)
            return np.ascontiguousarray(out).reshape(h.shape)
        out = np.empty(lead + (nh, c // nh), np.float32)
        if h.ndim == 3:
            b, t = lead
            mask = None if tm.full else np.broadcast_to(tm.additive, (b, t, t))
            core.attention_f32(q, k, v, mask, self.scale, out)
        else:
            core.attention_f32(q, k, v, None, self.scale, out, tm.offsets)
        return out.reshape(h.shape)

    def config(self):
        return {"num_heads": self.num_heads, "scale": self.scale}

    def arrays(self):
        return {} if self.bias is None else {"bias": self.bias}

    @classmethod
    def from_state(cls, config, arrays, weight):
        return cls(weight, arrays.get("bias"), **config)
