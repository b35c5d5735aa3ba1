"""Load-time pass over an imported graph: an attention's three projections as
one QKVHeadsAttention node.

After onnx_attention, a torch.onnx.export BERT layer's self-attention is

    h ─ Linear_q ─ Reshape(s) ─ Transpose(0, 2, 1, 3) ─┐
    h ─ Linear_k ─ Reshape(s) ─ Transpose(0, 2, 3, 1) ─ HeadsAttention ─►
    h ─ Linear_v ─ Reshape(s) ─ Transpose(0, 2, 1, 3) ─┘      (+ mask)

ten runtime nodes, each with its Python dispatch, three GEMM calls reading h
(for an ORT dynamic int8 file, three per-tensor quantizations of h too). One
QKVHeadsAttention runs one GEMM on the stacked weight [3C, C] and the same
reshapes and transposes on its column blocks (views), then the same
HeadsAttention. Each output is the same sum as before: the fp32 GEMM
(PackedDenseMatrix, gemm_f32) computes every output column on its own, and
the int8 GEMM's per-channel scales are the three per-tensor ones repeated.

A chain is left as it is when anything differs: a value inside it with
another reader or that is a graph output, projections of different inputs,
layer types, activations or K, a weight that cannot be stacked (sparse
formats, static input quantization), a Reshape with allowzero, other
Transpose permutations.
"""
import heapq

import numpy as np

from sparsekit._dense_f32 import PackedDenseMatrix, wanted
from sparsekit.convert.onnx_shapes import _signature
from sparsekit.runtime.array_ops import ArrayOp
from sparsekit.runtime.attention import HeadsAttention, QKVHeadsAttention
from sparsekit.runtime.layers import Reshape, RowsLinear
from sparsekit.runtime.model import node_index
from sparsekit.runtime.tensor_quant import TensorQuantLinear

PERMS = ([0, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3])  # query, key (transposed), value


def _stacked(layers):
    """(weight [3C, C], per_tensor) of three projections' weights stacked, or None."""
    import sparsekit

    ws = [layer.weight for layer in layers]
    if type(layers[0]) is TensorQuantLinear:
        qm = getattr(sparsekit, "QuantizedMatrix", None)
        if qm is None or not all(type(w) is qm and w.input_scale is None for w in ws):
            return None
        return qm._concat_rows(ws), True
    if all(type(w) is PackedDenseMatrix for w in ws) or \
            all(type(w) is np.ndarray for w in ws):
        w = np.concatenate([np.asarray(w, np.float32) for w in ws])
        return (PackedDenseMatrix(w) if wanted() else w), False
    return None


def _bias(layers):
    if all(layer.bias is None for layer in layers):
        return None
    return np.concatenate([np.zeros(layer.out_features, np.float32) if layer.bias is None
                           else layer.bias for layer in layers])


def _same_value(nodes, made, a, b, depth=0):
    """Do runtime values a and b hold the same thing: one name, or ArrayOps
    of one signature (onnx_shapes) on the same values (the export writes a
    Reshape target once per projection)?"""
    if a == b:
        return True
    i, j = made.get(a), made.get(b)
    if i is None or j is None or depth > 8:
        return False
    (la, ia, _), (lb, ib, _) = nodes[i], nodes[j]
    return type(la) is ArrayOp and type(lb) is ArrayOp and len(ia) == len(ib) and \
        _signature(la) == _signature(lb) and \
        all(_same_value(nodes, made, x, y, depth + 1) for x, y in zip(ia, ib))


def _topological(nodes):
    """`nodes` in an order where each comes after what it reads, the original
    order wherever that allows (a stable topological sort)."""
    made = {out: i for i, (_, _, out) in enumerate(nodes)}
    waiting = [sum(1 for n in set(ins) if n in made) for _, ins, _ in nodes]
    users = {}
    for i, (_, ins, _) in enumerate(nodes):
        for n in set(ins):
            if n in made:
                users.setdefault(made[n], []).append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        i = heapq.heappop(ready)
        out.append(nodes[i])
        for u in users.get(i, ()):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    return out


