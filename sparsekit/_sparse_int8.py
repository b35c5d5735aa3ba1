"""SparseInt8Matrix: a pruned weight quantized to int8, stored as 1x4 blocks.

Layout (the contract of kernels/src/spmm_u8s8)::

    q[N, K] int8 (symmetric, [-127, 127], per-channel or per-tensor scale)
      -> K split into ceil(K/4) groups of 4 consecutive columns ("blocks")
      -> per row n, the nonzero blocks in column order:
           indptr[n] .. indptr[n+1]   (int64, N + 1)
           cols[p]                    (block column c = k // 4; uint16 or int32)
           values[p, 0:4]             (q[n, 4c .. 4c+3], zeros kept inside a block)
      + row_sums[n] = sum_k q[n, k]   (int32, folds the activation zero points)

One block is what one vpdpbusd lane multiplies: 4 u8 activations x 4 s8
weights. A block is kept if any of its 4 weights is nonzero, so unstructured
pruning pays for the zeros inside kept blocks; ``block_fill`` (nonzeros /
(4 * blocks)) says how much. Pruning in 1x4 blocks gives block_fill == 1.

Unstructured weights (block_fill < G4_MAX_FILL) on CPUs with AVX-512 VNNI also
hold their nonzeros as groups of 4 at any k (the g4 copy, _groups_of_4); below
G4_ONLY_FILL (G4_ONLY_FILL_MID for long rows of K <= G4_MID_MAX_K), where the
CPU has VBMI too, that copy is all they hold and the 1x4 arrays above are
rebuilt from it when read (see the notes at G4_MAX_FILL).
"""
import math

import numpy as np

from sparsekit._native import core as _core
from sparsekit._static_input import StaticInput
from sparsekit.quant_ops import _per_row  # zero points: scalar or one per row
from sparsekit._validate import (
    as_float_array, check_int8_weights, check_weight_scale, frozen, quantize_symmetric_int8,
)

