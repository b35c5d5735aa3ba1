"""Structured pruning that really shrinks a model: whole neurons, channels,
FFN width and attention heads are removed, and the layers that read them are
fixed up, so the result is a smaller dense model.

    small = prune_structured(model, 0.5)               # a new, smaller model
    small = prune_structured(bert, 0.5, heads=0.25)    # FFN width and heads
    masked = prune_structured(model, 0.5, mask_only=True)  # same selection, zeros

What is found and shrunk:
  nn.Sequential chains   Linear -> [elementwise...] -> Linear,
                         Conv -> [BatchNorm] -> [elementwise / pooling] -> Conv,
                         Conv -> ... -> Flatten -> Linear (channel-major columns)
  transformer layers     BERT-style: `intermediate.dense` -> `output.dense` (FFN
                         width), and attention heads (`self.query/key/value` rows
                         and `output.dense` columns)
The producer's units (rows / output channels / heads) are ranked by
`criterion` ("l1", "l2", or a callable W[units, -1] -> scores) and the lowest
`amount` fraction removed. With mask_only=True the same units are zeroed
instead (producer rows, bias, BatchNorm entries and consumer columns): that is
the masked model whose outputs the shrunk one reproduces.
"""
import copy

from sparsekit.compress._torch import nn, torch

ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU,
               nn.ELU, nn.Hardswish, nn.Hardtanh, nn.Dropout, nn.Identity, nn.MaxPool1d,
               nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
               nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout2d)
CONVS = (nn.Conv1d, nn.Conv2d)
BNS = (nn.BatchNorm1d, nn.BatchNorm2d)


def unit_scores(rows, criterion="l2"):
    """Importance of each unit from its weights rows[units, ...]."""
    rows = rows.detach().reshape(rows.shape[0], -1).float()
    if criterion == "l1":
        return rows.abs().sum(1)
    if criterion == "l2":
        return rows.pow(2).sum(1).sqrt()
    if callable(criterion):
        s = torch.as_tensor(criterion(rows)).reshape(-1)
        if s.numel() != rows.shape[0]:
            raise ValueError(f"criterion: returned {s.numel()} scores for {rows.shape[0]} units")
        return s
    raise ValueError(f"criterion: expected 'l1', 'l2' or a callable, got {criterion!r}")


