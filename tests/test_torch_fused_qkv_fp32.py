"""accelerate() (quantize=None): query/key/value that stay dense fp32 on the
packed GEMM (PackedDenseMatrix) run as one [sum of out, in] gemm_f32 call
(FusedLinears), each member's weight a PackedDenseMatrix.rows view of the
stacked one.

Tolerance: none where fused meets unfused. gemm_f32 sums each output column
on its own in an order set by the input rows and K only, so stacking rows
changes no output bit (checked on every forced ISA, at the 1- and 2-row tiles
and longer inputs). Against torch's own Linear: float rounding, 1e-5 relative
to the output's size (K = 32..64, values of size ~1).
"""
import copy
import pickle

import numpy as np
import pytest

import sparsekit
from sparsekit import _dense_f32 as D
from sparsekit._dense_f32 import PackedDenseMatrix

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import sparsekit.torch as skt  # noqa: E402
from sparsekit.runtime.torch_modules import FusedLinears, SparseLinear  # noqa: E402

ROWS = (1, 2, 3, 7, 33)  # input rows: the AVX2 kernel's 1- / 2-row tiles and longer


class SelfAttn(nn.Module):
    def __init__(self, seed=0, c=48, out=(32, 64, 40)):
        super().__init__()
        torch.manual_seed(seed)
        self.query, self.key, self.value = (nn.Linear(c, o) for o in out)

    def forward(self, x):
        return self.query(x), self.key(x), self.value(x)


def _x(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _group(model):
    fused = getattr(model.query, "_fused", None)  # a torch Linear has none
    return fused[0] if fused else None


def _unfused(acc):
    other = copy.deepcopy(acc)
    _group(other).enabled = False
    return other


def _run(model, x):
    with torch.inference_mode():
        return model(x)


def _check_fused_equals_alone(acc, model, seed):
    ref = _unfused(acc)
    for i, m in enumerate(ROWS):
        x = _x(m, model.query.in_features, seed=seed + i)
        got, want, orig = _run(acc, x), _run(ref, x), _run(model, x)
        # the fused path ran: the outputs are views of one buffer
        assert got[0].untyped_storage().data_ptr() == got[2].untyped_storage().data_ptr()
        for g, w, o in zip(got, want, orig):
            assert torch.equal(g, w)
            assert (g - o).abs().max() <= 1e-5 * max(1.0, float(o.abs().max()))


def test_qkv_fp32_fused_bit_identical(isa):
    model = SelfAttn().eval()
    acc = skt.accelerate(model)
    if not D.wanted():  # the layers stay torch modules: nothing to fuse
        assert not isinstance(acc.query, SparseLinear) and _group(acc) is None
        return
    group = _group(acc)
    assert isinstance(group, FusedLinears)
    stacked = group.layer.weight
    assert type(stacked) is PackedDenseMatrix and stacked.shape == (136, 48)
    members = [acc.query, acc.key, acc.value]
    assert all(np.shares_memory(m.layer.weight._packed, stacked._packed) for m in members)
    assert sum(m.weight_nbytes() for m in members) == stacked.nbytes
    _check_fused_equals_alone(acc, model, seed=10)
    rows = {r["name"]: r for r in skt.report(acc)}
    assert all("query+key+value fused into one [136, 48] packed fp32 GEMM" in rows[n]["reason"]
               for n in ("query", "key", "value"))


def test_qkv_fp32_pickle_and_deepcopy(isa):
    model = SelfAttn(seed=1).eval()
    acc = skt.accelerate(model)
    if _group(acc) is None:
        assert not D.wanted()
        return
    for other in (copy.deepcopy(acc), pickle.loads(pickle.dumps(acc))):
        assert isinstance(_group(other), FusedLinears) and _group(other) is not _group(acc)
        _check_fused_equals_alone(other, model, seed=20)
        x = _x(5, 48, seed=3)
        assert all(torch.equal(g, w) for g, w in zip(_run(other, x), _run(acc, x)))


def test_qkv_fp32_state_dict_own_values_and_restacked(isa):
    src_model = SelfAttn(seed=2).eval()
    src = skt.accelerate(src_model)
    fresh = skt.accelerate(SelfAttn(seed=3).eval())
    if _group(src) is None:
        assert not D.wanted()
        return
    sd = src.state_dict()
    for name in ("query", "key", "value"):  # each member's own values, exactly
        assert torch.equal(sd[name + ".weight.values"], getattr(src_model, name).weight)
    group = _group(fresh)
    fresh.load_state_dict(sd)
    assert not group.stale and _group(fresh) is group
    stacked = group.layer.weight
    members = [fresh.query, fresh.key, fresh.value]
    assert all(np.shares_memory(m.layer.weight._packed, stacked._packed) for m in members)
    for i, m in enumerate(ROWS):
        x = _x(m, 48, seed=30 + i)
        got, want = _run(fresh, x), _run(src, x)
        assert got[0].untyped_storage().data_ptr() == got[1].untyped_storage().data_ptr()
        assert all(torch.equal(g, w) for g, w in zip(got, want))
    _check_fused_equals_alone(fresh, src_model, seed=40)


@pytest.mark.parametrize("out", [(20, 20, 20), (40, 32, 32)])
def test_qkv_fp32_not_fused_off_panel_boundaries(out):
    acc = skt.accelerate(SelfAttn(out=out).eval())
    assert _group(acc) is None
    assert not any("fused into one" in r["reason"] for r in skt.report(acc))


def test_qkv_mixed_int8_and_fp32_not_fused():
    model = SelfAttn().eval()
    acc = skt.accelerate(model, quantize="dynamic")
    if not D.wanted():
        return
    acc.key.layer = sparsekit.runtime.layers.Linear(
        PackedDenseMatrix(model.key.weight.detach().numpy()),
        model.key.bias.detach().numpy())
    assert FusedLinears.stack([acc.query, acc.key, acc.value]) is None


# ---- PackedDenseMatrix.rows ---------------------------------------------------

def test_rows_view_shares_memory_and_computes_the_same_bits(isa):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((100, 37)).astype(np.float32)
    big = PackedDenseMatrix(w)
    for r0, r1 in ((0, 32), (32, 100), (64, 96), (96, 100), (0, 100)):
        v = big.rows(r0, r1)
        assert v.shape == (r1 - r0, 37) and np.shares_memory(v._packed, big._packed)
        assert np.array_equal(v.to_dense(), w[r0:r1])
        own = PackedDenseMatrix(w[r0:r1])
        assert np.array_equal(v._packed, own._packed) and v.nbytes == own.nbytes
        assert np.array_equal(pickle.loads(pickle.dumps(v)).to_dense(), w[r0:r1])
        for m in ROWS:
            x = rng.standard_normal((m, 37)).astype(np.float32)
            full = sparsekit.linear(x, big)
            assert np.array_equal(sparsekit.linear(x, v), full[:, r0:r1])
            assert np.array_equal(sparsekit.linear(x, own), full[:, r0:r1])


def test_rows_rejects_ranges_off_panels():
    big = PackedDenseMatrix(np.ones((70, 8), np.float32))
    for r0, r1 in ((0, 0), (-32, 0), (0, 71), (16, 64), (0, 40), (64, 64), (32, 20)):
        with pytest.raises(ValueError, match="r0, r1"):
            big.rows(r0, r1)
    with pytest.raises(TypeError, match="r0, r1"):
        big.rows(0.0, 32)
    assert big.rows(np.int64(64), 70).shape == (6, 8)
