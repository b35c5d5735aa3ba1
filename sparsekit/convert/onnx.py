"""ONNX -> sparsekit.runtime.Model.

The graph is walked once in topological order. Every ONNX value becomes one of

    Const     an initializer or something folded from them (int8 weights keep
              their q and scale when they came through DequantizeLinear)
    Tensor    a runtime tensor: float32 for what the weight layers compute (a
              quantized ONNX tensor, uint8/int8 after QuantizeLinear or
              QLinear*, is held as its dequantized float value, which
              FakeQuantize layers keep on the same grid); the ONNX dtype
              (int64, bool ...) for integer graph inputs and NumPy ops
    markers   DynamicQuantizeLinear's scale/zero point, integer accumulators
              (MatMulInteger/ConvInteger -> Cast -> Mul by scale) on their way
              to one int8 Linear / Conv2d

and each compute node becomes runtime layers: MatMul/Gemm/Conv with a
constant weight (fp32: a sparse format when sparse, else dense; or int8),
QDQ int8 weights, MatMulInteger / ConvInteger with DynamicQuantizeLinear
(their input quantized per tensor, as ONNX Runtime does:
runtime.tensor_quant), QLinearMatMul, QLinearConv, QGemm, LayerNormalization,
Softmax, GELU, pooling. Bias adds are folded into the layer before them, a
ReLU into its kernel.

Every other op in runtime.array_ops.FUNCS runs as NumPy (onnx_generic):
folded at load time when its inputs are constants, else an ArrayOp node that
works on any dtype. That covers what torch.onnx.export writes for a
transformer with dynamic axes: Shape, Gather (embeddings too), Unsqueeze,
Squeeze, Concat, Slice, Reshape with a computed shape, Expand, Where, Equal
and the other comparisons, And/Or/Not, IsNaN, Cast (bool, int64 ...),
ConstantOfShape, Range, Sub, Div, Pow, Sqrt, Erf, Exp, ReduceMean/Sum/Max,
MatMul of two activations, Split, Tile, Clip ...
Anything else raises ValueError naming the op and the node.
"""
import os

import numpy as np
import onnx
from onnx import numpy_helper

from sparsekit import _dense_f32
from sparsekit.convert.onnx_attention import OPS as _ATTENTION_OPS, fuse_attention
from sparsekit.convert.onnx_fuse import fuse_erf_gelu
from sparsekit.convert.onnx_qkv import fuse_qkv_attention
from sparsekit.convert.onnx_generic import generic, generic_ops, inferred_dtypes, np_dtype
from sparsekit.convert.onnx_shapes import cache_shapes
from sparsekit.convert.onnx_values import Const, DynParam, IntAcc, Tensor
from sparsekit.runtime import layers as L
from sparsekit.runtime.array_ops import FUNCS
from sparsekit.runtime import weights as W
from sparsekit.runtime.model import Model
from sparsekit.runtime.tensor_quant import TensorQuantConv2d, TensorQuantLinear


class _Builder:
    def __init__(self, min_sparsity, quantize, m=None):
        self.m = m  # rows per MatMul / Gemm call for sparsekit.pack (None: its default)
        self.nodes = []
        self.vals = {}
        self.uses = {}
        self.count = 0
        self.min_sparsity = min_sparsity
        self.quantize = quantize
        self.producer = {}  # runtime tensor name -> index in self.nodes
        self.report = W.LayerReport()
        self.dtypes = {}  # ONNX value name -> dtype from ONNX type inference
        self.opset = 13  # the default ONNX domain's opset version

    def emit(self, layer, ins, name=None):
        name = name or f"v{self.count}"
        self.count += 1
        self.producer[name] = len(self.nodes)
        self.nodes.append((layer, list(ins), name))
        return Tensor(name)

    # -- weights --------------------------------------------------------------
    def weight_from_const(self, c, transpose, what, module, conv=False):
        """(format, reason) for a weight const; transpose: stored [K, N]; 4-D
        conv weights go to the runtime's (kh, kw, in) column order (a conv's
        rows per call are output pixels: it keeps pack's default M)."""
        if c.q is not None and c.q.dtype == np.int8 and _zero_zp(c):
            q = c.q.T if transpose else _rows(c.q)
            out_axis = 1 if transpose else 0
            if np.size(c.scale) == 1 or c.axis == out_axis:
                fmt, why = W.pack_int8(np.ascontiguousarray(q), c.scale, self.min_sparsity)
                self.report.append(W.report_row(what, module, fmt, why))
                return fmt
        w = c.value.astype(np.float32)
        w = w.T if transpose else _rows(w)
        quant = "dynamic" if c.q is not None or self.quantize == "dynamic" else None
        fmt, why = W.pack_float(np.ascontiguousarray(w), quant, self.min_sparsity,
                                m=None if conv else self.m)
        if isinstance(fmt, np.ndarray) and not conv and _dense_f32.wanted():
            fmt = _dense_f32.PackedDenseMatrix(fmt)  # BLAS repacks it on every call
            why += ", packed once for sparsekit's fp32 GEMM"
        self.report.append(W.report_row(what, module, fmt, why))
        return fmt


