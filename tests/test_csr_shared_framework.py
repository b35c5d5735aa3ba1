"""CSRMatrix's shared-column layout as a first-class format: sparsekit.pack
picks it where its model predicts it faster (AVX-512 spmm_f32, M >= 2, 17-35%
density), and the converters, drop-in torch modules (state_dict), the runtime
and sparsekit.save / load keep it (CSR arrays + a flag, layout rebuilt on
load). Results equal plain CSR within fp32 rounding (|err| <= 1e-5 *
(sum_k |x_k w_k| + 1) against a float64 reference)."""
import importlib
import json
import pickle
import struct
import zlib

import numpy as np
import pytest

import sparsekit
from sparsekit import CSRMatrix
from sparsekit._native import core
from sparsekit.runtime import weights as W
from sparsekit.runtime.layers import Linear

from conftest import assert_close_f32, reference_linear

P = importlib.import_module("sparsekit.pack")  # the module (sparsekit.pack is the function)

# the spmm_f32 kernels of this CPU are AVX-512 (not forced elsewhere): the layout is built
SHARED = core.family_isa("spmm_f32") in P.SHARED_ISAS and core.cpu_supports("avx512")
needs_shared = pytest.mark.skipif(not SHARED, reason="spmm_f32 is not AVX-512 here")


def pruned(rng, n, k, s):
    w = rng.standard_normal((n, k)).astype(np.float32)
    w[rng.random(w.shape) < s] = 0
    return w


@pytest.fixture(scope="module")
def w70():
    """70% sparse, K > 512: measured 1.2-1.3x plain CSR at M >= 32."""
    return pruned(np.random.default_rng(3), 384, 1536, 0.7)


# ---- sparsekit.pack -----------------------------------------------------------------

@needs_shared
def test_pack_picks_it_where_predicted(w70, rng):
    for m in (32, 128, 300):
        p = sparsekit.pack(w70, m=m)
        ex = sparsekit.explain(w70, m=m)
        assert type(p) is CSRMatrix and p.shared_columns, str(ex)
        assert ex["choice"] == "csr_shared"
        assert ex["predicted_us"]["csr"] >= P.SHARED_MIN_GAIN * ex["predicted_us"]["csr_shared"]
        np.testing.assert_array_equal(p.to_dense(), w70)
    assert ex["shared_bytes"] == p.nbytes and "shared columns" in str(ex)
    # the result equals plain CSR's within the stated tolerance
    x = rng.standard_normal((70, w70.shape[1])).astype(np.float32)
    ref = reference_linear(x, w70)
    assert_close_f32(sparsekit.linear(x, p), ref, x, w70)
    assert_close_f32(sparsekit.linear(x, CSRMatrix.from_dense(w70)), ref, x, w70)
    # M = 1 runs the spmv kernel, which ignores the layout; small M is SlicedEllMatrix's
    ex = sparsekit.explain(w70, m=1)
    assert ex["choice"] != "csr_shared" and "csr_shared" not in ex["predicted_us"]
    assert any("spmv kernel" in note for note in ex["notes"])


@pytest.mark.parametrize("s", [0.5, 0.9, 0.995])
def test_not_outside_its_density_range(rng, s):
    """50%: never built (above 35% density); 90%: below SHARED_MIN_DENSITY
    (built by with_shared_columns for K > 512, not taken by pack)."""
    w = pruned(rng, 128, 1024, s)
    for m in (32, 128):
        p = sparsekit.pack(w, m=m)
        assert not getattr(p, "shared_columns", False)
        assert sparsekit.explain(w, m=m)["choice"] != "csr_shared"
    if SHARED and s == 0.9:
        assert CSRMatrix.from_dense(w).with_shared_columns().shared_columns
        assert any("SHARED_MIN_DENSITY" in n for n in sparsekit.explain(w)["notes"])


def test_not_on_other_isas(isa, w70):
    p = sparsekit.pack(w70, m=128)
    assert type(p) is CSRMatrix
    avx512 = core.family_isa("spmm_f32") == "avx512"  # avx512vnni runs the avx512 one
    assert avx512 == (isa in ("avx512", "avx512vnni"))
    assert p.shared_columns == avx512
    if not avx512:
        ex = sparsekit.explain(w70, m=128)
        assert "csr_shared" not in ex["predicted_us"]
        assert any(f"runs on {core.family_isa('spmm_f32')} here" in n for n in ex["notes"])


