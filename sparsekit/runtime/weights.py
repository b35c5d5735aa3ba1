"""Choosing and describing the weight format of one layer.

    dense float [N, K] ──pack_float──► CSRMatrix        (sparse enough, fp32; with its
                                                        shared-column layout where pack
                                                        predicts it faster: 65-83%
                                                        sparse, AVX-512)
                                      SlicedEllMatrix  (sparse fp32, m <= ~16 rows per
                                                        call, AVX-512)
                                      QuantizedMatrix  (quantize="dynamic", dense int8)
                                      SparseInt8Matrix (quantize="dynamic", sparse int8)
                                      ndarray          (dense fp32: NumPy/BLAS)
    int8 q [N, K] + scale ──pack_int8──► QuantizedMatrix / SparseInt8Matrix
      + calibrated input scale / zero point ──pack_int8_static──► the same, with_static_input

Every choice comes with a reason string, so converters can report per layer
what was chosen and why. The int8 formats live on other modules of sparsekit
(qgemm, sparse int8 kernels); when a build lacks them the int8 request fails
with a clear RuntimeError rather than silently running fp32.
"""
import numpy as np

import sparsekit
from sparsekit._dense_f32 import PackedDenseMatrix
from sparsekit._report import Report

# Below this fraction of zeros a CSR fp32 weight is not faster than dense BLAS
# at typical batch sizes (DESIGN.md: ~2x at 90%, nothing at M=1 below 90%).
DEFAULT_MIN_SPARSITY = 0.7
# Sparse int8 pays an index per nonzero; below this, dense int8 wins.
DEFAULT_MIN_SPARSITY_INT8 = 0.8
QUANTIZE_MODES = (None, "dynamic")
QUANTIZE_SYNONYMS = {"int8": "dynamic"}  # sparsekit.pack's spelling


def sparsity(w):
    """Fraction of exact zeros in an array."""
    w = np.asarray(w)
    return float(np.count_nonzero(w == 0)) / w.size if w.size else 0.0


def has_int8():
    return hasattr(sparsekit, "QuantizedMatrix")


def has_sparse_int8():
    return hasattr(sparsekit, "SparseInt8Matrix")


def _need_int8(what):
    if not has_int8():
        raise RuntimeError(f"{what}: this sparsekit build has no int8 kernels "
                           "(sparsekit.QuantizedMatrix is missing)")


def check_quantize(quantize):
    """`quantize` in its canonical spelling ("int8" is read as "dynamic"):
    TypeError for a non-string, ValueError for an unknown mode."""
    if quantize is not None and not isinstance(quantize, str):
        raise TypeError(f"quantize: expected None or a string, got {type(quantize).__name__}")
    if quantize not in QUANTIZE_MODES + tuple(QUANTIZE_SYNONYMS):
        raise ValueError(f"quantize: expected one of {QUANTIZE_MODES} (or 'int8', a synonym "
                         f"of 'dynamic'), got {quantize!r}")
    return QUANTIZE_SYNONYMS.get(quantize, quantize)


def check_min_sparsity(min_sparsity):
    """None or a fraction of zeros in [0, 1] as a float: TypeError for a
    non-number (bools included), ValueError outside [0, 1] (NaN included)."""
    if min_sparsity is None:
        return None
    if isinstance(min_sparsity, (bool, np.bool_)) or \
            not isinstance(min_sparsity, (int, float, np.integer, np.floating)):
        raise TypeError(f"min_sparsity: expected None or a number in [0, 1], "
                        f"got {min_sparsity!r}")
    if not 0.0 <= min_sparsity <= 1.0:
        raise ValueError(f"min_sparsity: expected None or a number in [0, 1], "
                         f"got {min_sparsity!r}")
    return float(min_sparsity)


def check_m(m):
    """None (pack's default, 128) or the activation rows per call, an int >= 1."""
    if m is None:
        return None
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)):
        raise TypeError(f"m: expected None or an int (activation rows per call: tokens x "
                        f"batch), got {m!r}")
    if m < 1:
        raise ValueError(f"m: expected at least 1 row per call, got {m}")
    return int(m)