def fuse_qkv_attention(nodes, outputs):
    """`nodes` (runtime.Model.graph's (layer, inputs, output) list) with each
    chain of the module doc as one QKVHeadsAttention node."""
    read_by, made = node_index(nodes)
    readers = {n: len(idx) for n, idx in read_by.items()}
    for o in outputs:  # a graph output counts as one more reader
        readers[o] = readers.get(o, 0) + 1

    shape_of = {}  # value -> indices of the Shape ArrayOps reading it
    for i, (layer, ins, _) in enumerate(nodes):
        if type(layer) is ArrayOp and layer.op == "Shape":
            shape_of.setdefault(ins[0], []).append(i)

    def only(name, kind, shapes_ok=False):
        """The node index making `name` when it is a `kind` read once only
        (shapes_ok: Shape ops may read it too)."""
        i = made.get(name)
        extra = len(shape_of.get(name, ())) if shapes_ok else 0
        if i is None or readers.get(name) != 1 + extra or not isinstance(nodes[i][0], kind):
            return None
        return i

    replace, drop = {}, set()
    for a, (attn, ains, aout) in enumerate(nodes):
        if type(attn) is not HeadsAttention:
            continue
        chain, lins, shapes, shape_ins = [], [], [], []
        for name, perm in zip(ains[:3], PERMS):
            # the transposed query and value have the attention output's shape
            # (checked below), so Shape ops reading them can read that instead
            t = only(name, ArrayOp, shapes_ok=perm == PERMS[0])
            r = None if t is None else only(nodes[t][1][0], (ArrayOp, Reshape))
            lin = None if r is None else only(nodes[r][1][0], (RowsLinear, TensorQuantLinear))
            if lin is None:
                break
            top, rop = nodes[t][0], nodes[r][0]
            if top.op != "Transpose" or list(top.attrs.get("perm", [])) != perm:
                break
            if type(rop) is Reshape:  # a constant target (allowzero=0 semantics)
                shapes.append(list(rop.shape))
            elif rop.op != "Reshape" or rop.attrs.get("allowzero", 0) or \
                    rop.slots[0] != "x" or rop.slots[1] is None:
                break
            elif rop.slots[1] == "x":
                shapes.append(None)
                shape_ins.append(nodes[r][1][1])
            else:
                shapes.append([int(v) for v in np.ravel(rop.consts[rop.slots[1]])])
            chain += [t, r, lin]
            lins.append(nodes[lin])
        if len(lins) != 3:
            continue
        layers = [n[0] for n in lins]
        if len({tuple(n[1]) for n in lins}) != 1 or \
                {type(x) for x in layers} not in ({RowsLinear}, {TensorQuantLinear}) or \
                any(x.activation is not None or x.out_quant is not None for x in layers) or \
                len({x.in_features for x in layers}) != 1 or \
                len({x.out_features for x in layers}) != 1:
            continue
        moved = [i for name in (ains[0], ains[2]) for i in shape_of.get(name, ())]
        q_reshape, v_reshape = nodes[chain[1]], nodes[chain[7]]
        if moved and not (shapes[0] == shapes[2] and (shapes[0] is not None or _same_value(
                nodes, made, q_reshape[1][1], v_reshape[1][1]))):
            continue  # q and v might differ in shape: their Shape readers stay theirs
        stacked = _stacked(layers)
        if stacked is None:
            continue
        weight, per_tensor = stacked
        layer = QKVHeadsAttention(weight, _bias(layers), attn.scale, attn.nan_to_zero,
                                  attn.masked, shapes, per_tensor)
        ins = lins[0][1] + ains[3:] + shape_ins
        replace[a] = (layer, ins, aout)
        for i in moved:
            shape_op, _, out = nodes[i]
            replace[i] = (shape_op, [aout], out)
        drop.update(chain)
    if not replace:
        return nodes
    return _topological([replace.get(i, node) for i, node in enumerate(nodes)
                         if i not in drop])
