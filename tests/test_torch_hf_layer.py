"""accelerate(): BERT layers that run entirely on sparsekit get one direct
forward (sparsekit/convert/hf_layer.py).

No tolerance: the direct forward calls the same kernels on the same arrays
as the module-by-module path, so every output is compared bit for bit with
that path (the same model with the layers' forward attribute removed), and
every case that must take the layer's own forward is checked to do so.
"""
import copy
import io
import pickle

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import sparsekit.torch as skt  # noqa: E402
from sparsekit import _dense_f32 as D  # noqa: E402
from sparsekit.convert import hf_layer  # noqa: E402
from sparsekit.runtime.torch_modules import ResidualLayerNorm  # noqa: E402
from conftest import count_calls  # noqa: E402


@pytest.fixture(scope="module")
def bert(tiny_bert):
    return tiny_bert


def _accelerate(model, quantize):
    if quantize is None and not D.wanted():
        pytest.skip("dense fp32 layers stay in torch on this CPU: nothing to fuse")
    acc = skt.accelerate(model, quantize=quantize, min_sparsity=0.99)
    assert all(isinstance(layer.__dict__.get("forward"), hf_layer.FusedEncoderLayer)
               for layer in acc.encoder.layer)
    return acc


def _module_path(acc):
    """The same accelerated model, each layer on its modules one by one."""
    other = copy.deepcopy(acc)
    for layer in other.encoder.layer:
        del layer.forward
    return other


@pytest.fixture
def runs(monkeypatch):
    """Counts calls of the direct path (accelerate's own check calls it too:
    tests set it to 0 after accelerating)."""
    return count_calls(monkeypatch, hf_layer.FusedEncoderLayer, "run")


def _outputs(model, **kw):
    with torch.inference_mode():
        out = model(**kw)
    return [out.last_hidden_state, out.pooler_output] + \
        list(getattr(out, "hidden_states", None) or ())


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("quantize", [None, "dynamic"])
def test_direct_layers_bit_identical(bert, quantize, runs):
    model, ids, mask = bert
    acc = _accelerate(model, quantize)
    ref = _module_path(acc)
    runs[0] = 0
    assert any("one sparsekit forward" in r["reason"] for r in skt.report(acc))
    cases = [dict(input_ids=ids[:1]),  # batch 1, no mask
             dict(input_ids=ids, attention_mask=mask),  # padded: packed sequences
             dict(input_ids=ids, attention_mask=torch.ones_like(mask))]
    for kw in cases:
        before = runs[0]
        got, want = _outputs(acc, **kw), _outputs(ref, **kw)
        assert runs[0] == before + 2  # both layers took the direct path
        assert _same(got, want)
    with torch.no_grad():  # grad mode on, nothing requires grad: direct too
        before = runs[0]
        got = acc(input_ids=ids, attention_mask=mask).last_hidden_state
        assert runs[0] == before + 2
        assert torch.equal(got, _outputs(ref, input_ids=ids, attention_mask=mask)[0])
    # padding off: the layers see the padded batch and its 4-D mask
    nopad = skt.accelerate(model, quantize=quantize, min_sparsity=0.99, drop_padding=False)
    ref = _module_path(nopad)
    before = runs[0]
    got = _outputs(nopad, input_ids=ids, attention_mask=mask)
    assert runs[0] == before + 2
    assert _same(got, _outputs(ref, input_ids=ids, attention_mask=mask))


