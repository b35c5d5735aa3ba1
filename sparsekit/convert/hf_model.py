"""A Hugging Face BertModel whose encoder layers all run as one sparsekit
forward each (hf_layer.py) as one direct forward (used by
sparsekit.torch.accelerate after hf_layer.install).

The model's forward (an instance attribute, like the layers': no module,
parameter or state_dict key changes) does what BertModel.forward and its
decorators, BertEmbeddings, the mask builder, the encoder with hf_attention's
padding hooks and the layers do on this path, with the same torch ops and
kernels on the same tensors in the same order, minus the plumbing:

    ids ─► word + token type + position embeddings ─► LayerNorm (torch ops)
    attention_mask [B, T] ─► keep (bool) ─► padding: pack the real tokens (as
        hf_attention's encoder hooks), or one additive mask for every layer
    each layer: FusedEncoderLayer.run (no per-layer module call or checks)
    ─► unpack ─► pooler (the module itself, when the model has one)
    ─► the model's output class (a tuple with return_dict=False)

so last_hidden_state and pooler_output are bit-identical to the model's own
forward (install checks that on random inputs). Whatever this path would not
do as that forward does takes the model's own forward, on every call: grad,
training mode of any submodule, a hook on any submodule (or a global one)
other than the q/k/v groups', the padding hooks and transformers' idle
output-capturing ones, a replaced submodule or layer forward, output_attentions
/ output_hidden_states (also from the config), inputs_embeds, position_ids,
caches, cross-attention inputs, other keyword arguments, attention switched
away from "sparsekit", non-CPU or non-float32 weights, input_ids that are not
a [B, T] integer tensor with T within the position table, an attention_mask
of another shape (e.g. 4-D), and decoder configs.

What it checks per call is worked out once (_Plan) from the live model, and
again after a copy or unpickling (the plan is not copied: it holds the
modules' own dicts, which a copy would detach).
"""
import operator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sparsekit.convert import hf_attention as A
from sparsekit.convert import hf_layer

# keyword arguments taken here (the first three also by position, in BertModel's order)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# keyword arguments that change nothing when None / False
_UNSET = {"position_ids", "inputs_embeds", "encoder_hidden_states", "encoder_attention_mask",
          "cache", "past_key_values", "output_attentions", "output_hidden_states"}
_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _bert_classes():
    """(BertModel, BertEmbeddings, BertEncoder) of this transformers, or None."""
    try:
        from transformers.models.bert import modeling_bert as mb
    except ImportError:
        return None
    return mb.BertModel, mb.BertEmbeddings, mb.BertEncoder


def recognise(model):
    """True when `model` has the parts the direct path runs (_in_place) and
    a config it follows: bidirectional, on "sparsekit" attention."""
    cfg = getattr(model, "config", None)
    return _in_place(model) and cfg is not None and not getattr(cfg, "is_decoder", True) and \
        not getattr(cfg, "add_cross_attention", True) and \
        getattr(cfg, "_attn_implementation", None) == A.NAME


def _in_place(model):
    """`model` runs BertModel's, BertEmbeddings' and BertEncoder's own
    forwards (no subclass overriding them) with plain torch embedding
    modules, and every encoder layer has hf_layer's forward over the parts
    it was installed on (checked again when a copy works out its plan)."""
    classes = _bert_classes()
    if classes is None or not isinstance(model, nn.Module):
        return False
    bert, embeddings, encoder = classes
    emb, enc = model._modules.get("embeddings"), model._modules.get("encoder")
    if type(model).forward is not bert.forward or type(emb).forward is not embeddings.forward \
            or type(enc).forward is not encoder.forward or _embedding_parts(emb) is None:
        return False
    layers = enc._modules.get("layer")
    fused = [getattr(layer, "__dict__", {}).get("forward") for layer in layers or ()]
    return isinstance(layers, nn.ModuleList) and len(layers) > 0 and all(
        isinstance(f, hf_layer.FusedEncoderLayer) and f.layer is layer and f.parts.intact() and
        getattr(f.parts.sa, "is_causal", True) is False for f, layer in zip(fused, layers))


