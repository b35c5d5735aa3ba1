"""Non-uniform sparsity allocation (pinned dict, OWL) with exact totals, the
residual-aware dense target and bias correction of one-shot pruning."""
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from sparsekit import compress  # noqa: E402
from sparsekit.compress.allocation import exact_counts  # noqa: E402


class Block(nn.Module):
    """A residual block with a LayerNorm after the sum, like BERT's."""

    def __init__(self, d=6, k=12):
        super().__init__()
        self.up, self.dense, self.norm = nn.Linear(d, k), nn.Linear(k, d), nn.LayerNorm(d)

    def forward(self, x):
        return self.norm(self.dense(torch.tanh(self.up(x))) + x)


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 6), Block(), nn.Linear(6, 5))


def data(n=300, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g) @ torch.randn(6, 6, generator=g)


def zeros(model):
    return {n: int((m.weight == 0).sum()) for n, m in model.named_modules()
            if isinstance(m, nn.Linear)}


def test_exact_counts_hit_the_total():
    assert exact_counts([0.5, 0.5], [3, 5], 4) == [2, 2]  # 1.5 + 2.5: ties by order
    assert sum(exact_counts([0.3, 0.7, 0.55], [101, 37, 64], 100)) == 100
    assert exact_counts([0.0, 0.9], [10, 10], 9) == [0, 9]


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_pinned_allocation_is_exact_and_deterministic(method):
    x = data()
    calib = None if method == "magnitude" else [x[:150], x[150:]]
    table = {"1.up": 0.25, "2": 0.8}
    runs = []
    for _ in range(2):
        model = net()
        rep = compress.prune(model, 0.6, method=method, calibration=calib, allocation=table)
        runs.append([m.weight.detach().clone() for m in model.modules()
                     if isinstance(m, nn.Linear)])
        z = zeros(model)
        total = 36 + 72 + 72 + 30
        assert sum(z.values()) == round(0.6 * total)
        assert rep.sparsity == pytest.approx(round(0.6 * total) / total)
        assert z["1.up"] == 18 and z["2"] == 24  # pinned: 0.25 * 72, 0.8 * 30
        # the rest share the remainder: 126 - 42 = 84 over 36 + 72 weights
        assert z["0"] + z["1.dense"] == 84
        assert abs(z["0"] / 36 - z["1.dense"] / 72) <= 1 / 36
        by_layer = {r["layer"]: r["sparsity"] for r in rep}
        assert by_layer["2"] == pytest.approx(0.8)
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_allocation_rejects_bad_values():
    x = [data()]
    bad = [({"allocation": "sensitive"}, ValueError, "allocation"),
           ({"allocation": {"nothing*": 0.5}}, ValueError, "matches no"),
           ({"allocation": {"1.up": 1.0}}, ValueError, "allocation"),
           ({"allocation": {"1.*": 0.0}}, ValueError, "outside"),  # rest would need > 1
           ({"allocation": {0: 0.5}}, TypeError, "allocation"),
           ({"allocation": {"1.up": 0.5}, "pattern": "2:4", "sparsity": None}, ValueError,
            "unstructured"),
           ({"allocation": "owl", "method": "magnitude", "calibration": None}, ValueError,
            "owl"),
           ({"allocation": "owl", "owl_lambda": 1.5}, ValueError, "owl_lambda"),
           ({"allocation": "owl", "owl_m": 0}, ValueError, "owl_m"),
           ({"owl_m": 3.0}, TypeError, "owl_m")]
    for kwargs, exc, match in bad:
        args = {"sparsity": 0.6, "method": "sparsegpt", "calibration": x, **kwargs}
        with pytest.raises(exc, match=match):
            compress.prune(net(), args.pop("sparsity"), **args)