def test_decision_does_not_depend_on_this_cpu():
    """The rule with the counts given: a candidate only with the layout's
    bytes, an AVX-512 spmm_f32, M >= SHARED_MIN_M and density >=
    SHARED_MIN_DENSITY."""
    n, k = 384, 1536
    nnz = int(0.3 * n * k)
    shared_bytes = int(3.4 * n * k)

    def pick(m, isa="avx512", b=shared_bytes, nz=nnz, **kw):
        return P._decide(n, k, nz, 1, 1, None, m, shared_bytes=b, shared_isa=isa,
                         sell_isa="avx2", **kw)

    for m in (32, 128):  # at M = 8 the packed dense GEMM wins at 70% (a candidate only)
        assert pick(m)["choice"] == "csr_shared"
    assert "csr_shared" in pick(P.SHARED_MIN_M)["predicted_us"]
    assert "csr_shared" not in pick(1)["predicted_us"]
    for isa in ("avx2", "scalar", "neon"):
        ex = pick(128, isa)
        assert ex["choice"] == "csr" and "csr_shared" not in ex["predicted_us"]
    assert pick(128, b=None)["choice"] == "csr"  # no layout built
    ex = pick(128, nz=int(0.1 * n * k))
    assert ex["choice"] == "csr" and any("SHARED_MIN_DENSITY" in n for n in ex["notes"])
    # without the model's entry it is no candidate either
    model = dict(P.MEASURED, coef={f: c for f, c in P.MEASURED["coef"].items()
                                   if f != "csr_shared"})
    assert pick(128, model=model)["choice"] == "csr"


def test_memory_rules():
    """SHARED_MIN_GAIN over plain CSR (the layout ~doubles CSR's bytes), and
    CSR_BYTES_MARGIN over dense where it would hold more bytes than dense."""
    n, k, nnz = 100, 600, 18000  # 30% density

    def model(shared_per_nnz, dense_per_w=1.0):
        return {"isa": P.MEASURED["isa"], "source": "test model", "coef": {
            "dense": {8: (0.0, dense_per_w, 0.0)}, "csr": {8: (0.0, 1.0, 0.0)},
            "csr_shared": {8: (0.0, shared_per_nnz, 0.0)}}}

    def decide(mdl, b=2 * n * k):
        return P._decide(n, k, nnz, 1, 1, None, 8, mdl, shared_bytes=b, shared_isa="avx512",
                         sell_isa="avx2")

    slightly = decide(model(1 / (P.SHARED_MIN_GAIN - 0.02)))
    assert slightly["choice"] == "csr" and "SHARED_MIN_GAIN" in slightly["reason"]
    assert slightly["predicted_us"]["csr_shared"] < slightly["predicted_us"]["csr"]
    assert decide(model(1 / (P.SHARED_MIN_GAIN + 0.02)))["choice"] == "csr_shared"
    # more bytes than dense (5 per weight): needs CSR_BYTES_MARGIN over dense too
    near = model(0.5, dense_per_w=0.5 * nnz / (n * k) * (P.CSR_BYTES_MARGIN - 0.1))
    ex = decide(near, b=5 * n * k)
    assert ex["choice"] != "csr_shared" and "dense array's bytes" in ex["reason"]
    assert decide(near)["choice"] == "csr_shared"


@needs_shared
def test_pack_float_and_min_sparsity(w70):
    w, why = W.pack_float(w70)
    assert w.shared_columns and W.describe(w) == "csr shared fp32" and "csr shared" in why
    # min_sparsity bypasses pack's model: plain CSR, CSR's bytes
    w, why = W.pack_float(w70, min_sparsity=0.5)
    assert type(w) is CSRMatrix and not w.shared_columns and W.describe(w) == "csr fp32"


# ---- sparsekit.save / load ----------------------------------------------------------

def _header(path):
    blob = open(path, "rb").read()
    _, _, _, hlen = struct.unpack_from("<8sIIQ", blob)
    return json.loads(blob[24:24 + hlen])


def _rewrite_header(path, edit):
    """Apply edit(weight entry of node 0), with a valid header CRC (a tampered
    file); the data keep their place relative to the 64-aligned data start."""
    blob = open(path, "rb").read()
    magic, version, _, hlen = struct.unpack_from("<8sIIQ", blob)
    head = json.loads(blob[24:24 + hlen])
    edit(head["nodes"][0]["weight"])
    data = blob[24 + hlen + (-(24 + hlen)) % 64:]
    raw = json.dumps(head, separators=(",", ":")).encode()
    prefix = struct.pack("<8sIIQ", magic, version, zlib.crc32(raw), len(raw))
    pad = b"\0" * ((-(len(prefix) + len(raw))) % 64)
    open(path, "wb").write(prefix + raw + pad + data)


