"""ArrayOp: one ONNX operator evaluated with NumPy, on arrays of any dtype.

The ONNX importer folds these at load time when every input is a constant
and otherwise runs them in the graph: shape arithmetic on int64 (Shape,
Gather, Concat, Reshape with a computed shape), masks (Equal, Where, Cast to
bool), and the elementwise float work the weight layers do not cover (Div,
Erf, Pow, ReduceMean, MatMul of two activations ...). Semantics follow the
ONNX operator specification (opset 13-18 spellings), dtypes included: an
int64 Div truncates toward zero, Cast rounds as C does.
"""
import numpy as np

from sparsekit.runtime.layers import Layer, _erf, register


def _axes(attrs, given, rank):
    """Axes from an input (opset >= 13/18) or the attribute (older opsets)."""
    axes = given if given is not None else attrs.get("axes")
    if axes is None:
        return None
    return tuple(int(a) + rank if int(a) < 0 else int(a) for a in np.ravel(axes))


def _opt(ins, i):
    return ins[i] if len(ins) > i else None


def _tensor_attr(v):
    """A TensorProto attribute stored as {"dtype", "shape", "values"} for JSON."""
    return np.asarray(v["values"], dtype=v["dtype"]).reshape(v["shape"])


def _shape(ins, a):
    shp = np.array(ins[0].shape, np.int64)
    return shp[a.get("start", 0):a.get("end", None)]


def _unsqueeze(ins, a):
    x = ins[0]
    axes = [int(v) for v in np.ravel(ins[1] if _opt(ins, 1) is not None else a["axes"])]
    rank = x.ndim + len(axes)
    shape = list(x.shape)
    for ax in sorted(v + rank if v < 0 else v for v in axes):
        shape.insert(ax, 1)
    return x.reshape(shape)


def _squeeze(ins, a):
    axes = _axes(a, _opt(ins, 1), ins[0].ndim)
    return np.squeeze(ins[0], axis=axes)


def _slice(ins, a):
    x, starts, ends = ins[0], np.ravel(ins[1]), np.ravel(ins[2])
    axes = _axes({}, _opt(ins, 3), x.ndim) or tuple(range(len(starts)))
    steps = np.ravel(ins[4]) if _opt(ins, 4) is not None else np.ones(len(starts), np.int64)
    idx = [slice(None)] * x.ndim
    for ax, s, e, st in zip(axes, starts, ends, steps):
        idx[ax] = slice(int(s), int(e), int(st))  # Python clamps the way ONNX does
    return x[tuple(idx)]


def shape_ints(v):
    """A shape tensor's entries as Python ints."""
    if type(v) is np.ndarray and v.ndim == 1 and v.dtype.kind in "iu":
        return v.tolist()  # Python ints already (a third of the time of int() each)
    return [int(s) for s in np.ravel(v).tolist()]


def onnx_reshape(x, shape, allowzero=0):
    """ONNX Reshape to a list of ints (allowzero=0: a 0 keeps x's size on that axis)."""
    if 0 in shape and not allowzero:
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _reshape(ins, a):
    return onnx_reshape(ins[0], shape_ints(ins[1]), a.get("allowzero", 0))


def _expand(ins, a):
    x = ins[0]
    shape = np.broadcast_shapes(x.shape, tuple(int(s) for s in np.ravel(ins[1])))
    return np.broadcast_to(x, shape).copy()


def _constant_of_shape(ins, a):
    v = _tensor_attr(a["value"]) if "value" in a else np.zeros(1, np.float32)
    return np.full(tuple(int(s) for s in np.ravel(ins[0])), v.reshape(-1)[0], v.dtype)


def _range(ins, a):
    start, limit, delta = ins
    return np.arange(start.item(), limit.item(), delta.item()).astype(np.asarray(start).dtype)


def _div(ins, a):
    x, y = ins
    if np.asarray(x).dtype.kind in "iu":  # C integer division: toward zero
        q = np.floor_divide(x, y)
        fix = (np.remainder(x, y) != 0) & ((np.asarray(x) < 0) != (np.asarray(y) < 0))
        return (q + fix).astype(q.dtype)
    return np.divide(x, y)


def _mod(ins, a):
    return np.fmod(*ins) if a.get("fmod", 0) else np.mod(*ins)


def _cast(ins, a):
    return np.asarray(ins[0]).astype(a["to"])


def _reduce(fn):
    def run(ins, a):
        x = ins[0]
        axes = _axes(a, _opt(ins, 1), x.ndim)
        if axes == () or axes is None:
            if a.get("noop_with_empty_axes", 0):
                return x
            axes = None
        out = fn(x, axis=axes, keepdims=bool(a.get("keepdims", 1)))
        return np.asarray(out).astype(x.dtype, copy=False)
    return run


def _matmul(ins, a):
    return np.matmul(ins[0], ins[1])


def _softmax(ins, a):
    x = ins[0]
    ax = a.get("axis", -1)
    e = np.exp(x - x.max(axis=ax, keepdims=True))
    return e / e.sum(axis=ax, keepdims=True)


