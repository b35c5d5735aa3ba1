"""Weight pruning: one-shot (magnitude, Wanda, SparseGPT), masks that survive
fine-tuning, and a gradual polynomial schedule for a user's training loop.

    report = prune(model, 0.9)                          # magnitude, per layer
    report = prune(model, None, pattern="2:4", method="sparsegpt",
                   calibration=batches)                 # one-shot, calibrated
    keeper = keep_masks(model, optimizer)               # zeros stay zero
    pruner = GradualPruner(model, PolynomialSchedule(0.9, 0, 1000, frequency=50))
    ... loss.backward(); optimizer.step(); pruner.step()

Pruning writes zeros into the plain weights (no parametrization left behind),
which is what sparsekit's converters pick up.
"""
from sparsekit.compress._torch import torch, weight_layers
from sparsekit.compress.allocation import (
    ALLOCATIONS, exact_counts, owl_fractions, pinned_fractions,
)
from sparsekit.compress.masks import (
    check_sparsity, global_masks, mask_from_scores, parse_pattern,
)
from sparsekit._report import Report

METHODS = ("magnitude", "wanda", "sparsegpt")
SCOPES = ("layer", "global")


class PruneReport(Report):
    columns = ("layer", "shape", "method", "pattern", "sparsity", "nnz", "error")
    title = "pruning report (sparsity = achieved; error = relative output error on calibration)"

    @property
    def sparsity(self):
        """Overall sparsity of the pruned layers."""
        total = sum(r["numel"] for r in self)
        return 1.0 - sum(r["nnz"] for r in self) / total if total else 0.0

    def summary(self):
        return f"total: {len(self)} layers, sparsity {self.sparsity:.4f}"


def _row(name, weight, method, pattern, error=None):
    nnz = int(torch.count_nonzero(weight))
    return {"layer": name, "shape": tuple(weight.shape), "method": method,
            "pattern": pattern, "sparsity": 1.0 - nnz / weight.numel(), "nnz": nnz,
            "numel": weight.numel(), "error": error}


