"""SlicedEllMatrix as a first-class format: sparsekit.pack picks it for small M
where its kernel is AVX-512, the framework converters take the rows per call
(m=), drop-in torch modules run and (re)load it, and sparsekit.save / load
round-trip it."""
import importlib
import json
import struct

import numpy as np
import pytest

import sparsekit
from sparsekit import CSRMatrix, SlicedEllMatrix
from sparsekit._dense_f32 import PackedDenseMatrix
from sparsekit._native import core
from sparsekit.pack import SELL_MAX_M, _decide, _sell_groups

P_ = importlib.import_module("sparsekit.pack")  # the module (sparsekit.pack is the function)
from sparsekit.runtime import weights as W
from sparsekit.runtime.layers import Linear

from conftest import assert_close_f32, reference_linear

# the spmv_sell_f32 kernels of this CPU run AVX-512 (not forced elsewhere)
SELL_FAST = core.family_isa("spmv_sell_f32") == "avx512"
needs_avx512 = pytest.mark.skipif(not SELL_FAST, reason="spmv_sell_f32 is not AVX-512 here")


def close(got, want, rel=2e-5):
    """Equal within fp32 rounding of sums of a few hundred products."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=rel * max(1.0, np.abs(want).max()))


def pruned(rng, n, k, s=0.9):
    w = rng.standard_normal((n, k)).astype(np.float32)
    w[rng.random(w.shape) < s] = 0
    return w


@pytest.fixture(scope="module")
def bert_ffn():
    return pruned(np.random.default_rng(7), 3072, 768)


# ---- sparsekit.pack -------------------------------------------------------------

@needs_avx512
def test_pack_picks_sell_at_m1_not_at_m128(bert_ffn):
    for m in (1, 8):
        p = sparsekit.pack(bert_ffn, m=m)
        assert isinstance(p, SlicedEllMatrix), sparsekit.explain(bert_ffn, m=m)
        np.testing.assert_array_equal(p.to_dense(), bert_ffn)
    assert isinstance(sparsekit.pack(bert_ffn, m=128), CSRMatrix)
    ex = sparsekit.explain(bert_ffn, m=1)
    assert ex["slots"] % 64 == 0 and 0.4 < ex["sell_fill"] < 0.8
    assert "SlicedEllMatrix" in str(ex) and "slots" in str(ex)
    ex = sparsekit.explain(bert_ffn, m=128)
    assert "sell" not in ex["predicted_us"]
    assert any("M <= " in note for note in ex["notes"])


def test_pack_rule_does_not_depend_on_this_cpu(bert_ffn):
    """The decision with the counts given: SlicedEllMatrix where its kernel
    is AVX-512 and M <= SELL_MAX_M (AVX2: M <= SELL_MAX_M_AVX2, see
    tests/test_pack_avx2.py), never on scalar / NEON or above."""
    n, k = bert_ffn.shape
    nnz = int(np.count_nonzero(bert_ffn))
    slots = 64 * _sell_groups(bert_ffn)

    def pick(m, sell_isa):
        return _decide(n, k, nnz, 1, 1, None, m, slots=slots, sell_isa=sell_isa)

    assert pick(1, "avx512")["choice"] == "sell"
    assert pick(8, "avx512")["choice"] == "sell"
    for m in (SELL_MAX_M + 1, 32, 128):
        assert pick(m, "avx512")["choice"] == "csr"
    ex = _decide(n, k, nnz, 1, 1, None, P_.SELL_MAX_M_AVX2 + 1, slots=slots,
                 sell_isa="avx2", shared_isa="avx2")
    assert "sell" not in ex["predicted_us"] and any("M <= " in n for n in ex["notes"])
    for isa in ("scalar", "neon"):
        ex = pick(1, isa)
        assert ex["choice"] in ("csr", "dense") and "sell" not in ex["predicted_us"]
        assert any(f"runs on {isa}" in note for note in ex["notes"])
    # the model says so too: without the M rule it ranks CSRMatrix first at M >= 32
    # for this 90%-sparse BERT weight
    P = importlib.import_module("sparsekit.pack")  # the module (sparsekit.pack is the function)
    for m in (32, 128):
        assert P._predict(P.MEASURED, "sell", m, n, k, slots) > \
            P._predict(P.MEASURED, "csr", m, n, k, nnz)
    # an unpruned weight stays dense even where SlicedEllMatrix is predicted faster
    ex = _decide(64, 64, 64 * 64, 1, 1, None, 1, slots=64 * 64, sell_isa="avx512")
    assert ex["choice"] == "dense" and "unpruned" in ex["reason"]


def test_forced_avx2_picks_csr_or_dense_above_its_sell_max_m(bert_ffn):
    if not core.cpu_supports("avx2"):
        pytest.skip("no AVX2")
    before = sparsekit.get_isa()
    sparsekit.set_isa("avx2")
    try:
        assert sparsekit.info()["kernels"]["spmv_sell_f32"] == "avx2"
        for m in (P_.SELL_MAX_M_AVX2 + 1, 8):
            assert isinstance(sparsekit.pack(bert_ffn, m=m),
                              (CSRMatrix, np.ndarray, PackedDenseMatrix))
        assert isinstance(W.pack_float(bert_ffn, min_sparsity=0.5, m=8)[0], CSRMatrix)
        # without the cost model (min_sparsity=) AVX2 keeps CSR even at M = 1:
        # its SlicedEllMatrix wins there only at some sparsities
        assert isinstance(W.pack_float(bert_ffn, min_sparsity=0.5, m=1)[0], CSRMatrix)
    finally:
        sparsekit.set_isa(before)


@needs_avx512
def test_pack_float_m(bert_ffn):
    w, why = W.pack_float(bert_ffn, m=1)
    assert isinstance(w, SlicedEllMatrix) and "M = 1" in why and W.describe(w) == \
        "sliced ell fp32"
    assert isinstance(W.pack_float(bert_ffn)[0], CSRMatrix)  # pack's default M = 128
    # min_sparsity decides sparse vs dense; m which sparse fp32 format
    assert isinstance(W.pack_float(bert_ffn, min_sparsity=0.5, m=1)[0], SlicedEllMatrix)
    assert isinstance(W.pack_float(bert_ffn, min_sparsity=0.5, m=64)[0], CSRMatrix)
    assert isinstance(W.pack_float(bert_ffn, min_sparsity=0.95, m=1)[0], np.ndarray)


@pytest.mark.parametrize("bad, err", [(0, ValueError), (-3, ValueError), (1.0, TypeError),
                                      ("1", TypeError), (True, TypeError)])
def test_bad_m_is_named(bad, err):
    with pytest.raises(err, match="m: "):
        W.pack_float(np.zeros((4, 4), np.float32), m=bad)


# ---- torch: accelerate / to_runtime / drop-in modules ----------------------------

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import sparsekit.torch as skt  # noqa: E402
from conftest import accelerated_weights as weights_of, pruned_mlp  # noqa: E402


def mlp(seed=0, s=0.9):
    return pruned_mlp(96, seed, s)


def want_m1(w):
    """The format m=1 must reach for the [N, K] weight w: pack's pick at m=1.
    For these 90%-sparse weights that is SlicedEllMatrix where its kernel runs
    AVX-512; on AVX2 the table decides (CSRMatrix from ~75% sparsity there)."""
    t = type(sparsekit.pack(np.ascontiguousarray(w, np.float32), m=1))
    assert t is SlicedEllMatrix or not SELL_FAST
    return t


def linear_weights(model):
    return [m.weight.detach().numpy() for m in model.modules() if isinstance(m, nn.Linear)]


def test_accelerate_m1_equals_default():
    model = mlp()
    default, decode = skt.accelerate(model), skt.accelerate(model, m=1)
    assert all(type(w) is CSRMatrix for w in weights_of(default))
    assert [type(w) for w in weights_of(decode)] == [want_m1(w) for w in linear_weights(model)]
    assert "M = 1" in str(skt.report(decode))
    assert str(skt.report(model, m=1)) == str(skt.report(decode))
    for rows in (1, 3, 17):
        x = torch.randn(rows, 96)
        with torch.inference_mode():
            want = model(x).numpy()
            close(decode(x).numpy(), default(x).numpy())
            close(decode(x).numpy(), want)
    with pytest.raises(ValueError, match="m: "):
        skt.accelerate(model, m=0)
    with pytest.raises(TypeError, match="m: "):
        skt.to_runtime(model, m="one")


def test_conv_keeps_the_default_m():
    """A conv's rows per call are its output pixels: m= is for Linear layers."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 32, 3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(32 * 4 * 4, 40)).eval()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for m in (model[0], model[3]):
            m.weight[torch.from_numpy(rng.random(tuple(m.weight.shape)) < 0.9)] = 0
    fast = skt.accelerate(model, min_sparsity=0.5, m=1)
    # the Linear gets pack's m=1 pick (on AVX2 the model ranks CSRMatrix 1.08x
    # ahead of SlicedEllMatrix for this 40x512 weight; on AVX-512 it is sell)
    lin = sparsekit.pack(model[3].weight.detach().numpy(), m=1)
    assert type(lin) is (SlicedEllMatrix if SELL_FAST else type(lin))
    assert type(fast[0].layer.weight) is CSRMatrix and type(fast[3].layer.weight) is type(lin)
    x = torch.randn(1, 8, 6, 6)
    with torch.inference_mode():
        close(fast(x).numpy(), model(x).numpy())


