"""API problems found by the docs audit, one test (or a few) per fix."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import sparsekit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code, *args):
    """stdout of a fresh interpreter running `code` (or `-m` args) on this checkout."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-c", code] if code is not None else [sys.executable, *args]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


# ---- empty Python lists are index arrays ------------------------------------
def test_empty_lists_are_accepted_as_index_arrays():
    w = sparsekit.CSRMatrix(([], [], [0, 0]), (1, 4))
    assert w.nnz == 0
    np.testing.assert_array_equal(w.to_dense(), np.zeros((1, 4), np.float32))
    s = sparsekit.SlicedEllMatrix(([0], [], [], []), (0, 4))
    assert s.shape == (0, 4) and s.nnz == 0
    s = sparsekit.SlicedEllMatrix(([0, 0], [], [], []), (3, 4))
    np.testing.assert_array_equal(s.to_dense(), np.zeros((3, 4), np.float32))


def test_empty_lists_are_accepted_as_int8_weights():
    for cls in (sparsekit.QuantizedMatrix, sparsekit.SparseInt8Matrix):
        w = cls.from_int8([[], []], 1.0)
        assert w.shape == (2, 0) and w.to_dense().shape == (2, 0)
        with pytest.raises(TypeError, match="^q: expected an integer"):
            cls.from_int8([[1.0]], 1.0)


def test_non_empty_float_index_arrays_are_still_refused():
    with pytest.raises(TypeError, match="^indices: expected an integer array"):
        sparsekit.CSRMatrix(([1.0], [0.0], [0, 1]), (1, 4))
    with pytest.raises(TypeError, match="^indptr: expected an integer array"):
        sparsekit.CSRMatrix(([], [], [0.0, 0.0]), (1, 4))
    with pytest.raises(TypeError, match="^group_ptr: expected an integer array"):
        sparsekit.SlicedEllMatrix(([0.0], [], [], []), (0, 4))


# ---- sparsekit.compress and sparsekit.datasets load on first use ------------
def test_compress_and_datasets_are_lazy_attributes():
    code = ("import sys, sparsekit\n"
            "print(sorted(m for m in ('torch', 'sparsekit.compress', 'sparsekit.datasets')"
            " if m in sys.modules))\n"
            "print(len(sparsekit.datasets.SENTENCES) > 0)\n"
            "print(callable(sparsekit.compress.prune))\n")
    out = _run(code)
    assert out.splitlines() == ["[]", "True", "True"]


def test_unknown_attribute_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        sparsekit.nonexistent


# ---- sparsekit.pack is the function; its cost-model CLI is `sparsekit pack` --
def test_pack_cli_runs_without_runpy_warning():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-W", "error", "-m", "sparsekit", "pack"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert "'shape': '3072x768'" in p.stdout.splitlines()[0]
    help_text = _run(None, "-m", "sparsekit", "pack", "--help")
    assert re.search(r"--reps REPS\s+\S", help_text)  # every option says what it does
    assert "usage: python -m sparsekit.pack" in _run(None, "-m", "sparsekit.pack", "--help")


def test_docstrings_name_no_attribute_of_the_pack_function():
    """sparsekit.pack is the function: `sparsekit.pack.SELL_MAX_M` does not exist."""
    named = set()
    for folder, _, files in os.walk(os.path.join(ROOT, "sparsekit")):
        for f in files:
            if f.endswith(".py"):
                with open(os.path.join(folder, f), encoding="utf-8") as fh:
                    named |= set(re.findall(r"sparsekit\.pack\.(\w+)", fh.read()))
    assert not [n for n in named if not hasattr(sparsekit.pack, n)], named
    assert sparsekit.pack.__module__ == "sparsekit.pack"  # still the function


