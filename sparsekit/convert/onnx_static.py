"""QOperator ops of ONNX Runtime's static quantization (quantize_static with
QuantFormat.QOperator) for transformers, on top of sparsekit.convert.onnx.

A quantized tensor is held in the runtime as its dequantized float32 value
(see sparsekit.convert.onnx), so each QLinear op here is: its inputs as float
values (a uint8 / int8 constant dequantized at load time; an integer runtime
tensor, e.g. a Gather from a uint8 embedding table, dequantized by an ArrayOp
with the op's own scale and zero point), the float op, then a FakeQuantize
onto the output grid:

    QLinearMatMul  constant int8 B: an int8 Linear whose input is quantized
                   with the file's static scale / zero point (exact int32, as
                   ORT; int8 activations as the u8 codes q + 128); two
                   activations (attention's Q.K^T and P.V): MatMul of the two
                   dequantized tensors
    QLinearAdd     a constant operand (ORT writes the bias first) is an
                   AddConst, two tensors an Add (broadcasting: the mask);
                   with scales that allow exact .5 ties, runtime.qlinear's
                   QLinearAdd, which rounds them as ORT's MLAS kernel does
                   (ONNX's half-to-even would differ on ~40% of BERT's
                   erf + 1 values). fuse_qdq_add makes the same of a QDQ
                   Add that ORT's optimizer would fuse
    QLinearMul     a constant operand is a MulConst, two tensors a NumPy Mul
    QLinearSoftmax Softmax

The float paths round differently from ORT's integer requantization only when
a value lands within float32 rounding of a .5 boundary of the output grid,
which then differs by one step. drop_requantization removes the rounding
passes a static int8 Linear makes redundant; fuse_bias_requantize,
fuse_quant_layernorm, fold_into_requantize and fuse_quant_softmax run what
is left between the grids (bias, residual Add + LayerNorm, attention's
scale, mask + Softmax) in fewer, C passes, bit-identical to the layers they
replace.
"""
import warnings
from fractions import Fraction
from math import gcd

import numpy as np

from sparsekit.convert.onnx_values import Const
from sparsekit.runtime import layers as L
from sparsekit.runtime.array_ops import ArrayOp
from sparsekit.runtime.model import node_index
from sparsekit._quantized import QuantizedMatrix
from sparsekit.runtime.quant_norm import QuantLayerNorm, QuantSoftmax
from sparsekit.runtime.qlinear import (BiasRequantize, Int8LinearRequantize, LookupTable,
                                      QLinearAdd, codes_for)


def warn_infinite_scale(node, scale):
    """ORT's MinMax calibration gives scale inf to a tensor holding -inf (the
    additive attention mask of a torch.onnx.export BERT and the scores it is
    added to); dequantized, every value is then NaN or +-inf (0 * inf), which
    sparsekit runs as ONNX defines it (as ORT does with graph optimizations
    off) but which is no longer the float model."""
    s = np.asarray(scale, np.float32)
    if s.size and not np.all(np.isfinite(s)):
        warnings.warn(f"node {node.name or node.output[0]!r} ({node.op_type}): quantization "
                      "scale is not finite (calibration saw -inf, e.g. an attention mask); "
                      "the tensor dequantizes to NaN / inf. Quantize without this node "
                      "(quantize_static(..., nodes_to_exclude=[...])) to keep the float "
                      "model's meaning", RuntimeWarning, stacklevel=2)


def _out(b, node, t, ins, si, zi):
    """The op's float result onto its output grid (scale ins[si], zero point ins[zi])."""
    if len(ins) > si and ins[si] is not None:
        warn_infinite_scale(node, ins[si].value)
    return O._qlinear_out(b, t, ins, si, zi)


def _zp(ins, i):
    return np.asarray(ins[i].value) if len(ins) > i and ins[i] is not None else \
        np.zeros((), np.uint8)


