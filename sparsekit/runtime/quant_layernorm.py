"""QuantLayerNorm: the end of a statically quantized transformer block,
FakeQuantize(LayerNorm(FakeQuantize(a + b))), in one C call.

A QDQ / QOperator BERT runs, after each residual Add, the Add's output grid,
the LayerNorm and the LayerNorm's output grid: four NumPy layers, eight
passes over fresh [rows, C] float32 tensors. core.quant_layernorm does them
row by row in chunks that stay in L2, with the same floats (NumPy's
pairwise summation order for the two means, float32 rounding at every step;
see sparsekit/_core_quant_layernorm.pxi). NaN or infinity on the way, a
broadcasting Add or a last axis other than the LayerNorm's run the layers.
Built by sparsekit.convert.onnx_static.fuse_quant_layernorm.
"""
import numpy as np

from sparsekit._native import AVAILABLE, core
from sparsekit.runtime import layers as L
from sparsekit.runtime.layers import Layer, _f32, register


@register
class QuantLayerNorm(Layer):
    """FakeQuantize(out_params)(LayerNorm(FakeQuantize(params)(a + b))) for
    uint8 grids with finite scales; add=False: one input, no Add."""

    def __init__(self, params, weight, bias, eps, out_params, add=True):
        self.first = L.FakeQuantize(*params)
        self.norm = L.LayerNorm(weight, bias, eps)
        self.last = L.FakeQuantize(*out_params)
        for name, fq in (("params", self.first), ("out_params", self.last)):
            if fq.signed or not np.isfinite(fq.scale):
                raise ValueError(f"{name}: expected a finite scale and a uint8 zero point")
        self.add = bool(add)
        self.n_inputs = 2 if self.add else 1

    def _layers(self, x):
        return self.last(self.norm(self.first(x)))

    def __call__(self, a, b=None):
        a = _f32(a, "a")
        if self.add:
            b = _f32(b, "b")
            if a.shape != b.shape:  # broadcasting (position embeddings): add first
                a, b = a + b, None
        k = self.norm.gamma.shape[0]
        if AVAILABLE and a.ndim and a.size and a.shape[-1] == k:
            out = np.empty(a.shape, np.float32)
            try:
                core.quant_layernorm(
                    np.ascontiguousarray(a).reshape(-1, k),
                    None if b is None else np.ascontiguousarray(b).reshape(-1, k),
                    np.float32(self.first.scale), self.first.zero_point, self.norm.gamma,
                    self.norm.beta, np.float32(self.norm.eps), np.float32(self.last.scale),
                    self.last.zero_point, out.reshape(-1, k))
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
