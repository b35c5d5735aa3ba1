"""One-shot calibrated pruning: Wanda and SparseGPT, layer by layer.

Data flow for a model with layers L1..Ln (Linear / Conv):

    probe pass     one calibration batch, hooks record the order layers run in
                   and which of them read the same input tensor (q, k, v)
    for each group of layers sharing an input, in execution order:
        capture    run the calibration batches through the model *as pruned so
                   far*; a hook folds each group layer's input X into
                   H = X^T X / tokens in float64, leaving out padded positions
                   (attention_mask == 0); the forward stops once the group ran
        prune      Wanda:     keep the largest |W_ij| * ||X_j|| in each row
                   SparseGPT: choose the mask block by block from W^2 / [H^-1]_jj
                              and update the remaining weights to compensate
                              (Frantar & Alistarh 2023, OBS with a Cholesky
                              factor of H^-1, H regularised first:
                              + shrink * diag(H) + percdamp * mean(diag H) * I)

so every layer is calibrated on the outputs of the already pruned layers
before it, as in the SparseGPT paper. With target="dense" (SparseGPT) the
unpruned model runs alongside and each layer is first moved to W*, the
weights that best map its pruned-model inputs to the dense model's outputs
(see dense_target): later layers then also undo earlier layers' error.
The report's `error` is the relative output error of each layer on its
calibration inputs, tr(dW H dW^T) / tr(W H W^T), dW measured from the
weights the layer was asked to reproduce (W, or W* for target="dense").
"""
from sparsekit.compress._torch import call_model, nn, torch
from sparsekit.compress.masks import _drop_lowest, mask_from_scores, nm_mask


class _StopForward(Exception):
    """Raised by a capture hook once the layers of interest have run."""


def layer_inputs_2d(module, x):
    """A layer's input as the GEMM operand X[rows, K] matching
    weight.reshape(out, -1) (im2col patches for a convolution)."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    if isinstance(module, nn.Conv1d):
        x = x.unsqueeze(2)
        kernel, dil, pad, stride = ((1,) + module.kernel_size, (1,) + module.dilation,
                                    (0,) + module.padding, (1,) + module.stride)
    else:
        kernel, dil, pad, stride = (module.kernel_size, module.dilation, module.padding,
                                    module.stride)
    if isinstance(pad, str) or module.padding_mode != "zeros":
        raise ValueError(f"skip: {type(module).__name__} with padding={module.padding!r}, "
                         f"padding_mode={module.padding_mode!r} is not supported by "
                         f"calibrated pruning; add it to skip")
    cols = torch.nn.functional.unfold(x, kernel, dilation=dil, padding=pad, stride=stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def _probe(model, layers, batch):
    """Execution order of the layers, grouped by shared input, plus call counts."""
    by_module = {id(m): n for n, m in layers}
    calls, seen = [], {}

    def pre_hook(module, args):
        name = by_module[id(module)]
        seen[name] = seen.get(name, 0) + 1
        if seen[name] == 1:
            calls.append((name, args[0]))

    handles = [m.register_forward_pre_hook(pre_hook) for _, m in layers]
    try:
        with torch.no_grad():
            call_model(model, batch)
    finally:
        for h in handles:
            h.remove()
    groups = []
    for i, (name, x) in enumerate(calls):
        if i and x is calls[i - 1][1]:
            groups[-1].append(name)
        else:
            groups.append([name])
    return groups, seen


def token_mask(batch):
    """The [batch, seq] boolean mask of real tokens of a dict batch with a 2-D
    0/1 `attention_mask` (None otherwise): padded positions are not data."""
    if not isinstance(batch, dict):
        return None
    mask = batch.get("attention_mask")
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        return None
    return mask != 0


def _inputs_2d(module, x, mask):
    """The layer input as float64 GEMM rows, padded positions left out."""
    if (mask is not None and isinstance(module, nn.Linear) and x.dim() == 3
            and x.shape[:2] == mask.shape):
        x = x[mask]
    return layer_inputs_2d(module, x).double()


def _outputs_2d(module, y, mask):
    """A layer output (or a residual-sum input) as float64 rows [rows, N],
    row for row with _inputs_2d (padded positions left out)."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return y.movedim(1, -1).reshape(-1, y.shape[1]).double()
    if mask is not None and y.dim() == 3 and y.shape[:2] == mask.shape:
        y = y[mask]
    return y.reshape(-1, y.shape[-1]).double()


