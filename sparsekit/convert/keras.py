"""Keras 3 -> sparsekit.runtime.Model.

    keras layer graph (Sequential or Functional) ─► runtime nodes
        Dense   kernel [in, out]          ─► Linear(W = kernel.T)
        Conv2D  kernel [kh, kw, in, out]  ─► Conv2d(W = kernel.transpose(3, 0, 1, 2))
        TF-MOT prune_low_magnitude(...)   ─► the wrapped layer, kernel * mask

Keras images are channels_last (NHWC); the runtime's convolutions and pools are
NCHW. Each tensor carries its layout and Transpose layers are inserted only
where a layer needs the other one (before the first conv, before Flatten /
Dense on images, at the outputs), so results have Keras's layout and order.

TF Model Optimization is not installable with Keras 3 on the torch backend, so
its pruning wrappers are recognised by shape, not by import: a layer that wraps
another (`.layer`) and owns a weight named "mask" (PruneLowMagnitude keeps
`pruning_vars` = [(weight, mask, threshold)]) has the mask applied.
After tfmot.sparsity.keras.strip_pruning the zeros are in the kernel itself.
"""
import math

import numpy as np

from sparsekit.runtime import layers as L
from sparsekit.runtime import weights as W
from sparsekit.runtime.model import Model

_ACTS = {"linear": None, "relu": L.ReLU, "sigmoid": L.Sigmoid, "tanh": L.Tanh,
         "softmax": lambda: L.Softmax(-1), "gelu": lambda: L.GELU("none")}


def _np(v):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float32)


def _unwrap(layer):
    """(inner layer, mask or None, note) for TF-MOT-style pruning wrappers."""
    inner = getattr(layer, "layer", None)
    if inner is None or not hasattr(inner, "get_config"):
        return layer, None, ""
    mask = None
    for item in getattr(layer, "pruning_vars", None) or []:
        try:
            _, mask, _ = item
        except (TypeError, ValueError):
            continue
    if mask is None:
        for w in layer.weights:
            name = (getattr(w, "path", None) or w.name).rsplit("/", 1)[-1]
            if name.split(":")[0] == "mask":
                mask = w
                break
    if mask is None:
        return inner, None, f"wrapper {type(layer).__name__} without a mask"
    return inner, _np(mask), f"{type(layer).__name__} mask applied"


def _activation(layer):
    act = layer.get_config().get("activation", "linear")
    if isinstance(act, dict):
        act = act.get("config", {}).get("name", act.get("class_name"))
    if not isinstance(act, str) or act not in _ACTS:
        raise ValueError(f"layer {layer.name!r}: activation {act!r} is not supported "
                         f"(supported: {', '.join(_ACTS)})")
    return act


def _same_pads(size, k, s, d, name):
    if size is None:
        if s != 1:
            raise ValueError(f"layer {name!r}: padding='same' with stride > 1 needs a known "
                             "input size")
        tot = d * (k - 1)
    else:
        tot = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return tot // 2, tot - tot // 2


class _Builder:
    def __init__(self, quantize, min_sparsity, m=None):
        self.nodes, self.count = [], 0
        self.quantize, self.min_sparsity, self.m = quantize, min_sparsity, m
        self.report = W.LayerReport()
        self.moved = {}  # (tensor, layout) -> transposed tensor, made once

    def emit(self, layer, ins):
        name = f"k{self.count}"
        self.count += 1
        self.nodes.append((layer, ins, name))
        return name

    def layout(self, t, want):
        """t = (name, layout, ndim) moved to layout `want` ("nhwc" / "nchw")."""
        name, lay, nd = t
        if nd != 4 or lay == want:
            return (name, want if nd == 4 else lay, nd)
        if (name, want) not in self.moved:
            axes = [0, 3, 1, 2] if want == "nchw" else [0, 2, 3, 1]
            self.moved[(name, want)] = self.emit(L.Transpose(axes), [name])
        return (self.moved[(name, want)], want, nd)

    def weight(self, w, what, module, conv=False):
        """A conv's rows per call are output pixels: it keeps pack's default M
        (and NumPy for dense fp32); a Dense's dense fp32 kernel is packed where
        sparsekit's fp32 GEMM beats NumPy."""
        fmt, why = W.pack_float(w, self.quantize, self.min_sparsity,
                                m=None if conv else self.m, packed=not conv)
        self.report.append(W.report_row(what, module, fmt, why))
        return fmt