def test_accelerate_m1_int8():
    model = mlp()
    q = skt.accelerate(model, quantize="dynamic", m=1)
    x = torch.randn(1, 96)
    with torch.inference_mode():
        ref = model(x).numpy()
        got = q(x).numpy()
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


def test_to_runtime_m1_equals_default():
    model = mlp(1)
    rt, rt1 = skt.to_runtime(model), skt.to_runtime(model, m=1)
    ws = [layer.weight for layer, _, _ in rt1.nodes if layer.weight is not None]
    assert [type(w) for w in ws] == [want_m1(w) for w in linear_weights(model)]
    x = np.random.default_rng(0).standard_normal((2, 96)).astype(np.float32)
    close(rt1(x), rt(x))


def test_bert_to_runtime_m1():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=50, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=128), add_pooling_layer=False).eval()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for m in bert.modules():
            if isinstance(m, nn.Linear):
                m.weight[torch.from_numpy(rng.random(tuple(m.weight.shape)) < 0.9)] = 0
    rt, rt1 = skt.to_runtime(bert), skt.to_runtime(bert, m=1)
    kinds = [r["chosen"] for r in rt1.conversion_report]
    if SELL_FAST:
        assert "sliced ell fp32" in kinds
    ids = np.array([[1, 5, 7, 9]], np.int64)
    mask = np.ones_like(ids)
    close(rt1(input_ids=ids, attention_mask=mask), rt(input_ids=ids, attention_mask=mask),
          rel=1e-4)