def qinput(b, node, ins, i):
    """Input i of a QLinear op (its scale and zero point at i + 1, i + 2) as a
    float Const or a float runtime Tensor."""
    v = ins[i]
    s = np.asarray(O._need_const(ins[i + 1], node, f"input {i + 1} (scale)"), np.float32)
    zp = _zp(ins, i + 2)
    if isinstance(v, Const):
        return O._dequantize_linear(b, node, [v, Const(s), Const(zp)], {})
    t = O._need_tensor(v, node)
    if t.is_float:  # the runtime's dequantized value already
        return t
    if t.dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
        raise ValueError(f"node {node.name!r} ({node.op_type}): input {node.input[i]!r} is "
                         f"{t.dtype}, expected uint8 or int8")
    out = b.emit(ArrayOp("DequantizeLinear", {}, ["x", "s", "z"], {"s": s, "z": zp}), [t.name])
    if s.size == 1:
        out.quant = (float(s.reshape(-1)[0]), int(zp.reshape(-1)[0]), zp.dtype == np.int8)
    return out


def qlinear_matmul(b, node, ins, a):  # A, As, Azp, B, Bs, Bzp, Ys, Yzp
    x = O._need_tensor(qinput(b, node, ins, 0), node, "A")
    if isinstance(ins[3], Const):  # int8 weight: static int8 Linear
        q, s, zp = O._qweight(node, ins, 3)
        c = O._dequantize_linear(b, node, [Const(q), Const(s), Const(zp)], {"axis": 1})
        t = O._linear(b, node, x, c, transpose=True)
    else:  # two activations (attention)
        y = O._need_tensor(qinput(b, node, ins, 3), node, "B")
        t = b.emit(ArrayOp("MatMul", slots=("x", "x")), [x.name, y.name])
    return _out(b, node, t, ins, 6, 7)


def _binary(b, node, ins, const_layer, tensor_op):
    x, y = qinput(b, node, ins, 0), qinput(b, node, ins, 3)
    xn = node.input[0]
    if isinstance(x, Const):
        x, y, xn = y, x, node.input[3]
    x = O._need_tensor(x, node, "A or B")
    if isinstance(y, Const):
        t = const_layer(x, y.value.astype(np.float32), xn)
    else:
        t = tensor_op(x, y)
    return _out(b, node, t, ins, 6, 7)


