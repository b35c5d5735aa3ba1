"""state_dict / load_state_dict of accelerated models: the packed arrays of
every sparsekit format are in the state_dict (shared with the module, never a
dense copy), and loading them into a model accelerated the same way gives
bit-identical outputs; bad or mismatched arrays fail naming the key."""
import copy
import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import sparsekit  # noqa: E402
import sparsekit.torch as skt  # noqa: E402
from sparsekit.runtime import layers as L  # noqa: E402
from conftest import quantize_static  # noqa: E402
from sparsekit.runtime.torch_modules import (  # noqa: E402
    ADDRESSING_ARRAYS, SparseLinear, SparsekitModule)

warnings.filterwarnings("ignore", category=DeprecationWarning)

# (accelerate arguments, the format every layer gets, its weight keys)
VARIANTS = {
    "csr": (dict(quantize=None, min_sparsity=0.5), sparsekit.CSRMatrix,
            ["data", "indices", "indptr"]),
    "sparse_int8": (dict(quantize="dynamic", min_sparsity=0.5), sparsekit.SparseInt8Matrix,
                    ["indptr", "cols", "values", "scale"]),
    "int8": (dict(quantize="dynamic", min_sparsity=1.0), sparsekit.QuantizedMatrix,
             ["packed", "sum24", "scale"]),
}
if sparsekit.info()["kernels"].get("spmv_sell_f32") == "avx512":  # m=1 picks it there only
    VARIANTS["sliced_ell"] = (dict(quantize=None, min_sparsity=0.5, m=1),
                              sparsekit.SlicedEllMatrix,
                              ["group_ptr", "window", "index", "values"])


