"""sparsekit.torch.accelerate(model, quantize="static") (and to_runtime, report):
the parameters of sparsekit.compress.calibrate run on the int8 kernels.

Tolerance against compress.fake_quantize (same input and weight quantization,
by the same rounding): only float rounding differs, fake_quantize's float32
GEMM over K terms against sparsekit's exact int32 sum and one float32
epilogue. Measured: |diff| <= 2.1 eps32 * S with S = sum_k |x~_k w~_nk| + |b_n|
(x~, w~ the fake-quantized values; 20 layers, K = 7..1000); asserted with
8 eps32 * S. One quantization step (a wrong zero point, a u8 rounding flip)
moves an output by s_x * |w~| >> 8 eps32 * S, and a weight or input scale off
by 1e-6 relative already fails it.
"""
import pickle
import warnings

import numpy as np
import pytest

import sparsekit
from sparsekit import QuantizedMatrix, SparseInt8Matrix

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import sparsekit.torch as skt  # noqa: E402
from sparsekit import compress  # noqa: E402
from sparsekit.compress.quantize import fake_quant_activation, fake_quant_weight  # noqa: E402
from sparsekit.runtime.torch_modules import SparseConv2d, SparseLinear  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)
EPS32 = float(np.finfo(np.float32).eps)


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
    with torch.no_grad():
        conv[0].weight[torch.rand(8, 3, 3, 3) < 0.7] = 0
    for model, shape, sparse, per_channel in (
            (lin, (40, 70), 0.5, True), (lin, (40, 70), 1.0, True), (lin, (40, 70), 0.5, False),
            (lin, (40, 70), 1.0, False), (conv, (2, 3, 9, 9), 1.0, True),
            (conv, (2, 3, 9, 9), 0.5, False)):
        _calibrated(model, [torch.randn(*shape) for _ in range(3)], per_channel=per_channel)
        fast = skt.accelerate(model, quantize="static", min_sparsity=sparse)
        assert type(fast[0]) is (SparseConv2d if model is conv else SparseLinear)
        w = fast[0].layer.weight
        assert type(w) is (SparseInt8Matrix if sparse < 1 else QuantizedMatrix)
        assert w.per_channel == per_channel
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
    fast = skt.accelerate(model, quantize="static", min_sparsity=0.7, dense="torch")
    assert type(fast[0].layer.weight) is QuantizedMatrix  # calibrated: static int8
    assert type(fast[2].layer.weight) is sparsekit.CSRMatrix  # pruned fp32, as quantize=None
    assert type(fast[4]) is nn.Linear  # dense fp32 stays torch's
    rows = {r["name"]: r for r in skt.report(fast)}
    assert "not calibrated" in rows["2"]["reason"] and rows["2"]["chosen"] == "csr fp32"
    assert "not calibrated" in rows["4"]["reason"] and rows["4"]["chosen"] == "kept"
    # by default dense fp32 runs on the packed fp32 GEMM where that is fast here
    from sparsekit._dense_f32 import PackedDenseMatrix, wanted

    packed = skt.accelerate(model, quantize="static", min_sparsity=0.7)
    row = {r["name"]: r for r in skt.report(packed)}["4"]
    assert "not calibrated" in row["reason"]
    if wanted():
        assert row["chosen"] == "dense fp32" and type(packed[4].layer.weight) is PackedDenseMatrix
    else:
        assert row["chosen"] == "kept" and type(packed[4]) is nn.Linear
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
        skt.accelerate(model, quantize="int4")  # the message lists the modes ("int8" is a synonym)
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