def _embedding_parts(emb):
    """BertEmbeddings' (word, position, token_type, LayerNorm, dropout) as the
    plain torch modules this path runs as torch functions, or None."""
    parts = tuple(emb._modules.get(k) for k in (
        "word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm",
        "dropout"))
    if [type(p) for p in parts] != [nn.Embedding] * 3 + [nn.LayerNorm, nn.Dropout] or \
            not isinstance(getattr(emb, "position_ids", None), torch.Tensor):
        return None
    return parts


class FusedBertModel:
    """The forward of a recognised BertModel (see the module docstring)."""

    def __init__(self, model):
        self.model = model
        self._plan = None

    def __getstate__(self):  # a copy works its plan out again from its own modules
        return {"model": self.model, "_plan": None}

    def __call__(self, *args, **kwargs):
        got = self._fast(args, kwargs)
        out = None if got is None else self.run(*got)
        if out is None:
            m = self.model
            return type(m).forward(m, *args, **kwargs)
        return out

    def plan(self):
        """The per-call checks (_Plan), worked out on first use; None when
        the model no longer has the parts this path runs."""
        if self._plan is None:
            self._plan = _Plan(self.model) if _in_place(self.model) else False
        return self._plan or None

    def _fast(self, args, kwargs):
        """(input_ids, keep or None, token_type_ids, return_dict) for a call
        this path runs as the model would, else None."""
        if len(args) > len(_INPUTS) or torch.is_grad_enabled() and any(
                p.requires_grad for p in self.model.parameters()):
            return None
        given = dict(zip(_INPUTS, args))
        return_dict = None
        for k, v in kwargs.items():
            if k in _INPUTS and k not in given:
                given[k] = v
            elif k == "return_dict":
                return_dict = v
            elif not (k == "use_cache" or (k in _UNSET and (v is None or v is False))):
                return None
        ids, mask, types = (given.get(k) for k in _INPUTS)
        if type(ids) is not torch.Tensor or ids.dim() != 2 or not ids.numel() or \
                ids.dtype not in (torch.int64, torch.int32) or ids.device.type != "cpu":
            return None
        for t in (mask, types):
            if t is not None and (type(t) is not torch.Tensor or t.shape != ids.shape or
                                  t.device.type != "cpu"):
                return None
        if types is not None and types.dtype not in (torch.int64, torch.int32):
            return None
        plan = self.plan()
        if plan is None or not plan.unchanged() or A._collecting() or \
                ids.shape[1] > plan.positions():
            return None
        if return_dict is None and "return_dict" not in kwargs:
            return_dict = plan.return_dict
        keep = None if mask is None else mask.to(torch.bool)
        return ids, keep, types, return_dict

    def run(self, ids, keep, types, return_dict):
        """The model on its checked inputs (see _fast); None when its
        embedding weights turn out not to be CPU float32 (nothing changed:
        the caller runs the model's own forward)."""
        m, plan = self.model, self._plan
        x = plan.embed(ids, types)
        if x is None:
            return None
        b, t, c = x.shape
        mask = packing = None
        if keep is not None and not bool(keep.all()):
            if plan.packs and bool(keep.any(1).all()):  # as hf_attention._Packer.pre
                idx = keep.reshape(-1).nonzero().squeeze(1)
                offsets = np.zeros(b + 1, dtype=np.int64)
                np.cumsum(keep.sum(1).numpy(), out=offsets[1:])
                packing = A._Packing(offsets, idx, b, t)
                x = x.reshape(b * t, c).index_select(0, idx).unsqueeze(0)
            else:  # the mask each layer would make of sdpa_mask's [B, 1, T, T] mask
                mask = A._additive_mask(keep[:, None, None, :], b, t, t)
        xn, offsets = x.numpy(), None if packing is None else packing.offsets
        for f in plan.layers:
            xn = f.run(xn, mask, offsets)
        x = torch.from_numpy(xn)
        if packing is not None:  # as hf_attention._Packer.post
            full = x.new_zeros((b * t, c))
            full.index_copy_(0, packing.idx, x[0])
            x = full.view(b, t, c)
        pooler = m.pooler
        out = plan.output(last_hidden_state=x,
                          pooler_output=pooler(x) if pooler is not None else None)
        return out.to_tuple() if return_dict is False else out