def pruned_mlp(seed, amount=0.9):
    """Linear-ReLU-Linear-GELU-Linear with `amount` of each weight zeroed; the
    same sparsity (so the same formats) for every seed."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, 48), nn.GELU(),
                          nn.Linear(48, 10)).eval()
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                w = m.weight
                k = int(amount * w.numel())
                w.view(-1)[w.abs().view(-1).argsort()[:k]] = 0
    return model


def sparsekit_modules(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, SparsekitModule)}


def x_in(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def run(model, x):
    with torch.inference_mode():
        return model(x)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_round_trip_bit_identical(variant):
    kwargs, fmt, names = VARIANTS[variant]
    fast = skt.accelerate(pruned_mlp(0), **kwargs)
    fresh = skt.accelerate(pruned_mlp(1), **kwargs)
    mods = sparsekit_modules(fast)
    assert len(mods) == 3 and all(type(m.layer.weight) is fmt for m in mods.values())
    x = x_in(9, 40)
    want = run(fast, x)
    assert not torch.equal(run(fresh, x), want)
    sd = fast.state_dict()
    assert set(sd) == {f"{i}.{k}" for i in (0, 2, 4)
                       for k in ["weight." + n for n in names] + ["bias"]}
    loaded = {k: v.clone() for k, v in sd.items()}
    result = fresh.load_state_dict(loaded)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(run(fresh, x), want)
    back = fresh.state_dict()
    assert list(back) == list(sd)
    for k, t in sd.items():
        assert back[k].dtype == t.dtype and torch.equal(back[k], t), k
    # the loaded module owns copies: later writes to the loaded tensors do not reach it
    for t in loaded.values():
        t.zero_()
    assert torch.equal(run(fresh, x), want)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_state_dict_holds_the_packed_arrays_not_a_dense_copy(variant):
    kwargs, fmt, names = VARIANTS[variant]
    fast = skt.accelerate(pruned_mlp(0), **kwargs)
    sd = fast.state_dict()
    for name, m in sparsekit_modules(fast).items():
        w = m.layer.weight
        arrays = w._state_arrays()
        assert list(arrays) == names
        # a SparseInt8Matrix that keeps only its g4 copy (AVX-512 VNNI + VBMI,
        # block fill < G4_ONLY_FILL) stores its 1x4 blocks rebuilt from it
        g4_only = fmt is sparsekit.SparseInt8Matrix and w._bsr is None
        for n, a in arrays.items():
            t = sd[f"{name}.weight.{n}"]
            assert t.nbytes == a.nbytes and np.array_equal(t.numpy(), a)
            shared = t.data_ptr() == a.ctypes.data
            rebuilt = g4_only and n in ("indptr", "cols", "values")
            # index arrays are copies
            assert shared == (n not in ADDRESSING_ARRAYS and not rebuilt), n
        held = sum(sd[f"{name}.weight.{n}"].nbytes for n in names)
        if g4_only:  # it holds the g4 copy, the row sums and the scales
            g4 = sum(a.nbytes for a in w._g4)
            assert m.weight_nbytes() == g4 + w.row_sums.nbytes + w._wscale.nbytes
            assert held == sum(a.nbytes for a in arrays.values())
        elif fmt is sparsekit.SparseInt8Matrix:  # row sums and the g4 copy are derived
            g4 = sum(a.nbytes for a in w._g4) if w._g4 is not None else 0
            assert held == m.weight_nbytes() - w.row_sums.nbytes - g4
        else:
            assert held == m.weight_nbytes()
        n, k = w.shape
        assert not any(t.dtype == torch.float32 and t.numel() >= n * k
                       for key, t in sd.items() if key.startswith(name + "."))
        assert torch.equal(sd[f"{name}.bias"], torch.from_numpy(m.layer.bias))


def test_torch_save_and_load_file(tmp_path):
    fast = skt.accelerate(pruned_mlp(0), quantize="dynamic", min_sparsity=0.5)
    path = tmp_path / "fast.pt"
    torch.save(fast.state_dict(), path)
    fresh = skt.accelerate(pruned_mlp(1), quantize="dynamic", min_sparsity=0.5)
    fresh.load_state_dict(torch.load(path))  # weights_only: plain tensors
    x = x_in(4, 40, seed=1)
    assert torch.equal(run(fresh, x), run(fast, x))


def test_safetensors_file(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    for variant in sorted(VARIANTS):
        kwargs = VARIANTS[variant][0]
        fast = skt.accelerate(pruned_mlp(0), **kwargs)
        path = tmp_path / f"{variant}.safetensors"
        st.save_file(fast.state_dict(), str(path))
        fresh = skt.accelerate(pruned_mlp(1), **kwargs)
        fresh.load_state_dict(st.load_file(str(path)))
        x = x_in(3, 40, seed=2)
        assert torch.equal(run(fresh, x), run(fast, x)), variant


def test_conv_static_quantized_output_params():
    """A torch static quantized model: Conv2d / Linear weights, and each
    module's quint8 output scale / zero point (keys scale, zero_point)."""
    def calibrated(seed):
        torch.manual_seed(seed)
        m = nn.Sequential(torch.ao.quantization.QuantStub(), nn.Conv2d(1, 6, 3, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(6 * 6 * 6, 16),
                          torch.ao.quantization.DeQuantStub()).eval()
        return skt.accelerate(quantize_static(m, [["1", "2"]],
                                              [torch.randn(8, 1, 6, 6) for _ in range(3)]))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast, fresh = calibrated(0), calibrated(1)
    assert fast[1].out_qparams is not None and fast[1].layer.activation == "relu"
    sd = fast.state_dict()
    assert sd["1.scale"].dtype == torch.float64 and sd["1.scale"].dim() == 0
    assert int(sd["4.zero_point"]) == fast[4].out_qparams[1]
    x = x_in(5, 1, 6, 6, seed=3)
    fresh.load_state_dict(sd)
    assert fresh[1].out_qparams == fast[1].out_qparams
    assert torch.equal(run(fresh, x), run(fast, x))


class SelfAttn(nn.Module):
    def __init__(self, seed, c=32, out=(32, 32, 48)):
        super().__init__()
        torch.manual_seed(seed)
        self.query, self.key, self.value = (nn.Linear(c, o) for o in out)

    def forward(self, x):
        return self.query(x), self.key(x), self.value(x)


def test_fused_qkv_restacked_after_load():
    fast = skt.accelerate(SelfAttn(0).eval(), quantize="dynamic")
    fresh = skt.accelerate(SelfAttn(1).eval(), quantize="dynamic")
    group = fresh.query._fused[0]
    x = x_in(2, 5, 32, seed=4)
    want = run(fast, x)
    fresh.load_state_dict(fast.state_dict())
    assert not group.stale and fresh.query._fused[0] is group
    stacked = group.layer.weight
    members = [fresh.query, fresh.key, fresh.value]
    # the members share the new stacked weight again (no duplicate memory)
    assert all(np.shares_memory(m.layer.weight._packed, stacked._packed) for m in members)
    assert sum(m.weight_nbytes() for m in members) == stacked.nbytes
    got = run(fresh, x)
    assert all(torch.equal(g, w) for g, w in zip(got, want))
    # the fused path was taken: the outputs are views of one buffer
    assert got[0].untyped_storage().data_ptr() == got[2].untyped_storage().data_ptr()


def test_fused_member_loaded_alone_runs_alone():
    fast = skt.accelerate(SelfAttn(0).eval(), quantize="dynamic")
    fresh = skt.accelerate(SelfAttn(1).eval(), quantize="dynamic")
    sd = {k[len("key."):]: v for k, v in fast.state_dict().items() if k.startswith("key.")}
    fresh.key.load_state_dict(sd)  # no parent post hook: the group stays stale
    assert fresh.key._fused[0].stale
    x = x_in(3, 32, seed=5)
    q, k, v = run(fresh, x)
    assert torch.equal(k, run(fast, x)[1])
    assert torch.equal(q, run(fresh.query, x)) and torch.equal(v, run(fresh.value, x))


def test_dense_weight_module_round_trip():
    rng = np.random.default_rng(6)
    w = rng.standard_normal((12, 20)).astype(np.float32)
    a = SparseLinear(L.Linear(w, rng.standard_normal(12).astype(np.float32), "relu"))
    b = SparseLinear(L.Linear(np.zeros_like(w), np.zeros(12, np.float32), "relu"))
    sd = a.state_dict()
    assert list(sd) == ["weight", "bias"] and sd["weight"].data_ptr() == w.ctypes.data
    b.load_state_dict(sd)
    x = x_in(4, 20, seed=6)
    assert torch.equal(run(b, x), run(a, x))


# ---- errors ------------------------------------------------------------------

@pytest.fixture
def csr_pair():
    kwargs = VARIANTS["csr"][0]
    fast = skt.accelerate(pruned_mlp(0), **kwargs)
    fresh = skt.accelerate(pruned_mlp(1), **kwargs)
    return fast, fresh, x_in(6, 40, seed=7)


def test_missing_and_unexpected_keys(csr_pair):
    fast, fresh, x = csr_pair
    own = {k: v.clone() for k, v in fresh[2].state_dict().items()}
    sd = fast.state_dict()
    del sd["2.weight.indices"]
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "2\.weight\.'
                                           r'indices"'):
        fresh.load_state_dict(sd)
    res = fresh.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["2.weight.indices"] and not res.unexpected_keys
    # the layers with all their keys loaded; layer 2 kept its own weights
    assert torch.equal(fresh[0].state_dict()["weight.data"], fast.state_dict()["0.weight.data"])
    assert all(torch.equal(fresh[2].state_dict()[k], v) for k, v in own.items())
    sd = fast.state_dict()
    sd["4.weight.extra"] = torch.zeros(3)
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "4\.weight\.'
                                           r'extra"'):
        fresh.load_state_dict(sd)
    assert fresh.load_state_dict(sd, strict=False).unexpected_keys == ["4.weight.extra"]
    assert torch.equal(run(fresh, x), run(fast, x))


