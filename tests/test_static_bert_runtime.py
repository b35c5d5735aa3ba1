"""sparsekit.torch.to_runtime(bert, quantize="static"): compress.calibrate's
parameters in the torch-free BERT runtime (tiny random BertModel, dense and
90%-pruned weights, and a tiny sentence-transformers model on it), against
compress.fake_quantize and accelerate(model, quantize="static").

Tolerances:
- each int8 layer on the input it really gets in the runtime (the graph run
  node by node) against fake_quantize's linear on that input, as in
  test_torch_static_int8.py: |diff| <= 8 eps32 * S, S = sum_k |x~_k w~_nk| +
  |b_n| (only float rounding differs; measured <= 1.93 eps32 * S here). One
  quantization step (wrong zero point, dynamic instead of static, another
  weight scale) is >> that;
- end to end (hidden states of size ~1 after LayerNorm, pooler output,
  sentence embeddings) against accelerate(static) and fake_quantize: the
  attention / LayerNorm / GELU kernels round differently from torch's (float
  rounding, measured <= 4.8e-7 here), and a difference that lands on a u8
  rounding boundary moves the next layer's input by one step (~1e-3 at the
  output). Asserted: every element within 5e-3 and at most 0.5% of them
  beyond 2e-5 (measured: none beyond 1e-6). Dynamic activations instead of
  static put 29-96% of the hidden-state elements beyond 2e-5.
"""
import copy
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from torch import nn  # noqa: E402

import sparsekit  # noqa: E402
import sparsekit.torch as skt  # noqa: E402
from sparsekit import compress  # noqa: E402
from sparsekit.compress.quantize import (  # noqa: E402
    QuantParams, fake_quant_activation, fake_quant_weight,
)
from sparsekit.runtime import layers as L  # noqa: E402
from sparsekit.runtime.attention import SelfAttention  # noqa: E402

if not hasattr(sparsekit, "SparseInt8Matrix"):
    pytest.skip("this build has no int8 kernels", allow_module_level=True)
warnings.filterwarnings("ignore", category=DeprecationWarning)
EPS32 = float(np.finfo(np.float32).eps)
C, T, VOCAB = 32, 11, 60


def _feed(rng, b):
    """Right-padded ids / mask [b, T] of mixed lengths (one full row)."""
    ids = rng.integers(1, VOCAB, (b, T))
    lens = rng.integers(2, T + 1, b)
    lens[0] = T
    mask = (np.arange(T)[None] < lens[:, None]).astype(np.int64)
    return {"input_ids": ids * mask, "attention_mask": mask}


def _tiny_bert(pruned, per_channel=True, skip=()):
    """(calibrated tiny BertModel, test feed); pruned: 90% random zeros in
    every Linear (encoder and pooler)."""
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=C, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=48,
                                  max_position_embeddings=24, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    bert = transformers.BertModel(cfg).eval()
    if pruned:
        with torch.no_grad():
            for m in bert.modules():
                if isinstance(m, nn.Linear):
                    m.weight[torch.rand(m.weight.shape) < 0.9] = 0
    rng = np.random.default_rng(5)
    batches = [{k: torch.from_numpy(v) for k, v in _feed(rng, 6).items()} for _ in range(3)]
    compress.calibrate(bert, batches, report=False, per_channel=per_channel, skip=skip)
    return bert, _feed(rng, 5)


@pytest.fixture(scope="module")
def dense_bert():
    return _tiny_bert(pruned=False)


def _torch_out(model, feed):
    with torch.inference_mode():
        return model(**{k: torch.from_numpy(v) for k, v in feed.items()})


def _assert_close_end_to_end(got, want):
    err = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    assert got.shape == want.shape
    assert err.max() <= 5e-3, err.max()
    assert (err > 2e-5).mean() <= 0.005, ((err > 2e-5).mean(), err.max())


def _fake_linear(mods, x):
    """(fake_quantize's output, S) of the Linears `mods` (stacked outputs) on x."""
    x = torch.from_numpy(np.ascontiguousarray(x))
    outs, sums = [], []
    for m in mods:
        qp = compress.get_qparams(m)
        xf = fake_quant_activation(x, qp.input_scale, qp.input_zero_point)
        wf = fake_quant_weight(m.weight, qp.weight_scale)
        b = m.bias
        with torch.no_grad():
            outs.append(nn.functional.linear(xf, wf, b))
            sums.append(nn.functional.linear(xf.double().abs(), wf.double().abs(),
                                             b.double().abs()))
    return torch.cat(outs, -1).numpy(), torch.cat(sums, -1).numpy()