class SparseInt8Matrix(StaticInput):
    """A pruned int8 weight W[N, K] (out, in) for the sparse int8 kernels.

    ``W ~= q * scale[:, None]`` (per channel) or ``q * scale`` (per tensor)
    with ``q`` symmetric int8 in [-127, 127]; zeros in ``q`` are pruned.
    Build one with ``SparseInt8Matrix.from_float(w)`` (zeros of ``w`` =
    pruned) or ``SparseInt8Matrix.from_int8(q, scale)`` (the constructor
    itself raises TypeError). ``.q``, ``.scale`` and ``.dequantize()`` read
    back as for QuantizedMatrix; ``.block_fill`` and ``.bytes_per_weight``
    say what the layout costs; picklable. ``sparsekit.linear(x, w)``
    quantizes x per row (u8) inside the kernel; ``w.with_static_input(scale,
    zero_point)`` switches that to a fixed (calibrated) per-tensor
    quantization; ``sparsekit.int8_matmul(xq, zp, w)`` is exact int32 and
    ``sparsekit.quantized_linear`` runs it on already-quantized u8 input.
    Needs the compiled C core.
    """

    __slots__ = ("_shape", "_bsr", "_nblocks", "row_sums", "_wscale",
                 "_scale0", "_per_channel", "_nnz", "_g4", "_input_scale",
                 "_input_zero_point")

    def __init__(self, *args, **kwargs):
        raise TypeError("SparseInt8Matrix: use SparseInt8Matrix.from_float(w) or "
                        "SparseInt8Matrix.from_int8(q, scale)")

    # ---- constructors -------------------------------------------------------
    @classmethod
    def from_float(cls, w, per_channel=True):
        """Quantize a pruned fp32 weight [N, K] (exact zeros are pruned) to
        symmetric int8: scale = max|w| / 127 per output row (per_channel) or
        for the whole tensor (at least FLT_MIN); q = round-half-even(w / scale),
        in float32 exactly as QuantizedMatrix.from_float. An all-zero row gets
        scale 1. Raises TypeError for a non-float w or non-bool per_channel,
        ValueError for NaN / infinity or a w that is not 2-D."""
        w = as_float_array(w, "w", ndim=2, allow_nan=False)
        q, scale = quantize_symmetric_int8(w, per_channel)  # as QuantizedMatrix.from_float
        return cls._build(q, scale, bool(per_channel))

    @classmethod
    def from_int8(cls, q, scale):
        """From already-quantized int8 q [N, K] in [-127, 127] and a scale that
        is a scalar (per-tensor) or [N] (per output channel). Raises TypeError
        for a non-integer q, ValueError for values outside [-127, 127] or a
        scale of another shape or <= 0."""
        q = check_int8_weights(q)
        scale, per_channel = check_weight_scale(scale, q.shape[0])
        return cls._build(q, scale, per_channel)

    def with_static_input(self, scale, zero_point):
        """The same weight with a static per-tensor u8 activation quantization
        (scale, zero_point), e.g. calibrated, for linear(); (None, None) goes
        back to dynamic (per row). Returns a new SparseInt8Matrix sharing the
        arrays. linear(x, w, bias, activation) then runs in the kernels (the
        same speed as dynamic) and is bit-identical to quantizing x yourself
        and dequantizing the exact int32 product (on x86; a compiler that
        fuses the multiply-add, as on aarch64, may differ in the last bit)::

            xq, _, _ = sparsekit.quantize_rows(x, scale, zero_point)
            acc = sparsekit.int8_matmul(xq, zero_point, w).astype(np.float32)
            y = acc * (np.float32(scale) * w.scale) + bias   # float32; then relu

        Raises ValueError when only one is None, for scale <= 0 or a zero
        point outside [0, 255], TypeError for non-scalar values (the messages
        call them input_scale / input_zero_point)."""
        return self._static_copy(scale, zero_point)

    @classmethod
    def _build(cls, q, scale, per_channel):
        n, k = q.shape
        kq = (k + 3) // 4
        if kq > np.iinfo(np.int32).max:
            raise ValueError(f"q: K = {k} exceeds the int32 block index range")
        qp = np.zeros((n, kq * 4), dtype=np.int8)
        qp[:, :k] = q
        blocks = qp.reshape(n, kq, 4)
        rows, cols = np.nonzero(blocks.any(axis=2))
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        self = object.__new__(cls)
        self._shape = (n, k)
        self._set_blocks(frozen(indptr),
                         frozen(cols.astype(np.uint16 if kq <= 65536 else np.int32)),
                         frozen(np.ascontiguousarray(blocks[rows, cols])))
        self.row_sums = frozen(q.sum(axis=1, dtype=np.int64).astype(np.int32))
        self._set_scale(scale, per_channel)
        self._nnz = int(np.count_nonzero(q))
        self._set_g4()
        self._input_scale = self._input_zero_point = None
        return self

    @classmethod
    def _from_state(cls, shape, indptr, cols, values, scale, per_channel):
        """Rebuild from stored arrays (pickle), checking them fully in C."""
        n, k = (int(s) for s in shape)
        values, indptr = np.asarray(values), np.asarray(indptr)
        # exact types: a cast would wrap int8 values or truncate float indices
        if values.dtype != np.int8 or values.size % 4:
            raise ValueError(f"values: expected int8 [nblocks, 4], got {values.dtype} "
                             f"{list(values.shape)}")
        if indptr.dtype.kind not in "iu":
            raise ValueError(f"indptr: expected an integer array, got {indptr.dtype}")
        values = np.ascontiguousarray(values).reshape(-1, 4)
        row_sums = np.zeros(n, dtype=np.int64)
        indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        if indptr.shape != (n + 1,):
            raise ValueError(f"indptr: expected length N + 1 = {n + 1}")
        if np.shape(cols) != (len(values),):
            raise ValueError(f"cols: expected one block column per block ({len(values)}), "
                             f"got shape {list(np.shape(cols))}")
        counts = np.diff(indptr)
        if counts.size and counts.min() < 0 or indptr[0] != 0 or indptr[-1] != len(values):
            raise ValueError("indptr: must start at 0, be non-decreasing and end at nblocks")
        np.add.at(row_sums, np.repeat(np.arange(n), counts), values.sum(axis=1, dtype=np.int64))
        self = object.__new__(cls)
        self._shape = (n, k)
        self._set_blocks(frozen(indptr), frozen(np.ascontiguousarray(cols)), frozen(values))
        self.row_sums = frozen(row_sums.astype(np.int32))
        scale, _ = check_weight_scale(scale, n)
        self._set_scale(scale, bool(per_channel))
        self._nnz = int(np.count_nonzero(values))
        bad = _core.bsr_s8_validate(self.indptr, self.cols, self.values, self.row_sums, n, k)
        if bad >= 0:
            raise ValueError(f"values/cols: corrupted sparse int8 weight at row {bad}")
        self._set_g4()
        self._input_scale = self._input_zero_point = None
        return self

    def _set_blocks(self, indptr, cols, values):
        self._bsr = (indptr, cols, values)
        self._nblocks = int(indptr[-1])

    def _set_g4(self):
        """The g4 copy where this CPU's kernels read it; the 1x4 blocks are
        then dropped where g4 runs every M at least as fast (_g4_only)."""
        self._g4 = _groups_of_4(self)
        if self._g4 is not None and _g4_only(self):
            self._bsr = None

    def _blocks(self, keep=False):
        """(indptr, cols, values) of the 1x4 blocks: held, or rebuilt from the
        g4 copy (a g4-only weight); keep=True holds the rebuilt ones (a call
        on an ISA without g4 kernels, e.g. a forced one, runs 1x4 from then
        on)."""
        if self._bsr is not None:
            return self._bsr
        bsr = _blocks_of_g4(self)
        if keep:
            self._bsr = bsr
        return bsr

    @property
    def indptr(self):
        """int64 [N + 1]: row pointers of the 1x4 blocks."""
        return self._blocks()[0]

    @property
    def cols(self):
        """uint16 (int32 past 65536 blocks) [nblocks]: block column k // 4."""
        return self._blocks()[1]

    @property
    def values(self):
        """int8 [nblocks, 4]: the 4 weights of each block."""
        return self._blocks()[2]

    # ---- state (torch state_dict, pickle) -----------------------------------
    def _state_arrays(self):
        """{name: array} this weight consists of, shared (read-only, not copied):
        the 1x4 blocks (indptr, cols, values) and the scale ([N] per channel,
        0-d per tensor). The row sums and the g4 copy are derived from them;
        SparseInt8Matrix._from_state_arrays(shape, them) rebuilds all."""
        arrays = {"indptr": self.indptr, "cols": self.cols, "values": self.values,
                  "scale": self.scale}
        if self._input_scale is not None:  # static input quantization, as QuantizedMatrix
            arrays["input_scale"] = np.array(self._input_scale, dtype=np.float64)
            arrays["input_zero_point"] = np.array(self._input_zero_point, dtype=np.int64)
        return arrays

    @classmethod
    def _from_state_arrays(cls, shape, arrays):
        """Rebuilt from _state_arrays' arrays, checked in full (_from_state)."""
        scale = np.asarray(arrays["scale"])
        self = cls._from_state(shape, arrays["indptr"], arrays["cols"], arrays["values"],
                               scale, scale.ndim == 1 and scale.shape[0] == shape[0])
        if "input_scale" in arrays or "input_zero_point" in arrays:
            self = self.with_static_input(*(
                None if arrays.get(name) is None else np.asarray(arrays[name])[()]
                for name in ("input_scale", "input_zero_point")))
        return self

    # ---- views --------------------------------------------------------------
    @property
    def shape(self):
        """(N, K) = (out, in)."""
        return self._shape

    def _set_scale(self, scale, per_channel):
        """The kernels' scale per row, and a per-tensor scale itself (kept
        apart: at N = 0 there is no row to read it from)."""
        scale = np.asarray(scale, dtype=np.float32)
        n = self._shape[0]
        self._wscale = frozen(np.ascontiguousarray(np.broadcast_to(
            scale if per_channel else scale.reshape(-1)[:1], (n,))))
        # (an empty per-tensor scale: a pickle of an N = 0 weight from before
        # this was kept; it has no weights, so scale 1 as for an all-zero one)
        self._scale0 = None if per_channel else frozen(
            (scale.reshape(-1)[:1] if scale.size else np.ones(1, np.float32)).reshape(()))
        self._per_channel = per_channel

    @property
    def scale(self):
        """float32 [N] per-channel scales, or a float32 scalar (per-tensor)."""
        return self._wscale if self._per_channel else self._scale0

    @property
    def per_channel(self):
        """True: one scale per output channel; False: one for the tensor."""
        return self._per_channel

    @property
    def q(self):
        """The int8 weights as a dense [N, K] array."""
        n, k = self._shape
        kq = (k + 3) // 4
        out = np.zeros((n, kq, 4), dtype=np.int8)
        indptr, cols, values = self._blocks()
        rows = np.repeat(np.arange(n), np.diff(indptr))
        out[rows, cols.astype(np.int64)] = values
        return out.reshape(n, kq * 4)[:, :k].copy()

    def dequantize(self):
        """The fp32 weight q * scale as a dense [N, K] array."""
        return self.q.astype(np.float32) * self._wscale[:, None]

    def to_dense(self):
        """The weight as a dense float32 [N, K] array: dequantize() under the
        name every weight format has."""
        return self.dequantize()

    @property
    def nblocks(self):
        """Number of 1x4 blocks (4 weight slots each) holding a nonzero
        (also for a g4-only weight, which keeps none)."""
        return self._nblocks

    @property
    def nnz(self):
        """Number of nonzero weights."""
        return self._nnz

    @property
    def density(self):
        """nnz / (N * K) (0.0 for an empty shape)."""
        n, k = self._shape
        return self._nnz / (n * k) if n * k else 0.0

    @property
    def block_fill(self):
        """Nonzeros per stored weight slot (1.0: every kept 1x4 block is full)."""
        return self._nnz / (4 * self.nblocks) if self.nblocks else 1.0

    @property
    def nbytes(self):
        """Bytes of every array held: the 1x4 blocks and the g4 copy, either
        or both."""
        g4 = sum(a.nbytes for a in self._g4) if self._g4 is not None else 0
        bsr = sum(a.nbytes for a in self._bsr) if self._bsr is not None else 0
        return bsr + self.row_sums.nbytes + self._wscale.nbytes + g4

    @property
    def bytes_per_weight(self):
        """nbytes / (N * K): memory per dense weight (dense int8: ~1.0)."""
        n, k = self._shape
        return self.nbytes / max(n * k, 1)

    def __repr__(self):
        n, k = self._shape
        blocks = ("1x4" if self._g4 is None else "g4" if self._bsr is None else "1x4+g4")
        return (f"SparseInt8Matrix(shape=({n}, {k}), blocks={blocks}, nnz={self._nnz}, "
                f"density={self.density:.3f}, block_fill={self.block_fill:.2f}, "
                f"scale={'per-channel' if self._per_channel else 'per-tensor'}, "
                f"input={self._input_repr()}, "
                + (f"{self.bytes_per_weight:.3f} bytes/weight)" if n * k else
                   f"{self.nbytes} bytes, no weights)"))

    def __reduce__(self):
        # the 1x4 blocks (rebuilt for a g4-only weight): the format every
        # version reads; the g4 copy is derived from them on load
        args = (self._shape, *self._blocks(), self.scale, self._per_channel)
        if self._input_scale is not None:
            args += (self._input_scale, self._input_zero_point)
        return (_sparse_int8_from_state, args)

    # ---- compute ------------------------------------------------------------
    def int8_matmul(self, xq, x_zero_point):
        """Exact int32 [..., N] = sum_k (xq[..., k] - zp) * q[n, k].

        xq: uint8 [..., K]; x_zero_point: an int in [0, 255] or an integer array
        with one zero point per row of xq (shape xq.shape[:-1])."""
        n, k = self._shape
        xq2, zp, lead = check_u8_rows(xq, x_zero_point, k)
        out = self._int8_matmul(xq2, zp)
        return out if len(lead) == 1 else out.reshape(lead + (n,))

    def _int8_matmul(self, xq, zero_point):
        """int8_matmul for validated xq uint8 [M, K] (contiguous) and
        zero_point int32 [1] or [M]."""
        n, k = self._shape
        if self._g4 is not None and self._runs_g4(xq.shape[0]):
            return _core.spmm_u8s8_g4_s32(*self._g4, self.row_sums, n, k, xq, zero_point)
        return _core.spmm_u8s8_s32(*self._blocks(keep=True), self.row_sums, n, k, xq,
                                   zero_point)

    def _runs_g4(self, m):
        """Whether a call with m rows runs the g4 copy: every M for a g4-only
        weight where the selected ISA has the g4 kernels (AVX-512 VNNI +
        VBMI; else its 1x4 blocks are rebuilt, see _blocks), else M >=
        G4_MIN_M, M == 1 where g4 has a vector M == 1 kernel and M = 2..3
        where that kernel runs once per row (_core.g4_rows_fast)."""
        if self._bsr is None:
            return _core.g4_small_fast()
        n, k = self._shape
        if m <= 3:  # M == 1, or M = 2..3 as rows of the M == 1 kernel
            return (_core.g4_spmv_fast(k) if m == 1
                    else _core.g4_rows_fast(m, n, k, int(self._g4[0][-1])))
        return m >= G4_MIN_M and _core.g4_fast()

    def _linear(self, x, bias, act, backend):
        if backend == "numba":
            raise ValueError("backend: SparseInt8Matrix runs on the compiled kernels only; "
                             "use backend='auto' or 'c'")
        n, k = self._shape
        if self._input_scale is not None:
            return self._linear_static(x, bias, act)
        if self._g4 is not None and self._runs_g4(x.shape[0]):
            return _core.linear_u8s8_g4_f32(*self._g4, self.row_sums, self._wscale, n, k, x,
                                            bias, act)
        return _core.linear_u8s8_bsr_f32(*self._blocks(keep=True), self.row_sums,
                                         self._wscale, n, k, x, bias, act)

    def _linear_static(self, x, bias, act):
        """Static input quantization in the kernels: x quantized with the fixed
        (scale, zero point) as quantize_u8_static does, the exact int32
        product, then acc * (float32(scale) * w.scale) + bias (then relu),
        all float32: the same numbers as int8_matmul plus that epilogue in
        NumPy, in one pass."""
        n, k = self._shape
        s, zp = self._input_scale, self._input_zero_point
        if self._g4 is not None and self._runs_g4(x.shape[0]):
            return _core.linear_u8s8_g4_f32(*self._g4, self.row_sums, self._wscale, n, k, x,
                                            bias, act, x_scale=s, x_zp=zp)
        return _core.linear_u8s8_bsr_f32(*self._blocks(keep=True), self.row_sums,
                                         self._wscale, n, k, x, bias, act, x_scale=s,
                                         x_zp=zp)


