"""Runtime layers against PyTorch's functional ops (float32; tolerance 1e-5
relative to the output scale) and the Model executor's graph checks."""
import numpy as np
import pytest

import sparsekit
from sparsekit import runtime as R
from sparsekit.runtime.model import fuse_relu

torch = pytest.importorskip("torch")
F = torch.nn.functional


def close(got, ref, tol=1e-5):
    ref = np.asarray(ref)
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * (np.abs(ref).max() + 1))


def pruned(rng, shape, density):
    w = rng.standard_normal(shape).astype(np.float32)
    w[rng.random(shape) >= density] = 0
    return w


@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("act", [None, "relu"])
def test_linear_matches_torch(rng, fmt, act):
    w = pruned(rng, (13, 37), 0.2)
    b = rng.standard_normal(13).astype(np.float32)
    x = rng.standard_normal((2, 5, 37)).astype(np.float32)
    wf = sparsekit.CSRMatrix.from_dense(w) if fmt == "csr" else w
    y = R.Linear(wf, b, act)(x)
    ref = F.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b))
    close(y, F.relu(ref) if act else ref)


CONV_CASES = [  # (C, O, k, stride, padding, dilation, H, W)
    (1, 6, 3, 1, 1, 1, 8, 8),
    (3, 5, (3, 2), (2, 1), (1, 0), 1, 11, 9),
    (4, 7, 1, 1, 0, 1, 5, 6),       # direct 1x1 path
    (4, 3, 1, 2, 0, 1, 7, 7),       # strided 1x1 goes through im2col
    (2, 4, 3, 1, 2, 2, 9, 10),      # dilation
    (5, 8, 5, 3, 2, 1, 13, 17),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_conv2d_matches_torch(rng, case, fmt):
    c, o, k, s, p, d, h, wd = case
    kh, kw = (k, k) if isinstance(k, int) else k
    w = pruned(rng, (o, c, kh, kw), 0.3)
    b = rng.standard_normal(o).astype(np.float32)
    x = rng.standard_normal((3, c, h, wd)).astype(np.float32)
    w2 = R.layers.conv_weight_hwc(w)
    wf = sparsekit.CSRMatrix.from_dense(w2) if fmt == "csr" else w2
    layer = R.Conv2d(wf, b, in_channels=c, kernel_size=(kh, kw), stride=s, padding=p,
                     dilation=d)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), s, p, d)
    close(layer(x), ref)
    # a 4-D dense weight gives the same layer
    close(R.Conv2d(w, b, stride=s, padding=p, dilation=d)(x), ref)


def test_conv2d_asymmetric_padding(rng):
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    x = rng.standard_normal((1, 3, 6, 7)).astype(np.float32)
    y = R.Conv2d(w, padding=(0, 1, 1, 2))(x)  # top, bottom, left, right
    xp = F.pad(torch.from_numpy(x), (1, 2, 0, 1))
    close(y, F.conv2d(xp, torch.from_numpy(w)))