def prune(model, sparsity, method="magnitude", pattern="unstructured", scope="layer",
          calibration=None, skip=(), allocation="uniform", **options):
    """Prune the Linear/Conv weights of `model` in place and report per layer.

    sparsity: fraction of each layer's weights (scope="layer") or of all of them
        (scope="global") set to zero, in [0, 1). For "N:M" it is fixed by the
        pattern (pass None or the matching value).
    method: "magnitude" (|w|), "wanda" (|w| * ||x||, per output row) or
        "sparsegpt" (OBS reconstruction); the last two need `calibration`.
    pattern: "unstructured", "N:M" such as "2:4" (along the input dimension), or
        "1x4" blocks (1 output x 4 consecutive inputs). If the input size K is not
        a multiple of 4 the last block of each row is partial (K % 4 inputs);
        blocks are ranked by mean magnitude and the removed-weight count is the
        closest reachable to the request (within one block). The report gives
        the achieved sparsity of each layer.
    scope: "layer" or "global". Global magnitude ranks all weights together.
        Global Wanda / SparseGPT (unstructured) take each layer's sparsity
        from one threshold over all layers' scores in the unpruned model
        (Wanda: |W_ij| * ||X_j||; SparseGPT: the OBS error of removing the
        weight, relative to the layer's output energy), then prune each layer
        to its sparsity as usual; the total is exact.
    calibration: an iterable of batches; the model is called as model(**b) for a
        dict and model(b) otherwise. Iterated several times (kept as a list).
        Dict batches with a 2-D `attention_mask` may be padded: positions where
        it is 0 are left out of the statistics.
    skip: layer names (fnmatch patterns allowed), modules or module types left
        dense, e.g. skip=("classifier", "*.embeddings.*").
    allocation: how `sparsity` is shared out between the layers (unstructured,
        scope="layer"; see sparsekit.compress.allocation): "uniform" (each
        layer at `sparsity`), "owl" (outlier-weighted, Yin et al. 2023, needs
        calibration; options owl_lambda=0.08, owl_m=5.0) or a dict
        {layer name or pattern: sparsity} pinning some layers, e.g.
        {"*.query": 0.7, "*.key": 0.7}, the others sharing the rest equally.
        Non-uniform allocations remove exactly round(sparsity * total) of the
        pruned layers' weights; the report gives each layer's sparsity.
    options: method settings, e.g. sparsegpt's blocksize=128, percdamp=0.01,
        shrink=0.0 (H + shrink * diag(H): for small calibration sets),
        target="pruned" ("dense": fit each layer to the unpruned model's
        outputs, so it also undoes the error of the pruned layers before it),
        residual={layer pattern: module} (target="dense": the layer's output
        is added to a residual and fed to that module, named relative to the
        layer's parent, e.g. {"*output.dense": "LayerNorm"} for BERT; the
        layer then fits the dense model's residual sum, absorbing the
        residual stream's error too), bias="keep" ("correct": fit the
        centred inputs and reset the bias so the layer's mean output on the
        calibration tokens matches its target; Wanda and SparseGPT).
    Returns a PruneReport (a list of per-layer dicts, readable when printed).
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if scope not in SCOPES:
        raise ValueError(f"scope: expected one of {SCOPES}, got {scope!r}")
    pat = parse_pattern(pattern)
    sparsity = check_sparsity(sparsity, pat)
    layers = weight_layers(model, skip)
    if not layers:
        raise ValueError("model: no Linear/Conv layers left to prune (check skip)")
    owl = {k: options.pop(k) for k in ("owl_lambda", "owl_m") if k in options}
    if owl and allocation != "owl":
        raise TypeError(f"{sorted(owl)[0]}: only with allocation='owl'")
    if not (isinstance(allocation, dict) or allocation in ALLOCATIONS):
        raise ValueError(f"allocation: expected one of {ALLOCATIONS} or a dict "
                         f"{{layer pattern: sparsity}}, got {allocation!r}")
    if allocation != "uniform":
        if pat[0] != "unstructured":
            raise ValueError(f"allocation: non-uniform allocation needs pattern='unstructured', "
                             f"got {pattern!r}")
        if scope != "layer":
            raise ValueError("allocation: non-uniform allocation needs scope='layer' "
                             "(scope='global' already chooses per-layer sparsities)")
        if allocation == "owl" and method == "magnitude":
            raise ValueError("allocation: 'owl' needs activations: use method='wanda' or "
                             "'sparsegpt' with calibration")
    if method == "magnitude":
        if options:
            raise TypeError(f"magnitude pruning takes no options, got {sorted(options)}")
        if allocation != "uniform":
            sparsity = _allocate(layers, sparsity, allocation)
        return _magnitude(layers, sparsity, pat, pattern, scope)
    if calibration is None:
        raise ValueError(f"calibration: {method} needs calibration batches")
    if scope == "global" and pat[0] != "unstructured":
        raise ValueError(f"scope: 'global' {method} needs pattern='unstructured', "
                         f"got {pattern!r}")
    from sparsekit.compress.calibrated import layer_scores, prune_calibrated
    if isinstance(calibration, (dict, torch.Tensor)):
        calibration = [calibration]
    calibration = list(calibration)
    if scope == "global":  # one threshold over all layers' scores sets each layer's share
        kind = "wanda" if method == "wanda" else "obs"
        reg = {k: options[k] for k in ("shrink", "percdamp") if k in options}
        masks = global_masks(layer_scores(model, layers, calibration, kind, **reg),
                             sparsity, pat, [n for n, _ in layers])
        sparsity = {n: 1.0 - int(mk.sum()) / mk.numel() for (n, _), mk in zip(layers, masks)}
    elif allocation == "owl":
        sparsity = _allocate(layers, sparsity, owl_fractions(
            layer_scores(model, layers, calibration), sparsity, **owl))
    elif allocation != "uniform":
        sparsity = _allocate(layers, sparsity, allocation)
    return prune_calibrated(model, layers, calibration, sparsity, pat, pattern, method,
                            PruneReport(), **options)


def _allocate(layers, sparsity, allocation):
    """{name: fraction} with exact integer counts adding up to
    round(sparsity * total); `allocation` a dict table or a list of
    fractions in layer order."""
    names = [n for n, _ in layers]
    sizes = [m.weight.numel() for _, m in layers]
    if isinstance(allocation, dict):
        fractions = pinned_fractions(names, sizes, sparsity, allocation)
    else:
        fractions = allocation
    counts = exact_counts(fractions, sizes, int(round(sparsity * sum(sizes))))
    return {n: c / size for n, c, size in zip(names, counts, sizes)}


def _magnitude(layers, sparsity, pat, pattern, scope):
    """sparsity: a float, or {name: fraction} (allocation)."""
    report = PruneReport()
    with torch.no_grad():
        scores = [m.weight.detach().reshape(m.weight.shape[0], -1).abs().float()
                  for _, m in layers]
        names = [n for n, _ in layers]
        if scope == "global":
            masks = global_masks(scores, sparsity, pat, names)
        else:
            masks = [mask_from_scores(s, sparsity[n] if isinstance(sparsity, dict) else sparsity,
                                      pat, name=n) for s, n in zip(scores, names)]
        for (name, m), mask in zip(layers, masks):
            m.weight.mul_(mask.reshape(m.weight.shape).to(m.weight.dtype))
            report.append(_row(name, m.weight, "magnitude", pattern))
    return report


def magnitude(model, sparsity, pattern="unstructured", scope="layer", skip=()):
    """prune(model, sparsity, method="magnitude", ...)."""
    return prune(model, sparsity, "magnitude", pattern, scope, skip=skip)


def wanda(model, sparsity, calibration, pattern="unstructured", skip=()):
    """prune(model, sparsity, method="wanda", ...)."""
    return prune(model, sparsity, "wanda", pattern, calibration=calibration, skip=skip)


def sparsegpt(model, sparsity, calibration, pattern="unstructured", skip=(), **options):
    """prune(model, sparsity, method="sparsegpt", ...)."""
    return prune(model, sparsity, "sparsegpt", pattern, calibration=calibration, skip=skip,
                 **options)


# the DESIGN spelling prune.magnitude(model, sparsity=0.9) works too
prune.magnitude, prune.wanda, prune.sparsegpt = magnitude, wanda, sparsegpt


class MaskKeeper:
    """Keeps pruned weights at zero while a model trains.

    The masks are the current zeros of each Linear/Conv weight (or `masks`, a
    dict name -> bool tensor). Gradients of pruned weights are zeroed by a
    tensor hook, and if an `optimizer` is given the masks are re-applied after
    every optimizer.step() (momentum and weight decay cannot revive a weight).
    Without an optimizer call `apply()` after each step. `remove()` (or leaving
    the `with` block) takes the hooks off and leaves plain weights with zeros.
    """

    def __init__(self, model, optimizer=None, skip=(), masks=None):
        self.layers = dict(weight_layers(model, skip))
        if masks is None:
            masks = {n: m.weight.detach() != 0 for n, m in self.layers.items()}
        else:
            unknown = set(masks) - set(self.layers)
            if unknown:
                raise ValueError(f"masks: no prunable layer named {sorted(unknown)[:3]}")
            for n, mask in masks.items():
                if tuple(mask.shape) != tuple(self.layers[n].weight.shape):
                    raise ValueError(f"masks: mask for {n} has shape {tuple(mask.shape)}, "
                                     f"weight has {tuple(self.layers[n].weight.shape)}")
        self.masks = {n: torch.as_tensor(mk, dtype=torch.bool) for n, mk in masks.items()}
        self._handles = []
        for name in self.masks:
            w = self.layers[name].weight
            self._handles.append(w.register_hook(self._grad_hook(name)))
        if optimizer is not None:
            self._handles.append(optimizer.register_step_post_hook(lambda *a: self.apply()))
        self.apply()

    def _grad_hook(self, name):
        def hook(grad):
            return grad * self.masks[name].to(grad.dtype)
        return hook

    def apply(self):
        """Zero the pruned weights (call after optimizer.step() if no optimizer
        was given)."""
        with torch.no_grad():
            for name, mask in self.masks.items():
                self.layers[name].weight.mul_(mask.to(self.layers[name].weight.dtype))

    def update(self, masks):
        """Replace some masks (e.g. after pruning further) and apply them."""
        for name, mask in masks.items():
            self.masks[name] = mask.to(torch.bool).reshape(self.layers[name].weight.shape)
        self.apply()

    @property
    def sparsity(self):
        total = sum(m.numel() for m in self.masks.values())
        return 1.0 - sum(int(m.sum()) for m in self.masks.values()) / max(total, 1)

    def remove(self):
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def keep_masks(model, optimizer=None, skip=(), masks=None):
    """MaskKeeper(model, optimizer, skip, masks): keep the zeros of a pruned
    model through fine-tuning."""
    return MaskKeeper(model, optimizer, skip, masks)


def apply_masks(model, masks):
    """Zero model weights where masks (dict name -> bool tensor) are False."""
    layers = dict(weight_layers(model))
    with torch.no_grad():
        for name, mask in masks.items():
            if name not in layers:
                raise ValueError(f"masks: no prunable layer named {name!r}")
            layers[name].weight.mul_(mask.to(layers[name].weight.dtype))


class PolynomialSchedule:
    """Sparsity over training steps (Zhu & Gupta 2017; TF-MOT's PolynomialDecay):

        s(t) = final + (initial - final) * (1 - p)^power,
        p = clip((t - begin_step) / (end_step - begin_step), 0, 1)

    Pruning happens at begin_step, every `frequency` steps after, and at
    end_step (see `prunes_at`).
    """

    def __init__(self, final_sparsity, begin_step, end_step, initial_sparsity=0.0,
                 power=3, frequency=100):
        for arg, v in (("final_sparsity", final_sparsity),
                       ("initial_sparsity", initial_sparsity)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
                raise ValueError(f"{arg}: expected a number in [0, 1), got {v!r}")
        for arg, v in (("begin_step", begin_step), ("end_step", end_step),
                       ("frequency", frequency)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{arg}: expected a non-negative int, got {v!r}")
        if end_step <= begin_step:
            raise ValueError(f"end_step: must be after begin_step ({begin_step}), got {end_step}")
        if frequency < 1:
            raise ValueError(f"frequency: expected >= 1, got {frequency}")
        if isinstance(power, bool) or not isinstance(power, (int, float)) or power <= 0:
            raise ValueError(f"power: expected a positive number, got {power!r}")
        self.final_sparsity = float(final_sparsity)
        self.initial_sparsity = float(initial_sparsity)
        self.begin_step, self.end_step = begin_step, end_step
        self.power, self.frequency = power, frequency

    def __call__(self, step):
        p = (step - self.begin_step) / (self.end_step - self.begin_step)
        p = min(max(p, 0.0), 1.0)
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * \
            (1.0 - p) ** self.power

    def prunes_at(self, step):
        if step < self.begin_step or step > self.end_step:
            return False
        return (step - self.begin_step) % self.frequency == 0 or step == self.end_step

    def __repr__(self):
        return (f"PolynomialSchedule({self.initial_sparsity} -> {self.final_sparsity}, "
                f"steps {self.begin_step}..{self.end_step}, power={self.power}, "
                f"every {self.frequency})")


class GradualPruner:
    """Gradual magnitude pruning driven by the user's loop.

        pruner = GradualPruner(model, PolynomialSchedule(0.9, 0, 2000, frequency=100),
                               optimizer=opt)
        for step, batch in enumerate(data):
            loss(...).backward(); opt.step(); opt.zero_grad()
            pruner.step()
        pruner.remove()       # plain weights with zeros

    step() counts optimizer steps; when the schedule says so it raises each
    layer's sparsity (scope "layer") or the model's (scope "global") to s(t),
    ranking the weights that are still alive by magnitude. Between pruning
    steps the masks are kept (MaskKeeper). Usable as a `callbacks` entry of
    distill().
    """

    def __init__(self, model, schedule, pattern="unstructured", scope="layer", skip=(),
                 optimizer=None):
        if not isinstance(schedule, PolynomialSchedule) and not callable(schedule):
            raise TypeError("schedule: expected a PolynomialSchedule or a callable "
                            "step -> sparsity")
        self.pattern = parse_pattern(pattern)
        if self.pattern[0] == "nm":
            raise ValueError("pattern: N:M sparsity is fixed, it has no gradual schedule; "
                             "use prune(..., pattern=...) then keep_masks()")
        if scope not in SCOPES:
            raise ValueError(f"scope: expected one of {SCOPES}, got {scope!r}")
        self.model, self.schedule, self.scope, self.skip = model, schedule, scope, skip
        self.pattern_name = pattern
        self.keeper = MaskKeeper(model, optimizer, skip)
        self.step_count = 0
        self.current_sparsity = 0.0
        self._maybe_prune()

    def _prunes_now(self):
        s = self.schedule
        return s.prunes_at(self.step_count) if hasattr(s, "prunes_at") else True

    def _maybe_prune(self):
        if not self._prunes_now():
            return
        target = float(self.schedule(self.step_count))
        if target <= self.current_sparsity:
            return
        layers = list(self.keeper.layers.items())
        _magnitude(layers, target, self.pattern, self.pattern_name, self.scope)
        self.keeper.update({n: m.weight.detach() != 0 for n, m in layers})
        self.current_sparsity = target

    def step(self, *args, **kwargs):
        """Call after each optimizer step (extra arguments are ignored, so it
        can serve as a callback)."""
        self.keeper.apply()
        self.step_count += 1
        self._maybe_prune()

    def remove(self):
        self.keeper.remove()
