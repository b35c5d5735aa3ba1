"""Wanda and SparseGPT on small models: patterns honoured, lower output error
than magnitude, the report's error equals a direct measurement, the
sequential capture sees pruned predecessors, and the error without torch."""
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from sparsekit import compress  # noqa: E402


def correlated_inputs(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(k, k, generator=g) / k ** 0.5
    scales = torch.logspace(-1, 1, k)[torch.randperm(k, generator=g)]  # uneven columns
    return (torch.randn(n, k, generator=g) @ mix + 0.3 * torch.randn(n, k, generator=g)) * scales


def out_error(w0, w1, x):
    return float(((x @ (w0 - w1).T) ** 2).sum() / ((x @ w0.T) ** 2).sum())


@pytest.mark.parametrize("pattern,sparsity", [("unstructured", 0.5), ("unstructured", 0.8),
                                              ("2:4", None), ("1x4", 0.5)])
def test_calibrated_methods_beat_magnitude(pattern, sparsity):
    torch.manual_seed(0)
    base = nn.Linear(32, 24)
    data = correlated_inputs(768, 32, 1)  # one distribution: calibration + held out
    x, held = data[:512], data[512:]
    calib = [x[:256], x[256:]]
    errs, w0 = {}, base.weight.detach().clone()
    for method in ("magnitude", "wanda", "sparsegpt"):
        layer = nn.Linear(32, 24)
        layer.load_state_dict(base.state_dict())
        model = nn.Sequential(layer)
        rep = compress.prune(model, sparsity, method=method, pattern=pattern,
                             calibration=None if method == "magnitude" else calib)
        w = layer.weight.detach()
        if pattern == "2:4":
            assert torch.all((w != 0).reshape(24, -1, 4).sum(-1) == 2)
        if pattern == "1x4":
            blocks = (w != 0).reshape(24, -1, 4)
            assert torch.all(blocks.all(-1) | ~blocks.any(-1))
        assert abs(rep.sparsity - (sparsity or 0.5)) < 0.02
        errs[method] = out_error(w0, w, held)
        if method != "magnitude":  # the report's error is the calibration error
            assert rep[0]["error"] == pytest.approx(out_error(w0, w, x), rel=1e-4)
    assert errs["wanda"] < errs["magnitude"]
    assert errs["sparsegpt"] < errs["wanda"]


def test_wanda_keeps_per_row_sparsity():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 7))
    compress.prune(model, 0.6, method="wanda", calibration=[correlated_inputs(64, 20, 0)])
    assert torch.all((model[0].weight == 0).sum(1) == 12)


def test_conv_report_error_matches_direct_measurement():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, padding=1, stride=2)
    x = torch.randn(6, 3, 9, 9)
    w0 = conv.weight.detach().clone()
    with torch.no_grad():
        y0 = conv(x)
    rep = compress.prune(nn.Sequential(conv), 0.5, method="sparsegpt", calibration=[x])
    with torch.no_grad():
        y1 = conv(x)
        signal = y0 - conv.bias.reshape(1, -1, 1, 1)
    direct = float(((y0 - y1) ** 2).sum() / (signal ** 2).sum())
    assert rep[0]["error"] == pytest.approx(direct, rel=1e-4)
    assert int((conv.weight == 0).sum()) == w0.numel() // 2