@pytest.mark.parametrize("key, make, match", [
    ("0.weight.indices", lambda t: torch.full_like(t, 40),
     r"0\.weight \(csr fp32 \[64, 40\]\): indices: column 40 out of range \[0, 40\)"),
    ("0.weight.indices", lambda t: t.to(torch.int64),
     r"0\.weight\.indices: expected dtype uint16, got torch\.int64"),
    ("0.weight.indptr", lambda t: torch.cat([t, t[-1:]]),
     r"0\.weight \(csr fp32 \[64, 40\]\): indptr: expected length N \+ 1 = 65, got 66"),
    ("0.weight.data", lambda t: torch.full_like(t, float("nan")),
     r"0\.weight \(csr fp32 \[64, 40\]\): data: contains NaN"),
    ("2.bias", lambda t: torch.zeros(47), r"2\.bias: expected shape \[48\]"),
    ("2.bias", lambda t: t.double(), r"2\.bias: expected dtype float32, got torch\.float64"),
    ("4.weight.data", lambda t: [1.0], r"4\.weight\.data: expected a tensor, got list"),
])
@pytest.mark.parametrize("strict", [True, False])
def test_bad_array_names_the_key_and_changes_nothing(csr_pair, key, make, match, strict):
    fast, fresh, x = csr_pair
    before = {k: v.clone() for k, v in fresh.state_dict().items() if k.startswith(key[:2])}
    sd = fast.state_dict()
    sd[key] = make(sd[key])
    with pytest.raises(RuntimeError, match=match):
        fresh.load_state_dict(sd, strict=strict)
    after = fresh.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # that layer unchanged
    fresh.load_state_dict(fast.state_dict())  # and still loads a good one
    assert torch.equal(run(fresh, x), run(fast, x))