# Unstructured weights leave 1x4 blocks mostly empty (90% sparsity: block_fill
# 0.29); below G4_MAX_FILL a second copy as groups of 4 nonzeros at any k (g4,
# full groups) is kept on CPUs with AVX-512 VNNI, and calls with M >= G4_MIN_M
# rows run it there (1 / fill fewer multiplies; the 1x4 path stays for small M
# and other ISAs). The 1x4 kernel works in 16-row tiles, the g4 one in 64-row
# tiles, so from M = 17 (a second 1x4 tile) g4 wins: measured (int8_matmul and
# linear, 1 and 2 threads, bert_ffn_up / bert_ffn_down / minilm_ffn_up at 70%
# and 90% unstructured, M = 17..32, benchmarks/RESULTS.md "g4 from M = 17")
# 1.03-1.35x faster, except bert_ffn_up at 70% (0.97-0.99x); at M <= 16 the
# 1x4 kernel is 1.1-1.9x faster; at fill 0.53 (50% unstructured) they tie.
# M == 1 runs g4 too where it has a vector kernel (AVX-512 VNNI + VBMI, K <=
# 32768; the row in registers up to K = 1024, above it in L1, looked up per
# 128-byte window of the columns each 16 groups span): the lookups are per
# group of 4 nonzeros, not per mostly empty block (K = 1536..4096: 2.5-4.2x
# the 1x4 gathers, RESULTS.md "g4 only").
G4_MAX_FILL = 0.5
G4_MIN_M = 17
# Below G4_ONLY_FILL the g4 copy is all a weight keeps (no 1x4 blocks: 0.32
# bytes per weight at 90% instead of 0.85, bert_ffn_up) where this CPU has AVX-512 VNNI and
# VBMI, whose g4 kernels are then at least as fast as the 1x4 ones at every M:
# M = 2..3 the M == 1 kernel once per row (K <= 1024; M = 2 for K > 1024),
# M = 2..16 the 16-row g4 kernel, M = 17..32 the 32-row one, measured
# (benchmarks/RESULTS.md "g4 only" and "g4 at M = 2..32", 1 thread,
# bert_ffn_up / bert_ffn_down / minilm_ffn_up) 1.08-2.4x the 1x4 kernels at 80%
# and 90% unstructured (block fill 0.34 / 0.29).
G4_ONLY_FILL = 0.35
# From there to G4_ONLY_FILL_MID (about 65-78% unstructured) the 16-row g4
# kernel, bound by its 5 loads per group (one 8-byte index load, four 16-byte
# columns, a quarter of a weight load) against the 1x4 kernel's 2.25 per
# block, is as fast as the 1x4 one only where rows are long (it costs ~12
# cycles more per row) and its 16-byte-per-column tile stays in L1: measured
# at fill 0.39-0.42, M = 4..16, 1.02-1.11x for 3072x768, 768x3072 and
# 384x1536 (>= 192 nonzeros per row, K <= 3072) but 0.93-0.99x for 1536x384
# and 384x384 (115-130 per row) and 0.98-1.00x for 1024x4096 (a 64 KiB tile);
# at fill 0.43-0.46 0.85-1.02x everywhere. So weights of G4_ONLY_FILL <= fill <
# G4_ONLY_FILL_MID keep g4 alone only with K <= G4_MID_MAX_K and at least
# G4_MID_MIN_ROW_NNZ nonzeros per row on average (0.66 instead of 2.06 bytes
# per weight at 70% for bert_ffn_up); others keep both copies and the rules
# above.
G4_ONLY_FILL_MID = 0.42
G4_MID_MAX_K = 3072
G4_MID_MIN_ROW_NNZ = 192


