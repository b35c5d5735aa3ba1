"""sparsekit.pack on AVX2: the measured table is picked by the ISA the kernel
families run (forced ISAs included), SlicedEllMatrix is a candidate on AVX2 up
to SELL_MAX_M_AVX2, explain() names the table and warns only on a mismatch,
model= overrides, and the AVX-512 picks are those of before the AVX2 table."""
import importlib
import math

import numpy as np
import pytest

import sparsekit
from sparsekit import CSRMatrix, SlicedEllMatrix
from sparsekit._dense_f32 import PackedDenseMatrix
from sparsekit._native import core

P = importlib.import_module("sparsekit.pack")  # the module (sparsekit.pack is the function)

AVX2_KERNELS = {"spmm_f32": "avx2", "spmv_sell_f32": "avx2", "spmm_u8s8": "avx2",
                "qgemm_u8s8": "avx2"}
# {forced ISA: (fp32 table, int8 table)}; avx512 forces spmm_u8s8 down to avx2
# (it has no plain AVX-512 kernel) while qgemm_u8s8 runs avx512: MEASURED, as before
WANT_TABLE = {"avx2": ("MEASURED_AVX2", "MEASURED_AVX2"), "scalar": ("MEASURED", "MEASURED"),
              "avx512": ("MEASURED", "MEASURED"), "avx512vnni": ("MEASURED", "MEASURED")}


@pytest.fixture
def forced():
    """Force an ISA for one test (skipped where this CPU lacks it)."""
    before = sparsekit.get_isa()

    def force(name):
        if not core.cpu_supports(name):
            pytest.skip(f"this CPU has no {name}")
        sparsekit.set_isa(name)

    yield force
    sparsekit.set_isa(before)


def _uniform(n, k):
    return np.random.default_rng(0).random((n, k), dtype=np.float32)


def _counts(n, k, s, pattern="unstructured"):
    """(nnz, nblocks, ngroups, slots) of a random weight with s zeros (as crossover_table)."""
    kq = (k + 3) // 4
    kept = (1 - s) if pattern == "1x4" else 1 - s ** 4
    slots = 64 * P._sell_groups((_uniform(n, k) >= s).astype(np.float32))
    return (round(n * k * (1 - s)), max(1, round(n * kq * kept)),
            n * math.ceil(k * (1 - s) / 4), slots)


