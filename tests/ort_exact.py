"""ONNX Runtime as an exact int8 reference.

On x86 CPUs without AVX-512 VNNI (AVX2), ORT multiplies u8 activations by s8
weights with vpmaddubsw, which saturates each pair of products to int16: a
file's MatMulInteger / QLinearMatMul / QLinearConv results are then off where
two large products meet (benchmarks/RESULTS.md, "ONNX Runtime's u8 x s8
MatMulInteger saturates on AVX2").
sparsekit is exact there, so the tests compare it with ORT running the same
file with each s8 weight stored as u8 = w + 128 and its zero point + 128: the
same integers, which ORT's u8 x u8 kernels multiply without saturating. On a
VNNI CPU both forms give ORT's usual results.
"""
import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

# op type -> (index of the weight input, index of its zero point input)
_WEIGHT_INPUTS = {"MatMulInteger": (1, 3), "ConvInteger": (1, 3), "QLinearMatMul": (3, 5),
                  "QLinearConv": (3, 5), "QGemm": (3, 5), "DequantizeLinear": (0, 2)}


def _s8_activations(node, inits):
    """The node multiplies s8 activations (its a_zero_point is int8): ORT has
    no s8 x u8 kernel, and s8 x s8 it runs as is."""
    if node.op_type == "DequantizeLinear" or len(node.input) <= 2 or not node.input[2]:
        return False
    zp = inits.get(node.input[2])
    return zp is not None and zp.data_type == onnx.TensorProto.INT8


def u8_weights(model):
    """`model` (a ModelProto, changed in place and returned) with every s8
    weight initializer of the ops above shifted to u8 with its zero point."""
    inits = {i.name: i for i in model.graph.initializer}
    added, replaced = [], set()
    for node in model.graph.node:
        at = _WEIGHT_INPUTS.get(node.op_type)
        if at is None or len(node.input) <= at[0] or node.input[at[0]] not in inits:
            continue
        wi, zi = at
        w = numpy_helper.to_array(inits[node.input[wi]])
        if w.dtype != np.int8 or _s8_activations(node, inits):
            continue
        has_zp = len(node.input) > zi and node.input[zi]
        zp = numpy_helper.to_array(inits[node.input[zi]]) if has_zp else np.zeros((), np.int8)
        name = f"{node.name or node.output[0]}_u8"
        added.append(numpy_helper.from_array((w.astype(np.int16) + 128).astype(np.uint8),
                                             name + "_w"))
        added.append(numpy_helper.from_array((zp.astype(np.int16) + 128).astype(np.uint8),
                                             name + "_zp"))
        replaced.add(node.input[wi])
        if has_zp:
            replaced.add(node.input[zi])
        while len(node.input) <= zi:
            node.input.append("")
        node.input[wi], node.input[zi] = name + "_w", name + "_zp"
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name not in replaced or i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep + added)
    return model


def session(path_or_model, options=None):
    """An ORT CPU session of the file (path or ModelProto) with u8 weights."""
    model = onnx.load(path_or_model) if isinstance(path_or_model, str) else path_or_model
    model = u8_weights(onnx.ModelProto.FromString(model.SerializeToString()))
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])