def g4_only_shape_rule(n, k, nnz, fill):
    """The block-fill / shape part of the g4-only rule (the CPU part is
    _core.g4_vbmi_cpu()): fill < G4_ONLY_FILL, or fill < G4_ONLY_FILL_MID for
    K <= G4_MID_MAX_K and >= G4_MID_MIN_ROW_NNZ nonzeros per row."""
    if fill < G4_ONLY_FILL:
        return True
    return (fill < G4_ONLY_FILL_MID and k <= G4_MID_MAX_K and n > 0
            and nnz >= G4_MID_MIN_ROW_NNZ * n)


def _g4_cpu():
    """Whether this CPU has AVX-512 VNNI, the only ISA whose kernels read the
    g4 copy (see _runs_g4): elsewhere (AVX2, NEON) it would only cost memory,
    0.33 of the 0.85 bytes per weight of a 90%-sparse unstructured weight."""
    return _core.cpu_supports("avx512vnni")


def _g4_only(w):
    """Whether w, which has its g4 copy, keeps nothing else (G4_ONLY_FILL,
    G4_ONLY_FILL_MID: g4_only_shape_rule)."""
    n, k = w._shape
    return g4_only_shape_rule(n, k, w.nnz, w.block_fill) and _core.g4_vbmi_cpu()