def _rows(w):
    return L.conv_weight_hwc(w) if w.ndim == 4 else w.reshape(w.shape[0], -1)


def _zero_zp(c):
    return c.zp is None or not np.any(c.zp)


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _scalar(v):
    return float(np.asarray(v).reshape(-1)[0])


def _conv_geometry(attrs, kshape, name):
    if attrs.get("group", 1) != 1:
        raise ValueError(f"node {name!r}: Conv group={attrs['group']} is not supported")
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    kh, kw = kshape
    strides = attrs.get("strides", [1, 1])
    dil = attrs.get("dilations", [1, 1])
    if auto in ("NOTSET", "VALID"):
        p = attrs.get("pads", [0, 0, 0, 0]) if auto == "NOTSET" else [0, 0, 0, 0]
        pads = (p[0], p[2], p[1], p[3])  # ONNX: begins then ends
    else:
        if any(s != 1 for s in strides):
            raise ValueError(f"node {name!r}: auto_pad={auto} with stride > 1 is not supported")
        tot = [d * (k - 1) for k, d in zip((kh, kw), dil)]
        lo = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in tot]
        pads = (lo[0], tot[0] - lo[0], lo[1], tot[1] - lo[1])
    return dict(kernel_size=(kh, kw), stride=strides, padding=pads, dilation=dil)


def _read_model(path_or_model):
    """The ModelProto of a ModelProto, serialized bytes, a path or a binary
    file object; anything protobuf cannot parse is a ValueError."""
    from google.protobuf.message import DecodeError

    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    what = "bytes"
    try:
        if isinstance(path_or_model, (bytes, bytearray)):
            return onnx.load_from_string(bytes(path_or_model))
        if isinstance(path_or_model, (str, os.PathLike)):
            what = os.fspath(path_or_model)
        elif not hasattr(path_or_model, "read"):  # an int would be taken as a file descriptor
            raise TypeError("path_or_model: expected a path, bytes, a binary file or an "
                            f"onnx.ModelProto, got {type(path_or_model).__name__}")
        else:
            what = getattr(path_or_model, "name", "file object")
        return onnx.load(path_or_model)
    except DecodeError as e:
        raise ValueError(f"path_or_model: {what} is not a valid ONNX model ({e})") from None