def _hooked_call(model, hooks, batch, early_stop):
    """Run one batch with hooks [(key, module, when, fn)]: fn(tensor) gets the
    module's first input (when="in") or its output (when="out") at each call.
    With early_stop the forward ends once every key was seen."""
    pending = {key for key, *_ in hooks}

    def seen(key):
        pending.discard(key)
        if early_stop and not pending:
            raise _StopForward

    def make_hook(key, when, fn):
        if when == "in":
            def hook(module, args):
                fn(args[0].detach())
                seen(key)
        else:
            def hook(module, args, out):
                fn(out.detach())
                seen(key)
        return hook

    handles = [m.register_forward_pre_hook(make_hook(k, w, f)) if w == "in"
               else m.register_forward_hook(make_hook(k, w, f)) for k, m, w, f in hooks]
    try:
        with torch.no_grad():
            call_model(model, batch)
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()


class LayerStats:
    """What one layer's calibration pass collected (float64, means over the
    real tokens): H = X^T X / rows and the input mean; with a reference model
    also G = X^T D / rows and the mean of D, D = Z_ref - Z the gap between
    the reference (dense) model and this one at the layer's output Z (or at
    the input of its residual-sum module), token for token."""

    def __init__(self):
        self.h, self.mean, self.g, self.gap, self.rows = 0.0, 0.0, None, None, 0

    def add(self, x, d=None):
        self.h = self.h + x.T @ x
        self.mean = self.mean + x.sum(0)
        if d is not None:
            self.g = (0.0 if self.g is None else self.g) + x.T @ d
            self.gap = (0.0 if self.gap is None else self.gap) + d.sum(0)
        self.rows += x.shape[0]

    def finish(self):
        if self.rows:
            self.h, self.mean = self.h / self.rows, self.mean / self.rows
            if self.g is not None:
                self.g, self.gap = self.g / self.rows, self.gap / self.rows
        return self


def _capture(model, modules, batches, early_stop, reference=None, sums=None):
    """LayerStats for each named module over all batches. Rows of a
    [batch, seq, features] tensor at padded positions (attention_mask == 0)
    are left out: they are not data, and the model's outputs there are masked
    away anyway. With a `reference` model (the dense original) the gap D is
    taken at each layer's output, or, for a layer named in `sums` (name ->
    name of the module whose input is the layer's output plus a residual,
    e.g. BERT's LayerNorm after attention.output.dense), at that module's
    input: the residual stream's error is then part of what the layer fits."""
    sums = sums or {}
    stats = {n: LayerStats() for n in modules}
    named = dict(model.named_modules())
    ref_named = dict(reference.named_modules()) if reference is not None else None

    def z_hooks(names, store, mask):
        hooks = []
        for n in modules:
            if n in sums:
                mod = names[sums[n]]
                hooks.append(("z " + n, mod, "in",
                              lambda t, n=n, mod=mod: store[n].append(_outputs_2d(mod, t, mask))))
            else:
                mod = names[n]
                hooks.append(("z " + n, mod, "out",
                              lambda t, n=n, mod=mod: store[n].append(_outputs_2d(mod, t, mask))))
        return hooks

    for b in batches:
        mask = token_mask(b)
        xs = {n: [] for n in modules}
        hooks = [(n, m, "in", lambda t, n=n, m=m: xs[n].append(_inputs_2d(m, t, mask)))
                 for n, m in modules.items()]
        if reference is None:
            _hooked_call(model, hooks, b, early_stop)
            for n in modules:
                for x in xs[n]:
                    stats[n].add(x)
            continue
        z_ref, z = {n: [] for n in modules}, {n: [] for n in modules}
        _hooked_call(reference, z_hooks(ref_named, z_ref, mask), b, early_stop)
        _hooked_call(model, hooks + z_hooks(named, z, mask), b, early_stop)
        for n in modules:
            if not len(xs[n]) == len(z[n]) == len(z_ref[n]):
                raise ValueError(f"residual: {n!r} ran {len(xs[n])} times but its output was "
                                 f"seen {len(z[n])} times at {sums.get(n, n)!r}")
            for x, zr, zp in zip(xs[n], z_ref[n], z[n]):
                if x.shape[0] != zp.shape[0] or zp.shape[1] != modules[n].weight.shape[0]:
                    raise ValueError(f"residual: {sums.get(n, n)!r} does not take {n!r}'s "
                                     f"output row for row")
                stats[n].add(x, zr - zp)
    return {n: s.finish() for n, s in stats.items()}