@needs_avx512
def test_torch_module_state_dict_round_trip():
    a, b = skt.accelerate(mlp(0), m=1), skt.accelerate(mlp(1), m=1)
    sd = a.state_dict()
    assert {k.rsplit(".", 1)[-1] for k in sd if ".weight." in k} == \
        {"group_ptr", "window", "index", "values"}
    x = torch.randn(2, 96)
    with torch.inference_mode():
        want = a(x)
        b.load_state_dict({k: v.clone() for k, v in sd.items()})
        assert torch.equal(b(x), want)
    # the index arrays in a state_dict are copies: garbage there changes nothing
    for key, t in a.state_dict().items():
        if key.rsplit(".", 1)[-1] in ("group_ptr", "window", "index"):
            t.fill_(12345)
    with torch.inference_mode():
        assert torch.equal(a(x), want)


@needs_avx512
@pytest.mark.parametrize("key, corrupt, match", [
    ("0.weight.index", lambda t: t.view(-1)[0].fill_(0x9f9f9f9f), "index"),
    ("0.weight.index", lambda t: t.fill_(0x80808080), "index"),
    ("0.weight.window", lambda t: t.fill_(10 ** 6), "window"),
    ("0.weight.group_ptr", lambda t: t.view(-1)[-1].fill_(10 ** 9), "group_ptr"),
    ("0.weight.group_ptr", lambda t: t.view(-1)[1].fill_(-5), "group_ptr"),
    ("0.weight.values", lambda t: t.view(-1).__setitem__(0, float("nan")), "values"),
])
def test_corrupted_state_is_a_clear_error(key, corrupt, match):
    a, b = skt.accelerate(mlp(0), m=1), skt.accelerate(mlp(1), m=1)
    x = torch.randn(1, 96)
    w0 = b[0].layer.weight
    with torch.inference_mode():
        before = b[0](x)
    sd = {k: v.clone() for k, v in a.state_dict().items()}
    with torch.no_grad():
        corrupt(sd[key])
    if key.endswith("values"):  # NaN in a used slot (slot 0 of group 0 may be unused)
        sd[key].view(-1)[:] = float("nan")
    with pytest.raises(RuntimeError, match=rf"0\.weight \(sliced ell fp32 \[256, 96\]\).*{match}"):
        b.load_state_dict(sd)
    assert b[0].layer.weight is w0  # the bad layer kept its weight
    with torch.inference_mode():
        assert torch.equal(b[0](x), before)


