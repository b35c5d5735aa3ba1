"""Static int8 chains: quantized_linear(..., activation="gelu", out_scale=...,
out_zero_point=...) and the BERT runtime's FFN that hands the down-projection
the up-projection's u8 output (sparsekit.runtime.int8_chain).

All comparisons are exact. The NumPy reference follows the C epilogue's
float32 order: float32(acc) * (x_scale * w_scale), + bias, GELU by the C
kernel sk_gelu_f32 (as the other int8 GELU tests: the kernel's own accuracy
is tested in test_gelu.py), then rint(y / out_scale) + out_zero_point clamped
to [0, 255], all in float32 (quantize_rows' static math).
"""
import numpy as np
import pytest

import sparsekit
from sparsekit import _core
from sparsekit.quant_ops import int8_matmul, quantize_rows, quantized_linear
from sparsekit.runtime import int8_chain, layers as L
from sparsekit.runtime.int8_chain import U8Activations, without_chains

if not hasattr(sparsekit, "SparseInt8Matrix"):
    pytest.skip("this build has no int8 kernels", allow_module_level=True)


def _reference(xq, x_scale, x_zp, qw, bias, out_scale, out_zp):
    acc = int8_matmul(xq, x_zp, qw).astype(np.float32)
    xs = np.broadcast_to(np.asarray(x_scale, np.float32), (xq.shape[0],))
    ws = np.broadcast_to(qw.scale.astype(np.float32).reshape(-1), (qw.shape[0],))
    y = acc * (xs[:, None] * ws[None, :])
    if bias is not None:
        y = y + bias
    y = np.ascontiguousarray(y, dtype=np.float32)
    _core.gelu_f32(y)
    r = np.rint(y / np.float32(out_scale)) + np.float32(out_zp)
    return np.clip(r, 0, 255).astype(np.uint8)


def _case(rng, m, n, k, per_row):
    q = rng.integers(-127, 128, (n, k)).astype(np.int8)
    q[0, :] = 127  # extremes in one row
    qw = sparsekit.QuantizedMatrix.from_int8(q, rng.uniform(0.5, 1.5, n).astype(np.float32))
    xq = rng.integers(0, 256, (m, k)).astype(np.uint8)
    xq[0, :] = 255
    if per_row:
        xs = (rng.uniform(0.5, 1.5, m) / (64 * k)).astype(np.float32)
        xz = rng.integers(0, 256, m).astype(np.int32)
    else:
        xs, xz = 1.0 / (64 * k), int(rng.integers(0, 256))
    bias = rng.uniform(-2, 2, n).astype(np.float32)
    return xq, xs, xz, qw, bias


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (1, 100, 131), (5, 17, 7), (9, 65, 64),
                                   (33, 300, 200)])
def test_gelu_u8_out_equals_reference_and_unfused(isa, m, n, k):
    rng = np.random.default_rng(m * 1000 + n + k)
    for per_row, with_bias in ((False, True), (True, False)):
        xq, xs, xz, qw, bias = _case(rng, m, n, k, per_row)
        b = bias if with_bias else None
        os, oz = 0.03, 11
        got = quantized_linear(xq, xs, xz, qw, b, "gelu", os, oz)
        assert got.dtype == np.uint8 and got.shape == (m, n)
        np.testing.assert_array_equal(got, _reference(xq, xs, xz, qw, b, os, oz))
        # the unfused chain: fp32 GELU output, then the next layer's quantization
        y = quantized_linear(xq, xs, xz, qw, b, "gelu")
        np.testing.assert_array_equal(got, quantize_rows(y, os, oz)[0])
        inside = np.count_nonzero((got > 0) & (got < 255))
        assert m * n < 20 or inside > got.size // 4  # the curve, not only the clamps


