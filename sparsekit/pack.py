"""sparsekit.pack / sparsekit.explain: pick the fastest weight format.

    w_fast = sparsekit.pack(w)                    # dense fp32 or CSRMatrix
    w_fast = sparsekit.pack(w, m=1)               # ... or SlicedEllMatrix (1 row per call)
    w_fast = sparsekit.pack(w70)                  # a 70%-sparse w: CSRMatrix with shared columns
    w_fast = sparsekit.pack(w, quantize="int8")   # QuantizedMatrix or SparseInt8Matrix
    print(sparsekit.explain(w, quantize="int8"))  # what was chosen and why

``sparsekit.pack`` is the function, also after ``import sparsekit.pack as p``;
this module's names are reached with ``from sparsekit.pack import SELL_MAX_M``
(or ``importlib.import_module("sparsekit.pack")``). Its command line is
``sparsekit pack`` (``python -m sparsekit.pack`` works too, with a runpy warning).

The choice comes from a cost model whose coefficients were MEASURED on the
target machine (tables below, one per ISA), not guessed. For each candidate
format the time of one ``sparsekit.linear`` call with M activation rows is
modelled as

    t(M) = overhead(M) + per_unit(M) * units + per_row(M) * N + per_act(M) * M * K
           + per_big_unit(M) * units * units / 1e6    (fp32 formats only)
           + per_unit_log2k(M) * units * log2(K)      (CSRMatrix only)
           + per_unit_gap(M) * units * (N*K - units) / 1e6   (CSRMatrix only)

where ``units`` is what the format's kernel iterates over: N*K for the dense
formats, the nonzeros for CSRMatrix, the slots for SlicedEllMatrix (64 per
group of 16 rows x 4 steps, `_core.sell_count_groups`: so the padding its
32-column windows leave is charged, ~43% of the slots at 90% sparsity), the
kept 1x4 blocks for SparseInt8Matrix (so unstructured pruning is charged for
the zeros inside its blocks), and M*K
is the activation matrix (read, and for the int8 formats quantized to u8, once
per call whatever the sparsity: what dominates small or very sparse layers).
The units^2 term is there because the fp32 cost per weight / nonzero grows with
the weight (it falls out of L2, and other work evicts it from L3: CSRMatrix at
M=128 1.6 ns per nonzero for 256x128 at 0% sparsity, 2.5 / 4.5 ns for 3072x768
at 50 / 0%; dense fp32 at M=8 0.25 ns per weight at 384x384, 0.25-0.38 ns at
3072x768). The log2(K) term is CSRMatrix's cost per nonzero growing with K: the
packed activation rows a nonzero reads leave L1 (M=128, 0% sparsity: 2.2-2.4 ns per
nonzero at 384x384 and 1536x384, 3.6-3.7 ns at 128x512 and 384x1536); without it
the model put a dense 128x512 weight into CSR at M >= 32, 1.3-1.7x slower.
The gap term is CSRMatrix's cost per nonzero growing with the zeros around it
in a big weight (M = 32, 3072x768: 0.51 ns per nonzero at 0% sparsity, 0.75
ns at 70%; the activation rows consecutive nonzeros read lie further apart);
without it the M >= 32 fits under-predicted CSR on the BERT shapes at 50-90%
by 20-35%, and so picked it too early against dense. Dense fp32 is timed as
pack returns it (_dense_weight): on the packed fp32 GEMM at every M where
the runtime uses it (AVX-512, and for MEASURED_AVX2 the AVX2 kernel a CPU
without AVX-512 runs), else NumPy's BLAS.
Where SparseInt8Matrix runs its groups-of-4 copy (block fill < 0.5, M >= 17,
AVX-512 VNNI; M = 2..3 where its M == 1 kernel runs once per row; every M > 1
for a weight that keeps only that copy, block fill < 0.35, or < 0.42 for long
rows of K <= 3072, with VBMI too) its units are the groups, with coefficients
of their own ("spint8_g4", measured at M = 128 and scaled below it by the
kernel's 64-row tiles, G4_TILE_ROWS, with G4_SMALL_SHARE / G4_MID_SHARE for
the 16- / 32-row kernels' tiles; "spint8_g4_m1" for its M == 1 kernels,
AVX-512 VBMI and K <= 32768, timed at K <= 1024 only, M times it for the rows
at M = 2..3). The
coefficients were fitted (non-negative least squares, relative error) to
timings of every format at large and small shapes (64x64 .. 3072x768), 8
sparsities and both pruning patterns (CSRMatrix: unstructured only, see
_samples), for M in 1, 8, 32, 128; other M interpolate in log M (and scale
linearly past 128).

SlicedEllMatrix ("sell") is a candidate only where its kernel is fast and
M is small (SELL_ISAS, SELL_MAX_M, SELL_MAX_M_AVX2; explain() notes why it is
left out):
- its spmv_sell_f32 kernels must run on AVX-512 or AVX2 (sparsekit.info()
  ["kernels"]["spmv_sell_f32"], forced ISAs included); the scalar one is the
  reference loop;
- AVX-512: M <= SELL_MAX_M = 16. Measured (the "sell" fit below, 64
  unstructured cases per M): fastest fp32 format in 56 / 57 cases at M = 1 / 8
  (2-3x CSRMatrix at 90%), but in only 14 at M = 32 and 7 at M = 128, there by
  <= 1.46x (mid sparsities, K = 3072) while holding 1.4x CSRMatrix's bytes at
  90%; the CSR kernels' large-M tiles keep improving, so M >= 32 stays with
  CSRMatrix. Its fit is as good as the others' (predicted / measured median
  0.98-1.01, 5-95% 0.8-1.2 at M = 1, 0.9-1.06 above).
- AVX2: M <= SELL_MAX_M_AVX2 = 2, decided by MEASURED_AVX2 (two runs, 64
  unstructured cases per M): fastest of dense / CSR / sell in 34-35 cases at
  M = 1 (CSRMatrix / sell 1.08-1.47x at 70%, 0.98-1.2x at 90%, 0.67-1.11x at
  95%) and 49-50 at M = 2 (1.16-2.19x at 70%, 0.99-1.34x at 90%, 0.73-1.1x at
  95%), but in 7 at M = 4 (0.53-0.96x at 90%) and none at M = 8 (0.29-0.84x):
  its kernel builds each step from 4 vpermps + 3 blends per 8 slots where the
  AVX-512 one needs one permute per 16 (those runs: the Zen 5 VM forced to
  AVX2, weights warm). Its M <= 8 rows were re-timed on a Zen 3 (AVX2-only)
  CPU as a model runs its layers (each weight from memory, see ROTATION
  below): a BERT FFN weight (3072x768, 768x3072) goes to sell at M = 1 from
  22-23% sparsity to 74% and to CSRMatrix above (at 90% CSR measured 1.0-1.4x
  faster there), at M = 2 from 44-45% to 67-71% (MiniLM's 1536x384: 39-67% at
  M = 1, never at M = 2); still no candidate at M = 3-4, where it measured
  1.3-5x slower than the fastest.

CSRMatrix with its shared-column layout ("csr_shared",
CSRMatrix.with_shared_columns(): rows in groups of 4, a column 2-4 of them use
loaded once) is a candidate where the layout is built and read (SHARED_ISAS,
SHARED_MIN_M, SHARED_MIN_DENSITY; explain() notes why it is left out):
- the spmm_f32 kernels must run on AVX-512 (sparsekit.info()["kernels"]
  ["spmm_f32"], forced ISAs included): the AVX2 and scalar kernels ignore it;
- M >= SHARED_MIN_M = 2 (M = 1 runs the spmv kernel, which ignores it too);
- with_shared_columns() must build it for this weight (the C core's rule:
  uint16 indices, density 17-35%, or 5-35% for K > 512), and pack asks for it
  only from SHARED_MIN_DENSITY = 17% density (<= 83% sparsity): below, it
  would double a 90%-sparse weight's 0.61 bytes per weight and measured
  0.96-1.03x CSR on the BERT shapes at M = 128.
Its units are the nonzeros (as CSRMatrix's), its coefficients fitted relative
to CSRMatrix's (see the table), timed at M = 8, 32, 128 (below 8 its M = 8
coefficients apply unscaled: conservative, and there SlicedEllMatrix is the
faster candidate on the same CPUs). Measured 1.05-1.3x plain CSR at 65-82%
sparsity and M >= 32 on all but the smallest weights (64x64: 0.96-1.07x);
picked for the BERT shapes from 66% to 83% sparsity at M >= 32. Memory: the
layout holds a second copy of the values and ~0.7 uint16 columns per nonzero,
~1.9x CSR's bytes (3.4 instead of 1.8 bytes per dense weight at 70%; dense
fp32 is 4), so pack takes it only where predicted at least SHARED_MIN_GAIN =
1.05x faster than plain CSR (more than the model's error on that ratio), and
like CSRMatrix it needs CSR_BYTES_MARGIN over dense wherever it would hold
more bytes than the dense array. To keep CSR's bytes: CSRMatrix.from_dense(w),
a model without "csr_shared", or the converters' min_sparsity= (which
bypasses pack and never builds the layout).

Which table: MEASURED was measured with the AVX-512 kernels (spmm_f32 and
spmv_sell_f32 on avx512, spmm_u8s8 on avx512vnni), MEASURED_AVX2 with every
kernel family forced to AVX2 (SPARSEKIT_ISA=avx2). pack takes, per quantize
mode, the table whose kernels run here (sparsekit.info()["kernels"], forced
ISAs included; TABLE_FAMILIES): MEASURED_AVX2 for fp32 where spmm_f32 and
spmv_sell_f32 run avx2, for int8 where spmm_u8s8 and qgemm_u8s8 do;
MEASURED everywhere else: AVX-512 CPUs (unchanged; an AVX-512 CPU without
VNNI runs spmm_u8s8 on avx2 but qgemm_u8s8 on avx512, so its int8 choices
stay with MEASURED too, as before), and scalar or NEON kernels, which have no
table of their own and keep what pack did before (explain() notes that the
table was measured on another ISA: re-measure). ``model=`` overrides the
table; explain() names the one it used ("table:") and warns only where the
table's ISA (its "isa" for int8, "shared_isa", the spmm_f32 one, for fp32)
is not the one running. MEASURED_AVX2 was measured on the same Zen 5 VM; its
dense fp32 is the packed GEMM on its AVX2 kernel (what a CPU without AVX-512
runs at every M, sparsekit._dense_f32.wanted), so on an AVX-512 CPU forced
to AVX2, where pack returns a NumPy array (its AVX-512 BLAS beats the AVX2
kernel at M >= 128), that table's dense prices are the AVX2 CPU's, not this
one's.
On AVX2 QuantizedMatrix's kernel (qgemm_u8s8) is slow at M >= 32 (3072x768 at
M = 32: 1.13 ms, as slow as SparseInt8Matrix on the unpruned weight), so
there SparseInt8Matrix is picked from 3-7% sparsity for 1x4-block pruning
and 40-51% for unstructured (crossovers under MEASURED_AVX2 below).

Three rules override the model (each in the reason explain() prints):
- CSR_BYTES_MARGIN: below 1/3 sparsity (1/2 for K > 65536) CSRMatrix holds
  more bytes than the dense array, and it is picked only when predicted at
  least 1.25x faster. Measured: at 0% sparsity CSRMatrix beat dense fp32 by
  > 10% only for weights <= 256x128 (by 1.2-1.7x), tied at 384x384 and
  1536x384 (0.27-1.13x, best at M = 32) and lost at K >= 512; so dense weights
  of BERT / MiniLM shapes stay dense at every M (with dense priced as the packed
  GEMM the model alone already predicts CSRMatrix 1.3-5x slower for them). The
  margin also absorbs a CSR kernel speed-up
  the table has not seen yet (kernels keep getting faster): with CSRMatrix
  30% faster at M = 128 than measured, only 0%-sparse picks move (to dense,
  <= 1.36x slower and 1.5x smaller).
  SlicedEllMatrix gets the same margin wherever it holds more bytes than the
  dense array (5 bytes per slot: below ~30% sparsity).
- UNPRUNED: a weight with < 1% zeros stays dense fp32 even where CSRMatrix (or
  SlicedEllMatrix: 1.2-2.2x dense fp32 at M <= 8 for weights up to 384x1536)
  is predicted faster: that happens only for tiny weights (up to 64x64, and
  128x128 / 256x128 at M >= 32), where a dense call's ~1.5-2.4 us fixed cost
  dominates;
  CSRMatrix would win by <= ~20 us per call and hold 1.5x the bytes.
  Likewise with quantize="int8" (UNPRUNED_INT8: < 5% zeros after quantizing,
  which alone zeroes ~1.3% of a Gaussian weight): an unpruned weight stays a QuantizedMatrix
  where the AVX2 table predicts SparseInt8Matrix faster (small weights: 1.4x
  on a 24x16 weight, ~2 us; 1.02x slower on 3072x768): only the dense int8
  format runs GELU in its epilogue and stacks q/k/v into one GEMM.
- ALWAYS_SPARSE: a weight >= 99% sparse always gets the sparse format.

Regenerate the table on a new machine with ``sparsekit pack --measure``
and pass it as ``model=`` (or paste it into sparsekit/_pack_tables.py: MEASURED, or
MEASURED_AVX2 from a run with SPARSEKIT_ISA=avx2; measuring and fitting are in
sparsekit/_pack_measure.py); a long run can be split with
``--shapes ... --save part.json`` and fitted with ``--fit part1.json part2.json``
(a case timed in several files counts at its median: repeat runs on a noisy
machine); ``--formats`` re-fits some formats (at the Ms timed, ``--ms``) and
keeps the table's other coefficients. At each M it times together only the
formats pack can choose at that M (_pack_measure.timing_plan, from the rules
here: SlicedEllMatrix timed beside CSRMatrix at M >= 32 slowed it by 5-25%),
and alone a format whose row at that M pack interpolates from (SlicedEllMatrix
at M = 32 for M = 9..16); ``--plan`` prints which, timing nothing.
Each format is timed rotating over ROTATION (8) copies of its weight, one call
per copy in turn, as a model's consecutive layers of that shape run: a BERT
FFN weight then comes from memory on every call, as in a model whose weights
exceed L3, whatever else shares the interleave (``--rotation 1``: one weight
back to back, which kept a weight that fits in L3 warm and made the timings
depend on which other formats were timed beside it; MEASURED and
MEASURED_AVX2's M >= 32 rows were still timed that way).
``benchmarks/pack_accuracy.py`` checks the picks against fresh timings, timed
the same way.
"""
import math
import sys