def _sell_for(m):
    """Does a sparse fp32 weight run M = m rows per call faster as a
    SlicedEllMatrix than as a CSRMatrix on this CPU, whatever its sparsity?
    Only where its kernel is AVX-512 (m <= SELL_MAX_M of sparsekit.pack):
    2-4x CSR at M = 1..8. The AVX2 kernel wins at M <= 2 only at some
    sparsities (1.1-2.2x CSR at 70%, 0.98-1.34x at 90%, 0.67x at 95%), which
    only pack's cost model tells apart, so the min_sparsity= path (no model)
    keeps CSRMatrix there."""
    import importlib

    if m is None or not hasattr(sparsekit, "SlicedEllMatrix"):
        return False
    P = importlib.import_module("sparsekit.pack")  # the module (sparsekit.pack is the function)
    isa = P._sell_isa()
    return isa == "avx512" and P._sell_wanted(None, m, isa)


def pack_float(w, quantize=None, min_sparsity=None, keep_dense=True, m=None, packed=False):
    """Pick a format for a float weight [N, K]. Returns (weight, reason); weight
    is None when nothing beats dense fp32 and keep_dense is False (the caller
    keeps its own dense layer). Dense fp32 is a float32 ndarray, or with
    packed=True (a runtime Linear's weight) a PackedDenseMatrix where its
    kernel beats NumPy (sparsekit._dense_f32.for_linear).

    With min_sparsity=None and a build that has sparsekit.pack (its cost model
    was measured on the target CPU), pack decides for about `m` activation rows
    per call (None: pack's default, 128), and may return a CSRMatrix with its
    shared-column layout (described "csr shared fp32"); otherwise a sparse
    format is used from min_sparsity zeros on (defaults above): CSRMatrix
    (plain: the layout's ~1.9x bytes are pack's call), or SlicedEllMatrix
    where it wins at any sparsity (m <= SELL_MAX_M of sparsekit/pack.py, its
    kernel on AVX-512; on AVX2 only pack's model picks it, see _sell_for)."""
    quantize = check_quantize(quantize)
    m = check_m(m)
    w = np.ascontiguousarray(w, dtype=np.float32)
    s = sparsity(w)
    if quantize is not None:
        _need_int8("quantize='dynamic'")
    if min_sparsity is None and hasattr(sparsekit, "pack"):
        kw = {} if m is None else {"m": m}
        fmt = sparsekit.pack(w, quantize=None if quantize is None else "int8", **kw)
        kind = describe(fmt)
        rows = "" if m is None else f", M = {m}"
        why = f"{kind} (sparsity {s:.0%}{rows}; sparsekit.pack's measured cost model)"
        if quantize is not None:
            why += ", per-channel weights, per-row dynamic activations"
        if kind == "dense fp32":
            why = f"dense fp32 (sparsity {s:.0%}; sparsekit.pack: no sparse format beats dense)"
            # pack already packed it where that wins: not packed twice
            return (_dense(fmt if packed else w, packed, why) if keep_dense else (None, why))
        return fmt, why
    if quantize is None:
        lim = DEFAULT_MIN_SPARSITY if min_sparsity is None else min_sparsity
        if s >= lim and s > 0 and _sell_for(m):
            return (sparsekit.SlicedEllMatrix.from_dense(w),
                    f"sliced ell fp32 (sparsity {s:.0%} >= {lim:.0%}, M = {m})")
        if s >= lim and s > 0:
            return sparsekit.CSRMatrix.from_dense(w), f"csr fp32 (sparsity {s:.0%} >= {lim:.0%})"
        why = f"dense fp32 (sparsity {s:.0%} < {lim:.0%}: dense BLAS is as fast)"
        return (_dense(w, packed, why) if keep_dense else (None, why))
    lim = DEFAULT_MIN_SPARSITY_INT8 if min_sparsity is None else min_sparsity
    if has_sparse_int8() and s >= lim and s > 0:
        return (sparsekit.SparseInt8Matrix.from_float(w, per_channel=True),
                f"sparse int8 (sparsity {s:.0%} >= {lim:.0%}), per-channel weights, "
                "per-row dynamic activations")
    return (sparsekit.QuantizedMatrix.from_float(w, per_channel=True),
            f"dense int8 (sparsity {s:.0%}), per-channel weights, per-row dynamic activations")


