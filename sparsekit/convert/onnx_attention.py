"""Scaled dot-product attention of an ONNX export as one runtime layer.

torch.onnx.export writes a BERT layer's attention (transformers 5, torch 2.13)
on heads already split by Reshape + Transpose as

    q [B, H, T, D] ─ Mul(c) ─┐
    kt [B, H, D, T] ─ Mul(c) ─ MatMul ─ Add(mask) ─ Softmax ─ IsNaN ─ Where(0, .) ─┐
    v [B, H, T, D] ─────────────────────────────────────────────────────────────── MatMul ─► out

(older exports: Div(sqrt d) on the scores, no IsNaN / Where). fuse_attention
replaces each such chain with one SparsekitAttention node, run by
runtime.attention.HeadsAttention on the attention_f32 kernel: ~8 NumPy ops
per layer, and the [B, H, T, T] scores, become one kernel call. The mask is
whatever value the graph adds (padding from attention_mask, causal, any
additive float mask): HeadsAttention adds that same value, so no assumption
on where it comes from is needed (a mask that differs per head runs as the
graph's ops in NumPy). A chain is left as it is when any value inside it
has another reader or is a graph output, a scale is not one constant
number, Softmax is not over the last axis, or its values are not float32
(quantized attention: QDQ / QOperator files never match, their MatMuls read
DequantizeLinear outputs).
"""
from onnx import helper
import numpy as np

from sparsekit.convert.onnx_fuse import _consts, readers_of, rebuild
from sparsekit.runtime.attention import HeadsAttention

OP = "SparsekitAttention"


def _scalar(consts, name):
    v = consts.get(name)
    if v is None or v.size != 1 or v.dtype.kind != "f" or not np.isfinite(v).all():
        return None
    return float(v.reshape(-1)[0])


def fuse_attention(model, dtypes):
    """A copy of `model` with each attention chain (see the module doc) as one
    SparsekitAttention node; `model` if there is none. dtypes: ONNX value name
    -> NumPy dtype (onnx_generic.inferred_dtypes)."""
    g = model.graph
    consts = _consts(g)
    made = {o: n for n in g.node for o in n.output}
    readers = readers_of(g)
    outputs = {o.name for o in g.output}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)

    def producer(name, *ops):
        n = made.get(name)
        return n if n is not None and n.op_type in ops else None

    def unscale(name, chain):
        """(input, factor) of an optional Mul / Div by a constant number producing `name`."""
        n = producer(name, "Mul", "Div")
        if n is None or len(n.input) != 2:
            return name, 1.0
        a, b = n.input
        if n.op_type == "Mul" and _scalar(consts, a) is not None and b not in consts:
            a, b = b, a
        c = _scalar(consts, b)
        if c is None or a in consts or (n.op_type == "Div" and c == 0):
            return name, 1.0
        chain.append(n)
        return a, (c if n.op_type == "Mul" else 1.0 / c)

    replace, drop = {}, set()
    for pv in g.node:
        if pv.op_type != "MatMul" or len(pv.input) != 2:
            continue
        chain = [pv]
        p, v = pv.input
        guard = producer(p, "Where")
        nan_to_zero = False
        if guard is not None:
            isnan = producer(guard.input[0], "IsNaN")
            if isnan is None or _scalar(consts, guard.input[1]) != 0.0 or \
                    isnan.input[0] != guard.input[2]:
                continue
            chain += [guard, isnan]
            p, nan_to_zero = guard.input[2], True
        sm = producer(p, "Softmax")
        axis = next((helper.get_attribute_value(a) for a in sm.attribute if a.name == "axis"),
                    -1 if opset >= 13 else 1) if sm is not None else None
        if axis != -1:  # (before opset 13, Softmax's default axis is 1: the flattened rest)
            continue
        chain.append(sm)
        x, mask = sm.input[0], None
        add = producer(x, "Add")
        if add is not None and len(add.input) == 2:
            chain.append(add)
            x, mask = add.input  # scores + mask or mask + scores: the side with q . k
            if producer(unscale(x, [])[0], "MatMul") is None:
                x, mask = mask, x
        x, s_scores = unscale(x, chain)
        qk = producer(x, "MatMul")
        if qk is None or len(qk.input) != 2:
            continue
        chain.append(qk)
        q, s_q = unscale(qk.input[0], chain)
        kt, s_k = unscale(qk.input[1], chain)
        ins = [q, kt, v] + ([mask] if mask is not None else [])
        if any(i in consts or dtypes.get(i) != np.float32 for i in ins) or \
                dtypes.get(pv.output[0]) != np.float32:
            continue
        inner = {o for n in chain[1:] for o in n.output}  # values only the chain reads
        ids = {id(n) for n in chain}
        if inner & outputs or mask in inner or any(
                id(r) not in ids for o in inner for r in readers.get(o, [])):
            continue
        scale = s_q * s_k * s_scores
        replace[pv.output[0]] = helper.make_node(
            OP, ins, [pv.output[0]], name=(pv.name or pv.output[0]) + "/attention",
            domain="sparsekit", scale=scale, nan_to_zero=int(nan_to_zero))
        drop.update(n.output[0] for n in chain)
    if not replace:
        return model
    return rebuild(model, replace, drop)


def _attention(b, node, ins, a):
    from sparsekit.convert.onnx import _need_tensor

    names = [_need_tensor(v, node).name for v in ins]
    layer = HeadsAttention(a["scale"], bool(a.get("nan_to_zero", 1)), masked=len(ins) == 4)
    return b.emit(layer, names)


OPS = {OP: _attention}