def dense_target(w, h, g, shrink=0.0, percdamp=0.01):
    """W* = W + (H_reg^-1 G)^T: the weights that best map this layer's inputs
    in the pruned model X (H = X^T X / rows) to the dense model's outputs,
    G = X^T D / rows with D the gap between the dense and the pruned model's
    outputs on the same tokens (without a residual, D = (X_dense - X) W^T),
    so the layer also undoes the error of the pruned layers before it. H_reg
    is H regularised like SparseGPT's (shrink, percdamp; dead inputs get 1 on
    the diagonal)."""
    k = h.shape[0]
    h_reg = h + shrink * torch.diag(torch.diagonal(h))
    h_reg = h_reg + (percdamp * torch.mean(torch.diagonal(h)) + (torch.diagonal(h) == 0)) \
        * torch.eye(k, dtype=h.dtype, device=h.device)
    return w + torch.linalg.solve(h_reg, g).T


def corrected_bias(bias, w, w_new, st):
    """The bias that gives the pruned layer the mean output of what it fits on
    the calibration tokens: b + mean(X) (W - W_new)^T + mean(D), W the
    layer's weights before pruning (D = 0 without a reference model)."""
    shift = st.mean @ (w - w_new).T
    if st.gap is not None:
        shift = shift + st.gap
    return (0.0 if bias is None else bias) + shift


def layer_scores(model, layers, batches, kind="wanda", shrink=0.0, percdamp=0.01):
    """Per-weight importance of every layer in the unpruned model (one pass
    over the calibration batches; a layer never called gets |W|):
      "wanda"  |W_ij| * ||X_j|| (the OWL allocation counts its outliers)
      "obs"    W_ij^2 / [H_reg^-1]_jj / tr(W H W^T): the output error of
               removing the weight alone (OBS), relative to the layer's
               output energy, so that one threshold compares layers."""
    was_training = model.training
    model.eval()
    try:
        stats = _capture(model, dict(layers), batches, early_stop=False)
    finally:
        model.train(was_training)
    out = []
    for name, m in layers:
        w = m.weight.detach().reshape(m.weight.shape[0], -1).double()
        h = stats[name].h
        if isinstance(h, float):
            out.append(w.abs())
        elif kind == "wanda":
            out.append(w.abs() * torch.sqrt(torch.clamp(torch.diagonal(h), min=0)))
        else:
            k = h.shape[0]
            dead = torch.diagonal(h) == 0
            h_reg = h + shrink * torch.diag(torch.diagonal(h))
            h_reg = h_reg + (percdamp * torch.mean(torch.diagonal(h)) + dead) * \
                torch.eye(k, dtype=h.dtype)
            u = _upper_cholesky_of_inverse(h_reg)
            energy = float(((w @ h) * w).sum())
            out.append(w ** 2 / torch.diagonal(u) ** 2 / max(energy, 1e-300))
    return out


def wanda_weights(w, h, sparsity, pattern, name="weight"):
    """Wanda: score |W_ij| * ||X_j||, compared within each output row."""
    scores = w.abs() * torch.sqrt(torch.clamp(torch.diagonal(h), min=0)).to(w.dtype)
    keep = mask_from_scores(scores, sparsity, pattern, per_row=True, name=name)
    return w * keep


