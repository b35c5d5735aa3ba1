"""A BERT-style encoder layer of an accelerated Hugging Face model as one
sparsekit forward (used by sparsekit.torch.accelerate after the fusions and
hf_attention.install).

When every part of a layer already runs on sparsekit (q/k/v fused into one
GEMM, sparsekit attention, the two output blocks' dense + residual add +
LayerNorm on add_layernorm_f32, the intermediate dense with its GELU fused),
the layer's forward (an instance attribute, like ResidualLayerNorm's: no module,
parameter or state_dict key changes) calls the same kernels on the same arrays
in the same order directly:

    x ─► stacked q/k/v GEMM ─► attention_f32 ─► dense ─► add_layernorm(+x) = a
      a ─► intermediate dense (+GELU) ─► dense ─► add_layernorm(+a) ─► out

so outputs are bit-identical to the module-by-module path, without the ~15
torch module calls, HF's attention plumbing and per-call checks in between
(benchmarks/RESULTS.md, "accelerate at batch 1"). Anything that path would not
run on these kernels takes the layer's own forward unchanged: training mode
(of any submodule), grad, attention switched away from "sparsekit", non-float32 / non-CPU / non-contiguous input, a mask
hf_attention does not take, cross-attention, caches, extra keyword arguments,
transformers recording per-layer outputs, and any forward hook on the
submodules (or a global one), which the direct path would skip (except
transformers' own output-capturing hooks, idle unless it records; hooks on
the layer itself run as usual around its forward).
"""
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn.modules import module as _torch_module

from sparsekit._native import core
from sparsekit.convert import hf_attention as A
from sparsekit.runtime.torch_modules import ResidualLayerNorm, SparseLinear, add_layernorm

# keyword arguments the layer may get with a value that changes nothing here
_IGNORED = A._IGNORED | {"encoder_attention_mask", "cache", "past_key_values"}


def _plain_linear(m, activation=None):
    from sparsekit.runtime.layers import Linear

    return isinstance(m, SparseLinear) and m._fused is None and m.out_qparams is None and \
        type(m.layer) is Linear and m.layer.activation == activation and \
        m.layer.out_quant is None


def _residual_block(b):
    """The output block's (dense module, LayerNorm) when it runs as
    ResidualLayerNorm with a plain sparsekit dense, else None."""
    f = b.__dict__.get("forward")
    if not (isinstance(f, ResidualLayerNorm) and f.block is b and _plain_linear(b.dense)):
        return None
    ln = b.LayerNorm
    if type(ln) is not nn.LayerNorm or ln.weight is None or ln.weight.dtype != torch.float32 \
            or (ln.bias is not None and ln.bias.dtype != torch.float32):
        return None
    return b.dense, ln


def recognise(layer):
    """The parts of a BERT-style layer (attention.self with fused q/k/v and
    the attention heads' sizes, attention.output and output as
    ResidualLayerNorm blocks, intermediate.dense with the GELU fused and
    nn.Identity after it), or None."""
    att, inter, out = (layer._modules.get(k) for k in ("attention", "intermediate", "output"))
    sa = None if att is None else att._modules.get("self")
    ao = None if att is None else att._modules.get("output")
    if sa is None or ao is None or inter is None or out is None or \
            layer.__dict__.get("crossattention") or "crossattention" in layer._modules or \
            getattr(layer, "is_decoder", True) or getattr(layer, "chunk_size_feed_forward", 1) or \
            getattr(getattr(sa, "config", None), "_attn_implementation", None) != A.NAME:
        return None
    q = sa._modules.get("query")
    group = getattr(q, "_fused", None)
    h, d = getattr(sa, "num_attention_heads", None), getattr(sa, "attention_head_size", None)
    if group is None or group[1] != 0 or len(group[0].bounds) != 3 or \
            not isinstance(h, int) or not isinstance(d, int) or \
            [b - a for a, b in group[0].bounds] != [h * d] * 3 or \
            not isinstance(inter._modules.get("intermediate_act_fn"), nn.Identity) or \
            not _plain_linear(inter._modules.get("dense"), "gelu"):
        return None
    blocks = [_residual_block(ao), _residual_block(out)]
    if None in blocks:
        return None
    return _Parts(layer, sa, group[0], ao, inter, out)


