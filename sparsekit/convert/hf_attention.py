"""Hugging Face transformers encoders on sparsekit's attention kernel, with
padding tokens dropped (used by sparsekit.torch.accelerate; transformers >= 5).

    BertModel-style model (config._attn_implementation "sdpa")
      └ set to "sparsekit": attention() below, registered in transformers'
        AttentionInterface (masks built as for sdpa)
      └ encoder hooks (padded batch with a key-padding mask):
          pre:  hidden [B, T, C] ─► real tokens only [1, N, C] + offsets of the
                sequences; every Linear / LayerNorm / GELU in the layers then
                runs on N rows instead of B*T
          attention(): attention_f32 over each sequence's own tokens
          post: [1, N, C] ─► [B, T, C], padding positions set to 0

Real tokens get the same outputs as with padding (masked keys weigh exactly 0
in either case; per-token int8 quantization and LayerNorm do not look at other
rows). Padding positions of the encoder output are 0 instead of the values the
model computes for tokens no one attends to (mean pooling with the attention
mask, CLS pooling and token heads on real tokens do not read them).
Anything else (training, grad, dropout, causal or sliding-window attention,
returned attention weights, collected hidden states, GPU, non-float32, a mask
that is not plain key padding) takes transformers' own sdpa path unchanged.
"""
import numpy as np
import torch

NAME = "sparsekit"
_OFFSETS = "sparsekit_packing"  # kwarg carrying a _Packing from the encoder to attention()
# keyword arguments attention() may see with a value that changes nothing here
_IGNORED = {"position_ids", "output_attentions", _OFFSETS}
# encoder arguments that stay in the encoder (checked in _Packer.pre); any
# other keyword argument travels on to attention()
_ENCODER_ARGS = {"hidden_states", "attention_mask", "encoder_hidden_states",
                 "encoder_attention_mask", "cache", "past_key_values", "use_cache"}


def _core():
    from sparsekit._native import AVAILABLE, core

    return core if AVAILABLE and hasattr(core, "attention_f32") else None


def _plain(*ts):
    """CPU float32 tensors with no autograd to honour."""
    grad = torch.is_grad_enabled()
    return all(t.device.type == "cpu" and t.dtype == torch.float32 and
               not (grad and t.requires_grad) for t in ts)


def _additive_mask(mask, b, tq, tk):
    """A [b, tq, tk] float32 NumPy view (zero strides where broadcast) of an
    sdpa-style mask [b|1, 1, tq|1, tk] (bool: True = attend, or additive
    float), or False when it has another form."""
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, b) or \
            mask.shape[2] not in (1, tq) or mask.shape[3] != tk or mask.device.type != "cpu":
        return False
    if mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=torch.float32).masked_fill_(~mask, float("-inf"))
    elif mask.dtype != torch.float32:
        return False
    m = mask.detach().numpy()[:, 0]
    if m.strides[2] != 4:
        m = np.ascontiguousarray(m)
    return np.broadcast_to(m, (b, tq, tk))


def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
              is_causal=None, **kwargs):
    """transformers attention interface: query [B, H, Tq, D], key/value
    [B, H, Tk, D] -> ([B, Tq, H, D], None)."""
    core = _core()
    packing = kwargs.get(_OFFSETS)
    offsets = None if packing is None else packing.offsets
    b, h, tq, d = query.shape
    tk = key.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    fast = core is not None and _plain(query, key, value) and \
        (dropout == 0.0 or not module.training) and key.shape[1] == h and \
        not (tq > 1 and attention_mask is None and causal) and \
        all(k in _IGNORED or not v for k, v in kwargs.items())
    mask = None
    if fast and attention_mask is not None:
        mask = _additive_mask(attention_mask, b, tq, tk)
        fast = mask is not False and offsets is None
    if not fast:
        if offsets is not None:
            raise RuntimeError("sparsekit attention: packed sequences reached an attention "
                               "call it cannot run")
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        kwargs.pop(_OFFSETS, None)
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, is_causal=is_causal,
                                      **kwargs)
    scale = float(scaling) if scaling is not None else d ** -0.5
    out = torch.empty((b, tq, h, d), dtype=torch.float32)
    q, k, v = (t.detach().numpy().transpose(0, 2, 1, 3) for t in (query, key, value))
    core.attention_f32(q, k, v, mask, scale, out.numpy(), offsets)
    return out, None


def install(model, drop_padding=True):
    """Switch every transformers sub-model of `model` that uses "sdpa" to
    attention(), and (drop_padding) pack its encoder when it is a plain
    bidirectional one. Returns report rows."""
    try:  # transformers >= 5; older versions keep their own attention
        from transformers import AttentionInterface  # noqa: F401
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask  # noqa: F401
    except ImportError:
        return []
    if _core() is None:
        return []
    _register()
    rows = []
    for name, m in model.named_modules():
        cfg = getattr(m, "config", None)
        if not hasattr(m, "set_attn_implementation") or \
                getattr(cfg, "_attn_implementation", None) != "sdpa":
            continue
        m.set_attn_implementation(NAME)
        if cfg._attn_implementation != NAME:
            continue
        m._sparsekit_attention = _Registration()
        reason = "attention: sparsekit attention_f32 kernel (sdpa otherwise)"
        enc = getattr(m, "encoder", None)
        if drop_padding and enc is not None and \
                isinstance(getattr(enc, "layer", None), torch.nn.ModuleList) \
                and not getattr(cfg, "is_decoder", False) and \
                not getattr(cfg, "add_cross_attention", False):
            packer = _Packer(enc)
            enc.register_forward_pre_hook(packer.pre, with_kwargs=True)
            enc.register_forward_hook(packer.post, with_kwargs=True)
            reason += "; padding tokens dropped inside the encoder (their outputs are 0)"
        rows.append({"name": name or "(root)", "module": type(m).__name__,
                     "chosen": "sparsekit attention", "reason": reason})
    return rows