def load(path_or_model, quantize=None, min_sparsity=None, m=None):
    """A sparsekit.runtime.Model running the ONNX model (a path, bytes, a
    binary file or a ModelProto). Float MatMul/Gemm/Conv weights become a
    sparse format when sparse enough, or, with quantize="dynamic", int8;
    int8 weights (QDQ, QOperator, dynamic quantization) are read as int8 as
    they are (ORT quantize_dynamic files: each MatMulInteger's / ConvInteger's
    input is quantized per tensor, as the file asks; ORT quantize_static
    files, transformers too: each MatMul's input with the file's static
    scale and zero point, see sparsekit.convert.onnx_static). Transformer exports
    (torch.onnx.export of a BERT with dynamic axes) load too: shape
    arithmetic, masks and the elementwise ops run as NumPy on int64 / bool /
    float32 arrays (see sparsekit.convert.onnx for the list of ops); integer
    inputs such as input_ids may be given as int32, int64 or lists.
    quantize: None or "dynamic" ("int8", sparsekit.pack's spelling,
    means the same). min_sparsity: None (the default:
    sparsekit.pack's measured cost model decides, as in
    sparsekit.torch.accelerate) or a fraction of zeros from which a sparse
    format is used. m: about how many rows each MatMul / Gemm gets per call
    (None: sparsekit.pack's default, 128); m=1 picks SlicedEllMatrix for
    sparse fp32 weights where pack predicts it fastest, m >= 2 a CSRMatrix
    with its shared-column layout at 65-83% sparsity on AVX-512 where pack
    predicts that (see sparsekit.torch.accelerate). The returned model's
    `.report` lists per weight layer its node name, op type, format chosen and why
    (dict rows "name", "module", "chosen", "reason", as sparsekit.torch.report;
    print it for a table).
    Raises ValueError for an unsupported op (naming the node and listing the
    supported ones), a malformed node or file, or a bad quantize /
    min_sparsity / m; TypeError for another kind of path_or_model, a
    non-number min_sparsity or a non-int m."""
    quantize = W.check_quantize(quantize)
    min_sparsity = W.check_min_sparsity(min_sparsity)
    rows = W.check_m(m)
    model = _read_model(path_or_model)
    g = model.graph
    b = _Builder(min_sparsity, quantize, rows)
    for init in g.initializer:
        b.vals[init.name] = Const(numpy_helper.to_array(init))
    b.dtypes = inferred_dtypes(model)
    b.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    model = fuse_erf_gelu(model)  # after inference: Gelu is an opset-20 op
    model = fuse_attention(model, b.dtypes)  # q . k, mask, Softmax, . v: one kernel call
    model = _static.fuse_qdq_add(model)  # QDQ Adds ORT runs as MLAS QLinearAdd
    g = model.graph
    inputs = [i for i in g.input if i.name not in b.vals]
    for i in inputs:
        b.vals[i.name] = _graph_input(b, i)
    inputs = [i.name for i in inputs]
    int_inputs = [b.vals[i].name for i in inputs if b.vals[i].name != i]  # their casts
    for node in g.node:
        for i in node.input:
            b.uses[i] = b.uses.get(i, 0) + 1
    for o in g.output:
        b.uses[o.name] = b.uses.get(o.name, 0) + 1
    for node in g.node:
        handler = _OPS.get(node.op_type)
        if handler is None:
            raise ValueError(f"node {node.name or node.output[0]!r}: ONNX op "
                             f"{node.op_type!r} is not supported by sparsekit.onnx "
                             f"(supported: {', '.join(sorted(_OPS))})")
        ins = [b.vals.get(i) if i else None for i in node.input]
        for i, v in zip(node.input, ins):
            if i and v is None:
                raise ValueError(f"node {node.name!r}: input {i!r} is not available")
        try:
            outs = handler(b, node, ins, _attrs(node))
        except (AttributeError, IndexError, KeyError) as e:  # malformed node
            raise ValueError(f"node {node.name or node.output[0]!r} ({node.op_type}): "
                             f"unexpected inputs or attributes ({type(e).__name__}: {e})") \
                from None
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        for name, v in zip(node.output, outs):
            b.vals[name] = v
    outputs = []
    for o in g.output:
        v = b.vals[o.name]
        if not isinstance(v, Tensor):
            raise ValueError(f"output {o.name!r}: is not a computed tensor "
                             f"({type(v).__name__}); constant outputs are not supported")
        outputs.append(v.name)
    nodes = _static.drop_requantization(_static.fold_lookup_tables(b.nodes, outputs), outputs)
    nodes = _static.fuse_bias_requantize(nodes, outputs)
    nodes = _static.fold_into_requantize(_static.fuse_quant_layernorm(nodes, outputs), outputs)
    nodes = _static.fuse_quant_softmax(nodes, outputs)
    nodes = fuse_qkv_attention(nodes, outputs)  # q, k, v projections: one GEMM
    # shape arithmetic: computed once per distinct tuple of input shapes (onnx_shapes)
    # (the attention mask too: computed once per distinct integer input it reads)
    m = Model.graph(cache_shapes(nodes, outputs, by_value=int_inputs), inputs, outputs)
    m.report = b.report
    return m


# ---- helpers -----------------------------------------------------------------

def _graph_input(b, vi):
    """A float input as it is; an integer / bool one (token ids, masks) cast
    to its declared dtype first, so callers may pass int32 or lists."""
    t = vi.type.tensor_type
    dt = np_dtype(t.elem_type) if vi.type.HasField("tensor_type") and t.elem_type else None
    if dt is None or dt.kind == "f":
        return Tensor(vi.name)
    from sparsekit.runtime.array_ops import ArrayOp

    out = b.emit(ArrayOp("Cast", {"to": dt.name}), [vi.name], name=vi.name + ":" + dt.name)
    out.dtype = dt
    return out


