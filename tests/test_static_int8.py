"""Static (calibrated, per-tensor) int8 activations: SparseInt8Matrix.with_static_input
and sparsekit.torch.accelerate(model, quantize="static").

Tolerances. SparseInt8Matrix static: bit-identical to quantize_rows(x, scale,
zero_point) + int8_matmul + the float32 epilogue written out in NumPy (the
integers are exact, the epilogue is the same float32 operations). accelerate
static against compress.fake_quantize (same input and weight quantization, by
the same rounding): only float rounding differs, fake_quantize's float32 GEMM
over K terms against sparsekit's exact int32 sum and one float32 epilogue.
Measured: |diff| <= 2.1 eps32 * S with S = sum_k |x~_k w~_nk| + |b_n| (x~, w~
the fake-quantized values; 20 layers, K = 7..1000); asserted with 8 eps32 * S.
One quantization step (a wrong zero point, a u8 rounding flip, a different
weight scale) moves an output by s_x * |w~| >> 8 eps32 * S.
"""
import pickle
import warnings

import numpy as np
import pytest

import sparsekit
from sparsekit import QuantizedMatrix, SparseInt8Matrix, int8_matmul, quantize_rows

EPS32 = float(np.finfo(np.float32).eps)


def _pruned(rng, n, k, density, blocks=False):
    w = rng.standard_normal((n, k)).astype(np.float32)
    if blocks:  # 1x4 blocks: well filled, the 1x4 kernel (no g4 copy)
        kq = (k + 3) // 4
        keep = np.repeat(rng.random((n, kq)) < density, 4, axis=1)[:, :k]
        w[~keep] = 0
    else:
        w[rng.random((n, k)) >= density] = 0
    if n > 2:
        w[2] = 0  # an empty row
    return w


def _static_ref(x, w, scale, zp, bias, relu):
    """The documented statement of SparseInt8Matrix's static linear."""
    xq, _, _ = quantize_rows(x, scale, zp)
    acc = int8_matmul(xq, zp, w).astype(np.float32)
    y = acc * (np.float32(scale) * np.asarray(w.scale, np.float32))
    if bias is not None:
        y = y + bias
    return np.maximum(y, 0) if relu else y


# ---- SparseInt8Matrix.with_static_input -------------------------------------

@pytest.mark.parametrize("blocks", [False, True])
def test_sparse_static_bit_identical_to_quantize_then_int8_matmul(isa, rng, blocks):
    for n, k in ((37, 70), (16, 64), (5, 3), (64, 129)):
        w = _pruned(rng, n, k, 0.15 if not blocks else 0.4, blocks)
        for per_channel in (True, False):
            base = SparseInt8Matrix.from_float(w, per_channel=per_channel)
            for scale, zp in ((0.021, 117), (0.05, 0), (0.003, 255)):
                sw = base.with_static_input(scale, zp)
                assert sw.input_scale == float(np.float32(scale)) and sw.input_zero_point == zp
                for m in (1, 3, 40, 100):  # 1x4 tiles, g4 tiles (M >= 33) and M == 1
                    x = (rng.standard_normal((m, k)) * 1.5).astype(np.float32)
                    x[0, : min(k, 3)] = (-1e3, 1e3, 0.0)[: min(k, 3)]  # clipped to 0 / 255
                    bias = rng.standard_normal(n).astype(np.float32)
                    for b, act in ((None, None), (bias, "relu"), (bias, None)):
                        got = sparsekit.linear(x, sw, b, activation=act)
                        want = _static_ref(x, sw, scale, zp, b, act == "relu")
                        assert got.dtype == np.float32 and got.shape == (m, n)
                        np.testing.assert_array_equal(got, want)


def test_sparse_static_matches_dense_static_and_float64(isa, rng):
    """The same int8 weight as QuantizedMatrix (dense kernels) with the same static
    input: both within 4 eps32 of the exact product scaled in float64."""
    w = _pruned(rng, 48, 97, 0.2)
    sw = SparseInt8Matrix.from_float(w).with_static_input(0.04, 128)
    dw = QuantizedMatrix.from_int8(sw.q, sw.scale).with_static_input(0.04, 128)
    x = rng.standard_normal((2, 35, 97)).astype(np.float32)  # leading dims kept
    got, dense = sparsekit.linear(x, sw), sparsekit.linear(x, dw)
    assert got.shape == (2, 35, 48)
    xq = np.clip(np.rint(x / np.float32(0.04)) + 128, 0, 255).reshape(70, 97)
    exact = (xq.astype(np.int64) - 128) @ sw.q.astype(np.int64).T
    ref = exact * np.float64(np.float32(0.04)) * sw.scale.astype(np.float64)
    for y in (got, dense):
        assert np.all(np.abs(y.reshape(70, 48) - ref) <= 4 * EPS32 * np.abs(ref) + 1e-30)


