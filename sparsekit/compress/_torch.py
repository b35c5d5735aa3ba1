"""The one place sparsekit.compress imports torch: a clear error when the
optional dependency is missing, and small helpers shared by the methods."""
try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "sparsekit.compress needs PyTorch: "
        'pip install "sparsekit[torch]" '
        '(from a clone: pip install -e ".[torch]")'
    ) from exc

__all__ = ["torch", "nn", "WEIGHT_LAYERS", "weight_layers", "call_model", "as_name_filter"]

# layers whose `weight` the pruning and quantization methods act on
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def as_name_filter(skip, arg="skip"):
    """A predicate name -> bool for `skip`: module names (exact or fnmatch
    patterns such as "encoder.*.query"), module instances, or layer types."""
    import fnmatch
    if isinstance(skip, (str, nn.Module, type)):
        skip = (skip,)
    try:
        items = tuple(skip)
    except TypeError:
        raise TypeError(f"{arg}: expected an iterable of names, modules or types, "
                        f"got {type(skip).__name__}") from None
    for s in items:
        if not isinstance(s, (str, nn.Module, type)):
            raise TypeError(f"{arg}: entries must be names, modules or module types, "
                            f"got {type(s).__name__}")

    def skipped(name, module):
        for s in items:
            if isinstance(s, str) and (name == s or fnmatch.fnmatchcase(name, s)):
                return True
            if isinstance(s, type) and isinstance(module, s):
                return True
            if isinstance(s, nn.Module) and module is s:
                return True
        return False
    return skipped


def weight_layers(model, skip=(), types=WEIGHT_LAYERS):
    """[(name, module)] of the model's Linear/Conv layers, minus `skip`."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    skipped = as_name_filter(skip)
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, types) and not skipped(n, m)]


def call_model(model, batch):
    """Run one calibration batch: model(**b) for a dict, model(b) otherwise."""
    if isinstance(batch, dict):
        return model(**batch)
    return model(batch)