class _Parts:
    """What a recognised layer is made of, and a check that it still is."""

    def __init__(self, layer, sa, group, ao, inter, out):
        self.layer, self.sa, self.group, self.ao, self.inter, self.out = \
            layer, sa, group, ao, inter, out
        # the modules run() calls, looked up once (intact() checks they still are)
        self.ao_dense, self.ao_ln = ao.dense, ao.LayerNorm
        self.inter_dense, self.out_dense, self.out_ln = inter.dense, out.dense, out.LayerNorm
        self.signature = self._now()

    def _now(self):
        layer, sa, ao, inter, out = self.layer, self.sa, self.ao, self.inter, self.out
        att = layer._modules.get("attention")
        members = tuple(sa._modules.get(n) for n in self.group.names)
        return (att, att._modules.get("self"), att._modules.get("output"),
                layer._modules.get("intermediate"), layer._modules.get("output"),
                inter._modules.get("intermediate_act_fn"), ao._modules.get("dense"),
                inter._modules.get("dense"), out._modules.get("dense"),
                ao._modules.get("LayerNorm"), out._modules.get("LayerNorm")) + members + \
            tuple(getattr(m, "_fused", None) for m in members)

    def intact(self):
        """Still the same modules, the q/k/v group and both ResidualLayerNorm forwards."""
        return isinstance(self.ao.__dict__.get("forward"), ResidualLayerNorm) and \
            isinstance(self.out.__dict__.get("forward"), ResidualLayerNorm) and \
            self._now() == self.signature


class FusedEncoderLayer:
    """The forward of one recognised layer (see the module docstring)."""

    def __init__(self, layer, parts):
        self.layer = layer
        self.parts = parts
        self.modules = list(layer.modules())

    def __call__(self, hidden_states, attention_mask=None, encoder_hidden_states=None,
                 *args, **kwargs):
        mask = self._fast(hidden_states, attention_mask, encoder_hidden_states, args, kwargs)
        if mask is False:
            return type(self.layer).forward(self.layer, hidden_states, attention_mask,
                                            encoder_hidden_states, *args, **kwargs)
        packing = kwargs.get(A._OFFSETS)
        return torch.from_numpy(self.run(hidden_states.detach().numpy(), mask,
                                         None if packing is None else packing.offsets))

    def run(self, x, mask, offsets):
        """The layer on sparsekit's kernels for a checked input (see _fast):
        hidden states x [B, T, C] float32 NumPy in, a new array out."""
        p = self.parts
        group, sa = p.group, p.sa
        b, t, c = x.shape
        h, d = sa.num_attention_heads, sa.attention_head_size
        qkv = group.layer(x)
        q, k, v = (qkv[..., a:e].reshape(b, t, h, d) for a, e in group.bounds)
        att = np.empty((b, t, h, d), np.float32)
        scale = float(sa.scaling) if getattr(sa, "scaling", None) is not None else d ** -0.5
        core.attention_f32(q, k, v, mask, scale, att, offsets)
        a = p.ao_dense.layer(att.reshape(b, t, h * d))
        add_layernorm(a, x, p.ao_ln)
        y = p.out_dense.layer(p.inter_dense.layer(a))
        add_layernorm(y, a, p.out_ln)
        return y

    def _fast(self, x, attention_mask, encoder_hidden_states, args, kwargs):
        """The mask as attention_f32 takes it (None or a NumPy view), or False:
        run the layer's own forward."""
        p = self.parts
        if args or encoder_hidden_states is not None or type(x) is not torch.Tensor or \
                x.dim() != 3 or x.dtype != torch.float32 or x.device.type != "cpu" or \
                not x.is_contiguous() or not x.numel() or \
                not all(k in _IGNORED or not v for k, v in kwargs.items()):
            return False
        lns = (p.ao.LayerNorm, p.out.LayerNorm)
        if torch.is_grad_enabled() and (x.requires_grad or any(
                t is not None and t.requires_grad for ln in lns for t in (ln.weight, ln.bias))):
            return False
        group = p.group
        if any(m.training for m in self.modules) or not group.enabled or group.stale or \
                not p.intact() or _global_hooks() or self._hooked() or A._collecting() or \
                getattr(p.sa.config, "_attn_implementation", None) != A.NAME:
            return False  # (the last: attention switched back to sdpa since)
        b, t, _ = x.shape
        if attention_mask is None:  # attention() runs sdpa for a causal call without one
            return False if t > 1 and getattr(p.sa, "is_causal", True) else None
        if kwargs.get(A._OFFSETS) is not None:
            return False  # (the encoder's packer passes no mask with packed sequences)
        mask = A._additive_mask(attention_mask, b, t, t)
        return False if mask is False else mask

    def _hooked(self):
        """Any hook on a submodule that the direct path would skip (the q/k/v
        group's own arm / disarm hooks run nothing it needs)."""
        group = self.parts.group
        for m in self.modules:
            if not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or
                    m._backward_pre_hooks) or m is self.layer:
                continue  # (torch runs the layer's own hooks around this forward)
            if m._backward_hooks or m._backward_pre_hooks:
                return True
            for f in list(m._forward_hooks.values()) + list(m._forward_pre_hooks.values()):
                if not (m is self.parts.sa and (f == group.arm or f == group.disarm)) and \
                        not _idle_capture_hook(f):
                    return True
        return False


