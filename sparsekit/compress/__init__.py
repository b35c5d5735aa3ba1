"""sparsekit.compress: the compression methods, on PyTorch models.

    pruning      prune(model, sparsity, method="magnitude"|"wanda"|"sparsegpt",
                       pattern="unstructured"|"2:4"|"1x4", scope="layer"|"global",
                       calibration=None, skip=(), allocation="uniform"|"owl"|{...},
                       **method options)                   -> per-layer report
                 keep_masks / apply_masks, PolynomialSchedule + GradualPruner
    structured   remove neurons, channels, FFN width and attention heads so the
                 model really shrinks (same outputs as the masked model)
    quantize     observers (min/max, percentile, MSE, entropy), calibrate() to
                 attach static int8 scales and zero points, per-layer error report
    distill      kd_loss (Hinton) and distill(teacher, student, data, ...)

Pruned weights stay plain tensors with zeros, which sparsekit's converters
pick up. Needs PyTorch: pip install "sparsekit[torch]", or from a clone
pip install -e ".[torch]".
"""
from sparsekit.compress._torch import torch  # noqa: F401  (clear error without torch)
from sparsekit.compress.prune import (
    GradualPruner, MaskKeeper, PolynomialSchedule, PruneReport, apply_masks, keep_masks,
    magnitude, prune, sparsegpt, wanda,
)
from sparsekit.compress.observers import (
    EntropyObserver, MinMaxObserver, MSEObserver, Observer, PercentileObserver,
    qparams_from_range,
)
from sparsekit.compress.quantize import (
    QuantParams, QuantReport, calibrate, fake_quantize, get_qparams, quantize_weight,
    weight_scales,
)
from sparsekit.compress.distill import distill, kd_loss
from sparsekit.compress.structured import count_parameters, prune_structured

__all__ = [
    "prune", "magnitude", "wanda", "sparsegpt", "PruneReport", "keep_masks", "apply_masks",
    "MaskKeeper", "PolynomialSchedule", "GradualPruner",
    "Observer", "MinMaxObserver", "PercentileObserver", "MSEObserver", "EntropyObserver",
    "qparams_from_range", "QuantParams", "QuantReport", "calibrate", "fake_quantize",
    "get_qparams", "quantize_weight", "weight_scales", "kd_loss", "distill",
    "prune_structured", "count_parameters",
]