class _Plan:
    """What FusedBertModel checks on every call, and the embeddings it runs.

    unchanged() holds while every module of the model is the one found here
    (each module's children compared with a snapshot), none is in training
    mode, no hook was added (the hook dicts that were empty are still empty,
    the others still hold the same hooks; anything else goes through the
    detailed check that hf_layer applies), and the attributes the layers'
    direct forwards rely on (their forward attributes, q/k/v groups,
    attention configuration) are the ones found here."""

    def __init__(self, model):
        self.model = model
        self.config = model.config
        self.emb = model.embeddings
        self.layers = [layer.__dict__["forward"] for layer in model.encoder.layer]
        self.mods = list(model.modules())
        self.children = [m._modules for m in self.mods]
        self.snapshot = [dict(d) for d in self.children]
        self.hooks_ok = self._note_hooks()
        # instance attributes the direct forwards rely on, compared by identity:
        # (object, name) -> the value found here (None: not set on the instance)
        watch = [(model, "config")]
        for f in self.layers:
            p = f.parts
            watch += [(f.layer, "forward"), (p.sa, "config"), (p.sa, "is_causal"),
                      (p.group, "enabled"), (p.group, "stale"), (p.ao, "forward"),
                      (p.out, "forward")] + [(p.sa._modules[n], "_fused") for n in p.group.names]
        watch += [(m, "forward") for m in [model.embeddings, model.encoder] +
                  list(_embedding_parts(model.embeddings))]
        self.dicts = [vars(o) for o, _ in watch]
        self.names = [n for _, n in watch]
        self.want = list(map(dict.get, self.dicts, self.names))
        self.config_seen, self.return_dict = None, True
        from transformers.models.bert import modeling_bert as mb

        self.output = mb.BaseModelOutputWithPoolingAndCrossAttentions  # what BertModel returns

    def unchanged(self):
        return all(map(operator.eq, self.children, self.snapshot)) and \
            not any(map(operator.attrgetter("training"), self.mods)) and \
            all(map(operator.is_, map(dict.get, self.dicts, self.names), self.want)) and \
            self._config_ok() and not hf_layer._global_hooks() and self._hooks_known()

    def _config_ok(self):
        """The configuration asks for nothing this path does not do. Its
        attributes are slow to read (transformers' __getattribute__): they
        are read when the config's __dict__ differs from the last one found
        good."""
        cfg = self.config
        try:
            if vars(cfg) == self.config_seen:
                return True
        except Exception:  # noqa: BLE001 - values that do not compare: read them
            pass
        if getattr(cfg, "_attn_implementation", None) != A.NAME or \
                getattr(cfg, "is_decoder", True) or getattr(cfg, "add_cross_attention", True) or \
                getattr(cfg, "output_attentions", True) or \
                getattr(cfg, "output_hidden_states", True) or \
                getattr(cfg, "is_causal", None) is not None:
            return False
        self.return_dict = getattr(cfg, "return_dict", True)
        self.config_seen = dict(vars(cfg))
        return True

    def _hooks_known(self):
        """No hooks but those found harmless (_harmless) last time: the hook
        dicts that were empty still are, the others hold the same hooks; else
        every hook is looked at (and, all harmless, noted for next time)."""
        if self.hooks_ok and not any(self.empty) and \
                all(map(operator.eq, self.held, self.held_now)):
            return True
        for m in self.mods[1:]:
            for k in _HOOKS:
                for f in list(getattr(m, k).values()):
                    if not (k in _HOOKS[:2] and self._harmless(m, f)):
                        return False
        self.hooks_ok = self._note_hooks()
        return self.hooks_ok

    def _note_hooks(self):
        """Note which hook dicts are empty and what the others hold (the
        model's own hooks aside: torch runs them around this forward), and
        whether the encoder packs padded batches (hf_attention's pre and post
        hooks both there); False when only one of them is."""
        self.empty, self.held = [], []
        for m in self.mods[1:]:
            for k in _HOOKS:
                d = getattr(m, k)
                (self.held if d else self.empty).append(d)
        self.held_now = [dict(d) for d in self.held]
        enc = self.model.encoder
        pre, post = ({getattr(f, "__func__", None) for f in d.values()}
                     for d in (enc._forward_pre_hooks, enc._forward_hooks))
        self.packs = A._Packer.pre in pre
        return self.packs == (A._Packer.post in post)

    def _harmless(self, m, f):
        """A hook this path may skip: a q/k/v group's arm / disarm on its
        attention module, hf_attention's padding hooks on the encoder (this
        path packs as they do), transformers' idle output-capturing hook."""
        if hf_layer._idle_capture_hook(f):
            return True
        if m is self.model.encoder:
            return isinstance(getattr(f, "__self__", None), A._Packer)
        return any(m is layer.parts.sa and (f == layer.parts.group.arm or
                                            f == layer.parts.group.disarm)
                   for layer in self.layers)

    def positions(self):
        return self.emb.position_ids.shape[-1]

    def embed(self, ids, types):
        """BertEmbeddings.forward (eval: dropout is the identity) as its torch
        functions, or None when its weights are not CPU float32."""
        word, pos, tt, ln, _ = (self.emb._modules[k] for k in (
            "word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm",
            "dropout"))
        b, t = ids.shape
        position_ids = self.emb.position_ids[:, :t]
        if types is None:  # the registered all-0 buffer, gathered as BertEmbeddings does
            if hasattr(self.emb, "token_type_ids"):
                types = torch.gather(self.emb.token_type_ids.expand(position_ids.shape[0], -1),
                                     1, position_ids).expand(b, t)
            else:
                types = torch.zeros((b, t), dtype=torch.long, device=position_ids.device)
        x = _embedding(word, ids)
        x = x + _embedding(tt, types)
        x = x + _embedding(pos, position_ids)
        x = F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)
        if x.dtype != torch.float32 or x.device.type != "cpu" or not x.is_contiguous():
            return None
        return x


