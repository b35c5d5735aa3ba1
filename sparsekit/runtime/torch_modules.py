"""Drop-in torch.nn.Modules that run a runtime layer (Linear / Conv2d) on
sparsekit kernels. Tensors cross to NumPy without a copy when they are CPU,
float32 and contiguous (Tensor.numpy / torch.from_numpy share memory).

They are inference-only: they have no parameters, and calling one in training
mode, or on an input that requires grad, raises instead of returning outputs
with silently missing gradients.
"""
import copy

import numpy as np
import torch
from torch import nn


class SparsekitModule(nn.Module):
    """Runs `layer` (a sparsekit.runtime Linear or Conv2d). `reason` says why
    this format was chosen. `out_qparams` = (scale, zero_point) makes the
    output a quint8 tensor (replacing a static quantized torch module)."""

    def __init__(self, layer, reason="", source="", out_qparams=None):
        super().__init__()
        self.layer = layer
        self.reason = reason
        self.source = source
        self.out_qparams = out_qparams
        self._static = {}  # (scale, zero point) of a quantized input -> layer
        self.eval()

    def forward(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: {type(self).__name__} expects a torch.Tensor input, got "
                            f"{type(x).__name__} (wrap NumPy arrays with torch.from_numpy)")
        if self.training:
            raise RuntimeError(
                f"{type(self).__name__} is inference-only (sparsekit kernels have no "
                "backward): call model.eval(), or keep the original model for training")
        if x.requires_grad and torch.is_grad_enabled():
            raise RuntimeError(
                f"{type(self).__name__}: input requires grad but sparsekit kernels have no "
                "backward; run under torch.no_grad() / torch.inference_mode()")
        layer = self.layer
        if x.is_quantized:
            layer = self._static_layer(x)
            x = x.dequantize()
        if x.device.type != "cpu":
            raise RuntimeError(f"{type(self).__name__}: sparsekit runs on CPU, input is on "
                               f"{x.device}")
        if x.dtype != torch.float32:
            x = x.float()
        y = torch.from_numpy(layer(x.detach().numpy()))
        if self.out_qparams is not None:
            scale, zp = self.out_qparams
            y = torch.quantize_per_tensor(y, scale, zp, torch.quint8)
        return y

    def _static_layer(self, x):
        """For a quint8 per-tensor input, run the int8 kernel on exactly its
        integers (static input quantization) instead of re-quantizing per row."""
        w = self.layer.weight
        if x.dtype != torch.quint8 or x.qscheme() != torch.per_tensor_affine or \
                not hasattr(w, "with_static_input"):
            return self.layer
        key = (float(x.q_scale()), int(x.q_zero_point()))
        layer = self._static.get(key)
        if layer is None:
            layer = copy.copy(self.layer)
            layer.weight = w.with_static_input(*key)
            if len(self._static) < 16:
                self._static[key] = layer
        return layer

    def weight_nbytes(self):
        from sparsekit.runtime.weights import nbytes

        return nbytes(self.layer.weight)

    def extra_repr(self):
        from sparsekit.runtime.weights import describe

        return f"{self.layer!r}, weight={tuple(self.layer.weight.shape)} " \
               f"{describe(self.layer.weight)}"


class SparseLinear(SparsekitModule):
    @property
    def in_features(self):
        return self.layer.in_features

    @property
    def out_features(self):
        return self.layer.out_features


class SparseConv2d(SparsekitModule):
    def forward(self, x):
        # nn.Conv2d also takes one unbatched (C, H, W) image: run it as a batch of one
        if isinstance(x, torch.Tensor) and x.dim() == 3:
            return super().forward(x.unsqueeze(0)).squeeze(0)
        return super().forward(x)

    @property
    def in_channels(self):
        return self.layer.in_channels

    @property
    def out_channels(self):
        return self.layer.out_channels


def numpy_of(t):
    """float32 NumPy array sharing memory with a CPU tensor where possible."""
    t = t.detach()
    if t.is_quantized:
        t = t.dequantize()
    return np.asarray(t.to("cpu", torch.float32).numpy())