def _dense(w, packed, why):
    """(dense fp32 weight, reason): w, or with packed=True w packed for the fp32
    GEMM where that beats NumPy (a w packed already stays as it is)."""
    if not packed:
        return w, why
    from sparsekit._dense_f32 import PACKED_REASON, for_linear

    fmt = w if isinstance(w, PackedDenseMatrix) else for_linear(w)
    return fmt, why + (PACKED_REASON if isinstance(fmt, PackedDenseMatrix) else "")


def pack_int8(q, scale, min_sparsity=None):
    """A format for an already-quantized symmetric int8 weight q [N, K] with a
    per-tensor (scalar) or per-channel [N] scale. Returns (weight, reason)."""
    _need_int8("int8 weight")
    q = np.ascontiguousarray(q)
    if q.dtype != np.int8:
        raise TypeError(f"q: expected a 2-D int8 array, got dtype {q.dtype}")
    if q.ndim != 2:
        raise ValueError(f"q: expected a 2-D int8 array, got shape {q.shape}")
    scale = np.asarray(scale, dtype=np.float32).reshape(-1)
    per = "per-channel" if scale.size > 1 else "per-tensor"
    if scale.size == 1:
        scale = scale.reshape(())
    elif scale.size != q.shape[0]:
        raise ValueError(f"scale: expected 1 or N = {q.shape[0]} values, got {scale.size}")
    if q.size and q.min() < -127:
        # symmetric int8 excludes -128 (DESIGN.md); clamp is exact for |w| <= 127 s
        q = np.maximum(q, -127).astype(np.int8)
        per += ", -128 clamped to -127"
    s = sparsity(q)
    lim = DEFAULT_MIN_SPARSITY_INT8 if min_sparsity is None else min_sparsity
    if has_sparse_int8() and s >= lim and s > 0:
        return (sparsekit.SparseInt8Matrix.from_int8(q, scale),
                f"sparse int8 (sparsity {s:.0%}), {per} weights read as-is")
    return (sparsekit.QuantizedMatrix.from_int8(q, scale),
            f"dense int8 (sparsity {s:.0%}), {per} weights read as-is")


def pack_int8_static(q, scale, input_scale, input_zero_point, min_sparsity=None, m=None):
    """A static int8 format for an already-quantized symmetric weight q [N, K]
    (scale: scalar or [N]) whose input is quantized with the fixed per-tensor
    u8 (input_scale, input_zero_point), e.g. from sparsekit.compress.calibrate.
    Dense or sparse int8 is decided as pack_float(quantize="dynamic") decides,
    on q's zeros: sparsekit.pack's cost model for about m rows per call (None:
    pack's default) when min_sparsity is None and the build has it (the static
    kernels run as fast as the dynamic ones it was measured on), else sparse
    from min_sparsity zeros on. Returns (QuantizedMatrix or
    SparseInt8Matrix with_static_input, reason)."""
    _need_int8("quantize='static'")
    m = check_m(m)
    q = np.ascontiguousarray(q)
    if q.dtype != np.int8 or q.ndim != 2:
        raise TypeError(f"q: expected a 2-D int8 array, got {q.dtype} {q.shape}")
    s = sparsity(q)
    if min_sparsity is None and hasattr(sparsekit, "explain"):
        ex = sparsekit.explain(q.astype(np.float32), quantize="int8",
                               **({} if m is None else {"m": m}))
        sparse = ex["choice"] == "spint8"
        rows = "" if m is None else f", M = {m}"
        why = f"(sparsity {s:.0%}{rows}; sparsekit.pack's measured cost model)"
    else:
        lim = DEFAULT_MIN_SPARSITY_INT8 if min_sparsity is None else min_sparsity
        sparse = has_sparse_int8() and s >= lim and s > 0
        why = f"(sparsity {s:.0%} {'>=' if sparse else '<'} {lim:.0%})"
    cls = sparsekit.SparseInt8Matrix if sparse else sparsekit.QuantizedMatrix
    w = cls.from_int8(q, scale).with_static_input(input_scale, input_zero_point)
    per = "per-channel" if w.per_channel else "per-tensor"
    return w, (f"{describe(w)} {why}, {per} weights, static activations (scale "
               f"{w.input_scale:.4g}, zero point {w.input_zero_point})")


