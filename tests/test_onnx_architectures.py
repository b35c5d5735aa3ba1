"""sparsekit.onnx.load on small Hugging Face encoders / decoders of other
architectures, exported with torch.onnx.export: RoBERTa and MPNet (position ids
from CumSum), BERT fed only input_ids (token type ids through GatherElements),
GPT-2 (a causal mask from Trilu), DistilBERT; fp32 against ONNX Runtime on the
same file. And the three ops on their own, every attribute combination."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import sparsekit.onnx as sko  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

T = transformers
COMMON = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)
MODELS = {
    "bert": lambda: T.BertModel(T.BertConfig(vocab_size=50, max_position_embeddings=24,
                                             **COMMON)),
    "roberta": lambda: T.RobertaModel(T.RobertaConfig(vocab_size=50, max_position_embeddings=40,
                                                      pad_token_id=1, **COMMON)),
    "mpnet": lambda: T.MPNetModel(T.MPNetConfig(vocab_size=50, max_position_embeddings=40,
                                                **COMMON)),
    "distilbert": lambda: T.DistilBertModel(T.DistilBertConfig(
        vocab_size=50, dim=32, n_layers=2, n_heads=4, hidden_dim=48, max_position_embeddings=24)),
    "gpt2": lambda: T.GPT2Model(T.GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4,
                                             n_positions=24)),
}


def _export(name, inputs, path):
    torch.manual_seed(0)
    model = MODELS[name]().eval()

    class Hidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            return self.model(**dict(zip(inputs, args))).last_hidden_state

    ids = torch.randint(3, 50, (2, 7))
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's tracer warnings
        torch.onnx.export(Hidden().eval(), tuple(example[k] for k in inputs), str(path),
                          input_names=inputs, output_names=["hidden"],
                          dynamic_axes={k: {0: "b", 1: "t"} for k in inputs + ["hidden"]},
                          dynamo=False, opset_version=17)
    return str(path)


@pytest.mark.parametrize("name,inputs", [
    ("bert", ["input_ids"]), ("roberta", ["input_ids", "attention_mask"]),
    ("mpnet", ["input_ids"]), ("distilbert", ["input_ids", "attention_mask"]),
    ("gpt2", ["input_ids"])])
def test_exported_architecture_matches_ort(tmp_path, name, inputs):
    path = _export(name, inputs, tmp_path / f"{name}.onnx")
    m = sko.load(path)
    assert len(m.report) >= 8  # the projections run as sparsekit weights
    rng = np.random.default_rng(1)
    for batch, t in [(1, 5), (3, 11)]:  # not the export's (2, 7)
        ids = rng.integers(3, 50, (batch, t))
        mask = np.ones((batch, t), np.int64)
        mask[-1, t - 2:] = 0
        feed = {"input_ids": ids, "attention_mask": mask}
        feed = {k: feed[k] for k in inputs}
        want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feed)[0]
        got = m(**feed)
        keep = mask.astype(bool) if "attention_mask" in inputs else np.ones_like(mask, bool)
        # fp32 throughout: float rounding only (observed < 1e-6 on LayerNorm-scale outputs)
        np.testing.assert_allclose(got[keep], want[keep], rtol=0, atol=1e-5)


def _ort_and_ours(node, x, extra=(), out_type=None):
    """(sparsekit's output, ONNX Runtime's) for a one-node graph on x."""
    xt = helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(x.dtype), None)
    yt = helper.make_tensor_value_info("y", out_type or xt.type.tensor_type.elem_type, None)
    g = helper.make_graph([node], "g", [xt], [yt],
                          [numpy_helper.from_array(v, k) for k, v in extra])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return sko.load(model)(x), want


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float32])
def test_cumsum_matches_ort(axis, exclusive, reverse, dtype):
    x = np.random.default_rng(0).integers(-5, 9, (3, 5)).astype(dtype)
    node = helper.make_node("CumSum", ["x", "ax"], ["y"], exclusive=exclusive, reverse=reverse)
    got, want = _ort_and_ours(node, x, [("ax", np.array(axis, np.int64))])
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_cumsum_axis_out_of_range_is_named():
    node = helper.make_node("CumSum", ["x", "ax"], ["y"])
    xt = helper.make_tensor_value_info("x", TensorProto.INT64, None)
    g = helper.make_graph([node], "g", [xt], [helper.make_tensor_value_info("y", TensorProto.INT64,
                                                                             None)],
                          [numpy_helper.from_array(np.array(2, np.int64), "ax")])
    m = sko.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    with pytest.raises(ValueError, match="CumSum: axis 2 out of range"):
        m(np.ones((2, 3), np.int64))


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, -2, 0, 1, 9])
def test_trilu_matches_ort(upper, k):
    x = np.random.default_rng(0).standard_normal((2, 4, 6)).astype(np.float32)
    node = helper.make_node("Trilu", ["x"] + ([] if k is None else ["k"]), ["y"], upper=upper)
    got, want = _ort_and_ours(node, x, [] if k is None else [("k", np.array(k, np.int64))])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements_matches_ort(axis):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    shape = [3, 4]
    shape[axis] = 5
    idx = rng.integers(-x.shape[axis], x.shape[axis], shape)  # negative indices count from the end
    node = helper.make_node("GatherElements", ["x", "i"], ["y"], axis=axis)
    got, want = _ort_and_ours(node, x, [("i", idx)])
    np.testing.assert_array_equal(got, want)