def _check_layers_on_their_inputs(rt, bert, feed, head=None):
    """Run rt's graph node by node; every int8 Linear (and SelfAttention's
    query/key/value GEMM) against fake_quantize on the input it gets.
    Returns the largest |diff| / (eps32 * S) and the number of layers checked."""
    env = dict(feed, token_type_ids=None)
    worst, n = 0.0, 0
    for layer, ins, out in rt.nodes:
        args = [env[i] for i in ins]
        if isinstance(layer, SelfAttention):
            sa = bert.get_submodule(out)
            mods, lin = [sa.query, sa.key, sa.value], layer.qkv
        elif isinstance(layer, L.Linear):
            mods = [bert.get_submodule(out) if head is None or not out[0].isdigit()
                    else head[int(out.split(".")[0])].linear]
            lin = L.Linear(layer.weight, layer.bias)  # the GEMM, before a fused GELU
        else:
            mods = None
        if mods is not None:
            assert layer.weight.input_scale is not None, out
            got = lin(args[0])
            want, s = _fake_linear(mods, args[0])
            err = np.abs(got.astype(np.float64) - want)
            assert (err <= 8 * EPS32 * s + 1e-30).all(), (out, float((err / (EPS32 * s)).max()))
            worst, n = max(worst, float((err / (EPS32 * s + 1e-30)).max())), n + 1
        env[out] = layer(*args)
    return worst, n


CASES = [("dense", True), ("pruned", True), ("dense", False)]  # (weights, per_channel)


@pytest.mark.parametrize("drop_padding", [True, False])
@pytest.mark.parametrize("weights,per_channel", CASES)
def test_static_bert_matches_fake_quantize_and_accelerate(weights, per_channel, drop_padding):
    bert, feed = _tiny_bert(weights == "pruned", per_channel)
    rt = skt.to_runtime(bert, quantize="static", min_sparsity=0.5, drop_padding=drop_padding,
                        outputs=["last_hidden_state", "pooler_output"])
    kind = {"dense": sparsekit.QuantizedMatrix, "pruned": sparsekit.SparseInt8Matrix}[weights]
    ws = [n[0].weight for n in rt.nodes if isinstance(n[0], (L.Linear, SelfAttention))]
    assert len(ws) == 2 * 4 + 1 and all(type(w) is kind for w in ws)
    rows = skt.report(rt)
    assert [r["name"] for r in rows][:2] == ["encoder.layer.0.attention.self.query+key+value",
                                             "encoder.layer.0.attention.output.dense"]
    chosen = "sparse int8" if weights == "pruned" else "dense int8"
    assert all(r["chosen"] == chosen and "static activations" in r["reason"] and
               "calibrated (minmax observer)" in r["reason"] for r in rows), str(rows)
    # the stacked weight takes query's (= key's = value's) input parameters
    sa = bert.encoder.layer[1].attention.self
    qkv = rt.nodes[[n[2] for n in rt.nodes].index("encoder.layer.1.attention.self")][0]
    qp = compress.get_qparams(sa.query)
    assert all(compress.get_qparams(m).input_zero_point == qp.input_zero_point and
               compress.get_qparams(m).input_scale == qp.input_scale for m in (sa.key, sa.value))
    assert qkv.weight.input_zero_point == qp.input_zero_point
    assert qkv.weight.input_scale == np.float32(qp.input_scale)
    _, n = _check_layers_on_their_inputs(rt, bert, feed)
    assert n == 9
    # end to end against accelerate(static) and fake_quantize
    hidden, pooled = rt(**feed)
    real = feed["attention_mask"].astype(bool)
    fast = skt.accelerate(bert, quantize="static", min_sparsity=0.5, drop_padding=drop_padding)
    acc = _torch_out(fast, feed)
    with compress.fake_quantize(bert):
        fq = _torch_out(bert, feed)
    for want in (acc, fq):
        _assert_close_end_to_end(hidden[real], want.last_hidden_state.numpy()[real])
        _assert_close_end_to_end(pooled, want.pooler_output.numpy())
    if drop_padding:
        assert not hidden[~real].any()
    # not what dynamic activations give (the end-to-end check tells them apart)
    dyn = skt.to_runtime(bert, quantize="dynamic", min_sparsity=0.5, drop_padding=drop_padding)
    with pytest.raises(AssertionError):
        _assert_close_end_to_end(dyn(**feed)[real], hidden[real])