def units_to_keep(scores, amount, name="amount"):
    """Sorted indices of the units kept when the `amount` lowest go (>= 1 kept)."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 <= amount < 1:
        raise ValueError(f"{name}: expected a fraction in [0, 1), got {amount!r}")
    n = scores.numel()
    drop = min(int(round(amount * n)), n - 1)
    order = torch.sort(scores, stable=True).indices
    return torch.sort(order[drop:]).values


def _take(param, idx, dim):
    return nn.Parameter(param.detach().index_select(dim, idx).clone(),
                        requires_grad=param.requires_grad)


def _zero(param, idx_removed, dim):
    with torch.no_grad():
        param.index_fill_(dim, idx_removed, 0.0)


def _removed(keep, n):
    mask = torch.ones(n, dtype=torch.bool)
    mask[keep] = False
    return torch.nonzero(mask).reshape(-1)


def shrink_producer(layer, keep, mask_only=False):
    """Keep output units `keep` of a Linear/Conv (weight rows and bias)."""
    n = layer.weight.shape[0]
    if mask_only:
        gone = _removed(keep, n)
        _zero(layer.weight, gone, 0)
        if layer.bias is not None:
            _zero(layer.bias, gone, 0)
        return
    layer.weight = _take(layer.weight, keep, 0)
    if layer.bias is not None:
        layer.bias = _take(layer.bias, keep, 0)
    if isinstance(layer, nn.Linear):
        layer.out_features = keep.numel()
    else:
        layer.out_channels = keep.numel()


def shrink_consumer(layer, keep, n_units, spatial=1, mask_only=False):
    """Keep input units `keep` of a Linear/Conv; `spatial` columns per unit
    when a Flatten sits in between (channel-major)."""
    cols = (keep.reshape(-1, 1) * spatial + torch.arange(spatial)).reshape(-1)
    if mask_only:
        _zero(layer.weight, _removed(cols, n_units * spatial), 1)
        return
    layer.weight = _take(layer.weight, cols, 1)
    if isinstance(layer, nn.Linear):
        layer.in_features = cols.numel()
    else:
        if layer.groups != 1:
            raise ValueError("model: grouped convolutions cannot be shrunk here")
        layer.in_channels = cols.numel()


def shrink_batchnorm(bn, keep, mask_only=False):
    if mask_only:  # the consumer's zeroed columns already remove the channel
        return
    for attr in ("weight", "bias"):
        p = getattr(bn, attr)
        if p is not None:
            setattr(bn, attr, _take(p, keep, 0))
    for attr in ("running_mean", "running_var"):
        b = getattr(bn, attr)
        if b is not None:
            setattr(bn, attr, b.index_select(0, keep).clone())
    bn.num_features = keep.numel()


def _sequential_chains(seq):
    """(producer, bn or None, consumer, spatial) for each chain in an nn.Sequential."""
    mods = list(seq)
    out = []
    for i, prod in enumerate(mods):
        if not isinstance(prod, (nn.Linear,) + CONVS):
            continue
        bn, flat, j = None, False, i + 1
        while j < len(mods):
            m = mods[j]
            if isinstance(m, BNS) and bn is None and isinstance(prod, CONVS) and not flat:
                bn = m
            elif isinstance(m, nn.Flatten) and isinstance(prod, CONVS) and not flat:
                flat = True
            elif not isinstance(m, ELEMENTWISE):
                break
            j += 1
        if j == len(mods):
            break
        cons = mods[j]
        units = prod.weight.shape[0]
        if isinstance(cons, nn.Linear):
            if isinstance(prod, CONVS) and not flat:
                continue
            if cons.in_features % units:
                continue
            out.append((prod, bn, cons, cons.in_features // units))
        elif isinstance(cons, CONVS) and isinstance(prod, CONVS) and not flat \
                and cons.groups == 1 and prod.groups == 1:
            out.append((prod, bn, cons, 1))
    return out


def _bert_ffns(model):
    for name, m in model.named_modules():
        inter, outp = getattr(m, "intermediate", None), getattr(m, "output", None)
        if isinstance(getattr(inter, "dense", None), nn.Linear) and \
                isinstance(getattr(outp, "dense", None), nn.Linear):
            yield name, inter.dense, outp.dense


def _bert_attentions(model):
    for name, m in model.named_modules():
        s, o = getattr(m, "self", None), getattr(m, "output", None)
        if s is not None and all(isinstance(getattr(s, a, None), nn.Linear)
                                 for a in ("query", "key", "value")) \
                and isinstance(getattr(o, "dense", None), nn.Linear) \
                and hasattr(s, "attention_head_size"):
            yield name, s, o.dense


def _prune_heads(self_attn, out_dense, frac, criterion, mask_only):
    d = self_attn.attention_head_size
    h = self_attn.query.out_features // d
    rows = torch.cat([getattr(self_attn, a).weight.detach().reshape(h, d, -1)
                      for a in ("query", "key", "value")], dim=1)
    keep_heads = units_to_keep(unit_scores(rows, criterion), frac, "heads")
    keep = (keep_heads.reshape(-1, 1) * d + torch.arange(d)).reshape(-1)
    for a in ("query", "key", "value"):
        shrink_producer(getattr(self_attn, a), keep, mask_only)
    shrink_consumer(out_dense, keep, h * d, 1, mask_only)
    if not mask_only:
        self_attn.num_attention_heads = keep_heads.numel()
        self_attn.all_head_size = keep.numel()
    return h, keep_heads.numel()


def prune_structured(model, amount, criterion="l2", heads=None, mask_only=False, inplace=False):
    """Remove the `amount` fraction of units in every prunable chain of `model`.

    amount: fraction of neurons / channels / FFN width removed per chain.
    heads: fraction of attention heads removed per transformer layer (None: keep).
    criterion: "l1", "l2" or a callable W[units, -1] -> scores (on the producer).
    mask_only: zero the units instead of removing them (the reference model).
    inplace: change `model` itself instead of a deep copy.
    Returns the (new) model; `model.sparsekit_structured` lists what changed.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    changes = []
    ffns = list(_bert_ffns(model))
    for name, up, down in ffns:
        keep = units_to_keep(unit_scores(up.weight, criterion), amount)
        changes.append((name + ".ffn", up.out_features, keep.numel()))
        shrink_producer(up, keep, mask_only)
        shrink_consumer(down, keep, changes[-1][1], 1, mask_only)
    if heads is not None:
        for name, s, o in list(_bert_attentions(model)):
            changes.append((name + ".heads",) + _prune_heads(s, o, heads, criterion, mask_only))
    if not ffns:
        for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
            for prod, bn, cons, spatial in _sequential_chains(seq):
                n = prod.weight.shape[0]
                keep = units_to_keep(unit_scores(prod.weight, criterion), amount)
                shrink_producer(prod, keep, mask_only)
                if bn is not None:
                    shrink_batchnorm(bn, keep, mask_only)
                shrink_consumer(cons, keep, n, spatial, mask_only)
                changes.append((type(prod).__name__, n, keep.numel()))
    if not changes:
        raise ValueError("model: found no prunable chain (Sequential Linear/Conv chains or "
                         "BERT-style FFN / attention layers)")
    model.sparsekit_structured = changes
    return model


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