def test_gelu_u8_leading_axes_and_sparse_weight(isa):
    """[B, T, K] input keeps its leading axes; a SparseInt8Matrix with the same
    q and scales gives the same bytes (its epilogue runs in NumPy)."""
    rng = np.random.default_rng(3)
    xq, xs, xz, qw, bias = _case(rng, 12, 40, 24, False)
    q = qw.q.copy()
    q[rng.random(q.shape) < 0.7] = 0
    dense = sparsekit.QuantizedMatrix.from_int8(q, qw.scale)
    sparse = sparsekit.SparseInt8Matrix.from_int8(q, qw.scale)
    want = quantized_linear(xq, xs, xz, dense, bias, "gelu", 0.02, 40)
    got3 = quantized_linear(xq.reshape(3, 4, 24), xs, xz, dense, bias, "gelu", 0.02, 40)
    np.testing.assert_array_equal(got3.reshape(12, 40), want)
    np.testing.assert_array_equal(quantized_linear(xq, xs, xz, sparse, bias, "gelu", 0.02, 40),
                                  want)
    np.testing.assert_array_equal(want, _reference(xq, xs, xz, dense, bias, 0.02, 40))


def test_linear_out_quant_checks():
    qw = sparsekit.QuantizedMatrix.from_float(np.eye(4, dtype=np.float32))
    with pytest.raises(TypeError, match="out_quant"):
        L.Linear(np.eye(4, dtype=np.float32), out_quant=(0.1, 3))
    with pytest.raises(ValueError, match="out_quant"):
        L.Linear(qw, out_quant=0.1)
    with pytest.raises(ValueError, match="out_zero_point"):
        L.Linear(qw, out_quant=(0.1, 300))
    with pytest.raises(ValueError, match="out_scale"):
        L.Linear(qw, out_quant=(0.0, 3))
    lin = L.Linear(qw.with_static_input(0.05, 7), activation="gelu", out_quant=(0.1, 3))
    with pytest.raises(ValueError, match="x: expected last dimension 4"):
        lin(np.ones((2, 5), np.float32))


@pytest.fixture
def always_chain(monkeypatch):
    """Chains at any size (by default only large outputs are u8)."""
    monkeypatch.setattr(int8_chain, "CHAIN_MIN_BYTES", 0)


