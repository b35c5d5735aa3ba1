"""Torch-free layers: NumPy glue around sparsekit.linear.

Tensors are float32 NumPy arrays; images are NCHW (PyTorch/ONNX layout; the
Keras importer inserts Transpose layers). Linear and Conv2d hold one weight in
a sparsekit format (CSRMatrix, QuantizedMatrix, SparseInt8Matrix) or a dense
float32 array; Conv2d lowers to the same linear kernels (direct for 1x1,
im2col otherwise).

Each layer knows how to describe itself for sparsekit.save: `config()` gives
JSON-able settings, `arrays()` named float arrays, and `weight` (if any) is
serialised by its format. `from_state(config, arrays, weight)` rebuilds it.
"""
import math

import numpy as np

import sparsekit
from sparsekit._native import AVAILABLE as _NATIVE
from sparsekit._native import core as _core
from sparsekit._validate import as_float_array, check_bias
from sparsekit.formats import ACTIVATIONS
from sparsekit.runtime import int8_chain
from sparsekit.runtime.int8_chain import U8Activations

LAYERS = {}


def register(cls):
    LAYERS[cls.__name__] = cls
    return cls


def _f32(x, name="x"):
    x = as_float_array(x, name)
    return x


def _ints(v, n, name):
    if isinstance(v, (int, np.integer)):
        v = (int(v),) * n
    v = tuple(int(a) for a in v)
    if len(v) != n or min(v) < 0:
        raise ValueError(f"{name}: expected {n} non-negative ints, got {v}")
    return v


class Layer:
    n_inputs = 1
    weight = None

    def config(self):
        return {}

    def arrays(self):
        return {}

    @classmethod
    def from_state(cls, config, arrays, weight):
        return cls(**config, **arrays)

    def __repr__(self):
        cfg = ", ".join(f"{k}={v}" for k, v in self.config().items())
        return f"{type(self).__name__}({cfg})"


def _check_weight(weight):
    if isinstance(weight, np.ndarray) or (hasattr(weight, "detach") and hasattr(weight, "numpy")):
        w = np.ascontiguousarray(as_float_array(weight, "weight", ndim=2))
        return w
    if not (hasattr(weight, "_linear") and hasattr(weight, "shape")):
        raise TypeError(f"weight: expected a sparsekit weight format or a float [N, K] "
                        f"array, got {type(weight).__name__}")
    return weight


@register
class Linear(Layer):
    """y = act(x @ W.T + b) over the last axis; W is [out, in].

    out_quant=(scale, zero_point), for an int8 W: a large output (at least
    runtime.int8_chain.CHAIN_MIN_BYTES in fp32) is u8
    (runtime.int8_chain.U8Activations) quantized with them, for a next int8
    Linear that takes its integers; a u8 input is taken the same way."""

    def __init__(self, weight, bias=None, activation=None, out_quant=None):
        self.weight = _check_weight(weight)
        self.out_features, self.in_features = self.weight.shape
        self.bias = check_bias(bias, self.out_features)
        if activation not in (None, "relu", "gelu"):
            raise ValueError(f"activation: expected None, 'relu' or 'gelu', got {activation!r}")
        self.activation = activation
        self.out_quant = None
        if out_quant is not None:
            self.out_quant = int8_chain.check_out_quant(self.weight, out_quant)

    def __call__(self, x):
        if self.out_quant is not None or type(x) is U8Activations:
            return int8_chain.run(self, x)
        return self._call_f32(x)

    def _call_f32(self, x):
        w = self.weight
        if type(x) is np.ndarray and x.dtype == np.float32 and x.ndim >= 2 and \
                x.flags.c_contiguous and x.shape[-1] == self.in_features and \
                hasattr(w, "_linear") and x.size and \
                (self.activation != "gelu" or getattr(w, "_fused_gelu", False)):
            # lean path: weight and bias were validated at construction
            y = w._linear(x.reshape(-1, self.in_features), self.bias,
                          ACTIVATIONS[self.activation], "auto")
            return y.reshape(x.shape[:-1] + (self.out_features,))
        return sparsekit.linear(x, w, self.bias, self.activation)

    def config(self):
        if self.out_quant is None:
            return {"activation": self.activation}
        return {"activation": self.activation, "out_quant": list(self.out_quant)}

    def arrays(self):
        return {} if self.bias is None else {"bias": self.bias}

    @classmethod
    def from_state(cls, config, arrays, weight):
        return cls(weight, arrays.get("bias"), **config)


