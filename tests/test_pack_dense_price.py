"""sparsekit.pack with dense fp32 priced as the packed GEMM (branch packrefit):
the decisions follow the measured tables (no wall times here), "dense" is timed
as pack returns it, CSRMatrix's gap term, and the fitting helpers (medians of
runs, re-fitting some Ms only)."""
import ast
import contextlib
import importlib
import io
import json
import types

import numpy as np
import pytest

import sparsekit
from sparsekit._dense_f32 import PackedDenseMatrix, wanted
from sparsekit._native import core

P = importlib.import_module("sparsekit.pack")  # the module (sparsekit.pack is the function)
M = importlib.import_module("sparsekit._pack_measure")

BERT = ((3072, 768), (768, 3072))


def _crossovers(table):
    """{(shape, M): lowest sparsity from which pack picks CSRMatrix} of a table."""
    return {(r["shape"], r["m"]): r["csr"] for r in P.crossover_table(table, ms=(32, 128))}


def _weight(rng, n, k, s):
    w = rng.standard_normal((n, k)).astype(np.float32)
    w.flat[rng.choice(w.size, int(round(s * w.size)), replace=False)] = 0
    return w


@pytest.mark.parametrize("name", ["MEASURED", "MEASURED_AVX2"])
def test_csr_crossover_at_large_m_is_above_the_bytes_rule(name):
    """With dense the packed GEMM the crossover at M >= 32 comes from the
    model, not from CSR_BYTES_MARGIN's 1/3 (the NumPy-priced tables had it at
    0.34-0.42): measured, the packed GEMM beats CSR on the BERT shapes at 40%."""
    for (shape, m), s in _crossovers(getattr(P, name)).items():
        assert s is not None and s > 0.4, (shape, m, s)


@pytest.mark.parametrize("m", [32, 128])
@pytest.mark.parametrize("shape", BERT)
def test_weight_below_the_measured_crossover_is_packed_dense(rng, shape, m):
    """A BERT weight a little below the table's crossover is dense fp32, held
    the way pack holds dense (PackedDenseMatrix where wanted()), and the model
    says why; a little above it is sparse."""
    n, k = shape
    s_c = _crossovers(P.MEASURED)[(f"{n}x{k}", m)]
    w = _weight(rng, n, k, s_c - 0.03)
    ex = sparsekit.explain(w, m=m, model=P.MEASURED)
    assert ex["choice"] == "dense", ex["reason"]
    assert ex["predicted_us"]["dense"] < ex["predicted_us"]["csr"]
    p = sparsekit.pack(w, m=m, model=P.MEASURED)
    assert type(p) is (PackedDenseMatrix if wanted() else np.ndarray)
    w = _weight(rng, n, k, s_c + 0.03)
    assert sparsekit.explain(w, m=m, model=P.MEASURED)["choice"] in ("csr", "csr_shared")


@pytest.mark.parametrize("name, s", [("MEASURED", 0.45), ("MEASURED_AVX2", 0.38)])
def test_bert_weight_the_numpy_priced_table_put_in_csr_is_dense(name, s):
    """The cases the NumPy-priced tables got wrong at M = 32 / 128: they picked
    CSRMatrix from 34-40% (AVX-512) / 34-42% (AVX2) sparsity; with the packed
    GEMM the crossovers are 57-65% / 41-46%."""
    for n, k in BERT:
        for m in (32, 128):
            nnz = round(n * k * (1 - s))
            ex = P._decide(n, k, nnz, 1, 1, None, m, getattr(P, name), sell_isa="avx2")
            assert ex["choice"] == "dense", ex["reason"]


def test_gap_term_is_charged_to_csr_only():
    """The 7th coefficient times nnz * zeros / 1e6 for CSRMatrix (and its
    shared-column layout); the other formats have no such term."""
    n, k, nnz = 300, 200, 15000
    gap = {1: (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0)}
    model = {"coef": {f: gap for f in ("csr", "csr_shared", "dense", "sell")}}
    want = 2.0 * nnz * (n * k - nnz) * 1e-6 * 1e-3
    assert P._predict(model, "csr", 1, n, k, nnz) == pytest.approx(want)
    assert P._predict(model, "csr_shared", 1, n, k, nnz) == pytest.approx(want)
    assert P._predict(model, "dense", 1, n, k, n * k) == 0.0
    assert P._predict(model, "sell", 1, n, k, nnz) == 0.0
    # an unpruned or empty weight has no gaps
    assert P._predict(model, "csr", 1, n, k, n * k) == 0.0