def _erf_op(ins, a):
    x = ins[0]
    if x.dtype == np.float32:  # 5x faster than float64, |error| < 7e-7 (1.7e-7 in float64)
        return _erf(x).astype(np.float32, copy=False)
    return _erf(x.astype(np.float64)).astype(x.dtype)


def _clip(ins, a):
    x = ins[0]
    lo, hi = _opt(ins, 1), _opt(ins, 2)
    lo = a.get("min") if lo is None else lo
    hi = a.get("max") if hi is None else hi
    return np.clip(x, lo, hi).astype(x.dtype, copy=False)


def _split(ins, a):
    x = ins[0]
    ax = a.get("axis", 0)
    sizes = _opt(ins, 1)
    if sizes is None:
        sizes = a.get("split")
    if sizes is None:
        n = a["num_outputs"]
        step = -(-x.shape[ax] // n)
        sizes = [min(step, x.shape[ax] - i * step) for i in range(n)]
    return tuple(np.split(x, np.cumsum(np.ravel(sizes))[:-1].astype(int), axis=ax))


def _flatten(ins, a):
    x = ins[0]
    ax = a.get("axis", 1)
    ax = ax + x.ndim if ax < 0 else ax
    return x.reshape(int(np.prod(x.shape[:ax])), -1)


def _dequantize(ins, a):
    x, scale, zp = ins[0], ins[1], _opt(ins, 2)
    shape = [1] * x.ndim
    if scale.size > 1:  # per axis
        ax = a.get("axis", 1)
        shape[ax + x.ndim if ax < 0 else ax] = -1
    zf = 0 if zp is None else zp.astype(np.float32).reshape(shape if zp.size > 1 else ())
    return ((x.astype(np.float32) - zf) * scale.reshape(shape if scale.size > 1 else ())
            ).astype(scale.dtype)


def _cumsum(ins, a):
    """ONNX CumSum: the running sum along axis (a 0-d or 1-element input),
    `exclusive` leaving out the element itself, `reverse` summing from the end."""
    x = ins[0]
    ax = int(np.ravel(ins[1])[0])
    if not -x.ndim <= ax < x.ndim:
        raise ValueError(f"CumSum: axis {ax} out of range for a {x.ndim}-d input")
    if a.get("reverse", 0):
        x = np.flip(x, ax)
    out = np.cumsum(x, axis=ax, dtype=x.dtype)
    if a.get("exclusive", 0):  # shift by one along axis, 0 first
        out = np.concatenate([np.zeros_like(np.take(out, [0], axis=ax)),
                              np.take(out, np.arange(out.shape[ax] - 1), axis=ax)], axis=ax)
    return np.flip(out, ax) if a.get("reverse", 0) else out


def _trilu(ins, a):
    """ONNX Trilu: the upper (default) or lower triangle of the last two axes,
    from diagonal k (optional input, 0)."""
    k = _opt(ins, 1)
    k = 0 if k is None else int(np.ravel(k)[0])
    return (np.triu if a.get("upper", 1) else np.tril)(ins[0], k)


def _where(ins, a):
    return np.where(*ins)


def _binary(fn):
    return lambda ins, a: fn(ins[0], ins[1])


def _unary(fn):
    return lambda ins, a: fn(ins[0])


def _ieee(fn):
    """fn without NumPy's floating-point warnings: ONNX ops give IEEE results
    (log(0) = -inf, 0/0 = nan, a cast of inf to int) silently, as ONNX Runtime
    does; MPNet's relative position buckets take log(0) on every call."""
    def run(ins, a):
        with np.errstate(all="ignore"):
            return fn(ins, a)
    return run


def _variadic(fn):
    def run(ins, a):
        out = ins[0]
        for v in ins[1:]:
            out = fn(out, v)
        return out
    return run


FUNCS = {
    "Shape": _shape, "Size": lambda ins, a: np.array(np.size(ins[0]), np.int64),
    "Gather": lambda ins, a: np.take(ins[0], ins[1], axis=a.get("axis", 0)),
    "GatherElements": lambda ins, a: np.take_along_axis(ins[0], ins[1], axis=a.get("axis", 0)),
    "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Concat":
        lambda ins, a: np.concatenate([np.atleast_1d(v) for v in ins], axis=a["axis"]),
    "Slice": _slice, "Reshape": _reshape, "Expand": _expand, "Flatten": _flatten,
    "Transpose": lambda ins, a: np.transpose(ins[0], a.get("perm")),
    "Tile": lambda ins, a: np.tile(ins[0], [int(r) for r in np.ravel(ins[1])]),
    "Split": _split, "Identity": lambda ins, a: ins[0],
    "ConstantOfShape": _constant_of_shape, "Range": _range, "Cast": _ieee(_cast),
    "CastLike": _ieee(lambda ins, a: np.asarray(ins[0]).astype(np.asarray(ins[1]).dtype)),
    "CumSum": _cumsum, "Trilu": _trilu,
    "Where": _where, "Equal": _binary(np.equal), "Greater": _binary(np.greater),
    "Less": _binary(np.less), "GreaterOrEqual": _binary(np.greater_equal),
    "LessOrEqual": _binary(np.less_equal), "And": _binary(np.logical_and),
    "Or": _binary(np.logical_or), "Xor": _binary(np.logical_xor),
    "Not": _unary(np.logical_not), "IsNaN": _unary(np.isnan), "IsInf": _unary(np.isinf),
    "Add": _binary(np.add), "Sub": _binary(np.subtract), "Mul": _binary(np.multiply),
    "Div": _ieee(_div),
    "Pow": _ieee(lambda ins, a: np.power(ins[0], ins[1]).astype(ins[0].dtype)),
    "Mod": _ieee(_mod), "Max": _variadic(np.maximum), "Min": _variadic(np.minimum),
    "Sum": _variadic(np.add),
    "Sqrt": _ieee(_unary(np.sqrt)), "Exp": _ieee(_unary(np.exp)),
    "Log": _ieee(_unary(np.log)), "Abs": _unary(np.abs), "Neg": _unary(np.negative),
    "Reciprocal": _ieee(_unary(np.reciprocal)),
    "Floor": _unary(np.floor), "Ceil": _unary(np.ceil), "Sign": _unary(np.sign),
    "Tanh": _unary(np.tanh), "Erf": _erf_op,
    "Sigmoid": _ieee(lambda ins, a: (1 / (1 + np.exp(-ins[0]))).astype(ins[0].dtype)),
    "Relu": lambda ins, a: np.maximum(ins[0], 0).astype(ins[0].dtype), "Clip": _clip,
    "ReduceMean": _reduce(np.mean), "ReduceSum": _reduce(np.sum),
    "ReduceMax": _reduce(np.max), "ReduceMin": _reduce(np.min),
    "ReduceProd": _reduce(np.prod),
    "MatMul": _matmul, "Softmax": _softmax, "DequantizeLinear": _dequantize,
}


def run(op, attrs, ins):
    """The outputs (a tuple) of ONNX op `op` on NumPy inputs (None = omitted)."""
    ins = [None if v is None else np.asarray(v) for v in ins]
    while ins and ins[-1] is None:
        ins.pop()
    out = FUNCS[op](ins, attrs)
    return out if isinstance(out, tuple) else (np.asarray(out),)


# save/load stores these dtypes; other constants travel as one of them
_STORED = {"bool": "int64", "uint8": "int64", "int16": "int64", "uint32": "int64",
           "float16": "float32"}


@register
class ArrayOp(Layer):
    """One ONNX op on NumPy arrays of any dtype.

    op: an ONNX op type in FUNCS; attrs: its attributes (JSON-able: tensors as
    {"dtype", "shape", "values"}); slots: one entry per ONNX input, "x" for the
    next runtime input, a key of `consts` for a constant, None for an omitted
    optional input; output: which output of a multi-output op (Split)."""

    def __init__(self, op, attrs=None, slots=("x",), consts=None, output=0):
        if op not in FUNCS:
            raise ValueError(f"op: {op!r} is not one of the ONNX ops ArrayOp runs "
                             f"({', '.join(sorted(FUNCS))})")
        self.op, self.attrs, self.output = op, dict(attrs or {}), int(output)
        self.slots = list(slots)
        self.consts = {k: np.asarray(v) for k, v in (consts or {}).items()}
        for s in self.slots:
            if s not in (None, "x") and s not in self.consts:
                raise ValueError(f"slots: {s!r} names no constant in consts")
        self.n_inputs = self.slots.count("x")
        self._fn = FUNCS[op]

    def __call__(self, *xs):
        it = iter(xs)
        ins = [next(it) if s == "x" else None if s is None else self.consts[s]
               for s in self.slots]
        if all(type(v) is np.ndarray for v in ins):  # the usual case: skip run()'s checks
            out = self._fn(ins, self.attrs)
            return out[self.output] if type(out) is tuple else out
        return run(self.op, self.attrs, ins)[self.output]

    def config(self):
        # dtype and shape as well: the file stores a few dtypes, and 0-d as 1-d
        dtypes = {k: [v.dtype.name, list(v.shape)] for k, v in self.consts.items()}
        return {"op": self.op, "attrs": self.attrs, "slots": self.slots,
                "output": self.output, "consts": dtypes}

    def arrays(self):
        return {k: v.astype(_STORED.get(v.dtype.name, v.dtype)) for k, v in self.consts.items()}

    @classmethod
    def from_state(cls, config, arrays, weight):
        meta = config.get("consts", {})
        consts = {}
        for k, v in arrays.items():
            v = np.asarray(v)
            dtype, shape = meta.get(k, (v.dtype.name, v.shape))
            consts[k] = v.astype(dtype).reshape(shape)
        return cls(config["op"], config.get("attrs"), config.get("slots", ("x",)), consts,
                   config.get("output", 0))

    def __repr__(self):
        return f"ArrayOp({self.op})"
