"""The fusions accelerate() applies after swapping layers (convert/torch.py):

- Linear + exact GELU -> one int8 (or packed dense fp32) linear with the
  GELU in its epilogue;
- query / key / value (q_proj / k_proj / v_proj) on the same input, all
  dynamic int8 or all packed dense fp32 -> one GEMM over the stacked weights
  (FusedLinears);
- BERT's output blocks, LayerNorm(dropout(dense(h)) + residual) -> the add
  and LayerNorm as one in-place kernel after dense (ResidualLayerNorm).

Each updates the module's `reason` and its report row.
"""
import torch
from torch import nn

from sparsekit.runtime import layers as L
from sparsekit.runtime.torch_modules import FusedLinears, SparseLinear, fusable_weight


def _is_exact_gelu(f):
    """nn.GELU() or transformers' GELUActivation / a bare F.gelu (erf form)."""
    if isinstance(f, nn.GELU):
        return f.approximate == "none"
    if f is torch.nn.functional.gelu:
        return True
    return type(f).__name__ == "GELUActivation" and \
        getattr(f, "act", None) is torch.nn.functional.gelu


def _fusable(m):
    return isinstance(m, SparseLinear) and isinstance(m.layer, L.Linear) and \
        m.layer.activation is None and getattr(m.layer.weight, "_fused_gelu", False) and \
        m.out_qparams is None


def _fuse_gelu(model, rows):
    """Linear followed by an exact GELU -> one int8 (or packed dense fp32)
    linear with the GELU in its epilogue (the GELU module becomes nn.Identity): BERT-style blocks
    (`dense` then `intermediate_act_fn`) and nn.Sequential neighbours. Not
    done when the GELU kernel chosen is the scalar one (no vector kernel for
    this CPU; x86 has AVX2 / AVX-512 ones, ARM a NEON one): torch's vectorised
    GELU is faster there."""
    from sparsekit._config import info

    if info()["kernels"].get("gelu_f32") in (None, "scalar"):
        return
    pairs = []
    for name, m in model.named_modules():
        if _fusable(getattr(m, "dense", None)) and \
                _is_exact_gelu(getattr(m, "intermediate_act_fn", None)):
            pairs.append((name, m, "dense", "intermediate_act_fn"))
        elif isinstance(m, nn.Sequential):
            keys = list(m._modules)
            for a, b in zip(keys, keys[1:]):
                if _fusable(m._modules[a]) and _is_exact_gelu(m._modules[b]):
                    pairs.append((name, m, a, b))
    by_name = {r["name"]: r for r in rows}
    for name, parent, lin_key, act_key in pairs:
        lin = getattr(parent, lin_key)
        lin.layer = L.Linear(lin.layer.weight, lin.layer.bias, "gelu")
        lin.reason += "; + GELU fused into the GEMM's epilogue"
        setattr(parent, act_key, nn.Identity())
        row = by_name.get(f"{name}.{lin_key}" if name else lin_key)
        if row is not None:
            row["reason"] = lin.reason


# sibling Linears that attention modules call on the same hidden states
_SHARED_INPUT_NAMES = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"))


def _stackable(m):
    return isinstance(m, SparseLinear) and type(m.layer) is L.Linear and \
        m.layer.activation is None and m.out_qparams is None and m._fused is None and \
        fusable_weight(m.layer.weight)


def _fuse_shared_input(model, rows):
    """query/key/value (or q_proj/k_proj/v_proj) children of one module, all
    dynamic int8 or all packed dense fp32 (PackedDenseMatrix) with the same
    in_features -> one GEMM over the stacked weights (see FusedLinears); each
    member's weight becomes a view of the stacked one. After load_state_dict
    the parent's post hook stacks the new weights."""
    from sparsekit._dense_f32 import PackedDenseMatrix

    by_name = {r["name"]: r for r in rows}
    for name, parent in list(model.named_modules()):
        for keys in _SHARED_INPUT_NAMES:
            mems = [getattr(parent, k, None) for k in keys]
            if not all(_stackable(m) for m in mems):
                continue
            got = FusedLinears.stack(mems)
            if got is None:
                continue  # mixed formats or rows not on panel boundaries: keep them apart
            stacked, views, bounds = got
            group = FusedLinears(stacked, bounds, name, keys)
            kind = "packed fp32 GEMM" if type(stacked.weight) is PackedDenseMatrix else \
                "int8 GEMM (input quantized once)"
            note = (f"; {'+'.join(keys)} fused into one [{bounds[-1][1]}, "
                    f"{mems[0].in_features}] {kind}")
            for i, (k, m, v) in enumerate(zip(keys, mems, views)):
                m.layer = L.Linear(v, m.layer.bias)
                m._fused = (group, i)
                m.reason += note
                row = by_name.get(f"{name}.{k}" if name else k)
                if row is not None:
                    row["reason"] = m.reason
            parent.register_forward_pre_hook(group.arm)
            parent.register_forward_hook(group.disarm)
            parent.register_load_state_dict_post_hook(group.reload)
            break


def _fuse_residual_layernorm(model, rows):
    """Modules shaped like BERT's output blocks, forward(hidden_states,
    input_tensor) = LayerNorm(dropout(dense(hidden_states)) + input_tensor)
    with `dense` on sparsekit: the add and the LayerNorm run as one in-place
    kernel on dense's fresh output (ResidualLayerNorm.forward)."""
    import inspect

    from sparsekit.runtime.torch_modules import ResidualLayerNorm

    if not hasattr(_core_module(), "add_layernorm_f32"):
        return
    by_name = {r["name"]: r for r in rows}
    for name, m in list(model.named_modules()):
        dense, ln = getattr(m, "dense", None), getattr(m, "LayerNorm", None)
        drop = getattr(m, "dropout", nn.Dropout(0.0))
        if not (isinstance(dense, SparseLinear) and type(ln) is nn.LayerNorm and
                isinstance(drop, nn.Dropout) and ln.elementwise_affine and
                tuple(ln.normalized_shape) == (dense.out_features,)):
            continue
        try:
            params = list(inspect.signature(type(m).forward).parameters)
        except (TypeError, ValueError):
            continue
        if params != ["self", "hidden_states", "input_tensor"]:
            continue
        fused = ResidualLayerNorm(m)
        if not _same_block_output(m, fused):
            continue  # the names match but the block computes something else
        m.forward = fused
        dense.reason += "; + residual add and LayerNorm fused after it (add_layernorm_f32)"
        row = by_name.get(f"{name}.dense" if name else "dense")
        if row is not None:
            row["reason"] = dense.reason


def _same_block_output(block, fused):
    """One random call of the block's own forward against `fused` (eval mode)."""
    was = block.training
    block.eval()
    try:
        g = torch.Generator().manual_seed(0)
        h = torch.randn(2, 3, block.dense.in_features, generator=g)
        res = torch.randn(2, 3, block.dense.out_features, generator=g)
        with torch.no_grad():
            want = type(block).forward(block, h, res)
            got = fused(h, res)
        return isinstance(want, torch.Tensor) and want.shape == got.shape and \
            bool(torch.allclose(got, want, rtol=1e-4, atol=1e-4))
    except Exception:  # noqa: BLE001 - any failure means: do not fuse
        return False
    finally:
        block.train(was)


def _core_module():
    from sparsekit._native import AVAILABLE, core

    return core if AVAILABLE else None