def _all_float(ins):
    """Every runtime tensor input is one the float layers compute (float32); an
    integer, bool or float64 one goes to ArrayOp, in its own dtype (so float64
    shape arithmetic stays exact, and cacheable: onnx_shapes)."""
    return all(not isinstance(v, Tensor) or v.is_float and v.dtype != np.float64 for v in ins)


def _need_tensor(v, node, what="input"):
    if not isinstance(v, Tensor):
        raise ValueError(f"node {node.name!r} ({node.op_type}): {what} must be a computed "
                         f"tensor, got {type(v).__name__}")
    return v


def _need_const(v, node, what):
    if not isinstance(v, Const):
        raise ValueError(f"node {node.name!r} ({node.op_type}): {what} must be a constant "
                         "initializer")
    return v.value


def _fold_bias(b, t, bias, onnx_name):
    """Add a const bias to t; folded into the Linear/Conv that made t if it can
    (t's ONNX value has no other consumer)."""
    bias = np.asarray(bias, np.float32)
    idx = b.producer.get(t.name)
    if idx is not None and b.uses.get(onnx_name, 0) <= 1:
        layer = b.nodes[idx][0]
        if isinstance(layer, (L.Linear, L.Conv2d)) and layer.activation is None:
            n = layer.weight.shape[0]
            vec = None
            if isinstance(layer, L.Linear) and bias.size == n and bias.shape[-1:] in ((n,),):
                vec = bias.reshape(n)
            elif isinstance(layer, L.Conv2d) and bias.size == n and bias.ndim in (1, 3, 4) and \
                    (bias.ndim == 1 or bias.shape[-3] == n):
                vec = bias.reshape(n)
            if vec is not None:
                layer.bias = vec.copy() if layer.bias is None else layer.bias + vec
                return t
    return b.emit(L.AddConst(bias), [t.name])


def _static_input(fmt, x):
    """An int8 weight reading a quantized input runs on exactly its integers
    (static per-tensor input quantization) when the format supports it; an
    int8 input as the u8 codes q + 128 with zero point zp + 128 (the same
    values: the kernels' u8 x s8 products give the same sums)."""
    if isinstance(x.quant, tuple) and np.isfinite(x.quant[0]) and \
            hasattr(fmt, "with_static_input"):
        return fmt.with_static_input(x.quant[0], x.quant[1] + (128 if x.quant[2] else 0))
    return fmt


def _linear(b, node, x, wconst, transpose, bias=None, what=None):
    fmt = b.weight_from_const(wconst, transpose, what or node.name or node.output[0],
                              node.op_type)
    return b.emit(L.RowsLinear(_static_input(fmt, x), bias), [x.name])


def _conv(b, node, x, wconst, attrs, bias=None, per_tensor=False):
    """per_tensor: the input quantized per tensor per call when the weight is
    int8 (ConvInteger after DynamicQuantizeLinear, as the file asks)."""
    w = wconst.value
    geo = _conv_geometry(attrs, w.shape[2:], node.name)
    fmt = b.weight_from_const(wconst, False, node.name or node.output[0], node.op_type,
                              conv=True)
    cls = L.Conv2d
    if per_tensor and hasattr(fmt, "with_static_input"):
        cls = TensorQuantConv2d
        _per_tensor_report(b)
    return b.emit(cls(_static_input(fmt, x), bias, in_channels=w.shape[1], **geo), [x.name])


def _fake_quant(b, t, scale, zp):
    zp = np.asarray(zp)
    signed = zp.dtype == np.int8
    layer = L.FakeQuantize(_scalar(scale), int(zp.reshape(-1)[0]) if zp.size else 0, signed)
    if t.quant == (layer.scale, layer.zero_point, signed):
        return t  # already on this grid (e.g. MaxPool between Q/DQ pairs)
    out = b.emit(layer, [t.name])
    out.quant = (layer.scale, layer.zero_point, signed)
    return out


def _with_int8(c, q, scale, zp, axis):
    c.q, c.scale, c.zp, c.axis = q, np.asarray(scale, np.float32), np.asarray(zp), axis
    return c


# ---- op handlers ---------------------------------------------------------------

def _matmul(b, node, ins, a):
    x, w = ins
    if isinstance(x, Tensor) and x.is_float and isinstance(w, Const) and w.value.ndim == 2 \
            and w.value.dtype.kind == "f":
        return _linear(b, node, x, w, transpose=True)
    return generic(b, node, ins, a)  # two activations (attention), or constants