def _blocks_of_g4(w):
    """(indptr, cols, values) of w's 1x4 blocks rebuilt from its g4 copy:
    the same arrays _build made (the g4 padding has value 0 and is skipped)."""
    n, k = w._shape
    kq = (k + 3) // 4
    g_indptr, kidx, gvals = w._g4
    nz = np.flatnonzero(gvals)  # sorted by row, then k (the g4 order)
    row = np.repeat(np.arange(n), 4 * np.diff(g_indptr))[nz]
    kk = kidx[nz].astype(np.int64)
    key, inv = np.unique(row * kq + kk // 4, return_inverse=True)
    values = np.zeros((key.size, 4), dtype=np.int8)
    values[inv.reshape(-1), kk % 4] = gvals[nz]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(key // kq, minlength=n), out=indptr[1:])
    cols = (key % kq).astype(np.uint16 if kq <= 65536 else np.int32)
    return frozen(indptr), frozen(cols), frozen(values)


def _groups_of_4(w):
    """(indptr, kidx, values) of w's nonzeros as groups of 4 per row, each
    row's last group padded with value 0 at column 0; None when w's blocks are
    well filled, K > 65536 (the uint16 column range) or this CPU would never
    run it (_g4_cpu)."""
    n, k = w._shape
    if w.nblocks == 0 or w.block_fill >= G4_MAX_FILL or k > 65536 or not _g4_cpu():
        return None
    b_indptr, b_cols, b_values = w._bsr
    flat = b_values.reshape(-1)
    nz = np.flatnonzero(flat)  # row-major: sorted by row, then by k
    blk = nz // 4
    kk = b_cols.astype(np.int64)[blk] * 4 + nz % 4
    row = np.repeat(np.arange(n), np.diff(b_indptr))[blk]
    count = np.bincount(row, minlength=n)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum((count + 3) // 4, out=indptr[1:])
    first = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(count, out=first[1:])
    slot = 4 * indptr[row] + (np.arange(nz.size) - first[row])
    kidx = np.zeros(4 * indptr[-1], dtype=np.uint16)
    values = np.zeros(4 * indptr[-1], dtype=np.int8)
    kidx[slot] = kk
    values[slot] = flat[nz]
    return frozen(indptr), frozen(kidx), frozen(values)


def check_u8_rows(xq, x_zero_point, k):
    """(xq as contiguous uint8 [M, K], zero points as int32 [1] or [M], lead shape)."""
    if (type(xq) is np.ndarray and xq.ndim == 2 and xq.dtype == np.uint8
            and xq.shape[1] == k and xq.flags.c_contiguous):  # the common case, fast
        return xq, _per_row(x_zero_point, xq.shape[0], xq.shape[:1], "x_zero_point", "zp"), \
            xq.shape[:1]
    if hasattr(xq, "detach") and hasattr(xq, "numpy"):
        xq = xq.detach().cpu().numpy()
    if type(xq) is not np.ndarray:
        xq = np.asarray(xq)
    if xq.dtype != np.uint8:
        raise TypeError(f"xq: expected a uint8 array, got dtype {xq.dtype}")
    if xq.ndim == 0 or xq.shape[-1] != k:
        raise ValueError(f"xq: expected shape [..., {k}], got {xq.shape}")
    lead = xq.shape[:-1]
    m = math.prod(lead)
    xq2 = xq.reshape(m, k) if xq.ndim != 2 else xq
    if not xq2.flags.c_contiguous:
        xq2 = np.ascontiguousarray(xq2)
    return xq2, _per_row(x_zero_point, m, lead, "x_zero_point", "zp"), lead


def _sparse_int8_from_state(shape, indptr, cols, values, scale, per_channel,
                            input_scale=None, input_zero_point=None):
    w = SparseInt8Matrix._from_state(shape, indptr, cols, values, scale, per_channel)
    return w if input_scale is None else w.with_static_input(input_scale, input_zero_point)
