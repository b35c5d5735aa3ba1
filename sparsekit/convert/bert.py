"""Hugging Face BertModel / sentence-transformers BERT -> sparsekit.runtime.Model
(no torch at run time). Used by sparsekit.torch.to_runtime.

    inputs: input_ids, attention_mask, token_type_ids   (NumPy ints [B, T])
    PrepareMask (attention_mask checked once: the "mask" every layer reads)
    Embedding ─► LayerNorm ─► PackTokens (drop_padding)
    per encoder layer:
        SelfAttention (query/key/value: one fused [3C, C] weight)
        Linear (attention.output.dense) ─► AddLayerNorm(· , layer input)
        Linear + GELU (intermediate) ─► Linear (output.dense) ─► AddLayerNorm
        (static int8: intermediate hands output.dense u8, runtime.int8_chain)
    BertModel:             ─► UnpackTokens ─► "last_hidden_state" [B, T, C]
                           ─► ClsPool ─► Linear ─► Tanh ─► "pooler_output" [B, C]
    SentenceTransformer:   ─► MeanPool / MaxPool / ClsPool (Concat if several)
                           ─► Dense modules (Linear + activation), Normalize
                              (L2Normalize), in the model's order
                           ─► "sentence_embedding" [B, C]
                           ─► UnpackTokens ─► "token_embeddings" [B, T, C]
    (outputs= picks which; token_type_ids may be omitted: all 0)

Each Linear's weight format is chosen as sparsekit.torch.accelerate chooses it
(convert.torch._plan / runtime.weights.pack_float): dense fp32, CSR fp32 for
pruned weights, int8 with quantize="dynamic", and with quantize="static" int8
running sparsekit.compress.calibrate's parameters (convert.torch._pack_static;
layers without them: fp32, as with quantize=None). query, key and value read
the same hidden states, so calibrate gives them the same input scale / zero
point: their stacked weight takes that one (they must be equal as the kernel
uses them, float32 scale and int zero point; _Builder._static_qkv). Anything
this graph does not compute (other model types, relative position embeddings,
decoders, cross attention, other activations, pooling modes or
sentence-transformers modules) raises a ValueError naming it.
"""
import numpy as np
import torch
from torch import nn

from sparsekit.convert import torch as T
from sparsekit.runtime import layers as L
from sparsekit.runtime import weights as W
from sparsekit.runtime.attention import SelfAttention
from sparsekit.runtime.embedding import Embedding
from sparsekit.runtime.model import Model
from sparsekit.runtime.pooling import ClsPool, Concat, MaxPool, MeanPool
from sparsekit.runtime.sequence import PackTokens, UnpackTokens
from sparsekit.runtime.token_mask import PrepareMask
from sparsekit.runtime.torch_modules import SparsekitModule

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
MASK = "mask"  # the TokenMask of PrepareMask
# the outputs to_runtime offers; the first is the default
BERT_OUTPUTS = ("last_hidden_state", "pooler_output")
SENTENCE_OUTPUTS = ("sentence_embedding", "token_embeddings")
# config.hidden_act -> (Linear activation, separate runtime layer)
_ACTS = {"gelu": ("gelu", None), "relu": ("relu", None),
         "gelu_new": (None, "tanh"), "gelu_pytorch_tanh": (None, "tanh")}


def handles(model):
    """True for a model this module converts (BertModel-like or a
    sentence-transformers model whose first module wraps one)."""
    return _sentence_parts(model) is not None or _is_hf_model(model)


def _is_hf_model(m):
    return isinstance(m, nn.Module) and hasattr(getattr(m, "config", None), "model_type") \
        and hasattr(m, "embeddings") and hasattr(m, "encoder")


def _sentence_parts(model):
    """(hf model, [other modules]) of a sentence-transformers model, else None."""
    if not isinstance(model, nn.Sequential) or not len(model) or \
            not hasattr(model[0], "auto_model") or not callable(getattr(model, "encode", None)):
        return None
    return model[0].auto_model, list(model)[1:]


