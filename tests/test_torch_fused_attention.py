"""accelerate(): query/key/value fused into one int8 GEMM (FusedLinears), and
Hugging Face encoders on sparsekit's attention kernel with padding dropped.

Tolerances: fused vs unfused members are bit-identical (the same per-row
activation quantization and exact int32 GEMM); the HF encoder with sparsekit
attention vs transformers' sdpa in fp32: 2e-5 absolute on real tokens (hidden
values of size ~1-5; the attention kernel differs by float rounding only).
"""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import sparsekit.torch as skt  # noqa: E402
from sparsekit.runtime.torch_modules import FusedLinears  # noqa: E402


class SelfAttn(nn.Module):
    """query/key/value on x; key/value on `memory` instead when it is given."""

    def __init__(self, c=32, out=(32, 32, 48)):
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(c, o) for o in out)

    def forward(self, x, memory=None):
        m = x if memory is None else memory
        return self.query(x), self.key(m), self.value(m)


def _group(model):
    return model.query._fused[0] if model.query._fused else None


def _unfused(acc):
    other = copy.deepcopy(acc)
    _group(other).enabled = False
    return other


def _x(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_qkv_fused_bit_identical(mode):
    torch.manual_seed(0)
    model = SelfAttn().eval()
    acc = skt.accelerate(model, quantize="dynamic")
    assert isinstance(_group(acc), FusedLinears)
    ref = _unfused(acc)
    x = _x(2, 7, 32)
    ctx = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    with ctx:
        got, want, orig = acc(x), ref(x), model(x)
    for g, w, o in zip(got, want, orig):
        assert g.shape == o.shape
        assert torch.equal(g, w)
        assert (g - o).abs().max() <= 0.05 * o.abs().max()
    rows = {r["name"]: r for r in skt.report(acc)}
    assert all("query+key+value fused into one [112, 32] int8 GEMM" in rows[n]["reason"]
               for n in ("query", "key", "value"))


def test_qkv_members_share_the_stacked_weight():
    acc = skt.accelerate(SelfAttn().eval(), quantize="dynamic")
    stacked = _group(acc).layer.weight
    members = [acc.query, acc.key, acc.value]
    assert all(np.shares_memory(m.layer.weight._packed, stacked._packed) for m in members)
    assert sum(m.weight_nbytes() for m in members) == stacked.nbytes
    # called on its own (outside the parent's forward) a member runs alone
    x = _x(5, 32, seed=1)
    with torch.no_grad():
        assert torch.equal(acc.value(x), _unfused(acc).value(x))


def test_qkv_different_inputs_turn_fusion_off():
    acc = skt.accelerate(SelfAttn().eval(), quantize="dynamic")
    ref = _unfused(acc)
    x, mem = _x(3, 32, seed=2), _x(4, 32, seed=3)
    with torch.no_grad():
        got, want = acc(x, mem), ref(x, mem)
        assert all(torch.equal(g, w) for g, w in zip(got, want))
        assert not _group(acc).enabled
        got = acc(x)
        assert all(torch.equal(g, w) for g, w in zip(got, ref(x)))


def test_qkv_not_fused_off_panel_boundaries_and_train_mode_raises():
    acc = skt.accelerate(SelfAttn(out=(20, 20, 20)).eval(), quantize="dynamic")
    assert _group(acc) is None
    assert not any("fused" in r["reason"] for r in skt.report(acc))
    acc = skt.accelerate(SelfAttn().eval(), quantize="dynamic")
    acc.train()
    with pytest.raises(RuntimeError, match="inference-only"):
        acc(_x(2, 32))


# ---- Hugging Face encoder: sparsekit attention + padding dropped ------------

@pytest.fixture(scope="module")
def bert(tiny_bert):
    return tiny_bert


def test_hf_encoder_attention_and_packing(bert):
    model, ids, mask = bert
    # fp32, dense layers stay torch (dense="torch"): only the attention changes
    acc = skt.accelerate(model, min_sparsity=0.99, dense="torch")
    rows = [r for r in skt.report(acc) if r["chosen"] == "sparsekit attention"]
    assert len(rows) == 1 and "padding tokens dropped" in rows[0]["reason"]
    assert acc.config._attn_implementation == "sparsekit"
    assert model.config._attn_implementation == "sdpa"  # the original is untouched
    keep = mask.bool()
    with torch.inference_mode():
        want = model(input_ids=ids, attention_mask=mask)
        got = acc(input_ids=ids, attention_mask=mask)
        full = acc(input_ids=ids)  # no padding: nothing to drop
        assert torch.allclose(full.last_hidden_state,
                              model(input_ids=ids).last_hidden_state, atol=2e-5)
    h, w = got.last_hidden_state, want.last_hidden_state
    assert h.shape == w.shape
    assert torch.allclose(h[keep], w[keep], atol=2e-5)
    assert torch.all(h[~keep] == 0)  # padding positions: documented as 0
    assert torch.allclose(got.pooler_output, want.pooler_output, atol=2e-5)


def test_hf_encoder_keeps_padded_layout_when_states_are_collected(bert):
    model, ids, mask = bert
    acc = skt.accelerate(model, min_sparsity=0.99)
    with torch.inference_mode():
        want = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        got = acc(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert len(got.hidden_states) == len(want.hidden_states)
    for g, w in zip(got.hidden_states, want.hidden_states):
        assert g.shape == w.shape
        assert torch.allclose(g[mask.bool()], w[mask.bool()], atol=2e-5)


def test_hf_encoder_train_mode_and_grad_use_torch_attention(bert):
    model, ids, mask = bert
    acc = skt.accelerate(model, min_sparsity=0.99, dense="torch")  # only the attention
    acc.train()
    model.train()
    try:
        got = acc(input_ids=ids, attention_mask=mask).last_hidden_state
        want = model(input_ids=ids, attention_mask=mask).last_hidden_state
    finally:
        model.eval()
    # no padding dropped in training: every position as in the original model
    assert torch.allclose(got, want, atol=2e-5)
    acc.eval()
    acc.requires_grad_(True)
    out = acc(input_ids=ids, attention_mask=mask).last_hidden_state
    out.sum().backward()  # grad-tracked inputs take transformers' own sdpa path
    assert acc.encoder.layer[0].attention.self.query.weight.grad is not None


class OutputBlock(nn.Module):
    """BERT's BertSelfOutput shape: LayerNorm(dropout(dense(h)) + input)."""

    def __init__(self, k=48, n=32):
        super().__init__()
        self.dense = nn.Linear(k, n)
        self.LayerNorm = nn.LayerNorm(n)
        self.dropout = nn.Dropout(0.1)
        with torch.no_grad():
            self.LayerNorm.weight.normal_()
            self.LayerNorm.bias.normal_()

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


def test_residual_layernorm_fused_matches_block():
    """Tolerance 1e-5: the same int8 dense output, then add + LayerNorm in float32."""
    torch.manual_seed(1)
    block = nn.Sequential(OutputBlock()).eval()
    acc = skt.accelerate(block, quantize="dynamic")
    assert "forward" in vars(acc[0])
    assert "add_layernorm_f32" in skt.report(acc)[0]["reason"]
    h, res = _x(2, 5, 48, seed=4), _x(2, 5, 32, seed=5)
    with torch.no_grad():
        got = acc[0](h, res)
        dense = acc[0].dense(h)
        want = acc[0].LayerNorm(dense + res)
        copied = copy.deepcopy(acc)[0](h, res)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.equal(copied, got)
    acc.train()
    with pytest.raises(RuntimeError, match="inference-only"):
        acc[0](h, res)  # training runs the block's own forward, as before


def test_hf_encoder_drop_padding_off_keeps_every_position(bert):
    model, ids, mask = bert
    acc = skt.accelerate(model, min_sparsity=0.99, drop_padding=False)
    row = [r for r in skt.report(acc) if r["chosen"] == "sparsekit attention"][0]
    assert "padding" not in row["reason"]
    with torch.inference_mode():
        got = acc(input_ids=ids, attention_mask=mask).last_hidden_state
        want = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(got, want, atol=2e-5)  # padding positions included


def test_hf_int8_encoder_from_two_threads_and_copied(bert):
    """q/k/v fusion and padding drop keep per-call state out of the model:
    two threads calling one accelerated model get what one thread gets, and a
    deep copy gives the same outputs."""
    from concurrent.futures import ThreadPoolExecutor

    model, ids, mask = bert
    acc = skt.accelerate(model, quantize="dynamic")
    assert any("query+key+value fused" in r["reason"] for r in skt.report(acc))
    inputs = [(ids.roll(i, 1), mask.roll(i % 2, 0)) for i in range(6)]

    def run(k, m=acc):
        with torch.inference_mode():
            i, am = inputs[k % len(inputs)]
            return m(input_ids=i, attention_mask=am).last_hidden_state

    alone = [run(k) for k in range(len(inputs))]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(run, range(4 * len(inputs))))
    for k, got in enumerate(together):
        assert torch.equal(got, alone[k % len(inputs)])
    assert all(m._fused[0].enabled for m in acc.modules() if getattr(m, "_fused", None))
    assert torch.equal(run(1, copy.deepcopy(acc)), alone[1])


class PostAddBlock(OutputBlock):
    """Same names and signature, other math: LayerNorm before the add."""

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dense(hidden_states)) + input_tensor


def test_residual_layernorm_not_fused_when_the_block_differs():
    torch.manual_seed(2)
    acc = skt.accelerate(nn.Sequential(PostAddBlock()).eval(), quantize="dynamic")
    assert "forward" not in vars(acc[0])
    assert "add_layernorm_f32" not in skt.report(acc)[0]["reason"]


def test_transformers_without_attention_interface_keeps_its_attention(monkeypatch):
    """A transformers older than 5 (no AttentionInterface / masking_utils):
    install() changes nothing and reports nothing instead of failing."""
    pytest.importorskip("transformers")
    import sys

    from sparsekit.convert import hf_attention

    monkeypatch.setitem(sys.modules, "transformers.masking_utils", None)
    model = nn.Sequential(nn.Linear(4, 4))
    assert hf_attention.install(model) == []