def _gemm(b, node, ins, a):
    x, w = ins[0], ins[1]
    c = ins[2] if len(ins) > 2 else None
    _need_tensor(x, node)
    _need_const(w, node, "B")
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        raise ValueError(f"node {node.name!r}: Gemm with transA/alpha/beta is not supported")
    bias = None
    if c is not None:
        bias = np.broadcast_to(_need_const(c, node, "C").astype(np.float32),
                               (w.value.shape[0 if a.get("transB", 0) else 1],)).copy()
    fmt = b.weight_from_const(w, not a.get("transB", 0), node.name, node.op_type)
    return b.emit(L.Linear(_static_input(fmt, x), bias), [x.name])


def _conv_op(b, node, ins, a):
    x, w = _need_tensor(ins[0], node), ins[1]
    _need_const(w, node, "W")
    if w.value.ndim != 4:
        raise ValueError(f"node {node.name!r}: only 2-D convolution is supported")
    bias = _need_const(ins[2], node, "B").astype(np.float32) \
        if len(ins) > 2 and ins[2] is not None else None
    return _conv(b, node, x, w, a, bias)


def _add(b, node, ins, a):
    x, y = ins
    xn = node.input[0]
    if not _all_float(ins) or isinstance(x, Const) and isinstance(y, Const) or \
            any(isinstance(v, Const) and v.value.dtype.kind != "f" for v in ins):
        return generic(b, node, ins, a)
    if isinstance(x, Const):
        x, y, xn = y, x, node.input[1]
    if isinstance(x, Tensor) and isinstance(y, Const):
        return _fold_bias(b, x, y.value, xn)
    return b.emit(L.Add(), [_need_tensor(x, node).name, _need_tensor(y, node).name])


_MUL_ORDER = {IntAcc: 0, Tensor: 1, DynParam: 2, Const: 3}


def _mul(b, node, ins, a):
    x, y = sorted(ins, key=lambda v: _MUL_ORDER.get(type(v), 9))
    if not _all_float(ins) or isinstance(x, Const) and isinstance(y, Const) or \
            isinstance(x, Tensor) and isinstance(y, Tensor):
        return generic(b, node, ins, a)
    if isinstance(x, DynParam) and isinstance(y, Const):  # x_scale * w_scale
        return DynParam(x.source, wscale=np.asarray(y.value, np.float32))
    if isinstance(x, IntAcc) and isinstance(y, DynParam) and y.wscale is not None:
        return _finish_integer(b, node, x.spec, y.wscale)
    if isinstance(x, Tensor) and isinstance(y, Const):
        return b.emit(L.MulConst(y.value.astype(np.float32)), [x.name])
    raise ValueError(f"node {node.name!r}: Mul of {type(x).__name__} and {type(y).__name__} "
                     "is not supported")


def _dynamic_quantize(b, node, ins, a):
    x = _need_tensor(ins[0], node)
    return [Tensor(x.name, quant="dynamic"), DynParam(x.name), DynParam(x.name)]


def _integer_op(b, node, ins, a, conv):
    x, w = ins[0], ins[1]
    if not (isinstance(x, Tensor) and x.quant == "dynamic"):
        raise ValueError(f"node {node.name!r}: {node.op_type} is supported only on the output "
                         "of DynamicQuantizeLinear (ORT dynamic quantization)")
    q = _need_const(w, node, "B")
    wzp = ins[3].value if len(ins) > 3 and ins[3] is not None else np.zeros(1, q.dtype)
    return IntAcc({"x": x.name, "q": q, "wzp": np.asarray(wzp), "conv": conv, "node": node,
                   "attrs": a})


def _per_tensor_report(b):
    row = b.report[-1]
    row["reason"] = (row["reason"].replace(", per-row dynamic activations", "") +
                     ", per-tensor dynamic activations as in the file")