@needs_shared
def test_save_load_round_trip_bit_identical(tmp_path, w70, rng):
    w = CSRMatrix.from_dense(w70).with_shared_columns()
    b = rng.standard_normal(w.shape[0]).astype(np.float32)
    layer = Linear(w, b, "relu")
    path = tmp_path / "shared.skm"
    sparsekit.save([layer], path)
    entry = _header(path)["nodes"][0]["weight"]
    assert entry["kind"] == "csr_f32" and entry["shared_columns"] is True
    assert "runtime" not in entry
    got = sparsekit.load(path).nodes[0][0]
    assert type(got.weight) is CSRMatrix and got.weight.shared_columns
    assert got.weight.nbytes == w.nbytes
    for m in (1, 5, 33, 128):
        x = rng.standard_normal((m, w.shape[1])).astype(np.float32)
        np.testing.assert_array_equal(got(x), layer(x))
        assert_close_f32(got(x), reference_linear(x, w70, b, relu=True), x, w70)
    # the file without the key (an older file, or what an older reader sees): plain CSR
    _rewrite_header(path, lambda e: e.pop("shared_columns"))
    plain = sparsekit.load(path).nodes[0][0]
    assert type(plain.weight) is CSRMatrix and not plain.weight.shared_columns
    x = rng.standard_normal((40, w.shape[1])).astype(np.float32)
    assert_close_f32(plain(x), reference_linear(x, w70, b, relu=True), x, w70)


def test_plain_csr_files_unchanged(tmp_path, rng):
    path = tmp_path / "csr.skm"
    sparsekit.save([Linear(CSRMatrix.from_dense(pruned(rng, 40, 700, 0.7)))], path)
    assert "shared_columns" not in _header(path)["nodes"][0]["weight"]
    assert not sparsekit.load(path).nodes[0][0].weight.shared_columns


@pytest.mark.parametrize("edit, match", [
    (lambda e: e.update(shared_columns="yes"), "shared_columns must be true or false"),
    (lambda e: e.update(shared_columns=1), "shared_columns must be true or false"),
    (lambda e: e.update(shared_columns=True, runtime="sliced ell fp32"),
     "shared_columns is for a csr_f32 weight run as CSR"),
])
def test_tampered_flag_is_a_clear_error(tmp_path, rng, edit, match):
    path = tmp_path / "bad.skm"
    sparsekit.save([Linear(CSRMatrix.from_dense(pruned(rng, 40, 700, 0.7))
                           .with_shared_columns())], path)
    _rewrite_header(path, edit)
    with pytest.raises(ValueError, match=match):
        sparsekit.load(path)


def test_corrupted_arrays_are_a_clear_error(tmp_path, rng):
    path = tmp_path / "bad.skm"
    sparsekit.save([Linear(CSRMatrix.from_dense(pruned(rng, 40, 700, 0.7))
                           .with_shared_columns())], path)
    blob = bytearray(open(path, "rb").read())
    blob[-3] ^= 0xFF  # the last array's data (indptr)
    open(path, "wb").write(bytes(blob))
    with pytest.raises(ValueError, match="checksum mismatch"):
        sparsekit.load(path)


# ---- torch: accelerate / state_dict / to_runtime / report -----------------------------

torch = pytest.importorskip("torch")

import sparsekit.torch as skt  # noqa: E402
from conftest import accelerated_weights as weights_of, pruned_mlp  # noqa: E402


def mlp(seed=0, s=0.7):
    return pruned_mlp(600, seed, s)


@needs_shared
def test_accelerate_report_and_to_runtime():
    model = mlp()
    fast = skt.accelerate(model)
    ws = weights_of(fast)
    assert len(ws) == 2 and all(type(w) is CSRMatrix and w.shared_columns for w in ws)
    rep = skt.report(fast)
    assert [r["chosen"] for r in rep] == ["csr shared fp32"] * 2
    assert str(skt.report(model)) == str(rep)
    assert "csr shared fp32" in repr(fast[0])
    rt = skt.to_runtime(model)
    assert all(layer.weight.shared_columns for layer, _, _ in rt.nodes
               if layer.weight is not None)
    x = torch.randn(40, 600)
    with torch.inference_mode():
        want = model(x).numpy()
        np.testing.assert_allclose(fast(x).numpy(), want, rtol=0, atol=1e-4)
        np.testing.assert_array_equal(rt(x.numpy()), fast(x).numpy())
    # pickle (torch.save of the whole model) keeps it
    again = pickle.loads(pickle.dumps(fast))
    assert all(w.shared_columns for w in weights_of(again))


