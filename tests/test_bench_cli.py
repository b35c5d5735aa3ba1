"""`sparsekit bench` end to end on tiny shapes, with and without the optional
peers, plus the pieces a wrong benchmark would come from: weight patterns,
interleaved timing, speedup ratios, the JSON schema and argument errors."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sparsekit.bench import patterns, schema, sweep, timing
from sparsekit.bench.systems import NumpyDense, Prepared, System
from sparsekit.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["bench", "--shape", "16,32,4", "--repeat", "2", "--min-time", "0.0001",
        "--sparsity", "0.5,0.9", "--pattern", "unstructured,2:4,1x4", "--no-progress"]


def importable(name):
    try:
        __import__(name)
        return True
    except Exception:
        return False


def load_results(out):
    with open(os.path.join(out, "results.json")) as f:
        doc = json.load(f)
    schema.validate(doc)
    return doc


def check_ratios(doc):
    """Each group's baseline is its fastest dense fp32 system, at exactly 1x."""
    groups = {}
    for r in doc["results"]:
        groups.setdefault((r["N"], r["K"], r["M"], r["threads"]), []).append(r)
    for rows in groups.values():
        dense = [r for r in rows if r["format"] == "dense" and r["precision"] == "fp32"]
        best = min(dense, key=lambda r: r["median_s"])
        for r in rows:
            assert r["baseline_system"] == best["system"]
            assert r["speedup"] == pytest.approx(best["median_s"] / r["median_s"])
            assert r["speedup_low"] <= r["speedup"] <= r["speedup_high"]
            assert r["q25_s"] <= r["median_s"] <= r["q75_s"]
            assert r["min_s"] <= r["q25_s"] and r["q75_s"] <= r["max_s"]


# ---- end to end ---------------------------------------------------------------------
def test_bench_all_installed_peers(tmp_path, capsys):
    out = str(tmp_path / "o")
    assert main(TINY + ["--out", out]) == 0
    doc = load_results(out)
    systems = {r["system"] for r in doc["results"]}
    expected = {"sparsekit-dense-fallback", "sparsekit-csr", "numpy"}
    if importable("scipy.sparse"):
        expected.add("scipy-csr")
    if importable("torch"):
        expected |= {"torch", "torch-sparse-csr", "torch-dynamic-int8"}
    if importable("onnxruntime") and importable("onnx"):
        expected |= {"ort", "ort-dynamic-int8"}
    import sparsekit  # formats from the other kernel issues, when this build has them
    for attr, names in (("QuantizedMatrix", {"sparsekit-int8"}),
                        ("SparseInt8Matrix", {"sparsekit-sparse-int8"}),
                        ("pack", {"sparsekit-pack", "sparsekit-pack-int8"})):
        if hasattr(sparsekit, attr):
            expected |= names
    assert expected <= systems
    assert all(r["detail"] for r in doc["results"] if r["library"] == "sparsekit")
    assert all(r["check"] == "ok" for r in doc["results"]), doc["results"]
    check_ratios(doc)
    # sparse systems once per (pattern, sparsity); 2:4 only at its own 50%
    csr = sorted((r["pattern"], r["sparsity"]) for r in doc["results"]
                 if r["system"] == "sparsekit-csr")
    assert csr == [("1x4", 0.5), ("1x4", 0.9), ("2:4", 0.5),
                   ("unstructured", 0.5), ("unstructured", 0.9)]
    assert doc["machine"]["isa"] and doc["machine"]["versions"]["numpy"] == np.__version__
    assert doc["command"][:2] == ["sparsekit", "bench"]
    with open(os.path.join(out, "speedup.png"), "rb") as f:
        assert f.read(8) == PNG_MAGIC
    md = open(os.path.join(out, "results.md")).read()
    assert "## Speedup over the fastest dense fp32" in md and doc["machine"]["cpu"] in md
    assert "| sparsekit-csr | csr | unstructured |" in md
    assert "Speedup over the fastest dense fp32" in capsys.readouterr().out


def test_bench_peers_none_runs_sparsekit_only(tmp_path):
    out = str(tmp_path / "o")
    assert main(TINY + ["--peers", "none", "--format", "csr", "--out", out]) == 0
    doc = load_results(out)
    assert {r["library"] for r in doc["results"]} == {"sparsekit"}
    # dense fp32 is measured even when not asked for: it is the baseline
    assert {r["system"] for r in doc["results"]} == {"sparsekit-dense-fallback",
                                                     "sparsekit-csr"}
    check_ratios(doc)


BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = {blocked!r}
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError("blocked for the test: " + name)
    sys.meta_path.insert(0, Blocker())
    from sparsekit.cli import main
    sys.exit(main({argv!r}))