def ties_possible(sa, sb, sc):
    """Whether sa (i) + sb (j) can be an exact odd multiple of sc / 2 for 8-bit
    code differences i, j: the exact .5 ties that ONNX rounds to even and
    MLAS's QLinearAdd does not (runtime.qlinear). Exact rational arithmetic on
    the float32 scales."""
    f32 = [Fraction(float(np.float32(v))) for v in (sa, sb, sc)]
    ra, rb = f32[0] / f32[2], f32[1] / f32[2]
    d = ra.denominator * rb.denominator // gcd(ra.denominator, rb.denominator)
    if d % 2:
        return False
    pa, pb = ra.numerator * (d // ra.denominator), rb.numerator * (d // rb.denominator)
    ends = {(j * pb) % d for j in range(-255, 256)}
    return any((d // 2 - i * pa) % d in ends for i in range(-255, 256))


def _scalar_params(ins, i):
    """(scale, zero point) of input i's scale / zero point slots, or None when
    the scale is not one finite number."""
    s = np.asarray(ins[i].value, np.float32) if ins[i] is not None else None
    if s is None or s.size != 1 or not np.isfinite(s).all() or not s.reshape(-1)[0] > 0:
        return None
    return float(s.reshape(-1)[0]), int(_zp(ins, i + 1).reshape(-1)[0])


def _mlas_add(b, node, ins):
    """A runtime.qlinear.QLinearAdd layer when the scales allow exact ties
    (there ONNX's and MLAS's rounding differ; elsewhere the float path below
    gives the same codes but at float rounding), else None."""
    params = [_scalar_params(ins, i) for i in (1, 4, 6)]
    consts = {key: ins[i].value for key, i in (("a", 0), ("b", 3)) if isinstance(ins[i], Const)}
    if len(consts) == 2 or any(c.dtype.kind not in "iu" for c in consts.values()) or \
            any(p is None for p in params) or not ties_possible(*(p[0] for p in params)):
        return None
    names = [O._need_tensor(qinput(b, node, ins, i), node).name
             for key, i in (("a", 0), ("b", 3)) if key not in consts]
    signed = _zp(ins, 7).dtype == np.int8
    out = b.emit(QLinearAdd(*params, signed=signed, **consts), names)
    out.quant = params[2] + (signed,)
    return out


def qlinear_add(b, node, ins, a):  # com.microsoft: A, As, Azp, B, Bs, Bzp, Cs, Czp
    t = _mlas_add(b, node, ins)
    if t is not None:
        return t
    return _binary(b, node, ins, lambda x, c, xn: O._fold_bias(b, x, c, xn),
                   lambda x, y: b.emit(L.Add(), [x.name, y.name]))


def qlinear_mul(b, node, ins, a):  # com.microsoft: A, As, Azp, B, Bs, Bzp, Cs, Czp
    return _binary(b, node, ins, lambda x, c, xn: b.emit(L.MulConst(c), [x.name]),
                   lambda x, y: b.emit(ArrayOp("Mul", slots=("x", "x")), [x.name, y.name]))


def qlinear_softmax(b, node, ins, a):  # com.microsoft: X, Xs, Xzp, Ys, Yzp
    x = O._need_tensor(qinput(b, node, ins, 0), node)
    t = b.emit(L.Softmax(a.get("axis", -1)), [x.name])
    return _out(b, node, t, ins, 3, 4)


def fuse_qdq_add(model):
    """A copy of `model` where DequantizeLinear (a), DequantizeLinear (b) ->
    Add -> QuantizeLinear (per-tensor scales with exact ties possible: see
    ties_possible) is one com.microsoft QLinearAdd, as ONNX Runtime's graph
    optimizer fuses it (and then rounds as MLAS does); `model` if none.
    Elsewhere QDQ runs as ONNX defines it, which gives the same codes up to
    float rounding."""
    from sparsekit.convert.onnx_fuse import readers_of, rebuild  # onnx: optional

    g = model.graph
    consts = {i.name: i for i in g.initializer}
    made = {o: n for n in g.node for o in n.output}
    readers = readers_of(g)
    outs = {o.name for o in g.output}

    def scalar(name):
        from onnx import numpy_helper

        v = numpy_helper.to_array(consts[name]) if name in consts else None
        return None if v is None or v.size != 1 else v.reshape(-1)[0]

    def qparams(n):  # (x, scale, zero point names) of a per-tensor (De)QuantizeLinear
        if len(n.input) < 3 or any(a.name == "axis" for a in n.attribute):
            return None
        s, z = scalar(n.input[1]), scalar(n.input[2])
        if s is None or z is None or not np.isfinite(s) or not s > 0:
            return None
        return n.input[0], n.input[1], n.input[2], float(s), z

    replace, drop = {}, set()
    for add in g.node:
        if add.op_type != "Add" or len(add.input) != 2 or add.output[0] in outs:
            continue
        deqs = [made.get(i) for i in add.input]
        users = readers.get(add.output[0], [])
        if any(d is None or d.op_type != "DequantizeLinear" for d in deqs) or \
                len(users) != 1 or users[0].op_type != "QuantizeLinear":
            continue
        pa, pb, pc = qparams(deqs[0]), qparams(deqs[1]), qparams(users[0])
        if None in (pa, pb, pc) or len({type(p[4]) for p in (pa, pb, pc)}) != 1 or \
                not ties_possible(pa[3], pb[3], pc[3]):
            continue
        from onnx import helper

        q = users[0]  # (nodes are keyed by their first output: names are unique)
        replace[add.output[0]] = helper.make_node(
            "QLinearAdd", list(pa[:3]) + list(pb[:3]) + [pc[1], pc[2]], [q.output[0]],
            name=(add.name or add.output[0]) + "/qlinear", domain="com.microsoft")
        drop.add(q.output[0])
    if not replace:
        return model
    return rebuild(model, replace, drop)


# ArrayOps that work element by element (with size-1 constants)
_ELEMENTWISE = {"Erf", "Div", "Mul", "Add", "Sub", "Sqrt", "Exp", "Log", "Tanh", "Sigmoid",
                "Relu", "Neg", "Abs", "Pow", "Reciprocal", "Floor", "Ceil", "Clip"}


def _elementwise(layer):
    if type(layer) in (L.FakeQuantize, L.ReLU, L.Sigmoid, L.Tanh, L.GELU, L.Add):
        return True
    if type(layer) in (L.AddConst, L.MulConst):
        return layer.value.size == 1 and layer.value.ndim <= 1
    if type(layer) is QLinearAdd:
        return all(c is None or c.size == 1 and c.ndim <= 1 for c in (layer.a, layer.b))
    if type(layer) is ArrayOp:
        return layer.op in _ELEMENTWISE and layer.output == 0 and all(
            c.size == 1 and c.ndim <= 1 for c in layer.consts.values())
    return False


def fold_lookup_tables(nodes, outputs):
    """nodes where each tensor that is an elementwise function of one uint8
    quantized tensor (FakeQuantize's input x, scale s, zero point z) is one
    runtime.qlinear.LookupTable on x, its 256 values computed by the same
    layers at load time; the layers it replaces drop out when nothing else
    reads them. A FakeQuantize of x stays as it is (cheaper than a lookup)."""
    src = {}  # tensor -> (x, s, z, table [256], derived)
    for layer, ins, out in nodes:
        if type(layer) is L.FakeQuantize and not layer.signed and np.isfinite(layer.scale):
            if ins[0] in src:  # requantizing a function of an earlier source
                x, s, z, table, _ = src[ins[0]]
                src[out] = (x, s, z, layer(table), True)
            else:
                grid = (np.arange(256, dtype=np.float32) - np.float32(layer.zero_point)) \
                    * np.float32(layer.scale)
                src[out] = (ins[0], layer.scale, layer.zero_point, grid, False)
        elif ins and _elementwise(layer) and all(i in src for i in ins) and \
                len({src[i][:3] for i in ins}) == 1:
            x, s, z = src[ins[0]][:3]
            try:
                with np.errstate(all="ignore"):
                    table = np.asarray(layer(*[src[i][3] for i in ins]))
            except (ValueError, TypeError):
                continue
            if table.shape == (256,) and table.dtype == np.float32:
                src[out] = (x, s, z, table, True)
    swapped = [(LookupTable(s, z, table), [x], out) if out in src and src[out][4]
               else (layer, ins, out)
               for (layer, ins, out) in nodes
               for x, s, z, table, _ in [src.get(out, (None,) * 5)]]
    return _live(swapped, outputs)


def _live(nodes, outputs):
    """nodes without those whose outputs nothing reads."""
    need = set(outputs)
    keep = []
    for layer, ins, out in reversed(nodes):
        if out in need:
            keep.append((layer, ins, out))
            need.update(ins)
    return keep[::-1]


def drop_requantization(nodes, outputs):
    """nodes without the FakeQuantize layers whose every reader is an int8
    Linear quantizing its input with the same static (scale, zero point):
    that Linear computes the same u8 integers from the unrounded tensor
    (q = clip(rint(x / s) + zp) either way, as ORT's QuantizeLinear), so the
    rounding pass before it is redundant. A QDQ BERT has one before every
    weight MatMul (the LayerNorm outputs feeding Q, K and V, the attention
    context, the GELU output). Reshape / Transpose between the two move the
    values unchanged, and Shape / Size readers need only the shape."""
    readers, _ = node_index(nodes)
    drop = {}

    def only_linears(name, scale, zp):  # through views; Shape ops read the shape only
        rs = readers.get(name, [])
        return name not in outputs and bool(rs) and all(
            isinstance(nodes[r][0], L.Linear) and
            getattr(nodes[r][0].weight, "input_scale", None) is not None and
            np.float32(nodes[r][0].weight.input_scale) == np.float32(scale) and
            nodes[r][0].weight.input_zero_point == zp or _shape_only(nodes[r][0]) or
            _view_of(nodes[r], name) and only_linears(nodes[r][2], scale, zp) for r in rs)

    for layer, ins, out in nodes:
        if type(layer) is not L.FakeQuantize or out in outputs:
            continue
        zp = layer.zero_point + (128 if layer.signed else 0)  # int8: as u8 codes q + 128
        if any(not _shape_only(nodes[r][0]) for r in readers.get(out, [])) and \
                only_linears(out, layer.scale, zp):
            drop[out] = ins[0]
    return [(layer, [drop.get(n, n) for n in ins], out)
            for layer, ins, out in nodes if out not in drop]


def fuse_bias_requantize(nodes, outputs):
    """nodes with each chain FakeQuantize -> AddConst (float32 [K] bias) ->
    FakeQuantize or LookupTable (uint8 grids, finite scales; the middle
    tensors read by nothing else) as one runtime.qlinear.BiasRequantize: a
    quantized MatMul's output grid, its bias Add and the requantization (the
    Q, K, V and output projections of a QDQ BERT, the FFN's GELU table);
    with the static int8 Linear before it (no bias or activation, its
    output read by nothing else) as one runtime.qlinear.Int8LinearRequantize."""
    readers, _ = node_index(nodes)
    made = {n[2]: n for n in nodes}

    def only_reader(name):
        return name not in outputs and len(readers.get(name, ())) == 1

    def u8_grid(layer):
        return (type(layer) is L.FakeQuantize and not layer.signed or
                type(layer) is LookupTable) and np.isfinite(layer.scale)

    fused, gone = {}, set()
    for layer, ins, out in nodes:
        if not u8_grid(layer) or len(ins) != 1 or ins[0] not in made:
            continue
        add, add_ins, add_out = made[ins[0]]
        if type(add) is not L.AddConst or add.value.dtype != np.float32 or \
                add.value.ndim != 1 or add.value.size < 2 or not only_reader(add_out) or \
                add_ins[0] not in made:
            continue
        first, first_ins, first_out = made[add_ins[0]]
        if first_out in fused or first_ins[0] in gone or \
                type(first) is not L.FakeQuantize or first.signed or \
                not np.isfinite(first.scale) or not only_reader(first_out):
            continue
        table = layer.table if type(layer) is LookupTable else None
        args = ((first.scale, first.zero_point), add.value, (layer.scale, layer.zero_point), table)
        gone.update((add_out, first_out))
        lin = made.get(first_ins[0])
        if lin is not None and type(lin[0]) in (L.Linear, L.RowsLinear) and \
                type(lin[0].weight) is QuantizedMatrix and \
                lin[0].weight.input_scale is not None and lin[0].bias is None and \
                lin[0].activation is None and lin[0].out_quant is None and \
                lin[0].out_features == add.value.size and only_reader(lin[2]):
            # the int8 GEMM's epilogue makes the first grid's codes
            fused[out] = (Int8LinearRequantize(lin[0].weight, *args), lin[1], out)
            gone.add(lin[2])
        else:
            fused[out] = (BiasRequantize(*args), first_ins, out)
    nodes = [fused.get(out, (layer, ins, out)) for layer, ins, out in nodes if out not in gone]
    return _hand_codes(nodes, outputs)


def _static_grid(layer):
    """(float32 scale, zero point) of an int8 Linear's static input, or None."""
    if type(layer) is Int8LinearRequantize:
        w = layer.weight
    elif type(layer) in (L.Linear, L.RowsLinear) and type(layer.weight) is QuantizedMatrix:
        w = layer.weight
    else:
        return None
    if w.input_scale is None:
        return None
    return np.float32(w.input_scale), w.input_zero_point


def _hand_codes(nodes, outputs):
    """nodes where an Int8LinearRequantize ending in a table (the FFN's GELU)
    whose every reader is an int8 Linear with one static input grid hands
    them U8Activations on it: the [rows, 4C] float tensor is not written,
    nor read and divided again by the down-projection."""
    readers, _ = node_index(nodes)
    done = []
    for layer, ins, out in nodes:
        rs = [nodes[i][0] for i in readers.get(out, ())]
        grids = {_static_grid(r) for r in rs}
        if type(layer) is Int8LinearRequantize and isinstance(layer.requant.last, LookupTable) \
                and out not in outputs and rs and len(grids) == 1 and None not in grids:
            (s, z), = grids
            table = layer.requant.last.table
            if codes_for(table, s, z) is not None:
                layer = _with_codes(layer, s, z)
        done.append((layer, ins, out))
    return done


def _with_codes(layer, s, z):
    rq = layer.requant
    return Int8LinearRequantize(layer.weight, (rq.first.scale, rq.first.zero_point), rq.bias,
                                (rq.last.scale, rq.last.zero_point), rq.last.table,
                                (float(s), int(z)))


def _u8_grid(layer):
    """layer is a FakeQuantize onto a uint8 grid of finite scale."""
    return type(layer) is L.FakeQuantize and not layer.signed and np.isfinite(layer.scale)


def _shape_only(layer):
    """An ArrayOp that reads only its input's shape."""
    return type(layer) is ArrayOp and layer.op in ("Shape", "Size")


def fuse_quant_layernorm(nodes, outputs):
    """nodes with each Add -> FakeQuantize -> LayerNorm -> FakeQuantize
    (uint8 grids, finite scales; the Add, its grid and the LayerNorm read by
    nothing else but, for the LayerNorm, Shape / Size ops) as one
    runtime.quant_norm.QuantLayerNorm at the LayerNorm's place (the end
    of each transformer block and the embeddings of a QDQ / QOperator BERT);
    without the Add when the first grid's input comes from anything else.
    Shape readers of the LayerNorm read the fused output (the same shape)."""
    readers, made = node_index(nodes)

    def only(name, i):  # node i is the one reader of name
        return name not in outputs and readers.get(name) == [i]

    fused, gone, rename = {}, set(), {}
    for li, (ln, ins, out) in enumerate(nodes):
        if type(ln) is not L.LayerNorm or out in outputs or ins[0] not in made:
            continue
        f1 = made[ins[0]]
        rs = readers.get(out, [])
        last = [r for r in rs if not _shape_only(nodes[r][0])]
        if (not _u8_grid(nodes[f1][0]) or not only(ins[0], li) or len(last) != 1
                or not _u8_grid(nodes[last[0]][0])):
            continue
        src = nodes[f1][1][0]
        a = made.get(src)
        add = a is not None and type(nodes[a][0]) is L.Add and only(src, f1)
        f2 = nodes[last[0]]
        layer = QuantLayerNorm((nodes[f1][0].scale, nodes[f1][0].zero_point), ln.gamma,
                               ln.beta, ln.eps, (f2[0].scale, f2[0].zero_point), add=add)
        fused[li] = (layer, list(nodes[a][1]) if add else [src], f2[2])
        gone.update({f1, last[0]} | ({a} if add else set()))
        rename[out] = f2[2]
    if not fused:
        return nodes
    return [fused.get(i) or (layer, [rename.get(n, n) for n in ins], out)
            for i, (layer, ins, out) in enumerate(nodes) if i not in gone]


def fuse_quant_softmax(nodes, outputs):
    """nodes with each FakeQuantize -> Add (a mask) -> Softmax (last axis) ->
    [IsNaN -> Where (NaN to a constant)] -> FakeQuantize (uint8 grids, finite
    scales, every tensor on the way read only by the next) as one
    runtime.quant_norm.QuantSoftmax at the Softmax's place: the attention
    probabilities of a QDQ / QOperator BERT."""
    readers, made = node_index(nodes)

    def sole(name):  # index of the one reader of name, or None
        rs = readers.get(name, [])
        return rs[0] if name not in outputs and len(rs) == 1 else None

    def op(i, name):
        return type(nodes[i][0]) is ArrayOp and nodes[i][0].op == name

    fused, gone = {}, set()
    for si, (sm, ins, out) in enumerate(nodes):
        if type(sm) is not L.Softmax or sm.axis != -1 or sm.flatten or out in outputs or \
                ins[0] not in made:
            continue
        src, mask, drop = made[ins[0]], None, set()
        if type(nodes[src][0]) is L.Add and sole(ins[0]) == si:
            a, b = nodes[src][1]
            for x, y in ((a, b), (b, a)):
                if x in made and _u8_grid(nodes[made[x]][0]) and sole(x) == src:
                    drop.add(src)
                    src, mask = made[x], y
                    break
            else:
                continue
        elif not (_u8_grid(nodes[src][0]) and sole(ins[0]) == si):
            continue
        rs, nan_to = readers.get(out, []), None
        if len(rs) == 2 and {op(r, "IsNaN") for r in rs} == {True, False}:
            isnan, where = sorted(rs, key=lambda r: not op(r, "IsNaN"))
            w = nodes[where][0]
            if not (op(where, "Where") and len(w.slots) == 3 and w.slots[0] == "x" and
                    w.slots[2] == "x" and
                    w.slots[1] in w.consts and w.consts[w.slots[1]].size == 1 and
                    nodes[where][1] == [nodes[isnan][2], out] and
                    nodes[isnan][1] == [out] and sole(nodes[isnan][2]) == where):
                continue
            nan_to = float(w.consts[w.slots[1]].reshape(-1)[0])
            drop.update((isnan, where))
            last = sole(nodes[where][2])
        else:
            last = sole(out)
        if last is None or not _u8_grid(nodes[last][0]):
            continue
        first, f2 = nodes[src][0], nodes[last][0]
        layer = QuantSoftmax((first.scale, first.zero_point), (f2.scale, f2.zero_point),
                             mask=mask is not None, nan_to=nan_to)
        fused[si] = (layer, [nodes[src][1][0]] + ([mask] if mask is not None else []),
                     nodes[last][2])
        gone.update(drop | {src, last})
    if not fused:
        return nodes
    return [fused.get(i) or n for i, n in enumerate(nodes) if i not in gone]


_VIEWS = ("Reshape", "Transpose")  # ArrayOps that move values without changing them


def _view_of(node, name):
    """Whether node is a view op whose data input (and only that) is `name`."""
    layer, ins, out = node
    return type(layer) is ArrayOp and layer.op in _VIEWS and layer.slots[:1] == ["x"] and \
        ins[0] == name and name not in ins[1:]


def fold_into_requantize(nodes, outputs):
    """nodes where the elementwise layers after a BiasRequantize /
    Int8LinearRequantize (its output grid, through Reshape / Transpose) are
    one table on that grid in it: attention's scale (MulConst by a scalar)
    and its requantization (FakeQuantize) on Q and K of a QDQ / QOperator
    BERT. The table holds the chain's value for each of the 256 codes,
    computed by the same layers at load time (as fold_lookup_tables); the
    views then move the final values. Every tensor on the way is read by
    nothing else but Shape / Size ops, which read the last one instead (the
    same shape)."""
    readers, _ = node_index(nodes)

    def next_reader(name):  # the one reader that is not a Shape op, or None
        rs = [r for r in readers.get(name, []) if not _shape_only(nodes[r][0])]
        return rs[0] if name not in outputs and len(rs) == 1 else None

    swap, gone, rename = {}, set(), {}
    for pi, (p, ins, out) in enumerate(nodes):
        rq = p.requant if type(p) is Int8LinearRequantize else p
        if type(p) not in (Int8LinearRequantize, BiasRequantize) or \
                getattr(p, "out_codes", None) is not None:
            continue
        last, cur, r = pi, out, next_reader(out)
        while r is not None and _view_of(nodes[r], cur):
            last, cur = r, nodes[r][2]
            r = next_reader(cur)
        chain = []
        while r is not None and nodes[r][0].n_inputs == 1 and nodes[r][1] == [cur] and \
                (_elementwise(nodes[r][0]) or type(nodes[r][0]) is LookupTable):
            chain.append(r)
            cur = nodes[r][2]
            r = next_reader(cur)
        if not chain:
            continue
        z, s = np.float32(rq.last.zero_point), np.float32(rq.last.scale)
        table = rq.last.table if type(rq.last) is LookupTable else \
            (np.arange(256, dtype=np.float32) - z) * s
        try:
            with np.errstate(all="ignore"):
                for c in chain:
                    table = np.asarray(nodes[c][0](table))
        except (ValueError, TypeError):
            continue
        if table.shape != (256,) or table.dtype != np.float32:
            continue
        args = ((rq.first.scale, rq.first.zero_point), rq.bias,
                (rq.last.scale, rq.last.zero_point), table)
        swap[pi] = Int8LinearRequantize(p.weight, *args) if type(p) is Int8LinearRequantize \
            else BiasRequantize(*args)
        gone.update(chain)
        rename.update({nodes[c][2]: cur for c in chain[:-1]})
        rename[nodes[last][2]] = cur  # the last view (or the source) writes the chain's output
    if not gone:
        return nodes
    return [(swap.get(i, layer), [rename.get(n, n) for n in ins], rename.get(out, out))
            for i, (layer, ins, out) in enumerate(nodes) if i not in gone]


OPS = {"QLinearMatMul": qlinear_matmul, "QLinearAdd": qlinear_add, "QLinearMul": qlinear_mul,
       "QLinearSoftmax": qlinear_softmax}

# last: the handlers use sparsekit.convert.onnx's helpers at call time, and that
# module registers OPS when it is imported (either module may be imported first)
from sparsekit.convert import onnx as O  # noqa: E402
