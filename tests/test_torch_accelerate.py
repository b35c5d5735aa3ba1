"""sparsekit.torch.accelerate against torch's own output on the same input,
for every weight form a torch user has.

Tolerances: fp32 paths 1e-5 relative to the output's magnitude (same math,
different summation order). int8 paths are compared with the bound of
per-row u8 activation quantization, |err| <= s_row / 2 * sum_k |w_nk| (s_row =
row range / 255), against the same int8 weights dequantized; and against torch's
own int8 output within a few of its quantization steps.
"""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.utils.prune as prune  # noqa: E402

import sparsekit  # noqa: E402
import sparsekit.torch as skt  # noqa: E402
from sparsekit.runtime.torch_modules import SparseConv2d, SparseLinear  # noqa: E402
from conftest import quantize_static  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")


@pytest.fixture
def int8():
    return sparsekit.QuantizedMatrix


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, 32), nn.GELU(),
                         nn.Linear(32, 10)).eval()


def cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(16 * 2 * 2, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


def prune_all(model, amount=0.9, remove=False):
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            prune.l1_unstructured(m, "weight", amount)
            if remove:
                prune.remove(m, "weight")
    return model


def close(got, ref, tol=1e-5):
    got, ref = got.detach().numpy(), ref.detach().numpy()
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * (np.abs(ref).max() + 1))


def act_quant_bound(x, w):
    """Bound of per-row u8 dynamic activation quantization for y = x @ w.T."""
    x = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    s = (np.maximum(x.max(1), 0) - np.minimum(x.min(1), 0)) / 255
    return (s[:, None] / 2) * np.abs(np.asarray(w, np.float64)).sum(1)[None, :] + 1e-6


@pytest.mark.parametrize("remove", [False, True])
def test_pruned_fp32_matches_torch(rng, remove):
    model = prune_all(cnn(), remove=remove)
    x = torch.randn(5, 1, 8, 8)
    acc = skt.accelerate(model, min_sparsity=0.5)
    with torch.no_grad():
        close(acc(x), model(x))
    kinds = [type(m) for m in acc]
    assert kinds.count(SparseConv2d) == 2 and kinds.count(SparseLinear) == 2
    rep = skt.report(acc)
    assert all(r["chosen"] == "csr fp32" for r in rep)
    assert ("prune mask" in rep[0]["reason"]) != remove
    # the input model is untouched (inplace=False)
    assert type(model[0]) is nn.Conv2d


def test_prune_mask_is_read_not_stale_weight():
    """weight_orig * weight_mask counts, even if module.weight was not refreshed."""
    model = prune_all(mlp(), 0.8)
    with torch.no_grad():
        model[0].weight_orig.mul_(2.0)  # prune's hook recomputes weight at forward
    x = torch.randn(3, 40)
    acc = skt.accelerate(model)
    with torch.no_grad():
        close(acc(x), model(x))


def test_ao_pruning_nm_before_and_after_squash():
    from torch.ao.pruning import WeightNormSparsifier

    model = mlp()
    sp = WeightNormSparsifier(sparsity_level=1.0, sparse_block_shape=(1, 4), zeros_per_block=3)
    sp.prepare(model, [{"tensor_fqn": f"{i}.weight"} for i in (0, 2, 4)])
    sp.step()
    x = torch.randn(4, 40)
    with torch.no_grad():
        ref = model(x)
        close(skt.accelerate(model, min_sparsity=0.5)(x), ref)  # parametrized, not squashed
    sp.squash_mask()
    acc = skt.accelerate(model, min_sparsity=0.5)
    with torch.no_grad():
        close(acc(x), ref)
    rep = skt.report(acc)
    assert all(r["chosen"] == "csr fp32" and "1:4 pattern" in r["reason"] for r in rep)


def test_default_choice_is_explained():
    """min_sparsity=None: sparsekit.pack's measured cost model (if built) or the
    default thresholds decide; either way the result is right and explained."""
    model = prune_all(cnn())
    acc = skt.accelerate(model)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        close(acc(x), model(x))
    for r in skt.report(acc):
        assert r["reason"] and ("cost model" in r["reason"] or "%" in r["reason"])


