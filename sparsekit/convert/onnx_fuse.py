"""Rewrites of an ONNX graph before sparsekit.convert.onnx walks it.

fuse_erf_gelu: torch.onnx.export writes the exact GELU of a BERT as
x * 0.5 * (1 + erf(x / sqrt 2)) (Div, Erf, Add, Mul, Mul); one Gelu node
instead lets the importer run it in the Linear before it (sparsekit's erf
GELU kernel) rather than as five NumPy passes over the FFN activations.
"""
import onnx
from onnx import helper, numpy_helper


def rebuild(model, replace, drop):
    """A copy of model whose nodes are keyed by their first output (output
    names are unique): replace[key] takes that node's place, nodes keyed in
    drop are left out, the others kept in order."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    for n in model.graph.node:
        key = n.output[0] if n.output else None
        if key in replace:
            out.graph.node.append(replace[key])
        elif key not in drop:
            out.graph.node.append(n)
    return out


def readers_of(graph):
    """value name -> the nodes that read it (once per input slot)."""
    out = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def _consts(graph):
    out = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return out


def _is(consts, name, value):
    v = consts.get(name)
    return v is not None and v.size == 1 and v.dtype.kind == "f" and \
        abs(float(v.reshape(-1)[0]) - value) <= 1e-6 * abs(value)


def _other(node, name):
    """The input of a two-input node that is not `name` (None if both are)."""
    a, b = node.input
    return b if a == name else a if b == name else None


def fuse_erf_gelu(model):
    """A copy of `model` with each erf-GELU chain replaced by one Gelu node
    (the ONNX op of opset 20, run by the importer); `model` if there is none."""
    g = model.graph
    consts = _consts(g)
    uses = {}
    for n in g.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    for o in g.output:
        uses[o.name] = uses.get(o.name, 0) + 1
    by_input = readers_of(g)

    def only_user(name, op):
        users = by_input.get(name, [])
        if uses.get(name) == 1 and len(users) == 1 and users[0].op_type == op:
            return users[0]
        return None

    drop, replace = set(), {}
    for div in g.node:
        if div.op_type == "Div" and len(div.input) == 2 and _is(consts, div.input[1], 2 ** 0.5):
            x = div.input[0]
        elif div.op_type == "Mul" and len(div.input) == 2 and any(
                _is(consts, i, 2 ** -0.5) for i in div.input):
            x = next(i for i in div.input if not _is(consts, i, 2 ** -0.5))
        else:
            continue
        erf = only_user(div.output[0], "Erf")
        add = erf and only_user(erf.output[0], "Add")
        if not add or not _is(consts, _other(add, erf.output[0]) or "", 1.0):
            continue
        mul = only_user(add.output[0], "Mul")
        if not mul or _other(mul, add.output[0]) != x:
            continue
        half = only_user(mul.output[0], "Mul")
        if not half or not _is(consts, _other(half, mul.output[0]) or "", 0.5):
            continue
        chain = [div, erf, add, mul, half]
        drop.update(n.output[0] for n in chain)  # output names are unique: node keys
        replace[half.output[0]] = helper.make_node("Gelu", [x], [half.output[0]],
                                             name=(half.name or half.output[0]) + "/gelu")
    if not replace:
        return model
    return rebuild(model, replace, drop)

