"""Edge cases found by reviewing the public API as a user would call it:
argument names in error messages, empty weights, file paths, CLI errors."""
import os
import subprocess
import sys

import numpy as np
import pytest

import sparsekit
from sparsekit import runtime as R

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra)
    return env


def test_quantize_rows_static_errors_name_its_own_arguments():
    x = np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match="^scale: "):
        sparsekit.quantize_rows(x, scale=-1.0, zero_point=0)
    with pytest.raises(TypeError, match="^scale: "):
        sparsekit.quantize_rows(x, scale=np.ones(2), zero_point=0)
    with pytest.raises(ValueError, match="^zero_point: "):
        sparsekit.quantize_rows(x, scale=1.0, zero_point=-1)
    # quantized_linear keeps its prefixed names
    qw = sparsekit.QuantizedMatrix.from_float(np.ones((3, 4), np.float32))
    xq = np.zeros((2, 4), np.uint8)
    with pytest.raises(ValueError, match="^out_scale: "):
        sparsekit.quantized_linear(xq, 1.0, 0, qw, out_scale=0.0, out_zero_point=0)


def test_int8_matmul_type_error_lists_every_accepted_weight():
    xq = np.zeros((2, 4), np.uint8)
    w = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match="QuantizedMatrix or SparseInt8Matrix.*CSRMatrix"):
        sparsekit.int8_matmul(xq, 0, sparsekit.CSRMatrix.from_dense(w))
    with pytest.raises(TypeError, match="QuantizedMatrix or SparseInt8Matrix.*ndarray"):
        sparsekit.int8_matmul(xq, 0, w)


@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (0, 0)])
@pytest.mark.parametrize("quantize", [None, "int8"])
def test_pack_and_explain_empty_weight(shape, quantize):
    w = np.zeros(shape, np.float32)
    packed = sparsekit.pack(w, quantize=quantize)
    assert packed.shape == shape
    assert isinstance(sparsekit.explain(w, quantize=quantize)["reason"], str)
    x = np.ones((3, shape[1]), np.float32)
    np.testing.assert_array_equal(sparsekit.linear(x, packed), np.zeros((3, shape[0])))


def _tiny_model():
    w = np.eye(4, dtype=np.float32)
    return R.Model([R.Linear(sparsekit.CSRMatrix.from_dense(w)), R.ReLU()])


@pytest.mark.parametrize("path", [0, 1, 2, True, None, 1.5])
def test_load_and_save_refuse_non_paths(path, tmp_path):
    # open(0) would read stdin (and close it afterwards): an int is not a path
    with pytest.raises(TypeError, match="^path: "):
        sparsekit.load(path)
    with pytest.raises(TypeError, match="^path: "):
        sparsekit.save(_tiny_model(), path)


def test_save_load_accept_pathlike_and_bytes(tmp_path):
    m = _tiny_model()
    x = np.arange(8, dtype=np.float32).reshape(2, 4) - 3
    for path in (tmp_path / "a.spk", os.fsencode(tmp_path / "b.spk")):
        sparsekit.save(m, path)
        np.testing.assert_array_equal(sparsekit.load(path)(x), m(x))