def test_dense_layers_stay_with_reason():
    model = mlp()
    acc = skt.accelerate(model, min_sparsity=0.7, dense="torch")
    assert [type(m) for m in acc] == [type(m) for m in model]
    rep = skt.report(acc)
    assert len(rep) == 3 and all(r["chosen"] == "kept" for r in rep)
    assert "dense" in rep[0]["reason"] and "sparsity 0%" in rep[0]["reason"]
    assert all(r["chosen"] == "kept" for r in skt.report(skt.accelerate(model, dense="torch")))
    assert "kept" in str(rep)
    # with a lower threshold a half-pruned layer is taken
    model = prune_all(mlp(), 0.5)
    acc = skt.accelerate(model, min_sparsity=0.4, dense="torch")
    assert isinstance(acc[0], SparseLinear)


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"], indirect=True)
def test_dense_fp32_linears_on_the_packed_gemm(isa, tmp_path):
    """dense="sparsekit" (the default): Linears that stay dense fp32 run on the
    packed fp32 GEMM where _dense_f32.wanted() says it is fast, else stay torch
    modules; GELU after one is fused into its epilogue; conv layers stay."""
    from sparsekit._dense_f32 import PackedDenseMatrix, wanted

    model = cnn()
    model[7] = nn.GELU()
    x = torch.randn(5, 1, 8, 8)
    acc = skt.accelerate(model, min_sparsity=0.9)
    rep = skt.report(acc)
    assert skt.report(model, min_sparsity=0.9) == [
        dict(r, reason=r["reason"].replace("; + GELU fused into the GEMM's epilogue", ""))
        for r in rep]
    assert [r["chosen"] for r in rep if r["module"] == "Conv2d"] == ["kept", "kept"]
    lin = [r for r in rep if r["module"] == "Linear"]
    with torch.no_grad():
        close(acc(x), model(x))
    if not wanted():
        assert [type(acc[i]) for i in (6, 8)] == [nn.Linear, nn.Linear]
        assert all(r["chosen"] == "kept" for r in lin)
        return
    assert all(isinstance(acc[i].layer.weight, PackedDenseMatrix) for i in (6, 8))
    assert all(r["chosen"] == "dense fp32" and "packed once" in r["reason"] for r in lin)
    assert acc[6].layer.activation == "gelu" and isinstance(acc[7], nn.Identity)
    assert "GELU fused" in lin[0]["reason"]
    # state_dict: the dense values themselves, round trip into a model accelerated alike
    sd = acc.state_dict()
    np.testing.assert_array_equal(sd["6.weight.values"].numpy(), model[6].weight.detach().numpy())
    fresh = cnn(seed=1)
    fresh[7] = nn.GELU()
    fresh = skt.accelerate(fresh, min_sparsity=0.9)
    fresh.load_state_dict(sd)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), acc(x), rtol=0, atol=0)
    torch.save(acc, tmp_path / "m.pt")
    back = torch.load(tmp_path / "m.pt", weights_only=False)
    with torch.no_grad():
        torch.testing.assert_close(back(x), acc(x), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dense_layers_of_other_precisions_stay_torch(dtype):
    """A float64 / bfloat16 model keeps its dense Linears in torch (sparsekit
    computes in float32): the model runs as before, in its own dtype."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 4)).to(dtype).eval()
    acc = skt.accelerate(model)
    assert [type(m) for m in acc] == [type(m) for m in model]
    x = torch.randn(3, 8).to(dtype)
    with torch.no_grad():
        torch.testing.assert_close(acc(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_sparse_layers_hand_on_the_models_dtype(dtype):
    """A pruned float64 / bfloat16 model: the sparse layers compute in float32
    and return the input's dtype, so the torch layers after them still run."""
    torch.manual_seed(0)
    model = prune_all(nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 4)),
                      0.9, remove=True).to(dtype).eval()
    acc = skt.accelerate(model, min_sparsity=0.5)
    assert isinstance(acc[0], SparseLinear) and isinstance(acc[2], SparseLinear)
    x = torch.randn(3, 8).to(dtype)
    with torch.no_grad():
        got, want = acc(x), model(x)
    assert got.dtype == dtype
    tol = 1e-5 if dtype == torch.float64 else 3e-2
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)