def to_runtime(model, quantize=None, min_sparsity=None, drop_padding=True, outputs=None,
               m=None):
    """See sparsekit.torch.to_runtime. Returns a runtime Model; its
    `conversion_report` lists what was chosen per Linear and why."""
    quantize = T._check_quantize(quantize, model)  # "static": some layer is calibrated
    min_sparsity = W.check_min_sparsity(min_sparsity)
    rows = W.check_m(m)
    parts = _sentence_parts(model)
    bert, rest = (model, None) if parts is None else parts
    _check_bert(bert)
    names = _output_names(outputs, BERT_OUTPUTS if rest is None else SENTENCE_OUTPUTS)
    b = _Builder(quantize, min_sparsity, rows)
    h = b.encoder(bert, drop_padding)
    for name in names:
        if name in ("last_hidden_state", "token_embeddings"):
            if drop_padding:
                b.add(UnpackTokens(), [h, MASK], name)
            else:
                b.add(L.Identity(), [h], name)
        elif name == "pooler_output":
            b.pooler(bert, h)
        else:
            b.sentence_head(rest, h)
    m = Model.graph(b.nodes, INPUTS, names, optional=["token_type_ids"])
    m.conversion_report = W.LayerReport(b.rows)
    return m


def _output_names(outputs, allowed):
    """The list of output names asked for (default: the first allowed)."""
    if outputs is None:
        return [allowed[0]]
    names = [outputs] if isinstance(outputs, str) else list(outputs)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"outputs: expected a name or a list of names from {list(allowed)}, "
                         f"got {outputs!r}")
    for n in names:
        if n not in allowed:
            raise ValueError(f"outputs: {n!r} is not an output of this model (it has "
                             f"{list(allowed)})")
    if len(set(names)) != len(names):
        raise ValueError(f"outputs: {names} names an output twice")
    return names


def _check_bert(bert):
    cfg = getattr(bert, "config", None)
    kind = getattr(cfg, "model_type", None)
    if kind != "bert" or not _is_hf_model(bert):
        raise ValueError(f"model: {type(bert).__name__} (model_type {kind!r}) is not supported "
                         "by the runtime converter: Hugging Face BertModel (model_type "
                         "'bert') or a sentence-transformers model wrapping one only")
    bad = []
    pos = getattr(cfg, "position_embedding_type", "absolute")
    if pos != "absolute":
        bad.append(f"position_embedding_type={pos!r} (only 'absolute')")
    if getattr(cfg, "is_decoder", False):
        bad.append("is_decoder=True (causal attention)")
    if getattr(cfg, "add_cross_attention", False):
        bad.append("add_cross_attention=True")
    if cfg.hidden_act not in _ACTS:
        bad.append(f"hidden_act={cfg.hidden_act!r} (supported: {sorted(_ACTS)})")
    if bad:
        raise ValueError("model: unsupported BERT config: " + "; ".join(bad))