def conv_weight_hwc(w):
    """A PyTorch/ONNX conv weight [out, in, kh, kw] as the runtime's [out, kh*kw*in]
    (columns ordered kh, kw, in: each patch row is copied from NHWC memory in
    runs of `in` contiguous values)."""
    w = np.asarray(w)
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(w.shape[0], -1)


@register
class Conv2d(Layer):
    """2-D convolution; input and output are NCHW arrays (the output is an NCHW
    view of NHWC memory, which the next conv / pool reads without a copy).

    weight: a format of shape [out, kh * kw * in] with columns in (kh, kw, in)
    order (see conv_weight_hwc), or a dense float array [out, in, kh, kw].
    padding: int, (ph, pw) or (top, bottom, left, right). groups must be 1.
    Lowering: a 1x1 stride-1 conv is one linear on the NHWC rows; otherwise
    im2col copies kh*kw shifted windows into [N*OH*OW, kh*kw*in] rows."""

    def __init__(self, weight, bias=None, in_channels=None, kernel_size=None, stride=1,
                 padding=0, dilation=1, activation=None):
        if isinstance(weight, np.ndarray) and weight.ndim == 4:
            o, c, kh, kw = weight.shape
            in_channels, kernel_size = c, (kh, kw)
            weight = conv_weight_hwc(weight)
        if in_channels is None or kernel_size is None:
            raise ValueError("in_channels/kernel_size: needed when weight is 2-D")
        self.in_channels = int(in_channels)
        self.kernel_size = _ints(kernel_size, 2, "kernel_size")
        self.stride = _ints(stride, 2, "stride")
        self.dilation = _ints(dilation, 2, "dilation")
        if min(self.stride) < 1 or min(self.dilation) < 1 or min(self.kernel_size) < 1:
            raise ValueError("stride/dilation/kernel_size: must be >= 1")
        p = padding
        if isinstance(p, (int, np.integer)):
            p = (int(p),) * 4
        elif len(p) == 2:
            p = (p[0], p[0], p[1], p[1])
        self.padding = _ints(p, 4, "padding")
        self.weight = _check_weight(weight)
        self.out_channels, kk = self.weight.shape
        kh, kw = self.kernel_size
        if kk != self.in_channels * kh * kw:
            raise ValueError(f"weight: expected {self.in_channels * kh * kw} columns "
                             f"(kh * kw * in_channels), got {kk}")
        self.bias = check_bias(bias, self.out_channels)
        if activation not in (None, "relu"):
            raise ValueError(f"activation: expected None or 'relu', got {activation!r}")
        self.activation = activation

    def _patches(self, x):
        """[N*OH*OW, kh*kw*C] rows, OH, OW."""
        n, c, h, w = x.shape
        kh, kw = self.kernel_size
        sh, sw = self.stride
        dh, dw = self.dilation
        pt, pb, pl, pr = self.padding
        xh = x.transpose(0, 2, 3, 1)  # NHWC view: free when x came from a Conv2d
        if (kh, kw, sh, sw) == (1, 1, 1, 1) and not any(self.padding):
            return np.ascontiguousarray(xh).reshape(n * h * w, c), h, w
        hp, wp = h + pt + pb, w + pl + pr
        oh, ow = (hp - (kh - 1) * dh - 1) // sh + 1, (wp - (kw - 1) * dw - 1) // sw + 1
        if oh <= 0 or ow <= 0:
            raise ValueError(f"x: input {h}x{w} is smaller than the kernel "
                             f"{(kh - 1) * dh + 1}x{(kw - 1) * dw + 1}")
        if any(self.padding):
            xp = np.zeros((n, hp, wp, c), np.float32)
            xp[:, pt:pt + h, pl:pl + w] = xh
        else:
            xp = xh
        rows = np.empty((n, oh, ow, kh, kw, c), np.float32)
        for i in range(kh):
            r0 = i * dh
            for j in range(kw):
                c0 = j * dw
                rows[:, :, :, i, j] = xp[:, r0:r0 + sh * (oh - 1) + 1:sh,
                                         c0:c0 + sw * (ow - 1) + 1:sw]
        return rows.reshape(n * oh * ow, kh * kw * c), oh, ow

    def __call__(self, x):
        x = _f32(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected NCHW with C = {self.in_channels}, got {x.shape}")
        rows, oh, ow = self._patches(x)
        y = sparsekit.linear(rows, self.weight, self.bias, self.activation)
        return y.reshape(x.shape[0], oh, ow, self.out_channels).transpose(0, 3, 1, 2)

    def config(self):
        return {"in_channels": self.in_channels, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": list(self.padding),
                "dilation": list(self.dilation), "activation": self.activation}

    def arrays(self):
        return {} if self.bias is None else {"bias": self.bias}

    @classmethod
    def from_state(cls, config, arrays, weight):
        return cls(weight, arrays.get("bias"), **config)


@register
class ReLU(Layer):
    def __call__(self, x):
        return np.maximum(_f32(x), 0)


@register
class Sigmoid(Layer):
    def __call__(self, x):
        x = _f32(x)
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


@register
class Tanh(Layer):
    def __call__(self, x):
        return np.tanh(_f32(x))


def _erf(x):
    """erf for float32 work (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7);
    NumPy has no erf and SciPy is optional."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                          + t * 1.061405429))))
    return s * (1.0 - poly * np.exp(-a * a))


@register
class GELU(Layer):
    """0.5 x (1 + erf(x / sqrt 2)); approximate="tanh" for the tanh form."""

    def __init__(self, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate: expected 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def __call__(self, x):
        x = _f32(x).astype(np.float64)
        if self.approximate == "tanh":
            y = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        else:
            y = 0.5 * x * (1 + _erf(x / math.sqrt(2)))
        return y.astype(np.float32)

    def config(self):
        return {"approximate": self.approximate}


@register
class Softmax(Layer):
    """Softmax over `axis`; flatten=True: over all the axes from `axis` on as
    one (ONNX Softmax before opset 13, which coerces the input to 2-D there)."""

    def __init__(self, axis=-1, flatten=False):
        self.axis = int(axis)
        self.flatten = bool(flatten)

    def __call__(self, x):
        x = _f32(x)
        shape, axis = x.shape, self.axis
        if self.flatten and x.ndim:
            axis = axis % x.ndim
            x = x.reshape(shape[:axis] + (-1,))
            axis = -1
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return (e / e.sum(axis=axis, keepdims=True)).reshape(shape)

    def config(self):
        return {"axis": self.axis, "flatten": self.flatten}


@register
class LayerNorm(Layer):
    """Normalise over the last axis, then scale by weight and shift by bias."""

    def __init__(self, weight, bias=None, eps=1e-5):
        self.weight = None
        self.gamma = np.ascontiguousarray(as_float_array(weight, "weight", ndim=1))
        self.beta = check_bias(bias, self.gamma.shape[0])
        self.eps = float(eps)

    def __call__(self, x):
        x = _f32(x)
        k = self.gamma.shape[0]
        if x.shape[-1] != k:
            raise ValueError(f"x: expected last dimension {k}, got {x.shape}")
        if _NATIVE and x.size and x.flags.c_contiguous:
            # the same steps in C, bit for bit (pairwise sums as NumPy's),
            # rows split over threads
            y = np.empty(x.shape, np.float32)
            _core.layernorm_f32(x.reshape(-1, k), self.gamma, self.beta, self.eps,
                                y.reshape(-1, k))
            return y
        mu = x.mean(axis=-1, keepdims=True)
        d = x - mu
        var = (d * d).mean(axis=-1, keepdims=True)
        y = d / np.sqrt(var + self.eps) * self.gamma
        return y + self.beta if self.beta is not None else y

    def config(self):
        return {"eps": self.eps}

    def arrays(self):
        a = {"weight": self.gamma}
        if self.beta is not None:
            a["bias"] = self.beta
        return a



@register
class AddLayerNorm(LayerNorm):
    """LayerNorm(a + b) over the last axis (a transformer block's residual add
    and its LayerNorm): one pass of sparsekit's add_layernorm_f32 kernel from
    `a` into a fresh array when the C core is built, else NumPy."""

    n_inputs = 2

    def __call__(self, a, b):
        a, b = _f32(a, "a"), _f32(b, "b")
        if a.shape != b.shape:
            raise ValueError(f"b: expected shape {a.shape} like a, got {b.shape}")
        n = self.gamma.shape[0]
        if a.ndim == 0 or a.shape[-1] != n:
            raise ValueError(f"a: expected last dimension {n}, got {a.shape}")
        if not _NATIVE:
            return super().__call__(a + b)
        # y written from a in the kernel's threaded rows (no NumPy copy of a first)
        y = np.empty(a.shape, np.float32)
        _core.add_layernorm_f32(y.reshape(-1, n), np.ascontiguousarray(b).reshape(-1, n),
                               self.gamma, self.beta, self.eps,
                               np.ascontiguousarray(a).reshape(-1, n))
        return y


@register
class L2Normalize(Layer):
    """x / max(||x||, eps) over the last axis (torch.nn.functional.normalize)."""

    def __init__(self, eps=1e-12):
        self.eps = float(eps)

    def __call__(self, x):
        x = _f32(x)
        norm = np.sqrt((x.astype(np.float64) ** 2).sum(-1, keepdims=True))
        return (x / np.maximum(norm, self.eps)).astype(np.float32)

    def config(self):
        return {"eps": self.eps}

class _Pool2d(Layer):
    def __init__(self, kernel_size, stride=None, padding=0):
        self.kernel_size = _ints(kernel_size, 2, "kernel_size")
        self.stride = _ints(stride if stride is not None else kernel_size, 2, "stride")
        p = padding
        if isinstance(p, (int, np.integer)):
            p = (int(p),) * 4
        elif len(p) == 2:
            p = (p[0], p[0], p[1], p[1])
        self.padding = _ints(p, 4, "padding")
        if min(self.stride) < 1 or min(self.kernel_size) < 1:
            raise ValueError("kernel_size/stride: must be >= 1")

    def _reduce(self, x, fill, op):
        """op-fold of the kh*kw shifted strided views (elementwise, any layout)."""
        x = _f32(x)
        if x.ndim != 4:
            raise ValueError(f"x: expected NCHW, got shape {x.shape}")
        pt, pb, pl, pr = self.padding
        n, c, h, w = x.shape
        if any(self.padding):
            xp = np.full((n, h + pt + pb, w + pl + pr, c), fill, np.float32)
            xp[:, pt:pt + h, pl:pl + w] = x.transpose(0, 2, 3, 1)
            x = xp.transpose(0, 3, 1, 2)
        kh, kw = self.kernel_size
        sh, sw = self.stride
        hp, wp = x.shape[2], x.shape[3]
        if hp < kh or wp < kw:
            raise ValueError(f"x: input {x.shape[2:]} smaller than the pool {kh}x{kw}")
        oh, ow = (hp - kh) // sh + 1, (wp - kw) // sw + 1
        out = None
        for i in range(kh):
            for j in range(kw):
                v = x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
                out = v.copy(order="K") if out is None else op(out, v, out=out)
        return out

    def config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding)}


@register
class MaxPool2d(_Pool2d):
    def __call__(self, x):
        return self._reduce(x, -np.inf, np.maximum)


@register
class AvgPool2d(_Pool2d):
    """Average over the window; padded cells count (count_include_pad=True)."""

    def __call__(self, x):
        out = self._reduce(x, 0.0, np.add)
        out *= np.float32(1.0 / (self.kernel_size[0] * self.kernel_size[1]))
        return out


@register
class GlobalAvgPool2d(Layer):
    """NCHW -> NC11 mean over H and W (keepdims like ONNX GlobalAveragePool)."""

    def __init__(self, keepdims=True):
        self.keepdims = bool(keepdims)

    def __call__(self, x):
        x = _f32(x)
        return x.mean(axis=(2, 3), keepdims=self.keepdims, dtype=np.float32)

    def config(self):
        return {"keepdims": self.keepdims}


@register
class Flatten(Layer):
    """Collapse axes start..end into one (PyTorch default: all but the batch)."""

    def __init__(self, start_dim=1):
        self.start_dim = int(start_dim)

    def __call__(self, x):
        x = _f32(x)
        return x.reshape(x.shape[:self.start_dim] + (-1,))

    def config(self):
        return {"start_dim": self.start_dim}


@register
class Transpose(Layer):
    def __init__(self, axes):
        self.axes = [int(a) for a in axes]

    def __call__(self, x):
        return np.ascontiguousarray(np.transpose(_f32(x), self.axes))

    def config(self):
        return {"axes": self.axes}


@register
class Identity(Layer):
    def __call__(self, x):
        return x


@register
class Add(Layer):
    """Residual add of two tensors (broadcasting)."""
    n_inputs = 2

    def __call__(self, a, b):
        return _f32(a, "a") + _f32(b, "b")


@register
class FakeQuantize(Layer):
    """Round to a uint8/int8 grid and back: (clip(round(x/s) + zp) - zp) * s.
    Stands for a quantized activation tensor (static quantization, QDQ).

    Follows ONNX Runtime's QuantizeLinear / DequantizeLinear where ONNX leaves
    it open: NaN quantizes to the lowest code (0 or -128), and an infinite
    scale (ORT's calibration gives one to tensors holding -inf, such as a
    BERT's additive attention mask) is allowed: x / inf rounds to the zero
    point, and dequantizing multiplies by inf (so 0 * inf is NaN), as there."""

    def __init__(self, scale, zero_point=0, signed=False):
        self.scale = float(scale)
        self.zero_point = int(zero_point)
        self.signed = bool(signed)
        if not self.scale > 0:  # NaN fails too
            raise ValueError(f"scale: expected a positive number (or inf), got {scale}")
        lo, hi = (-128, 127) if self.signed else (0, 255)
        if not lo <= self.zero_point <= hi:
            raise ValueError(f"zero_point: expected in [{lo}, {hi}], got {zero_point}")

    def __call__(self, x):
        x = _f32(x)
        s = np.float32(self.scale)
        if not self.signed and self.scale < math.inf and x.ndim and x.size:
            # uint8: the C static quantizer (the int8 kernels' own, the same
            # integers) and the dequantization in one call, in L2-sized chunks
            if _NATIVE:
                t = np.empty(x.shape, np.float32)
                try:
                    _core.quantize_lookup(np.ascontiguousarray(x).reshape(-1, x.shape[-1]), s,
                                         self.zero_point, None,
                                         t.reshape(-1, x.shape[-1]))
                except ValueError:  # NaN or inf in x: the NumPy path says what ORT does
                    pass
                else:
                    return t
        lo, hi = (-128, 127) if self.signed else (0, 255)
        # clip(rint(x / s) + zp) - zp == clip(rint(x / s), lo - zp, hi - zp): the
        # same integers in float32, two passes fewer; fmax / fmin send NaN to lo
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.divide(x, s, dtype=np.float32)
            np.rint(t, out=t)
            np.fmax(t, np.float32(lo - self.zero_point), out=t)
            np.fmin(t, np.float32(hi - self.zero_point), out=t)
            t *= s
        return t

    def config(self):
        return {"scale": self.scale, "zero_point": self.zero_point, "signed": self.signed}


@register
class Reshape(Layer):
    """Reshape to `shape`, whose entries follow ONNX (0 copies the input's
    size at that axis, e.g. the batch; -1 is inferred)."""

    def __init__(self, shape):
        self.shape = [int(s) for s in shape]

    def __call__(self, x):
        x = _f32(x)
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)]
        return x.reshape(shape)

    def config(self):
        return {"shape": self.shape}


@register
class AddConst(Layer):
    """x + c for a constant c (broadcasting)."""

    def __init__(self, value):
        self.value = np.ascontiguousarray(as_float_array(value, "value"))

    def __call__(self, x):
        return _f32(x) + self.value

    def arrays(self):
        return {"value": self.value}


@register
class MulConst(Layer):
    """x * c for a constant c (broadcasting)."""

    def __init__(self, value):
        self.value = np.ascontiguousarray(as_float_array(value, "value"))

    def __call__(self, x):
        return _f32(x) * self.value

    def arrays(self):
        return {"value": self.value}


@register
class BroadcastAddLayerNorm(AddLayerNorm):
    """AddLayerNorm whose two inputs may broadcast (an imported graph's shapes
    are known only at run time, e.g. BERT's embeddings: [B, T, H] + [1, T, H]):
    the add_layernorm kernel when the shapes agree, else LayerNorm(a + b)."""

    def __call__(self, a, b):
        if np.shape(a) == np.shape(b):
            return super().__call__(a, b)
        return LayerNorm.__call__(self, _f32(a, "a") + _f32(b, "b"))


@register
class RowsLinear(Linear):
    """Linear that runs a [..., K] input as one [rows, K] product: for a dense
    weight one GEMM, where NumPy's x @ w.T on a 3-D x runs one small GEMM per
    batch item (the ONNX importer's MatMul layers get [batch, tokens, K])."""

    def __call__(self, x):
        if type(x) is U8Activations or self.out_quant is not None:
            return super().__call__(x)  # int8_chain runs [..., K] as rows itself
        x = np.asarray(x)
        if x.ndim > 2:
            y = super().__call__(x.reshape(-1, x.shape[-1]))
            return y.reshape(x.shape[:-1] + (self.out_features,))
        return super().__call__(x)