def test_dense_argument_is_checked():
    for bad in ("numpy", None, 1, "Torch"):
        with pytest.raises(ValueError, match="dense"):
            skt.accelerate(mlp(), dense=bad)
        with pytest.raises(ValueError, match="dense"):
            skt.report(mlp(), dense=bad)


def test_unsupported_conv_stays():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 4, 3, padding=1,
                                                                  padding_mode="reflect"))
    model = prune_all(model)
    acc = skt.accelerate(model, min_sparsity=0.5)
    assert type(acc[0]) is nn.Conv2d and type(acc[1]) is nn.Conv2d
    reasons = [r["reason"] for r in skt.report(acc)]
    assert "groups=2" in reasons[0] and "reflect" in reasons[1]


def test_conv_same_padding_and_stride(rng):
    torch.manual_seed(1)
    model = prune_all(nn.Sequential(nn.Conv2d(3, 6, (3, 4), padding="same"),
                                    nn.Conv2d(6, 5, 3, stride=2, padding=2, dilation=2),
                                    nn.Conv2d(5, 7, 1)).eval())
    x = torch.randn(2, 3, 11, 12)
    acc = skt.accelerate(model, min_sparsity=0.5)
    assert all(isinstance(m, SparseConv2d) for m in acc)
    with torch.no_grad():
        close(acc(x), model(x))


def test_conv_unbatched_input_and_numpy_input(rng):
    torch.manual_seed(2)
    model = prune_all(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                                    nn.Conv2d(6, 4, 3, stride=2)).eval())
    acc = skt.accelerate(model, min_sparsity=0.5)
    assert all(isinstance(m, SparseConv2d) for m in (acc[0], acc[2]))
    x = torch.randn(3, 9, 10)  # (C, H, W), as nn.Conv2d accepts
    with torch.no_grad():
        ref = model(x)
        got = acc(x)
    assert got.shape == ref.shape == (4, 4, 4)
    close(got, ref)
    with pytest.raises(ValueError, match="x"):  # wrong channel count still names x
        with torch.no_grad():
            acc(torch.randn(5, 9, 10))
    with pytest.raises(TypeError, match="x: .*ndarray"):
        acc(np.zeros((1, 3, 9, 10), np.float32))
    lin = skt.accelerate(prune_all(mlp()), min_sparsity=0.5)
    with pytest.raises(TypeError, match="x: .*ndarray"):
        lin(np.zeros((2, 40), np.float32))


def test_train_mode_and_grad_raise():
    acc = skt.accelerate(prune_all(mlp()), min_sparsity=0.5)
    x = torch.randn(2, 40)
    acc.train()
    with pytest.raises(RuntimeError, match="inference-only"):
        acc(x)
    acc.eval()
    with pytest.raises(RuntimeError, match="requires grad"):
        acc(x.requires_grad_())
    with torch.inference_mode():
        assert acc(x).shape == (2, 10)


