"""`sparsekit pack --measure` times at each M only the formats pack can choose
there (timing_plan): which formats are timed together / alone at which M, that
this follows pack's own decision, and the option parsing. No wall times."""
import contextlib
import importlib
import io
import types

import pytest

P = importlib.import_module("sparsekit.pack")  # the module (sparsekit.pack is the function)
M = importlib.import_module("sparsekit._pack_measure")

FP32 = ["dense", "csr", "sell", "csr_shared"]
INT8 = ["spint8", "qdense"]


def _plan(fmts, ms, sell_isa, shared_isa):
    return {m: (together, alone)
            for m, together, alone in M.timing_plan(fmts, ms, sell_isa, shared_isa)}


def test_avx512_plan_keeps_sell_out_of_the_large_m_interleave():
    """AVX-512: SlicedEllMatrix is timed with the others at M = 1 / 8 only,
    alone at M = 32 (the row pack interpolates M = 9..16 from) and not at
    M = 128; the shared-column layout from M = 8 (M = 1 runs the spmv kernel)."""
    plan = _plan(FP32 + INT8, (1, 8, 32, 128), "avx512", "avx512")
    assert plan[1] == (["dense", "csr", "sell", "spint8", "qdense"], [])
    assert plan[8] == (["dense", "csr", "sell", "csr_shared", "spint8", "qdense"], [])
    assert plan[32] == (["dense", "csr", "csr_shared", "spint8", "qdense"], ["sell"])
    assert plan[128] == (["dense", "csr", "csr_shared", "spint8", "qdense"], [])


def test_avx2_plan_times_sell_up_to_m_2():
    """AVX2: SlicedEllMatrix is a candidate up to SELL_MAX_M_AVX2 = 2, so with
    M = 1, 2, 4 ... it is timed at M = 1 and 2 only; with the default Ms alone
    at M = 8 (pack interpolates M = 2 between 1 and 8). No shared layout."""
    plan = _plan(FP32, (1, 2, 4, 8, 32, 128), "avx2", "avx2")
    assert plan[1] == (["dense", "csr", "sell"], [])
    assert plan[2] == (["dense", "csr", "sell"], [])
    assert all(plan[m] == (["dense", "csr"], []) for m in (4, 8, 32, 128))
    plan = _plan(FP32, M.MEASURE_MS, "avx2", "avx2")
    assert plan[8] == (["dense", "csr"], ["sell"])
    assert plan[32] == plan[128] == (["dense", "csr"], [])


@pytest.mark.parametrize("sell_isa,shared_isa", [("avx512", "avx512"), ("avx2", "avx2"),
                                                 ("scalar", "scalar")])
def test_plan_is_what_pack_decides_between(sell_isa, shared_isa):
    """At every M the formats timed together are exactly those pack's
    _decide predicts for a weight every rule admits (slots counted, a
    shared-column layout built, 70% sparse): the plan follows pack's rules,
    not a list of its own."""
    n, k = 768, 3072
    nnz = int(0.3 * n * k)
    for m in range(1, 161):
        together = _plan(FP32 + INT8, (m,), sell_isa, shared_isa)[m][0]
        for quantize, fmts in ((None, FP32), ("int8", INT8)):
            if quantize == "int8" and "qdense" not in P._candidates("int8"):
                fmts = ["spint8"]
            ex = P._decide(n, k, nnz, nnz, nnz // 4, quantize, m, P.MEASURED, "avx512vnni",
                           slots=2 * nnz, sell_isa=sell_isa, shared_bytes=12 * nnz,
                           shared_isa=shared_isa)
            assert set(ex["predicted_us"]) == {f for f in together if f in fmts}, (m, quantize)


