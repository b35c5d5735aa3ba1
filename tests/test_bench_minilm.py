"""benchmarks/bench_minilm.py's helpers (no timing): the "(forward)" rows'
direct call returns what SentenceTransformer.encode returns, on the same
`tokenizers` ids as the runtime rows, and the speedup lines only compare rows
doing the same work."""
import importlib.util
import os
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sparsekit.datasets import SENTENCES  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "bench_minilm", os.path.join(ROOT, "benchmarks", "bench_minilm.py"))
    mod = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # the script silences warnings on import
        spec.loader.exec_module(mod)
    return mod


def test_speedup_pairs_compare_like_with_like(bench):
    f = bench.FORWARD
    names = ["torch fp32", "torch int8 (per-tensor)", "sparsekit fp32", "sparsekit int8",
             "torch fp32" + f, "sparsekit fp32" + f, "sparsekit int8" + f,
             "sparsekit runtime fp32", "sparsekit runtime int8", "ORT int8 (per-tensor)",
             "(tokenizer alone)"]
    pairs = bench.speedup_pairs(names)
    assert ("sparsekit fp32", "torch fp32") in pairs
    assert ("sparsekit fp32", "ORT int8 (per-tensor)") in pairs
    assert ("sparsekit fp32" + f, "torch fp32" + f) in pairs
    assert ("sparsekit runtime fp32", "sparsekit fp32" + f) in pairs  # the same work
    assert ("sparsekit runtime fp32", "sparsekit fp32") in pairs  # what an ST user sees
    for sk, other in pairs:
        assert sk != other and not other.startswith(("(", "sparsekit runtime"))
        if not sk.startswith("sparsekit runtime"):  # encode with encode, forward with forward
            assert sk.endswith(f) == other.endswith(f), (sk, other)
    assert not any(sk.endswith(f) for sk, _ in bench.speedup_pairs(names[:4]))


def test_token_feed_matches_hf_tokenizer(bench, minilm):
    model, _ = minilm
    tok = bench.fast_tokenizer(model)
    sentences = list(SENTENCES)
    fast = bench.token_feed(tok, sentences)
    hf = model.tokenize(sentences)
    assert set(fast) == {"input_ids", "attention_mask", "token_type_ids"}
    for k, v in fast.items():
        assert v.dtype == np.int64
        np.testing.assert_array_equal(v, hf[k].numpy())


@pytest.mark.parametrize("quantize", [None, "dynamic"])
def test_forward_encoder_returns_encode_embeddings(bench, minilm, quantize):
    model, ref = minilm
    if quantize is None:
        m = model
    else:
        import sparsekit.torch as skt
        m = skt.accelerate(model, quantize=quantize)
    tok = bench.fast_tokenizer(model)
    sentences = list(SENTENCES)[:6]
    encode = bench.forward_encoder(m, tok)
    with torch.inference_mode():
        want = m.encode(sentences, batch_size=64, convert_to_numpy=True)
    got = encode(sentences)  # one padded batch
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(encode(sentences[2:3])[0], want[2], rtol=0, atol=1e-5)
    if quantize is None:
        np.testing.assert_allclose(got, ref[:6], rtol=0, atol=1e-5)


def test_forward_encoder_puts_model_in_eval_mode(bench, minilm):
    """encode calls model.eval() on every call; the forward rows once, at setup
    (dropout would otherwise change the embeddings)."""
    import copy

    model, ref = minilm
    m = copy.deepcopy(model).train()
    encode = bench.forward_encoder(m, bench.fast_tokenizer(model))
    assert not m.training
    np.testing.assert_allclose(encode(list(SENTENCES)[:3]), ref[:3], rtol=0, atol=1e-5)