def test_torch_layer_before_accelerated_one_works_without_no_grad():
    """A LayerNorm (trainable, left in torch) feeding an accelerated Linear: a
    plain call works because accelerate freezes the parameters it keeps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.LayerNorm(32), nn.Linear(32, 64)).eval()
    with torch.no_grad():
        model[1].weight[torch.rand(64, 32) < 0.9] = 0
    fast = skt.accelerate(model, min_sparsity=0.5)
    assert "Sparse" in type(fast[1]).__name__
    x = torch.randn(4, 32)
    torch.testing.assert_close(fast(x), model(x).detach(), rtol=1e-5, atol=1e-5)
    assert all(p.requires_grad for p in model.parameters())  # the original is untouched


def test_inplace_and_argument_checks():
    model = prune_all(mlp())
    out = skt.accelerate(model, inplace=True, min_sparsity=0.5)
    assert out is model and isinstance(model[0], SparseLinear)
    with pytest.raises(ValueError, match="quantize"):
        skt.accelerate(mlp(), quantize="static")
    with pytest.raises(ValueError, match="min_sparsity"):
        skt.accelerate(mlp(), min_sparsity=1.5)
    with pytest.raises(TypeError, match="model"):
        skt.accelerate(np.zeros(3))
    # a second accelerate keeps the sparsekit modules and says so
    again = skt.accelerate(model)
    assert any("already accelerated" in r["reason"] for r in skt.report(again))


def test_report_before_accelerate():
    rep = skt.report(prune_all(mlp()), min_sparsity=0.5)
    assert [r["name"] for r in rep] == ["0", "2", "4"]
    assert all(r["chosen"] == "csr fp32" for r in rep)


def test_dynamic_int8_from_fp32(int8, rng):
    model = mlp()
    x = torch.randn(6, 40)
    acc = skt.accelerate(model, quantize="dynamic")
    assert all(isinstance(acc[i], SparseLinear) for i in (0, 2, 4))
    w0 = acc[0].layer.weight
    q, s = np.asarray(w0.q), np.asarray(w0.scale)
    wdeq = q.astype(np.float32) * s[:, None]
    np.testing.assert_allclose(wdeq, model[0].weight.detach().numpy(),
                               atol=s.max() / 2 + 1e-7)
    # first layer: exact bound of the activation quantization vs dequantized weights
    with torch.no_grad():
        y = acc[0](x).numpy()
    ref = x.numpy().astype(np.float64) @ wdeq.T.astype(np.float64) + \
        model[0].bias.detach().numpy()
    assert np.all(np.abs(y - ref) <= act_quant_bound(x.numpy(), wdeq) + 1e-5)
    with torch.no_grad():
        full, fp = acc(x).numpy(), model(x).numpy()
    assert np.abs(full - fp).max() <= 0.02 * np.abs(fp).max()


@pytest.mark.parametrize("per_channel", [False, True])
def test_torch_dynamic_quantized_linear(int8, per_channel):
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

    qc = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    qmodel = torch.ao.quantization.quantize_dynamic(mlp(), {nn.Linear: qc}, dtype=torch.qint8)
    acc = skt.accelerate(qmodel)
    rep = skt.report(acc)
    assert all(r["chosen"] == "dense int8" for r in rep)
    assert ("per-channel" if per_channel else "per-tensor") in rep[0]["reason"]
    # the int8 weights are read exactly from the packed params (torch's -128,
    # outside symmetric int8, becomes -127 and the report says so)
    tw = qmodel[0]._packed_params._weight_bias()[0]
    tq = tw.int_repr().numpy()
    np.testing.assert_array_equal(np.asarray(acc[0].layer.weight.q), np.maximum(tq, -127))
    assert ("-128 clamped" in rep[0]["reason"]) == bool((tq == -128).any())
    x = torch.randn(8, 40)
    wdeq = np.asarray(acc[0].layer.weight.q, np.float32) * \
        np.asarray(acc[0].layer.weight.scale).reshape(-1, 1)
    with torch.no_grad():
        y = acc[0](x).numpy()
        yt = qmodel[0](x).numpy()
    ref = x.numpy().astype(np.float64) @ wdeq.T.astype(np.float64) + acc[0].layer.bias
    bound = act_quant_bound(x.numpy(), wdeq) + 1e-5
    assert np.all(np.abs(y - ref) <= bound)
    # torch quantizes activations per tensor with 7 bits: ours is at least as close
    assert np.abs(y - ref).max() <= np.abs(yt - ref).max() + 1e-5
    with torch.no_grad():
        np.testing.assert_allclose(acc(x).numpy(), qmodel(x).numpy(),
                                   atol=0.05 * np.abs(qmodel(x).numpy()).max())


class _Static(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flat = nn.Flatten()
        self.fc1 = nn.Linear(6 * 4 * 4, 24)
        self.fc2 = nn.Linear(24, 10)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        x = self.pool(self.relu(self.conv(self.quant(x))))
        return self.dequant(self.fc2(self.fc1(self.flat(x))))


def test_torch_static_quantized_linear_conv(int8):
    torch.manual_seed(0)
    m = quantize_static(_Static().eval(), [["conv", "relu"]],
                        [torch.randn(16, 1, 8, 8) for _ in range(4)])
    acc = skt.accelerate(m)
    assert isinstance(acc.conv, SparseConv2d) and isinstance(acc.fc1, SparseLinear)
    assert acc.conv.layer.activation == "relu"  # fused ConvReLU2d
    x = torch.randn(7, 1, 8, 8)
    with torch.no_grad():
        ref = m(x).numpy()
        got = acc(x).numpy()
        mid_ref = m.conv(m.quant(x))
        mid = acc.conv(acc.quant(x))
    assert mid.is_quantized and mid.q_scale() == mid_ref.q_scale()
    # quint8 inputs run on their own integers (static input quantization): the
    # int32 accumulators equal torch's, only requantization rounding may differ
    assert acc.fc1._static  # the static path was taken
    step = float(m.fc2.scale)
    assert np.abs(got - ref).max() <= 1.01 * step
    mid_err = float((mid.dequantize() - mid_ref.dequantize()).abs().max())
    assert mid_err <= 1.01 * mid_ref.q_scale()


def test_memory_no_fp32_copy(int8):
    """Replaced modules hold int8 weights only: <= 27% of the fp32 bytes."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(384, 384), nn.Linear(384, 1536), nn.Linear(1536, 384))
    fp32 = sum(m.weight.numel() * 4 for m in model)
    acc = skt.accelerate(model, quantize="dynamic")
    held = sum(m.weight_nbytes() for m in acc)
    assert held <= 0.27 * fp32
    # state_dict holds those packed arrays themselves (shared), no fp32 weight
    sd = acc.state_dict()
    assert sum(t.nbytes for k, t in sd.items() if ".weight." in k) == held
    assert all(t.dtype != torch.float32 or t.dim() < 2 for t in sd.values())


