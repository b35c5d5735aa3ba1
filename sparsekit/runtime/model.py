"""sparsekit.runtime.Model: run a small graph of runtime layers, no framework.

A model is a list of nodes (layer, input names, output name) in execution
order. Model([l1, l2, ...]) chains layers; Model.graph(...) wires residuals:

    m = Model.graph([(Linear(w1), ["x"], "h"), (ReLU(), ["h"], "r"),
                     (Add(), ["r", "x"], "y")], inputs=["x"], outputs=["y"])

Inputs named in `optional` may be left out of a call; the layers reading
them get None (e.g. Embedding's token_type_ids: all type 0, as in Hugging
Face's BertModel).
"""
import copy
import operator

from sparsekit.runtime.layers import Layer


class Model:
    """A graph of runtime layers run with NumPy arrays in and out, no framework.

    ``Model([layer, ...])`` runs the layers in sequence on one input;
    ``Model.graph(nodes, inputs, outputs)`` wires named tensors (residuals).
    ``model(x)`` (or ``model(**{name: x})``) returns the output, or a tuple when
    there are several; `optional_inputs` may be omitted (their layers get None). ``summary()`` lists each node's weight format and size;
    ``sparsekit.save(model, path)`` / ``sparsekit.load(path)`` store it.
    """

    def __init__(self, layers=(), *, inputs=("input",)):
        inputs = list(inputs)
        nodes = []
        prev = inputs[0] if inputs else "input"
        for i, layer in enumerate(layers):
            out = f"t{i}"
            nodes.append((layer, [prev], out))
            prev = out
        self._init(nodes, inputs, [prev])

    @classmethod
    def graph(cls, nodes, inputs, outputs, optional=()):
        m = cls.__new__(cls)
        m._init([(layer, list(ins), out) for layer, ins, out in nodes], list(inputs),
                 list(outputs), list(optional))
        return m

    def _init(self, nodes, inputs, outputs, optional=()):
        if not inputs:
            raise ValueError("inputs: a model needs at least one input")
        for o in optional:
            if o not in inputs:
                raise ValueError(f"optional: {o!r} is not one of the inputs {inputs}")
        known = set(inputs)
        for i, node in enumerate(nodes):
            layer, ins, out = node
            if not isinstance(layer, Layer):
                raise TypeError(f"nodes[{i}]: expected a sparsekit.runtime layer, "
                                f"got {type(layer).__name__}")
            if len(ins) != layer.n_inputs:
                raise ValueError(f"nodes[{i}]: {type(layer).__name__} takes "
                                 f"{layer.n_inputs} input(s), got {len(ins)}")
            missing = [n for n in ins if n not in known]
            if missing:
                raise ValueError(f"nodes[{i}]: input {missing[0]!r} is not produced "
                                 "by an earlier node or a model input")
            known.add(out)
        for o in outputs:
            if o not in known:
                raise ValueError(f"outputs: {o!r} is not produced by any node")
        self.nodes = nodes
        self.inputs = inputs
        self.outputs = outputs
        self.optional_inputs = [n for n in inputs if n in optional]

    @property
    def layers(self):
        return [n[0] for n in self.nodes]

    def __call__(self, *args, **kwargs):
        if len(args) > len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} input(s) {self.inputs}, "
                             f"got {len(args)}")
        env = dict(zip(self.inputs, args))
        twice = sorted(set(env) & set(kwargs))
        if twice:
            raise ValueError(f"input(s) {twice} given by position and by name")
        env.update(kwargs)
        unknown = set(env) - set(self.inputs)
        if unknown:
            raise ValueError(f"unknown input(s) {sorted(unknown)}; expected {self.inputs}")
        missing = [n for n in self.inputs if n not in env and n not in self.optional_inputs]
        if missing:
            raise ValueError(f"expected {len(self.inputs)} input(s) {self.inputs}, missing "
                             f"{missing}" + (f" (optional: {self.optional_inputs})"
                                             if self.optional_inputs else ""))
        for n in self.optional_inputs:
            env.setdefault(n, None)
        for (layer, ins, out), drop in zip(self.nodes, self._drops()):
            env[out] = layer(*[env[n] for n in ins])
            for n in drop:
                env.pop(n, None)
        outs = [env[o] for o in self.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _drops(self):
        """Per node, the input names to let go of after it (their last use),
        so peak memory stays at a few activations. They depend on every
        node's inputs and on the outputs only: worked out once (~10 us per
        call for ~100 nodes) and again when any of those have changed."""
        nodes, outputs = self.nodes, self.outputs
        plan = getattr(self, "_drops_cache", None)
        if plan is not None and plan[0] == outputs and len(plan[1]) == len(nodes) and \
                all(map(operator.eq, plan[1], map(operator.itemgetter(1), nodes))):
            return plan[2]
        last = {}
        for i, (_, ins, _) in enumerate(nodes):
            for n in ins:
                last[n] = i
        keep = set(outputs)
        drops = [tuple(dict.fromkeys(n for n in ins if last[n] == i and n not in keep))
                 for i, (_, ins, _) in enumerate(nodes)]
        self._drops_cache = (list(outputs), [list(n[1]) for n in nodes], drops)
        return drops

    def summary(self):
        """One line per node: layer, weight format and its size."""
        from sparsekit.runtime.weights import describe, nbytes

        lines = []
        for layer, ins, out in self.nodes:
            line = f"{out:>8} = {type(layer).__name__}({', '.join(ins)})"
            if layer.weight is not None:
                line += (f"  weight {layer.weight.shape} {describe(layer.weight)} "
                         f"{nbytes(layer.weight)} B")
            lines.append(line)
        return "\n".join(lines)

    def __repr__(self):
        opt = f", optional_inputs={self.optional_inputs}" if self.optional_inputs else ""
        return (f"Model({len(self.nodes)} nodes, inputs={self.inputs}{opt}, "
                f"outputs={self.outputs})")


def fuse_relu(layers):
    """Fold a ReLU that follows a Linear / Conv2d into its kernel epilogue."""
    out = []
    for layer in layers:
        prev = out[-1] if out else None
        if type(layer).__name__ == "ReLU" and prev is not None and \
                type(prev).__name__ in ("Linear", "Conv2d") and prev.activation is None:
            out[-1] = prev = copy.copy(prev)
            prev.activation = "relu"
            continue
        out.append(layer)
    return out


def node_index(nodes):
    """(readers, made) of a node list (layer, input names, output name), as
    Model.graph takes it: value name -> the indices of the nodes that read it
    (once per input slot), and -> the index of the node that makes it. The
    converters' graph passes use it to find single-reader chains."""
    readers = {}
    for i, (_, ins, _) in enumerate(nodes):
        for n in ins:
            readers.setdefault(n, []).append(i)
    return readers, {out: i for i, (_, _, out) in enumerate(nodes)}