def _idle_capture_hook(f):
    """transformers' output-capturing hook (installed on first use of
    output_hidden_states / output_attentions and left in place): it does
    nothing unless transformers is collecting, when _fast has already
    declined."""
    return getattr(f, "__name__", None) == "output_capturing_hook" and \
        getattr(f, "__module__", None) == "transformers.utils.output_capturing"


def install(model, rows):
    """Give each recognised layer of `model` the direct forward when it
    computes the same bits as the module-by-module path on a random input."""
    by_name = {r["name"]: r for r in rows}
    for name, layer in list(model.named_modules()):
        if "forward" in layer.__dict__:
            continue
        parts = recognise(layer)
        if parts is None:
            continue
        fused = FusedEncoderLayer(layer, parts)
        if not self_check(f"layer {name!r}", fused.modules, lambda: _same_output(layer, fused)):
            continue
        layer.forward = fused
        for k in ("query", "key", "value"):
            row = by_name.get(f"{name}.attention.self.{k}" if name else f"attention.self.{k}")
            if row is not None:
                row["reason"] += "; the layer runs as one sparsekit forward (hf_layer.py)"


def self_check(what, modules, check):
    """check() with `modules` in eval mode (their flags restored after) and
    no grad: True when a direct forward may replace `what`'s own. A check
    that raises keeps the own forward too, with a RuntimeWarning naming
    `what` and the error (accelerate itself does not fail)."""
    was = [m.training for m in modules]
    try:
        for m in modules:
            m.training = False
        with torch.no_grad():
            return bool(check())
    except Exception as e:  # noqa: BLE001 - any failure means: keep the own forward
        warnings.warn(f"sparsekit.torch.accelerate: {what} keeps its own forward: checking "
                      f"its direct sparsekit forward raised {type(e).__name__}: {e}",
                      RuntimeWarning, stacklevel=2)
        return False
    finally:
        for m, w in zip(modules, was):
            m.training = w


def _same_output(layer, fused):
    """The direct path against the layer's own forward on one random input:
    bit-identical or not used."""
    p = fused.parts
    g = torch.Generator().manual_seed(0)
    c = p.ao.LayerNorm.normalized_shape[0]
    x = torch.randn(2, 5, c, generator=g)
    mask = torch.zeros(2, 1, 5, 5)
    mask[1, :, :, 3:] = float("-inf")
    for m in (None, mask):
        want = type(layer).forward(layer, x, m)  # a tensor, as the direct forward returns
        got = fused(x, m)
        if not (isinstance(want, torch.Tensor) and want.shape == got.shape and
                bool(torch.equal(got, want)) and fused._fast(x, m, None, (), {}) is not False):
            return False
    return True


def _global_hooks():
    """Any global module hook (torch.nn.modules.module.register_module_forward_hook
    and the like); True when this torch does not say."""
    f = getattr(_torch_module, "_has_any_global_hook", None)
    return True if f is None else bool(f())