def test_other_format_is_a_clear_error(csr_pair):
    fast, _, x = csr_pair
    int8 = skt.accelerate(pruned_mlp(1), **VARIANTS["int8"][0])
    before = run(int8, x)
    for strict in (True, False):
        with pytest.raises(RuntimeError, match=r"0\.weight: this layer's weight is dense int8 "
                                               r"\(keys 0\.weight\.packed, .*\), the state_dict "
                                               r"has 0\.weight\.data, 0\.weight\.indices, "
                                               r"0\.weight\.indptr instead: .*accelerate the "
                                               r"model the same way"):
            int8.load_state_dict(fast.state_dict(), strict=strict)
    assert torch.equal(run(int8, x), before)
    # the original (not accelerated) model's checkpoint
    with pytest.raises(RuntimeError, match=r"the state_dict has 0\.weight instead: a plain "
                                           r"torch weight: load the state_dict into the model "
                                           r"before accelerate"):
        int8.load_state_dict(pruned_mlp(0).state_dict())
    assert torch.equal(run(int8, x), before)


def _int8_state(w):
    return {k: np.array(v) for k, v in w._state_arrays().items()}


def test_int8_corruption_is_caught():
    rng = np.random.default_rng(8)
    w = sparsekit.QuantizedMatrix.from_float(rng.standard_normal((20, 10)).astype(np.float32))
    good = _int8_state(w)
    back = sparsekit.QuantizedMatrix._from_state_arrays(w.shape, good)
    assert all(np.array_equal(a, good[k]) for k, a in back._state_arrays().items())
    cases = [("packed", lambda a: np.where(a == a.max(), np.int8(-128), a), "-128"),
             ("packed", lambda a: np.concatenate([a[:-1], np.int8([5])]), "padding"),
             ("packed", lambda a: a[:-1], r"expected int8 \[384\]"),
             ("sum24", lambda a: a ^ np.uint8(1), "channel sums"),
             ("scale", lambda a: -a, "finite and > 0"),
             ("scale", lambda a: a[:3], r"shape \(20,\)")]
    for name, bad, match in cases:
        arrays = dict(good, **{name: bad(good[name])})
        with pytest.raises(ValueError, match=f"{name}: .*{match}"):
            sparsekit.QuantizedMatrix._from_state_arrays(w.shape, arrays)
    s = sparsekit.SparseInt8Matrix.from_float(np.where(rng.random((20, 30)) < 0.2,
                                                       rng.standard_normal((20, 30)), 0))
    good = _int8_state(s)
    for name, bad, match in [("values", lambda a: a.astype(np.int16), "int8"),
                             ("cols", lambda a: a + np.uint16(8), "corrupted"),
                             ("cols", lambda a: a[:-1], "one block column per block"),
                             ("indptr", lambda a: a.astype(np.float64), "integer")]:
        with pytest.raises(ValueError, match=match):
            sparsekit.SparseInt8Matrix._from_state_arrays(s.shape, dict(good, **{name:
                                                                                 bad(good[name])}))