def test_to_runtime_matches_torch(rng):
    model = prune_all(cnn())
    r = skt.to_runtime(model)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(r(x.numpy()), model(x).numpy(), rtol=1e-5, atol=1e-5)
    assert sum(type(a).__name__ == "ReLU" for a in r.layers) == 0  # fused into kernels
    # what to_runtime chose per weight layer, as report() rows, like accelerate's
    weights = [i for i, m in enumerate(model) if isinstance(m, (nn.Linear, nn.Conv2d))]
    rows = skt.report(r)
    assert rows is r.conversion_report and [row["name"] for row in rows] == \
        [str(i) for i in weights]
    held = [a for a in r.layers if getattr(a, "weight", None) is not None]
    assert all(row["chosen"] == sparsekit.runtime.weights.describe(layer.weight)
               for row, layer in zip(rows, held))
    assert str(rows).splitlines()[0].split()[:2] == ["name", "module"]
    with pytest.raises(TypeError, match="no conversion report"):
        skt.report(sparsekit.runtime.Model(list(r.layers)))
    with pytest.raises(TypeError, match="Sequential"):
        skt.to_runtime(_Static())
    with pytest.raises(ValueError, match="LSTM"):
        skt.to_runtime(nn.Sequential(nn.LSTM(3, 3)))


def test_transformer_layers_reading_weights_are_kept():
    """nn.MultiheadAttention / TransformerEncoderLayer read their Linear
    children's .weight directly (fast path): those stay, the model still runs."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.TransformerEncoder(
        nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 2), nn.Linear(32, 8)).eval()
    acc = skt.accelerate(model, quantize="dynamic")
    x = torch.randn(2, 5, 32)
    with torch.inference_mode():
        ref, got = model(x), acc(x)
    assert isinstance(acc[1], SparseLinear)
    kept = [r for r in skt.report(acc) if r["chosen"] == "kept"]
    assert len(kept) == 6 and all("reads this layer's weight" in r["reason"] for r in kept)
    assert np.abs((got - ref).numpy()).max() <= 0.05 * np.abs(ref.numpy()).max()


def test_dynamic_int8_cnn_and_pickle(tmp_path):
    """Conv2d runs int8 through im2col too; accelerated models pickle whole
    (torch.save(model)) and give the same outputs after loading."""
    model = cnn()
    acc = skt.accelerate(model, quantize="dynamic", min_sparsity=1.0)
    assert all(isinstance(acc[i], SparseConv2d) for i in (0, 3))
    x = torch.randn(4, 1, 8, 8)
    with torch.inference_mode():
        ref, got = model(x).numpy(), acc(x).numpy()
    assert np.abs(got - ref).max() <= 0.03 * np.abs(ref).max()
    torch.save(acc, tmp_path / "acc.pt")
    back = torch.load(tmp_path / "acc.pt", weights_only=False)
    with torch.inference_mode():
        np.testing.assert_array_equal(back(x).numpy(), got)
