"""Fused query/key/value (FusedLinears), int8 and fp32: copies keep the
fusion, and a member without a bias gets the same bits fused as alone.

- copy.deepcopy / pickle: the copy's members hold views of the copy's one
  stacked weight (shared memory, one group), the pickle carries the weight
  once, and outputs equal the original's bit for bit;
- signed zeros: a bias-less member's outputs that are -0.0 alone (products
  that underflow keep their sign) stay -0.0 fused (its slot of the stacked
  bias is -0.0, which changes no bit when added).

No tolerance: fused meets unfused exactly (see test_torch_fused_qkv_fp32.py).
"""
import copy
import io
import pickle

import numpy as np
import pytest

from sparsekit import _dense_f32 as D

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import sparsekit.torch as skt  # noqa: E402
from sparsekit.runtime.torch_modules import FusedLinears  # noqa: E402

NAMES = ("query", "key", "value")
# (quantize, weight factor, input scale) where a bias-less member's products
# underflow to signed zeros (fp32: each product; int8: the row scale times the
# channel scale)
UNDERFLOW = {None: (1e-3, 1e-42), "dynamic": (1e-6, 1e-36)}


class SelfAttn(nn.Module):
    def __init__(self, seed=0, c=48, out=(32, 64, 32), bias=(True, True, True)):
        super().__init__()
        torch.manual_seed(seed)
        self.query, self.key, self.value = (nn.Linear(c, o, bias=b) for o, b in zip(out, bias))

    def forward(self, x):
        return self.query(x), self.key(x), self.value(x)


def _accelerated(quantize, model):
    # min_sparsity: dense formats (pack's cost model may pick sparse int8 for
    # such small layers on some ISAs, and sparse weights are not fused)
    acc = skt.accelerate(model, quantize=quantize, min_sparsity=0.99)
    group = getattr(acc.query, "_fused", None)
    if group is None:  # fp32 stays in torch where the packed GEMM does not win
        assert quantize is None and not D.wanted()
        return acc, None
    return acc, group[0]


def _fused(quantize, model):
    acc, group = _accelerated(quantize, model)
    if group is None:  # never on x86 with AVX2 or AVX-512 (CI): the default ISA fuses
        pytest.skip("the packed fp32 GEMM is not used at this ISA: nothing fused")
    return acc, group


def _run(model, x):
    with torch.inference_mode():
        return model(torch.from_numpy(x))


def _alone(acc):
    other = copy.deepcopy(acc)
    other.query._fused[0].enabled = False
    return other


def _bits(t):
    return t.numpy().view(np.uint32)


@pytest.mark.parametrize("quantize", [None, "dynamic"])
def test_copies_keep_one_stacked_weight(quantize):
    model = SelfAttn(seed=1, c=256).eval()  # weights large against the pickle's other bytes
    acc, group = _fused(quantize, model)
    stacked = group.layer.weight
    buf = io.BytesIO()
    torch.save(acc, buf)
    copies = [copy.deepcopy(acc), pickle.loads(pickle.dumps(acc)),
              torch.load(io.BytesIO(buf.getvalue()), weights_only=False)]
    one = len(pickle.dumps(stacked))
    # the stacked weight once, not once more for the members' own copies
    assert len(pickle.dumps(acc)) < 1.25 * one
    rng = np.random.default_rng(0)
    for other in copies:
        g = other.query._fused[0]
        assert isinstance(g, FusedLinears) and g is not group and g.layer.weight is not stacked
        members = [getattr(other, n) for n in NAMES]
        assert all(m._fused == (g, i) for i, m in enumerate(members))
        assert all(np.shares_memory(m.layer.weight._packed, g.layer.weight._packed)
                   for m in members)
        assert not np.shares_memory(g.layer.weight._packed, stacked._packed)
        assert sum(m.weight_nbytes() for m in members) == g.layer.weight.nbytes
        for rows in (1, 3, 17):
            x = rng.standard_normal((rows, 256)).astype(np.float32)
            got, want = _run(other, x), _run(acc, x)
            # fused in the copy too: the outputs are views of one buffer
            assert got[0].untyped_storage().data_ptr() == got[2].untyped_storage().data_ptr()
            assert all(np.array_equal(_bits(a), _bits(b)) for a, b in zip(got, want))
        assert all(np.array_equal(_bits(a), _bits(b))
                   for a, b in zip(_run(_alone(other), x), _run(other, x)))


@pytest.mark.parametrize("quantize", [None, "dynamic"])
def test_copy_of_a_member_with_its_own_weight_keeps_it(quantize):
    """A member that loaded a state_dict on its own (group stale) pickles its
    own weight, not a cut of the stacked one."""
    acc, group = _fused(quantize, SelfAttn(seed=2).eval())
    src, _ = _accelerated(quantize, SelfAttn(seed=3).eval())
    acc.key.load_state_dict(src.key.state_dict())
    assert group.stale
    x = np.random.default_rng(1).standard_normal((4, 48)).astype(np.float32)
    for other in (copy.deepcopy(acc), pickle.loads(pickle.dumps(acc))):
        assert not np.shares_memory(other.key.layer.weight._packed,
                                    other.query._fused[0].layer.weight._packed)
        got = _run(other, x)
        assert np.array_equal(_bits(got[1]), _bits(_run(src, x)[1]))
        assert all(np.array_equal(_bits(a), _bits(b)) for a, b in zip(got, _run(acc, x)))


@pytest.mark.parametrize("quantize", [None, "dynamic"])
def test_biasless_member_keeps_negative_zeros(isa, quantize):
    factor, scale = UNDERFLOW[quantize]
    model = SelfAttn(seed=4, bias=(True, False, True)).eval()
    with torch.no_grad():
        for n in NAMES:
            getattr(model, n).weight.mul_(factor)
    acc, group = _accelerated(quantize, model)
    if group is None:  # this ISA keeps fp32 Linears in torch: nothing fused, nothing stacked
        assert all(type(getattr(acc, n)) is nn.Linear for n in NAMES)
        return
    assert acc.key.layer.bias is None
    stacked_bias = group.layer.bias[group.bounds[1][0]:group.bounds[1][1]]
    assert np.all(stacked_bias == 0) and np.all(np.signbit(stacked_bias))
    alone = _alone(acc)
    rng = np.random.default_rng(2)
    for rows in (1, 2, 5):
        x = (rng.standard_normal((rows, 48)) * scale).astype(np.float32)
        got, want = _run(acc, x), _run(alone, x)
        assert got[0].untyped_storage().data_ptr() == got[1].untyped_storage().data_ptr()
        w = want[1].numpy()
        assert np.any((w == 0) & np.signbit(w))  # the case this is about occurs
        for a, b in zip(got, want):
            assert np.array_equal(_bits(a), _bits(b))