@pytest.fixture(scope="module")
def bert_ffn_up():
    """A 90%-sparse BERT FFN up-projection weight [3072, 768]."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal((3072, 768)).astype(np.float32)
    w[rng.random(w.shape) < 0.9] = 0
    return w


# ---- which table ----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(WANT_TABLE))
def test_table_follows_the_forced_isa(forced, name):
    forced(name)
    w = np.zeros((8, 8), np.float32)
    w[0, :3] = 1.0
    for quantize, want in zip((None, "int8"), WANT_TABLE[name]):
        ex = sparsekit.explain(w, quantize=quantize, m=4)
        assert ex["table"] == want, (name, quantize, sparsekit.info()["kernels"])
        table = getattr(P, want)
        fmt = "csr" if quantize is None else "qdense"
        units = 3 if quantize is None else 64
        assert ex["predicted_us"][fmt] == P._predict(table, fmt, 4, 8, 8, units)
        assert f"table: {want} " in str(ex)


def test_table_needs_every_family_of_the_mode_on_avx2():
    assert P._table(None, AVX2_KERNELS) == ("MEASURED_AVX2", P.MEASURED_AVX2)
    assert P._table("int8", AVX2_KERNELS) == ("MEASURED_AVX2", P.MEASURED_AVX2)
    # AVX-512 without VNNI: spmm_u8s8 on avx2, qgemm_u8s8 on avx512
    mixed = dict(AVX2_KERNELS, qgemm_u8s8="avx512", spmm_f32="avx512", spmv_sell_f32="avx512")
    assert P._table("int8", mixed)[0] == "MEASURED"
    assert P._table(None, mixed)[0] == "MEASURED"
    for other in ("scalar", "neon", "avx512", None):
        kernels = dict.fromkeys(AVX2_KERNELS, other)
        assert P._table(None, kernels)[0] == P._table("int8", kernels)[0] == "MEASURED"


def test_avx2_table_is_well_formed():
    t = P.MEASURED_AVX2
    assert t["isa"] == t["sell_isa"] == t["shared_isa"] == "avx2"
    assert t["kernels"] == AVX2_KERNELS
    assert set(t["coef"]) == {"dense", "csr", "sell", "qdense", "spint8"}  # no g4, no csr_shared
    for per_m in t["coef"].values():
        assert {1, 2, 4, 8, 32, 128} <= set(per_m)
        # 6 coefficients; CSRMatrix's may carry the 7th, its gap term
        assert all(len(c) in (6, 7) and min(c) >= 0 for c in per_m.values())
    assert all(len(c) == 6 for f, per_m in t["coef"].items() if f != "csr"
               for c in per_m.values())


# ---- AVX-512 picks are unchanged -------------------------------------------------

# (n, k, sparsity, M, quantize, shared-column bytes per weight, pattern) -> the
# choice pack made before MEASURED_AVX2 (main at 4033330) with AVX-512 kernels,
# except where the refit with the packed GEMM as dense (branch packrefit) moved
# it: a 50%-sparse 768x3072 at M = 128 is dense now (measured 1.0-1.1x CSR)
AVX512_PICKS = [
    ((3072, 768, 0.9, 1, None, None, "unstructured"), "sell"),
    ((3072, 768, 0.9, 8, None, None, "unstructured"), "sell"),
    ((3072, 768, 0.9, 128, None, None, "unstructured"), "csr"),
    ((3072, 768, 0.7, 32, None, 3.4, "unstructured"), "csr_shared"),
    ((384, 384, 0.0, 32, None, None, "unstructured"), "dense"),
    ((768, 3072, 0.5, 128, None, None, "unstructured"), "dense"),
    ((768, 3072, 0.7, 128, None, None, "unstructured"), "csr"),
    ((768, 3072, 0.95, 2, None, None, "unstructured"), "sell"),
    ((3072, 768, 0.9, 8, "int8", None, "unstructured"), "qdense"),
    ((3072, 768, 0.9, 128, "int8", None, "unstructured"), "spint8"),  # its g4 timings
    ((3072, 768, 0.5, 128, "int8", None, "1x4"), "spint8"),
]


@pytest.mark.parametrize("case, want", AVX512_PICKS, ids=lambda v: str(v))
def test_avx512_picks_are_pinned(case, want):
    n, k, s, m, quantize, shared, pattern = case
    nnz, nblocks, ngroups, slots = _counts(n, k, s, pattern)
    kw = dict(slots=slots, sell_isa="avx512", shared_isa="avx512",
              shared_bytes=None if shared is None else int(shared * n * k))
    ex = P._decide(n, k, nnz, nblocks, ngroups, quantize, m, None, "avx512vnni", **kw)
    assert ex["choice"] == want, ex["reason"]
    assert ex["table"] == "MEASURED"
    same = P._decide(n, k, nnz, nblocks, ngroups, quantize, m, P.MEASURED, "avx512vnni", **kw)
    assert same["predicted_us"] == ex["predicted_us"] and same["choice"] == want
    assert not any("re-measure" in note for note in ex["notes"])


# ---- SlicedEllMatrix on AVX2 ---------------------------------------------------

def _fp32_pick_by_model(w, m):
    """The fp32 format MEASURED_AVX2 predicts fastest for w at M = m (the
    candidates pack has on AVX2 at this M; the sparsity rules do not apply at
    the 90% used here)."""
    n, k = w.shape
    nnz = int(np.count_nonzero(w))
    pred = {"dense": P._predict(P.MEASURED_AVX2, "dense", m, n, k, n * k),
            "csr": P._predict(P.MEASURED_AVX2, "csr", m, n, k, nnz)}
    if m <= P.SELL_MAX_M_AVX2:
        pred["sell"] = P._predict(P.MEASURED_AVX2, "sell", m, n, k, 64 * P._sell_groups(w))
    return min(pred, key=pred.get)


def test_sell_is_an_avx2_candidate_up_to_its_max_m(bert_ffn_up):
    """Decided with the AVX2 ISAs given (any CPU): sell is a candidate at
    M <= SELL_MAX_M_AVX2, the pick is the model's, and above it the model
    itself ranks CSRMatrix first at M = 8 for this weight."""
    assert "avx2" in P.SELL_ISAS and 1 <= P.SELL_MAX_M_AVX2 < P.SELL_MAX_M
    n, k = bert_ffn_up.shape
    nnz = int(np.count_nonzero(bert_ffn_up))
    slots = 64 * P._sell_groups(bert_ffn_up)
    for m in (1, P.SELL_MAX_M_AVX2, P.SELL_MAX_M_AVX2 + 1, 8):
        ex = P._decide(n, k, nnz, 1, 1, None, m, slots=slots, sell_isa="avx2",
                       shared_isa="avx2")
        assert ex["table"] == "MEASURED_AVX2"
        assert ("sell" in ex["predicted_us"]) == (m <= P.SELL_MAX_M_AVX2)
        assert ex["choice"] == _fp32_pick_by_model(bert_ffn_up, m)
        assert P._sell_wanted(None, m, "avx2") == (m <= P.SELL_MAX_M_AVX2)


@pytest.mark.parametrize("shape", [(3072, 768), (768, 3072)])
def test_avx2_table_puts_mid_sparse_bert_weights_in_sell_up_to_its_max_m(shape):
    """MEASURED_AVX2's M <= 8 rows were timed the way a model runs its layers
    (each format rotating over 8 copies of its weight, _pack_measure.ROTATION):
    the dense weight comes from memory, so at M = 1 SlicedEllMatrix wins from
    ~23% sparsity and at M = 2 from ~40% (measured on the BERT shapes: dense
    ~1.1-1.3 ms, sell 0.4-0.5 ms at 50% and M = 1); CSRMatrix above ~70-75%.
    Warm (one weight back to back) sell needed ~55% at M = 1."""
    n, k = shape
    uniform = _uniform(n, k)

    def pick(s, m):
        w = (uniform >= s).astype(np.float32)
        return P._decide(n, k, int(w.sum()), 1, 1, None, m, slots=64 * P._sell_groups(w),
                         sell_isa="avx2", shared_isa="avx2")["choice"]

    assert [pick(s, 1) for s in (0.1, 0.3, 0.5, 0.7, 0.9)] == \
        ["dense", "sell", "sell", "sell", "csr"]
    assert [pick(s, 2) for s in (0.3, 0.5, 0.6, 0.9)] == ["dense", "sell", "sell", "csr"]
    assert pick(0.5, P.SELL_MAX_M_AVX2 + 1) != "sell"  # no candidate above (sell 1.7-3x slower)


def test_forced_avx2_packs_what_the_avx2_model_predicts(forced, bert_ffn_up):
    forced("avx2")
    for m in (1, 2, 8):
        want = _fp32_pick_by_model(bert_ffn_up, m)
        got = sparsekit.pack(bert_ffn_up, m=m)
        cls = {"sell": SlicedEllMatrix, "csr": CSRMatrix,
               "dense": (np.ndarray, PackedDenseMatrix)}[want]
        assert isinstance(got, cls), (m, sparsekit.explain(bert_ffn_up, m=m))
        np.testing.assert_array_equal(
            got if isinstance(got, np.ndarray) else got.to_dense(), bert_ffn_up)


def test_documented_avx2_crossover_table_is_the_models():
    import importlib

    src = open(importlib.import_module("sparsekit._pack_tables").__file__).read()
    tail = src[src.index("# ---- the AVX2 table"):]
    import ast

    rows = [ast.literal_eval(line[4:]) for line in tail.splitlines()
            if line.startswith("#   {'shape'")]
    assert len(rows) == 8
    assert rows == P.crossover_table(P.MEASURED_AVX2)


# ---- explain() -----------------------------------------------------------------

def _notes(ex):
    return [n for n in ex["notes"] if "re-measure" in n]


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_explain_warns_only_where_the_table_isa_differs(forced, bert_ffn_up, quantize):
    w = bert_ffn_up[:256, :128]
    forced("avx2")
    ex = sparsekit.explain(w, quantize=quantize, m=8)
    assert ex["table"] == "MEASURED_AVX2" and not _notes(ex)
    assert "table: MEASURED_AVX2 (sparsekit/_pack_tables.py; measured with every kernel family " \
           "on AVX2)" in str(ex)
    ex = sparsekit.explain(w, quantize=quantize, m=8, model=P.MEASURED)  # an AVX-512 table
    family = "spmm_f32" if quantize is None else "spmm_u8s8"
    assert ex["table"] == "model=" and "table: the model= passed in" in str(ex)
    assert _notes(ex) == [f"model measured with {family} on "
                          f"{P.MEASURED['shared_isa' if quantize is None else 'isa']}; "
                          "this CPU runs avx2: re-measure (sparsekit pack --measure) for "
                          "exact choices"]
    forced("scalar")  # no scalar table: MEASURED, and the warning
    ex = sparsekit.explain(w, quantize=quantize, m=8)
    assert ex["table"] == "MEASURED" and len(_notes(ex)) == 1 and "runs scalar" in str(ex)


def test_explain_on_this_cpu_names_its_table(bert_ffn_up):
    kernels = sparsekit.info()["kernels"]
    for quantize in (None, "int8"):
        ex = sparsekit.explain(bert_ffn_up[:64], quantize=quantize, m=32)
        want = P._table(quantize, kernels)[0]
        assert ex["table"] == want and f"table: {want} " in str(ex)
        if want == "MEASURED" and kernels["spmm_u8s8"] == "avx512vnni" and \
                kernels["spmm_f32"] == "avx512":  # the CPU MEASURED was measured on
            assert not _notes(ex)


# ---- model= ----------------------------------------------------------------------

def test_model_overrides_the_avx2_table(forced, bert_ffn_up):
    forced("avx2")
    n, k = bert_ffn_up.shape
    nnz = int(np.count_nonzero(bert_ffn_up))
    ex = sparsekit.explain(bert_ffn_up, m=32, model=P.MEASURED)
    assert ex["predicted_us"]["csr"] == P._predict(P.MEASURED, "csr", 32, n, k, nnz)
    assert ex["predicted_us"]["csr"] != P._predict(P.MEASURED_AVX2, "csr", 32, n, k, nnz)
    # a model where dense fp32 is nearly free: dense, whatever MEASURED_AVX2 says
    cheap = {"isa": "avx2", "shared_isa": "avx2", "source": "test model", "coef": {
        "dense": {1: (0.01, 0, 0, 0)}, "csr": {1: (5.0, 1.0, 0, 0)},
        "sell": {1: (5.0, 1.0, 0, 0)}}}
    for m in (1, 32):
        assert isinstance(sparsekit.pack(bert_ffn_up, m=m, model=cheap),
                          (np.ndarray, PackedDenseMatrix))
        assert sparsekit.explain(bert_ffn_up, m=m)["choice"] != "dense"