""")


def run_blocked(blocked, argv):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = BLOCKER.format(blocked=sorted(blocked), argv=argv)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)


def test_bench_without_optional_packages(tmp_path):
    """No torch, onnx, onnxruntime, scipy, matplotlib or tqdm: still runs, says what it
    skipped, writes md + json, no plot, and falls back to a plain progress line."""
    out = str(tmp_path / "o")
    argv = [a for a in TINY if a != "--no-progress"] + ["--out", out]
    proc = run_blocked({"torch", "onnx", "onnxruntime", "scipy", "matplotlib", "tqdm"}, argv)
    assert proc.returncode == 0, proc.stderr
    doc = load_results(out)
    assert {r["library"] for r in doc["results"]} == {"sparsekit", "numpy"}
    skipped = {s["name"]: s["reason"] for s in doc["skipped_systems"]}
    assert "torch" in skipped["torch-sparse-csr"] and "scipy" in skipped["scipy-csr"]
    assert "onnx" in skipped["ort"]
    assert not os.path.exists(os.path.join(out, "speedup.png"))
    assert "matplotlib" in proc.stderr
    assert "sparsekit bench: " in proc.stderr and "(100%)" in proc.stderr
    assert "torch-sparse-csr" in open(os.path.join(out, "results.md")).read()  # not measured


def test_named_peer_missing_is_a_usage_error():
    proc = run_blocked({"torch"}, TINY + ["--peers", "numpy,torch"])
    assert proc.returncode == 2
    assert "--peers" in proc.stderr and "torch" in proc.stderr


def test_openblas_environment_is_noted(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    out = str(tmp_path / "o")
    assert main(TINY + ["--peers", "none", "--format", "dense", "--out", out]) == 0
    doc = load_results(out)
    assert any("env -u OPENBLAS_CORETYPE" in w for w in doc["warnings"])
    assert "OPENBLAS_CORETYPE=Haswell" in open(os.path.join(out, "results.md")).read()
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    monkeypatch.delenv("OPENBLAS_L2_SIZE", raising=False)
    assert main(TINY + ["--peers", "none", "--format", "dense", "--out", out]) == 0
    assert not any("OPENBLAS" in w for w in load_results(out)["warnings"])


@pytest.mark.parametrize("argv, option", [
    (["--sparsity", "1.5"], "--sparsity"),
    (["--sparsity", "half"], "--sparsity"),
    (["--shape", "16,32"], "--shape"),
    (["--shape", "16,0,4"], "--shape"),
    (["--pattern", "3:2"], "--pattern"),
    (["--pattern", "diagonal"], "--pattern"),
    (["--format", "coo"], "--format"),
    (["--threads", "0"], "--threads"),
    (["--peers", "tensorflow"], "--peers"),
    (["--repeat", "0"], "--repeat"),
    (["--preset", "gpt2"], "--preset"),
    (["--min-time", "-1"], "--min-time"),
])
def test_bad_arguments_are_usage_errors(argv, option, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench"] + argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: sparsekit bench" in err and f"argument {option}" in err


# ---- the parts ------------------------------------------------------------------------
def test_patterns_have_their_structure():
    rng = np.random.default_rng(0)
    w = patterns.pruned_weight(37, 53, 0.9, "unstructured", rng)
    assert np.count_nonzero(w == 0) == round(0.9 * 37 * 53)
    w = patterns.pruned_weight(9, 18, 0.0, "2:4", rng)  # K=18: a tail group of 2
    groups = (w[:, :16] != 0).reshape(9, 4, 4).sum(axis=2)
    assert (groups == 2).all() and ((w[:, 16:] != 0).sum(axis=1) == 2).all()
    w = patterns.pruned_weight(5, 18, 0.5, "1x4", rng)
    blocks = [w[:, c:c + 4] for c in range(0, 18, 4)]
    for b in blocks:  # every 1x4 block (tail: 1x2) is all zero or all nonzero
        nz = (b != 0).sum(axis=1)
        assert set(nz.tolist()) <= {0, b.shape[1]}
    zero_blocks = sum(int((b == 0).all(axis=1).sum()) for b in blocks)
    assert zero_blocks == round(0.5 * 5 * 5)
    assert patterns.fixed_sparsity("2:4") == 0.5 and patterns.fixed_sparsity("1x4") is None
    with pytest.raises(ValueError, match="pattern"):
        patterns.parse_pattern("4:4")


def test_sparsity_points_give_nm_its_own_level():
    pts = sweep.sparsity_points(["unstructured", "1:4"], [0.5, 0.9])
    assert pts == [("unstructured", 0.5), ("unstructured", 0.9), ("1:4", 0.75)]


def test_interleaved_rounds_cover_every_runner():
    calls = {"a": 0, "b": 0}

    def make(key):
        def run():
            calls[key] += 1
        return run
    samples, per = timing.measure_interleaved([make("a"), make("b")], 3, 1e-5,
                                              np.random.default_rng(0))
    assert [s.size for s in samples] == [3, 3] and all(s.min() > 0 for s in samples)
    # 2 warm-up/calibration calls, then 3 samples of per[i] calls each
    assert calls["a"] == 2 + 3 * per[0] and calls["b"] == 2 + 3 * per[1]
    stats = timing.summarize(np.array([4.0, 1.0, 3.0, 2.0, 100.0]))
    assert stats["median_s"] == 3.0 and stats["min_s"] == 1.0 and stats["max_s"] == 100.0
    assert stats["q25_s"] == 2.0 and stats["q75_s"] == 4.0


class _Broken(System):
    name, library, format = "broken", "test", "csr"

    def prepare(self, w, x, threads):
        raise RuntimeError("kernel exploded")


class _Wrong(System):
    name, library, format = "wrong", "test", "csr"

    def prepare(self, w, x, threads):
        return Prepared(lambda: x @ w.T + 1.0, lambda y: y, None)


def test_failing_and_wrong_systems_are_reported_not_hidden():
    from sparsekit.bench.shapes import custom_layer

    results, errors = sweep.run_sweep([custom_layer(8, 12, 3)], [("unstructured", 0.5)], [1],
                                      [NumpyDense(), _Broken(), _Wrong()], repeat=2,
                                      min_sample=1e-5, show_progress=False)
    assert len(errors) == 1 and "kernel exploded" in errors[0][1] and "broken" in errors[0][0]
    by = {r["system"]: r for r in results}
    assert set(by) == {"numpy", "wrong"}
    assert by["numpy"]["check"] == "ok" and by["wrong"]["check"] == "FAIL"


def test_busy_machine_is_noted():
    from sparsekit.bench.machine import load_warnings

    assert load_warnings({"loadavg": [0.3, 0.2, 0.1], "usable_cpus": 2}) == []
    note = load_warnings({"loadavg": [5.3, 3.0, 2.0], "usable_cpus": 2})
    assert len(note) == 1 and "5.30 on 2 CPUs" in note[0]


def test_schema_validator_rejects_broken_documents(tmp_path):
    out = str(tmp_path / "o")
    assert main(TINY + ["--peers", "none", "--format", "dense", "--out", out]) == 0
    doc = load_results(out)
    bad = json.loads(json.dumps(doc))
    del bad["results"][0]["median_s"]
    with pytest.raises(ValueError, match=r"results\[0\].*median_s"):
        schema.validate(bad)
    bad = json.loads(json.dumps(doc))
    bad["results"][0]["format"] = "coo"
    with pytest.raises(ValueError, match="format"):
        schema.validate(bad)
    bad = json.loads(json.dumps(doc))
    bad["settings"]["repeat"] = "2"
    with pytest.raises(ValueError, match="repeat"):
        schema.validate(bad)


def test_threads_sweep_and_pinning(tmp_path):
    import sparsekit

    before = sparsekit.get_num_threads()
    with timing.pin_threads(1):
        assert sparsekit.get_num_threads() == 1
        if importable("torch"):
            import torch
            assert torch.get_num_threads() == 1
    assert sparsekit.get_num_threads() == before
    out = str(tmp_path / "o")
    assert main(TINY + ["--peers", "none", "--format", "csr", "--threads", "1,2",
                        "--out", out]) == 0
    doc = load_results(out)
    assert {r["threads"] for r in doc["results"]} == {1, 2}
    check_ratios(doc)


def test_cold_cache_flushes_before_every_timed_call(tmp_path):
    flushes, calls = [], []
    samples, per = timing.measure_interleaved(
        [lambda: calls.append(1)], 2, 1.0, np.random.default_rng(0),
        flush=lambda: flushes.append(1))
    # calibration calls run unflushed; every timed call has one flush before it
    assert per == [timing.COLD_CALLS_PER_SAMPLE]
    assert len(flushes) == 2 * per[0] and len(calls) == 2 + 2 * per[0]
    out = str(tmp_path / "o")
    assert main(TINY + ["--peers", "none", "--format", "csr", "--cold", "--out", out]) == 0
    doc = load_results(out)
    assert doc["settings"]["cold_cache"] is True
    assert all(r["calls_per_sample"] <= timing.COLD_CALLS_PER_SAMPLE for r in doc["results"])
    assert "--cold" in open(os.path.join(out, "results.md")).read()
