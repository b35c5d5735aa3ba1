"""Structured pruning: the shrunk model equals the masked model and has the
expected parameter count."""
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from sparsekit import compress  # noqa: E402


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 40), nn.GELU(), nn.Linear(40, 30), nn.Sigmoid(),
                         nn.Dropout(0.1), nn.Linear(30, 4))


def convnet():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                        nn.Conv2d(16, 10, 3), nn.BatchNorm2d(10), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(10 * 3 * 3, 6))
    # non-trivial BatchNorm statistics
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(16, 3, 8, 8) * 2 + 0.5)
    return net.eval()


def test_mlp_chain_shrinks_and_matches_masked():
    net = mlp().eval()
    small = compress.prune_structured(net, 0.5)
    masked = compress.prune_structured(net, 0.5, mask_only=True)
    assert [m.out_features for m in small if isinstance(m, nn.Linear)] == [20, 15, 4]
    x = torch.randn(9, 12)
    torch.testing.assert_close(small(x), masked(x), rtol=1e-5, atol=1e-6)
    assert not torch.equal(masked(x), net(x))  # something was removed
    # 12*20+20 + 20*15+15 + 15*4+4
    assert compress.count_parameters(small) == 240 + 20 + 300 + 15 + 60 + 4
    assert compress.count_parameters(net) == 12 * 40 + 40 + 40 * 30 + 30 + 30 * 4 + 4
    # the lowest-norm neurons went
    norms = net[0].weight.norm(dim=1)
    gone = masked[0].weight.norm(dim=1) == 0
    assert int(gone.sum()) == 20 and norms[gone].max() <= norms[~gone].min()


def test_conv_bn_conv_flatten_linear():
    net = convnet()
    small = compress.prune_structured(net, 0.25, criterion="l1")
    masked = compress.prune_structured(net, 0.25, criterion="l1", mask_only=True)
    assert small[0].out_channels == small[1].num_features == small[3].in_channels == 12
    assert small[3].out_channels == small[4].num_features == 8 and small[8].in_features == 72
    x = torch.randn(5, 3, 8, 8)
    torch.testing.assert_close(small(x), masked(x), rtol=1e-5, atol=1e-5)
    assert compress.count_parameters(small) < compress.count_parameters(net)
    assert net[0].out_channels == 16  # not in place by default


def test_custom_criterion_and_errors():
    net = mlp()
    # keep the neurons with the largest index: a criterion returning the index
    small = compress.prune_structured(net, 0.5, criterion=lambda w: torch.arange(w.shape[0]))
    torch.testing.assert_close(small[0].weight, net[0].weight[20:])
    with pytest.raises(ValueError, match="amount"):
        compress.prune_structured(net, 1.0)
    with pytest.raises(ValueError, match="criterion"):
        compress.prune_structured(net, 0.5, criterion="l3")
    with pytest.raises(ValueError, match="model"):
        compress.prune_structured(nn.Linear(3, 3), 0.5)


def test_deterministic_and_inplace():
    a = compress.prune_structured(mlp(), 0.3)
    b = mlp()
    out = compress.prune_structured(b, 0.3, inplace=True)
    assert out is b
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