def test_accelerated_static_model_converts_with_its_static_weights(dense_bert):
    """to_runtime of accelerate(quantize="static") keeps each weight's static
    input; query/key/value stack with their common one: the same model as
    to_runtime(quantize="static")."""
    bert, feed = dense_bert
    rt = skt.to_runtime(bert, quantize="static", min_sparsity=0.5)
    fast = skt.accelerate(bert, quantize="static", min_sparsity=0.5)
    via = skt.to_runtime(fast)
    assert [r["chosen"] for r in via.conversion_report] == ["dense int8"] * 8
    assert "static activations" in via.conversion_report[0]["reason"]
    for a, b in zip(rt.nodes, via.nodes):
        if a[0].weight is not None:
            assert (a[0].weight.input_scale, a[0].weight.input_zero_point) == \
                (b[0].weight.input_scale, b[0].weight.input_zero_point), a[2]
    np.testing.assert_array_equal(via(**feed), rt(**feed))
    # accelerated query/key/value that quantize their input differently
    key = fast.encoder.layer[0].attention.self.key
    key.layer = L.Linear(key.layer.weight.with_static_input(None, None), key.layer.bias)
    with pytest.raises(ValueError, match=r"layer 'encoder\.layer\.0\.attention\.self'.*"
                                         r"key: dynamic.*quantized once"):
        skt.to_runtime(fast)


def test_static_bert_save_load(dense_bert, tmp_path):
    bert, feed = dense_bert
    rt = skt.to_runtime(bert, quantize="static")
    sparsekit.save(rt, tmp_path / "bert.spk")
    back = sparsekit.load(tmp_path / "bert.spk")
    np.testing.assert_array_equal(back(**feed), rt(**feed))
    got = [n[0].weight.input_zero_point for n in back.nodes if n[0].weight is not None]
    assert got == [n[0].weight.input_zero_point for n in rt.nodes if n[0].weight is not None]


class _Transformer(nn.Module):
    """The part of sentence-transformers' Transformer module the runtime reads
    (auto_model) and calls (forward on the features dict)."""

    def __init__(self, bert):
        super().__init__()
        self.auto_model = bert

    def forward(self, features):
        out = self.auto_model(input_ids=features["input_ids"],
                              attention_mask=features["attention_mask"])
        features["token_embeddings"] = out.last_hidden_state
        return features


def test_static_sentence_transformer_head():
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.sentence_transformer import modules as stm

    bert, feed = _tiny_bert(pruned=False)
    torch.manual_seed(3)
    model = st.SentenceTransformer(modules=[
        _Transformer(bert), stm.Pooling(C, "mean"),
        stm.Dense(C, 16, activation_function=nn.Tanh()), stm.Normalize()]).eval()
    rng = np.random.default_rng(7)
    batches = [transformers.BatchEncoding({k: torch.from_numpy(v)
                                           for k, v in _feed(rng, 6).items()})
               for _ in range(3)]  # not a dict: calibrate calls model(batch)
    compress.calibrate(model, batches, report=False)
    rt = skt.to_runtime(model, quantize="static", min_sparsity=0.5)
    rows = rt.conversion_report
    assert [r["name"] for r in rows][-1] == "2.linear" and len(rows) == 9
    assert all("static activations" in r["reason"] for r in rows)
    _, n = _check_layers_on_their_inputs(rt, bert, feed, head=model)
    assert n == 9

    def embed(m):
        with torch.inference_mode():
            return m(transformers.BatchEncoding(
                {k: torch.from_numpy(v) for k, v in feed.items()}))["sentence_embedding"]
    got = rt(**feed)
    fast = skt.accelerate(model, quantize="static", min_sparsity=0.5)
    with compress.fake_quantize(model):
        fq = embed(model).numpy()
    for want in (embed(fast).numpy(), fq):
        _assert_close_end_to_end(got, want)