def _finish_integer(b, node, spec, scale):
    """IntAcc * (x_scale * w_scale): the float result of one int8 layer."""
    q, conv, onode = spec["q"], spec["conv"], spec["node"]
    # scale = x_scale * w_scale; our kernels quantize x themselves, so only w_scale matters
    wconst = Const(None)
    deq_scale = scale.reshape(-1)
    if conv:
        shape = (-1, 1, 1, 1)
        axis = 0
    else:
        shape = (1, -1)
        axis = 1
    wconst.value = ((q.astype(np.float32) - spec["wzp"].reshape(shape).astype(np.float32))
                    * deq_scale.reshape(shape))
    _with_int8(wconst, q, deq_scale, spec["wzp"], axis if deq_scale.size > 1 else None)
    x = Tensor(spec["x"])
    if conv:
        return _conv(b, onode, x, wconst, spec["attrs"], per_tensor=True)
    fmt = b.weight_from_const(wconst, True, onode.name or onode.output[0], onode.op_type)
    if hasattr(fmt, "with_static_input"):  # per-tensor input, as the file asks
        _per_tensor_report(b)
        return b.emit(TensorQuantLinear(fmt), [x.name])
    return b.emit(L.Linear(fmt), [x.name])


def _cast(b, node, ins, a):
    v = ins[0]
    if isinstance(v, IntAcc):
        return v
    to = np_dtype(a["to"])
    if isinstance(v, Tensor) and v.is_float and to.kind == "f" and \
            np.float64 not in (v.dtype, to):
        return v  # the runtime computes in float32 (float64: an ArrayOp, as ONNX says)
    return generic(b, node, ins, a)


def _quantize_linear(b, node, ins, a):
    x, s = ins[0], ins[1]
    zp = ins[2].value if len(ins) > 2 and ins[2] is not None else np.zeros((), np.uint8)
    s = _need_const(s, node, "y_scale")
    if isinstance(x, Const):
        v = np.asarray(x.value, np.float32)
        info = np.iinfo(zp.dtype)
        ax = a.get("axis", 1)
        shp = [1] * v.ndim
        if np.size(s) > 1:
            shp[ax] = -1
        q = np.clip(np.rint(v / s.reshape(shp)) + zp.reshape(shp if zp.size > 1 else ()),
                    info.min, info.max).astype(zp.dtype)
        return Const(q)
    _static.warn_infinite_scale(node, s)
    if np.size(s) != 1:
        raise ValueError(f"node {node.name!r}: per-axis QuantizeLinear of activations "
                         "is not supported")
    return _fake_quant(b, _need_tensor(x, node), s, zp)


def _dequantize_linear(b, node, ins, a):
    x, s = ins[0], ins[1]
    zp = ins[2].value if len(ins) > 2 and ins[2] is not None else None
    s = _need_const(s, node, "x_scale")
    if isinstance(x, Tensor) and not x.is_float:  # e.g. Gather from a uint8 table
        return generic(b, node, ins, a)
    if isinstance(x, Tensor):  # runtime float tensors already hold the dequantized value
        return Tensor(x.name, x.quant if isinstance(x.quant, tuple) else None)
    q = _need_const(x, node, "x")
    ax = a.get("axis", 1)
    shp = [1] * q.ndim
    if np.size(s) > 1:
        shp[ax if ax >= 0 else ax + q.ndim] = -1
    zf = 0 if zp is None else zp.astype(np.float32).reshape(shp if np.size(zp) > 1 else ())
    val = (q.astype(np.float32) - zf) * s.astype(np.float32).reshape(shp)
    c = Const(val)
    if q.dtype == np.int8:
        _with_int8(c, q, s, zp if zp is not None else np.zeros(1, np.int8),
                   (ax if ax >= 0 else ax + q.ndim) if np.size(s) > 1 else None)
    return c


def _qlinear_out(b, t, ins, si, zi):
    if len(ins) > si and ins[si] is not None:
        zp = ins[zi].value if len(ins) > zi and ins[zi] is not None else np.zeros((), np.uint8)
        return _fake_quant(b, t, ins[si].value, zp)
    return t


def _qweight(node, ins, wi):
    q = _need_const(ins[wi], node, "weight")
    s = _need_const(ins[wi + 1], node, "weight scale")
    zp = ins[wi + 2].value if len(ins) > wi + 2 and ins[wi + 2] is not None else \
        np.zeros(1, q.dtype)
    return q, s, zp


def _qgemm(b, node, ins, a):  # com.microsoft QGemm (ORT static quantization of Gemm)
    x = _need_tensor(ins[0], node)
    q, s, zp = _qweight(node, ins, 3)
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0:
        raise ValueError(f"node {node.name!r}: QGemm with transA/alpha is not supported")
    trans_b = a.get("transB", 0)
    c = _dequantize_linear(b, node, [Const(q), Const(s), Const(zp)],
                           {"axis": 0 if trans_b else 1})
    bias = None
    if len(ins) > 6 and ins[6] is not None:  # int32 bias at scale a_scale * b_scale
        bias = (ins[6].value.astype(np.float32) * _scalar(ins[1].value) *
                s.astype(np.float32)).reshape(-1)
    t = _linear(b, node, x, c, transpose=not trans_b, bias=bias)
    return _qlinear_out(b, t, ins, 7, 8)


