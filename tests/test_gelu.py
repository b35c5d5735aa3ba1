"""Exact (erf) GELU: the in-place kernel (sk_gelu_f32) and the int8 linear
with GELU fused into its epilogue, on every forced ISA.

Tolerance of the kernel: 1e-6 relative to GELU evaluated in float64 with
math.erfc, plus 1e-40 absolute (results below FLT_MIN are denormal and keep
fewer bits). A linear with activation="gelu" is exact instead: every format
runs that same kernel (_core.gelu_f32) on its act-free fp32 output, fused into
the GEMM epilogue or as one pass after it, so it equals _core.gelu_f32 of the
act-free output bit for bit.
"""
import math

import numpy as np
import pytest

import sparsekit
from sparsekit import QuantizedMatrix, _core


def gelu_ref(x):
    x = np.asarray(x, np.float64)
    out = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) if math.isfinite(v) else
                    (v if v > 0 or v != v else -0.0) for v in x.ravel()])
    out[x.ravel() < -20] = -0.0
    return out.reshape(x.shape)


def assert_gelu_close(got, ref):
    assert got.dtype == np.float32
    with np.errstate(invalid="ignore"):  # inf - inf: those lanes pass by got == ref
        err = np.abs(got.astype(np.float64) - ref)
    ok = (err <= 1e-6 * np.abs(ref) + 1e-40) | (np.isnan(got) & np.isnan(ref)) | (got == ref)
    assert ok.all(), (np.flatnonzero(~ok)[:5], got[~ok][:5], ref[~ok][:5])


def assert_gelu_of(got, plain, what):
    """got is _core.gelu_f32(plain) bit for bit (plain: the act-free output)."""
    want = np.ascontiguousarray(plain, np.float32).copy()
    _core.gelu_f32(want)
    assert got.dtype == np.float32 and got.shape == want.shape, what
    bad = got.view(np.uint32) != want.view(np.uint32)
    assert not bad.any(), (f"{what}: {int(bad.sum())} outputs != gelu_f32(act-free output)",
                           got[bad][:5], want[bad][:5])


@pytest.mark.parametrize("n", [0, 1, 5, 15, 16, 17, 31, 33, 100])
def test_gelu_kernel_tails(isa, n):
    x = (np.random.default_rng(n).standard_normal(n) * 4).astype(np.float32)
    y = x.copy()
    _core.gelu_f32(y)
    assert_gelu_close(y, gelu_ref(x))


def test_gelu_kernel_range_and_special_values(isa):
    x = np.concatenate([np.linspace(-30, 30, 6001), np.geomspace(1e-30, 1e3, 300),
                        -np.geomspace(1e-30, 1e3, 300),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e38, -1e38, -20.0, -19.99,
                         -13.0, -12.5, 1e-45, -1e-45]]).astype(np.float32)
    y = x.copy()
    _core.gelu_f32(y)
    ref = gelu_ref(x)
    assert_gelu_close(y, ref)
    assert y[-13 + 2] == np.inf and np.isnan(y[-13 + 4])
    assert y[-13 + 3] == 0 and np.signbit(y[-13 + 3])  # gelu(-inf) = -0


def test_gelu_kernel_rejects_bad_arrays():
    with pytest.raises(ValueError, match="y: expected a writeable C-contiguous float32"):
        _core.gelu_f32(np.ones(4))
    with pytest.raises(ValueError, match="y: expected"):
        _core.gelu_f32(np.ones((4, 4), np.float32)[:, 1])


@pytest.mark.parametrize("m,n,k", [(1, 70, 33), (1, 1536, 384), (7, 50, 19), (13, 97, 64),
                                   (40, 48, 384)])
@pytest.mark.parametrize("static", [False, True])
def test_linear_fused_gelu_matches_unfused(isa, m, n, k, static):
    """Same pre-activation in fp32, and the driver runs the ISA's GELU kernel
    on each finished tile: the fused epilogue equals GELU applied afterwards to
    the activation-free output, bit for bit."""
    rng = np.random.default_rng(m * 1000 + n + k)
    x = (rng.standard_normal((m, k)) * 2).astype(np.float32)
    qw = QuantizedMatrix.from_float(rng.standard_normal((n, k)).astype(np.float32))
    if static:
        qw = qw.with_static_input(0.05, 128)
    b = rng.standard_normal(n).astype(np.float32)
    plain = sparsekit.linear(x, qw, b)
    fused = sparsekit.linear(x, qw, b, activation="gelu")
    assert fused.shape == (m, n)
    assert_gelu_of(fused, plain, f"isa={isa} m={m} n={n} k={k} static={static} bias=on")


def test_quantized_linear_gelu_u8_input(isa):
    from sparsekit import quantize_rows, quantized_linear

    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 45)).astype(np.float32)
    qw = QuantizedMatrix.from_float(rng.standard_normal((37, 45)).astype(np.float32))
    xq, sc, zp = quantize_rows(x)
    plain = quantized_linear(xq, sc, zp, qw)
    assert_gelu_of(quantized_linear(xq, sc, zp, qw, activation="gelu"), plain,
                   f"isa={isa} quantized_linear u8 input")


