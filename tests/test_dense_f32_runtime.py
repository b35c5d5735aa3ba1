"""Dense fp32 Linear weights in the torch-free runtimes are held packed for the
gemm_f32 kernel (PackedDenseMatrix) exactly where `_dense_f32.wanted()` says
it beats NumPy, and as ndarrays elsewhere: torch.to_runtime (nn.Sequential,
BERT), keras.convert; reports say "dense fp32"; sparsekit.save / load keep
the choice. Results change only by float summation order: tolerance
1e-5 x (sum |x w| + 1) per Linear for one layer (conftest.assert_close_f32),
1e-4 absolute for whole models with O(1) activations."""
import os

import numpy as np
import pytest

import sparsekit
from sparsekit._dense_f32 import PackedDenseMatrix, wanted
from sparsekit._native import AVAILABLE
from sparsekit.runtime import weights as W

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import sparsekit.torch as skt  # noqa: E402

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="needs the compiled C core")


def weights_of(rt):
    """Every Linear-like weight of a runtime model, in node order."""
    return [n[0].weight for n in rt.nodes if hasattr(n[0], "weight")
            and hasattr(n[0].weight, "shape") and len(n[0].weight.shape) == 2]


@pytest.fixture(params=["auto", "scalar"])
def isa_choice(request):
    before = sparsekit.get_isa()
    sparsekit.set_isa(request.param)
    yield request.param
    sparsekit.set_isa(before)


def test_sequential_dense_weights(isa_choice, rng, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 48), nn.ReLU(), nn.Linear(48, 33), nn.GELU(),
                          nn.Linear(33, 5)).eval()
    rt = skt.to_runtime(model)
    ws = weights_of(rt)
    assert len(ws) == 3
    want = PackedDenseMatrix if wanted() else np.ndarray
    assert all(type(w) is want for w in ws)
    assert [r["chosen"] for r in rt.conversion_report] == ["dense fp32"] * 3
    assert all(("packed once" in r["reason"]) == wanted() for r in rt.conversion_report)
    x = rng.standard_normal((7, 20)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = rt(x)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
    path = str(tmp_path / "seq.spk")
    sparsekit.save(rt, path)
    back = sparsekit.load(path)
    assert [type(w) for w in weights_of(back)] == [want] * 3
    np.testing.assert_array_equal(back(x), got)


def test_bert_dense_weights(isa_choice):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=16)).eval()
    rt = skt.to_runtime(bert, outputs=["last_hidden_state", "pooler_output"])
    ws = weights_of(rt)
    assert len(ws) == 2 * 4 + 1  # per layer: q+k+v, attention output, up, down; pooler
    want = PackedDenseMatrix if wanted() else np.ndarray
    assert all(type(w) is want for w in ws), [type(w) for w in ws]
    assert {r["chosen"] for r in rt.conversion_report} == {"dense fp32"}
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 60, (3, 9))
    mask = np.ones((3, 9), np.int64)
    mask[1, 6:] = 0
    with torch.no_grad():
        out = bert(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    hidden, pooled = rt(input_ids=ids, attention_mask=mask)
    real = mask.astype(bool)
    np.testing.assert_allclose(hidden[real], out.last_hidden_state.numpy()[real], rtol=0,
                               atol=1e-4)
    np.testing.assert_allclose(pooled, out.pooler_output.numpy(), rtol=0, atol=1e-4)


def test_keras_dense_weights(isa_choice, rng):
    os.environ.setdefault("KERAS_BACKEND", "torch")  # as test_keras_convert.py
    keras = pytest.importorskip("keras")
    import sparsekit.keras as skk

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((12,)), keras.layers.Dense(40, activation="relu"),
                          keras.layers.Dense(7)])
    rt = skk.convert(m)
    ws = weights_of(rt)
    want = PackedDenseMatrix if wanted() else np.ndarray
    assert len(ws) == 2 and all(type(w) is want for w in ws)
    assert all(W.describe(w) == "dense fp32" for w in ws)
    x = rng.standard_normal((5, 12)).astype(np.float32)
    ref = keras.ops.convert_to_numpy(m(x))
    np.testing.assert_allclose(rt(x), ref, rtol=0, atol=1e-4)
