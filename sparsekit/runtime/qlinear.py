"""QLinearAdd: com.microsoft QLinearAdd computed the way ONNX Runtime's MLAS
kernel computes it, on the runtime's float view of quantized tensors.

ONNX defines c = saturate(rint((sa (a - za) + sb (b - zb)) / sc) + zc), with
rint half to even. MLAS evaluates, in float32 with fused multiply-adds,

    c = saturate(rint(a * (sa / sc) + (b * (sb / sc) + (zc - (sa/sc za + sb/sc zb)))))

which breaks exact .5 ties by the float rounding of those terms, not to even.
Ties are common when the scales are related: BERT's GELU adds the constant
1.0 (255 at scale 1/255) to erf on a grid of 2/255 with an output grid of
2/255, so every sum is k + 127.5 and the two rules disagree on ~40% of the
values; one step there propagates through a statically quantized
transformer (all-MiniLM-L6-v2: median sentence cosine 0.92 against ORT
instead of 1.0). Measured against ORT 1.32 on random u8 inputs with random
scales, ties included: identical.

The runtime holds a quantized tensor as its dequantized float32 value, so
the layer recovers the integer codes (rint(x / s) + zp: exact for values on
the grid) and returns (c - zc) * sc.

Also here, the other layers of statically quantized ONNX graphs: LookupTable
(an elementwise chain on one u8 tensor), BiasRequantize (output grid, bias,
requantization of a quantized MatMul) and Int8LinearRequantize (the same
with its int8 Linear, through the GEMM's u8 epilogue).
"""
import numpy as np

from sparsekit._native import AVAILABLE, core
from sparsekit._validate import kernel_rows
from sparsekit.runtime import layers as L
from sparsekit.runtime.int8_chain import U8Activations
from sparsekit.runtime.layers import Layer, _f32, register


def _fma32(a, b, c):
    """float32(a * b + c) rounded once, as a float32 FMA (a * b is exact in
    float64 for an 8-bit a; the sum's double rounding to float32 differs
    from one rounding only on float64 ties, ~2^-29 of the values)."""
    return (a.astype(np.float64) * np.float64(b) + np.asarray(c, np.float64)).astype(np.float32)


@register
class QLinearAdd(Layer):
    """c = a + b on 8-bit grids, as MLAS computes QLinearAdd (see module).

    a_params / b_params / out_params: (scale, zero point) of A, B and the
    output; signed: int8 grids (else uint8). a / b: the integer codes of a
    constant operand (broadcasting against the other, which is the layer's
    one input), or None for a runtime input."""

    def __init__(self, a_params, b_params, out_params, signed=False, a=None, b=None):
        (self.sa, self.za), (self.sb, self.zb), (self.sc, self.zc) = [
            (float(s), int(z)) for s, z in (a_params, b_params, out_params)]
        for name, s in (("a_params", self.sa), ("b_params", self.sb), ("out_params", self.sc)):
            if not (s > 0 and np.isfinite(s)):
                raise ValueError(f"{name}: expected a finite scale > 0, got {s}")
        if a is not None and b is not None:
            raise ValueError("a/b: at most one constant operand")
        self.signed = bool(signed)
        self.a = None if a is None else np.asarray(a, np.float32)
        self.b = None if b is None else np.asarray(b, np.float32)
        self.n_inputs = 2 - (a is not None) - (b is not None)
        f = np.float32
        self._r_ac, self._r_bc = f(f(self.sa) / f(self.sc)), f(f(self.sb) / f(self.sc))
        self._fixed = f(f(self.zc) - f(f(self._r_ac * f(self.za)) + f(self._r_bc * f(self.zb))))

    @staticmethod
    def _codes(x, s, z, name):
        return np.rint(np.divide(_f32(x, name), np.float32(s), dtype=np.float32)) + np.float32(z)

    def __call__(self, *xs):
        it = iter(xs)
        qa = self.a if self.a is not None else self._codes(next(it), self.sa, self.za, "a")
        qb = self.b if self.b is not None else self._codes(next(it), self.sb, self.zb, "b")
        acc = _fma32(qa, self._r_ac, _fma32(qb, self._r_bc, self._fixed))
        lo, hi = (-128, 127) if self.signed else (0, 255)
        q = np.clip(np.rint(acc), np.float32(lo), np.float32(hi))
        q -= np.float32(self.zc)
        q *= np.float32(self.sc)
        return q

    def config(self):
        return {"a_params": [self.sa, self.za], "b_params": [self.sb, self.zb],
                "out_params": [self.sc, self.zc], "signed": self.signed}

    def arrays(self):
        return {k: v for k, v in (("a", self.a), ("b", self.b)) if v is not None}

    @classmethod
    def from_state(cls, config, arrays, weight):
        return cls(config["a_params"], config["b_params"], config["out_params"],
                   config.get("signed", False), arrays.get("a"), arrays.get("b"))


