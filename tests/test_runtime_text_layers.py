"""Runtime layers for text encoders (Embedding, SelfAttention, AddLayerNorm,
PackTokens / UnpackTokens, MeanPool, L2Normalize) against plain NumPy float64
references (tolerance 1e-5 relative to the output scale), their bad-input
errors, and their save / load round trip."""
import numpy as np
import pytest

import sparsekit
from sparsekit import runtime as R


def close(got, ref, tol=1e-5):
    ref = np.asarray(ref)
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * (np.abs(ref).max() + 1))


def ref_attention(h, mask, w, b, heads, scale):
    """float64 multi-head attention of a padded batch h [B, T, C]."""
    h = h.astype(np.float64)
    bsz, t, c = h.shape
    d = c // heads
    qkv = h @ w.T.astype(np.float64) + b
    q, k, v = (qkv[..., i * c:(i + 1) * c].reshape(bsz, t, heads, d) for i in range(3))
    s = np.einsum("bihd,bjhd->bhij", q, k) * scale
    s = np.where(mask.astype(bool)[:, None, None, :], s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhij,bjhd->bihd", p, v).reshape(bsz, t, c)


def padding_mask(lengths, t):
    return (np.arange(t)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)


@pytest.fixture
def attn_case(rng):
    c, heads = 24, 3
    w = rng.standard_normal((3 * c, c)).astype(np.float32) / np.sqrt(c)
    b = rng.standard_normal(3 * c).astype(np.float32)
    lengths = [5, 1, 7]
    mask = padding_mask(lengths, 7)
    h = rng.standard_normal((3, 7, c)).astype(np.float32)
    return c, heads, w, b, mask, h


@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_self_attention_padded_and_packed_match_reference(attn_case, fmt):
    c, heads, w, b, mask, h = attn_case
    if fmt == "csr":
        w = w.copy()
        w[np.abs(w) < 0.15] = 0
        wf = sparsekit.CSRMatrix.from_dense(w)
    else:
        wf = w
    layer = R.SelfAttention(wf, b, num_heads=heads)
    ref = ref_attention(h, mask, w, b, heads, (c // heads) ** -0.5)
    keep = mask.astype(bool)
    got = layer(h, mask)
    close(got[keep], ref[keep])
    packed = R.PackTokens()(h, mask)
    assert packed.shape == (keep.sum(), c)
    close(layer(packed, mask), ref[keep])
    # a batch without padding and a bool mask
    full = np.ones((3, 7), bool)
    close(layer(h, full), ref_attention(h, full, w, b, heads, (c // heads) ** -0.5))


def test_self_attention_int8_close_to_reference(attn_case):
    c, heads, w, b, mask, h = attn_case
    if not hasattr(sparsekit, "QuantizedMatrix"):
        pytest.skip("no int8 kernels")
    layer = R.SelfAttention(sparsekit.QuantizedMatrix.from_float(w, per_channel=True), b,
                            num_heads=heads, scale=0.3)
    keep = mask.astype(bool)
    ref = ref_attention(h, mask, w, b, heads, 0.3)[keep]
    got = layer(h, mask)[keep]
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


def test_self_attention_bad_inputs(attn_case):
    c, heads, w, b, mask, h = attn_case
    layer = R.SelfAttention(w, b, num_heads=heads)
    with pytest.raises(ValueError, match="attention_mask: expected shape"):
        layer(h, mask[:, :6])
    with pytest.raises(ValueError, match="attention_mask: expected only 0"):
        layer(h, mask * 2)
    with pytest.raises(TypeError, match="attention_mask"):
        layer(h, mask.astype(np.float32))
    with pytest.raises(ValueError, match="attention_mask: has 13 real tokens"):
        layer(h[0], mask)
    with pytest.raises(ValueError, match="hidden: expected"):
        layer(h[..., :5], mask)
    with pytest.raises(ValueError, match="num_heads"):
        R.SelfAttention(w, b, num_heads=5)
    with pytest.raises(ValueError, match=r"weight: expected \[3 C, C\]"):
        R.SelfAttention(w[:48], None, num_heads=3)


def test_embedding_matches_lookup_sum(rng):
    word = rng.standard_normal((50, 8)).astype(np.float32)
    pos = rng.standard_normal((10, 8)).astype(np.float32)
    typ = rng.standard_normal((2, 8)).astype(np.float32)
    ids = rng.integers(0, 50, (3, 6))
    types = rng.integers(0, 2, (3, 6)).astype(np.int32)
    got = R.Embedding(word, pos, typ)(ids, types)
    ref = word.astype(np.float64)[ids] + typ[types] + pos[:6]
    close(got, ref)


def test_embedding_bad_inputs(rng):
    e = R.Embedding(np.ones((50, 8), np.float32), np.ones((10, 8), np.float32),
                    np.ones((2, 8), np.float32))
    ids = np.zeros((2, 4), np.int64)
    with pytest.raises(TypeError, match="input_ids: expected an integer array"):
        e(ids.astype(np.float32), ids)
    with pytest.raises(ValueError, match="input_ids: expected a 2-D array"):
        e(ids[0], ids[0])
    with pytest.raises(ValueError, match="token_type_ids: expected shape"):
        e(ids, ids[:, :3])
    with pytest.raises(ValueError, match=r"input_ids: values must be in \[0, 50\)"):
        e(ids + 50, ids)
    with pytest.raises(ValueError, match=r"token_type_ids: values must be in \[0, 2\)"):
        e(ids, ids - 1)
    with pytest.raises(ValueError, match="input_ids: 11 tokens exceed the 10 positions"):
        e(np.zeros((1, 11), np.int64), np.zeros((1, 11), np.int64))
    with pytest.raises(ValueError, match="position: expected 8 columns"):
        R.Embedding(np.ones((50, 8), np.float32), np.ones((10, 7), np.float32),
                    np.ones((2, 8), np.float32))


def test_pack_unpack_and_mean_pool(rng):
    h = rng.standard_normal((3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    keep = mask.astype(bool)
    packed = R.PackTokens()(h, mask)
    np.testing.assert_array_equal(packed, h[keep])
    back = R.UnpackTokens()(packed, mask)
    np.testing.assert_array_equal(back, np.where(keep[..., None], h, 0))
    ref = (h.astype(np.float64) * mask[..., None]).sum(1) / np.maximum(mask.sum(1), 1e-9)[:, None]
    close(R.MeanPool()(h, mask), ref)
    close(R.MeanPool()(packed, mask), ref)
    assert not R.MeanPool()(packed, mask)[1].any()  # a sequence without tokens: 0
    with pytest.raises(ValueError, match="packed: expected"):
        R.UnpackTokens()(h, mask)
    with pytest.raises(ValueError, match="hidden: expected"):
        R.PackTokens()(packed, mask)


def test_add_layer_norm_and_l2_normalize(rng):
    a = rng.standard_normal((2, 3, 16)).astype(np.float32) * 3
    b = rng.standard_normal((2, 3, 16)).astype(np.float32)
    g = rng.standard_normal(16).astype(np.float32)
    beta = rng.standard_normal(16).astype(np.float32)
    x = a.astype(np.float64) + b
    mu = x.mean(-1, keepdims=True)
    ref = (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-12) * g + beta
    a0 = a.copy()
    close(R.AddLayerNorm(g, beta, 1e-12)(a, b), ref)
    np.testing.assert_array_equal(a, a0)  # inputs untouched
    with pytest.raises(ValueError, match="b: expected shape"):
        R.AddLayerNorm(g, beta)(a, b[:, :2])
    y = R.L2Normalize()(a)
    close(y, a / np.linalg.norm(a.astype(np.float64), axis=-1, keepdims=True))
    assert not R.L2Normalize()(np.zeros((1, 4), np.float32)).any()


def test_text_layers_save_load_round_trip(attn_case, tmp_path):
    c, heads, w, b, mask, h = attn_case
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 30, (3, 7))
    nodes = [
        (R.Embedding(rng.standard_normal((30, c)).astype(np.float32),
                     rng.standard_normal((9, c)).astype(np.float32),
                     rng.standard_normal((2, c)).astype(np.float32)),
         ["input_ids", "token_type_ids"], "e"),
        (R.PackTokens(), ["e", "attention_mask"], "p"),
        (R.SelfAttention(sparsekit.CSRMatrix.from_dense(np.where(np.abs(w) > 0.1, w, 0)), b,
                         heads, 0.25), ["p", "attention_mask"], "a"),
        (R.AddLayerNorm(np.ones(c, np.float32), None, 1e-6), ["a", "p"], "n"),
        (R.UnpackTokens(), ["n", "attention_mask"], "hidden"),
        (R.MeanPool(), ["n", "attention_mask"], "m"),
        (R.L2Normalize(1e-9), ["m"], "emb"),
    ]
    model = R.Model.graph(nodes, ["input_ids", "attention_mask", "token_type_ids"],
                          ["hidden", "emb"])
    feed = dict(input_ids=ids, attention_mask=mask, token_type_ids=np.zeros_like(ids))
    want = model(**feed)
    sparsekit.save(model, tmp_path / "m.spk")
    loaded = sparsekit.load(tmp_path / "m.spk")
    assert [type(n[0]).__name__ for n in loaded.nodes] == \
        [type(n[0]).__name__ for n in model.nodes]
    for g, wnt in zip(loaded(**feed), want):
        np.testing.assert_array_equal(g, wnt)
