"""Quantization calibration: static int8 parameters for Linear/Conv layers.

    report = calibrate(model, batches, observer="percentile")
    qp = get_qparams(model.fc1)         # QuantParams attached to the module
    with fake_quantize(model):          # evaluate the int8 model in fp32
        accuracy(model)
    fast = sparsekit.torch.accelerate(model, quantize="static")  # ... on the int8 kernels

calibrate() runs the calibration batches once with hooks that feed each
layer's input and output to an observer (min/max, percentile, MSE, entropy),
computes per-output-channel int8 weight scales, and attaches a QuantParams to
every layer as `module.sparsekit_qparams` (get_qparams). A second pass
measures each layer's output error when only that layer is quantized (the
report). fake_quantize() evaluates the model with them.

sparsekit.torch.accelerate(model, quantize="static") (and to_runtime for an
nn.Sequential or a BERT / sentence-transformers model) runs them: each
calibrated Linear / Conv2d gets its weight quantized with weight_scale exactly
as here (quantize_weight) and its input quantized with (input_scale,
input_zero_point) inside the int8 kernels (QuantizedMatrix /
SparseInt8Matrix.with_static_input). It computes what fake_quantize simulates
up to float rounding (exact integer sums there, float32 GEMM here). The output
parameters are not used (outputs stay fp32); layers without QuantParams run as
with quantize=None. For one weight by hand:
QuantizedMatrix.from_int8(q, qp.weight_scale).with_static_input(
qp.input_scale, qp.input_zero_point).

Conventions (DESIGN.md): weights symmetric int8 in [-127, 127], per output
channel by default; activations u8 asymmetric with a zero point in [0, 255].
Rounding is half to even (torch.round).
"""
import math
from dataclasses import dataclass, field

import numpy as np

from sparsekit.compress._torch import call_model, nn, torch, weight_layers
from sparsekit.compress.observers import make_observer
from sparsekit._report import Report

QPARAMS_ATTR = "sparsekit_qparams"


@dataclass
class QuantParams:
    """Static int8 parameters of one layer.

    input_scale, input_zero_point     u8 activations entering the layer
    output_scale, output_zero_point   u8 parameters for the layer's output
                                      (to requantize in a static chain)
    weight_scale                      float32 [out] (per channel) or [1]
    observer                          the observer name used
    """
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    weight_scale: np.ndarray = field(repr=False)
    observer: str = "minmax"

    @property
    def per_channel(self):
        return self.weight_scale.size > 1


def weight_scales(weight, per_channel=True):
    """Symmetric int8 scales: max|w| / 127 per output channel (or per tensor);
    all-zero channels get scale 1."""
    w = weight.detach().reshape(weight.shape[0], -1).abs().float()
    m = w.amax(1) if per_channel else w.max().reshape(1)
    return torch.where(m > 0, m / 127.0, torch.ones_like(m))


def quantize_weight(weight, scale):
    """int8 tensor round(w / scale) clipped to [-127, 127]; scale [out] or [1]."""
    s = torch.as_tensor(scale, dtype=torch.float32, device=weight.device)
    s = s.reshape((-1,) + (1,) * (weight.dim() - 1))
    return torch.clamp(torch.round(weight.detach().float() / s), -127, 127).to(torch.int8)


def fake_quant_weight(weight, scale):
    s = torch.as_tensor(scale, dtype=torch.float32, device=weight.device)
    s = s.reshape((-1,) + (1,) * (weight.dim() - 1))
    return (quantize_weight(weight, scale).float() * s).to(weight.dtype)


def fake_quant_activation(x, scale, zero_point):
    """u8 asymmetric quantize-dequantize."""
    q = torch.clamp(torch.round(x / scale) + zero_point, 0, 255)
    return (q - zero_point) * scale


def get_qparams(module):
    """The QuantParams calibrate() attached to `module`, or None."""
    return getattr(module, QPARAMS_ATTR, None)


class QuantReport(Report):
    columns = ("layer", "observer", "input_range", "input_scale", "input_zp", "weight_sqnr_db",
               "output_sqnr_db", "output_rel_err")
    title = ("quantization report (SQNR in dB, higher is better; output error with only this "
             "layer quantized)")


def _sqnr_db(ref, err_sq):
    sig = float(ref)
    if err_sq <= 0:
        return math.inf
    return 10.0 * math.log10(sig / err_sq) if sig > 0 else -math.inf


def _layer_forward(module, x, weight):
    if isinstance(module, nn.Linear):
        return torch.nn.functional.linear(x, weight, module.bias)
    return module._conv_forward(x, weight, module.bias)


