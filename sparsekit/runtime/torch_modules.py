"""Drop-in torch.nn.Modules that run a runtime layer (Linear / Conv2d) on
sparsekit kernels. Tensors cross to NumPy without a copy when they are CPU,
float32 and contiguous (Tensor.numpy / torch.from_numpy share memory).

They are inference-only: they have no parameters, and calling one in training
mode, or on an input that requires grad, raises instead of returning outputs
with silently missing gradients.
"""
import copy
import threading

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
    _fused = None  # (FusedLinears, index) when it shares one GEMM with siblings

    def forward(self, x):
        if self._fused is not None:
            group, i = self._fused
            y = group.output(self, i, x)
            if y is not None:
                return y
        return super().forward(x)

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


class FusedLinears:
    """SparseLinear members that read the same input (attention's query, key and
    value) run as one int8 GEMM over their stacked weights: the input is
    quantized once and the GEMM is wider. Each member keeps its own weight as a
    view of the stacked one (no extra memory) and runs alone whenever fusion
    does not apply.

    Inside one forward of the parent module (armed by its forward pre-hook,
    disarmed by its forward hook), the first member called with an input computes
    every member's output; each other member then gets its slice for that same
    input (the same tensor object, not modified in place since) once. Outputs
    are bit-identical to the members run alone (the activation quantization is
    per row, so the same for every member) but are strided views of one
    [..., sum of out_features] buffer. A member called with a different input
    (e.g. cross-attention, where key and value read the encoder states) turns
    the fusion off for good: the members then run alone."""

    def __init__(self, layer, bounds, parent_name=""):
        self.layer = layer
        self.bounds = bounds
        self.parent_name = parent_name
        self.enabled = True
        # per calling thread (a model may serve several threads at once):
        # [input tensor, its version, {member index: output slice}]
        self._calls = {}

    def arm(self, module, args):
        if self.enabled:
            self._calls[threading.get_ident()] = [None, None, {}]

    def disarm(self, module, args, output):
        self._calls.pop(threading.get_ident(), None)

    def output(self, member, i, x):
        """Member i's output for x, or None: run the member alone."""
        call = self._calls.get(threading.get_ident())
        if call is None or member.training or type(x) is not torch.Tensor or \
                x.dtype != torch.float32 or x.device.type != "cpu" or x.is_quantized or \
                (x.requires_grad and torch.is_grad_enabled()):
            return None
        if call[0] is x and call[1] == _version(x):
            y = call[2].pop(i, None)
            if y is not None:
                return y
        elif call[2]:  # siblings left waiting for another input
            self.enabled = False
            self._calls.clear()
            return None
        y = torch.from_numpy(self.layer(x.detach().numpy()))
        outs = [y[..., a:b] for a, b in self.bounds]
        pending = {j: o for j, o in enumerate(outs) if j != i}
        call[:] = (x, _version(x), pending) if pending else (None, None, {})
        return outs[i]

    def __getstate__(self):  # copies and pickles start with no call in flight
        state = dict(self.__dict__)
        state["_calls"] = {}
        return state


class ResidualLayerNorm:
    """The forward of a block computing LayerNorm(dropout(dense(h)) + input)
    (BERT's BertSelfOutput / BertOutput) with `dense` on sparsekit: dense's
    output is a fresh tensor, so the residual add and the LayerNorm run in
    place on it as one kernel (sparsekit add_layernorm_f32, within float
    rounding of torch's add + layer_norm). Training mode, grad, or any other
    input runs the block's own forward."""

    def __init__(self, block):
        self.block_forward = type(block).forward
        self.block = block

    def __call__(self, hidden_states, input_tensor):
        from sparsekit._native import core

        b = self.block
        ln = b.LayerNorm
        y = None
        if not b.training and type(input_tensor) is torch.Tensor and \
                input_tensor.dtype == torch.float32 and input_tensor.device.type == "cpu" \
                and input_tensor.is_contiguous() and ln.weight.dtype == torch.float32 and \
                not (torch.is_grad_enabled() and (input_tensor.requires_grad or
                                                  ln.weight.requires_grad)):
            y = b.dense(hidden_states)
        if y is None or y.shape != input_tensor.shape or not y.is_contiguous():
            if y is None:
                return self.block_forward(b, hidden_states, input_tensor)
            return ln(b.dropout(y) + input_tensor) if hasattr(b, "dropout") else \
                ln(y + input_tensor)
        n = y.shape[-1]
        bias = None if ln.bias is None else ln.bias.detach().numpy()
        core.add_layernorm_f32(y.numpy().reshape(-1, n), input_tensor.detach().numpy()
                               .reshape(-1, n), ln.weight.detach().numpy(), bias,
                               float(ln.eps))
        return y

    def __deepcopy__(self, memo):
        import copy as _copy

        return ResidualLayerNorm(_copy.deepcopy(self.block, memo))


def _version(t):
    # inference tensors have no version counter (reading it raises, slowly);
    # they cannot be modified in place outside inference mode either
    return None if t.is_inference() else t._version


def numpy_of(t):
    """float32 NumPy array sharing memory with a CPU tensor where possible."""
    t = t.detach()
    if t.is_quantized:
        t = t.dequantize()
    return np.asarray(t.to("cpu", torch.float32).numpy())
