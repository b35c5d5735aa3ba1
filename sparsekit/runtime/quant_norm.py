"""Normalizations of statically quantized transformers between their grids,
each in a few C passes instead of a chain of NumPy layers:

QuantLayerNorm: the end of a block, FakeQuantize(LayerNorm(FakeQuantize(a + b))).
QuantSoftmax: attention probabilities, FakeQuantize(Softmax(FakeQuantize(s) + mask))
with the export's NaN -> 0 in between.

A QDQ / QOperator BERT runs, after each residual Add, the Add's output grid,
the LayerNorm and the LayerNorm's output grid: four NumPy layers, eight
passes over fresh [rows, C] float32 tensors. core.quant_layernorm does them
row by row in chunks that stay in L2, with the same floats (NumPy's
pairwise summation order for the two means, float32 rounding at every step;
see sparsekit/_core_quant_norm.pxi). NaN or infinity on the way, a
broadcasting Add or a last axis other than the LayerNorm's run the layers.
Built by sparsekit.convert.onnx_static.fuse_quant_layernorm.
"""
import numpy as np

from sparsekit._native import AVAILABLE, core
from sparsekit.runtime import layers as L
from sparsekit.runtime.array_ops import ArrayOp
from sparsekit.runtime.layers import Layer, _f32, register


def _u8_grids(params, out_params):
    """The input and output FakeQuantize of a fused layer: uint8 grids of finite
    scale, else ValueError naming the argument."""
    grids = L.FakeQuantize(*params), L.FakeQuantize(*out_params)
    for name, fq in zip(("params", "out_params"), grids):
        if fq.signed or not np.isfinite(fq.scale):
            raise ValueError(f"{name}: expected a finite scale and a uint8 zero point")
    return grids


@register
class QuantLayerNorm(Layer):
    """FakeQuantize(out_params)(LayerNorm(FakeQuantize(params)(a + b))) for
    uint8 grids with finite scales; add=False: one input, no Add."""

    def __init__(self, params, weight, bias, eps, out_params, add=True):
        self.first, self.last = _u8_grids(params, out_params)
        self.norm = L.LayerNorm(weight, bias, eps)
        self.add = bool(add)
        self.n_inputs = 2 if self.add else 1

    def _layers(self, x):
        return self.last(self.norm(self.first(x)))

    def _c_args(self):
        args = getattr(self, "_c_args_cache", None)
        if args is None:  # the C call's constant arguments, converted once
            args = self._c_args_cache = (
                np.float32(self.first.scale), self.first.zero_point, self.norm.gamma,
                self.norm.beta, np.float32(self.norm.eps), np.float32(self.last.scale),
                self.last.zero_point)
        return args

    def __call__(self, a, b=None):
        k = self.norm.gamma.shape[0]
        if AVAILABLE and type(a) is np.ndarray and type(b) is np.ndarray and \
                a.dtype == np.float32 and b.dtype == np.float32 and a.shape == b.shape and \
                a.ndim and a.size and a.shape[-1] == k and a.flags.c_contiguous and \
                b.flags.c_contiguous:  # the usual case: the same call without the checks
            out = np.empty(a.shape, np.float32)
            try:
                core.quant_layernorm(a.reshape(-1, k), b.reshape(-1, k), *self._c_args(),
                                     out.reshape(-1, k))
                return out
            except ValueError:  # NaN or inf: the layers' own rules
                return self._layers(a + b)
        a = _f32(a, "a")
        if self.add:
            b = _f32(b, "b")
            if a.shape != b.shape:  # broadcasting (position embeddings): add first
                a, b = a + b, None
        if AVAILABLE and a.ndim and a.size and a.shape[-1] == k:
            out = np.empty(a.shape, np.float32)
            try:
                core.quant_layernorm(
                    np.ascontiguousarray(a).reshape(-1, k),
                    None if b is None else np.ascontiguousarray(b).reshape(-1, k),
                    *self._c_args(), out.reshape(-1, k))
                return out
            except ValueError:  # NaN or inf: the layers' own rules
                pass
        return self._layers(a if b is None else a + b)

    def config(self):
        return {"params": [self.first.scale, self.first.zero_point], "eps": self.norm.eps,
                "out_params": [self.last.scale, self.last.zero_point], "add": self.add}

    def arrays(self):
        return self.norm.arrays()

    @classmethod
    def from_state(cls, config, arrays, weight):
        return cls(config["params"], arrays["weight"], arrays.get("bias"), config["eps"],
                   config["out_params"], config.get("add", True))