def test_measure_times_dense_as_pack_returns_it(rng):
    """`--measure`'s "dense" is what pack returns for a dense weight on this
    CPU (one definition, pack._dense_weight)."""
    w = rng.standard_normal((40, 24)).astype(np.float32)
    assert M._dense_for_table() == P._table(None, P._running_kernels())[0]
    timed = M._build("dense", w)
    assert type(timed) is type(sparsekit.pack(w, m=128))
    np.testing.assert_array_equal(np.asarray(timed), w)


def test_measure_prices_dense_as_an_avx2_cpu_for_the_avx2_table(rng):
    """Forced to AVX2 (MEASURED_AVX2's kernels), "dense" is timed on the packed
    GEMM's AVX2 kernel, as a CPU without AVX-512 runs it, even where this
    CPU's pack returns a NumPy array (AVX-512 BLAS)."""
    if not core.cpu_supports("avx2"):
        pytest.skip("no AVX2")
    w = rng.standard_normal((40, 24)).astype(np.float32)
    before = sparsekit.get_isa()
    sparsekit.set_isa("avx2")
    try:
        assert M._dense_for_table() == "MEASURED_AVX2"
        assert type(M._build("dense", w)) is PackedDenseMatrix
        want = np.ndarray if core.cpu_supports("avx512") else PackedDenseMatrix
        assert type(sparsekit.pack(w, m=128)) is want
    finally:
        sparsekit.set_isa(before)


def _row(n, k, m, fmt, sec, s=0.0, pattern="unstructured"):
    nnz = round(n * k * (1 - s))
    return dict(n=n, k=k, sparsity=s, pattern=pattern, m=m, fmt=fmt, nnz=nnz,
                nblocks=nnz, ngroups=nnz, sell_groups=1, shared_bytes=None, sec=sec)


def test_median_runs_takes_each_case_once_at_its_median():
    runs = [[_row(64, 64, 1, "dense", 1.0), _row(64, 64, 1, "csr", 5.0)],
            [_row(64, 64, 1, "dense", 3.0), _row(64, 64, 8, "dense", 7.0)],
            [_row(64, 64, 1, "dense", 2.0)]]
    got = M.median_runs(runs)
    assert [(r["m"], r["fmt"], r["sec"]) for r in got] == [
        (1, "dense", 2.0), (1, "csr", 5.0), (8, "dense", 7.0)]


def test_fit_of_some_ms_keeps_the_table_rows_of_the_others(tmp_path):
    """`--fit FILES --formats dense` with timings at M = 32 only: dense's M = 32
    row is fitted (recovering the coefficients the times were made from), its
    other rows and the other formats stay the table's."""
    shapes = ((64, 64), (256, 128), (384, 384), (768, 3072), (1536, 384))
    true = (2.0, 0.25, 3.0, 0.1)  # overhead us; ns per weight, per row, per activation
    raw = [_row(n, k, 32, "dense", (true[0] + (true[1] * n * k + true[2] * n
                                               + true[3] * 32 * k) * 1e-3) * 1e-6)
           for n, k in shapes]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(raw))
    args = types.SimpleNamespace(fit=[str(path)], measure=False, formats="dense")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        M._cli_run(args)
    text = out.getvalue()
    model = ast.literal_eval(text[text.index("MEASURED = ") + 11:text.index("\n#", 1)])
    _, base = P._table(None, P._running_kernels())
    dense = model["coef"]["dense"]
    assert set(dense) == set(base["coef"]["dense"]) | {32}
    assert all(dense[m] == base["coef"]["dense"][m] for m in dense if m != 32)
    assert P._predict(model, "dense", 32, 512, 256, 512 * 256) == pytest.approx(
        true[0] + (true[1] * 512 * 256 + true[2] * 512 + true[3] * 32 * 256) * 1e-3,
        rel=0.02)
    assert model["coef"]["csr"] == base["coef"]["csr"]
