"""Load-time pass over an imported graph: shape arithmetic as ShapeFunctions.

A runtime value is *static* when ArrayOps compute it from constants and the
shapes of runtime tensors only (Shape / Size, then any ArrayOps of static
values): torch.onnx.export's Reshape targets, position ids, the index grids
of the attention mask. Such a value depends on the input shapes and not on
the input data, so a ShapeFunction (sparsekit.runtime.shape_function) keyed
on the shapes it reads computes it once per distinct tuple of shapes.
Everything that reads tensor contents (the attention mask's values, token
ids) is not static and still runs on every call.

    Shape(h) -> Gather -> Unsqueeze -\\
    Shape(h) -> Gather -> Unsqueeze --> Concat --> Reshape(x, .)   (before)
    ShapeFunction(h) -------------------------> Reshape(x, .)      (after)

Identical ArrayOps on the same inputs are merged first (an export repeats
Shape(h) -> Gather for every head split, and the attention mask's Where for
every layer), then each static value read by a non-static node becomes one
ShapeFunction holding the static ops behind it, in their original order; the
other static nodes go, except those a static graph output needs (it stays
uncached: its caller may write into it).
"""
import json

from sparsekit.runtime.array_ops import ArrayOp
from sparsekit.runtime.shape_function import SHAPE_READERS, ShapeFunction


# an op reading a by_value input with a constant of more values than this (a
# lookup of token ids in a vocabulary's embeddings: other ids every call) is
# not cached; BERT's token type table (2 x hidden) is
LOOKUP_MAX = 1024


def _static_names(nodes, by_value=()):
    static, valued = set(), set(by_value)  # valued: depends on a by_value input's contents
    for layer, ins, out in nodes:
        if type(layer) is not ArrayOp:
            continue
        if layer.op in SHAPE_READERS:
            static.add(out)
        elif ins and all(n in static or n in valued for n in ins):
            if any(n in valued for n in ins):
                if any(v.size > LOOKUP_MAX for v in layer.consts.values()):
                    continue
                valued.add(out)
            static.add(out)
    return static


def _signature(op):
    """What makes two ArrayOps compute the same function (a large constant
    compares by identity: an embedding table is not worth hashing)."""
    consts = tuple(sorted((k, v.dtype.str, v.shape, v.tobytes() if v.size <= 256 else id(v))
                          for k, v in op.consts.items()))
    return (op.op, json.dumps(op.attrs, sort_keys=True, default=repr), tuple(op.slots),
            op.output, consts)


def cache_shapes(nodes, outputs, by_value=()):
    """`nodes` (runtime.Model.graph's (layer, inputs, output) list) with its
    static values computed by ShapeFunctions; the same values on every call.
    by_value: names of small integer tensors (the importer's integer graph
    inputs, e.g. attention_mask) whose contents a cached value may depend on
    too, keyed by those contents (ShapeFunction's by_value)."""
    static = _static_names(nodes, by_value)
    keep = set(outputs)
    alias, seen = {}, {}  # output of a duplicate ArrayOp -> the first one's
    by_name = {}
    for i, (layer, ins, out) in enumerate(nodes):
        ins = [alias.get(n, n) for n in ins]
        if type(layer) is ArrayOp:
            key = (_signature(layer), tuple(ins))
            if key in seen and out not in keep:
                alias[out] = seen[key]
                continue
            seen.setdefault(key, out)
        if out in static:
            by_name[out] = (i, layer, ins)
    frontier = {n for layer, ins, out in nodes if out not in static and out not in alias
                for n in (alias.get(m, m) for m in ins) if n in static}
    # a static graph output and what it needs stay plain nodes: the caller gets
    # a fresh array each call, never the cache's (read-only, shared) one
    plain, todo = set(), [o for o in outputs if o in static]
    while todo:
        n = todo.pop()
        if n not in plain:
            plain.add(n)
            todo.extend(m for m in by_name[n][2] if m in static)

    def program(name):
        """The ShapeFunction computing static value `name`, and the tensors it reads."""
        need, todo = set(), [name]
        while todo:
            n = todo.pop()
            if n not in need:
                need.add(n)
                todo.extend(m for m in by_name[n][2] if m in static)
        ops = sorted(need, key=lambda n: by_name[n][0])
        ext = list(dict.fromkeys(m for n in ops for m in by_name[n][2] if m not in static))
        index = {m: k for k, m in enumerate(ext + ops)}
        values = {index[m] for n in ops for m in by_name[n][2]
                  if m not in static and by_name[n][1].op not in SHAPE_READERS}
        return ShapeFunction([(by_name[n][1], [index[m] for m in by_name[n][2]]) for n in ops],
                             len(ext), by_value=values), ext

    shared = {}  # one ShapeFunction (and cache) per distinct program: each layer's
    # Reshape targets are the same ops on another tensor of the same shape, so a
    # new input shape is computed once, not once per layer
    out_nodes = []
    for layer, ins, out in nodes:
        if out in alias:
            continue
        if out in static and out not in plain:
            if out in frontier:
                fn, ext = program(out)
                key = (fn.n_inputs, tuple(fn.by_value),
                       tuple((_signature(op), tuple(refs)) for op, refs in fn.program))
                fn = shared.setdefault(key, fn)
                out_nodes.append((fn, ext, out))
            continue
        out_nodes.append((layer, [alias.get(n, n) for n in ins], out))
    return out_nodes
