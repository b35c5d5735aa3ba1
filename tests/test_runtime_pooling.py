"""Runtime pools over a sequence's tokens (MeanPool, MaxPool, ClsPool, Concat)
against plain NumPy references, padded and packed, with the raw mask and a
TokenMask, sequences without tokens and masks that do not start with a token
(cls pooling: position 0, left padding refused when packed);
Model's optional inputs; save / load of both."""
import numpy as np
import pytest

import sparsekit
from sparsekit import runtime as R

MASK = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1],
                 [0, 0, 1, 1, 0, 0]])
RIGHT = np.array([[1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]])


def refs(h, mask):
    keep = mask.astype(bool)
    mx = np.full((len(h), h.shape[2]), -np.inf, np.float32)
    for b in range(len(h)):
        if keep[b].any():
            mx[b] = h[b][keep[b]].max(0)
    return mx, h[:, 0].copy()


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("checked", [False, True])
def test_max_and_cls_pool_match_reference(rng, packed, checked):
    h = rng.standard_normal((4, 6, 5)).astype(np.float32)
    mx, cls = refs(h, MASK)
    mask = R.PrepareMask()(MASK) if checked else MASK
    x = R.PackTokens()(h, mask) if packed else h
    np.testing.assert_array_equal(R.MaxPool()(x, mask), mx)
    assert np.isneginf(R.MaxPool()(x, mask)[1]).all()
    if packed:  # rows 1 and 3 start with padding: position 0 has no packed row
        with pytest.raises(ValueError, match="attention_mask: sequence 1 starts with padding"):
            R.ClsPool()(x, mask)
    else:
        np.testing.assert_array_equal(R.ClsPool()(x, mask), cls)


@pytest.mark.parametrize("checked", [False, True])
def test_cls_pool_is_position_zero_padded_and_packed(rng, checked):
    h = rng.standard_normal((3, 6, 5)).astype(np.float32)
    mask = R.PrepareMask()(RIGHT) if checked else RIGHT
    np.testing.assert_array_equal(R.ClsPool()(h, mask), h[:, 0])
    np.testing.assert_array_equal(R.ClsPool()(R.PackTokens()(h, mask), mask), h[:, 0])


def test_pools_of_empty_and_single_token_batches():
    h = np.zeros((2, 0, 3), np.float32)
    m = np.zeros((2, 0), np.int64)
    assert np.isneginf(R.MaxPool()(h, m)).all() and R.MaxPool()(h, m).shape == (2, 3)
    assert not R.ClsPool()(h, m).any() and R.ClsPool()(h, m).shape == (2, 3)
    one = np.arange(3, dtype=np.float32).reshape(1, 1, 3)
    for pool in (R.MaxPool(), R.ClsPool(), R.MeanPool()):
        np.testing.assert_array_equal(pool(one, np.ones((1, 1), np.int64)), one[0])
        np.testing.assert_array_equal(pool(one[0], np.ones((1, 1), np.int64)), one[0])


def test_concat_and_bad_inputs(rng):
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((3, 2)).astype(np.float32)
    np.testing.assert_array_equal(R.Concat()(a, b), np.hstack([a, b]))
    with pytest.raises(ValueError, match=r"b: expected leading shape \(3,\)"):
        R.Concat()(a, b[:2])
    h = rng.standard_normal((4, 6, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="attention_mask: expected only 0"):
        R.MaxPool()(h, MASK * 2)
    with pytest.raises(ValueError, match=r"attention_mask: expected shape \(4, 5\)"):
        R.ClsPool()(h[:, :5], R.PrepareMask()(MASK))


def test_optional_inputs_and_save_load(rng, tmp_path):
    c = 4
    emb = R.Embedding(rng.standard_normal((9, c)).astype(np.float32),
                      rng.standard_normal((6, c)).astype(np.float32),
                      rng.standard_normal((2, c)).astype(np.float32))
    nodes = [(R.PrepareMask(), ["attention_mask"], "m"),
             (emb, ["input_ids", "token_type_ids"], "e"),
             (R.PackTokens(), ["e", "m"], "p"),
             (R.MaxPool(), ["p", "m"], "max"), (R.ClsPool(), ["p", "m"], "cls"),
             (R.Concat(), ["cls", "max"], "out")]
    inputs = ["input_ids", "attention_mask", "token_type_ids"]
    model = R.Model.graph(nodes, inputs, ["out"], optional=["token_type_ids"])
    ids = rng.integers(0, 9, RIGHT.shape)
    e = emb(ids, np.zeros_like(ids))
    mx, cls = refs(e, RIGHT)
    want = np.hstack([cls, mx])
    np.testing.assert_array_equal(model(ids, RIGHT), want)
    np.testing.assert_array_equal(model(ids, RIGHT, np.zeros_like(ids)), want)
    ones = model(ids, RIGHT, np.ones_like(ids))
    assert not np.array_equal(ones, want)
    sparsekit.save(model, tmp_path / "m.spk")
    loaded = sparsekit.load(tmp_path / "m.spk")
    assert loaded.optional_inputs == ["token_type_ids"]
    np.testing.assert_array_equal(loaded(input_ids=ids, attention_mask=RIGHT), want)
    np.testing.assert_array_equal(loaded(ids, RIGHT, np.ones_like(ids)), ones)
    with pytest.raises(ValueError, match=r"missing \['attention_mask'\] \(optional: "):
        loaded(input_ids=ids)
    with pytest.raises(ValueError, match="optional: 'mask' is not one of the inputs"):
        R.Model.graph(nodes, inputs, ["out"], optional=["mask"])
    # without optional inputs the file has no optional_inputs entry (as before)
    plain = R.Model.graph(nodes, inputs, ["out"])
    sparsekit.save(plain, tmp_path / "p.spk")
    assert b"optional_inputs" not in (tmp_path / "p.spk").read_bytes()
    with pytest.raises(ValueError, match=r"missing \['token_type_ids'\]$"):
        sparsekit.load(tmp_path / "p.spk")(ids, RIGHT)