def _convert_layer(b, layer, ins, out_ndim):
    """Runtime nodes for one Keras layer; returns the output tensor tuple."""
    layer, mask, note = _unwrap(layer)
    kind = type(layer).__name__
    cfg = layer.get_config()
    x = ins[0] if ins else None
    if kind in ("InputLayer",):
        return x
    if kind in ("Dropout", "SpatialDropout2D", "GaussianNoise", "ActivityRegularization"):
        return x
    if kind == "Dense":
        x = b.layout(x, "nhwc")
        kernel = _np(layer.kernel)
        if mask is not None:
            kernel = kernel * mask
        bias = _np(layer.bias) if layer.use_bias else None
        act = _activation(layer)
        what = f"{layer.name} ({note})" if note else layer.name
        name = b.emit(L.Linear(b.weight(np.ascontiguousarray(kernel.T), what, kind), bias,
                               "relu" if act == "relu" else None), [x[0]])
        if act not in ("linear", "relu"):
            name = b.emit(_ACTS[act](), [name])
        return (name, x[1], out_ndim)
    if kind == "Conv2D":
        if cfg.get("groups", 1) != 1:
            raise ValueError(f"layer {layer.name!r}: Conv2D groups != 1 is not supported")
        if cfg.get("data_format", "channels_last") != "channels_last":
            x = (x[0], "nchw", x[2])
        x = b.layout(x, "nchw")
        kernel = _np(layer.kernel)
        if mask is not None:
            kernel = kernel * mask
        kh, kw, cin, cout = kernel.shape
        w = np.ascontiguousarray(kernel.transpose(3, 0, 1, 2)).reshape(cout, -1)  # kh kw in
        st, dl = tuple(cfg["strides"]), tuple(cfg["dilation_rate"])
        if cfg["padding"] == "same":
            shape = layer.input.shape if hasattr(layer, "input") else (None,) * 4
            hw = shape[1:3] if cfg.get("data_format", "channels_last") == "channels_last" \
                else shape[2:4]
            ph = _same_pads(hw[0], kh, st[0], dl[0], layer.name)
            pw = _same_pads(hw[1], kw, st[1], dl[1], layer.name)
            pads = (ph[0], ph[1], pw[0], pw[1])
        elif cfg["padding"] == "valid":
            pads = (0, 0, 0, 0)
        else:
            raise ValueError(f"layer {layer.name!r}: padding={cfg['padding']!r} unsupported")
        act = _activation(layer)
        what = f"{layer.name} ({note})" if note else layer.name
        name = b.emit(L.Conv2d(b.weight(w, what, kind, conv=True), _np(layer.bias) if layer.use_bias else None,
                               in_channels=cin, kernel_size=(kh, kw), stride=st, padding=pads,
                               dilation=dl, activation="relu" if act == "relu" else None),
                      [x[0]])
        out = (name, "nchw", 4)
        if act not in ("linear", "relu"):
            if act == "softmax":  # over channels: Keras's last axis
                out = b.layout(out, "nhwc")
            out = (b.emit(_ACTS[act](), [out[0]]), out[1], 4)
        return out
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        x = b.layout(x, "nchw")
        k, s = tuple(cfg["pool_size"]), tuple(cfg["strides"] or cfg["pool_size"])
        pads = (0, 0, 0, 0)
        if cfg["padding"] == "same":
            shape = layer.input.shape
            ph = _same_pads(shape[1], k[0], s[0], 1, layer.name)
            pw = _same_pads(shape[2], k[1], s[1], 1, layer.name)
            pads = (ph[0], ph[1], pw[0], pw[1])
            if kind == "AveragePooling2D" and any(pads):
                raise ValueError(f"layer {layer.name!r}: AveragePooling2D with padding='same' "
                                 "(padding excluded from the mean) is not supported")
        cls = L.MaxPool2d if kind == "MaxPooling2D" else L.AvgPool2d
        return (b.emit(cls(k, s, pads), [x[0]]), "nchw", 4)
    if kind in ("GlobalAveragePooling2D",):
        x = b.layout(x, "nchw")
        keep = cfg.get("keepdims", False)
        name = b.emit(L.GlobalAvgPool2d(keep), [x[0]])
        return (name, "nchw" if keep else "nhwc", 4 if keep else 2)
    if kind == "Flatten":
        x = b.layout(x, "nhwc")
        return (b.emit(L.Flatten(1), [x[0]]), "nhwc", 2)
    if kind in ("ReLU", "Activation", "Softmax"):
        if kind == "Activation":
            act = _activation(layer)
        elif kind == "ReLU":
            if cfg.get("max_value") is not None or cfg.get("negative_slope", 0) or \
                    cfg.get("threshold", 0):
                raise ValueError(f"layer {layer.name!r}: ReLU options are not supported")
            act = "relu"
        else:
            act = "softmax"
            if cfg.get("axis", -1) != -1:
                raise ValueError(f"layer {layer.name!r}: Softmax axis != -1 is not supported")
        if act == "linear":
            return x
        if act == "softmax":
            x = b.layout(x, "nhwc")
        return (b.emit(_ACTS[act](), [x[0]]), x[1], x[2])
    if kind == "LayerNormalization":
        axis = cfg.get("axis", -1)
        if axis not in (-1, [-1], x[2] - 1, [x[2] - 1]) or not cfg.get("scale", True) \
                or getattr(layer, "rms_scaling", False):
            raise ValueError(f"layer {layer.name!r}: LayerNormalization only over the last "
                             "axis with scale")
        x = b.layout(x, "nhwc")
        beta = _np(layer.beta) if cfg.get("center", True) else None
        return (b.emit(L.LayerNorm(_np(layer.gamma), beta, cfg["epsilon"]), [x[0]]), x[1], x[2])
    if kind == "Add":
        if len(ins) != 2:
            raise ValueError(f"layer {layer.name!r}: Add of {len(ins)} inputs (only 2)")
        want = "nchw" if any(t[1] == "nchw" and t[2] == 4 for t in ins) else "nhwc"
        a, c = b.layout(ins[0], want), b.layout(ins[1], want)
        return (b.emit(L.Add(), [a[0], c[0]]), want, max(a[2], c[2]))
    raise ValueError(f"layer {layer.name!r}: Keras layer {kind} is not supported by "
                     "sparsekit.keras")


