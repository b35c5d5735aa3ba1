"""ShapeFunction: a value computed from the shapes of its inputs only, kept
per distinct tuple of input shapes.

A transformer exported with dynamic axes recomputes its shape arithmetic on
every call: Shape -> Gather -> Unsqueeze -> Concat for each Reshape's target,
Range / Unsqueeze / comparisons for position ids and mask index grids (~200
NumPy ArrayOps in all-MiniLM-L6-v2, ~1.5 ms per call at batch 1).
sparsekit.convert.onnx_shapes gathers the ArrayOps behind each such value into
one ShapeFunction. A call looks the input shapes up in a small cache and runs
the ops (the same ones, in the same order, so the same value) only for shapes
it has not seen.

The program reads its inputs only through Shape and Size (checked when it is
built, so a file cannot say otherwise): the shapes are the whole cache key.
Inputs listed in by_value may be read by any op; their dtype, shape and
bytes join the key (the importer uses it for the attention mask built from
an integer graph input: the same mask, e.g. all ones at batch 1, is computed
once).
A cached value is shared by every call that hits it, so arrays are cached
read-only (a layer writing into its input fails loudly instead of changing
later calls' results). Lookups are one dict read; a miss computes outside the
lock and inserts under it, evicting the oldest entries (FIFO) beyond
cache_size entries or CACHE_BYTES, so concurrent calls with different shapes
each get their own shapes' value and memory stays bounded.
"""
import threading

import numpy as np

from sparsekit.runtime.array_ops import ArrayOp
from sparsekit.runtime.layers import Layer, register

# ops that read only the shape of an input: the ones a program may apply to
# the ShapeFunction's inputs
SHAPE_READERS = ("Shape", "Size")
CACHE_SIZE = 64  # distinct input-shape tuples kept per ShapeFunction
CACHE_BYTES = 4 << 20  # and at most this many bytes of values (a position-embedding slice
# is [1, T, C] float32), bar the newest
_LOCK = threading.Lock()  # guards cache inserts and evictions (all instances: misses are rare)


def _nbytes(v):
    return v.nbytes if type(v) is np.ndarray else 0


def _value_key(x):
    """What identifies an input read by value: dtype, shape and bytes."""
    x = np.asarray(x)
    return x.dtype.str, x.shape, x.tobytes()


def _frozen(v):
    if type(v) is np.ndarray:
        v.flags.writeable = False
    return v


@register
class ShapeFunction(Layer):
    """A value computed by `program` from the shapes of `n_inputs` inputs.

    program: a list of (ArrayOp, refs) run in order; refs index the values
    known so far: 0 .. n_inputs-1 are the layer's inputs (readable only by
    Shape / Size ops), n_inputs + j the output of program[j]. The layer's
    output is the last op's. cache_size: distinct input-shape tuples kept
    (and at most CACHE_BYTES of values, the newest always)."""

    def __init__(self, program, n_inputs, cache_size=CACHE_SIZE, by_value=()):
        self.n_inputs = int(n_inputs)
        if self.n_inputs < 0:
            raise ValueError(f"n_inputs: expected >= 0, got {n_inputs}")
        self.by_value = sorted({int(i) for i in by_value})
        if any(not 0 <= i < self.n_inputs for i in self.by_value):
            raise ValueError(f"by_value: expected input indices below {self.n_inputs}, "
                             f"got {by_value}")
        self.program = [(op, [int(r) for r in refs]) for op, refs in program]
        if not self.program:
            raise ValueError("program: expected at least one op")
        for j, (op, refs) in enumerate(self.program):
            if not isinstance(op, ArrayOp):
                raise TypeError(f"program[{j}]: expected an ArrayOp, got {type(op).__name__}")
            if len(refs) != op.n_inputs:
                raise ValueError(f"program[{j}]: {op.op} takes {op.n_inputs} input(s), "
                                 f"got {len(refs)}")
            for r in refs:
                if not 0 <= r < self.n_inputs + j:
                    raise ValueError(f"program[{j}]: ref {r} is not an input or an "
                                     "earlier op")
                if r < self.n_inputs and op.op not in SHAPE_READERS and \
                        r not in self.by_value:
                    raise ValueError(f"program[{j}]: {op.op} reads input {r}; inputs may "
                                     f"be read only by {' / '.join(SHAPE_READERS)} (or "
                                     "any op: those in by_value)")
        self.cache_size = int(cache_size)
        if self.cache_size < 1:
            raise ValueError(f"cache_size: expected >= 1, got {cache_size}")
        self._cache, self._nbytes = {}, 0

    def __call__(self, *xs):
        key = tuple([x.shape if type(x) is np.ndarray else
                     None if x is None else np.shape(x) for x in xs])
        if self.by_value:
            key += tuple(_value_key(xs[i]) for i in self.by_value)
        out = self._cache.get(key, self)  # self: no entry (a cached value may be None)
        if out is self:
            out = self.compute(*xs)
            with _LOCK:
                cache = self._cache
                if key not in cache:  # (another thread may have added it meanwhile)
                    cache[key] = out
                    self._nbytes += _nbytes(out)
                while len(cache) > self.cache_size or \
                        self._nbytes > CACHE_BYTES and len(cache) > 1:
                    self._nbytes -= _nbytes(cache.pop(next(iter(cache))))
        return out

    def compute(self, *xs):
        """The program's value on these inputs, without the cache (read-only)."""
        vals = list(xs)
        for op, refs in self.program:
            vals.append(op(*[vals[r] for r in refs]))
        return _frozen(vals[-1])

    def clear_cache(self):
        with _LOCK:
            self._cache, self._nbytes = {}, 0

    def config(self):
        cfg = {"n_inputs": self.n_inputs, "cache_size": self.cache_size,
               "program": [{"op": op.config(), "refs": refs} for op, refs in self.program]}
        if self.by_value:
            cfg["by_value"] = self.by_value
        return cfg

    def arrays(self):
        return {f"{j}.{k}": v for j, (op, _) in enumerate(self.program)
                for k, v in op.arrays().items()}

    @classmethod
    def from_state(cls, config, arrays, weight):
        per_op = {}
        for k, v in arrays.items():
            j, _, name = k.partition(".")
            per_op.setdefault(int(j), {})[name] = v
        program = [(ArrayOp.from_state(p["op"], per_op.get(j, {}), None), p["refs"])
                   for j, p in enumerate(config["program"])]
        return cls(program, config["n_inputs"], config.get("cache_size", CACHE_SIZE),
                   config.get("by_value", ()))

    def __repr__(self):
        return f"ShapeFunction({len(self.program)} ops, last {self.program[-1][0].op})"
