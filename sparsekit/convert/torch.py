"""PyTorch -> sparsekit: accelerate() swaps layers in place of a model's own.

    for each Linear / Conv2d in the model (by any of the forms users have):
        read weights ─► (float W | int8 q + scale) ─► weights.pack_* ─► format + reason
        format chosen ─► SparseLinear / SparseConv2d   (sparsekit kernels)
        nothing faster ─► module stays, reason recorded

Forms read: nn.Linear / nn.Conv2d with exact zeros (also after prune.remove
and torch.ao.pruning's squash_mask), torch.nn.utils.prune's live
weight_orig * weight_mask, parametrized weights (ao.pruning before squash),
torch.ao dynamic quantized Linear (per-tensor or per-channel int8 from the
packed params) and static quantized Linear / Conv2d (+ fused ReLU variants),
whose quint8 output scale / zero point are kept. With quantize="static", fp32
layers that sparsekit.compress.calibrate gave parameters (sparsekit_qparams)
become static int8 (_pack_static).
"""
import copy
import sys

import numpy as np
import torch
from torch import nn

from sparsekit.convert.torch_fusion import (
    _fuse_gelu, _fuse_residual_layernorm, _fuse_shared_input,
)
from sparsekit.runtime import layers as L
from sparsekit.runtime import weights as W
from sparsekit.runtime.model import Model, fuse_relu
from sparsekit.runtime.torch_modules import (
    SparseConv2d, SparseLinear, SparsekitModule, numpy_of,
)

_REPORT_ATTR = "_sparsekit_report"


# ---- reading weights -------------------------------------------------------

def _qmod(name):
    """A torch.ao quantized module class, or None in builds without it."""
    import importlib

    mod, _, cls = name.rpartition(".")
    try:
        return getattr(importlib.import_module(mod), cls)
    except (ImportError, AttributeError):
        return None


_DYN_LINEAR = _qmod("torch.ao.nn.quantized.dynamic.Linear")
_Q_LINEAR = _qmod("torch.ao.nn.quantized.Linear")
_Q_CONV2D = _qmod("torch.ao.nn.quantized.Conv2d")
_Q_LINEAR_RELU = _qmod("torch.ao.nn.intrinsic.quantized.LinearReLU")
_Q_CONV_RELU = _qmod("torch.ao.nn.intrinsic.quantized.ConvReLU2d")


def _float_weight(m):
    """(dense float32 weight, how it was read) of an nn.Linear / nn.Conv2d."""
    if hasattr(m, "weight_orig") and hasattr(m, "weight_mask"):
        w = m.weight_orig.detach() * m.weight_mask.detach()
        how = "torch.nn.utils.prune mask applied"
    elif getattr(m, "parametrizations", None) is not None and "weight" in m.parametrizations:
        w = m.weight.detach()
        how = "parametrized weight (e.g. ao.pruning mask) evaluated"
    else:
        w = m.weight.detach()
        how = ""
    return w.to(torch.float32).cpu().numpy(), how


def _int8_weight(qw):
    """(q int8, scale per row or scalar, how) of a torch quantized weight tensor.
    Asymmetric weights (nonzero zero point) come back as float (q=None)."""
    scheme = qw.qscheme()
    q = qw.int_repr().cpu().numpy()
    if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        scale, zp, per = np.float32(qw.q_scale()), int(qw.q_zero_point()), "per-tensor"
        zps = np.array([zp])
    elif scheme in (torch.per_channel_affine, torch.per_channel_symmetric):
        if qw.q_per_channel_axis() != 0:
            return None, numpy_of(qw), "per-channel on axis != 0, requantized"
        scale = qw.q_per_channel_scales().to(torch.float32).cpu().numpy()
        zps = qw.q_per_channel_zero_points().cpu().numpy()
        per = "per-channel"
    else:
        return None, numpy_of(qw), f"{scheme} requantized"
    if qw.dtype != torch.qint8 or np.any(zps != 0):
        return None, numpy_of(qw), f"{per} asymmetric ({qw.dtype}) requantized symmetric"
    return q, scale, per