# ---- quantize: "int8" (pack) and "dynamic" (converters) are synonyms ---------
def test_pack_and_explain_accept_the_converters_spelling():
    w = np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)
    for m in (1, 128):
        a, b = sparsekit.pack(w, quantize="dynamic", m=m), sparsekit.pack(w, quantize="int8", m=m)
        assert type(a) is type(b)
        np.testing.assert_array_equal(a.dequantize(), b.dequantize())
        assert sparsekit.explain(w, quantize="dynamic", m=m) == \
            sparsekit.explain(w, quantize="int8", m=m)
    with pytest.raises(ValueError, match="^quantize: .*'int8'.*'dynamic'"):
        sparsekit.pack(w, quantize="int4")
    for bad in (8, True):  # a wrong type is a TypeError (DESIGN.md)
        with pytest.raises(TypeError, match="^quantize: expected None or a string"):
            sparsekit.pack(w, quantize=bad)
        with pytest.raises(TypeError, match="^quantize: expected None or a string"):
            sparsekit.explain(w, quantize=bad)


def test_converters_accept_packs_spelling():
    from sparsekit.runtime import weights as W

    assert W.check_quantize("int8") == W.check_quantize("dynamic") == "dynamic"
    assert W.check_quantize(None) is None
    with pytest.raises(ValueError, match="^quantize: .*'dynamic'.*'int8'"):
        W.check_quantize("int4")
    with pytest.raises(TypeError, match="^quantize: expected None or a string"):
        W.check_quantize(8)
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU())
    x = torch.randn(4, 32)
    a = sparsekit.torch.accelerate(model, quantize="int8")
    b = sparsekit.torch.accelerate(model, quantize="dynamic")
    assert [r["chosen"] for r in sparsekit.torch.report(a)] == \
        [r["chosen"] for r in sparsekit.torch.report(b)]
    assert "int8" in sparsekit.torch.report(a)[0]["chosen"]
    with torch.no_grad():
        np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    with pytest.raises(TypeError, match="^quantize: expected None or a string"):
        sparsekit.torch.accelerate(model, quantize=8)
    rt = sparsekit.torch.to_runtime(model, quantize="int8")
    np.testing.assert_array_equal(rt(x.numpy()), sparsekit.torch.to_runtime(
        model, quantize="dynamic")(x.numpy()))


# ---- io.load: an unknown int8 runtime value is an error, like csr_f32's -------
def test_load_rejects_an_unknown_int8_runtime(tmp_path):
    from sparsekit import runtime as R
    from test_io import _rewrite_header

    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 8)).astype(np.float32)
    w[:, ::2] = 0
    x = rng.standard_normal((3, 8)).astype(np.float32)
    layers = [R.Linear(sparsekit.QuantizedMatrix.from_float(w)), R.ReLU(),
              R.Linear(sparsekit.SparseInt8Matrix.from_float(w[:, :6]))]
    p = tmp_path / "m.spk"
    sparsekit.save(layers, p)
    want = sparsekit.load(p)(x)
    blob = p.read_bytes()

    def runtime(value):
        def edit(h):
            w = h["nodes"][2]["weight"]
            if value is None:
                del w["runtime"]
            else:
                w["runtime"] = value
        return edit

    for value, cls in (("dense int8", sparsekit.QuantizedMatrix),
                       (None, sparsekit.QuantizedMatrix),
                       ("sparse int8", sparsekit.SparseInt8Matrix)):
        p.write_bytes(_rewrite_header(blob, runtime(value)))
        m = sparsekit.load(p)
        assert isinstance(m.nodes[2][0].weight, cls)
        np.testing.assert_allclose(m(x), want, rtol=1e-5, atol=1e-5)
    for value in ("sparse int4", "csr fp32", 7):
        p.write_bytes(_rewrite_header(blob, runtime(value)))
        with pytest.raises(ValueError, match=r"nodes\[2\]\.weight: unknown int8 runtime "
                                             + re.escape(repr(value))):
            sparsekit.load(p)