@register
class LookupTable(Layer):
    """y = table[q], q = the uint8 code of x on the grid (scale, zero point)
    (clip(rint(x / scale) + zero point), NaN to 0, as FakeQuantize).

    What a chain of elementwise layers reading one uint8-quantized tensor
    becomes (sparsekit.convert.onnx_static.fold_lookup_tables): the chain's
    output takes at most 256 values, so it is computed once per code at load
    time, by the same layers, and looked up at run time (BERT's GELU between
    two quantized MatMuls: Div, Erf, Add, Mul, Mul and their requantizations
    in one pass)."""

    def __init__(self, scale, zero_point, table):
        self.scale, self.zero_point = float(scale), int(zero_point)
        if not (self.scale > 0 and np.isfinite(self.scale)):
            raise ValueError(f"scale: expected a finite number > 0, got {scale}")
        if not 0 <= self.zero_point <= 255:
            raise ValueError(f"zero_point: expected 0..255, got {zero_point}")
        self.table = np.ascontiguousarray(table, np.float32).reshape(-1)
        if self.table.size != 256:
            raise ValueError(f"table: expected 256 values, got {self.table.size}")

    def codes(self, x):
        x = _f32(x)
        s = np.float32(self.scale)
        if x.ndim and x.size:
            if AVAILABLE:
                q = np.empty(x.shape, np.uint8)
                try:
                    core.quantize_u8_static(np.ascontiguousarray(x).reshape(-1, x.shape[-1]),
                                            s, self.zero_point, q.reshape(-1, x.shape[-1]))
                    return q
                except ValueError:  # NaN or inf: the NumPy rule below
                    pass
        with np.errstate(invalid="ignore"):
            t = np.rint(np.divide(x, s, dtype=np.float32)) + np.float32(self.zero_point)
        return np.fmin(np.fmax(t, np.float32(0)), np.float32(255)).astype(np.uint8)

    def __call__(self, x):
        x = _f32(x)
        if x.ndim and x.size:
            if AVAILABLE:  # quantize and look up in one C pass
                t = np.empty(x.shape, np.float32)
                try:
                    core.quantize_lookup(np.ascontiguousarray(x).reshape(-1, x.shape[-1]),
                                         np.float32(self.scale), self.zero_point, self.table,
                                         t.reshape(-1, x.shape[-1]))
                    return t
                except ValueError:  # NaN or inf: codes' NumPy rule
                    pass
        return np.take(self.table, self.codes(x))

    def config(self):
        return {"scale": self.scale, "zero_point": self.zero_point}

    def arrays(self):
        return {"table": self.table}

    @classmethod
    def from_state(cls, config, arrays, weight):
        return cls(config["scale"], config["zero_point"], arrays["table"])


@register
class BiasRequantize(Layer):
    """FakeQuantize(scale, zero_point), + bias along the last axis, then
    FakeQuantize(out_scale, out_zero_point) (or, with a table, the
    LookupTable on that grid) in one C call over L2-sized chunks.

    A quantized MatMul's output in a QDQ / QOperator transformer: the int8
    product on its grid, the bias Add, the requantization
    (sparsekit.convert.onnx_static.fuse_bias_requantize). The same floats
    as the three layers it replaces: each step rounds in float32 as they do
    (the C core is built without FMA contraction); NaN / inf anywhere, or a
    last axis that is not the bias's, runs those layers instead."""

    def __init__(self, params, bias, out_params, table=None):
        (s, z), (so, zo) = params, out_params
        self.first = L.FakeQuantize(s, z)
        if not np.isfinite(self.first.scale):
            raise ValueError(f"params: expected a finite scale, got {s}")
        self.bias = np.ascontiguousarray(bias, np.float32)
        if self.bias.ndim != 1 or not self.bias.size:
            raise ValueError(f"bias: expected a non-empty 1-D array, got shape {self.bias.shape}")
        self.last = L.FakeQuantize(so, zo) if table is None else LookupTable(so, zo, table)
        if not np.isfinite(self.last.scale):
            raise ValueError(f"out_params: expected a finite scale, got {so}")

    def __call__(self, x):
        x = _f32(x)
        if x.ndim and x.size and x.shape[-1] == self.bias.size:
            if AVAILABLE:
                t = np.empty(x.shape, np.float32)
                last = self.last
                try:
                    core.quantize_lookup(
                        np.ascontiguousarray(x).reshape(-1, x.shape[-1]),
                        np.float32(self.first.scale), self.first.zero_point, None,
                        t.reshape(-1, x.shape[-1]), self.bias, np.float32(last.scale),
                        last.zero_point, getattr(last, "table", None))
                    return t
                except ValueError:  # NaN or inf: the layers' own rules
                    pass
        return self.last(self.first(x) + self.bias)

    def config(self):
        return {"params": [self.first.scale, self.first.zero_point],
                "out_params": [self.last.scale, self.last.zero_point]}

    def arrays(self):
        a = {"bias": self.bias}
        if isinstance(self.last, LookupTable):
            a["table"] = self.last.table
        return a

    @classmethod
    def from_state(cls, config, arrays, weight):
        return cls(config["params"], arrays["bias"], config["out_params"], arrays.get("table"))