class TwoBranches(nn.Module):
    """`a` sees a few huge input features (Wanda-score outliers), `b` does not."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(16, 8), nn.Linear(16, 8)
        scale = torch.ones(16)
        scale[:2] = 30.0
        self.register_buffer("scale", scale)

    def forward(self, x):
        return self.a(x * self.scale) + self.b(x)


def test_owl_keeps_more_of_the_layer_with_outliers():
    torch.manual_seed(0)
    model = TwoBranches()
    calib = [torch.randn(64, 16)]
    rep = compress.prune(model, 0.5, method="wanda", calibration=calib, allocation="owl",
                         owl_lambda=0.1)
    s = {r["layer"]: r["sparsity"] for r in rep}
    # 0.4 and 0.6 of 128 weights, rounded to whole weights
    assert s["a"] == pytest.approx(0.4, abs=1 / 128) and s["b"] == pytest.approx(0.6, abs=1 / 128)
    assert sum(zeros(model).values()) == 128


def _fit(xp, target, intercept):
    if intercept:
        xp = torch.cat([xp, torch.ones(len(xp), 1, dtype=xp.dtype)], 1)
    return torch.linalg.lstsq(xp, target).solution.T


@pytest.mark.parametrize("bias", ["keep", "correct"])
def test_residual_target_fits_the_dense_residual_sum(bias):
    # prune everything but Block.dense, which is then only refitted: its
    # weights must be the least-squares map from its inputs in the pruned
    # model to (dense model's LayerNorm input) - (pruned model's residual)
    x = data().double()
    dense = net().double()
    model = net().double()
    compress.prune(model, 0.3, method="sparsegpt", calibration=[x], target="dense",
                   residual={"*.dense": "norm"}, bias=bias, allocation={"1.dense": 0.0},
                   percdamp=0.0, skip=("2",))
    with torch.no_grad():
        r_d = dense[0](x)
        z_d = dense[1].dense(torch.tanh(dense[1].up(r_d))) + r_d
        r_p = model[0](x)
        x_p = torch.tanh(model[1].up(r_p))
        b0 = dense[1].dense.bias
        layer = model[1].dense
        if bias == "keep":
            want = _fit(x_p, z_d - r_p - b0, False)
            torch.testing.assert_close(layer.weight, want, rtol=1e-6, atol=1e-8)
            torch.testing.assert_close(layer.bias, b0)
        else:
            want = _fit(x_p, z_d - r_p, True)
            torch.testing.assert_close(layer.weight, want[:, :-1], rtol=1e-6, atol=1e-8)
            torch.testing.assert_close(layer.bias, want[:, -1], rtol=1e-6, atol=1e-8)
            # the pruned model's residual sum has the dense one's mean
            torch.testing.assert_close((layer(x_p) + r_p).mean(0), z_d.mean(0))


def test_bias_correction_matches_the_mean_output():
    torch.manual_seed(0)
    layer = nn.Linear(10, 4, bias=False)
    dense = nn.Linear(10, 4, bias=False)
    dense.load_state_dict(layer.state_dict())
    x = torch.randn(200, 10) + 3.0  # inputs with a large mean
    compress.prune(nn.Sequential(layer), 0.5, method="wanda", calibration=[x], bias="correct")
    assert layer.bias is not None  # created to hold the correction
    with torch.no_grad():
        torch.testing.assert_close(layer(x).mean(0), dense(x).mean(0), rtol=1e-4, atol=1e-4)
    assert int((layer.weight == 0).sum()) == 20


def test_residual_and_bias_reject_bad_values():
    x = [data()]
    bad = [({"residual": {"*.dense": "norm"}}, ValueError, "target"),
           ({"residual": {"*.dense": "nothing"}, "target": "dense"}, ValueError, "residual"),
           ({"residual": ["norm"], "target": "dense"}, TypeError, "residual"),
           ({"residual": {"1.up": "norm"}, "target": "dense"}, ValueError, "residual"),
           ({"bias": "zero"}, ValueError, "bias")]
    for kwargs, exc, match in bad:
        with pytest.raises(exc, match=match):
            compress.prune(net(), 0.5, method="sparsegpt", calibration=x, **kwargs)


def test_wanda_rows_share_a_fractional_count():
    # 7 rows x 5 inputs at 50 %: 17.5 -> 18 weights in all, rows of 2 or 3
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7))
    compress.prune(model, 0.5, method="wanda", calibration=[torch.randn(32, 5)])
    per_row = (model[0].weight == 0).sum(1)
    assert int(per_row.sum()) == 18 and set(per_row.tolist()) <= {2, 3}


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_global_scope_for_calibrated_methods(method):
    torch.manual_seed(0)
    model = TwoBranches()
    calib = [torch.randn(64, 16)]
    rep = compress.prune(model, 0.5, method=method, calibration=calib, scope="global")
    assert sum(zeros(model).values()) == 128  # exactly half of both layers
    s = {r["layer"]: r["sparsity"] for r in rep}
    if method == "wanda":  # a's scores are 30x larger on two inputs: a keeps more
        assert s["a"] < s["b"]
    torch.manual_seed(0)  # same seed, same model, same result
    fresh = TwoBranches()
    compress.prune(fresh, 0.5, method=method, calibration=calib, scope="global")
    assert torch.equal(fresh.a.weight, model.a.weight)
    with pytest.raises(ValueError, match="unstructured"):
        compress.prune(TwoBranches(), None, method=method, calibration=calib, scope="global",
                       pattern="2:4")


def test_conv_dense_target_with_bias_correction():
    # rows of a convolution's output pair with its im2col input rows: the
    # corrected bias gives every output channel its dense mean
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3))
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3))
    model.load_state_dict(dense.state_dict())
    x = torch.randn(6, 3, 9, 9) + 0.5
    compress.prune(model, 0.5, method="sparsegpt", calibration=[x], target="dense",
                   bias="correct")
    with torch.no_grad():
        for depth in (1, 3):  # after each convolution
            got, want = model[:depth](x), dense[:depth](x)
            torch.testing.assert_close(got.mean((0, 2, 3)), want.mean((0, 2, 3)),
                                       rtol=1e-4, atol=1e-4)
    removed = int((model[0].weight == 0).sum() + (model[2].weight == 0).sum())
    assert removed == 8 * 27 // 2 + 4 * 72 // 2