@needs_avx512
def test_other_format_state_is_named():
    a, b = skt.accelerate(mlp(0)), skt.accelerate(mlp(1), m=1)
    with pytest.raises(RuntimeError, match="sliced ell fp32"):
        b.load_state_dict(a.state_dict())


# ---- sparsekit.save / load --------------------------------------------------------

def _header(path):
    blob = open(path, "rb").read()
    _, _, _, hlen = struct.unpack_from("<8sIIQ", blob)
    return json.loads(blob[24:24 + hlen])


def test_save_load_round_trip_bit_identical(tmp_path, rng):
    w = SlicedEllMatrix.from_dense(pruned(rng, 300, 97, 0.8))
    b = rng.standard_normal(300).astype(np.float32)
    path = tmp_path / "sell.skm"
    sparsekit.save([Linear(w, b, "relu")], path)
    entry = _header(path)["nodes"][0]["weight"]
    assert entry["kind"] == "csr_f32" and entry["runtime"] == "sliced ell fp32"
    got = sparsekit.load(path).nodes[0][0]
    assert type(got.weight) is SlicedEllMatrix and got.weight.shape == w.shape
    for name, a in w._state_arrays().items():
        np.testing.assert_array_equal(got.weight._state_arrays()[name], a, err_msg=name)
    for m in (1, 4, 33):
        x = rng.standard_normal((m, 97)).astype(np.float32)
        np.testing.assert_array_equal(got(x), Linear(w, b, "relu")(x))
        assert_close_f32(got(x), reference_linear(x, w.to_dense(), b, relu=True), x,
                         w.to_dense())


def test_csr_files_still_load_as_csr(tmp_path, rng):
    w = CSRMatrix.from_dense(pruned(rng, 40, 50))
    path = tmp_path / "csr.skm"
    sparsekit.save([Linear(w)], path)
    assert "runtime" not in _header(path)["nodes"][0]["weight"]
    assert type(sparsekit.load(path).nodes[0][0].weight) is CSRMatrix


def test_unknown_csr_runtime_is_an_error(tmp_path, rng):
    import zlib

    path = tmp_path / "sell.skm"
    sparsekit.save([Linear(SlicedEllMatrix.from_dense(pruned(rng, 20, 40)))], path)
    blob = bytearray(open(path, "rb").read())
    _, _, _, hlen = struct.unpack_from("<8sIIQ", blob)
    head = bytes(blob[24:24 + hlen]).replace(b'"sliced ell fp32"', b'"sliced ell fp99"')
    assert len(head) == hlen
    blob[24:24 + hlen] = head
    struct.pack_into("<I", blob, 12, zlib.crc32(head))
    open(path, "wb").write(bytes(blob))
    with pytest.raises(ValueError, match="unknown csr_f32 runtime"):
        sparsekit.load(path)


# ---- ONNX / Keras converters share pack_float -------------------------------------

def test_onnx_load_m1(rng):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    import sparsekit.onnx as sko

    w = pruned(rng, 64, 48)  # MatMul's B is [K, N]
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 48])],
                          [numpy_helper.from_array(w, "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    rt1, rt = sko.load(model, m=1), sko.load(model)
    assert type(rt1.nodes[0][0].weight) is want_m1(w.T)
    x = rng.standard_normal((1, 64)).astype(np.float32)
    close(rt1(x), x @ w)
    close(rt1(x), rt(x))


def test_keras_convert_m1(rng):
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")  # as tests/test_keras_convert.py
    keras = pytest.importorskip("keras")
    import sparsekit.keras  # noqa: F401

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(48, use_bias=False)])
    kernel = pruned(rng, 48, 64).T  # Keras kernels are [in, out]
    model.layers[0].set_weights([kernel])
    rt1 = sparsekit.keras.convert(model, m=1)
    weights = [layer.weight for layer, _, _ in rt1.nodes if layer.weight is not None]
    assert [type(w) for w in weights] == [want_m1(kernel.T)]
    x = rng.standard_normal((1, 64)).astype(np.float32)
    close(rt1(x), x @ kernel)