# ---- runtime/weights.py: wrong type -> TypeError, bad value -> ValueError -----
def test_min_sparsity_errors_follow_the_design_rule():
    from sparsekit.runtime import weights as W

    for bad in ("0.5", [0.5], True, np.bool_(True), object()):
        with pytest.raises(TypeError, match="^min_sparsity: "):
            W.check_min_sparsity(bad)
    for bad in (-0.1, 1.5, float("nan"), np.float32(2)):
        with pytest.raises(ValueError, match="^min_sparsity: "):
            W.check_min_sparsity(bad)
    for ok in (0, 1, 0.5, np.float32(0.25), np.int64(1)):
        assert W.check_min_sparsity(ok) == float(ok)
    assert type(W.check_min_sparsity(np.float32(0.25))) is float


def test_pack_int8_q_errors_follow_the_design_rule():
    from sparsekit.runtime import weights as W

    with pytest.raises(TypeError, match="^q: .*dtype float32"):
        W.pack_int8(np.zeros((2, 3), np.float32), 1.0)
    with pytest.raises(ValueError, match=r"^q: .*shape \(6,\)"):
        W.pack_int8(np.zeros(6, np.int8), 1.0)


# ---- sparsekit bench: --m is honoured with --quick, refused where it has no effect
def _bench_layers(monkeypatch, argv):
    import sparsekit.bench.run
    from sparsekit.cli import main

    seen = {}
    monkeypatch.setattr(sparsekit.bench.run, "run_bench",
                        lambda layers, **kw: seen.setdefault("layers", layers) and 0)
    assert main(["bench", "--no-progress"] + argv) == 0
    return [(la.n, la.k, la.m) for la in seen["layers"]]


def test_bench_quick_honours_m(monkeypatch):
    assert _bench_layers(monkeypatch, ["--quick"]) == [(3072, 768, 128), (3072, 768, 1)]
    assert _bench_layers(monkeypatch, ["--quick", "--m", "8"]) == [(3072, 768, 8)]
    assert _bench_layers(monkeypatch, ["--quick", "--m", "2,16"]) == \
        [(3072, 768, 2), (3072, 768, 16)]
    assert {m for _, _, m in _bench_layers(monkeypatch, ["--m", "4"])} == {4}
    assert (16, 32, 4) in _bench_layers(monkeypatch, ["--shape", "16,32,4", "--preset",
                                                      "minilm", "--m", "2"])


@pytest.mark.parametrize("argv", [["--shape", "16,32,4", "--m", "8"],
                                  ["--quick", "--shape", "16,32,4", "--m", "8"],
                                  ["--preset", "resnet50", "--m", "8"]])
def test_bench_m_without_effect_is_a_usage_error(monkeypatch, capsys, argv):
    with pytest.raises(SystemExit) as e:
        _bench_layers(monkeypatch, argv)
    assert e.value.code == 2
    assert "argument --m: " in capsys.readouterr().err


# ---- to_runtime: dense layers are dense int8 with quantize="dynamic" -----------
def test_to_runtime_dense_layers_follow_quantize_as_documented():
    torch = pytest.importorskip("torch")
    from sparsekit.runtime import weights as W

    doc = " ".join(sparsekit.torch.to_runtime.__doc__.split())
    assert "stay dense: fp32 with quantize=None, dense int8" in doc
    model = torch.nn.Sequential(torch.nn.Linear(32, 16))  # 0% sparse
    for quantize, want in ((None, "dense fp32"), ("dynamic", "dense int8")):
        rt = sparsekit.torch.to_runtime(model, quantize=quantize, min_sparsity=0.5)
        assert [W.describe(layer.weight) for layer, _, _ in rt.nodes] == [want]


# ---- counterparts: to_dense on the int8 formats, to_scipy on SlicedEllMatrix ---
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("shape", [(5, 12), (0, 8), (3, 0)])
def test_int8_formats_have_to_dense(per_channel, shape):
    rng = np.random.default_rng(2)
    w = rng.standard_normal(shape).astype(np.float32)
    w[rng.random(shape) < 0.6] = 0
    for cls in (sparsekit.QuantizedMatrix, sparsekit.SparseInt8Matrix):
        qw = cls.from_float(w, per_channel=per_channel)
        d = qw.to_dense()
        assert d.dtype == np.float32 and d.shape == shape
        np.testing.assert_array_equal(d, qw.dequantize())
        if shape[0]:
            scale = np.asarray(qw.scale, np.float64).reshape(-1, 1)
            np.testing.assert_allclose(d, np.asarray(qw.q, np.float64) * scale, rtol=1e-6)