@needs_shared
def test_state_dict_round_trip_bit_identical():
    a, b = skt.accelerate(mlp(0)), skt.accelerate(mlp(1))
    sd = a.state_dict()
    assert sd["0.weight.shared_columns"].dtype == torch.uint8
    assert int(sd["0.weight.shared_columns"]) == 1
    x = torch.randn(50, 600)
    with torch.inference_mode():
        want = a(x)
        b.load_state_dict({k: v.clone() for k, v in sd.items()})
        assert all(w.shared_columns for w in weights_of(b))
        assert torch.equal(b(x), want)
        # into a model whose layers are plain CSR (min_sparsity): the flag builds it
        c = skt.accelerate(mlp(1), min_sparsity=0.5)
        assert not any(w.shared_columns for w in weights_of(c))
        c.load_state_dict(sd)
        assert all(w.shared_columns for w in weights_of(c))
        assert torch.equal(c(x), want)
        # a state_dict without the flag (plain CSR, older): the module keeps its choice
        plain = skt.accelerate(mlp(0), min_sparsity=0.5).state_dict()
        assert not any(k.endswith("shared_columns") for k in plain)
        b.load_state_dict(plain)
        assert all(w.shared_columns for w in weights_of(b))
        assert torch.equal(b(x), want)
        # flag 0: plain CSR
        sd0 = dict(sd, **{"0.weight.shared_columns": torch.tensor(0, dtype=torch.uint8)})
        b.load_state_dict(sd0)
        assert not b[0].layer.weight.shared_columns and b[2].layer.weight.shared_columns
        np.testing.assert_allclose(b(x).numpy(), want.numpy(), rtol=0, atol=1e-4)


@needs_shared
@pytest.mark.parametrize("flag, err, match", [
    (torch.tensor(7, dtype=torch.uint8), "RuntimeError", "one flag 0 or 1, got \\[7\\]"),
    (torch.tensor([1, 1], dtype=torch.uint8), "RuntimeError", "one flag 0 or 1"),
    (torch.tensor(1.0), "RuntimeError", "shared_columns: expected dtype uint8"),
])
def test_tampered_state_is_a_clear_error(flag, err, match):
    a, b = skt.accelerate(mlp(0)), skt.accelerate(mlp(1))
    w0 = b[0].layer.weight
    sd = dict(a.state_dict(), **{"0.weight.shared_columns": flag})
    with pytest.raises(RuntimeError, match=match):
        b.load_state_dict(sd)
    assert b[0].layer.weight is w0  # the bad layer kept its weight
    sd = {k: v.clone() for k, v in a.state_dict().items()}
    sd["0.weight.indices"].view(-1)[0] = 700  # out of range: CSR's own check
    with pytest.raises(RuntimeError, match=r"0\.weight \(csr shared fp32 \[256, 600\]\).*"
                                           r"indices"):
        b.load_state_dict(sd)
    assert b[0].layer.weight is w0


def test_flag_validation_of_the_format(rng):
    c = CSRMatrix.from_dense(pruned(rng, 32, 600, 0.7))
    arrays = dict(c._state_arrays())
    assert "shared_columns" not in arrays
    assert not CSRMatrix._from_state_arrays(c.shape, arrays).shared_columns
    got = CSRMatrix._from_state_arrays(c.shape, dict(arrays, shared_columns=np.bool_(True)))
    assert got.shared_columns == SHARED
    with pytest.raises(TypeError, match="shared_columns"):
        CSRMatrix._from_state_arrays(c.shape, dict(arrays, shared_columns=np.float32(1)))
    with pytest.raises(ValueError, match="shared_columns"):
        CSRMatrix._from_state_arrays(c.shape, dict(arrays, shared_columns=np.array([0, 1])))


# ---- ONNX / Keras converters share pack_float --------------------------------------

@needs_shared
def test_onnx_load_m(w70, rng):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    import sparsekit.onnx as sko

    k, n = w70.shape[1], w70.shape[0]
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
                          [numpy_helper.from_array(w70.T.copy(), "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    rt, rt1 = sko.load(model, m=64), sko.load(model, m=1)
    assert rt.nodes[0][0].weight.shared_columns
    assert not getattr(rt1.nodes[0][0].weight, "shared_columns", False)
    x = rng.standard_normal((64, k)).astype(np.float32)
    assert_close_f32(rt(x), reference_linear(x, w70), x, w70)


@needs_shared
def test_keras_convert_m(w70, rng):
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")  # as tests/test_keras_convert.py
    keras = pytest.importorskip("keras")
    import sparsekit.keras  # noqa: F401

    k, n = w70.shape[1], w70.shape[0]
    model = keras.Sequential([keras.Input((k,)), keras.layers.Dense(n, use_bias=False)])
    model.layers[0].set_weights([w70.T])  # Keras kernels are [in, out]
    rt = sparsekit.keras.convert(model, m=64)
    weights = [layer.weight for layer, _, _ in rt.nodes if layer.weight is not None]
    assert [w.shared_columns for w in weights] == [True]
    x = rng.standard_normal((64, k)).astype(np.float32)
    assert_close_f32(rt(x), reference_linear(x, w70), x, w70)
