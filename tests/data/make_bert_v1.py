"""Run once with sparsekit at commit 6f59ba7 (before PrepareMask) to make the
files of tests/data used by tests/test_runtime_token_mask.py: a tiny random
BertModel converted (drop_padding on and off) and saved with sparsekit.save,
plus the inputs and the outputs sparsekit computed then (checked against torch
here).

    PYTHONPATH=<a checkout of 6f59ba7, built> python make_bert_v1.py tests/data
"""
import sys, numpy as np, torch, transformers
import sparsekit, sparsekit.torch as skt
out = sys.argv[1]
torch.manual_seed(0)
cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=24,
                              max_position_embeddings=16)
bert = transformers.BertModel(cfg).eval()
rng = np.random.default_rng(0)
ids = rng.integers(0, 40, (3, 7))
mask = (np.arange(7)[None] < np.array([[7], [3], [5]])).astype(np.int64)
types = np.zeros_like(ids)
types[0, 4:] = 1
feed = dict(input_ids=ids, attention_mask=mask, token_type_ids=types)
with torch.inference_mode():
    want = bert(**{k: torch.from_numpy(v) for k, v in feed.items()}).last_hidden_state.numpy()
for dp in (True, False):
    rt = skt.to_runtime(bert, drop_padding=dp)
    got = rt(**feed)
    real = mask.astype(bool)
    assert np.abs(got[real] - want[real]).max() < 5e-5
    sparsekit.save(rt, f"{out}/bert_v1_{'packed' if dp else 'padded'}.spk")
    np.save(f"{out}/bert_v1_{'packed' if dp else 'padded'}_out.npy", got)
np.savez(f"{out}/bert_v1_inputs.npz", **feed)
print(rt.nodes[0], sparsekit.__file__)