import numpy as np

from sparsekit._validate import as_float_array

QUANTIZE = (None, "int8")
QUANTIZE_SYNONYMS = {"dynamic": "int8"}  # the converters' spelling (sparsekit.torch ...)

# ---- the measured model -----------------------------------------------------
# Produced by: python -m sparsekit.pack --measure --reps 15  (1 thread, threadpoolctl
# limits, interleaved rounds, fastest round per case: the VM is shared).
# Machine: 2-core AMD EPYC VM (Zen 5: family 26), spmm_u8s8 on avx512vnni,
# sparsekit's packed fp32 GEMM for dense fp32 (gemm_f32, PackedDenseMatrix).
# coef[format][M] = (overhead_us, per_unit_ns, per_row_ns, per_activation_ns,
#                     per_big_unit_ns, per_unit_log2k_ns, per_unit_gap_ns)
#                   (missing trailing ones in older tables = 0)
from sparsekit._pack_tables import MEASURED, MEASURED_AVX2  # noqa: E402,F401


def _g4_applies(nnz, nblocks, m, isa, k=None, n=None, ngroups=None):
    """Does SparseInt8Matrix run its groups-of-4 copy for this weight and M?
    M == 1 too where a g4 M == 1 vector kernel runs (this CPU, K <= 32768; k
    None: not asked; the one for K > 1024 is predicted from "spint8_g4_m1",
    measured at K <= 1024, and G4_WIDE_FACTOR), and M = 2..16 where the weight keeps only its g4
    copy (block fill < G4_ONLY_FILL, or < G4_ONLY_FILL_MID for the shapes of
    g4_only_shape_rule when n and k are given; AVX-512 VBMI too: the 16-row
    kernel, see G4_SMALL_SHARE, or rows of the M == 1 kernel, _g4_rows_by_m1),
    and M = 2..3 for any weight with a g4 copy where that kernel runs once per
    row (n, k and ngroups given)."""
    from sparsekit._native import core as _core
    from sparsekit._sparse_int8 import (
        G4_MAX_FILL, G4_MIN_M, G4_ONLY_FILL, g4_only_shape_rule,
    )

    fill = nnz / (4 * nblocks) if nblocks else 1.0
    if isa != "avx512vnni" or fill >= G4_MAX_FILL:
        return False
    if m >= G4_MIN_M or (m == 1 and k is not None and _core.g4_spmv_fast(k)):
        return True
    if None not in (n, k, ngroups) and _g4_rows_by_m1(m, n, k, ngroups):
        return True
    only = (g4_only_shape_rule(n, k, nnz, fill) if n is not None and k is not None
            else fill < G4_ONLY_FILL)
    return m > 1 and only and _core.g4_vbmi_cpu()