class LayerReport(Report):
    """What each converter chose per weight layer and why: dict rows
    {"name", "module", "chosen", "reason"} (sparsekit.torch.report, to_runtime's
    conversion_report, onnx.load's and keras.convert's .report), printed as a table."""

    columns = ("name", "module", "chosen", "reason")

    def __str__(self):
        return super().__str__() if self else "(no weight layers)"


def report_row(name, module, fmt, why):
    """A LayerReport row for a weight packed as fmt (None: left as it was)."""
    return {"name": name, "module": module,
            "chosen": "kept" if fmt is None else describe(fmt), "reason": why}


def describe(w):
    """Short name of a weight's format, for reports."""
    if isinstance(w, (np.ndarray, PackedDenseMatrix)):  # packed: the same values
        return "dense fp32"
    if getattr(w, "shared_columns", False):  # a CSRMatrix with its shared-column layout
        return "csr shared fp32"
    for attr, name in (("CSRMatrix", "csr fp32"), ("SlicedEllMatrix", "sliced ell fp32"),
                       ("QuantizedMatrix", "dense int8"),
                       ("SparseInt8Matrix", "sparse int8")):
        cls = getattr(sparsekit, attr, None)
        if cls is not None and isinstance(w, cls):
            return name
    return type(w).__name__


def nbytes(w):
    """Bytes the kernels read for this weight (all its arrays)."""
    if isinstance(w, np.ndarray):
        return w.nbytes
    if hasattr(w, "nbytes"):
        return int(w.nbytes)
    return sum(a.nbytes for a in vars(w).values() if isinstance(a, np.ndarray)) \
        if hasattr(w, "__dict__") else 0


def int8_parts(w):
    """(q int8 [N, K], scale float32 [N]) of an int8 weight format."""
    if hasattr(w, "q") and hasattr(w, "scale"):
        return np.asarray(w.q), np.asarray(w.scale, dtype=np.float32)
    if hasattr(w, "to_int8"):
        q, scale = w.to_int8()
        return np.asarray(q), np.asarray(scale, dtype=np.float32)
    raise TypeError(f"w: cannot read the int8 values of a {type(w).__name__}")


def dense_of(w):
    """The float32 [N, K] values a weight format stands for (dequantized)."""
    if isinstance(w, np.ndarray):
        return w
    if hasattr(w, "to_dense") and not hasattr(w, "q"):
        return w.to_dense()
    q, scale = int8_parts(w)
    return q.astype(np.float32) * scale.reshape(-1, 1)


def state_arrays(w):
    """{name: array} a weight consists of, shared with it (not copied): each
    format's own arrays (its _state_arrays), or {"": w} for a dense float32
    array. from_state_arrays rebuilds a weight from them."""
    if isinstance(w, np.ndarray):
        return {"": w}
    if hasattr(w, "_state_arrays"):
        return w._state_arrays()
    raise TypeError(f"weight: a {type(w).__name__} cannot list its arrays")


def optional_state_arrays(w):
    """{name: array of its dtype} of state arrays a weight may come with or
    without: a CSRMatrix's "shared_columns" flag (its layout is derived data;
    without the flag from_state_arrays keeps `like`'s choice)."""
    if isinstance(w, sparsekit.CSRMatrix):
        return {"shared_columns": np.zeros((), np.uint8)}
    return {}


def from_state_arrays(like, arrays):
    """A weight in the format and shape of `like` made of `arrays` (named as
    state_arrays names them), validated as on construction. A CSRMatrix
    without a "shared_columns" flag among them gets the layout where `like`
    has it; with the flag, the flag decides."""
    if isinstance(like, sparsekit.CSRMatrix) and "shared_columns" not in arrays:
        arrays = dict(arrays, shared_columns=np.array(like.shared_columns, np.uint8))
    if isinstance(like, np.ndarray):
        a = np.asarray(arrays[""])
        if a.shape != like.shape or a.dtype != np.float32:
            raise ValueError(f"expected float32 {list(like.shape)}, got {a.dtype} "
                             f"{list(a.shape)}")
        return np.array(a, dtype=np.float32, order="C")
    return type(like)._from_state_arrays(like.shape, arrays)