@pytest.mark.parametrize("shape", [(37, 70), (0, 5), (16, 0), (1, 1)])
def test_sliced_ell_to_scipy_round_trips(shape):
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(3)
    w = rng.standard_normal(shape).astype(np.float32)
    w[rng.random(shape) < 0.8] = 0
    s = sparsekit.SlicedEllMatrix.from_dense(w)
    m = s.to_scipy()
    assert sp.issparse(m) and m.format == "csr" and m.shape == shape
    assert m.dtype == np.float32 and m.nnz == np.count_nonzero(w) and m.has_sorted_indices
    np.testing.assert_array_equal(m.toarray(), w)
    np.testing.assert_array_equal(sparsekit.SlicedEllMatrix.from_scipy(m).to_dense(), w)


def test_pack_module_names_are_reached_as_its_docstring_says():
    import importlib

    mod = importlib.import_module("sparsekit.pack")
    from sparsekit.pack import SELL_MAX_M

    assert SELL_MAX_M == mod.SELL_MAX_M and "from sparsekit.pack import SELL_MAX_M" in mod.__doc__
    import sparsekit.pack as p

    assert p is sparsekit.pack and callable(p)  # the function, as the docstring warns


# ---- reprs: bytes per weight only when there are weights ---------------------
@pytest.mark.parametrize("shape", [(3, 0), (0, 4), (0, 0), (2, 3)])
def test_reprs_without_weights_show_no_bytes_per_weight(shape):
    w = np.zeros(shape, np.float32)
    for make in (sparsekit.CSRMatrix.from_dense, sparsekit.SlicedEllMatrix.from_dense,
                 sparsekit.QuantizedMatrix.from_float, sparsekit.SparseInt8Matrix.from_float):
        obj = make(w)
        text = repr(obj)
        if 0 in shape:
            assert "bytes/weight" not in text and f"{obj.nbytes} bytes, no weights)" in text
        else:
            per = re.search(r"([0-9.]+) bytes/weight\)$", text)
            assert per and float(per.group(1)) == pytest.approx(obj.nbytes / w.size, abs=1e-3)


# ---- install hints work in a shell and from a clone ---------------------------
def test_install_hints_are_quoted_and_name_the_clone_spelling():
    hints = 0
    for folder, _, files in os.walk(os.path.join(ROOT, "sparsekit")):
        for f in files:
            if not f.endswith(".py"):
                continue
            with open(os.path.join(folder, f), encoding="utf-8") as fh:
                text = fh.read()
            for m in re.finditer(r"pip install (\S*)sparsekit\[(\w+)\]", text):
                assert m.group(1) == '"', f"{f}: unquoted {m.group(0)!r} (a shell globs [...])"
                near = text[m.end():m.end() + 120]
                assert f'pip install -e ".[{m.group(2)}]"' in near, f"{f}: {m.group(0)}"
                hints += 1
    assert hints >= 6


def test_per_tensor_sparse_int8_keeps_its_scale_without_rows():
    """A per-tensor SparseInt8Matrix with N = 0 still has its scale (it used to
    read it from the first row): .scale, pickle and the state arrays."""
    import pickle

    w = sparsekit.SparseInt8Matrix.from_int8(np.zeros((0, 8), np.int8), 0.25)
    assert not w.per_channel and w.scale.shape == () and w.scale == np.float32(0.25)
    back = pickle.loads(pickle.dumps(w))
    assert back.scale.shape == () and back.scale == np.float32(0.25)
    assert sparsekit.linear(np.ones((2, 8), np.float32), w).shape == (2, 0)
