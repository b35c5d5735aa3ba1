"""ONNX ops the importer runs as NumPy (sparsekit.runtime.array_ops.ArrayOp).

A node whose inputs are all constants is folded at load time; otherwise it
becomes an ArrayOp in the graph (shape arithmetic on int64, masks, the
elementwise float work of a transformer's attention and GELU). The op's
output dtype comes from ONNX type inference, so int64 / bool tensors stay
integer through the runtime.
"""
import numpy as np
import onnx
from onnx import numpy_helper

from sparsekit.convert.onnx_values import Const, Tensor
from sparsekit.runtime.array_ops import FUNCS, ArrayOp, run

# ops whose first input's values pass through unchanged (a quantized tensor
# stays on its grid, and stays float in the runtime)
_LAYOUT = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Expand", "Slice",
           "Concat", "Identity", "Tile", "Split"}


def np_dtype(elem_type):
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def inferred_dtypes(model):
    """ONNX value name -> NumPy dtype from ONNX shape inference (what it can tell)."""
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is a help, not a requirement  # noqa: BLE001
        pass
    out = {}
    for vi in list(model.graph.value_info) + list(model.graph.output) + \
            list(model.graph.input):
        t = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and t.elem_type:
            try:
                out[vi.name] = np_dtype(t.elem_type)
            except (KeyError, TypeError, ValueError):
                pass
    return out


def clean_attrs(op, attrs):
    """Node attributes as JSON-able values (bytes -> str, tensors -> dicts,
    Cast's `to` -> a NumPy dtype name)."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, onnx.TensorProto):
            arr = numpy_helper.to_array(v)
            v = {"dtype": arr.dtype.name, "shape": list(arr.shape),
                 "values": arr.reshape(-1).tolist()}
        elif isinstance(v, (list, tuple)):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        if op in ("Cast",) and k == "to":
            v = np_dtype(v).name
        out[k] = v
    return out


def _describe(node):
    return node.name or node.output[0]


def generic(b, node, ins, a):
    """Fold the node when all inputs are constants, else emit ArrayOps."""
    op = node.op_type
    attrs = clean_attrs(op, a)
    if all(v is None or isinstance(v, Const) for v in ins):
        outs = run(op, attrs, [None if v is None else v.value for v in ins])
        return [Const(o) for o in outs]
    slots, consts, names = [], {}, []
    for i, v in enumerate(ins):
        if v is None:
            slots.append(None)
        elif isinstance(v, Const):
            key = f"c{len(consts)}"
            consts[key] = v.value
            slots.append(key)
        elif isinstance(v, Tensor):
            if v.quant == "dynamic":
                raise ValueError(f"node {_describe(node)!r} ({op}): reads the uint8 output of "
                                 "DynamicQuantizeLinear, which sparsekit supports only "
                                 "as the input of MatMulInteger / ConvInteger")
            names.append(v.name)
            slots.append("x")
        else:
            raise ValueError(f"node {_describe(node)!r} ({op}): input {node.input[i]!r} is "
                             f"a {type(v).__name__}, which {op} cannot read")
    first = ins[0] if isinstance(ins[0], Tensor) else None
    outs = []
    for k, oname in enumerate(node.output):
        t = b.emit(ArrayOp(op, attrs, slots, consts, output=k), names)
        dt = b.dtypes.get(oname)
        if op in _LAYOUT and first is not None and first.is_float:
            t.quant = first.quant if isinstance(first.quant, tuple) else None
            dt = first.dtype  # the runtime's float view of a quantized tensor
        elif dt is None:
            dt = np.dtype(attrs["to"]) if op == "Cast" else (
                first.dtype if first is not None else np.dtype(np.float32))
        t.dtype = np.dtype(dt)
        outs.append(t)
    return outs


def generic_ops():
    """{op type: handler} for every op ArrayOp runs."""
    return {op: generic for op in FUNCS}