def test_conv2d_rejects_bad_input(rng):
    layer = R.Conv2d(rng.standard_normal((2, 3, 3, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="x"):
        layer(np.zeros((1, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match="smaller"):
        layer(np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="weight"):
        R.Conv2d(np.zeros((2, 10), np.float32), in_channels=3, kernel_size=3)


def test_conv_output_is_nhwc_memory_and_chains(rng):
    """Conv2d returns an NCHW view of NHWC memory; the next layers read it as is."""
    w1 = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((5, 4, 1, 1)).astype(np.float32)
    x = rng.standard_normal((2, 2, 7, 6)).astype(np.float32)
    h = R.Conv2d(w1, padding=1)(x)
    assert h.shape == (2, 4, 7, 6) and h.transpose(0, 2, 3, 1).flags.c_contiguous
    y = R.MaxPool2d(2)(R.Conv2d(w2)(h))
    t = F.max_pool2d(F.conv2d(F.conv2d(torch.from_numpy(x), torch.from_numpy(w1), padding=1),
                              torch.from_numpy(w2)), 2)
    close(y, t)
    close(R.Flatten()(y), t.flatten(1))


@pytest.mark.parametrize("pool,tref", [(R.MaxPool2d, F.max_pool2d), (R.AvgPool2d, F.avg_pool2d)])
def test_pools_match_torch(rng, pool, tref):
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    for k, s, p in [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 0))]:
        y = pool(k, s, p)(x)
        close(y, tref(torch.from_numpy(x), k, s, p))
    close(R.GlobalAvgPool2d()(x), x.mean(axis=(2, 3), keepdims=True))


def test_elementwise_match_torch(rng):
    x = (3 * rng.standard_normal((4, 33))).astype(np.float32)
    t = torch.from_numpy(x)
    close(R.ReLU()(x), F.relu(t))
    close(R.GELU()(x), F.gelu(t), tol=2e-6)
    close(R.GELU("tanh")(x), F.gelu(t, approximate="tanh"), tol=2e-6)
    close(R.Sigmoid()(x), torch.sigmoid(t))
    close(R.Tanh()(x), torch.tanh(t))
    close(R.Softmax(-1)(x), F.softmax(t, -1))
    close(R.Softmax(0)(x), F.softmax(t, 0))
    g = rng.standard_normal(33).astype(np.float32)
    b = rng.standard_normal(33).astype(np.float32)
    close(R.LayerNorm(g, b, 1e-12)(x), F.layer_norm(t, (33,), torch.from_numpy(g),
                                                    torch.from_numpy(b), 1e-12))
    close(R.Flatten()(x.reshape(4, 3, 11)), x)
    close(R.Transpose([1, 0])(x), x.T)
    close(R.Reshape([0, 3, -1])(x), x.reshape(4, 3, 11))


def test_fake_quantize_grid():
    fq = R.FakeQuantize(0.1, 3)
    y = fq(np.array([-1.0, -0.3, 0.0, 0.04, 0.26, 100.0], np.float32))
    np.testing.assert_allclose(y, [-0.3, -0.3, 0.0, 0.0, 0.3, 25.2], atol=1e-6)
    with pytest.raises(ValueError, match="scale"):
        R.FakeQuantize(0.0)
    with pytest.raises(ValueError, match="zero_point"):
        R.FakeQuantize(1.0, 300)


def test_model_sequential_and_residual(rng):
    w1 = pruned(rng, (16, 16), 0.1)
    w2 = rng.standard_normal((4, 16)).astype(np.float32)
    x = rng.standard_normal((5, 16)).astype(np.float32)
    lin = R.Linear(sparsekit.CSRMatrix.from_dense(w1))
    m = R.Model.graph([(lin, ["x"], "h"), (R.ReLU(), ["h"], "r"), (R.Add(), ["r", "x"], "s"),
                       (R.Linear(w2), ["s"], "y")], inputs=["x"], outputs=["y", "h"])
    y, h = m(x)
    ref_h = x @ w1.T
    close(h, ref_h)
    close(y, (np.maximum(ref_h, 0) + x) @ w2.T)
    close(m(x=x)[0], y)
    seq = R.Model([R.Linear(w1), R.ReLU(), R.Linear(w2)])
    close(seq(x), np.maximum(x @ w1.T, 0) @ w2.T)
    assert "Linear" in seq.summary()


def test_model_follows_nodes_changed_after_a_call(rng):
    """Which tensors a call lets go of (after their last use) is worked out
    once; a node replaced, an input list edited in place or other outputs
    afterwards are followed, not run with the old plan."""
    x = rng.standard_normal((3, 4)).astype(np.float32)
    m = R.Model.graph([(R.ReLU(), ["x"], "a"), (R.Tanh(), ["a"], "b"), (R.Sigmoid(), ["b"], "y")],
                      inputs=["x"], outputs=["y"])
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    close(m(x), sig(np.tanh(np.maximum(x, 0))))
    m.nodes[2] = (R.Add(), ["b", "a"], "y")  # "a" is now read after "b" is made
    close(m(x), np.tanh(np.maximum(x, 0)) + np.maximum(x, 0))
    m.nodes[1][1][0] = "x"  # in place: b = tanh(x)
    close(m(x), np.tanh(x) + np.maximum(x, 0))
    m.outputs = ["y", "b"]
    y, b = m(x)
    close(b, np.tanh(x))


def test_model_rejects_bad_graphs(rng):
    with pytest.raises(ValueError, match="not produced"):
        R.Model.graph([(R.ReLU(), ["nope"], "y")], inputs=["x"], outputs=["y"])
    with pytest.raises(ValueError, match="takes 2"):
        R.Model.graph([(R.Add(), ["x"], "y")], inputs=["x"], outputs=["y"])
    with pytest.raises(TypeError, match="nodes"):
        R.Model.graph([(np.maximum, ["x"], "y")], inputs=["x"], outputs=["y"])
    with pytest.raises(ValueError, match="outputs"):
        R.Model.graph([(R.ReLU(), ["x"], "y")], inputs=["x"], outputs=["z"])
    m = R.Model([R.ReLU()])
    with pytest.raises(ValueError, match="input"):
        m(np.zeros(3, np.float32), np.zeros(3, np.float32))


def test_fuse_relu_keeps_original_layers(rng):
    w = rng.standard_normal((3, 4)).astype(np.float32)
    lin = R.Linear(w)
    fused = fuse_relu([lin, R.ReLU(), R.ReLU()])
    assert len(fused) == 2 and fused[0].activation == "relu" and lin.activation is None
    x = rng.standard_normal((2, 4)).astype(np.float32)
    close(R.Model(fused)(x), np.maximum(x @ w.T, 0))


def test_linear_rejects_bad_weights():
    with pytest.raises(TypeError, match="weight"):
        R.Linear("w")
    with pytest.raises(ValueError, match="bias"):
        R.Linear(np.zeros((3, 4), np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="activation"):
        R.Linear(np.zeros((3, 4), np.float32), activation="tanh")


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(c=st.integers(1, 5), o=st.integers(1, 6), kh=st.integers(1, 4), kw=st.integers(1, 4),
       sh=st.integers(1, 3), sw=st.integers(1, 3), ph=st.integers(0, 2), pw=st.integers(0, 2),
       dh=st.integers(1, 2), extra_h=st.integers(0, 5), extra_w=st.integers(0, 5),
       density=st.sampled_from([0.0, 0.3, 1.0]), seed=st.integers(0, 2**31))
def test_conv2d_property_vs_torch(c, o, kh, kw, sh, sw, ph, pw, dh, extra_h, extra_w,
                                  density, seed):
    """Random geometries (tails, 1x1, strides, dilation, all-zero / dense weights)."""
    rng = np.random.default_rng(seed)
    h = (kh - 1) * dh + 1 + extra_h
    wd = kw + extra_w
    w = pruned(rng, (o, c, kh, kw), density)
    b = rng.standard_normal(o).astype(np.float32)
    x = rng.standard_normal((2, c, h, wd)).astype(np.float32)
    w2 = R.layers.conv_weight_hwc(w)
    for wf in (w2, sparsekit.CSRMatrix.from_dense(w2)):
        layer = R.Conv2d(wf, b, in_channels=c, kernel_size=(kh, kw), stride=(sh, sw),
                         padding=(ph, pw), dilation=(dh, 1))
        ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                       (sh, sw), (ph, pw), (dh, 1))
        close(layer(x), ref)


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 4), s=st.integers(1, 3), p=st.integers(0, 2), extra=st.integers(0, 6),
       seed=st.integers(0, 2**31))
def test_pools_property_vs_torch(k, s, p, extra, seed):
    p = min(p, k // 2)  # torch's limit: padding <= kernel / 2
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, k + extra, k + extra + 1)).astype(np.float32)
    t = torch.from_numpy(x)
    close(R.MaxPool2d(k, s, p)(x), F.max_pool2d(t, k, s, p))
    close(R.AvgPool2d(k, s, p)(x), F.avg_pool2d(t, k, s, p))