class Shared(nn.Module):
    """q, k, v read the same tensor; out reads their sum; head reads out."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.q, self.k, self.v = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.out, self.head = nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.head(torch.relu(self.out(self.q(x) + self.k(x) * self.v(x))))


def test_sequential_groups_and_pruned_inputs():
    from sparsekit.compress.calibrated import _probe
    model = Shared()
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    x = torch.randn(32, 16)
    groups, counts = _probe(model, layers, x)
    assert groups == [["q", "k", "v"], ["out"], ["head"]]
    # `head` is calibrated on the output of the pruned `out`: its report error
    # equals the error measured on inputs from the pruned model
    seen = {}
    model.head.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0].detach()))
    w_head = model.head.weight.detach().clone()
    rep = compress.prune(model, 0.5, method="sparsegpt", calibration=[x])
    model(x)  # inputs of head now come from the pruned layers
    assert rep[-1]["layer"] == "head"
    assert rep[-1]["error"] == pytest.approx(out_error(w_head, model.head.weight.detach(),
                                                       seen["x"]), rel=1e-4)


def test_dict_batches_and_kwargs():
    class Kw(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, inputs, scale=1.0):
            return self.fc(inputs) * scale

    model = Kw()
    batches = [{"inputs": torch.randn(4, 8), "scale": 2.0} for _ in range(2)]
    rep = compress.prune(model, 0.5, method="wanda", calibration=batches)
    assert rep[0]["nnz"] == 32


class Tokens(nn.Module):
    """A toy encoder: embeddings -> Linear -> ReLU -> Linear, called with
    input_ids and attention_mask like a Hugging Face model. The padding
    token's embedding is huge, so statistics that include padded positions
    differ visibly from those that do not."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(12, 16)
        with torch.no_grad():
            self.emb.weight[0] = 50.0  # id 0 = padding
        self.up, self.down = nn.Linear(16, 24), nn.Linear(24, 16)

    def forward(self, input_ids, attention_mask):
        h = self.down(torch.relu(self.up(self.emb(input_ids))))
        return h * attention_mask.unsqueeze(-1)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_padded_positions_are_left_out(method):
    torch.manual_seed(0)
    base = Tokens()
    g = torch.Generator().manual_seed(3)
    seqs = [torch.randint(1, 12, (n,), generator=g) for n in (9, 4, 6, 2)]
    ids = torch.zeros(len(seqs), 9, dtype=torch.long)
    mask = torch.zeros(len(seqs), 9, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)], mask[i, :len(s)] = s, 1
    padded = [{"input_ids": ids, "attention_mask": mask}]
    unpadded = [{"input_ids": s[None], "attention_mask": torch.ones(1, len(s), dtype=torch.long)}
                for s in seqs]
    ignored = [{"input_ids": ids, "attention_mask": torch.ones_like(mask)}]  # pads as data
    weights = {}
    for name, calib in (("padded", padded), ("unpadded", unpadded), ("ignored", ignored)):
        model = Tokens()
        model.load_state_dict(base.state_dict())
        compress.prune(model, 0.5, method=method, calibration=calib)
        weights[name] = [model.up.weight.detach().clone(), model.down.weight.detach().clone()]
    for a, b in zip(weights["padded"], weights["unpadded"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # the padding token would change the masks if it counted
    assert any(not torch.equal(a != 0, b != 0)
               for a, b in zip(weights["padded"], weights["ignored"]))


def test_sparsegpt_shrink_generalises_from_few_samples():
    # 80 calibration rows for 64 inputs: the plain reconstruction fits the
    # sample's noise; shrinking H towards its diagonal does better held out
    from sparsekit.compress.calibrated import relative_error, sparsegpt_weights
    torch.manual_seed(0)
    w = torch.randn(48, 64, dtype=torch.float64)
    data = correlated_inputs(1080, 64, 0).double()
    x, held = data[:80], data[80:]
    h, h_held = x.T @ x / len(x), held.T @ held / len(held)
    errs = [relative_error(w, sparsegpt_weights(w, h, 0.5, ("unstructured",), shrink=s), h_held)
            for s in (0.0, 0.3)]
    assert errs[1] < 0.9 * errs[0]
    # a huge shrink leaves only the diagonal: the result of SparseGPT on diag(H)
    big = sparsegpt_weights(w, h, 0.5, ("unstructured",), shrink=1e9)
    diag = sparsegpt_weights(w, torch.diag(torch.diagonal(h)), 0.5, ("unstructured",))
    torch.testing.assert_close(big, diag, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="shrink"):
        sparsegpt_weights(w, h, 0.5, ("unstructured",), shrink=-1.0)
    with pytest.raises(ValueError, match="shrink"):
        compress.prune(nn.Sequential(nn.Linear(4, 4)), 0.5, method="sparsegpt",
                       calibration=[torch.randn(8, 4)], shrink=float("nan"))


def test_dense_target_is_the_least_squares_map():
    from sparsekit.compress.calibrated import dense_target
    g = torch.Generator().manual_seed(0)
    xp = torch.randn(200, 10, generator=g, dtype=torch.float64)
    xd = xp + 0.3 * torch.randn(200, 10, generator=g, dtype=torch.float64)
    w = torch.randn(6, 10, generator=g, dtype=torch.float64)
    gap = (xd - xp) @ w.T  # dense minus pruned outputs
    got = dense_target(w, xp.T @ xp / 200, xp.T @ gap / 200, shrink=0.0, percdamp=0.0)
    want = torch.linalg.lstsq(xp, xd @ w.T).solution.T
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    # same inputs in both models: nothing to correct
    h = xp.T @ xp / 200
    torch.testing.assert_close(dense_target(w, h, torch.zeros(10, 6, dtype=h.dtype),
                                            shrink=0.3), w)


def test_sparsegpt_dense_target_pairs_tokens_of_both_models():
    # the second layer is fitted from the pruned first layer's outputs to the
    # dense model's outputs: redo it by hand from the two models' activations
    from sparsekit.compress.calibrated import dense_target, sparsegpt_weights
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(12, 20), nn.Tanh(), nn.Linear(20, 6))
    x = correlated_inputs(300, 12, 2)
    calib = [x[:150], x[150:]]
    model = nn.Sequential(nn.Linear(12, 20), nn.Tanh(), nn.Linear(20, 6))
    model.load_state_dict(base.state_dict())
    compress.prune(model, 0.5, method="sparsegpt", calibration=calib, target="dense",
                   shrink=0.2)
    first = nn.Sequential(nn.Linear(12, 20), nn.Tanh())
    first.load_state_dict(base[:2].state_dict())
    reference = sparsegpt_weights(first[0].weight.detach().double(), _h(x), 0.5,
                                  ("unstructured",), shrink=0.2)
    torch.testing.assert_close(model[0].weight.detach().double(), reference,
                               rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        xd = base[1](base[0](x)).double()
        xp = model[1](model[0](x)).double()
    w2 = base[2].weight.detach().double()
    h, g = xp.T @ xp / len(x), xp.T @ ((xd - xp) @ w2.T) / len(x)
    w2 = dense_target(w2, h, g, shrink=0.2)
    want = sparsegpt_weights(w2, h, 0.5, ("unstructured",), shrink=0.2)
    torch.testing.assert_close(model[2].weight.detach().double(), want, rtol=1e-4, atol=1e-5)
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="target"):
        compress.prune(model, 0.5, method="wanda", calibration=[torch.randn(8, 4)],
                       target="dense")
    with pytest.raises(ValueError, match="target"):
        compress.prune(model, 0.5, method="sparsegpt", calibration=[torch.randn(8, 4)],
                       target="teacher")


def _h(x):
    x = x.double()
    return x.T @ x / len(x)


def test_import_without_torch_names_the_extra():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import sparsekit, sparsekit.datasets\n"
            "try:\n    import sparsekit.compress\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert 'pip install "sparsekit[torch]"' in out