@register
class Int8LinearRequantize(Layer):
    """A static int8 Linear without bias or activation whose output only
    feeds a BiasRequantize, in one layer: the GEMM's requantizing epilogue
    (sk_qgemm_u8s8_u8, bit for bit the static quantizer of the fp32 output
    the Linear would return) writes the u8 codes on the BiasRequantize's
    first grid, and the bias and requantization run on those codes. The
    [rows, N] fp32 tensor is never written, nor read and divided again.

    weight: a QuantizedMatrix with a static input quantization; params,
    bias, out_params, table: as BiasRequantize. out_codes=(scale, zero
    point), with a table: return U8Activations on that grid, the next int8
    Linears' static input quantization of the looked-up values (codes_for),
    instead of the floats, for readers that are all such Linears. A
    U8Activations input on the weight's own input grid is taken as it is."""

    def __init__(self, weight, params, bias, out_params, table=None, out_codes=None):
        from sparsekit._quantized import QuantizedMatrix

        if type(weight) is not QuantizedMatrix or weight.input_scale is None:
            raise TypeError("weight: expected a QuantizedMatrix with a static input "
                            f"quantization, got {type(weight).__name__}")
        self.linear = L.RowsLinear(weight)
        self.requant = BiasRequantize(params, bias, out_params, table)
        self._x_scale = np.full(1, weight.input_scale, np.float32)
        self.out_codes, self._code_table = None, None
        if out_codes is not None:
            codes = codes_for(table, *out_codes)
            if codes is None:
                raise ValueError("out_codes: needs a table of finite values")
            self.out_codes, self._code_table = (float(out_codes[0]), int(out_codes[1])), codes
        if self.requant.bias.size != self.linear.out_features:
            raise ValueError(f"bias: expected {self.linear.out_features} values, "
                             f"got {self.requant.bias.size}")

    @property
    def weight(self):
        return self.linear.weight

    def __call__(self, x):
        lin, rq = self.linear, self.requant
        k, n = lin.in_features, lin.out_features
        w = lin.weight
        xin = None
        if type(x) is U8Activations:
            if x.q.ndim >= 1 and x.q.shape[-1] == k and x.q.size and \
                    np.float32(x.scale) == np.float32(w.input_scale) and \
                    x.zero_point == w.input_zero_point:
                xin, lead = kernel_rows(x.q.reshape(-1, k)), x.q.shape[:-1]
        elif type(x) is np.ndarray and x.dtype == np.float32 and x.ndim >= 1 and \
                x.shape[-1] == k and x.size:
            xin, lead = kernel_rows(x.reshape(-1, k)), x.shape[:-1]
        if xin is not None and AVAILABLE:
            # quantize x, the GEMM with its u8 epilogue, bias and requantization
            # in one C call (the same kernels as the three layers)
            u8 = self._code_table is not None
            first, last = rq.first, rq.last
            t = np.empty((xin.shape[0], n), np.uint8 if u8 else np.float32)
            try:
                core.int8_requantize(w._arrays(), n, k, xin, w.input_scale, w.input_zero_point,
                                     first.scale, first.zero_point, rq.bias, last.scale,
                                     last.zero_point,
                                     self._code_table if u8 else getattr(last, "table", None),
                                     t)
            except ValueError:  # NaN or inf in x or in a biased value: the layers' path
                pass
            else:
                t = t.reshape(lead + (n,))
                return U8Activations(t, *self.out_codes) if u8 else t
        y = rq(lin(x))
        if self._code_table is None:
            return y
        q = LookupTable(self.out_codes[0], self.out_codes[1], np.zeros(256)).codes(y)
        return U8Activations(q, *self.out_codes)

    def config(self):
        c = self.requant.config()
        if self.out_codes is not None:
            c["out_codes"] = list(self.out_codes)
        return c

    def arrays(self):
        return self.requant.arrays()

    @classmethod
    def from_state(cls, config, arrays, weight):
        return cls(weight, config["params"], arrays["bias"], config["out_params"],
                   arrays.get("table"), config.get("out_codes"))


def codes_for(table, scale, zero_point):
    """uint8 [256]: the static u8 code on (scale, zero_point) of each value of
    a float32 table, clip(rint(t / scale) + zero_point, 0, 255) in float32
    as every static int8 Linear computes it (sk_quantize_u8), so a Linear
    handed code_table[q] computes what it would from table[q]; None if a
    value is not finite (the quantizer's error path)."""
    if table is None:
        return None
    t = np.asarray(table, np.float32)
    if t.shape != (256,) or not np.isfinite(t).all() or not 0 <= int(zero_point) <= 255:
        return None
    q = np.rint(np.divide(t, np.float32(scale), dtype=np.float32)) + np.float32(int(zero_point))
    return np.clip(q, np.float32(0), np.float32(255)).astype(np.uint8)
