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
import math

import numpy as np

from sparsekit.runtime.array_ops import onnx_reshape, shape_ints
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


@register
class HeadsAttention(Layer):
    """softmax(scale * q @ kt + mask) @ v on heads already split, as an ONNX
    export writes scaled dot-product attention (sparsekit.convert.onnx_attention):

        q [B, H, Tq, D], kt [B, H, D, Tk] (keys transposed), v [B, H, Tk, D],
        mask (masked=True) additive, broadcasting to [B, H, Tq, Tk]
        ─► [B, H, Tq, D] (a view of a [B, Tq, H, D] array: the export's
           Transpose + Reshape back to [B, Tq, C] then copy nothing)

    nan_to_zero: a probability that is NaN (a query whose keys are all -inf)
    becomes 0, as the export's IsNaN + Where after its Softmax do; without it
    such a query gives NaN, as a plain Softmax does. Runs attention_f32 when
    the shapes fit it (4-D, one mask for every head, float32); otherwise the
    graph's own ops in NumPy."""

    def __init__(self, scale, nan_to_zero=True, masked=True):
        self.scale = float(scale)
        if not np.isfinite(self.scale):
            raise ValueError(f"scale: expected a finite number, got {scale}")
        self.nan_to_zero = bool(nan_to_zero)
        self.masked = bool(masked)
        self.n_inputs = 4 if self.masked else 3

    def __call__(self, q, kt, v, mask=None):
        from sparsekit._validate import as_float_array

        q, kt, v = (a if type(a) is np.ndarray and a.dtype == np.float32 else
                    as_float_array(a, n) for a, n in ((q, "q"), (kt, "kt"), (v, "v")))
        m = None if mask is None else np.asarray(mask)
        out = self._kernel(q, kt, v, m)
        return self._numpy(q, kt, v, m) if out is None else out

    def _kernel(self, q, kt, v, mask):
        """attention_f32's result, or None when the shapes or the mask do not fit it."""
        core = _core()
        if core is None or q.ndim != 4 or kt.ndim != 4 or v.ndim != 4:
            return None
        b, h, tq, d = q.shape
        tk = kt.shape[3]
        if kt.shape != (b, h, d, tk) or v.shape != (b, h, tk, d) or min(q.shape) == 0 or \
                tk == 0:
            return None
        m3 = None
        if mask is not None:
            if mask.dtype != np.float32 or mask.ndim > 4 or \
                    (mask.ndim >= 3 and mask.shape[-3] != 1):
                return None  # per-head masks, other dtypes: the graph's ops
            if mask.shape == (b, 1, tq, tk):  # the export's expanded mask: no broadcast_to
                m3 = mask[:, 0]
            else:
                try:
                    m3 = np.broadcast_to(mask, (b, 1, tq, tk))[:, 0]
                except ValueError:
                    return None
            if tk > 1 and m3.strides[2] != 4:
                m3 = np.ascontiguousarray(m3)
            if not self.nan_to_zero and np.isneginf(m3).all(-1).any():
                return None  # the graph gives NaN there, the kernel 0
        qb, kb, vb = q.transpose(0, 2, 1, 3), kt.transpose(0, 3, 1, 2), v.transpose(0, 2, 1, 3)
        if d > 1:
            qb, kb, vb = (a if a.strides[3] == 4 else np.ascontiguousarray(a)
                          for a in (qb, kb, vb))
        out = np.empty((b, tq, h, d), np.float32)
        core.attention_f32(qb, kb, vb, m3, self.scale, out)
        return out.transpose(0, 2, 1, 3)

    def _numpy(self, q, kt, v, mask):
        s = np.matmul(q, kt)
        s *= np.float32(self.scale)
        if mask is not None:
            s = s + mask
        with np.errstate(invalid="ignore"):  # all keys -inf: NaN, as the graph's Softmax
            e = np.exp(s - s.max(-1, keepdims=True))
            p = e / e.sum(-1, keepdims=True)
        if self.nan_to_zero:
            p[np.isnan(p)] = 0
        return np.matmul(p, v)

    def config(self):
        return {"scale": self.scale, "nan_to_zero": self.nan_to_zero, "masked": self.masked}