def test_bench_model_bad_files_are_usage_errors(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model at all" * 10)
    for option in ("--sparsekit", "--onnx"):
        if option == "--onnx":
            pytest.importorskip("onnxruntime")
            pytest.importorskip("onnx")
        r = subprocess.run([sys.executable, "-m", "sparsekit", "bench-model", option, str(junk),
                            "--input-shape", "4", "--no-progress"],
                           capture_output=True, text=True, env=_env(), timeout=120)
        assert r.returncode == 2, r.stderr
        assert f"error: argument {option}:" in r.stderr
        assert "Traceback" not in r.stderr


def test_keras_without_its_backend_says_which_backend():
    import importlib.util

    if importlib.util.find_spec("keras") is None:
        pytest.skip("Keras is not installed")
    code = ("import importlib.util, sys\n"
            "if importlib.util.find_spec('tensorflow') is not None: sys.exit(3)\n"
            "try:\n    import sparsekit.keras\nexcept ImportError as e:\n"
            "    print(e); sys.exit(0)\nsys.exit(4)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=_env(KERAS_BACKEND="tensorflow"), timeout=120)
    if r.returncode == 3:
        pytest.skip("TensorFlow is installed: its backend loads")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "KERAS_BACKEND" in r.stdout and "sparsekit[keras]" not in r.stdout


def test_missing_numba_and_scipy_name_what_to_install():
    code = ("import sys\nsys.modules['numba'] = None\nsys.modules['scipy'] = None\n"
            "import numpy as np, sparsekit\n"
            "w = sparsekit.CSRMatrix.from_dense(np.eye(3, dtype=np.float32))\n"
            "for f in (lambda: sparsekit.linear(np.ones((2, 3), np.float32), w, "
            "backend='numba'), w.to_scipy):\n"
            "    try:\n        f()\n    except ImportError as e:\n        print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert 'pip install "sparsekit[numba]"' in r.stdout and "needs SciPy" in r.stdout


def test_onnx_load_bad_sources(tmp_path):
    pytest.importorskip("onnx")
    import sparsekit.onnx as sko

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"junk" * 10)
    for src in (str(junk), junk, junk.read_bytes()):
        with pytest.raises(ValueError, match="not a valid ONNX model"):
            sko.load(src)
    with open(junk, "rb") as f:
        with pytest.raises(ValueError, match="not a valid ONNX model"):
            sko.load(f)
    for src in (0, 2, None, 1.5):  # open(0) would read stdin
        with pytest.raises(TypeError, match="^path_or_model: "):
            sko.load(src)


@pytest.mark.parametrize("per_channel", [True, False])
def test_int8_formats_quantize_and_validate_alike(per_channel):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((9, 13)).astype(np.float32)
    w[rng.random(w.shape) < 0.6] = 0
    w[3] = 0  # an all-zero channel
    qm = sparsekit.QuantizedMatrix.from_float(w, per_channel=per_channel)
    si = sparsekit.SparseInt8Matrix.from_float(w, per_channel=per_channel)
    np.testing.assert_array_equal(qm.q, si.q)
    np.testing.assert_array_equal(qm.scale, si.scale)
    assert qm.per_channel == si.per_channel == per_channel
    bad = [(np.zeros((2, 3)), 1.0, TypeError), (np.full((2, 3), -128), 1.0, ValueError),
           (np.zeros((2, 3), np.int8), [1.0, 2.0, 3.0], ValueError),
           (np.zeros((2, 3), np.int8), [1.0, np.nan], ValueError),
           (np.zeros((2, 3), np.int8), "x", TypeError)]
    for q, scale, exc in bad:
        msgs = []
        for cls in (sparsekit.QuantizedMatrix, sparsekit.SparseInt8Matrix):
            with pytest.raises(exc) as info:
                cls.from_int8(q, scale)
            msgs.append(str(info.value))
        assert msgs[0] == msgs[1] and msgs[0].split(":")[0] in ("q", "scale")


@pytest.mark.parametrize("command", ["bench", "bench-model"])
@pytest.mark.parametrize("option,value", [("--sparsity", "1.2"), ("--sparsity", "x"),
                                          ("--threads", "0"), ("--repeat", "-1"),
                                          ("--min-time", "0")])
def test_bench_commands_check_shared_options_alike(command, option, value, capsys):
    from sparsekit.cli import build_parser

    extra = ["--model", "digits"] if command == "bench-model" else []
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([command, *extra, option, value])
    assert info.value.code == 2
    assert f"argument {option}:" in capsys.readouterr().err


def test_calibrate_leaves_no_hooks_behind_even_on_error():
    torch = pytest.importorskip("torch")
    from sparsekit import compress

    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    compress.calibrate(model, [torch.randn(4, 8)])
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(RuntimeError):  # wrong input width: the model itself raises
        compress.calibrate(model, [torch.randn(4, 7)])
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("k", [1, 13])
def test_reversed_and_broadcast_rows_are_copied_not_refused(k):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((9, k)).astype(np.float32)
    x = rng.standard_normal((6, k)).astype(np.float32)
    xb = np.broadcast_to(x[:1], (6, k))  # row stride 0
    for W in (sparsekit.CSRMatrix.from_dense(w), sparsekit.QuantizedMatrix.from_float(w),
              sparsekit.SparseInt8Matrix.from_float(w)):
        np.testing.assert_array_equal(sparsekit.linear(x[::-1], W),
                                      sparsekit.linear(x, W)[::-1])
        np.testing.assert_array_equal(sparsekit.linear(xb, W),
                                      sparsekit.linear(np.ascontiguousarray(xb), W))
    xq, sc, zp = sparsekit.quantize_rows(x)
    for a, b in zip(sparsekit.quantize_rows(x[::-1]), (xq, sc, zp)):
        np.testing.assert_array_equal(a, b[::-1])
    np.testing.assert_array_equal(sparsekit.quantize_rows(xb)[0],
                                  np.repeat(sparsekit.quantize_rows(x[:1])[0], 6, 0))
    qw = sparsekit.QuantizedMatrix.from_float(w)
    np.testing.assert_array_equal(sparsekit.int8_matmul(xq[::-1], zp[::-1], qw),
                                  sparsekit.int8_matmul(xq, zp, qw)[::-1])
    xqb = np.broadcast_to(xq[:1], (6, k))
    np.testing.assert_array_equal(sparsekit.int8_matmul(xqb, int(zp[0]), qw),
                                  sparsekit.int8_matmul(np.repeat(xq[:1], 6, 0), int(zp[0]), qw))
    np.testing.assert_array_equal(sparsekit.quantized_linear(xq[::-1], sc[::-1], zp[::-1], qw),
                                  sparsekit.quantized_linear(xq, sc, zp, qw)[::-1])


def test_set_num_threads_numpy_ints_and_range():
    before = sparsekit.get_num_threads()
    try:
        sparsekit.set_num_threads(np.int64(1))
        assert sparsekit.get_num_threads() == 1
        with pytest.raises(ValueError, match="^n: "):
            sparsekit.set_num_threads(10**10)
        with pytest.raises(TypeError, match="^n: "):
            sparsekit.set_num_threads(np.float64(2))
        with pytest.raises(TypeError, match="^n: "):
            sparsekit.set_num_threads(np.True_)
    finally:
        sparsekit.set_num_threads(before)


def test_linear_with_a_scipy_matrix_says_how_to_convert():
    sp = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="CSRMatrix.from_scipy"):
        sparsekit.linear(np.ones((2, 3), np.float32), sp.random(4, 3, density=0.5, format="csr"))


def test_nm_pattern_error_names_the_layer():
    torch = pytest.importorskip("torch")
    from sparsekit import compress

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 4 * 4, 4))
    with pytest.raises(ValueError, match=r"layer '0' .*K = 27.*skip=\['0'\]"):
        compress.prune(model, 0.5, pattern="2:4")
    report = compress.prune(model, 0.5, pattern="2:4", skip=["0"])
    assert [row["layer"] for row in report] == ["2"]


def test_int8_matmul_zero_point_errors_same_for_both_formats():
    w = np.ones((3, 8), np.float32)
    xq = np.zeros((2, 8), np.uint8)
    for bad, exc in ((256, ValueError), (-1, ValueError), (1.0, TypeError),
                     (np.array([1, 2, 3]), ValueError), (np.array([True, False]), TypeError)):
        msgs = []
        for W in (sparsekit.QuantizedMatrix.from_float(w), sparsekit.SparseInt8Matrix.from_float(w)):
            with pytest.raises(exc) as info:
                sparsekit.int8_matmul(xq, bad, W)
            msgs.append(str(info.value))
        assert msgs[0] == msgs[1] and msgs[0].startswith("x_zero_point: ")
