"""attention_f32: softmax attention for short sequences (sk_attention_f32), on
every forced ISA, against a float64 NumPy reference.

Tolerance per output: (4 eps * scale * max_j sum_d |q_d k_jd| + 2e-6) * sum_j p_j |v_j|
+ 1e-7, eps = 2^-24: a score's float32 rounding error moves its weight p_j by
about that much relatively; the rest is the polynomial exp (~2 ulp), the
weighted sum and one division.
"""
import numpy as np
import pytest

from sparsekit import _core


def attention_ref(q, k, v, mask, scale):
    """float64: q [B, Tq, H, D], k/v [B, Tk, H, D], mask [B, Tq, Tk] or None.
    Returns (out, bound): bound is the tolerance scale of the module docstring."""
    q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
    s = np.einsum("bihd,bjhd->bhij", q, k) * scale
    if mask is not None:
        s = s + np.asarray(mask, np.float64)[:, None]
    mx = s.max(-1, keepdims=True)
    dead = ~np.isfinite(mx)  # every key masked -> out = 0
    p = np.exp(s - np.where(dead, 0, mx))
    p = np.where(dead, 0, p)
    p = p / np.where(dead, 1, p.sum(-1, keepdims=True))
    out = np.einsum("bhij,bjhd->bihd", p, v)
    sabs = np.einsum("bihd,bjhd->bihj", np.abs(q), np.abs(k)).max(-1, initial=0)[..., None]
    rel = 4 * 2.0 ** -24 * abs(scale) * sabs + 2e-6
    bound = rel * np.einsum("bhij,bjhd->bihd", p, np.abs(v))
    return out, bound


def assert_attention_close(got, ref, bound):
    assert got.dtype == np.float32
    err = np.abs(got.astype(np.float64) - ref)
    assert np.all(err <= bound + 1e-7), (err - bound).max()


@pytest.mark.parametrize("b,h,tq,tk,d", [(1, 1, 1, 1, 1), (2, 3, 5, 7, 17), (3, 2, 19, 19, 32),
                                         (1, 4, 16, 16, 16), (2, 1, 17, 33, 33),
                                         (1, 2, 40, 9, 64)])
def test_attention_matches_reference(isa, b, h, tq, tk, d):
    rng = np.random.default_rng(b * 1000 + tk * 10 + d)
    q = (rng.standard_normal((b, tq, h, d)) * 2).astype(np.float32)
    k = (rng.standard_normal((b, tk, h, d)) * 2).astype(np.float32)
    v = rng.standard_normal((b, tk, h, d)).astype(np.float32)
    mask = np.where(rng.random((b, tq, tk)) < 0.3, -np.inf, 0).astype(np.float32)
    mask[..., 0] = 0  # at least one key per query
    out = np.full((b, tq, h, d), np.nan, np.float32)
    for m in (None, mask):
        _core.attention_f32(q, k, v, m, 0.3, out)
        assert_attention_close(out, *attention_ref(q, k, v, m, 0.3))


def test_attention_strided_views_and_broadcast_mask(isa):
    """q/k/v as column slices of one fused projection (the QKV GEMM output),
    a key-padding mask broadcast over queries (stride 0), out a strided view."""
    rng = np.random.default_rng(1)
    b, t, h, d = 4, 13, 3, 8
    qkv = rng.standard_normal((b, t, 3 * h * d)).astype(np.float32)
    q, k, v = (qkv[..., i * h * d:(i + 1) * h * d].reshape(b, t, h, d) for i in range(3))
    lens = np.array([13, 1, 7, 12])
    row = np.where(np.arange(t)[None] < lens[:, None], 0, -np.inf).astype(np.float32)
    mask = np.broadcast_to(row[:, None, :], (b, t, t))
    big = np.zeros((b, t, h, 2 * d), np.float32)
    out = big[..., :d]
    _core.attention_f32(q, k, v, mask, 0.5, out)
    assert_attention_close(out, *attention_ref(q, k, v, mask, 0.5))
    assert not big[..., d:].any()  # nothing written outside the view


def test_attention_fully_masked_rows_and_extremes(isa):
    rng = np.random.default_rng(2)
    b, t, h, d = 2, 5, 1, 4
    q = rng.standard_normal((b, t, h, d)).astype(np.float32)
    q[0, 0] = 1e3  # huge scores: the softmax is one-hot, no overflow
    k, v = (rng.standard_normal((b, t, h, d)).astype(np.float32) for _ in range(2))
    mask = np.zeros((b, t, t), np.float32)
    mask[1, 2, :] = -np.inf  # a query with no key
    mask[1, 3, :] = np.finfo(np.float32).min  # HF's eager "masked" value, finite
    out = np.empty((b, t, h, d), np.float32)
    _core.attention_f32(q, k, v, mask, 1.0, out)
    assert np.all(out[1, 2] == 0)
    assert np.isfinite(out).all()
    ref, bound = attention_ref(q, k, v, np.where(mask <= -1e38, -np.inf, mask), 1.0)
    ok = np.ones(out.shape, bool)
    ok[1, 3] = False  # all keys at the same finite minimum: a uniform average
    assert_attention_close(out[ok], ref[ok], bound[ok])
    np.testing.assert_allclose(out[1, 3], v[1].mean(0), rtol=1e-5, atol=1e-6)