def test_int8_static_input_and_per_tensor_state_and_pickle():
    rng = np.random.default_rng(9)
    w = sparsekit.QuantizedMatrix.from_float(rng.standard_normal((33, 17)).astype(np.float32),
                                             per_channel=False).with_static_input(0.05, 7)
    arrays = w._state_arrays()
    assert arrays["scale"].shape == () and float(arrays["input_scale"]) == w.input_scale
    for back in (sparsekit.QuantizedMatrix._from_state_arrays(w.shape, arrays),
                 pickle.loads(pickle.dumps(w))):
        assert not back.per_channel and back.input_scale == w.input_scale
        assert back.input_zero_point == 7
        x = rng.standard_normal((3, 17)).astype(np.float32)
        np.testing.assert_array_equal(sparsekit.linear(x, back), sparsekit.linear(x, w))
    # a fused member's weight (a view of rows of the stacked weight) saves as a whole one
    fast = skt.accelerate(SelfAttn(2).eval(), quantize="dynamic")
    view = fast.value.layer.weight
    alone = copy.deepcopy(view)
    assert not np.shares_memory(alone._packed, view._packed)
    assert all(np.array_equal(a, view._state_arrays()[k])
               for k, a in alone._state_arrays().items())


@pytest.mark.parametrize("amount", [0.0, 0.9])
def test_torch_dynamic_quantized_per_tensor(amount):
    """torch's dynamic int8 Linear (per-tensor scale): dense or sparse int8,
    scale saved 0-d."""
    def fast(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = torch.ao.quantization.quantize_dynamic(pruned_mlp(seed, amount), {nn.Linear},
                                                       dtype=torch.qint8)
        return skt.accelerate(q, min_sparsity=0.5)

    a, b = fast(0), fast(1)
    fmt = sparsekit.SparseInt8Matrix if amount else sparsekit.QuantizedMatrix
    assert all(type(m.layer.weight) is fmt and not m.layer.weight.per_channel
               for m in sparsekit_modules(a).values())
    sd = a.state_dict()
    assert sd["0.weight.scale"].dim() == 0
    b.load_state_dict(sd)
    x = x_in(7, 40, seed=10)
    assert torch.equal(run(b, x), run(a, x))
    assert not b[0].layer.weight.per_channel


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_writing_into_state_dict_index_tensors_cannot_reach_the_kernels(variant):
    """state_dict tensors are writable; the arrays the kernels address memory
    with are copies, so garbage written there changes nothing."""
    kwargs, _, _ = VARIANTS[variant]
    fast = skt.accelerate(pruned_mlp(0), **kwargs)
    x = torch.randn(5, 40)
    want = run(fast, x)
    for key, t in fast.state_dict().items():
        if key.rsplit(".", 1)[-1] in ADDRESSING_ARRAYS:
            t.fill_(-1 if t.dtype.is_signed else 60000)
    assert torch.equal(run(fast, x), want)
