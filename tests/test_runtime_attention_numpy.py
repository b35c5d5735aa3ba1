"""SelfAttention's NumPy path (runtime.attention_numpy, used when the C core is
not built) against the attention_f32 kernel on every ISA and against a float64
reference: padded batches with masked keys (they weigh exactly 0: changing
their keys and values changes nothing) and fully masked sequences (0), packed
sequences (each attends to its own tokens only; empty ones allowed), sequence
lengths with SIMD tails. Tolerance 1e-5 relative to the output scale. Also a
small BERT converted with to_runtime, saved, and run in a process where the C
core cannot be imported, against torch."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sparsekit import _core
from sparsekit import _native
from sparsekit import runtime as R
from sparsekit.runtime.attention_numpy import attention
from test_without_core import BLOCK_CORE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def close(got, ref, tol=1e-5):
    ref = np.asarray(ref)
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * (np.abs(ref).max(initial=0) + 1))


def ref_padded(q, k, v, keep, scale):
    s = np.einsum("bihd,bjhd->bhij", q.astype(np.float64), k.astype(np.float64)) * scale
    s = np.where(keep[:, None, None, :], s, -np.inf)
    mx = s.max(-1, keepdims=True)
    p = np.where(np.isfinite(mx), np.exp(s - np.where(np.isfinite(mx), mx, 0)), 0)
    p /= np.maximum(p.sum(-1, keepdims=True), 1e-300)
    return np.einsum("bhij,bjhd->bihd", p, v.astype(np.float64))


def qkv(rng, b, t, h, d):
    return [rng.standard_normal((b, t, h, d)).astype(np.float32) for _ in range(3)]


@pytest.mark.parametrize("t,d", [(1, 8), (7, 3), (17, 16), (33, 5)])
def test_padded_matches_kernel_and_reference(isa, rng, t, d):
    q, k, v = qkv(rng, 4, t, 3, d)
    keep = rng.random((4, t)) < 0.6
    keep[0] = True
    keep[1] = False  # a sequence without tokens: every query gets 0
    keep[2, 0] = True
    scale = 0.37
    got = attention(q, k, v, scale, keep)
    close(got, ref_padded(q, k, v, keep, scale))
    assert not got[1].any()
    add = np.where(keep, np.float32(0), np.float32(-np.inf))[:, None, :]
    want = np.empty_like(q)
    _core.attention_f32(q, k, v, np.broadcast_to(add, (4, t, t)), scale, want)
    close(got, want)
    # masked keys weigh exactly 0
    k2, v2 = k.copy(), v.copy()
    k2[~keep] = 1e3 * rng.standard_normal(k2[~keep].shape)
    v2[~keep] = 1e3 * rng.standard_normal(v2[~keep].shape)
    np.testing.assert_array_equal(attention(q, k2, v2, scale, keep), got)
    # no mask
    full = attention(q, k, v, scale)
    _core.attention_f32(q, k, v, None, scale, want)
    close(full, want)
    close(full, ref_padded(q, k, v, np.ones((4, t), bool), scale))


def test_empty_inputs():
    z = np.zeros((2, 0, 3, 4), np.float32)
    assert attention(z, z, z, 1.0, np.zeros((2, 0), bool)).shape == z.shape
    assert attention(z[:1], z[:1], z[:1], 1.0, offsets=np.zeros(3, np.int64)).shape == (1, 0, 3, 4)


@pytest.mark.parametrize("lengths", [[5, 0, 1, 17], [33], [0, 0], [2, 9, 8]])
def test_packed_matches_kernel_and_each_sequence_alone(isa, rng, lengths):
    n, h, d = sum(lengths), 2, 8
    q, k, v = qkv(rng, 1, n, h, d)
    off = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    got = attention(q, k, v, 0.5, offsets=off)
    want = np.empty_like(q)
    _core.attention_f32(q, k, v, None, 0.5, want, off)
    close(got, want)
    for lo, hi in zip(off[:-1], off[1:]):
        if hi > lo:
            alone = ref_padded(q[:, lo:hi], k[:, lo:hi], v[:, lo:hi], np.ones((1, hi - lo), bool),
                               0.5)
            close(got[:, lo:hi], alone)


def test_self_attention_without_core_matches_with_core(isa, rng, monkeypatch):
    """The layer, padded and packed, with the core forced off (the NumPy
    path) against the same layer on the kernel."""
    c, heads = 24, 4
    w = rng.standard_normal((3 * c, c)).astype(np.float32) / np.sqrt(c)
    b = rng.standard_normal(3 * c).astype(np.float32)
    layer = R.SelfAttention(w, b, heads)
    mask = np.array([[1] * 9, [1] * 4 + [0] * 5, [0] * 9, [1] + [0] * 8])
    x = rng.standard_normal((4, 9, c)).astype(np.float32)
    tm = R.PrepareMask()(mask)
    packed = R.PackTokens()(x, tm)
    want = [layer(x, tm), layer(packed, tm), layer(x[:1], mask[:1]), layer(x, mask)]
    with monkeypatch.context() as mp:
        mp.setattr(_native, "AVAILABLE", False)
        got = [layer(x, tm), layer(packed, tm), layer(x[:1], mask[:1]), layer(x, mask)]
    for g, w_ in zip(got, want):
        close(g, w_)
    assert not got[0][2].any()  # a sequence without tokens


def test_converted_bert_runs_without_the_core(tmp_path):
    """A small random BertModel converted, saved, then loaded and run where
    sparsekit._core cannot be imported: matches torch's last hidden state."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import sparsekit
    import sparsekit.torch as skt

    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=48,
                                  max_position_embeddings=24)
    bert = transformers.BertModel(cfg).eval()
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 60, (3, 11))
    mask = (np.arange(11)[None] < np.array([[11], [4], [7]])).astype(np.int64)
    with torch.inference_mode():
        want = bert(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)) \
            .last_hidden_state.numpy()
    path = tmp_path / "bert.spk"
    sparsekit.save(skt.to_runtime(bert), path)
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "mask.npy", mask)
    code = BLOCK_CORE + textwrap.dedent(f"""
        import numpy as np, sparsekit
        from sparsekit._native import AVAILABLE
        assert not AVAILABLE
        m = sparsekit.load({str(path)!r})
        ids, mask = np.load({str(tmp_path / "ids.npy")!r}), np.load({str(tmp_path / "mask.npy")!r})
        np.save({str(tmp_path / "out.npy")!r}, m(ids, mask, np.zeros_like(ids)))
    """)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    got = np.load(tmp_path / "out.npy")
    real = mask.astype(bool)
    np.testing.assert_allclose(got[real], want[real], rtol=0, atol=5e-5)
    assert not got[~real].any()