def test_sparse_static_gelu_back_to_dynamic_and_original_kept(rng):
    w = _pruned(rng, 20, 33, 0.2)
    base = SparseInt8Matrix.from_float(w)
    sw = base.with_static_input(0.03, 100)
    x = rng.standard_normal((6, 33)).astype(np.float32)
    assert base.input_scale is None and base.input_zero_point is None
    g = sparsekit.linear(x, sw, activation="gelu")  # no fused epilogue: one pass after
    y = sparsekit.linear(x, sw).astype(np.float64)
    from math import erf
    ref = np.vectorize(lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2))))(y)
    assert np.all(np.abs(g - ref) <= 1e-6 * np.abs(ref) + 1e-7)
    back = sw.with_static_input(None, None)
    assert back.input_scale is None
    np.testing.assert_array_equal(sparsekit.linear(x, back), sparsekit.linear(x, base))
    assert not np.array_equal(sparsekit.linear(x, sw), sparsekit.linear(x, base))


def test_sparse_static_edge_shapes(rng):
    empty_k = SparseInt8Matrix.from_int8(np.zeros((4, 0), np.int8), 1.0).with_static_input(
        0.1, 3)
    b = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(sparsekit.linear(np.ones((3, 0), np.float32), empty_k, b),
                                  np.tile(b, (3, 1)))
    zero = SparseInt8Matrix.from_int8(np.zeros((5, 9), np.int8), 0.5).with_static_input(0.1, 7)
    assert zero.nblocks == 0
    np.testing.assert_array_equal(sparsekit.linear(np.ones((2, 9), np.float32), zero),
                                  np.zeros((2, 5), np.float32))
    sw = SparseInt8Matrix.from_float(_pruned(rng, 6, 10, 0.5)).with_static_input(0.1, 7)
    assert sparsekit.linear(np.ones((0, 10), np.float32), sw).shape == (0, 6)
    one = sparsekit.linear(np.ones(10, np.float32), sw)
    assert one.shape == (6,)


def test_sparse_static_errors(rng):
    sw = SparseInt8Matrix.from_float(_pruned(rng, 6, 10, 0.5))
    with pytest.raises(ValueError, match="scale/zero_point"):
        sw.with_static_input(0.1, None)
    with pytest.raises(ValueError, match="scale/zero_point"):
        sw.with_static_input(None, 3)
    with pytest.raises(ValueError, match="input_zero_point"):
        sw.with_static_input(0.1, 256)
    for bad in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="input_scale"):
            sw.with_static_input(bad, 3)
    with pytest.raises(TypeError, match="input_scale"):
        sw.with_static_input(np.ones(2), 3)
    with pytest.raises(TypeError, match="input_zero_point"):
        sw.with_static_input(0.1, 3.0)
    x = np.ones((2, 10), np.float32)
    x[1, 4] = np.nan
    with pytest.raises(ValueError, match="x: contains NaN"):
        sparsekit.linear(x, sw.with_static_input(0.1, 3))
    with pytest.raises(ValueError, match="backend"):
        sparsekit.linear(np.ones((2, 10), np.float32), sw.with_static_input(0.1, 3),
                         backend="numba")


def test_sparse_static_pickle_state_arrays_and_file(rng, tmp_path):
    w = _pruned(rng, 30, 41, 0.2)
    x = rng.standard_normal((5, 41)).astype(np.float32)
    for per_channel in (True, False):
        sw = SparseInt8Matrix.from_float(w, per_channel=per_channel).with_static_input(0.02, 9)
        assert "input=static(0.02, 9)" in repr(sw)
        arrays = sw._state_arrays()
        assert arrays["input_scale"].dtype == np.float64 and int(arrays["input_zero_point"]) == 9
        for back in (pickle.loads(pickle.dumps(sw)),
                     SparseInt8Matrix._from_state_arrays(sw.shape, arrays)):
            assert (back.input_scale, back.input_zero_point) == (sw.input_scale, 9)
            assert back.per_channel == per_channel
            np.testing.assert_array_equal(sparsekit.linear(x, back), sparsekit.linear(x, sw))
    dyn = SparseInt8Matrix.from_float(w)
    assert "input_scale" not in dyn._state_arrays()
    assert pickle.loads(pickle.dumps(dyn)).input_scale is None
    bad = dict(sw._state_arrays(), input_zero_point=np.array(300))
    with pytest.raises(ValueError, match="input_zero_point"):
        SparseInt8Matrix._from_state_arrays(sw.shape, bad)
    # sparsekit.save / load keep the static input of a sparse int8 layer
    from sparsekit.runtime import layers as L
    model = [L.Linear(sw, np.ones(30, np.float32), "relu")]
    sparsekit.save(model, tmp_path / "m.skm")
    loaded = sparsekit.load(tmp_path / "m.skm")
    lw = loaded.nodes[0][0].weight
    assert isinstance(lw, SparseInt8Matrix) and lw.input_zero_point == 9
    np.testing.assert_array_equal(loaded(x), model[0](x))