def test_formats_and_ms_narrow_the_plan():
    """--formats / --ms: only the formats and Ms asked for; the refit's hand
    command (M >= 32 without SlicedEllMatrix) is now the plain plan's."""
    plan = _plan(["dense", "csr", "csr_shared"], (32, 128), "avx512", "avx512")
    assert plan == {32: (["dense", "csr", "csr_shared"], []),
                    128: (["dense", "csr", "csr_shared"], [])}
    # the lowest M timed: pack clamps the Ms below it to its row
    assert _plan(["sell"], (32,), "avx512", "avx512") == {32: ([], ["sell"])}
    assert _plan(["sell", "csr"], (1, 8), "avx512", "avx512") == {
        1: (["sell", "csr"], []), 8: (["sell", "csr"], [])}
    assert _plan(["sell"], (1, 8, 128), "avx2", "avx2") == {
        1: (["sell"], []), 8: ([], ["sell"]), 128: ([], [])}


def test_plan_rejects_unknown_formats_and_ms():
    with pytest.raises(ValueError, match="formats: unknown format 'foo'"):
        M.timing_plan(["dense", "foo"], (1,), "avx512", "avx512")
    with pytest.raises(ValueError, match="ms:"):
        M.timing_plan(["dense"], (1, 0), "avx512", "avx512")


def test_measure_raw_times_each_group_in_its_own_interleave(monkeypatch):
    """measure_raw hands _time_formats the plan's groups (timings replaced:
    only which formats are timed together is checked) and records each."""
    pytest.importorskip("sparsekit._core")
    calls = []

    def fake_time(built, x, reps):
        calls.append((x.shape[0], list(built)))
        return {f: 1e-6 for f in built}

    monkeypatch.setattr(M, "_time_formats", fake_time)
    monkeypatch.setattr(M, "_sell_isa", lambda: "avx512")
    raw = M.measure_raw(shapes=((16, 32),), sparsities=(0.5,), ms=(1, 32, 128), reps=1,
                        fmts=["dense", "csr", "sell"])
    assert calls == [(1, ["dense", "csr", "sell"]), (32, ["dense", "csr"]), (32, ["sell"]),
                     (128, ["dense", "csr"]),  # unstructured, then 1x4 (no dense)
                     (1, ["csr", "sell"]), (32, ["csr"]), (32, ["sell"]), (128, ["csr"])]
    assert [(r["m"], r["fmt"]) for r in raw] == [(m, f) for m, fs in calls for f in fs]


def test_measure_options_parse_the_command_line():
    args = types.SimpleNamespace(shapes="3072x768, 64x64", ms="32,128", formats="dense,csr",
                                 sparsities="0.5,0.9", patterns="unstructured")
    assert M._measure_options(args) == dict(
        shapes=((3072, 768), (64, 64)), sparsities=(0.5, 0.9), ms=(32, 128),
        fmts=["dense", "csr"], patterns=("unstructured",), rotation=M.ROTATION)
    default = types.SimpleNamespace(shapes=None, ms=None, formats=None, sparsities=None,
                                    patterns=None)
    assert M._measure_options(default) == dict(
        shapes=M.MEASURE_SHAPES, sparsities=M.MEASURE_SPARSITIES, ms=M.MEASURE_MS,
        fmts=None, patterns=("unstructured", "1x4"), rotation=M.ROTATION)
    with pytest.raises(ValueError, match="--shapes"):
        M._measure_options(types.SimpleNamespace(**dict(vars(default), shapes="3072")))
    with pytest.raises(ValueError, match="--ms"):
        M._measure_options(types.SimpleNamespace(**dict(vars(default), ms="32,x")))


def test_plan_option_prints_the_plan_and_times_nothing(monkeypatch):
    monkeypatch.setattr(M, "_time_formats", lambda *a: pytest.fail("--plan timed something"))
    args = types.SimpleNamespace(fit=None, measure=True, plan=True, shapes=None, ms="1,32",
                                 formats="dense,csr,sell", sparsities=None, patterns=None)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        M._cli_run(args)
    fmts = ["dense", "csr", "sell"]
    assert out.getvalue().splitlines() == M._describe_plan(M.timing_plan(fmts, (1, 32)), fmts)
    assert out.getvalue().splitlines()[1].startswith("M=32: together dense,csr;")