@register
class QuantSoftmax(Layer):
    """FakeQuantize(out_params)(nan_to(Softmax(-1)(FakeQuantize(params)(x) + mask)))
    for uint8 grids with finite scales; mask=False: one input, no Add;
    nan_to: the value that replaces NaN (the export's IsNaN -> Where), or None."""

    def __init__(self, params, out_params, mask=True, nan_to=None):
        self.first, self.last = _u8_grids(params, out_params)
        self.mask = bool(mask)
        self.nan_to = None if nan_to is None else float(np.float32(nan_to))
        self.n_inputs = 2 if self.mask else 1

    def _layers(self, x, mask):
        t = self.first(x)
        y = L.Softmax(-1)(t if mask is None else L.Add()(t, mask))
        if self.nan_to is not None:
            y = ArrayOp("Where", slots=("x", "c", "x"),
                        consts={"c": np.float32([self.nan_to])})(np.isnan(y), y)
        return self.last(y)

    def _mask_rows(self, x, mask):
        """(mask as float32 [rows, T], outer, inner): x's row r reads mask row
        (r // outer) * inner + r % inner; mask False when its broadcast is
        not [B or 1, 1, ..., Tq or 1, T] against x [B, ..., Tq, T]."""
        if mask is None:
            return None, 1, 1
        rows = x.size // x.shape[-1] if x.ndim and x.shape[-1] else 0
        if type(mask) is not np.ndarray or mask.dtype != np.float32 or not rows:
            return False, 1, 1
        if mask.shape == x.shape:
            return np.ascontiguousarray(mask).reshape(-1, x.shape[-1]), 1, 1
        if x.ndim < 3 or mask.ndim != x.ndim or mask.shape[-1] != x.shape[-1] or \
                any(d != 1 for d in mask.shape[1:-2]) or mask.shape[0] not in (1, x.shape[0]) \
                or mask.shape[-2] not in (1, x.shape[-2]):
            return False, 1, 1
        outer = rows // x.shape[0] if mask.shape[0] > 1 else rows
        return np.ascontiguousarray(mask).reshape(-1, x.shape[-1]), outer, mask.shape[-2]

    def __call__(self, x, mask=None):
        x = _f32(x)
        m, outer, inner = self._mask_rows(x, mask)
        if AVAILABLE and m is not False and x.ndim and x.size:
            t = x.shape[-1]
            d = np.empty(x.shape, np.float32)
            try:
                core.quant_softmax_shift(np.ascontiguousarray(x).reshape(-1, t),
                                         np.float32(self.first.scale), self.first.zero_point,
                                         m, outer, inner, d.reshape(-1, t))
                e = np.exp(d)
                core.quant_softmax_finish(e.reshape(-1, t), self.nan_to,
                                          np.float32(self.last.scale), self.last.zero_point,
                                          d.reshape(-1, t))
                return d
            except ValueError:  # NaN or inf: the layers' own rules
                pass
        return self._layers(x, mask)

    def config(self):
        return {"params": [self.first.scale, self.first.zero_point],
                "out_params": [self.last.scale, self.last.zero_point], "mask": self.mask,
                "nan_to": self.nan_to}

    @classmethod
    def from_state(cls, config, arrays, weight):
        return cls(config["params"], config["out_params"], config.get("mask", True),
                   config.get("nan_to"))