# ---- accelerate(model, quantize="static") -----------------------------------

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import sparsekit.torch as skt  # noqa: E402
from sparsekit import compress  # noqa: E402
from sparsekit.compress.quantize import fake_quant_activation, fake_quant_weight  # noqa: E402
from sparsekit.runtime.torch_modules import SparseConv2d, SparseLinear  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)


def _assert_close_to_fake(got, layer, x, fast_layer=None):
    """|got - fake-quantized layer(x)| <= 8 eps32 * S (module docstring)."""
    qp = compress.get_qparams(layer)
    xf = fake_quant_activation(x, qp.input_scale, qp.input_zero_point)
    wf = fake_quant_weight(layer.weight, qp.weight_scale)
    b = layer.bias
    with torch.no_grad():
        if isinstance(layer, nn.Linear):
            want = nn.functional.linear(xf, wf, b)
            s = nn.functional.linear(xf.double().abs(), wf.double().abs(), b.double().abs())
        else:
            want = layer._conv_forward(xf, wf, b)
            s = layer._conv_forward(xf.double().abs(), wf.double().abs(), b.double().abs())
    err = (got.double() - want.double()).abs()
    assert got.shape == want.shape
    assert bool((err <= 8 * EPS32 * s + 1e-30).all()), float((err / (EPS32 * s)).max())


def _calibrated(model, batches, **kw):
    compress.calibrate(model, batches, report=False, **kw)
    return model


def test_accelerate_static_linear_and_conv_match_fake_quantize(isa):
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Linear(70, 37)).eval()
    with torch.no_grad():
        lin[0].weight[torch.rand(37, 70) < 0.85] = 0
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, stride=2)).eval()
    for model, shape, sparse in ((lin, (40, 70), 0.5), (lin, (40, 70), 1.0),
                                 (conv, (2, 3, 9, 9), 1.0)):
        _calibrated(model, [torch.randn(*shape) for _ in range(3)])
        fast = skt.accelerate(model, quantize="static", min_sparsity=sparse)
        w = fast[0].layer.weight
        assert type(w) is (SparseInt8Matrix if sparse < 1 else QuantizedMatrix)
        assert w.input_zero_point == model[0].sparsekit_qparams.input_zero_point
        x = torch.randn(*shape) * 1.3  # wider than calibration: some values clip
        with torch.no_grad():
            got = fast(x)
            with compress.fake_quantize(model):
                fq = model(x)
        _assert_close_to_fake(got, model[0], x)
        assert float((got - fq).abs().max()) <= 1e-5 * float(fq.abs().max())


