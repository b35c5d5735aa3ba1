"""End to end on real data, kept small: sklearn digits, a distilled student
pruned to 90% while distilling, then static int8 (fake-quant), stays close to
the fp32 student. (The full run with more epochs: benchmarks/compression_report.py.)"""
import copy

import pytest

torch = pytest.importorskip("torch")
datasets = pytest.importorskip("sklearn.datasets")
from torch import nn  # noqa: E402

from sparsekit import compress  # noqa: E402


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead
    yield
    torch.set_num_threads(before)


def test_digits_prune_distill_int8(one_thread):
    from sklearn.model_selection import train_test_split
    x, y = datasets.load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x / 16.0, y, test_size=0.2, random_state=0,
                                          stratify=y)
    xtr, xte = torch.tensor(xtr, dtype=torch.float32), torch.tensor(xte, dtype=torch.float32)
    ytr, yte = torch.tensor(ytr), torch.tensor(yte)
    g = torch.Generator().manual_seed(0)

    def epoch():
        idx = torch.randperm(len(xtr), generator=g)
        return [(xtr[idx[i:i + 64]], ytr[idx[i:i + 64]]) for i in range(0, len(xtr), 64)]

    def acc(m):
        with torch.no_grad():
            return float((m(xte).argmax(1) == yte).float().mean()) * 100

    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(teacher.parameters(), lr=3e-3)
    for _ in range(10):
        for xb, yb in epoch():
            opt.zero_grad()
            nn.functional.cross_entropy(teacher(xb), yb).backward()
            opt.step()
    student = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    for _ in range(8):
        compress.distill(teacher, student, epoch(), optimizer=opt, progress=False)
    fp32 = acc(student)
    assert fp32 > 93

    pruned = copy.deepcopy(student)
    opt = torch.optim.Adam(pruned.parameters(), lr=3e-3)
    steps = len(epoch())
    pruner = compress.GradualPruner(pruned, compress.PolynomialSchedule(0.9, 0, 10 * steps,
                                                                        frequency=steps),
                                    optimizer=opt)
    for _ in range(20):
        compress.distill(teacher, pruned, epoch(), optimizer=opt, callbacks=[pruner.step],
                         alpha=0.7, progress=False)
    pruner.remove()
    w = [m.weight for m in pruned if isinstance(m, nn.Linear)]
    assert sum(int((t == 0).sum()) for t in w) == sum(round(0.9 * t.numel()) for t in w)
    compress.calibrate(pruned, [xtr[:512]], observer="percentile", report=False)
    with compress.fake_quantize(pruned):
        int8 = acc(pruned)
    assert int8 >= fp32 - 3.0