def _register():
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


class _Registration:
    """Kept on each switched sub-model: the registration is per process, so a
    model pickled whole (torch.save(model)) registers "sparsekit" again in the
    process that unpickles it, before it can run."""

    def __reduce__(self):
        return _registered, ()


def _registered():
    _register()
    return _Registration()


def _collecting():
    """True while transformers records per-layer outputs (output_hidden_states
    / output_attentions), which must keep the padded layout; True when unsure."""
    try:
        from transformers.utils.output_capturing import _active_collector
    except ImportError:
        return True
    got = _active_collector.get()
    return bool(got)


class _Packing:
    """How a padded batch was packed: offsets of the sequences among the real
    tokens, their indices in the flattened [B * T] batch, and B, T. It travels
    as a keyword argument through the encoder to attention() and back to the
    post hook, so concurrent calls from several threads do not share state."""

    __slots__ = ("offsets", "idx", "b", "t")

    def __init__(self, offsets, idx, b, t):
        self.offsets, self.idx, self.b, self.t = offsets, idx, b, t


class _Packer:
    """Encoder forward hooks: real tokens in, padded layout back out."""

    def __init__(self, encoder):
        self.modules = list(encoder.modules())  # none may be training

    def pre(self, module, args, kwargs):
        args = list(args)
        hidden = args[0] if args else kwargs.get("hidden_states")
        if len(args) > 1:
            mask, where = args[1], 1
        else:
            mask, where = kwargs.get("attention_mask"), None
        if not isinstance(mask, torch.Tensor) or \
                not isinstance(hidden, torch.Tensor) or hidden.dim() != 3 or \
                any(m.training for m in self.modules) or not _plain(hidden) or \
                any(kwargs.get(k) is not None for k in ("encoder_hidden_states", "cache",
                                                        "past_key_values", _OFFSETS)) or \
                kwargs.get("use_cache") or _collecting() or _passed_on(kwargs):
            return None
        b, t, c = hidden.shape
        keep = _key_padding(mask, b, t)
        if keep is None or bool(keep.all()) or not bool(keep.any(1).all()):
            return None  # not plain padding, no padding, or an empty sequence
        idx = keep.reshape(-1).nonzero().squeeze(1)
        offsets = np.zeros(b + 1, dtype=np.int64)
        np.cumsum(keep.sum(1).numpy(), out=offsets[1:])
        packed = hidden.reshape(b * t, c).index_select(0, idx).unsqueeze(0)
        if args:
            args[0] = packed
        else:
            kwargs["hidden_states"] = packed
        if where is None:
            kwargs["attention_mask"] = None
        else:
            args[where] = None
        kwargs[_OFFSETS] = _Packing(offsets, idx, b, t)
        return tuple(args), kwargs

    def post(self, module, args, kwargs, output):
        packing = kwargs.get(_OFFSETS)
        if not isinstance(packing, _Packing):
            return None
        packed = output[0] if isinstance(output, tuple) else output.last_hidden_state
        full = packed.new_zeros((packing.b * packing.t, packed.shape[-1]))
        full.index_copy_(0, packing.idx, packed[0])
        full = full.view(packing.b, packing.t, -1)
        if isinstance(output, tuple):
            return (full,) + output[1:]
        output.last_hidden_state = full
        return output


def _passed_on(kwargs):
    """Keyword arguments with a value that reach attention(), which would then
    take sdpa: packed sequences must not go there (e.g. sentence-transformers'
    `modality` when its tokenizer output is passed to the model directly)."""
    return [k for k, v in kwargs.items() if k not in _ENCODER_ARGS and k not in _IGNORED
            and v is not None and v is not False]


def _key_padding(mask, b, t):
    """keep[b, t] (bool) when `mask` is a pure key-padding mask for a [b, t]
    batch (the same row for every query, attend = True / 0.0, masked = False /
    a large negative), else None."""
    if mask.dim() != 4 or mask.shape[0] != b or mask.shape[1] != 1 or \
            mask.shape[3] != t or mask.shape[2] not in (1, t):
        return None
    if mask.dtype == torch.bool:
        keep = mask[:, 0, 0, :]
        rows_ok = bool((mask == keep[:, None, None, :]).all())
    elif mask.dtype == torch.float32:
        row = mask[:, 0, 0, :]
        keep = row == 0
        if not bool(((row == 0) | (row <= -1e30)).all()):
            return None
        rows_ok = bool((mask == row[:, None, None, :]).all())
    else:
        return None
    return keep if rows_ok else None
