"""ISA dispatch and threads: visible, forceable, errors for missing ISAs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import sparsekit
from sparsekit import _core


def test_info_fields():
    info = sparsekit.info()
    assert info["version"] == sparsekit.__version__
    assert info["cpu_features"]["scalar"] is True
    assert info["isa"] in info["cpu_features"] and info["cpu_features"][info["isa"]]
    assert set(info["kernels"]) >= {"spmm_f32"}
    assert info["num_threads"] >= 1


def test_set_isa_round_trip_and_family_fallback(isa):
    assert sparsekit.get_isa() == isa
    chosen = sparsekit.info()["kernels"]["spmm_f32"]
    order = ["scalar", "avx2", "avx512", "avx512vnni"]
    if isa in order:  # fp32 has no VNNI variant: it falls back to avx512
        assert order.index(chosen) <= order.index(isa)
        assert chosen == ("avx512" if isa == "avx512vnni" else isa)


def test_set_isa_errors():
    with pytest.raises(ValueError, match="^name: .*'sse9'"):
        sparsekit.set_isa("sse9")
    with pytest.raises(TypeError, match="name"):
        sparsekit.set_isa(3)
    missing = [n for n in ("neon", "avx512vnni") if not _core.cpu_supports(n)]
    for name in missing:
        with pytest.raises(RuntimeError, match="does not support"):
            sparsekit.set_isa(name)


def test_set_isa_auto_restores_the_best():
    best = sparsekit.info()["best_isa"]
    try:
        sparsekit.set_isa("scalar")
        assert sparsekit.get_isa() == "scalar"
        sparsekit.set_isa("auto")
        assert sparsekit.get_isa() == best
        assert sparsekit.info()["kernels"]["spmm_f32"] == _core.family_isa("spmm_f32")
        sparsekit.set_isa("scalar")
        sparsekit.set_isa(" AUTO ")  # case and whitespace are ignored, as for SPARSEKIT_ISA
        assert sparsekit.get_isa() == best
    finally:
        sparsekit.set_isa("auto")


def _run(code, **env):
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True)


def test_environment_variables():
    r = _run("import sparsekit, json; print(json.dumps(sparsekit.info()))",
             SPARSEKIT_ISA="scalar", SPARSEKIT_NUM_THREADS="1")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["isa"] == "scalar" and info["kernels"]["spmm_f32"] == "scalar"
    assert info["num_threads"] == 1
    bad = _run("import sparsekit", SPARSEKIT_ISA="bogus")
    assert bad.returncode != 0 and "SPARSEKIT_ISA" in bad.stderr
    auto = _run("import sparsekit; i = sparsekit.info(); print(i['isa'], i['best_isa'])",
                SPARSEKIT_ISA="auto")
    assert auto.returncode == 0, auto.stderr
    isa, best = auto.stdout.split()
    assert isa == best
    if not _core.cpu_supports("neon"):
        r = _run("import sparsekit", SPARSEKIT_ISA="neon")
        assert r.returncode != 0 and "does not support" in r.stderr


def test_cli_info():
    r = subprocess.run([sys.executable, "-m", "sparsekit", "info", "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "spmm_f32" in json.loads(r.stdout)["kernels"]
    r = subprocess.run([sys.executable, "-m", "sparsekit", "info"], capture_output=True,
                       text=True)
    assert "spmm_f32" in r.stdout
    r = subprocess.run([sys.executable, "-m", "sparsekit", "nope"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_num_threads_api():
    before = sparsekit.get_num_threads()
    try:
        sparsekit.set_num_threads(1)
        assert sparsekit.get_num_threads() == 1
        sparsekit.set_num_threads(3)
        assert sparsekit.get_num_threads() == 3
        with pytest.raises(ValueError, match="n"):
            sparsekit.set_num_threads(0)
        with pytest.raises(TypeError, match="n"):
            sparsekit.set_num_threads(1.5)
    finally:
        sparsekit.set_num_threads(before)


def test_threadpoolctl_controls_sparsekit():
    libs = [lib for lib in threadpool_info() if lib.get("internal_api") == "sparsekit"]
    assert len(libs) == 1
    before = sparsekit.get_num_threads()
    with threadpool_limits(limits=1):
        assert sparsekit.get_num_threads() == 1
        w = sparsekit.CSRMatrix.from_dense(np.eye(4, dtype=np.float32))
        np.testing.assert_array_equal(sparsekit.linear(np.eye(4, dtype=np.float32), w),
                                      np.eye(4))
    assert sparsekit.get_num_threads() == before