def _nm_pattern(w, m=4):
    """'N:M' when every group of m consecutive inputs keeps at most N weights and
    nearly all keep exactly N (semi-structured pruning, e.g. ao.pruning's 2:4)."""
    w2 = w.reshape(w.shape[0], -1)
    if w2.shape[1] % m or not w2.size:
        return None
    kept = (w2.reshape(w2.shape[0], -1, m) != 0).sum(-1)
    n = int(kept.max())
    if n < m and (kept == n).mean() >= 0.95:
        return f"{n}:{m}"
    return None


# ---- planning one module ---------------------------------------------------

def _conv_unsupported(m):
    if m.groups != 1:
        return f"groups={m.groups} (only groups=1 runs on sparsekit)"
    if getattr(m, "padding_mode", "zeros") != "zeros":
        return f"padding_mode={m.padding_mode!r}"
    if isinstance(m.padding, str) and m.padding != "valid":
        if any(s != 1 for s in m.stride):
            return f"padding={m.padding!r} with stride > 1"
    return None


def _conv_padding(m):
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return (0, 0, 0, 0)
        pads = []  # 'same', stride 1: total = dilation * (k - 1), extra on the end
        for k, d in zip(m.kernel_size, m.dilation):
            tot = d * (k - 1)
            pads.append((tot // 2, tot - tot // 2))
        return (pads[0][0], pads[0][1], pads[1][0], pads[1][1])
    ph, pw = m.padding
    return (ph, ph, pw, pw)


def _rows(w):
    """[out, K] rows of a weight; conv weights in the runtime's (kh, kw, in) order."""
    return L.conv_weight_hwc(w) if w.ndim == 4 else w.reshape(w.shape[0], -1)


def _bias(m):
    b = m.bias() if callable(m.bias) else m.bias
    return None if b is None else b.detach().to(torch.float32).cpu().numpy().copy()


def _make_layer(kind, wfmt, bias, m, act):
    if kind == "linear":
        return L.Linear(wfmt, bias, act)
    return L.Conv2d(wfmt, bias, in_channels=m.in_channels, kernel_size=m.kernel_size,
                    stride=m.stride, padding=_conv_padding(m), dilation=m.dilation,
                    activation=act)


# parents whose forward reads their children's .weight directly (fused kernels
# and fast paths): replacing those children would break them
_WEIGHT_READERS = (nn.MultiheadAttention, nn.TransformerEncoderLayer,
                   nn.TransformerDecoderLayer)


def _parents(model):
    out = {}
    for name, m in model.named_modules():
        for child_name, _ in m.named_children():
            out[f"{name}.{child_name}" if name else child_name] = m
    return out


def _plan(m, quantize, min_sparsity, parent=None, rows=None, dense="torch"):
    """(replacement module or None, chosen, reason) for one module. rows: the
    activation rows per call of a Linear (accelerate's m; None: pack's
    default); a conv's rows are its output pixels, so it keeps the default.
    dense="sparsekit": a Linear that stays dense fp32 runs on sparsekit's
    packed fp32 GEMM where that kernel is fast on this CPU (_dense_f32.wanted)."""
    if isinstance(parent, _WEIGHT_READERS) and isinstance(m, nn.Linear):
        return None, "kept", (f"{type(parent).__name__} reads this layer's weight directly "
                              "(fused kernel / fast path)")
    static = None
    if _DYN_LINEAR is not None and isinstance(m, _DYN_LINEAR):
        kind, src = "linear", "torch dynamic int8 Linear"
        qw, _ = m._packed_params._weight_bias()
    elif _Q_LINEAR is not None and isinstance(m, _Q_LINEAR):
        kind, src = "linear", "torch static int8 Linear"
        qw, static = m.weight(), (float(m.scale), int(m.zero_point))
    elif _Q_CONV2D is not None and isinstance(m, _Q_CONV2D):
        kind, src = "conv", "torch static int8 Conv2d"
        bad = _conv_unsupported(m)
        if bad:
            return None, "kept", bad
        qw, static = m.weight(), (float(m.scale), int(m.zero_point))
    elif isinstance(m, nn.Linear):
        kind, src, qw = "linear", "fp32 Linear", None
    elif isinstance(m, nn.Conv2d):
        kind, src, qw = "conv", "fp32 Conv2d", None
        bad = _conv_unsupported(m)
        if bad:
            return None, "kept", bad
    else:
        return None, None, None
    act = "relu" if any(c is not None and isinstance(m, c) for c in (_Q_LINEAR_RELU,
                                                                     _Q_CONV_RELU)) else None
    bias = _bias(m)
    if kind != "linear":
        rows = None
    if qw is not None:  # already int8: run sparsekit's own 8-bit activation path
        q, scale, per = _int8_weight(qw)
        if q is None:  # scale holds the dequantized float weight
            wfmt, reason = W.pack_float(_rows(scale), "dynamic", min_sparsity, m=rows)
            reason = f"{src}, {per}: {reason}"
        else:
            wfmt, reason = W.pack_int8(_rows(q), scale, min_sparsity)
            reason = f"{src}: {reason}"
    else:
        w, how = _float_weight(m)
        nm = _nm_pattern(w)
        if nm:
            how = ", ".join(filter(None, [how, f"{nm} pattern"]))
        # a float64 / half model keeps its dense layers' own precision in torch
        packed = kind == "linear" and dense == "sparsekit" and m.weight.dtype == torch.float32
        if quantize == "static":
            wfmt, reason = _pack_static(m, w, min_sparsity, rows, packed)
        else:
            wfmt, reason = W.pack_float(_rows(w), quantize, min_sparsity, keep_dense=packed,
                                        m=rows, packed=packed)
        if isinstance(wfmt, np.ndarray):
            wfmt = None  # no fast packed kernel on this CPU: torch's own dense layer stays
        reason = f"{src}{' (' + how + ')' if how else ''}: {reason}"
        if wfmt is None:
            return None, "kept", reason
        del w
    layer = _make_layer(kind, wfmt, bias, m, act)
    cls = SparseLinear if kind == "linear" else SparseConv2d
    mod = cls(layer, reason=reason, source=src, out_qparams=static)
    return mod, W.describe(wfmt), reason


# ---- quantize="static": the parameters sparsekit.compress.calibrate attached --

def _qparams_attr():
    from sparsekit.compress.quantize import QPARAMS_ATTR

    return QPARAMS_ATTR


def _pack_static(m, w, min_sparsity, rows, packed=False):
    """(format, reason) of an fp32 Linear / Conv2d for quantize="static": with
    calibrate's QuantParams, the weight quantized with its weight scales (as
    compress.fake_quantize does) and the input with its scale / zero point;
    without them, as quantize=None (fp32; where dense fp32 wins None, or with
    packed=True the dense weight as pack_float(packed=True) gives it)."""
    qp = getattr(m, _qparams_attr(), None)
    if qp is None:
        wfmt, reason = W.pack_float(_rows(w), None, min_sparsity, keep_dense=packed, m=rows,
                                    packed=packed)
        return wfmt, f"{_not_calibrated_reason()}: fp32 as with quantize=None, {reason}"
    q, ws = _static_int8_weight(qp, w)
    wfmt, reason = _pack_static_input(_rows(q), ws if ws.size > 1 else ws.reshape(()), qp,
                                     min_sparsity, rows)
    return wfmt, f"{reason}, calibrated ({getattr(qp, 'observer', '?')} observer)"


def _not_calibrated_reason():
    return (f"not calibrated (no {_qparams_attr()}; run "
            "sparsekit.compress.calibrate)")


def _static_int8_weight(qp, w):
    """(int8 q, weight scales float32 [1] or [out]) of the float weight w with
    calibrate's QuantParams qp, as compress.quantize_weight gives them; a
    TypeError / ValueError naming the bad field otherwise."""
    from sparsekit.compress.quantize import quantize_weight

    n = w.shape[0]
    try:
        ws = np.asarray(qp.weight_scale, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError, AttributeError):
        raise TypeError(f"{_qparams_attr()}.weight_scale: expected a float array, got "
                        f"{getattr(qp, 'weight_scale', None)!r}") from None
    if ws.size not in (1, n) or not (np.isfinite(ws).all() and (ws > 0).all()):
        raise ValueError(f"{_qparams_attr()}.weight_scale: expected 1 or {n} (out features) "
                         f"finite scales > 0, got {ws.size} values (was the layer changed "
                         "after calibrate? run calibrate again)")
    return quantize_weight(torch.from_numpy(w), torch.from_numpy(ws)).numpy(), ws


def _pack_static_input(q, scale, qp, min_sparsity, rows):
    """runtime.weights.pack_int8_static with qp's input scale / zero point;
    their errors named as on QuantParams."""
    try:
        return W.pack_int8_static(q, scale, qp.input_scale, qp.input_zero_point, min_sparsity,
                                  m=rows)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{_qparams_attr()}.{e}") from None


def _has_qparams(model):
    attr = _qparams_attr()
    return any(getattr(m, attr, None) is not None for m in model.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d)))