@register
class QKVHeadsAttention(Layer):
    """An ONNX export's self-attention from the hidden states on: query, key
    and value projections as one Linear (weight [3C, C], rows query, key,
    value), each C-column block reshaped to heads and transposed as the
    export does, then HeadsAttention (sparsekit.convert.onnx_qkv):

        hidden [B, T, C] ─ Linear [3C, C] ─ q | k | v   (column blocks, views)
        q, v ─ Reshape(shape_q / shape_v) ─ Transpose(0, 2, 1, 3)
        k ─ Reshape(shape_k) ─ Transpose(0, 2, 3, 1)
        ─► HeadsAttention(q, kt, v [, mask])             [B, H, T, D]

    The shapes are ONNX Reshape targets (allowzero=0), given per block as a
    list of ints or None, then read from the next runtime input (the
    export's computed shapes) after hidden and the mask. per_tensor: the
    input is quantized per tensor per call (TensorQuantLinear, ORT dynamic
    int8 files) instead of runtime.Linear's per row."""

    def __init__(self, weight, bias=None, scale=1.0, nan_to_zero=True, masked=True,
                 shapes=(None, None, None), per_tensor=False):
        from sparsekit.runtime.layers import RowsLinear
        from sparsekit.runtime.tensor_quant import TensorQuantLinear

        self.per_tensor = bool(per_tensor)
        self.qkv = (TensorQuantLinear if self.per_tensor else RowsLinear)(weight, bias)
        self.weight, self.bias = self.qkv.weight, self.qkv.bias
        n3, c = self.weight.shape
        if n3 % 3:
            raise ValueError(f"weight: expected [3 C, C'] (query, key, value rows), got "
                             f"{tuple(self.weight.shape)}")
        self.block = n3 // 3
        self.attention = HeadsAttention(scale, nan_to_zero, masked)
        if len(shapes) != 3:
            raise ValueError(f"shapes: expected 3 entries (query, key, value), got {shapes!r}")
        self.shapes = [None if v is None else [int(a) for a in v] for v in shapes]
        self.n_inputs = 1 + int(self.attention.masked) + sum(v is None for v in self.shapes)

    def __call__(self, hidden, *rest):
        rest = list(rest)
        mask = rest.pop(0) if self.attention.masked else None
        qkv = self.qkv(hidden)
        c = self.block
        fast = self._kernel(qkv, mask, rest)
        if fast is not None:
            return fast
        heads = []
        for i, (shape, perm) in enumerate(zip(self.shapes, ((0, 2, 1, 3), (0, 2, 3, 1),
                                                            (0, 2, 1, 3)))):
            if shape is None:
                shape = shape_ints(rest.pop(0))
            heads.append(onnx_reshape(qkv[..., i * c:(i + 1) * c], shape).transpose(perm))
        return self.attention(*heads, mask)

    def _kernel(self, qkv, mask, shape_inputs):
        """The usual case in one attention_f32 call on column blocks of qkv
        [B, T, 3C] (views, no copies): every target is [B, T, H, C / H]
        (0 keeps B / T), mask None or float32 [B, 1, T, T] with its last axis
        contiguous (and, without nan_to_zero, no query whose keys are all
        -inf). Else None: HeadsAttention on the graph's reshapes and
        transposes (the same values)."""
        core = _core()
        if core is None or type(qkv) is not np.ndarray or qkv.ndim != 3:
            return None
        b, t, c = qkv.shape[0], qkv.shape[1], self.block
        if b * t * c == 0:
            return None
        target = None
        it = iter(shape_inputs)
        for shape in self.shapes:
            s = shape_ints(next(it)) if shape is None else list(shape)
            if len(s) != 4:
                return None
            s = [(b, t, c)[i] if v == 0 and i < 3 else v for i, v in enumerate(s)]
            if s.count(-1) == 1:  # the one inferred axis (the export's heads)
                known = -math.prod(s)
                if known <= 0 or (b * t * c) % known:
                    return None
                s[s.index(-1)] = b * t * c // known
            if s[:2] != [b, t] or min(s) < 1 or s[2] * s[3] != c or target not in (None, s[2:]):
                return None
            target = s[2:]
        m3 = None
        if mask is not None:
            if type(mask) is not np.ndarray or mask.dtype != np.float32 or \
                    mask.shape != (b, 1, t, t):
                return None
            m3 = mask[:, 0]
            if t > 1 and m3.strides[2] != 4:
                return None
            if not self.attention.nan_to_zero and np.isneginf(m3).all(-1).any():
                return None  # a query with no key: the graph gives NaN there, the kernel 0
        h, d = target
        q, k, v = (qkv[..., i * c:(i + 1) * c].reshape(b, t, h, d) for i in range(3))
        out = np.empty((b, t, h, d), np.float32)
        core.attention_f32(q, k, v, m3, self.attention.scale, out)
        return out.transpose(0, 2, 1, 3)

    def config(self):
        a = self.attention
        return {"scale": a.scale, "nan_to_zero": a.nan_to_zero, "masked": a.masked,
                "shapes": self.shapes, "per_tensor": self.per_tensor}

    def arrays(self):
        return {} if self.bias is None else {"bias": self.bias}

    @classmethod
    def from_state(cls, config, arrays, weight):
        return cls(weight, arrays.get("bias"), **config)
