"""kd_loss against a hand computation; distill() trains, is seeded, and
combines with pruning."""
import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from sparsekit import compress  # noqa: E402


def test_kd_loss_hand_computed():
    s = torch.tensor([[1.0, 2.0, 0.5]])
    t = torch.tensor([[0.2, 2.5, 1.0]])
    y = torch.tensor([1])
    T, a = 2.0, 0.7

    def softmax(v):
        e = [math.exp(x / T) for x in v]
        return [x / sum(e) for x in e]
    ps, pt = softmax(s[0].tolist()), softmax(t[0].tolist())
    kl = sum(p * math.log(p / q) for p, q in zip(pt, ps))
    e = [math.exp(x) for x in s[0].tolist()]
    ce = -math.log(e[1] / sum(e))
    want = a * T * T * kl + (1 - a) * ce
    assert float(compress.kd_loss(s, t, y, T, a)) == pytest.approx(want, rel=1e-6)
    assert float(compress.kd_loss(s, t, None, T, a)) == pytest.approx(T * T * kl, rel=1e-6)
    assert float(compress.kd_loss(t, t, None, T)) == pytest.approx(0.0, abs=1e-7)


def test_kd_loss_batch_mean_and_errors():
    torch.manual_seed(0)
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    whole = compress.kd_loss(s, t, temperature=3.0)
    rows = sum(compress.kd_loss(s[i:i + 1], t[i:i + 1], temperature=3.0) for i in range(4)) / 4
    assert float(whole) == pytest.approx(float(rows), rel=1e-5)
    with pytest.raises(ValueError, match="teacher_logits"):
        compress.kd_loss(s, t[:, :3])
    with pytest.raises(ValueError, match="temperature"):
        compress.kd_loss(s, t, temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        compress.kd_loss(s, t, alpha=1.5)


def toy_data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return [(x[i:i + 32], y[i:i + 32]) for i in range(0, n, 32)]


def nets(seed=0):
    torch.manual_seed(seed)
    teacher = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 3))
    student = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    return teacher, student


def test_distill_reduces_loss_and_is_seeded():
    data = toy_data()
    results = []
    for _ in range(2):
        teacher, student = nets()
        hist = compress.distill(teacher, student, data, epochs=4, lr=1e-2, progress=False,
                                seed=1)
        results.append((hist, [p.detach().clone() for p in student.parameters()]))
    hist = results[0][0]
    assert hist[-1] < hist[0]
    assert results[0][0] == results[1][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


def test_distill_with_gradual_pruning_keeps_masks(capsys):
    teacher, student = nets()
    data = toy_data()
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    pruner = compress.GradualPruner(student, compress.PolynomialSchedule(0.75, 0, 16, frequency=4),
                                    optimizer=opt)
    compress.distill(teacher, student, data, epochs=3, optimizer=opt, callbacks=[pruner.step],
                     progress=True)
    pruner.remove()
    w = student[0].weight
    assert int((w == 0).sum()) == round(0.75 * w.numel())
    assert "distill" in capsys.readouterr().err  # the tqdm bar


def test_distill_checks_arguments():
    teacher, student = nets()
    with pytest.raises(TypeError, match="teacher"):
        compress.distill("t", student, [])
    with pytest.raises(ValueError, match="epochs"):
        compress.distill(teacher, student, [], epochs=-1)
    for bad in (0, 1.5, True):  # zero epochs would silently train nothing
        with pytest.raises(ValueError, match="epochs"):
            compress.distill(teacher, student, [], epochs=bad)
    with pytest.raises(ValueError, match="lr"):
        compress.distill(teacher, student, [], lr=0)
    with pytest.raises(ValueError, match="temperature"):
        compress.distill(teacher, student, [], temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        compress.distill(teacher, student, [], alpha=1.5)