def test_attention_no_keys_gives_zeros(isa):
    q = np.ones((1, 3, 2, 4), np.float32)
    kv = np.ones((1, 0, 2, 4), np.float32)
    out = np.full((1, 3, 2, 4), np.nan, np.float32)
    _core.attention_f32(q, kv, kv, None, 1.0, out)
    assert np.all(out == 0)


def test_attention_packed_sequences_equal_padded(isa):
    """offsets: sequences packed without padding give exactly the padded
    batch's results on the real tokens (the kernel computes them the same way)."""
    rng = np.random.default_rng(3)
    b, t, h, d = 5, 11, 2, 16
    lens = np.array([11, 1, 6, 0, 9])
    keep = np.arange(t)[None] < lens[:, None]
    q, k, v = (rng.standard_normal((b, t, h, d)).astype(np.float32) for _ in range(3))
    mask = np.broadcast_to(np.where(keep, 0, -np.inf).astype(np.float32)[:, None], (b, t, t))
    out = np.empty((b, t, h, d), np.float32)
    _core.attention_f32(q, k, v, mask, 0.25, out)
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    n = int(offsets[-1])
    pq, pk, pv = (x[keep][None] for x in (q, k, v))
    pout = np.empty((1, n, h, d), np.float32)
    _core.attention_f32(pq, pk, pv, None, 0.25, pout, offsets)
    np.testing.assert_array_equal(pout[0], out[keep])


def test_attention_bad_arguments():
    q = np.zeros((2, 3, 1, 4), np.float32)
    out = np.zeros_like(q)
    with pytest.raises(ValueError, match="k"):
        _core.attention_f32(q, np.zeros((2, 3, 1, 5), np.float32), q, None, 1.0, out)
    with pytest.raises(ValueError, match="q"):
        _core.attention_f32(q.astype(np.float64), q, q, None, 1.0, out)
    with pytest.raises(ValueError, match="contiguous"):
        _core.attention_f32(np.zeros((2, 3, 1, 8), np.float32)[..., ::2], q, q, None, 1.0, out)
    with pytest.raises(ValueError, match="mask"):
        _core.attention_f32(q, q, q, np.zeros((2, 3, 2), np.float32), 1.0, out)
    with pytest.raises(ValueError, match="writeable"):
        ro = np.zeros_like(q)
        ro.flags.writeable = False
        _core.attention_f32(q, q, q, None, 1.0, ro)
    p = np.zeros((1, 6, 1, 4), np.float32)
    for off in ([0, 4, 2], [0, 7], [-1, 3]):
        with pytest.raises(ValueError, match="offsets"):
            _core.attention_f32(p, p, p, None, 1.0, p.copy(), np.array(off, np.int64))
    with pytest.raises(ValueError, match="offsets"):
        _core.attention_f32(p, p, p, None, 1.0, p.copy(), np.array([0, 6], np.int32))
    with pytest.raises(ValueError, match="offsets"):
        _core.attention_f32(q, q, q, None, 1.0, out, np.array([0, 3], np.int64))


# ---- add_layernorm_f32: residual add + LayerNorm in place --------------------

def layernorm_ref(y, r, g, b, eps):
    z = np.asarray(y, np.float64) + (0 if r is None else np.asarray(r, np.float64))
    z = (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + eps)
    return z * (1 if g is None else g) + (0 if b is None else b)


@pytest.mark.parametrize("m,n", [(1, 1), (3, 5), (7, 16), (2, 17), (5, 384), (4, 33)])
def test_add_layernorm_matches_reference(isa, m, n):
    """Tolerance 4e-6 * (|gamma| + 1) + 1e-6: normalised values are O(1)."""
    rng = np.random.default_rng(m * 100 + n)
    y0 = (rng.standard_normal((m, n)) * 3 + 5).astype(np.float32)
    r = rng.standard_normal((m, n)).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    for args in ((r, g, b), (None, g, b), (r, None, None)):
        y = y0.copy()
        _core.add_layernorm_f32(y, *args, 1e-5)
        ref = layernorm_ref(y0, *args, 1e-5)
        tol = 4e-6 * (np.abs(args[1]) + 1 if args[1] is not None else 2) + 1e-6
        assert np.all(np.abs(y - ref) <= tol), np.abs(y - ref).max()


def test_add_layernorm_strided_rows_and_errors(isa):
    rng = np.random.default_rng(5)
    big = rng.standard_normal((4, 40)).astype(np.float32)
    y0 = big[:, :24].copy()
    r = rng.standard_normal((4, 60)).astype(np.float32)[:, 10:34]
    _core.add_layernorm_f32(big[:, :24], r, None, None, 0.0)
    np.testing.assert_allclose(big[:, :24], layernorm_ref(y0, r, None, None, 0.0), atol=1e-5)
    y = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="r"):
        _core.add_layernorm_f32(y, np.zeros((2, 4), np.float32), None, None, 1e-5)
    with pytest.raises(ValueError, match="gamma"):
        _core.add_layernorm_f32(y, None, np.zeros(4, np.float32), None, 1e-5)
    with pytest.raises(ValueError, match="eps"):
        _core.add_layernorm_f32(y, None, None, None, -1.0)
    with pytest.raises(ValueError, match="y"):
        _core.add_layernorm_f32(y.astype(np.float64), None, None, None, 1e-5)