def _check_quantize(quantize, model):
    """check_quantize (the canonical spelling), plus "static" (torch converters
    only): that needs at least one layer calibrate() gave parameters to."""
    if not (isinstance(quantize, str) and quantize == "static"):
        try:
            return W.check_quantize(quantize)
        except ValueError:
            raise ValueError(f"quantize: expected one of {W.QUANTIZE_MODES + ('static',)} "
                             f"(or 'int8', a synonym of 'dynamic'), got {quantize!r}") from None
    if not _has_qparams(model):
        raise ValueError(
            f"quantize: 'static' runs each Linear / Conv2d with the parameters "
            f"sparsekit.compress.calibrate(model, batches) attaches to it "
            f"(module.{_qparams_attr()}), and no Linear / Conv2d of this model has them: "
            "calibrate the model first, or use quantize='dynamic'")
    return quantize


def _check_dense(dense):
    if not (isinstance(dense, str) and dense in ("sparsekit", "torch")):
        raise ValueError(f"dense: expected 'sparsekit' (dense fp32 Linears on sparsekit's "
                         f"packed fp32 GEMM where it is fast) or 'torch' (they stay torch "
                         f"modules), got {dense!r}")
    return dense


def _plan_named(name, m, quantize, min_sparsity, parent=None, rows=None, dense="torch"):
    """_plan, with errors in a layer's calibration parameters naming the layer."""
    try:
        return _plan(m, quantize, min_sparsity, parent, rows, dense)
    except (TypeError, ValueError) as e:
        if quantize != "static" or _qparams_attr() not in str(e):
            raise
        raise type(e)(f"model: layer {name or '(root)'!r}: {e}") from None