@pytest.mark.parametrize("quantize", [None, "dynamic"])
def test_collected_states_and_hooks_take_the_layers_own_forward(bert, quantize, runs):
    model, ids, mask = bert
    acc = _accelerate(model, quantize)
    ref = _module_path(acc)
    runs[0] = 0
    kw = dict(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    got, want = _outputs(acc, **kw), _outputs(ref, **kw)
    assert runs[0] == 0 and len(got) == 2 + 3 and _same(got, want)
    with torch.inference_mode():
        a = acc(input_ids=ids, attention_mask=mask, output_attentions=True)
        b = ref(input_ids=ids, attention_mask=mask, output_attentions=True)
    assert runs[0] == 0 and torch.equal(a.last_hidden_state, b.last_hidden_state)
    # transformers left its (now idle) capturing hooks on the modules: direct again
    assert _same(_outputs(acc, input_ids=ids[:1]), _outputs(ref, input_ids=ids[:1]))
    assert runs[0] == 2
    runs[0] = 0
    seen = []
    h = acc.encoder.layer[1].intermediate.dense.register_forward_hook(
        lambda m, i, o: seen.append(o.shape))
    try:
        got = _outputs(acc, input_ids=ids[:1])
    finally:
        h.remove()
    assert runs[0] == 1 and seen == [(1, 9, 128)]  # layer 0 direct, layer 1 its modules
    assert _same(got, _outputs(ref, input_ids=ids[:1]))
    # attention switched back to sdpa: the layers' own forward, on sdpa
    acc.set_attn_implementation("sdpa")
    ref.set_attn_implementation("sdpa")
    try:
        before = runs[0]
        got = _outputs(acc, input_ids=ids[:1])
        assert runs[0] == before and _same(got, _outputs(ref, input_ids=ids[:1]))
    finally:
        acc.set_attn_implementation("sparsekit")
        ref.set_attn_implementation("sparsekit")
    # a hook on the layer itself runs around the direct forward
    h = acc.encoder.layer[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:
        _outputs(acc, input_ids=ids[:1])
    finally:
        h.remove()
    assert runs[0] == 3 and seen[-1] == (1, 9, 64)


@pytest.mark.parametrize("quantize", [None, "dynamic"])
def test_training_and_grad_take_the_layers_own_forward(bert, quantize, runs):
    model, ids, mask = bert
    acc = _accelerate(model, quantize)
    ref = _module_path(acc).encoder.layer[0]
    runs[0] = 0
    layer = acc.encoder.layer[0]
    x = torch.randn(1, 4, 64)
    layer.attention.output.dropout.train()  # one submodule in training mode (p = 0)
    with torch.no_grad():
        got = layer(x)
    assert runs[0] == 0 and torch.equal(got, ref(x))
    layer.train()
    with pytest.raises(RuntimeError, match="inference-only"), torch.no_grad():
        layer(x)  # as on the module path: sparsekit modules refuse training mode
    layer.eval()
    with pytest.raises(RuntimeError, match="requires grad"):
        layer(x.requires_grad_(True))
    assert runs[0] == 0
    with torch.no_grad():
        got, want = layer(x), ref(x)
    assert runs[0] == 1 and torch.equal(got, want)
    # a mask the attention kernel does not take (one per head): sdpa, on the
    # layer's own forward
    mask = torch.zeros(1, 4, 4, 4)
    mask[0, 1, :, 2:] = float("-inf")
    with torch.no_grad():
        got, want = layer(x, mask), ref(x, mask)
    assert runs[0] == 1 and torch.equal(got, want)


@pytest.mark.parametrize("quantize", [None, "dynamic"])
def test_copies_state_dict_and_changed_modules(bert, quantize, runs):
    model, ids, mask = bert
    acc = _accelerate(model, quantize)
    runs[0] = 0
    kw = dict(input_ids=ids, attention_mask=mask)
    want = _outputs(acc, **kw)
    assert runs[0] == 2
    # the direct forward adds no module, parameter or state_dict key
    plain = _module_path(acc)
    sd, sd_plain = acc.state_dict(), plain.state_dict()
    assert list(sd) == list(sd_plain)
    assert all(torch.equal(sd[k], sd_plain[k]) for k in sd)
    buf = io.BytesIO()
    torch.save(acc, buf)
    for other in (copy.deepcopy(acc), pickle.loads(pickle.dumps(acc)),
                  torch.load(io.BytesIO(buf.getvalue()), weights_only=False)):
        for layer, orig in zip(other.encoder.layer, acc.encoder.layer):
            f = layer.__dict__["forward"]
            assert f.layer is layer and f.parts.sa is layer.attention.self
            assert f.parts.group is layer.attention.self.query._fused[0]
            assert f.parts.group is not orig.attention.self.query._fused[0]
        before = runs[0]
        assert _same(_outputs(other, **kw), want) and runs[0] == before + 2
    fresh = _accelerate(model, quantize)
    fresh.load_state_dict(sd)  # members restacked by the group's post hook
    other = copy.deepcopy(acc)
    other.encoder.layer[0].output.dense = copy.deepcopy(other.encoder.layer[1].output.dense)
    ref = _module_path(other)
    before = runs[0]
    assert _same(_outputs(fresh, **kw), want) and runs[0] == before + 2
    # a replaced submodule: the layer's modules, not the direct path's old parts
    before = runs[0]
    got = _outputs(other, **kw)
    assert runs[0] == before + 1 and _same(got, _outputs(ref, **kw))
    assert not torch.equal(got[0], want[0])


def test_not_installed_where_a_part_stays_in_torch(bert):
    model, ids, mask = bert
    acc = skt.accelerate(model, min_sparsity=0.99, dense="torch")
    assert not any("forward" in layer.__dict__ for layer in acc.encoder.layer)
    assert hf_layer.recognise(model.encoder.layer[0]) is None
    if D.wanted():  # fp32 with the GELU left in torch (no fusion): not recognised
        acc = skt.accelerate(model, min_sparsity=0.99)
        layer = acc.encoder.layer[0]
        del layer.forward
        layer.intermediate.intermediate_act_fn = torch.nn.GELU()
        assert hf_layer.recognise(layer) is None


@pytest.mark.parametrize("change", ["tuple", "other math"])
def test_not_installed_when_the_layers_forward_differs(bert, monkeypatch, change):
    """Recognised by its parts, but the layer's own forward returns a tuple
    (older transformers) or computes something else: it keeps that forward."""
    if not D.wanted():
        pytest.skip("dense fp32 layers stay in torch on this CPU: nothing to fuse")
    model, ids, mask = bert
    cls = type(model.encoder.layer[0])
    own = cls.forward

    def forward(self, *args, **kwargs):
        out = own(self, *args, **kwargs)
        return (out,) if change == "tuple" else out + 1.0

    monkeypatch.setattr(cls, "forward", forward)
    acc = skt.accelerate(model, min_sparsity=0.99)
    assert hf_layer.recognise(acc.encoder.layer[0]) is not None
    assert not any("forward" in layer.__dict__ for layer in acc.encoder.layer)


@pytest.mark.parametrize("quantize", [None, "dynamic"])
def test_hook_on_an_output_layernorm_runs(bert, quantize):
    """A forward hook on an output block's LayerNorm sees the LayerNorm's own
    output and the model gives the same result: the block's own forward runs
    (the fused add + LayerNorm kernel would skip the module)."""
    model, ids, mask = bert
    acc = _accelerate(model, quantize)
    ref = _module_path(acc)
    for m in (acc, ref):  # the module path: ResidualLayerNorm's forward, not the direct one
        for layer in m.encoder.layer:
            layer.__dict__.pop("forward", None)
    block = acc.encoder.layer[1].output
    assert isinstance(block.__dict__.get("forward"), ResidualLayerNorm)
    want = _outputs(ref, input_ids=ids, attention_mask=mask)
    seen = []
    h = block.LayerNorm.register_forward_hook(lambda m, i, o: seen.append(o.clone()))
    try:
        got = _outputs(acc, input_ids=ids, attention_mask=mask)
    finally:
        h.remove()
    assert len(seen) == 1 and seen[0].shape[-1] == 64
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