class _Builder:
    def __init__(self, quantize, min_sparsity, m=None):
        self.quantize, self.min_sparsity, self.m = quantize, min_sparsity, m
        self.nodes, self.rows = [], W.LayerReport()

    def add(self, layer, ins, out):
        self.nodes.append((layer, ins, out))
        return out

    def encoder(self, bert, drop_padding):
        emb = bert.embeddings
        self.add(PrepareMask(), ["attention_mask"], MASK)
        self.add(Embedding(_param(emb.word_embeddings.weight),
                           _param(emb.position_embeddings.weight),
                           _param(emb.token_type_embeddings.weight)),
                 ["input_ids", "token_type_ids"], "embeddings.sum")
        h = self.add(_layer_norm(emb.LayerNorm), ["embeddings.sum"], "embeddings")
        if drop_padding:
            h = self.add(PackTokens(), [h, MASK], "embeddings.packed")
        act, separate = _ACTS[bert.config.hidden_act]
        for i, layer in enumerate(bert.encoder.layer):
            p = f"encoder.layer.{i}"
            att = layer.attention
            self.add(self.attention(f"{p}.attention.self", att.self),
                     [h, MASK], f"{p}.attention.self")
            self.add(self.linear(f"{p}.attention.output.dense", att.output.dense),
                     [f"{p}.attention.self"], f"{p}.attention.output.dense")
            h = self.add(_add_layer_norm(att.output.LayerNorm),
                         [f"{p}.attention.output.dense", h], f"{p}.attention.output")
            up = f"{p}.intermediate.dense"
            up_layer = self.linear(up, layer.intermediate.dense, act)
            self.add(up_layer, [h], up)
            if separate:
                self.add(L.GELU(separate), [up], up + ".act")
                up += ".act"
            down = self.linear(f"{p}.output.dense", layer.output.dense)
            self.add(down, [up], f"{p}.output.dense")
            if not separate:
                self._chain_int8(up_layer, down)
            h = self.add(_add_layer_norm(layer.output.LayerNorm),
                         [f"{p}.output.dense", h], f"{p}.output")
        return h

    def _chain_int8(self, up, down):
        """BERT's FFN with a GELU up-projection and both weights dense int8, the
        down-projection's input static: the up-projection outputs u8 with that
        quantization when its output is large (runtime.int8_chain; the same
        numbers, the fp32 GELU output never leaves the cache). Sparse int8 weights are left as they
        are (their u8-output epilogue runs in NumPy, slower than the fp32
        kernel path)."""
        from sparsekit._quantized import QuantizedMatrix

        if up.activation != "gelu" or type(up.weight) is not QuantizedMatrix or \
                type(down.weight) is not QuantizedMatrix or down.weight.input_scale is None:
            return
        from sparsekit.runtime.int8_chain import CHAIN_MIN_BYTES

        up.out_quant = (down.weight.input_scale, down.weight.input_zero_point)
        rows = -(-CHAIN_MIN_BYTES // (4 * up.out_features))
        for row in self.rows[-2:]:
            row["reason"] += f"; u8 chain from {rows} tokens: the up-projection's GELU " \
                "output requantized in its epilogue for the down-projection (int8 in, no " \
                "fp32 between)"

    def linear(self, name, m, activation=None):
        """A runtime Linear with the format accelerate would choose for m."""
        if isinstance(m, SparsekitModule):
            layer, reason = m.layer, "already accelerated: " + m.reason
            chosen = W.describe(layer.weight)
        else:
            with torch.no_grad():
                new, chosen, reason = T._plan_named(name, m, self.quantize, self.min_sparsity,
                                                    rows=self.m)
            if new is not None and new.out_qparams is None:
                layer = new.layer
            elif isinstance(m, nn.Linear):  # dense wins: keep its fp32 weight
                layer, reason = T._dense_linear(m, reason)
                chosen = W.describe(layer.weight)
            else:
                raise ValueError(f"model: {name} ({type(m).__name__}) cannot run in the "
                                 f"runtime: {reason}")
        self.rows.append({"name": name, "module": type(m).__name__, "chosen": chosen,
                          "reason": reason})
        return L.Linear(layer.weight, layer.bias, activation)

    def attention(self, name, sa):
        """SelfAttention with query/key/value stacked into one weight."""
        mods = [sa.query, sa.key, sa.value]
        ws, bs = [], []
        for k, m in zip(("query", "key", "value"), mods):
            ws.append(_float_linear(f"{name}.{k}", m))
            b = T._bias(m) if not isinstance(m, SparsekitModule) else m.layer.bias
            bs.append(np.zeros(ws[-1].shape[0], np.float32) if b is None else b)
        stacked = np.concatenate(ws)
        ints = _int8_rows(name, mods)
        if ints is not None:  # already int8 (accelerated): keep those values
            q, scale, static = ints
            wfmt, reason = W.pack_int8(q, scale, min_sparsity=self.min_sparsity)
            if static is not None:  # accelerated with quantize="static"
                wfmt = wfmt.with_static_input(*static)
                reason += f", static activations (scale {static[0]:.4g}, zero point " \
                          f"{static[1]})"
        elif self.quantize == "static":
            wfmt, reason = self._static_qkv(name, mods, ws, stacked)
        else:
            wfmt, reason = W.pack_float(stacked, self.quantize, self.min_sparsity, m=self.m,
                                        packed=True)
        self.rows.append({"name": f"{name}.query+key+value", "module": "SelfAttention",
                          "chosen": W.describe(wfmt),
                          "reason": f"one fused [{stacked.shape[0]}, {stacked.shape[1]}] "
                                    f"weight: {reason}"})
        heads = getattr(sa, "num_attention_heads", None)
        if heads is None:
            raise ValueError(f"model: {name} has no num_attention_heads")
        scale = getattr(sa, "scaling", None)
        return SelfAttention(wfmt, np.concatenate(bs), heads, scale)

    def _static_qkv(self, name, mods, ws, stacked):
        """(format, reason) of the stacked query/key/value weight for
        quantize="static": each projection's weight quantized with its own
        calibrated weight scales (as accelerate does for each), the input with
        their common input scale / zero point. None calibrated: fp32, as
        quantize=None; some: ValueError (one weight cannot be half static)."""
        attr = T._qparams_attr()
        qps = [getattr(m, attr, None) if isinstance(m, nn.Linear) else None for m in mods]
        keys = ("query", "key", "value")
        if all(qp is None for qp in qps):
            wfmt, reason = W.pack_float(stacked, None, self.min_sparsity, m=self.m,
                                        packed=True)
            return wfmt, f"{T._not_calibrated_reason()}: fp32 as with quantize=None, {reason}"
        missing = [k for k, qp in zip(keys, qps) if qp is None]
        if missing:
            have = [k for k, qp in zip(keys, qps) if qp is not None]
            raise ValueError(
                f"model: layer {name!r}: {' and '.join(missing)} {_has(missing)} no {attr} "
                f"while {' and '.join(have)} {_has(have)}: "
                "query, key and value run as one stacked weight in the runtime, so "
                "quantize='static' needs calibrate's parameters on all three (calibrate "
                "them all, or skip all three for fp32)")
        from sparsekit.quant_ops import check_static_params

        qs, scales, inputs = [], [], []
        for k, qp, w in zip(keys, qps, ws):
            try:
                q, s = T._static_int8_weight(qp, w)
                inputs.append(check_static_params(qp.input_scale, qp.input_zero_point,
                                                  "input"))
            except (TypeError, ValueError) as e:
                msg = str(e) if str(e).startswith(attr) else f"{attr}.{e}"
                raise type(e)(f"model: layer '{name}.{k}': {msg}") from None
            qs.append(q)
            scales.append(s)
        if any(p != inputs[0] for p in inputs[1:]):
            got = ", ".join(f"{k} (scale {s!r}, zero point {z})"
                            for k, (s, z) in zip(keys, inputs))
            raise ValueError(
                f"model: layer {name!r}: query, key and value were calibrated with different "
                f"input parameters ({got}); they read the same hidden states and run as one "
                "stacked weight whose input is quantized once, so they need the same "
                "input_scale / input_zero_point (sparsekit.compress.calibrate gives them "
                f"that; calibrate again, or set all three {attr} to one of them)")
        per_tensor = all(s.size == 1 for s in scales)
        if per_tensor and all(s[0] == scales[0][0] for s in scales):
            scale = scales[0].reshape(())
        else:  # one scale per stacked row
            scale = np.concatenate([np.broadcast_to(s, (q.shape[0],))
                                    for s, q in zip(scales, qs)])
        wfmt, reason = T._pack_static_input(np.concatenate(qs), scale, qps[0],
                                            self.min_sparsity, self.m)
        if per_tensor and scale.ndim:
            reason += " (query / key / value's own per-tensor scales, one per stacked row)"
        observers = sorted({str(getattr(qp, "observer", "?")) for qp in qps})
        return wfmt, (f"{reason}, calibrated ({'/'.join(observers)} observer), one input "
                      "quantization for query, key and value (same calibrated parameters)")

    def pooler(self, bert, h):
        """BertModel's pooler_output: tanh(dense(first token))."""
        pooler = getattr(bert, "pooler", None)
        if pooler is None:
            raise ValueError("outputs: 'pooler_output' needs the model's pooler, and this "
                             "model has none (add_pooling_layer=False)")
        act = getattr(pooler, "activation", None)
        if type(act) is not nn.Tanh:
            raise ValueError(f"model: pooler activation {type(act).__name__} is not "
                             "supported (only Tanh, as in BertPooler)")
        first = self.add(ClsPool(), [h, MASK], "pooler.first_token")
        dense = self.add(self.linear("pooler.dense", pooler.dense), [first], "pooler.dense")
        return self.add(L.Tanh(), [dense], "pooler_output")

    def sentence_head(self, modules, h):
        """sentence-transformers modules after the transformer: Pooling (modes
        cls, max, mean, concatenated in the order given), then Dense and
        Normalize modules in any order."""
        if not modules or type(modules[0]).__name__ != "Pooling":
            raise ValueError("model: expected a sentence-transformers Pooling module after "
                             "the transformer")
        mode = getattr(modules[0], "pooling_mode", None)
        modes = (mode,) if isinstance(mode, str) else tuple(mode or ())
        if not modes:
            raise ValueError(f"model[1]: Pooling mode {mode!r} is not supported")
        out = None
        for k in modes:
            if k not in _POOLS:
                raise ValueError(f"model[1]: Pooling mode {k!r} is not supported (supported: "
                                 f"{', '.join(repr(p) for p in _POOLS)})")
            pooled = self.add(_POOLS[k](), [h, MASK], f"pooled.{k}")
            out = pooled if out is None else self.add(Concat(), [out, pooled],
                                                      f"pooled.{len(self.nodes)}")
        for i, m in enumerate(modules[1:], start=2):
            kind = type(m).__name__
            _check_sentence_io(m, i, kind)
            if kind == "Normalize":
                out = self.add(L.L2Normalize(), [out], f"normalized{i}")
            elif kind == "Dense":
                if getattr(m, "use_residual", False):
                    raise ValueError(f"model[{i}]: Dense with use_residual=True is not "
                                     "supported by the runtime")
                act, separate = _dense_activation(m, i)
                out = self.add(self.linear(f"{i}.linear", m.linear, act), [out], f"{i}.linear")
                if separate is not None:
                    out = self.add(separate, [out], f"{i}.activation")
            else:
                raise ValueError(f"model[{i}]: sentence-transformers module {kind} is not "
                                 "supported by the runtime (Pooling, Dense, Normalize only)")
        self.nodes[-1] = (self.nodes[-1][0], self.nodes[-1][1], "sentence_embedding")
        return "sentence_embedding"


_POOLS = {"cls": ClsPool, "max": MaxPool, "mean": MeanPool}


def _check_sentence_io(m, i, kind):
    """Dense / Normalize must read and write the sentence embedding."""
    for attr in ("module_input_name", "module_output_name"):
        name = getattr(m, attr, "sentence_embedding")
        if name not in (None, "sentence_embedding"):
            raise ValueError(f"model[{i}]: {kind} with {attr}={name!r} is not supported "
                             "(only 'sentence_embedding')")


def _dense_activation(m, i):
    """(Linear activation, separate runtime layer) of a sentence-transformers
    Dense module's activation_function."""
    a = getattr(m, "activation_function", None)
    kind = type(a)
    if a is None or kind is nn.Identity:
        return None, None
    if kind is nn.ReLU:
        return "relu", None
    if kind is nn.GELU:
        return ("gelu", None) if a.approximate == "none" else (None, L.GELU("tanh"))
    if kind is nn.Tanh:
        return None, L.Tanh()
    if kind is nn.Sigmoid:
        return None, L.Sigmoid()
    raise ValueError(f"model[{i}]: Dense activation_function {a!r} is not supported by the "
                     "runtime (Identity, ReLU, GELU, Tanh, Sigmoid)")


def _param(p):
    return p.detach().to(torch.float32).cpu().numpy().copy()


def _layer_norm(ln):
    return L.LayerNorm(_param(ln.weight), None if ln.bias is None else _param(ln.bias), ln.eps)


def _add_layer_norm(ln):
    return L.AddLayerNorm(_param(ln.weight), None if ln.bias is None else _param(ln.bias),
                          ln.eps)


def _float_linear(name, m):
    """Float [out, in] weight of a query / key / value projection."""
    if isinstance(m, SparsekitModule):
        return np.asarray(W.dense_of(m.layer.weight), np.float32)
    if isinstance(m, nn.Linear):
        return T._float_weight(m)[0]
    raise ValueError(f"model: {name} is a {type(m).__name__}; the runtime converter reads "
                     "query / key / value from nn.Linear or accelerated layers only")


def _has(names):
    return "has" if len(names) == 1 else "have"


def _int8_rows(name, mods):
    """(q [3C, C], per-row scale [3C], static input (scale, zero point) or None)
    when every projection was already accelerated with an int8 weight, else
    None. Static inputs (accelerate's quantize="static") must be the same for
    all three: the stacked weight quantizes its input once."""
    parts, inputs = [], []
    for m in mods:
        w = m.layer.weight if isinstance(m, SparsekitModule) else None
        if w is None or "int8" not in W.describe(w):
            return None
        q, scale = W.int8_parts(w)
        parts.append((q, np.broadcast_to(scale.reshape(-1), (q.shape[0],))))
        s = getattr(w, "input_scale", None)
        inputs.append(None if s is None else (s, w.input_zero_point))
    if any(p != inputs[0] for p in inputs[1:]):
        got = ", ".join(f"{k}: {'dynamic' if p is None else 'static(%r, %d)' % p}"
                        for k, p in zip(("query", "key", "value"), inputs))
        raise ValueError(f"model: layer {name!r}: the accelerated query, key and value "
                         f"quantize their input differently ({got}); the runtime runs them "
                         "as one stacked weight whose input is quantized once")
    return (np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]).astype(np.float32), inputs[0])