def sparsegpt_weights(w, h, sparsity, pattern, blocksize=128, percdamp=0.01, shrink=0.0,
                      name="weight"):
    """SparseGPT on one weight W[N, K] (float64) given H = X^T X [K, K].

    H is regularised before it is inverted: H + shrink * diag(H) (shrinkage
    of the covariance towards its diagonal, which keeps each input's scale;
    it matters when the calibration set has few tokens per input feature and
    the reconstruction would otherwise fit its noise) + percdamp * mean(diag H) * I.

    Columns are processed left to right in blocks; the mask of a block is
    chosen when the block starts (for N:M every M columns) from
    W^2 / diag(U)^2, U the upper Cholesky factor of H^-1, and each pruned
    column's error is spread over the columns to its right.
    """
    if blocksize < 1:
        raise ValueError(f"blocksize: expected a positive int, got {blocksize}")
    if not percdamp >= 0:
        raise ValueError(f"percdamp: expected a non-negative number, got {percdamp}")
    if not shrink >= 0:
        raise ValueError(f"shrink: expected a non-negative number, got {shrink}")
    w = w.clone()
    n, k = w.shape
    h = h.clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += shrink * torch.diag(torch.diagonal(h))
    damp = percdamp * torch.mean(torch.diagonal(h))
    h += damp * torch.eye(k, dtype=h.dtype, device=h.device)
    u = _upper_cholesky_of_inverse(h)
    kind = pattern[0]
    if kind == "block":
        # the mask is chosen per column block: keep 1xB blocks whole inside it
        blocksize = max(pattern[1], blocksize // pattern[1] * pattern[1])
    if kind == "nm" and blocksize % pattern[2]:
        blocksize = max(pattern[2], blocksize // pattern[2] * pattern[2])
    out = torch.zeros_like(w)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the column loop is many tiny ops: threads only cost
    try:
        _sparsegpt_blocks(w, u, out, sparsity, pattern, kind, blocksize, name)
    finally:
        torch.set_num_threads(threads)
    return out


def _sparsegpt_blocks(w, u, out, sparsity, pattern, kind, blocksize, name):
    n, k = w.shape
    for i1 in range(0, k, blocksize):
        i2 = min(i1 + blocksize, k)
        w1 = w[:, i1:i2].clone()
        u1 = u[i1:i2, i1:i2]
        err1 = torch.zeros_like(w1)
        d = torch.diagonal(u1)
        keep1 = None
        if kind == "unstructured":
            # removal counts by cumulative rounding: the layer total is exact
            count = round(sparsity * n * i2) - round(sparsity * n * i1)
            keep1 = _drop_lowest((w1 ** 2 / d ** 2).reshape(-1), count).reshape(w1.shape)
        elif kind == "block":
            keep1 = mask_from_scores(w1 ** 2 / d ** 2, sparsity, pattern)  # ragged-aware
        else:
            keep1 = torch.ones_like(w1, dtype=torch.bool)
        for j in range(i2 - i1):
            if kind == "nm" and j % pattern[2] == 0:
                m = pattern[2]
                sc = w1[:, j:j + m] ** 2 / d[j:j + m] ** 2
                keep1[:, j:j + m] = nm_mask(sc, pattern[1], m, name)
            col = w1[:, j]
            q = col * keep1[:, j]
            e = (col - q) / u1[j, j]
            w1[:, j:] -= e.unsqueeze(1) * u1[j, j:].unsqueeze(0)
            w1[:, j] = q
            err1[:, j] = e
        out[:, i1:i2] = w1
        w[:, i2:] -= err1 @ u[i1:i2, i2:]


def _upper_cholesky_of_inverse(h):
    """U with U^T U = H^-1; retries with more damping if H is not positive
    definite in floating point."""
    eye = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    extra = 0.0
    for _ in range(6):
        try:
            lo = torch.linalg.cholesky(h + extra * eye)
            hinv = torch.cholesky_inverse(lo)
            return torch.linalg.cholesky(hinv, upper=True)
        except RuntimeError:
            extra = max(extra * 10, 1e-6 * float(torch.mean(torch.diagonal(h))))
    raise ValueError("calibration: the layer's input covariance is not positive definite "
                     "even with damping; use more calibration data or a larger percdamp")


def relative_error(w_old, w_new, h):
    """tr(dW H dW^T) / tr(W H W^T): the layer's relative output error."""
    dw = w_old - w_new
    num = float(((dw @ h) * dw).sum())
    den = float(((w_old @ h) * w_old).sum())
    return num / den if den > 0 else 0.0


def residual_sums(model, layers, residual):
    """name -> name of the residual-sum module, from `residual`: a mapping of
    layer names (fnmatch patterns) to the module, named relative to the
    layer's parent, whose input is the layer's output plus a residual."""
    import fnmatch
    if residual is None:
        return {}
    if not isinstance(residual, dict):
        raise TypeError(f"residual: expected a dict layer pattern -> module name, got "
                        f"{type(residual).__name__}")
    named = dict(model.named_modules())
    sums = {}
    for name, m in layers:
        for pat, rel in residual.items():
            if name == pat or fnmatch.fnmatchcase(name, pat):
                parent = name.rpartition(".")[0]
                full = f"{parent}.{rel}" if parent else rel
                if full not in named:
                    raise ValueError(f"residual: {name!r} matches {pat!r} but the model has "
                                     f"no module {full!r}")
                if not isinstance(m, nn.Linear):
                    raise ValueError(f"residual: {name!r} is not a Linear layer")
                sums[name] = full
                break
    return sums


def prune_calibrated(model, layers, calibration, sparsity, pattern, pattern_name, method,
                     report, blocksize=128, percdamp=0.01, shrink=0.0, target="pruned",
                     residual=None, bias="keep"):
    """sparsity: a float, or a dict layer name -> fraction (allocation)."""
    from sparsekit.compress.prune import _row
    if isinstance(calibration, (dict, torch.Tensor)):
        calibration = [calibration]
    batches = list(calibration)
    if not batches:
        raise ValueError("calibration: got no batches")
    if target not in ("pruned", "dense"):
        raise ValueError(f"target: expected 'pruned' or 'dense', got {target!r}")
    if target == "dense" and method != "sparsegpt":
        raise ValueError(f"target: 'dense' needs method='sparsegpt' (it updates weights), "
                         f"got {method!r}")
    if bias not in ("keep", "correct"):
        raise ValueError(f"bias: expected 'keep' or 'correct', got {bias!r}")
    if residual is not None and target != "dense":
        raise ValueError("residual: needs target='dense' (it fits the dense model's residual "
                         "stream)")
    for name, m in layers:
        if isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.groups != 1:
            raise ValueError(f"skip: {name} is a grouped convolution (groups={m.groups}), "
                             f"which {method} does not handle; add it to skip")
    sums = residual_sums(model, layers, residual)
    was_training = model.training
    model.eval()
    reference = None
    if target == "dense":  # the unpruned model, run alongside for the targets
        import copy
        reference = copy.deepcopy(model).eval()
    try:
        groups, counts = _probe(model, layers, batches[0])
        modules = dict(layers)
        for group in groups:
            early = all(counts[n] == 1 for n in group)
            stats = _capture(model, {n: modules[n] for n in group}, batches, early, reference,
                             {n: sums[n] for n in group if n in sums})
            for name in group:
                m = modules[name]
                s = sparsity[name] if isinstance(sparsity, dict) else sparsity
                wt = m.weight
                w0 = wt.detach().reshape(wt.shape[0], -1).to(torch.float64, copy=True)
                st = stats[name]
                h = st.h
                if bias == "correct":  # the bias absorbs the mean: fit the centred data
                    h = h - torch.outer(st.mean, st.mean)
                    if st.g is not None:
                        st.g = st.g - torch.outer(st.mean, st.gap)
                if method == "wanda":
                    w, new = w0, wanda_weights(w0, h, s, pattern, name=name)
                else:
                    w = dense_target(w0, h, st.g, shrink, percdamp) if reference is not None \
                        else w0
                    new = sparsegpt_weights(w, h, s, pattern, blocksize, percdamp, shrink,
                                            name=name)
                err = relative_error(w, new, h)
                with torch.no_grad():
                    wt.copy_(new.reshape(wt.shape).to(wt.dtype))
                    if bias == "correct":
                        b = corrected_bias(None if m.bias is None else m.bias.double(), w0,
                                           new, st)
                        if m.bias is None:
                            m.bias = nn.Parameter(b.to(wt.dtype))
                        else:
                            m.bias.copy_(b.to(m.bias.dtype))
                report.append(_row(name, wt, method, pattern_name, err))
        called = {n for g in groups for n in g}
        for name, m in layers:
            if name not in called:
                row = _row(name, m.weight, "not called", pattern_name)
                report.append(row)
    finally:
        model.train(was_training)
    return report