# ---- public ----------------------------------------------------------------

def accelerate(model, quantize=None, min_sparsity=None, inplace=False, drop_padding=True,
               m=None, dense="sparsekit"):
    """Return `model` with its Linear / Conv2d layers running on sparsekit.

    quantize: None keeps fp32 (sparse layers become CSR, or SlicedEllMatrix
        for small m, below); "dynamic" turns fp32
        layers into int8 (per-channel weights, per-row dynamic activations;
        "int8", sparsekit.pack's spelling, means the same);
        "static" runs the parameters sparsekit.compress.calibrate attached
        (module.sparsekit_qparams): each calibrated fp32 Linear / Conv2d
        becomes int8 with its weight quantized by the calibrated weight scales
        (as compress.fake_quantize does) and its input quantized with the
        calibrated per-tensor scale / zero point inside the kernel, dense
        (QuantizedMatrix) or sparse (SparseInt8Matrix) as "dynamic" decides
        (runtime.weights.pack_int8_static), at the same speed as dynamic;
        outputs stay fp32 and match fake_quantize up to float rounding.
        Layers without parameters (calibrate's skip, never called) run as with
        None, and report() says so; ValueError when no Linear / Conv2d has
        them, or when a layer's parameters are invalid (naming the layer).
        Layers that are already int8 in torch (ao dynamic / static quantized)
        are always read as int8.
    min_sparsity: fraction of zeros from which a sparse format is used.
        None: sparsekit.pack's measured cost model decides when this build has
        it, else 0.7 (fp32) / 0.8 (int8). Where dense fp32 wins, see dense.
    m: about how many rows each Linear gets per call (tokens x batch; None:
        sparsekit.pack's default, 128), passed to sparsekit.pack as its `m`.
        Say m=1 for decode-style use (batch 1, one token per call): sparse fp32
        layers then become SlicedEllMatrix where pack predicts it fastest (M <=
        SELL_MAX_M of sparsekit/pack.py on CPUs whose spmv_sell_f32 kernel is
        AVX-512: 2-4x CSRMatrix at M = 1..8; M <= SELL_MAX_M_AVX2 = 2 where it
        is AVX2, at the sparsities the model says), int8 layers get pack's
        M = 1 choices. At the default (and any m >= 2) 65-83%-sparse fp32 layers
        get a CSRMatrix with its shared-column layout where pack predicts it
        faster (AVX-512; 1.05-1.3x plain CSR, ~1.9x its bytes; reported as
        "csr shared fp32"; min_sparsity= gives plain CSR). The model still
        runs any M, only slower where the guess is
        far off. Conv2d layers keep the default (their rows are output pixels).
    dense: what becomes of a Linear that stays dense fp32 (quantize=None, or
        "static" without calibration parameters) and whose weight is float32
        (float64 / bfloat16 / half ones stay torch modules, in their own
        precision). "sparsekit" (default): it
        runs on sparsekit's fp32 GEMM with its weight packed once
        (PackedDenseMatrix, the same values; sums in float32 in another order
        than torch's, so outputs differ by float rounding), where that kernel
        is fast on this CPU (AVX-512, or AVX2 without AVX-512;
        sparsekit._dense_f32.wanted); elsewhere the layer stays in torch.
        Measured on all-MiniLM-L6-v2 unpruned, 1 thread: 2.0x torch fp32 at
        batch 1 and 2.4-2.5x at batch 32 (benchmarks/RESULTS.md, "accelerate:
        dense fp32 Linears on the packed GEMM"). "torch": such layers stay
        torch modules (e.g. to keep save_pretrained working for a model whose
        other layers are not replaced). Conv2d layers that stay dense always
        stay in torch.
    inplace: modify `model` itself instead of a deep copy.
    drop_padding: in Hugging Face encoders (below), run the layers on the real
        tokens of a padded batch only; the encoder output is then 0 at padding
        positions (real tokens are unaffected). False keeps every position.
    Fusions, each with the same results as the unfused layers (bit-identical
    for q/k/v; float rounding otherwise): Linear + exact GELU (one int8 GEMM
    with a GELU epilogue); attention's query/key/value reading the same input
    (one GEMM over the stacked weights: int8 with the input quantized once,
    or packed fp32 for dense fp32 layers); BERT-style
    output blocks LayerNorm(dense(h) + input) (residual add and LayerNorm in
    one in-place kernel after the int8 dense). Hugging Face transformers
    models (>= 5) using "sdpa" attention switch to sparsekit's attention
    kernel, falling back to sdpa for anything it does not cover
    (sparsekit/convert/hf_attention.py); a BERT-style layer whose parts all
    run on sparsekit then gets one direct forward calling the same kernels
    (bit-identical, no module / state_dict change; its own forward for
    training, grad, hooks, recorded outputs and other masks:
    sparsekit/convert/hf_layer.py), and a BertModel whose layers all have
    it one direct forward for the whole model (embeddings, mask, layers,
    pooler; bit-identical, the same fallbacks: sparsekit/convert/hf_model.py).
    A direct forward whose install-time check raises is left out with a
    RuntimeWarning naming the layer / model and the error.
    The returned model is put in eval mode and is inference-only: the
    parameters it keeps (LayerNorm, embeddings, layers left in torch) stop
    requiring grad, so a plain ``model(x)`` works without torch.no_grad().
    sparsekit.torch.report(model) lists per layer what was chosen and why.
    Saving: accelerate is a load-time step; save the model before it. The
    state_dict of an accelerated model holds each replaced layer's packed
    arrays (e.g. fc.weight.indptr / .indices / .data for CSR, + .shared_columns
    for its shared-column layout, rebuilt on load; see
    sparsekit/runtime/torch_modules.py), so torch.save(fast.state_dict()) and
    fresh.load_state_dict(...) round-trip exactly between models accelerated
    the same way (fresh = accelerate(the same architecture, same arguments);
    quantize="static" layers also store weight.input_scale / .input_zero_point,
    and the receiving model needs calibrate()'s parameters to be accelerated
    with quantize="static" at all: any calibration does, the state_dict's
    values replace them).
    Plain transformers cannot read those keys, so save_pretrained (and
    sentence-transformers' save) of a model with replaced layers raises rather
    than write a checkpoint it would fill with random weights; torch.save(model)
    pickles the accelerated model whole (torch.load(path, weights_only=False)).
    A model where only the attention was switched saves a plain checkpoint:
    transformers does not write the "sparsekit" attention into config.json,
    and loads it with its default attention.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    quantize = _check_quantize(quantize, model)
    min_sparsity = W.check_min_sparsity(min_sparsity)
    rows_per_call = W.check_m(m)
    dense = _check_dense(dense)
    if not inplace:
        model = _deepcopy(model)
    rows = W.LayerReport()
    targets = []
    parents = _parents(model)
    for name, m in model.named_modules():
        if isinstance(m, SparsekitModule):
            rows.append({"name": name, "module": "sparsekit", "chosen": W.describe(
                m.layer.weight), "reason": "already accelerated: " + m.reason})
            continue
        if any(name.startswith(t + ".") for t in targets):
            continue  # inside a module being replaced
        with torch.no_grad():
            new, chosen, reason = _plan_named(name, m, quantize, min_sparsity,
                                              parents.get(name), rows_per_call, dense)
        if chosen is None:
            continue
        rows.append({"name": name or "(root)", "module": type(m).__name__, "chosen": chosen,
                     "reason": reason})
        if new is not None:
            targets.append(name)
            _set_submodule(model, name, new)
    _fuse_gelu(model, rows)
    _fuse_shared_input(model, rows)
    _fuse_residual_layernorm(model, rows)
    if "transformers" in sys.modules:  # a Hugging Face model: its attention too
        from sparsekit.convert import hf_attention

        rows.extend(hf_attention.install(model, drop_padding))
        from sparsekit.convert import hf_layer

        hf_layer.install(model, rows)  # BERT-style layers fully on sparsekit: one forward
        from sparsekit.convert import hf_model

        hf_model.install(model, rows)  # ... and a BertModel of such layers: one forward
    model.eval()
    model.requires_grad_(False)  # else torch layers before ours hand us grad-tracked tensors
    object.__setattr__(model, _REPORT_ATTR, rows)
    _refuse_checkpoints(model)
    return model


class _SaveRefused:
    """Stands in for save_pretrained / save of a Hugging Face or
    sentence-transformers model whose layers run on sparsekit: their state_dict
    keys are packed arrays (weight.indptr, weight.packed ...), not the
    `weight` transformers looks for, so it would load random weights in their
    place. Picklable, so torch.save(model) still works."""

    def __init__(self, method, layers):
        self.method, self.layers = method, layers

    def __call__(self, *args, **kwargs):
        n = len(self.layers)
        which = self.layers[0] + (f" and {n - 1} more" if n > 1 else "")
        raise RuntimeError(
            f"{self.method}: this model was accelerated by sparsekit.torch.accelerate; "
            f"its layers on sparsekit kernels ({which}) store packed sparse / int8 "
            "arrays in the state_dict, which transformers cannot load (it would fill "
            "those layers with random weights). Save the model before accelerate (and "
            "accelerate it again after loading); between accelerated models, "
            "torch.save(model.state_dict(), path) and load_state_dict work (accelerate "
            "the receiving model the same way); or pickle the accelerated model whole "
            "with torch.save(model, path)")


def _refuse_checkpoints(model):
    for m in model.modules():
        if not callable(getattr(m, "save_pretrained", None)):
            continue
        layers = [n for n, c in m.named_modules() if isinstance(c, SparsekitModule)]
        if not layers:
            continue  # only the attention switched: a plain checkpoint (see accelerate)
        for method in ("save_pretrained", "save"):
            if callable(getattr(m, method, None)):
                object.__setattr__(m, method, _SaveRefused(method, layers))


def _deepcopy(model):
    # prune's module.weight = weight_orig * weight_mask is a non-leaf tensor,
    # which deepcopy refuses; it is recomputed by prune's hook, so a detached
    # copy stands in for it
    memo = {}
    for m in model.modules():
        for v in vars(m).values():
            if isinstance(v, torch.Tensor) and not v.is_leaf:
                memo[id(v)] = v.detach().clone()
    return copy.deepcopy(model, memo)


def _set_submodule(model, name, new):
    if not name:
        raise ValueError("model: the model itself is a single layer; wrap it in "
                         "nn.Sequential to accelerate it")
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def report(model, quantize=None, min_sparsity=None, m=None, dense="sparsekit"):
    """Per-layer rows (name, module, chosen, reason); print it for a table.
    For a model accelerate() returned, the choices it made; for a runtime Model
    from to_runtime, the choices to_runtime made (its `conversion_report`; from
    onnx.load / keras.convert, their `.report`); for any other model, what
    accelerate(model, quantize, min_sparsity, m=m, dense=dense) would choose."""
    rows = getattr(model, _REPORT_ATTR, None)
    if rows is not None:
        return rows
    if isinstance(model, Model):  # the runtime: what its converter chose
        rows = getattr(model, "conversion_report", None)
        rows = getattr(model, "report", None) if rows is None else rows
        if rows is None:
            raise TypeError("model: this runtime Model carries no conversion report (only "
                            "models from to_runtime, onnx.load or keras.convert do)")
        return rows
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    quantize = _check_quantize(quantize, model)
    min_sparsity = W.check_min_sparsity(min_sparsity)
    rows_per_call = W.check_m(m)
    dense = _check_dense(dense)
    rows = W.LayerReport()
    parents = _parents(model)
    for name, m in model.named_modules():
        if isinstance(m, SparsekitModule):
            rows.append({"name": name, "module": "sparsekit",
                         "chosen": W.describe(m.layer.weight), "reason": m.reason})
            continue
        with torch.no_grad():
            _, chosen, reason = _plan_named(name, m, quantize, min_sparsity,
                                            parents.get(name), rows_per_call, dense)
        if chosen is not None:
            rows.append({"name": name or "(root)", "module": type(m).__name__,
                         "chosen": chosen, "reason": reason})
    return rows


# ---- nn.Sequential -> torch-free runtime ------------------------------------

def to_runtime(model, quantize=None, min_sparsity=None, drop_padding=True, outputs=None,
               m=None):
    """A sparsekit.runtime.Model of an nn.Sequential (nested Sequentials
    allowed) built from Linear, Conv2d, ReLU, GELU, Sigmoid, Tanh, LayerNorm
    (last axis), Softmax, MaxPool2d, AvgPool2d, Flatten, Dropout, Identity and
    already-accelerated modules. Layers not sparse enough for a sparse format
    (see min_sparsity in accelerate) stay dense: fp32 with quantize=None, dense
    int8 (QuantizedMatrix) with quantize="dynamic". The returned model's
    `conversion_report` (also ``report(rt)``) lists each weight layer's format
    and why, as report() does for accelerate.

    Also a Hugging Face BertModel, or a sentence-transformers model wrapping
    one (Pooling with modes "mean", "max", "cls" or several of them, then
    Dense and Normalize modules): the runtime model takes NumPy int arrays
    input_ids, attention_mask [B, T] and optionally token_type_ids (left out:
    all 0, as in Hugging Face). `outputs` names what it returns, one name
    (an array) or a list of names (a tuple in that order):

    - BertModel: "last_hidden_state" [B, T, C] (the default; 0 at padding
      positions when drop_padding) and "pooler_output" [B, C] (tanh of the
      pooler's Linear on position 0, the [CLS] token, as in Hugging Face;
      with drop_padding position 0 must be a real token, i.e. right-padded
      input as BERT tokenizers give, and left padding raises; cls pooling
      of sentence-transformers models alike);
    - sentence-transformers: "sentence_embedding" [B, C'] (the default) and
      "token_embeddings" [B, T, C] (the transformer's last hidden state).

    drop_padding runs the encoder on the real tokens only. Linear weights get
    the formats accelerate would choose (quantize, min_sparsity, m: the rows
    per Linear call, e.g. m=1 for one token at a time, see accelerate).
    quantize="static" runs calibrate()'s parameters as accelerate does, for
    nn.Sequential and BERT models alike: calibrated Linears become static
    int8, the others fp32 as with quantize=None (the report says "not
    calibrated"); a model with no calibrated Linear raises a ValueError. In
    BERT, query / key / value run as one stacked weight with one input
    quantization: calibrate gives the three the same input scale / zero
    point (they read the same hidden states); calibrating only some of them,
    or giving them different input parameters by hand, raises a ValueError.
    Anything else in the model raises a ValueError naming it. See
    sparsekit/convert/bert.py."""
    from sparsekit.convert import bert

    if bert.handles(model):
        return bert.to_runtime(model, quantize, min_sparsity, drop_padding, outputs, m=m)
    if outputs is not None:
        raise ValueError("outputs: only for BERT and sentence-transformers models (an "
                         "nn.Sequential has one output)")
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model: expected an nn.Sequential, got {type(model).__name__} "
                        "(export other models to ONNX and use sparsekit.onnx.load)")
    quantize = _check_quantize(quantize, model)
    min_sparsity = W.check_min_sparsity(min_sparsity)
    rows = W.check_m(m)
    out, log = [], W.LayerReport()
    for i, mod in enumerate(_flatten_seq(model)):
        out.extend(_runtime_layer_named(i, mod, quantize, min_sparsity, rows, log))
    rt = Model(fuse_relu(out))
    rt.conversion_report = log
    return rt


def _dense_linear(m, reason, activation=None):
    """(runtime Linear, reason) for an nn.Linear that stays dense fp32: its
    weight packed once where sparsekit's fp32 GEMM beats NumPy's BLAS."""
    w, reason = W._dense(_float_weight(m)[0], True, reason)
    return L.Linear(w, _bias(m), activation), reason


def _flatten_seq(seq):
    for m in seq:
        if isinstance(m, nn.Sequential):
            yield from _flatten_seq(m)
        else:
            yield m


def _runtime_layer_named(i, m, quantize, min_sparsity, rows=None, log=None):
    """_runtime_layer, with errors in calibration parameters naming the layer."""
    try:
        return _runtime_layer(i, m, quantize, min_sparsity, rows, log)
    except (TypeError, ValueError) as e:
        if quantize != "static" or _qparams_attr() not in str(e):
            raise
        raise type(e)(f"model[{i}]: {e}") from None


def _runtime_layer(i, m, quantize, min_sparsity, rows=None, log=None):
    """The runtime layers for module m (model[i]); a weight layer's choice is
    appended to `log` (rows as report() gives them)."""
    def logged(layer, chosen, reason):
        if log is not None:
            log.append({"name": str(i), "module": type(m).__name__, "chosen": chosen,
                        "reason": reason})
        return [layer]

    if isinstance(m, SparsekitModule):
        return logged(m.layer, W.describe(m.layer.weight), "already accelerated: " + m.reason)
    if isinstance(m, (nn.Linear, nn.Conv2d)) or (
            _DYN_LINEAR is not None and isinstance(m, _DYN_LINEAR)):
        with torch.no_grad():
            new, chosen, reason = _plan(m, quantize, min_sparsity, rows=rows)
        if new is not None and new.out_qparams is None:
            return logged(new.layer, chosen, reason)
        if isinstance(m, nn.Linear):
            layer, reason = _dense_linear(m, reason)
            return logged(layer, W.describe(layer.weight), reason)
        if isinstance(m, nn.Conv2d) and _conv_unsupported(m) is None:
            w, _ = _float_weight(m)
            layer = _make_layer("conv", _rows(w), _bias(m), m, None)
            return logged(layer, W.describe(layer.weight), reason)
        raise ValueError(f"model[{i}]: {type(m).__name__} cannot run in the runtime: {reason}")
    simple = {nn.ReLU: L.ReLU, nn.Sigmoid: L.Sigmoid, nn.Tanh: L.Tanh, nn.Identity: L.Identity,
              nn.Dropout: L.Identity}
    for cls, lay in simple.items():
        if type(m) is cls:
            return [lay()]
    if isinstance(m, nn.GELU):
        return [L.GELU(m.approximate)]
    if isinstance(m, nn.Flatten):
        if m.end_dim != -1:
            raise ValueError(f"model[{i}]: Flatten(end_dim={m.end_dim}) is not supported")
        return [L.Flatten(m.start_dim)]
    if isinstance(m, nn.Softmax):
        return [L.Softmax(-1 if m.dim is None else m.dim)]
    if isinstance(m, nn.LayerNorm):
        if len(m.normalized_shape) != 1 or not m.elementwise_affine:
            raise ValueError(f"model[{i}]: LayerNorm over one axis with affine params only")
        return [L.LayerNorm(numpy_of(m.weight).copy(), _bias(m), m.eps)]
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        if getattr(m, "ceil_mode", False) or (isinstance(m, nn.MaxPool2d) and m.dilation != 1) \
                or (isinstance(m, nn.AvgPool2d) and (not m.count_include_pad or
                                                     m.divisor_override)):
            raise ValueError(f"model[{i}]: {m} options are not supported")
        cls = L.MaxPool2d if isinstance(m, nn.MaxPool2d) else L.AvgPool2d
        pad = m.padding if isinstance(m.padding, (tuple, list)) else (m.padding, m.padding)
        return [cls(m.kernel_size, m.stride, pad)]
    raise ValueError(f"model[{i}]: {type(m).__name__} is not supported by the runtime")
