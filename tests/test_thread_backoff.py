"""The thread backoff's switches and report: SPARSEKIT_THREAD_BACKOFF, the
setter, and sparsekit.info()["thread_backoff"]. The policy itself (one thread
inside the window, the window's growth and reset) is tested in C with a
simulated late start and a moved clock: kernels/tests/test_thread_backoff.c."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import sparsekit


@pytest.fixture
def backoff_on():
    before = sparsekit.get_thread_backoff()
    sparsekit.set_thread_backoff(True)
    yield
    sparsekit.set_thread_backoff(before)


def _info_in_subprocess(**env):
    code = "import sparsekit, json; print(json.dumps(sparsekit.info()['thread_backoff']))"
    return subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env),
                          capture_output=True, text=True)


def test_info_fields(backoff_on):
    b = sparsekit.info()["thread_backoff"]
    assert set(b) == {"enabled", "active", "last_late_us", "seconds_since_last_late"}
    assert b["enabled"] is True and isinstance(b["active"], bool)
    assert b["last_late_us"] >= 0.0
    assert b["seconds_since_last_late"] is None or b["seconds_since_last_late"] >= 0.0
    assert (b["seconds_since_last_late"] is None) == (b["last_late_us"] == 0.0)


def test_setter_round_trip_and_types(backoff_on):
    sparsekit.set_thread_backoff(False)
    b = sparsekit.info()["thread_backoff"]
    assert sparsekit.get_thread_backoff() is False and b["enabled"] is False
    assert b["active"] is False  # off: never one thread because of it
    sparsekit.set_thread_backoff(np.True_)
    assert sparsekit.get_thread_backoff() is True
    for bad in (1, "off", None):
        with pytest.raises(TypeError, match="on"):
            sparsekit.set_thread_backoff(bad)


def test_results_do_not_depend_on_the_backoff(backoff_on):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((300, 256)).astype(np.float32)
    w[rng.random(w.shape) < 0.9] = 0
    x = rng.standard_normal((64, 256)).astype(np.float32)
    csr = sparsekit.CSRMatrix.from_dense(w)
    before = sparsekit.get_num_threads()
    try:
        sparsekit.set_num_threads(2)
        on = sparsekit.linear(x, csr)
        sparsekit.set_thread_backoff(False)
        off = sparsekit.linear(x, csr)
    finally:
        sparsekit.set_num_threads(before)
    np.testing.assert_array_equal(on, off)


def test_environment_variable():
    default = _info_in_subprocess(SPARSEKIT_THREAD_BACKOFF="")
    assert default.returncode == 0, default.stderr
    assert json.loads(default.stdout)["enabled"] is True
    for value, enabled in (("0", False), ("off", False), ("1", True), ("on", True)):
        r = _info_in_subprocess(SPARSEKIT_THREAD_BACKOFF=value)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["enabled"] is enabled, value
    bad = _info_in_subprocess(SPARSEKIT_THREAD_BACKOFF="maybe")
    assert bad.returncode != 0 and "SPARSEKIT_THREAD_BACKOFF" in bad.stderr


def test_cli_reports_it():
    r = subprocess.run([sys.executable, "-m", "sparsekit", "info"], capture_output=True,
                       text=True, env=dict(os.environ, SPARSEKIT_THREAD_BACKOFF="0"))
    assert r.returncode == 0, r.stderr
    assert "thread backoff: off" in r.stdout