def test_accelerate_static_gelu_fused_into_dense_int8():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 40), nn.GELU(), nn.Linear(40, 8)).eval()
    _calibrated(model, [torch.randn(16, 24) for _ in range(2)])
    fast = skt.accelerate(model, quantize="static")
    if sparsekit.info()["kernels"].get("gelu_f32") in (None, "scalar"):
        pytest.skip("no vector GELU kernel here: accelerate does not fuse")
    assert fast[0].layer.activation == "gelu" and type(fast[1]) is nn.Identity
    assert fast[0].layer.weight.input_scale is not None
    assert "GELU fused" in skt.report(fast)[0]["reason"]
    x = torch.randn(30, 24)
    with torch.no_grad():
        h = fast[0](x)
        with compress.fake_quantize(model):
            ref = nn.functional.gelu(model[0](x))
    # the GELU (within 1e-6 relative) of an output within 8 eps32 * S of fake_quantize
    assert float((h - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
    _assert_close_to_fake(fast[2](h), model[2], h)


@pytest.fixture(scope="module")
def digits_mlp():
    """(a pruned digits MLP with calibrate()'s parameters, test inputs, labels)."""
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    xtr, ytr, xte, yte = x[:1400], y[:1400], x[1400:], y[1400:]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 64), nn.ReLU(),
                          nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def train(epochs, masks=()):
        for _ in range(epochs):
            for i in range(0, 1400, 64):
                opt.zero_grad()
                nn.functional.cross_entropy(model(xtr[i:i + 64]), ytr[i:i + 64]).backward()
                opt.step()
                with torch.no_grad():
                    for w, keep in masks:
                        w.mul_(keep)

    train(6)
    compress.prune(model, 0.9, skip=("4",))  # the classifier stays dense
    train(6, [(model[i].weight, model[i].weight != 0) for i in (0, 2)])  # recover
    model.eval()
    _calibrated(model, [xtr[:512]], observer="percentile")
    return model, xte, yte


def test_accelerate_static_digits_mlp(digits_mlp):
    model, x, y = digits_mlp
    fast = skt.accelerate(model, quantize="static", min_sparsity=0.5)
    kinds = [type(fast[i].layer.weight) for i in (0, 2, 4)]
    assert kinds == [SparseInt8Matrix, SparseInt8Matrix, QuantizedMatrix]
    assert all(fast[i].layer.weight.input_scale is not None for i in (0, 2, 4))
    rows = skt.report(fast)
    assert [r["chosen"] for r in rows] == ["sparse int8", "sparse int8", "dense int8"]
    assert all("static activations" in r["reason"] and "percentile" in r["reason"]
               for r in rows)
    assert [(r["name"], r["chosen"], r["reason"]) for r in skt.report(
        model, quantize="static", min_sparsity=0.5)] == \
        [(r["name"], r["chosen"], r["reason"]) for r in rows]
    # each layer on the input it really gets in the accelerated model
    seen = {}
    hooks = [fast[i].register_forward_hook(
        lambda mod, args, out, i=i: seen.__setitem__(i, (args[0], out))) for i in (0, 2, 4)]
    with torch.no_grad():
        got = fast(x)
        with compress.fake_quantize(model):
            fq = model(x)
    for h in hooks:
        h.remove()
    for i in (0, 2, 4):
        _assert_close_to_fake(seen[i][1], model[i], seen[i][0])
    # end to end: a u8 rounding flip after a float-rounding difference moves an
    # output by one step at most here; predictions agree with fake_quantize
    assert (got.argmax(1) == fq.argmax(1)).float().mean() >= 0.99
    acc = float((got.argmax(1) == y).float().mean())
    assert acc >= float((fq.argmax(1) == y).float().mean()) - 0.01 and acc > 0.85


def test_static_state_dict_round_trip(digits_mlp):
    import copy

    model, x, _ = digits_mlp
    fast = skt.accelerate(model, quantize="static", min_sparsity=0.5)
    sd = fast.state_dict()
    assert {"0.weight.input_scale", "0.weight.input_zero_point",
            "4.weight.input_scale"} <= set(sd)
    assert int(sd["2.weight.input_zero_point"]) == model[2].sparsekit_qparams.input_zero_point
    # a copy calibrated differently, accelerated the same way, loads it exactly
    other = copy.deepcopy(model)
    compress.calibrate(other, [x[:50] * 2], report=False)
    fresh = skt.accelerate(other, quantize="static", min_sparsity=0.5)
    with torch.no_grad():
        assert not torch.equal(fresh(x), fast(x))
        fresh.load_state_dict(sd)
        assert torch.equal(fresh(x), fast(x))
    assert fresh[2].layer.weight.input_scale == fast[2].layer.weight.input_scale
    bad = dict(sd)
    bad["2.weight.input_zero_point"] = torch.tensor(999)
    with pytest.raises(RuntimeError, match="input_zero_point"):
        fresh.load_state_dict(bad)
    # a dynamic model does not take a static state_dict silently
    dyn = skt.accelerate(model, quantize="dynamic", min_sparsity=0.5)
    with pytest.raises(RuntimeError, match="input_scale"):
        dyn.load_state_dict(sd)
    assert torch.equal(pickle.loads(pickle.dumps(fast))(x), fast(x))


def test_uncalibrated_layers_follow_quantize_none():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 30), nn.ReLU(),
                          nn.Linear(30, 5)).eval()
    with torch.no_grad():
        model[2].weight[torch.rand(30, 30) < 0.95] = 0
    _calibrated(model, [torch.randn(8, 20)], skip=("2", "4"))
    fast = skt.accelerate(model, quantize="static", min_sparsity=0.7)
    assert type(fast[0].layer.weight) is QuantizedMatrix  # calibrated: static int8
    assert type(fast[2].layer.weight) is sparsekit.CSRMatrix  # pruned fp32, as quantize=None
    assert type(fast[4]) is nn.Linear  # dense fp32 stays torch's
    rows = {r["name"]: r for r in skt.report(fast)}
    assert "not calibrated" in rows["2"]["reason"] and rows["2"]["chosen"] == "csr fp32"
    assert "not calibrated" in rows["4"]["reason"] and rows["4"]["chosen"] == "kept"
    x = torch.randn(4, 20)
    with torch.no_grad():
        h = fast[1](fast[0](x))
        np.testing.assert_allclose(fast[2](h).numpy(), model[2](h).numpy(), rtol=1e-5,
                                   atol=1e-6)