def test_linear_chain_layers(isa, always_chain):
    """Linear(out_quant) -> Linear on u8: the same numbers as the fp32 chain
    (static and dynamic up-projection input, dense and sparse down weight,
    [B, T, C] input); a float weight takes U8Activations as their values."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 9, 24)).astype(np.float32)
    w1 = rng.standard_normal((40, 24)).astype(np.float32) * 0.3
    w2 = rng.standard_normal((16, 40)).astype(np.float32) * 0.3
    w2[rng.random(w2.shape) < 0.8] = 0
    b1, b2 = rng.standard_normal(40).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    os, oz = 0.015, 9
    for in_static in (True, False):
        up_w = sparsekit.QuantizedMatrix.from_float(w1)
        if in_static:
            up_w = up_w.with_static_input(0.02, 128)
        for fmt in (sparsekit.QuantizedMatrix, sparsekit.SparseInt8Matrix):
            down_w = fmt.from_float(w2).with_static_input(os, oz)
            up = L.Linear(up_w, b1, "gelu")
            down = L.Linear(down_w, b2)
            chained_up = L.Linear(up_w, b1, "gelu", out_quant=(os, oz))
            h = chained_up(x)
            assert type(h) is U8Activations and h.shape == (2, 9, 40)
            assert (h.scale, h.zero_point) == (np.float32(os), oz)
            y32 = up(x)
            np.testing.assert_array_equal(h.q, quantize_rows(y32, os, oz)[0])
            np.testing.assert_array_equal(down(h), down(y32))
    dense = L.Linear(w2, b2)
    values = (h.q.astype(np.float32) - np.float32(oz)) * np.float32(os)
    np.testing.assert_array_equal(dense(h), dense(values))


def test_chain_only_for_large_outputs():
    """Below CHAIN_MIN_BYTES of fp32 output a Linear with out_quant returns
    fp32 (the chain does not pay there), from it u8; the down-projection's
    result is the same either way."""
    rng = np.random.default_rng(4)
    n = 1024
    rows = int8_chain.CHAIN_MIN_BYTES // (4 * n)
    w1 = sparsekit.QuantizedMatrix.from_float(rng.standard_normal((n, 8)).astype(np.float32))
    w1 = w1.with_static_input(0.05, 100)
    w2 = sparsekit.QuantizedMatrix.from_float(rng.standard_normal((8, n)).astype(np.float32))
    w2 = w2.with_static_input(0.02, 3)
    up = L.Linear(w1, None, "gelu", out_quant=(0.02, 3))
    down = L.Linear(w2)
    for m, kind in ((rows - 1, np.ndarray), (rows, U8Activations)):
        x = rng.standard_normal((m, 8)).astype(np.float32)
        h = up(x)
        assert type(h) is kind
        np.testing.assert_array_equal(down(h), down(L.Linear(w1, None, "gelu")(x)))


torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _tiny_calibrated_bert():
    from sparsekit import compress

    torch.manual_seed(1)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=80,
                                  max_position_embeddings=20, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    bert = transformers.BertModel(cfg).eval()
    rng = np.random.default_rng(2)

    def feed(b):
        ids = rng.integers(1, 50, (b, 10))
        lens = rng.integers(2, 11, b)
        lens[0] = 10
        mask = (np.arange(10)[None] < lens[:, None]).astype(np.int64)
        return {"input_ids": ids * mask, "attention_mask": mask}

    batches = [{k: torch.from_numpy(v) for k, v in feed(6).items()} for _ in range(2)]
    compress.calibrate(bert, batches, report=False)
    return bert, feed(5)


@pytest.fixture(scope="module")
def static_bert():
    """(runtime model of a tiny calibrated BertModel, feed), converted with
    the default ISA (the format choice depends on it; the tests then run the
    model on every ISA)."""
    import sparsekit.torch as skt

    bert, feed = _tiny_calibrated_bert()
    m = skt.to_runtime(bert, quantize="static", outputs=["last_hidden_state", "pooler_output"])
    up = next(r for r in m.conversion_report if r["name"].endswith("0.intermediate.dense"))
    if up["chosen"] != "dense int8":
        pytest.skip(f"the FFN runs {up['chosen']} on this CPU, not dense int8")
    return m, feed


def test_static_bert_runtime_chains_ffn_bit_for_bit(isa, static_bert, always_chain, tmp_path):
    m, feed = static_bert
    ups = [l for l in m.layers if isinstance(l, L.Linear) and l.out_quant is not None]
    assert len(ups) == 2  # one FFN per encoder layer
    assert type(ups[0](np.zeros((3, ups[0].in_features), np.float32))) is U8Activations
    downs = {n[1][0]: n[0] for n in m.nodes}
    for layer, ins, out in m.nodes:
        if layer in ups:
            w = downs[out].weight  # the node reading the up-projection
            assert layer.out_quant == (w.input_scale, w.input_zero_point)
    rows = [r for r in m.conversion_report if "u8 chain" in r["reason"]]
    assert len(rows) == 4
    got, ref = m(**feed), without_chains(m)(**feed)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
    path = tmp_path / "bert.sk"
    sparsekit.save(m, path)
    back = sparsekit.load(path)
    assert [l.out_quant for l in back.layers if isinstance(l, L.Linear) and l.out_quant] == \
        [l.out_quant for l in ups]
    for a, b in zip(back(**feed), got):
        np.testing.assert_array_equal(a, b)


def test_bert_runtime_without_static_has_no_chain():
    import sparsekit.torch as skt

    bert, feed = _tiny_calibrated_bert()
    for q in (None, "dynamic"):
        m = skt.to_runtime(bert, quantize=q)
        assert not any(getattr(l, "out_quant", None) for l in m.layers)