def _same(got, want):
    """Same output type, keys and bits."""
    if type(got) is not type(want):
        return False
    if not isinstance(got, tuple):
        if list(got.keys()) != list(want.keys()):
            return False
        got, want = got.to_tuple(), want.to_tuple()
    return len(got) == len(want) and all(
        type(a) is type(b) and (torch.equal(a, b) if isinstance(a, torch.Tensor) else a is b)
        for a, b in zip(got, want))


def _embedding(e, ids):
    return F.embedding(ids, e.weight, e.padding_idx, e.max_norm, e.norm_type,
                       e.scale_grad_by_freq, e.sparse)


def install(model, rows):
    """Give each recognised BertModel in `model` the direct forward when it
    returns the same bits as the model's own forward on random inputs."""
    for name, m in list(model.named_modules()):
        if "forward" in m.__dict__ or not recognise(m):
            continue
        fused = FusedBertModel(m)
        if not hf_layer.self_check(f"model {name or '(root)'!r}", list(m.modules()),
                                   lambda: _same_output(m, fused)):
            continue
        m.forward = fused
        for r in rows:
            if r["name"] == (name or "(root)") and r["chosen"] == "sparsekit attention":
                r["reason"] += "; the whole model runs as one direct forward (hf_model.py)"


def _same_output(model, fused):
    """The direct path against the model's own forward on random inputs:
    bit-identical or not used."""
    g = torch.Generator().manual_seed(0)
    emb = model.embeddings
    ids = torch.randint(0, emb.word_embeddings.num_embeddings, (3, 5), generator=g)
    mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [1] * 4 + [0]])
    types = torch.randint(0, emb.token_type_embeddings.num_embeddings, (3, 5), generator=g)
    for kw in (dict(input_ids=ids[:1]), dict(input_ids=ids, attention_mask=mask),
               dict(input_ids=ids, attention_mask=mask, token_type_ids=types,
                    return_dict=False)):
        if fused._fast((), kw) is None or \
                not _same(fused(**kw), type(model).forward(model, **kw)):
            return False
    return True
