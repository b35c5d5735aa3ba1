"""The attention mask checked once (PrepareMask -> TokenMask): the mask-taking
layers give bit-identical results for a TokenMask and for the raw mask, a
TokenMask is still matched to the hidden states' shape, raw masks passed to a
layer are still checked, and graphs without PrepareMask (as saved before it
existed: the raw mask fed to every layer) still load and run."""
import numpy as np
import pytest

import sparsekit
from sparsekit import runtime as R


def _case(rng, c=24, heads=3):
    w = rng.standard_normal((3 * c, c)).astype(np.float32) / np.sqrt(c)
    b = rng.standard_normal(3 * c).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0, 0], [1] * 7, [0] * 7])
    h = rng.standard_normal((4, 7, c)).astype(np.float32)
    return R.SelfAttention(w, b, heads), mask, h


@pytest.mark.parametrize("raw_kind", ["int64", "bool", "int32"])
def test_token_mask_gives_the_raw_mask_results(rng, raw_kind):
    att, mask, h = _case(rng)
    raw = mask.astype(raw_kind)
    tm = R.PrepareMask()(raw)
    assert isinstance(tm, R.TokenMask) and tm.shape == mask.shape
    np.testing.assert_array_equal(tm.keep, mask.astype(bool))
    np.testing.assert_array_equal(tm.offsets, [0, 5, 6, 13, 13])
    assert tm.n == 13 and not tm.full
    assert R.PrepareMask()(tm) is tm
    packed = R.PackTokens()(h, raw)
    np.testing.assert_array_equal(R.PackTokens()(h, tm), packed)
    np.testing.assert_array_equal(att(h, tm), att(h, raw))
    np.testing.assert_array_equal(att(packed, tm), att(packed, raw))
    np.testing.assert_array_equal(R.UnpackTokens()(packed, tm), R.UnpackTokens()(packed, raw))
    for x in (h, packed):
        np.testing.assert_array_equal(R.MeanPool()(x, tm), R.MeanPool()(x, raw))
    full = R.PrepareMask()(np.ones((4, 7), np.int64))
    assert full.full and full.n == 28
    np.testing.assert_array_equal(att(h, full), att(h, np.ones((4, 7), bool)))


def test_prepare_mask_checks_the_mask():
    with pytest.raises(ValueError, match="attention_mask: expected a 2-D array"):
        R.PrepareMask()(np.ones(5, np.int64))
    with pytest.raises(TypeError, match="attention_mask: expected an integer or bool"):
        R.PrepareMask()(np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match="attention_mask: expected only 0"):
        R.PrepareMask()(np.full((2, 5), 2))


def test_token_mask_must_fit_the_hidden_states(rng):
    att, mask, h = _case(rng)
    tm = R.PrepareMask()(mask)
    with pytest.raises(ValueError, match=r"attention_mask: expected shape \(4, 6\)"):
        att(h[:, :6], tm)
    with pytest.raises(ValueError, match="attention_mask: has 13 real tokens but the packed "
                                         "hidden states have 12 rows"):
        att(h.reshape(-1, h.shape[2])[:12], tm)
    with pytest.raises(ValueError, match="attention_mask: has 13 real tokens"):
        R.UnpackTokens()(h.reshape(-1, h.shape[2])[:12], tm)
    with pytest.raises(ValueError, match=r"attention_mask: expected shape \(3, 7\)"):
        R.PackTokens()(h[:3], tm)
    with pytest.raises(ValueError, match=r"attention_mask: expected shape \(4, 5\)"):
        R.MeanPool()(h[:, :5], tm)
    # a raw mask passed to a layer directly is still checked
    with pytest.raises(ValueError, match="attention_mask: expected only 0"):
        att(h, mask * 3)
    with pytest.raises(TypeError, match="keep: expected a 2-D bool"):
        R.TokenMask(mask)


def _text_model(rng, with_prepare):
    att, mask, h = _case(rng)
    c = h.shape[2]
    m = "mask" if with_prepare else "attention_mask"
    nodes = [(R.PrepareMask(), ["attention_mask"], "mask")] if with_prepare else []
    nodes += [
        (R.Embedding(rng.standard_normal((30, c)).astype(np.float32),
                     rng.standard_normal((9, c)).astype(np.float32),
                     rng.standard_normal((2, c)).astype(np.float32)),
         ["input_ids", "token_type_ids"], "e"),
        (R.PackTokens(), ["e", m], "p"),
        (att, ["p", m], "a"),
        (R.AddLayerNorm(np.ones(c, np.float32), None, 1e-6), ["a", "p"], "n"),
        (R.UnpackTokens(), ["n", m], "hidden"),
        (R.MeanPool(), ["n", m], "pooled"),
    ]
    model = R.Model.graph(nodes, ["input_ids", "attention_mask", "token_type_ids"],
                          ["hidden", "pooled"])
    ids = rng.integers(0, 30, mask.shape)
    return model, dict(input_ids=ids, attention_mask=mask, token_type_ids=np.zeros_like(ids))


def test_graphs_without_prepare_mask_still_load_and_run(tmp_path):
    """A file of the graph as saved before PrepareMask (the raw mask to every
    layer) loads and gives the outputs of the graph with PrepareMask."""
    old, feed = _text_model(np.random.default_rng(3), with_prepare=False)
    new, _ = _text_model(np.random.default_rng(3), with_prepare=True)
    sparsekit.save(old, tmp_path / "old.spk")
    sparsekit.save(new, tmp_path / "new.spk")
    loaded_old, loaded_new = (sparsekit.load(tmp_path / f) for f in ("old.spk", "new.spk"))
    assert "PrepareMask" not in [type(n[0]).__name__ for n in loaded_old.nodes]
    assert type(loaded_new.nodes[0][0]).__name__ == "PrepareMask"
    want = new(**feed)
    for m in (old, loaded_old, loaded_new):
        for got, w in zip(m(**feed), want):
            np.testing.assert_array_equal(got, w)
    with pytest.raises(ValueError, match="attention_mask: expected only 0"):
        loaded_old(**dict(feed, attention_mask=feed["attention_mask"] * 2))
    with pytest.raises(ValueError, match="attention_mask: expected only 0"):
        loaded_new(**dict(feed, attention_mask=feed["attention_mask"] * 2))


DATA = __import__("pathlib").Path(__file__).parent / "data"


@pytest.mark.parametrize("kind", ["packed", "padded"])
def test_files_written_before_prepare_mask_load_and_run(kind):
    """tests/data/bert_v1_*.spk were written by sparsekit before PrepareMask
    (tests/data/make_bert_v1.py, a tiny random BertModel, checked against
    torch then): they load, feed the raw mask to each layer, and give the
    outputs they gave then."""
    m = sparsekit.load(DATA / f"bert_v1_{kind}.spk")
    kinds = [type(n[0]).__name__ for n in m.nodes]
    assert "PrepareMask" not in kinds and kinds.count("SelfAttention") == 2
    assert m.optional_inputs == []
    feed = dict(np.load(DATA / "bert_v1_inputs.npz"))
    got, then = m(**feed), np.load(DATA / f"bert_v1_{kind}_out.npy")
    if set(sparsekit.info()["kernels"].values()) <= {"avx512", "avx512vnni"}:
        np.testing.assert_array_equal(got, then)  # the kernels that wrote them: the same bits
    else:  # other ISAs sum in another order: float rounding (observed 3.6e-7 on AVX2)
        np.testing.assert_allclose(got, then, rtol=1e-6, atol=1e-6)