def _g4_rows_by_m1(m, n, k, ngroups):
    """Whether a g4 call with M = 2..3 runs the M == 1 kernel once per row
    (the kernels' own rule, _core.g4_rows_fast)."""
    from sparsekit._native import core as _core

    return _core.g4_rows_fast(m, n, k, ngroups)


def _spint8_key(model, nnz, nblocks, m, isa, k, n=None, ngroups=None):
    """The model entry that times SparseInt8Matrix: its 1x4 blocks, its g4
    tiles (M >= G4_MIN_M, "spint8_g4") or its g4 M == 1 kernel ("spint8_g4_m1")."""
    if not _g4_applies(nnz, nblocks, m, isa, k, n, ngroups):
        return "spint8"
    key = "spint8_g4_m1" if m == 1 else "spint8_g4"
    return key if key in model["coef"] else "spint8"


def _ngroups(nz):
    """Groups of 4 nonzeros per row (each row's last one padded)."""
    return int(((nz.sum(axis=1) + 3) // 4).sum())


FORMAT_NAMES = {"dense": "dense ndarray or PackedDenseMatrix (fp32)",
                "csr": "CSRMatrix (sparse fp32)",
                "csr_shared": "CSRMatrix with shared columns (sparse fp32)",
                "sell": "SlicedEllMatrix (sparse fp32, sliced ELL)",
                "qdense": "QuantizedMatrix (dense int8)",
                "spint8": "SparseInt8Matrix (sparse int8, 1x4 blocks)"}


def _coef_at(table, m):
    """(overhead_us, per_unit_ns, per_row_ns, per_activation_ns,
    per_big_unit_ns, per_unit_log2k_ns, per_unit_gap_ns) at M rows from the
    measured Ms."""
    table = {int(k): (tuple(v) + (0.0,) * 7)[:7] for k, v in table.items()}
    ms = sorted(table)
    if m <= ms[0]:
        return table[ms[0]]
    if m >= ms[-1]:
        o, a, b, c, d, e, g = table[ms[-1]]
        f = m / ms[-1]
        # c is per activation element: M*K already scales
        return (o, a * f, b * f, c, d * f, e * f, g * f)
    for lo, hi in zip(ms, ms[1:]):
        if lo <= m <= hi:
            t = (math.log(m) - math.log(lo)) / (math.log(hi) - math.log(lo))
            return tuple((1 - t) * x + t * y for x, y in zip(table[lo], table[hi]))
    raise AssertionError("unreachable")


# spmv_sell_f32 ISAs where SlicedEllMatrix can beat CSRMatrix: its AVX-512
# kernel gathers x for 16 rows with one register permute (2-4x CSR at M =
# 1..8); the AVX2 one builds each step from 4 vpermps + 3 blends per 8 slots,
# which pays off at small M only (SELL_MAX_M_AVX2); the scalar one is the
# reference loop. Elsewhere it is not a candidate.
SELL_ISAS = ("avx512", "avx2")
# SlicedEllMatrix is a candidate up to this M only (AVX-512): its kernel reads W
# once per 4 rows of x (CSRMatrix's tiled kernel once per 64-row tile), so it
# lost to CSRMatrix at every measured M >= 32 (see the table's "sell" rows), and
# the log-M interpolation between M = 8 and 32 is not trusted past the middle.
SELL_MAX_M = 16
# ... and up to this M where its kernel runs on AVX2 (MEASURED_AVX2's runs, 64
# unstructured cases per M and run): fastest of dense / CSR / sell in 34-35
# cases at M = 1 and 49-50 at M = 2 (1.08-1.47x / 1.16-2.19x CSR at 70%,
# 0.98-1.2x / 0.99-1.34x at 90%), 7 at M = 4 (0.53-0.96x CSR at 90%) and none
# at M = 8 (0.29-0.84x at 90%); the model ranks sell first at M <= 2 and CSR
# from M = 3 for a 90%-sparse BERT FFN weight (tests/test_pack_avx2.py).
SELL_MAX_M_AVX2 = 2


def _sell_max_m(sell_isa):
    """The largest M at which SlicedEllMatrix is a candidate on this spmv_sell_f32 ISA."""
    return SELL_MAX_M_AVX2 if sell_isa == "avx2" else SELL_MAX_M


# spmm_f32 ISAs whose kernel reads CSRMatrix's shared-column layout
# (CSRMatrix.with_shared_columns): only the AVX-512 tile kernel does; the AVX2
# and scalar ones run the plain CSR. Elsewhere "csr_shared" is no candidate.
SHARED_ISAS = ("avx512",)
# M = 1 runs the spmv kernel, which does not read the layout either.
SHARED_MIN_M = 2
# pack takes the layout only from this density on (<= 83% sparsity), though
# with_shared_columns() builds it from 5% density for K > 512. Below it the
# layout doubles CSR's bytes (0.61 -> 1.2 per dense weight at 90%, against
# issue 2's 0.65), and measured through linear() (1 thread, interleaved with
# CSR) it gained least: 0.96-1.02x on 3072x768 at 85-90%, 0.98-1.03x on
# 768x3072 at M = 128 (1.1-1.3x only on 768x3072 / 384x1536 at M <= 32),
# which its units (nonzeros) do not tell apart from the 1.1-1.3x at 65-82%.
SHARED_MIN_DENSITY = 0.17
# ... and only where predicted at least this much faster than plain CSR: it
# holds ~1.9x CSR's bytes (3.4 instead of 1.8 per dense weight at 70%), and
# the model's csr / csr_shared ratio is off by up to ~7% (5-95% of the fit).
SHARED_MIN_GAIN = 1.05


# Which measured table pack decides with (model=None): the first of TABLE_NAMES
# whose kernels run on this CPU (forced ISAs included) for the families that
# time the candidates of that quantize mode (TABLE_FAMILIES); else MEASURED,
# measured with the AVX-512 kernels (also where they run on scalar / NEON: no
# table for those, explain() says to re-measure).
TABLE_FAMILIES = {None: ("spmm_f32", "spmv_sell_f32"), "int8": ("spmm_u8s8", "qgemm_u8s8")}
TABLE_NAMES = ("MEASURED_AVX2",)


def _running_kernels():
    """{family: ISA its kernels run on here} for the TABLE_FAMILIES (None
    without the C core)."""
    from sparsekit._native import AVAILABLE, core as _core

    fams = {f for fs in TABLE_FAMILIES.values() for f in fs}
    return {f: (_core.family_isa(f) if AVAILABLE else None) for f in fams}


def _table(quantize, kernels):
    """(name, model) of the measured table for `quantize` where the kernel
    families run on the ISAs in `kernels` ({family: ISA})."""
    for name in TABLE_NAMES:
        table = globals()[name]
        if all(kernels.get(f) == table["kernels"][f] for f in TABLE_FAMILIES[quantize]):
            return name, table
    return "MEASURED", MEASURED


def _shared_isa():
    """The ISA of this CPU's spmm_f32 kernels (None without the C core)."""
    from sparsekit._native import AVAILABLE, core as _core

    return _core.family_isa("spmm_f32") if AVAILABLE else None


def _sell_groups(w, c=None):
    """Groups of 16 rows x 4 steps SlicedEllMatrix.from_dense(w) would hold
    (c: w as a CSRMatrix, if already built)."""
    from sparsekit.formats import CSRMatrix
    from sparsekit._native import core as _core

    c = CSRMatrix.from_dense(w) if c is None else c
    n, k = w.shape
    return int(_core.sell_count_groups(c.indptr, c.indices, c.data, n, k))


def _sell_bytes(n, slots):
    """Bytes of a SlicedEllMatrix with `slots` slots (4-byte value + 1 index byte
    per slot, a 4-byte window per group of 64, the slice pointers)."""
    return 5 * slots + 4 * (slots // 64) + 8 * ((n + 15) // 16 + 1)


def _log2k_units(key, units, k):
    """units * log2(K): CSRMatrix's cost per nonzero grows with K (the packed
    activation rows a nonzero reads fall out of L1)."""
    return units * math.log2(k) if key in ("csr", "csr_shared") and k > 0 else 0.0


def _gap_units(key, units, n, k):
    """units * zeros / 1e6: CSRMatrix's cost per nonzero grows with the zeros
    around it in a big weight (measured at M = 8..128: 0.5 ns per nonzero for
    an unpruned 3072x768 at M = 32, 0.75 ns at 70% sparsity; the activation
    rows consecutive nonzeros read lie further apart)."""
    return units * (n * k - units) * 1e-6 if key in ("csr", "csr_shared") else 0.0


def _big_units(key, units):
    """units * (units / 1e6): the fp32 formats' extra cost per weight (per
    nonzero) in big weights, which fall out of L2 / are evicted from L3."""
    return units * units * 1e-6 if key in ("csr", "csr_shared", "dense", "sell") else 0.0


# SparseInt8Matrix's g4 kernel runs 64-row tiles of x: below M = 128 its time is
# that of ceil(M / 64) tiles, measured (benchmarks/bench_g4_crossover.py
# --scaling; 3 BERT / MiniLM shapes and 256x256, 70% and 90%) at 0.42-0.59 of
# its M = 128 time for M = 17..64 and 0.87-1.02 for M = 65..96. "spint8_g4" is
# timed at M = 128 only, so below it its per-unit and per-row terms are scaled
# by the share of tiles (the per-activation term, quantizing x, scales with M
# by itself).
G4_TILE_ROWS = 64
# With AVX-512 VBMI a tile of <= 16 rows (M = 2..16, or the last tile past 64
# rows) runs the 16-row kernel and one of 17..32 rows the 32-row kernel:
# measured (benchmarks/RESULTS.md "g4 only" and "g4 at M = 2..32") at
# 0.48-0.74 (16-row) and 0.63-0.80 (32-row) of the 64-row kernel's one-tile
# time on the BERT / MiniLM shapes at 60-90%, so such a tile counts as
# G4_SMALL_SHARE / G4_MID_SHARE of a 64-row one. (Not fitted by `--measure`,
# which times M = 1, 8, 32, 128: a table measured with g4-only weights at M = 8
# or with the 32-row kernel at M = 32 holds those Ms itself, and the shares
# apply only below its lowest measured M.) M = 2..3 where the M == 1 kernel
# runs once per row (_g4_rows_by_m1) is M times its "spint8_g4_m1" time.
G4_SMALL_SHARE = 0.6
G4_MID_SHARE = 0.72
# The g4 M == 1 kernel for K > 1024 (the row in L1, not in registers) is timed
# by "spint8_g4_m1" (measured at K <= 1024) with its per-group term times
# G4_WIDE_FACTOR: per group it measured 1.24 / 1.45 / 1.66 / 1.8x the
# register kernel's at 70 / 80 / 90 / 95% (768x3072 against 3072x768, RESULTS.md
# "g4 only"); sparser rows span more windows per 16 groups.
G4_WIDE_FACTOR = 1.6


def _g4_tile_units(m):
    """The g4 tiles of an M-row call in 64-row tiles: the last one of <= 16 /
    <= 32 rows at G4_SMALL_SHARE / G4_MID_SHARE where AVX-512 VBMI runs it."""
    from sparsekit._native import core as _core

    full, rest = divmod(m, G4_TILE_ROWS)
    if rest == 0:
        return full
    if not _core.g4_vbmi_cpu():
        return full + 1
    return full + (G4_SMALL_SHARE if rest <= 16 else G4_MID_SHARE if rest <= 32 else 1.0)


def _g4_min_m():
    from sparsekit._sparse_int8 import G4_MIN_M

    return G4_MIN_M


def _predict(model, key, m, n, k, units):
    """Modelled microseconds of one linear() call."""
    table = model["coef"][key]
    o, a, b, c, d, e, g = _coef_at(table, m)
    low = min(int(x) for x in table)
    if key == "spint8_g4" and m < low:  # relative to the tiles of the lowest measured M
        f = min(1.0, _g4_tile_units(m) / _g4_tile_units(low))
        a, b, d, e, g = a * f, b * f, d * f, e * f, g * f
    if key == "spint8_g4_m1" and k > 1024:
        a *= G4_WIDE_FACTOR
    if (key == "spint8_g4" and _g4_rows_by_m1(m, n, k, units)
            and "spint8_g4_m1" in model["coef"]):  # units: the groups
        return m * _predict(model, "spint8_g4_m1", 1, n, k, units)
    return o + (a * units + b * n + c * m * k + d * _big_units(key, units)
                + e * _log2k_units(key, units, k) + g * _gap_units(key, units, n, k)) * 1e-3


# Below the sparsity where CSRMatrix holds more bytes than the dense array (its
# 4-byte value + 2-byte column per nonzero, 4-byte columns past K = 65536,
# against 4 bytes per weight: 1/3 sparsity, or 1/2) it does the same multiply-adds
# as dense BLAS plus the index work, and wins only where BLAS's per-call cost
# dominates. Measured (1 thread, this machine, benchmarks/RESULTS.md): at 0%
# sparsity CSRMatrix beat dense fp32 by > 10% only for the small 64x64 / 256x128
# weights (1.2-1.7x, 256x128 at M >= 32 only); it tied at 384x384 and 1536x384
# (0.27-1.13x, best at M = 32) and lost at K >= 512 (0.27-0.8x). There it is
# taken only when predicted at least CSR_BYTES_MARGIN faster: more than the
# model's error on the dense/CSR time ratio and than an unmeasured CSR kernel
# speed-up (the table is a snapshot of kernels that keep getting faster), so a
# dense weight (the MiniLM / BERT shapes) stays dense at every M.
CSR_BYTES_MARGIN = 1.25
# A weight with fewer zeros than this was not pruned: it keeps dense fp32 even
# where CSRMatrix would be faster. That is only for tiny weights, where a NumPy
# BLAS call's ~1.7 us fixed cost dominates (measured at 0% sparsity: 3x7 .. 64x64
# at every M, 128x128 / 256x128 at M >= 32, CSRMatrix 1.2-2.8x faster, by at
# most ~20 us per call at M = 128), and CSRMatrix would hold 1.5x the bytes.
UNPRUNED = 0.01
# ... and for int8 picks, whose sparsity counts the quantized weight's zeros:
# rounding alone zeroes |w| < scale / 2, ~1.3% of a Gaussian channel
UNPRUNED_INT8 = 0.05


def _csr_bytes(n, k, nnz):
    """Bytes of a CSRMatrix: 4-byte value + 2-byte column (4 past K = 65536)
    per nonzero, 8-byte row pointers."""
    return (4 + (2 if k <= 65536 else 4)) * nnz + 8 * (n + 1)


def _csr_more_bytes(k):
    """Sparsity below which CSRMatrix holds more bytes than the dense fp32 array."""
    return 1 - 4 / (4 + (2 if k <= 65536 else 4))


# Past this sparsity a sparse format is taken whatever the model says: its work
# is then (close to) the activation pass alone, which the dense formats also do.
ALWAYS_SPARSE = 0.99
SPARSE_OF = {"dense": "csr", "qdense": "spint8"}
# the dense format an unpruned weight keeps instead of a sparse pick (UNPRUNED)
DENSE_OF = {"csr": "dense", "sell": "dense", "spint8": "qdense"}


def _candidates(quantize):
    from sparsekit import formats

    if quantize is None:
        return ["dense", "csr", "sell", "csr_shared"]
    cands = ["spint8"]
    if getattr(formats, "QuantizedMatrix", None) is not None:
        cands.insert(0, "qdense")
    return cands


def _check(w, quantize, m):
    if quantize is not None and not isinstance(quantize, str):
        raise TypeError(f"quantize: expected None or a string, got {type(quantize).__name__}")
    if quantize not in QUANTIZE + tuple(QUANTIZE_SYNONYMS):
        raise ValueError(f"quantize: expected None or 'int8' (or its synonym 'dynamic'), "
                         f"got {quantize!r}")
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)):
        raise TypeError(f"m: expected an int (activation rows per call), got {m!r}")
    if m < 1:
        raise ValueError(f"m: expected at least 1 row, got {m}")
    w = as_float_array(w, "w", ndim=2, allow_nan=False)
    return np.ascontiguousarray(w), QUANTIZE_SYNONYMS.get(quantize, quantize), int(m)


TABLE_DOC = {"MEASURED": "MEASURED (sparsekit/_pack_tables.py; measured with the AVX-512 kernels)",
             "MEASURED_AVX2": "MEASURED_AVX2 (sparsekit/_pack_tables.py; measured with every "
                              "kernel family on AVX2)",
             "model=": "the model= passed in"}


class Explanation(dict):
    """The decision of sparsekit.pack as a dict, printed as a short report."""

    def __str__(self):
        lines = [f"sparsekit.pack: {self['choice_name']}",
                 f"  weight {self['shape'][0]}x{self['shape'][1]}, "
                 f"sparsity {self['sparsity']:.1%}, 1x4 block fill {self['block_fill']:.2f}, "
                 f"M = {self['m']} rows per call, quantize = {self['quantize']!r}",
                 "  predicted time per linear() call:"]
        if self.get("slots"):
            n, k = self["shape"]
            lines.insert(2, f"  SlicedEllMatrix: {self['slots']} slots, {self['sell_fill']:.0%} "
                            f"hold a nonzero, {_sell_bytes(n, self['slots']) / (n * k):.2f} "
                            f"bytes per weight (CSRMatrix "
                            f"{(6 if k <= 65536 else 8) * self['nnz'] / (n * k):.2f}, dense 4)")
        if self.get("shared_bytes"):
            n, k = self["shape"]
            lines.insert(2, f"  CSRMatrix with shared columns: "
                            f"{self['shared_bytes'] / (n * k):.2f} bytes per weight (CSRMatrix "
                            f"{(6 if k <= 65536 else 8) * self['nnz'] / (n * k):.2f}, dense 4)")
        for fmt, t in sorted(self["predicted_us"].items(), key=lambda kv: kv[1]):
            mark = "  <- chosen" if fmt == self["choice"] else ""
            lines.append(f"    {FORMAT_NAMES[fmt]:<45} {t:10.1f} us{mark}")
        for note in self["notes"]:
            lines.append(f"  note: {note}")
        lines.append(f"  reason: {self['reason']}")
        lines.append(f"  model: {self['model']}")
        lines.append(f"  table: {TABLE_DOC.get(self['table'], self['table'])}")
        return "\n".join(lines)


def explain(w, quantize=None, m=128, model=None):
    """Why sparsekit.pack(w, quantize, m) picks the format it picks.

    Returns an Explanation (a dict: choice, predicted_us per candidate,
    sparsity, block_fill, reason, ...) whose str() is a readable report.
    Arguments and errors as for pack (model: the cost model, as there)."""
    w, quantize, m = _check(w, quantize, m)
    return _explain(w, quantize, m, model)


def _stats(w):
    """(nnz, kept 1x4 blocks, groups of 4 nonzeros per row) of w [N, K]."""
    n, k = w.shape
    nz = w != 0
    kq = (k + 3) // 4
    padded = np.zeros((n, kq * 4), dtype=bool)
    padded[:, :k] = nz
    nblocks = int(padded.reshape(n, kq, 4).any(axis=2).sum())
    return int(nz.sum()), nblocks, _ngroups(nz)


def _explain(w, quantize, m, model):
    return _explain_built(w, quantize, m, model)[0]


def _explain_built(w, quantize, m, model):
    """(Explanation, w as a CSRMatrix or None, the CSRMatrix of w with its
    shared-column layout or None): SlicedEllMatrix's slots are counted on the
    CSR, and the layout is built to find out whether with_shared_columns()
    makes one for w (the C core's rule); pack returns what it built."""
    from sparsekit.formats import CSRMatrix

    n, k = w.shape
    nnz, nblocks, ngroups = _stats(w)
    slots = csr = shared = None
    if _sell_wanted(quantize, m, _sell_isa()):
        csr = CSRMatrix.from_dense(w)
        slots = 64 * _sell_groups(w, csr)
    if _shared_wanted(quantize, m, _shared_isa()) and n * k and \
            SHARED_MIN_DENSITY * n * k <= nnz <= 0.5 * n * k:
        csr = CSRMatrix.from_dense(w) if csr is None else csr
        shared = csr.with_shared_columns()
        if not shared.shared_columns:
            shared = None
    return _decide(n, k, nnz, nblocks, ngroups, quantize, m, model, slots=slots,
                   shared_bytes=None if shared is None else shared.nbytes), csr, shared


def _sell_isa():
    """The ISA of this CPU's spmv_sell_f32 kernels (None without the C core)."""
    from sparsekit._native import AVAILABLE, core as _core

    return _core.family_isa("spmv_sell_f32") if AVAILABLE else None


def _sell_wanted(quantize, m, sell_isa):
    """Is SlicedEllMatrix a candidate (before asking whether the model has it)?"""
    return quantize is None and sell_isa in SELL_ISAS and m <= _sell_max_m(sell_isa)


def _shared_wanted(quantize, m, shared_isa):
    """Is CSRMatrix's shared-column layout a candidate (before asking whether
    it is built for the weight and the model has it)?"""
    return quantize is None and m >= SHARED_MIN_M and shared_isa in SHARED_ISAS


def _decide(n, k, nnz, nblocks, ngroups, quantize, m, model=None, isa=None, slots=None,
            sell_isa=None, shared_bytes=None, shared_isa=None):
    """The Explanation for an [n, k] weight with these counts (isa: the
    spmm_u8s8 ISA, sell_isa: the spmv_sell_f32 ISA, shared_isa: the spmm_f32
    ISA, default this CPU's; model None: the table for these ISAs, _table;
    slots: 64 x the groups of its SlicedEllMatrix,
    None: not counted, and then SlicedEllMatrix is no candidate;
    shared_bytes: CSRMatrix.nbytes with the shared-column layout, None: no
    layout is built (or not asked), and then it is no candidate)."""
    kernels = _running_kernels()
    kernels.update({f: v for f, v in (("spmm_u8s8", isa), ("spmv_sell_f32", sell_isa),
                                      ("spmm_f32", shared_isa)) if v is not None})
    isa, sell_isa, shared_isa = (kernels["spmm_u8s8"], kernels["spmv_sell_f32"],
                                 kernels["spmm_f32"])
    if model is None:
        table, model = _table(quantize, kernels)
    else:
        table = "model="
    notes = []
    if quantize == "int8" and "qdense" not in _candidates(quantize):
        notes.append("QuantizedMatrix is not built into this sparsekit: not a candidate")
    if quantize == "int8" and isa != model["isa"]:
        notes.append(f"model measured with spmm_u8s8 on {model['isa']}; this CPU runs "
                     f"{isa}: re-measure (sparsekit pack --measure) for exact choices")
    if quantize is None and model.get("shared_isa", shared_isa) != shared_isa:
        notes.append(f"model measured with spmm_f32 on {model['shared_isa']}; this CPU runs "
                     f"{shared_isa}: re-measure (sparsekit pack --measure) for exact choices")
    pred = {}
    units = {"dense": n * k, "qdense": n * k, "csr": nnz, "spint8": nblocks,
             "spint8_g4": ngroups, "spint8_g4_m1": ngroups, "sell": slots, "csr_shared": nnz}
    for fmt in _candidates(quantize):
        if fmt == "csr_shared":
            if not 0.01 * n * k <= nnz <= 0.5 * n * k:
                continue  # never built there (at most 35% density): not worth a note
            why = None
            if shared_isa not in SHARED_ISAS:
                why = (f"the spmm_f32 kernel runs on {shared_isa} here; only the AVX-512 one "
                       "reads the layout")
            elif m < SHARED_MIN_M:
                why = "M = 1 runs the spmv kernel, which does not read the layout"
            elif nnz < SHARED_MIN_DENSITY * n * k:
                why = (f"pack takes it from {SHARED_MIN_DENSITY:.0%} density on "
                       "(SHARED_MIN_DENSITY: below, it doubles CSR's bytes for the least gain)")
            elif shared_bytes is None:
                why = ("CSRMatrix.with_shared_columns() builds no layout for this weight "
                       "(density, K, or CPU)")
            if why:
                notes.append(f"{FORMAT_NAMES[fmt]}: not a candidate: {why}")
                continue
        if fmt == "sell":
            why = None
            if sell_isa not in SELL_ISAS:
                why = (f"its kernel runs on {sell_isa} here (spmv_sell_f32), where it is no "
                       "faster than CSRMatrix")
            elif m > _sell_max_m(sell_isa):
                why = (f"a format for M <= {_sell_max_m(sell_isa)} on {sell_isa} ("
                       f"{'SELL_MAX_M_AVX2' if sell_isa == 'avx2' else 'SELL_MAX_M'}); "
                       "CSRMatrix wins above")
            elif slots is None:
                why = "its slots were not counted"
            if why:
                notes.append(f"{FORMAT_NAMES[fmt]}: not a candidate: {why}")
                continue
        if fmt not in model["coef"]:
            notes.append(f"the model has no timings for {FORMAT_NAMES[fmt]}: not a candidate")
            continue
        key = fmt
        if fmt == "spint8":
            key = _spint8_key(model, nnz, nblocks, m, isa, k, n, units["spint8_g4"])
            if key != "spint8":
                when = ("M == 1" if m == 1 else f"M >= {_g4_min_m()}" if m >= _g4_min_m()
                        else "M = 2..3, the M == 1 kernel once per row"
                        if _g4_rows_by_m1(m, n, k, units[key])
                        and "spint8_g4_m1" in model["coef"]
                        else "its only copy at this block fill, 16-row kernel")
                notes.append("SparseInt8Matrix would run its groups-of-4 copy (unstructured "
                             f"weights, {when}): predicted from the g4 timings")
        pred[fmt] = _predict(model, key, m, n, k, units[key])
    choice = min(pred, key=pred.get)
    sparsity = 1 - nnz / max(n * k, 1)
    shared_why = None
    if choice == "csr_shared" and "csr" in pred:
        gain = pred["csr"] / pred["csr_shared"]
        if gain < SHARED_MIN_GAIN:
            shared_why = (f"{FORMAT_NAMES['csr']}: the shared-column layout is predicted only "
                          f"{gain:.2f}x faster (< {SHARED_MIN_GAIN}x, SHARED_MIN_GAIN) and "
                          f"would hold {shared_bytes / max(_csr_bytes(n, k, nnz), 1):.1f}x "
                          f"CSRMatrix's bytes")
            choice = "csr"
        elif "dense" in pred and shared_bytes > 4 * n * k and \
                pred["dense"] < CSR_BYTES_MARGIN * pred["csr_shared"]:
            shared_why = (f"{FORMAT_NAMES['csr']}: with the shared-column layout it would "
                          f"hold {shared_bytes / (4 * n * k):.2f}x the dense array's bytes and "
                          f"is predicted only {pred['dense'] / pred['csr_shared']:.2f}x faster "
                          f"than dense (< {CSR_BYTES_MARGIN}x)")
            choice = "csr"
    others = sorted((f for f in pred if f != choice), key=pred.get)
    if others and pred[choice] <= 0:  # an empty weight: nothing to compute
        reason = f"{FORMAT_NAMES[choice]}: the weight is empty ({n}x{k}), every format is free"
    elif choice in DENSE_OF and DENSE_OF[choice] in pred and n * k and \
            sparsity < (UNPRUNED_INT8 if choice == "spint8" else UNPRUNED):
        dense = DENSE_OF[choice]
        limit = UNPRUNED_INT8 if choice == "spint8" else UNPRUNED
        cost = ("would not fuse GELU or q/k/v" if choice == "spint8" else
                "would hold 1.5x the bytes" if choice == "csr" else
                f"would hold {_sell_bytes(n, slots) / (4 * n * k):.2f}x the bytes")
        reason = (f"{FORMAT_NAMES[dense]}: {sparsity:.1%} zeros (< {limit:.0%}), an "
                  f"unpruned weight stays dense ({FORMAT_NAMES[choice]}, predicted "
                  f"{pred[dense] / pred[choice]:.2f}x faster, {cost})")
        choice = dense
    elif (choice == "csr" and "dense" in pred and sparsity < _csr_more_bytes(k)
          and pred["dense"] < CSR_BYTES_MARGIN * pred["csr"]):
        reason = (f"{FORMAT_NAMES['dense']}: at {sparsity:.1%} sparsity CSRMatrix holds more "
                  f"bytes than the dense array (below {_csr_more_bytes(k):.0%}) and is predicted "
                  f"only {pred['dense'] / pred['csr']:.2f}x faster (< {CSR_BYTES_MARGIN}x, "
                  f"the margin it needs there)")
        choice = "dense"
    elif (choice == "sell" and "dense" in pred and _sell_bytes(n, slots) > 4 * n * k
          and pred["dense"] < CSR_BYTES_MARGIN * pred["sell"]):
        reason = (f"{FORMAT_NAMES['dense']}: at {sparsity:.1%} sparsity SlicedEllMatrix holds "
                  f"{_sell_bytes(n, slots) / (4 * n * k):.2f}x the bytes of the dense array "
                  f"and is predicted only {pred['dense'] / pred['sell']:.2f}x faster "
                  f"(< {CSR_BYTES_MARGIN}x, the margin it needs there)")
        choice = "dense"
    elif SPARSE_OF.get(choice) in pred and n * k and sparsity >= ALWAYS_SPARSE:
        choice = SPARSE_OF[choice]
        reason = (f"{FORMAT_NAMES[choice]}: {sparsity:.1%} sparse (>= {ALWAYS_SPARSE:.0%}): "
                  f"a sparse format is taken whatever the model predicts")
    elif shared_why:
        reason = shared_why
    elif others:
        nxt = others[0]
        reason = (f"{FORMAT_NAMES[choice]} is predicted {pred[nxt] / pred[choice]:.2f}x faster "
                  f"than {FORMAT_NAMES[nxt]} at {sparsity:.1%} sparsity "
                  f"and M = {m}")
    else:
        reason = f"{FORMAT_NAMES[choice]} is the only candidate"
    return Explanation(
        choice=choice, choice_name=FORMAT_NAMES[choice], shape=(n, k), m=m, quantize=quantize,
        nnz=nnz, nblocks=nblocks, sparsity=sparsity,
        block_fill=nnz / (4 * nblocks) if nblocks else 1.0, predicted_us=pred, reason=reason,
        slots=slots, sell_fill=(nnz / slots if slots else None), shared_bytes=shared_bytes,
        notes=notes, model=model["source"], table=table)


def pack(w, quantize=None, m=128, model=None):
    """The weight w [N, K] (out, in; zeros = pruned) in the format this CPU
    runs fastest for ``sparsekit.linear`` with about ``m`` activation rows per
    call: dense fp32, CSRMatrix or SlicedEllMatrix (quantize=None; dense fp32
    is a PackedDenseMatrix, the weight packed once for sparsekit's fp32 GEMM,
    where that kernel beats NumPy's BLAS (sparsekit._dense_f32.wanted(): AVX-512,
    or AVX2 on a CPU without AVX-512), else a float32 ndarray; both give the
    values back with np.asarray and are described "dense fp32";
    SlicedEllMatrix only for m <= SELL_MAX_M on CPUs whose spmv_sell_f32
    kernel is AVX-512, m <= SELL_MAX_M_AVX2 where it is AVX2; a CSRMatrix may
    carry its shared-column layout,
    ``shared_columns`` True, at 65-83% sparsity and m >= 2 on CPUs whose
    spmm_f32 kernel is AVX-512: ~1.9x CSR's bytes for 5-30% speed), or a
    QuantizedMatrix or SparseInt8Matrix (quantize="int8", per-channel
    symmetric int8; "dynamic", the converters' spelling, means the same:
    activations are quantized per row at run time). ``sparsekit.explain``
    shows the choice and the reason.

    model: the cost model to decide with; None (the default) is the table
    measured for the ISA this CPU's kernels run (MEASURED for AVX-512,
    MEASURED_AVX2 for AVX2, in sparsekit/_pack_tables.py); pass the dict
    ``sparsekit pack --measure`` prints (or ``measure()`` in
    sparsekit/_pack_measure.py returns) to decide for another CPU. Raises TypeError for a non-float w,
    non-int m or non-string quantize, ValueError for a w that is not 2-D or holds NaN / infinity, an
    m < 1 or an unknown quantize."""
    from sparsekit import formats

    w, quantize, m = _check(w, quantize, m)
    ex, csr, shared = _explain_built(w, quantize, m, model)
    choice = ex["choice"]
    if choice == "dense":
        return _dense_weight(w.astype(np.float32, copy=True))
    if choice == "csr_shared":
        return shared
    if choice in ("csr", "sell") and csr is None:
        csr = formats.CSRMatrix.from_dense(w)
    if choice == "csr":
        return csr
    if choice == "sell":
        return formats.SlicedEllMatrix.from_csr(csr)
    if choice == "qdense":
        return formats.QuantizedMatrix.from_float(w)
    return formats.SparseInt8Matrix.from_float(w)


def _dense_weight(w, avx2_cpu=False):
    """The dense fp32 weight pack returns for a float32 w it may keep: a
    PackedDenseMatrix where sparsekit's packed fp32 GEMM beats NumPy's BLAS
    (sparsekit._dense_f32.wanted()), else w. The one place that says so:
    pack returns it, `sparsekit pack --measure` times it as the model's
    "dense" (avx2_cpu=True: as a CPU without AVX-512 would, for MEASURED_AVX2;
    see _pack_measure._dense_for_table), and the runtime
    (sparsekit/runtime/weights.py) keeps what pack returned rather than packing
    it again."""
    from sparsekit._dense_f32 import for_linear

    return for_linear(w, avx2_cpu)


# measuring and fitting the model, the crossover table and the command line
# live in sparsekit/_pack_measure.py; their names stay reachable from here
from sparsekit._pack_measure import (  # noqa: E402,F401
    MEASURE_MS, MEASURE_SHAPES, MEASURE_SPARSITIES, ROTATION, _cli_arguments, _cli_run, _main,
    all_formats, crossover_table, measure, measure_raw,
)


if __name__ == "__main__":
    _main(sys.argv[1:])