def convert(model, quantize=None, min_sparsity=None, m=None):
    """A sparsekit.runtime.Model computing what `model` (Keras 3 Sequential or
    Functional) computes, with inputs and outputs in Keras's layout.
    Pruned Dense / Conv2D kernels become a sparse format when sparse enough,
    or int8 with quantize="dynamic" (quantize: None or "dynamic"; "int8",
    sparsekit.pack's spelling, means the same);
    min_sparsity: None (the default: sparsekit.pack's measured cost model
    decides, as in sparsekit.torch.accelerate) or a fraction of zeros from
    which a sparse format is used. The returned model's `.report` lists the
    per-layer choices (dict rows "name", "module", "chosen", "reason", as
    sparsekit.torch.report; print it for a table). m: about how many rows each
    Dense gets per call (None:
    sparsekit.pack's default, 128); m=1 (one sample at a time) picks
    SlicedEllMatrix for sparse fp32 Dense kernels where pack predicts it
    fastest, m >= 2 a CSRMatrix with its shared-column layout at 65-83%
    sparsity on AVX-512 where pack predicts that (see
    sparsekit.torch.accelerate). Raises TypeError when `model` is not a keras.Model, ValueError
    for an unsupported layer (naming it), an unbuilt Sequential, or a bad
    quantize / min_sparsity / m (TypeError for a non-number min_sparsity or a
    non-int m)."""
    import keras

    quantize = W.check_quantize(quantize)
    min_sparsity = W.check_min_sparsity(min_sparsity)
    rows = W.check_m(m)
    if not isinstance(model, keras.Model):
        raise TypeError(f"model: expected a keras.Model, got {type(model).__name__}")
    b = _Builder(quantize, min_sparsity, rows)
    if isinstance(model, keras.Sequential):
        if not model.built or not model.inputs:
            raise ValueError("model: build the Sequential model with an Input shape first")
        nd = len(model.inputs[0].shape)
        t = ("input", "nhwc", nd)
        for layer in model.layers:
            t = _convert_layer(b, layer, [t], len(layer.output.shape))
        outs, inputs = [t], ["input"]
    else:
        outs, inputs = _convert_functional(b, model)
    names = [b.layout(t, "nhwc")[0] for t in outs]
    if any(n in inputs for n in names):
        names = [b.emit(L.Identity(), [n]) if n in inputs else n for n in names]
    m = Model.graph(b.nodes, inputs, names)
    m.report = b.report
    return m


def _convert_functional(b, model):
    tensors = {}
    inputs = []
    for i, kt in enumerate(model.inputs):
        name = getattr(kt, "name", None) or f"input{i}"
        tensors[id(kt)] = (name, "nhwc", len(kt.shape))
        inputs.append(name)
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            op = node.operation
            if type(op).__name__ == "InputLayer":
                continue
            ins = [tensors[id(t)] for t in node.input_tensors]
            outs = node.output_tensors
            if len(outs) != 1:
                raise ValueError(f"layer {op.name!r}: layers with several outputs are not "
                                 "supported")
            tensors[id(outs[0])] = _convert_layer(b, op, ins, len(outs[0].shape))
    return [tensors[id(t)] for t in model.outputs], inputs