def test_linear_gelu_unfused_formats(isa):
    """Formats without a fused epilogue (CSR, dense arrays) run one GELU pass."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((21, 30)).astype(np.float32)
    w[rng.random(w.shape) < 0.8] = 0
    x = rng.standard_normal((6, 30)).astype(np.float32)
    for wf in (sparsekit.CSRMatrix.from_dense(w), w):
        plain = sparsekit.linear(x, wf)
        assert_gelu_of(sparsekit.linear(x, wf, activation="gelu"), plain,
                       f"isa={isa} {type(wf).__name__}")


def test_linear_gelu_close_to_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 64)).astype(np.float32)
    qw = QuantizedMatrix.from_float(rng.standard_normal((80, 64)).astype(np.float32))
    plain = sparsekit.linear(x, qw)
    want = torch.nn.functional.gelu(torch.from_numpy(plain)).numpy()
    np.testing.assert_allclose(sparsekit.linear(x, qw, activation="gelu"), want,
                               rtol=1e-5, atol=1e-6)


def test_accelerate_fuses_linear_gelu_pairs():
    torch = pytest.importorskip("torch")
    import sparsekit.torch as skt
    from torch import nn

    class Intermediate(nn.Module):  # BERT's layout: dense, then intermediate_act_fn
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(24, 40)
            self.intermediate_act_fn = nn.GELU()

        def forward(self, x):
            return self.intermediate_act_fn(self.dense(x))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 24), nn.GELU(), Intermediate(), nn.Linear(40, 30),
                          nn.GELU(approximate="tanh"), nn.Linear(30, 5)).eval()
    acc = skt.accelerate(model, quantize="dynamic")
    assert isinstance(acc[1], nn.Identity) and acc[0].layer.activation == "gelu"
    assert isinstance(acc[2].intermediate_act_fn, nn.Identity)
    assert acc[2].dense.layer.activation == "gelu"
    assert isinstance(acc[4], nn.GELU) and acc[3].layer.activation is None  # tanh form kept
    assert "GELU fused" in {r["name"]: r for r in skt.report(acc)}["0"]["reason"]
    x = torch.randn(7, 16)
    with torch.no_grad():
        got = acc(x)
        # the same int8 layers with the GELUs run by torch instead
        h = nn.functional.gelu(torch.from_numpy(sparsekit.linear(
            x.numpy(), acc[0].layer.weight, acc[0].layer.bias)))
        h = nn.functional.gelu(torch.from_numpy(sparsekit.linear(
            h.numpy(), acc[2].dense.layer.weight, acc[2].dense.layer.bias)))
        want = acc[5](acc[4](acc[3](h)))
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.numpy(), model(x).numpy(), rtol=0.05, atol=0.02)


def test_runtime_linear_gelu_save_load(tmp_path):
    from sparsekit.runtime import layers as L

    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 12)).astype(np.float32)
    w = rng.standard_normal((9, 12)).astype(np.float32)
    for wf in (QuantizedMatrix.from_float(w), sparsekit.CSRMatrix.from_dense(w), w):
        layer = L.Linear(wf, None, "gelu")
        assert_gelu_of(layer(x), sparsekit.linear(x, wf), type(wf).__name__)
    model = sparsekit.runtime.Model([L.Linear(QuantizedMatrix.from_float(w), None, "gelu")])
    sparsekit.save(model, tmp_path / "m.skt")
    back = sparsekit.load(tmp_path / "m.skt")
    np.testing.assert_array_equal(back(x), model(x))


def test_info_names_the_gelu_kernel(isa):
    want = {"scalar": "scalar", "avx2": "avx2", "neon": "neon"}.get(isa, "avx512")
    assert sparsekit.info()["kernels"]["gelu_f32"] == want


def test_gelu_fallback_without_compiled_core(monkeypatch):
    from sparsekit import ops

    x = np.array([-30, -20.5, -5, -1, 0, 0.5, 3, np.inf, -np.inf, np.nan], np.float32)
    monkeypatch.setattr(ops, "_COMPILED", False)
    y = ops._gelu_inplace(x.copy())
    assert_gelu_close(y, gelu_ref(x))


def test_accelerate_keeps_torch_gelu_with_the_scalar_kernel():
    torch = pytest.importorskip("torch")
    import sparsekit.torch as skt
    from torch import nn

    model = nn.Sequential(nn.Linear(16, 24), nn.GELU()).eval()
    before = sparsekit.get_isa()
    sparsekit.set_isa("scalar")
    try:
        acc = skt.accelerate(model, quantize="dynamic")
    finally:
        sparsekit.set_isa(before)
    assert isinstance(acc[1], nn.GELU) and acc[0].layer.activation is None