def calibrate(model, calibration, observer="minmax", skip=(), per_channel=True,
              report=True, **observer_options):
    """Observe activations over `calibration` and attach static int8 QuantParams
    to every Linear/Conv layer of `model` (except `skip`).

    calibration: iterable of batches (model(**b) for a dict, model(b) otherwise).
    observer: "minmax", "percentile", "mse", "entropy", or an Observer class or
        factory; observer_options go to it (e.g. percentile=99.9, bins=2048).
    per_channel: per-output-channel weight scales (default) or one per tensor.
    report: run a second pass measuring each layer's quantization error.
    Returns a QuantReport (list of per-layer dicts).
    """
    layers = weight_layers(model, skip)
    if not layers:
        raise ValueError("model: no Linear/Conv layers to calibrate (check skip)")
    if isinstance(calibration, (dict, torch.Tensor)):
        calibration = [calibration]
    batches = list(calibration)
    if not batches:
        raise ValueError("calibration: got no batches")
    obs_name = observer if isinstance(observer, str) else getattr(observer, "__name__", "custom")
    inputs = {n: make_observer(observer, **observer_options) for n, _ in layers}
    outputs = {n: make_observer(observer, **observer_options) for n, _ in layers}

    def hook_for(name):
        def hook(module, args, out):
            inputs[name].observe(args[0])
            outputs[name].observe(out)
        return hook

    was_training = model.training
    model.eval()
    _run_with_hooks(model, [(m, hook_for(n)) for n, m in layers], batches)
    rows = QuantReport()
    for name, m in layers:
        if inputs[name].count == 0:
            rows.append({"layer": name, "observer": "not called"})
            continue
        in_s, in_zp = inputs[name].qparams("uint8")
        out_s, out_zp = outputs[name].qparams("uint8")
        ws = weight_scales(m.weight, per_channel)
        qp = QuantParams(float(in_s), int(in_zp), float(out_s), int(out_zp),
                         ws.cpu().numpy().astype(np.float32), obs_name)
        setattr(m, QPARAMS_ATTR, qp)
        w = m.weight.detach().float()
        werr = float(((w - fake_quant_weight(w, ws)) ** 2).sum())
        lo, hi = inputs[name].range("uint8")
        rows.append({"layer": name, "observer": obs_name, "input_range": f"[{lo:.3g}, {hi:.3g}]",
                     "input_scale": float(in_s), "input_zp": int(in_zp),
                     "weight_sqnr_db": _sqnr_db((w ** 2).sum(), werr)})
    if report:
        _error_pass(model, layers, batches, rows)
    model.train(was_training)
    return rows


def _run_with_hooks(model, hooks, batches):
    """Call `model` on every batch (no grad) with forward hooks [(module, hook)]
    attached; they are removed again whatever happens."""
    handles = [m.register_forward_hook(h) for m, h in hooks]
    try:
        with torch.no_grad():
            for b in batches:
                call_model(model, b)
    finally:
        for h in handles:
            h.remove()


def _error_pass(model, layers, batches, rows):
    """Each layer alone quantized: output SQNR and relative error vs fp32."""
    acc = {n: [0.0, 0.0] for n, _ in layers}

    def hook_for(name):
        def hook(module, args, out):
            qp = get_qparams(module)
            x = fake_quant_activation(args[0], qp.input_scale, qp.input_zero_point)
            wq = fake_quant_weight(module.weight, qp.weight_scale)
            yq = _layer_forward(module, x, wq)
            acc[name][0] += float((out.double() ** 2).sum())
            acc[name][1] += float(((out - yq).double() ** 2).sum())
        return hook

    _run_with_hooks(model, [(m, hook_for(n)) for n, m in layers if get_qparams(m)], batches)
    for row in rows:
        sig, err = acc.get(row["layer"], (0.0, 0.0))
        if sig > 0:
            row["output_sqnr_db"] = _sqnr_db(sig, err)
            row["output_rel_err"] = math.sqrt(err / sig)


class FakeQuant:
    """Handle returned by fake_quantize(): `remove()` (or leaving the `with`
    block) restores the fp32 weights and takes the input hooks off."""

    def __init__(self, model, quantize_outputs=False):
        self._saved, self._handles = [], []
        for name, m in weight_layers(model):
            qp = get_qparams(m)
            if qp is None:
                continue
            self._saved.append((m, m.weight.detach().clone()))
            with torch.no_grad():
                m.weight.copy_(fake_quant_weight(m.weight, qp.weight_scale))
            self._handles.append(m.register_forward_pre_hook(self._pre(qp)))
            if quantize_outputs:
                self._handles.append(m.register_forward_hook(self._post(qp)))
        if not self._saved:
            raise ValueError("model: no calibrated layers (run calibrate(model, ...) first)")

    @staticmethod
    def _pre(qp):
        def hook(module, args):
            return (fake_quant_activation(args[0], qp.input_scale, qp.input_zero_point),) + \
                tuple(args[1:])
        return hook

    @staticmethod
    def _post(qp):
        def hook(module, args, out):
            return fake_quant_activation(out, qp.output_scale, qp.output_zero_point)
        return hook

    def remove(self):
        for h in self._handles:
            h.remove()
        with torch.no_grad():
            for m, w in self._saved:
                m.weight.copy_(w)
        self._handles, self._saved = [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def fake_quantize(model, quantize_outputs=False):
    """Simulate the static int8 model in fp32, in place: each calibrated layer's
    weight is replaced by its int8 round trip and its input by the u8 round
    trip (and its output too with quantize_outputs=True). Returns a FakeQuant
    handle; use it as a context manager or call remove()."""
    return FakeQuant(model, quantize_outputs)