def test_static_bad_calls():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    with pytest.raises(ValueError, match=r"quantize: 'static'.*calibrate"):
        skt.accelerate(model, quantize="static")
    with pytest.raises(ValueError, match=r"quantize: 'static'.*calibrate"):
        skt.report(model, quantize="static")
    with pytest.raises(ValueError, match=r"quantize: 'static'.*calibrate"):
        skt.to_runtime(model, quantize="static")
    with pytest.raises(ValueError, match="'static'"):
        skt.accelerate(model, quantize="int8")  # the message lists the modes
    _calibrated(model, [torch.randn(5, 6)])
    from sparsekit.compress.quantize import QuantParams

    qp = model[2].sparsekit_qparams
    model[2].sparsekit_qparams = QuantParams(qp.input_scale, 300, 1.0, 0, qp.weight_scale)
    with pytest.raises(ValueError, match=r"layer '2'.*sparsekit_qparams.input_zero_point"):
        skt.accelerate(model, quantize="static")
    model[2].sparsekit_qparams = QuantParams(0.0, 3, 1.0, 0, qp.weight_scale)
    with pytest.raises(ValueError, match=r"layer '2'.*sparsekit_qparams.input_scale"):
        skt.report(model, quantize="static")
    model[2].sparsekit_qparams = QuantParams(qp.input_scale, 3, 1.0, 0, np.ones(5, np.float32))
    with pytest.raises(ValueError, match=r"layer '2'.*weight_scale.*1 or 3"):
        skt.accelerate(model, quantize="static")
    with pytest.raises(ValueError, match=r"model\[2\].*weight_scale"):
        skt.to_runtime(model, quantize="static")
    model[2].sparsekit_qparams = qp
    skt.accelerate(model, quantize="static")  # fine again


def test_to_runtime_static_sequential_matches_accelerate(digits_mlp):
    model, x, _ = digits_mlp
    fast = skt.accelerate(model, quantize="static", min_sparsity=0.5)
    rt = skt.to_runtime(model, quantize="static", min_sparsity=0.5)
    ws = [layer.weight for layer in rt.layers if hasattr(layer, "weight")]
    assert [type(w) for w in ws] == [SparseInt8Matrix, SparseInt8Matrix, QuantizedMatrix]
    assert all(w.input_scale is not None for w in ws)
    with torch.no_grad():
        want = fast(x).numpy()
    np.testing.assert_array_equal(rt(x.numpy()), want)


def test_ao_static_pruned_linear_runs_its_quint8_integers():
    """A torch.ao static model with a pruned Linear: its weight becomes a
    SparseInt8Matrix and quint8 inputs run on their own integers
    (SparseInt8Matrix.with_static_input), as dense int8 weights do."""
    from conftest import quantize_static

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = torch.ao.quantization.QuantStub()
            self.fc1 = nn.Linear(32, 48)
            self.relu = nn.ReLU()
            self.fc2 = nn.Linear(48, 10)
            self.dequant = torch.ao.quantization.DeQuantStub()

        def forward(self, x):
            return self.dequant(self.fc2(self.relu(self.fc1(self.quant(x)))))

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.fc1.weight[torch.rand(48, 32) < 0.9] = 0
    m = quantize_static(net, [["fc1", "relu"]], [torch.randn(16, 32) for _ in range(4)])
    acc = skt.accelerate(m, min_sparsity=0.5)
    assert type(acc.fc1.layer.weight) is SparseInt8Matrix
    x = torch.randn(9, 32)
    with torch.no_grad():
        ref = m(x).numpy()
        got = acc(x).numpy()
    assert acc.fc1._static  # the static path was taken
    assert np.abs(got - ref).max() <= 1.01 * float(m.fc2.scale)