def _qlinear_conv(b, node, ins, a):
    x = _need_tensor(ins[0], node)
    q, s, zp = _qweight(node, ins, 3)
    c = _dequantize_linear(b, node, [Const(q), Const(s), Const(zp)], {"axis": 0})
    bias = None
    if len(ins) > 8 and ins[8] is not None:
        bias = (ins[8].value.astype(np.float32) * _scalar(ins[1].value) *
                s.astype(np.float32)).reshape(-1)
    t = _conv(b, node, x, c, a, bias)
    return _qlinear_out(b, t, ins, 6, 7)


def _qlinear_avgpool(b, node, ins, a):  # com.microsoft, ORT static quantization
    x = _need_tensor(ins[0], node)
    t = b.emit(_pool(L.AvgPool2d)(a, node), [x.name])
    return _qlinear_out(b, t, ins, 3, 4)


def _qlinear_global_avgpool(b, node, ins, a):
    x = _need_tensor(ins[0], node)
    if a.get("channels_last", 0):
        raise ValueError(f"node {node.name!r}: channels_last QLinearGlobalAveragePool")
    t = b.emit(L.GlobalAvgPool2d(True), [x.name])
    return _qlinear_out(b, t, ins, 3, 4)


def _simple(layer_fn):
    def h(b, node, ins, a):
        if node.op_type in FUNCS and not (isinstance(ins[0], Tensor) and ins[0].is_float):
            return generic(b, node, ins, a)  # constants or integer tensors
        x = _need_tensor(ins[0], node)
        out = b.emit(layer_fn(a, node), [x.name])
        out.quant = x.quant if layer_fn in _QUANT_PRESERVING else None
        return out
    return h


def _pool(cls):
    def make(a, node):
        if a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1, 1])):
            raise ValueError(f"node {node.name!r}: pooling with ceil_mode/dilations "
                             "is not supported")
        if cls is L.AvgPool2d and not a.get("count_include_pad", 0) and any(a.get("pads", [])):
            raise ValueError(f"node {node.name!r}: AveragePool with padding needs "
                             "count_include_pad=1")
        p = a.get("pads", [0, 0, 0, 0])
        return cls(a["kernel_shape"], a.get("strides", a["kernel_shape"]),
                   (p[0], p[2], p[1], p[3]))
    return make


def _flatten(a, node):
    if a.get("axis", 1) != 1:
        raise ValueError(f"node {node.name!r}: Flatten axis != 1 is not supported")
    return L.Flatten(1)


def _reshape(b, node, ins, a):
    if not (isinstance(ins[0], Tensor) and ins[0].is_float and isinstance(ins[1], Const)):
        return generic(b, node, ins, a)  # a computed shape, integer data, or constants
    shape = ins[1].value
    x = ins[0]
    out = b.emit(L.Reshape([int(s) for s in shape]), [x.name])
    out.quant = x.quant
    return out


def _transpose(b, node, ins, a):
    # ArrayOp: a view (the runtime's Transpose copies), which the next MatMul,
    # Mul or Reshape reads or copies once anyway (attention's head split / merge)
    return generic(b, node, ins, a)


def _layernorm(b, node, ins, a):
    x = _need_tensor(ins[0], node)
    if a.get("axis", -1) != -1:
        raise ValueError(f"node {node.name!r}: LayerNormalization only over the last axis")
    gamma = _need_const(ins[1], node, "scale")
    beta = ins[2].value if len(ins) > 2 and ins[2] is not None else None
    eps = a.get("epsilon", 1e-5)
    idx = b.producer.get(x.name)
    if idx is not None and b.uses.get(node.input[0], 0) <= 1 and x.quant is None and \
            type(b.nodes[idx][0]) is L.Add:  # residual add + LayerNorm: one kernel pass
        _, add_ins, name = b.nodes[idx]
        b.nodes[idx] = (L.BroadcastAddLayerNorm(gamma, beta, eps), add_ins, name)
        return Tensor(name)
    return b.emit(L.LayerNorm(gamma, beta, eps), [x.name])


