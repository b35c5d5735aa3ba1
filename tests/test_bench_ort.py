"""Every ONNX Runtime session the bench layer builds has pool threads that do
not spin between runs: spinning threads hold the second core during the next
system's timing in interleaved 2-thread rounds."""
import types

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from sparsekit.bench import systems  # noqa: E402
from sparsekit.cli import main  # noqa: E402

SPIN_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def spinning(opts):
    return {k: opts.get_session_config_entry(k) for k in SPIN_KEYS}


def test_session_options_do_not_spin():
    opts = systems.ort_session_options(2)
    assert spinning(opts) == dict.fromkeys(SPIN_KEYS, "0")
    assert opts.intra_op_num_threads == 2 and opts.inter_op_num_threads == 1


@pytest.fixture
def built_sessions(monkeypatch):
    """The SessionOptions of every InferenceSession created while the test runs."""
    seen = []
    real = ort.InferenceSession

    def recording(model, sess_options=None, *args, **kwargs):
        seen.append(sess_options)
        return real(model, sess_options, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    return seen


def test_peer_systems_do_not_spin(built_sessions):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 10)).astype(np.float32)
    x = rng.standard_normal((3, 10)).astype(np.float32)
    for system in (systems.OrtMatMul(), systems.OrtDynamicInt8()):
        prepared = system.prepare(w, x, 2)
        assert prepared.to_numpy(prepared.run()).shape == (3, 6)
    assert len(built_sessions) == 2
    for opts in built_sessions:
        assert spinning(opts) == dict.fromkeys(SPIN_KEYS, "0")
        assert opts.intra_op_num_threads == 2


def test_bench_model_onnx_reference_does_not_spin(tmp_path, monkeypatch, built_sessions):
    import onnx

    w = np.random.default_rng(1).standard_normal((6, 10)).astype(np.float32)
    path = str(tmp_path / "lin.onnx")
    onnx.save(systems._onnx_matmul_model(w), path)
    fake = types.ModuleType("sparsekit.onnx")  # a stand-in importer: only ORT's session matters
    fake.load = lambda p: (lambda x: x @ w.T)
    monkeypatch.setitem(__import__("sys").modules, "sparsekit.onnx", fake)
    assert main(["bench-model", "--onnx", path, "--input-shape", "10", "--repeat", "1",
                 "--batch", "2", "--out", str(tmp_path / "m"), "--no-progress"]) == 0
    assert built_sessions and all(spinning(o) == dict.fromkeys(SPIN_KEYS, "0")
                                  for o in built_sessions)