def test_uncalibrated_layers_run_fp32_as_quantize_none():
    """calibrate's skip: those Linears (query/key/value together) run fp32,
    and the report says so, as for nn.Sequential."""
    skip = ("encoder.layer.0.attention.self.query", "encoder.layer.0.attention.self.key",
            "encoder.layer.0.attention.self.value", "encoder.layer.1.intermediate.dense")
    bert, feed = _tiny_bert(pruned=False, skip=skip)
    rt = skt.to_runtime(bert, quantize="static", min_sparsity=0.5)
    rows = {r["name"]: r for r in rt.conversion_report}
    for name in ("encoder.layer.0.attention.self.query+key+value",
                 "encoder.layer.1.intermediate.dense"):
        assert rows[name]["chosen"] == "dense fp32"
        assert "not calibrated (no sparsekit_qparams" in rows[name]["reason"]
    assert rows["encoder.layer.1.attention.self.query+key+value"]["chosen"] == "dense int8"
    real = feed["attention_mask"].astype(bool)
    with compress.fake_quantize(bert):  # quantizes the calibrated layers only
        fq = _torch_out(bert, feed).last_hidden_state.numpy()
    _assert_close_end_to_end(rt(**feed)[real], fq[real])


def test_static_bert_errors(dense_bert):
    bert, _ = dense_bert
    plain = copy.deepcopy(bert)
    for m in plain.modules():
        m.__dict__.pop("sparsekit_qparams", None)
    with pytest.raises(ValueError, match=r"quantize: 'static'.*no Linear / Conv2d of this "
                                         r"model has them.*calibrate the model first"):
        skt.to_runtime(plain, quantize="static")
    sa = "encoder.layer.1.attention.self"

    def edited(name, **change):
        m = copy.deepcopy(bert)
        mod = m.get_submodule(name)
        qp = compress.get_qparams(mod)
        if change.get("drop"):
            del mod.sparsekit_qparams
        else:
            kw = dict(input_scale=qp.input_scale, input_zero_point=qp.input_zero_point,
                      output_scale=qp.output_scale, output_zero_point=qp.output_zero_point,
                      weight_scale=qp.weight_scale)
            kw.update(change)
            mod.sparsekit_qparams = QuantParams(**kw)
        return m

    with pytest.raises(ValueError, match=rf"layer '{sa}': key has no sparsekit_qparams while "
                                         r"query and value have.*all three"):
        skt.to_runtime(edited(f"{sa}.key", drop=True), quantize="static")
    qp = compress.get_qparams(bert.get_submodule(f"{sa}.value"))
    with pytest.raises(ValueError, match=rf"layer '{sa}': query, key and value were calibrated "
                                         r"with different input parameters.*value \(scale "):
        skt.to_runtime(edited(f"{sa}.value", input_zero_point=qp.input_zero_point + 1),
                       quantize="static")
    with pytest.raises(ValueError, match=r"different input parameters"):
        skt.to_runtime(edited(f"{sa}.value", input_scale=qp.input_scale * 1.001),
                       quantize="static")
    # below float32 resolution: the same scale for the kernel, so accepted
    skt.to_runtime(edited(f"{sa}.value", input_scale=qp.input_scale * (1 + 1e-12)),
                   quantize="static")
    with pytest.raises(ValueError, match=rf"layer '{sa}\.query': sparsekit_qparams"
                                         r"\.input_zero_point: expected 0\.\.255"):
        skt.to_runtime(edited(f"{sa}.query", input_zero_point=300), quantize="static")
    with pytest.raises(ValueError, match=rf"layer '{sa}\.key': sparsekit_qparams\.weight_scale"
                                         r": expected 1 or 32"):
        skt.to_runtime(edited(f"{sa}.key", weight_scale=np.ones(5, np.float32)),
                       quantize="static")
    with pytest.raises(ValueError, match=r"layer 'encoder\.layer\.0\.output\.dense': "
                                         r"sparsekit_qparams\.input_scale: expected a finite"):
        skt.to_runtime(edited("encoder.layer.0.output.dense", input_scale=0.0),
                       quantize="static")
    with pytest.raises(ValueError, match=r"layer 'pooler\.dense': sparsekit_qparams"
                                         r"\.weight_scale"):
        skt.to_runtime(edited("pooler.dense", weight_scale=np.zeros(C, np.float32)),
                       quantize="static", outputs="pooler_output")