def _constant(b, node, ins, a):
    if "value" in a:
        return Const(numpy_helper.to_array(a["value"]))
    for k, dt in (("value_int", np.int64), ("value_ints", np.int64),
                  ("value_float", np.float32), ("value_floats", np.float32)):
        if k in a:
            return Const(np.asarray(a[k], dt))
    raise ValueError(f"node {node.name!r}: Constant without a tensor or number value")


def _softmax(b, node, ins, a):
    """Before opset 13 Softmax runs over the input coerced to 2-D at `axis`
    (default 1): all the axes from there on as one."""
    legacy = b.opset < 13
    layer = L.Softmax(a.get("axis", 1 if legacy else -1), flatten=legacy)
    return _simple(lambda a, node: layer)(b, node, ins, a)


def _gelu(a, node):
    approx = a.get("approximate", b"none")
    return L.GELU(approx.decode() if isinstance(approx, bytes) else approx)


def _fuse_activation(b, node, x, act, kinds):
    """Tensor of x's Linear/Conv with `act` in its epilogue, or None when x has
    other readers or another producer."""
    idx = b.producer.get(x.name)
    if idx is not None and b.uses.get(node.input[0], 0) <= 1 and x.quant is None:
        layer = b.nodes[idx][0]
        if isinstance(layer, kinds) and layer.activation is None:
            layer.activation = act
            return Tensor(x.name)
    return None


def _relu(b, node, ins, a):
    """ReLU, fused into the Linear/Conv before it when nothing else reads its output."""
    if not (isinstance(ins[0], Tensor) and ins[0].is_float):
        return generic(b, node, ins, a)
    x = _need_tensor(ins[0], node)
    return _fuse_activation(b, node, x, "relu", (L.Linear, L.Conv2d)) or \
        b.emit(L.ReLU(), [x.name])


def _gelu_op(b, node, ins, a):
    """GELU (exact erf form), fused into the Linear before it like ReLU."""
    x = _need_tensor(ins[0], node)
    if not x.is_float:
        raise ValueError(f"node {node.name!r}: Gelu of a {x.dtype} tensor")
    layer = _gelu(a, node)
    if layer.approximate == "none":
        fused = _fuse_activation(b, node, x, "gelu", (L.Linear,))
        if fused is not None:
            return fused
    return b.emit(layer, [x.name])


def _identity(b, node, ins, a):
    return ins[0]


_QUANT_PRESERVING = set()
_maxpool = _pool(L.MaxPool2d)
_QUANT_PRESERVING.add(_maxpool)
_flat = _flatten
_QUANT_PRESERVING.add(_flat)

_OPS = {
    **generic_ops(),
    "MatMul": _matmul, "Gemm": _gemm, "Conv": _conv_op, "Add": _add, "Mul": _mul,
    "Relu": _relu, "Sigmoid": _simple(lambda a, n: L.Sigmoid()),
    "Tanh": _simple(lambda a, n: L.Tanh()), "Gelu": _gelu_op,
    "Softmax": _softmax, "MaxPool": _simple(_maxpool),
    "AveragePool": _simple(_pool(L.AvgPool2d)),
    "GlobalAveragePool": _simple(lambda a, n: L.GlobalAvgPool2d(True)),
    "Flatten": _simple(_flat), "Reshape": _reshape, "Transpose": _transpose,
    "LayerNormalization": _layernorm, "Identity": _identity, "Dropout": _identity,
    "Constant": _constant, "Cast": _cast,
    "QuantizeLinear": _quantize_linear, "DequantizeLinear": _dequantize_linear,
    "DynamicQuantizeLinear": _dynamic_quantize,
    "MatMulInteger": lambda b, n, i, a: _integer_op(b, n, i, a, conv=False),
    "ConvInteger": lambda b, n, i, a: _integer_op(b, n, i, a, conv=True),
    "QLinearAveragePool": _qlinear_avgpool,
    "QLinearGlobalAveragePool": _qlinear_global_avgpool,
    "QLinearConv": _qlinear_conv, "QGemm": _qgemm,
}

# QLinearMatMul / QLinearAdd / QLinearMul / QLinearSoftmax (static QOperator
# transformers): sparsekit.convert.onnx_static
from sparsekit.convert import onnx_static as _static  # noqa: E402

_OPS.update(_static.OPS)
_OPS.update(_ATTENTION_OPS)
