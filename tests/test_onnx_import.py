"""sparsekit.onnx.load against onnxruntime on the same inputs.

Tolerances: fp32 graphs 1e-5 relative to the output magnitude. Quantized graphs
(QDQ / QOperator, static u8 activations) within 1 output quantization step:
the int8 kernels run on the same integers with static input quantization, so
only the final rounding of a requantized value can differ.
Dynamic int8 graphs within 3% of the output magnitude (ORT quantizes the
activations per tensor, sparsekit per row)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

import sparsekit  # noqa: E402
import sparsekit.onnx as sko  # noqa: E402
from sparsekit import runtime as R  # noqa: E402


@pytest.fixture
def int8():
    return sparsekit.QuantizedMatrix


def cnn():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(6, 8, 3, stride=1), nn.ReLU(), nn.AvgPool2d(2),
                      nn.Flatten(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10),
                      nn.Softmax(-1)).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.mul_((torch.rand_like(p) < 0.2).float())  # ~80% pruned
    return m


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)

    d = tmp_path_factory.mktemp("onnx")
    m = cnn()
    x = torch.randn(2, 1, 12, 12)
    f = str(d / "f.onnx")
    torch.onnx.export(m, x, f, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b"}}, dynamo=False)
    calib = np.random.default_rng(1).standard_normal((8, 4, 1, 12, 12)).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": c} for c in calib])

        def get_next(self):
            return next(self.it, None)

    paths = {"fp32": f}
    for fmt, name in [(QuantFormat.QDQ, "qdq"), (QuantFormat.QOperator, "qop")]:
        paths[name] = str(d / f"{name}.onnx")
        quantize_static(f, paths[name], Reader(), quant_format=fmt, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    for pc in (False, True):
        name = f"dyn{int(pc)}"
        paths[name] = str(d / f"{name}.onnx")
        quantize_dynamic(f, paths[name], weight_type=QuantType.QInt8, per_channel=pc)
    return paths


def run_ort(path, x):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]


def x_batch(n=5):
    return np.random.default_rng(2).standard_normal((n, 1, 12, 12)).astype(np.float32)


def test_fp32_pruned_matches_ort(onnx_models):
    x = x_batch()
    ref = run_ort(onnx_models["fp32"], x)
    m = sko.load(onnx_models["fp32"], min_sparsity=0.5)
    np.testing.assert_allclose(m(x), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sko.load(onnx_models["fp32"])(x), ref, rtol=1e-5, atol=1e-6)
    lin = [a for a in m.layers if isinstance(a, (R.Linear, R.Conv2d))]
    assert len(lin) == 4 and all(isinstance(a.weight, sparsekit.CSRMatrix) for a in lin)
    assert not any(isinstance(a, R.ReLU) for a in m.layers)  # fused
    # from a ModelProto and from bytes too
    proto = onnx.load(onnx_models["fp32"])
    np.testing.assert_array_equal(sko.load(proto, min_sparsity=0.5)(x), m(x))
    np.testing.assert_array_equal(sko.load(proto.SerializeToString(), min_sparsity=0.5)(x),
                                  m(x))


def _last_scale(path):
    g = onnx.load(path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    deq = [n for n in g.node if n.op_type == "DequantizeLinear" and n.output[0] == "y"]
    return float(inits[deq[0].input[1]]) if deq else None


@pytest.mark.parametrize("name", ["qdq", "qop"])
def test_static_quantized_matches_ort(onnx_models, int8, name):
    x = x_batch()
    path = onnx_models[name]
    ref = run_ort(path, x)
    m = sko.load(path, min_sparsity=1.0)  # dense int8: static input quantization
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert ("QLinearConv" in ops) == (name == "qop")
    lin = [a for a in m.layers if isinstance(a, (R.Linear, R.Conv2d))]
    assert len(lin) == 4
    assert all(isinstance(a.weight, sparsekit.QuantizedMatrix) for a in lin)
    # the int8 weights are those of the file, unchanged
    g = onnx.load(path).graph
    qw = {i.name: numpy_helper.to_array(i) for i in g.initializer if i.data_type == 3}
    conv_q = next(v for k, v in qw.items() if v.ndim == 4 and v.shape[0] == 6)
    np.testing.assert_array_equal(np.asarray(lin[0].weight.q), R.layers.conv_weight_hwc(conv_q))
    # u8 inputs run as they are (static input quantization, as in ORT)
    assert all(a.weight.input_scale is not None for a in lin)
    step = _last_scale(path)
    assert step is not None
    assert np.abs(m(x) - ref).max() <= 1.01 * step


@pytest.mark.parametrize("name", ["dyn0", "dyn1"])
def test_dynamic_quantized_matches_ort(onnx_models, int8, name):
    x = x_batch()
    ref = run_ort(onnx_models[name], x)
    m = sko.load(onnx_models[name], min_sparsity=1.0)
    ops = {n.op_type for n in onnx.load(onnx_models[name]).graph.node}
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops
    lin = [a for a in m.layers if isinstance(a, (R.Linear, R.Conv2d))]
    assert len(lin) == 4 and all(isinstance(a.weight, sparsekit.QuantizedMatrix) for a in lin)
    assert all(a.bias is not None for a in lin)  # bias adds folded
    assert np.abs(m(x) - ref).max() <= 0.03 * np.abs(ref).max()
    fp = run_ort(onnx_models["fp32"], x)
    assert np.abs(m(x) - fp).max() <= 0.03 * np.abs(fp).max()


def test_fp32_quantize_on_import(onnx_models, int8):
    x = x_batch()
    m = sko.load(onnx_models["fp32"], quantize="dynamic", min_sparsity=1.0)
    assert all(isinstance(a.weight, sparsekit.QuantizedMatrix)
               for a in m.layers if isinstance(a, (R.Linear, R.Conv2d)))
    ref = run_ort(onnx_models["fp32"], x)
    assert np.abs(m(x) - ref).max() <= 0.03 * np.abs(ref).max()


def _graph(nodes, inits, in_shape, out_shape):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     in_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_residual_matmul_layernorm_graph(rng):
    w1 = rng.standard_normal((16, 16)).astype(np.float32)
    w1[rng.random(w1.shape) < 0.8] = 0
    inits = {"w1": w1, "b1": rng.standard_normal(16).astype(np.float32),
             "g": rng.standard_normal(16).astype(np.float32),
             "be": rng.standard_normal(16).astype(np.float32),
             "s": np.float32(0.5) * np.ones(16, np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Gelu" if False else "Tanh", ["hb"], ["a"]),
             helper.make_node("Add", ["a", "x"], ["r"]),
             helper.make_node("Mul", ["r", "s"], ["rs"]),
             helper.make_node("LayerNormalization", ["rs", "g", "be"], ["y"], epsilon=1e-5)]
    model = _graph(nodes, inits, [None, 16], [None, 16])
    x = rng.standard_normal((7, 16)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    m = sko.load(model, min_sparsity=0.5)
    np.testing.assert_allclose(m(x), ref, rtol=1e-5, atol=1e-5)
    assert isinstance(m.layers[0].weight, sparsekit.CSRMatrix)
    assert m.layers[0].bias is not None


def test_unsupported_op_is_named(rng):
    # (Erf and MatMul of two tensors run since the transformer support:
    # tests/test_onnx_transformer.py)
    model = _graph([helper.make_node("Det", ["x"], ["y"], name="det0")], {}, [4, 4], [])
    with pytest.raises(ValueError, match="node 'det0': ONNX op 'Det' is not supported"):
        sko.load(model)


def test_loaded_model_saves(tmp_path, onnx_models, int8):
    x = x_batch(3)
    for name in ("fp32", "qop"):
        m = sko.load(onnx_models[name])  # whatever formats the defaults pick
        ref = run_ort(onnx_models[name], x)
        assert np.abs(m(x) - ref).max() <= 0.03 * np.abs(ref).max()
        sparsekit.save(m, tmp_path / f"{name}.spk")
        np.testing.assert_array_equal(sparsekit.load(tmp_path / f"{name}.spk")(x), m(x))


def test_unsupported_attributes_are_named(rng):
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    model = _graph([helper.make_node("Conv", ["x", "w"], ["y"], group=2)], {"w": w[:, :2]},
                   [1, 4, 5, 5], [1, 4, 3, 3])
    with pytest.raises(ValueError, match="group=2"):
        sko.load(model)
    g = rng.standard_normal((4, 4)).astype(np.float32)
    model = _graph([helper.make_node("Gemm", ["x", "w"], ["y"], transA=1)], {"w": g},
                   [4, 4], [4, 4])
    with pytest.raises(ValueError, match="transA"):
        sko.load(model)
    with pytest.raises(ValueError, match="quantize"):
        sko.load(model, quantize="int4")


def test_qlinear_matmul_graph(tmp_path, rng, int8):
    """A MatMul-based MLP quantized by ORT (QOperator) becomes QLinearMatMul."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    inits = {"w1": rng.standard_normal((24, 32)).astype(np.float32) * 0.3,
             "b1": rng.standard_normal(32).astype(np.float32) * 0.1,
             "w2": rng.standard_normal((32, 8)).astype(np.float32) * 0.3}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    f = str(tmp_path / "mm.onnx")
    onnx.save(_graph(nodes, inits, [None, 24], [None, 8]), f)
    calib = rng.standard_normal((4, 16, 24)).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": c} for c in calib])

        def get_next(self):
            return next(self.it, None)

    q = str(tmp_path / "mm_q.onnx")
    quantize_static(f, q, Reader(), quant_format=QuantFormat.QOperator, per_channel=False,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    ops = [n.op_type for n in onnx.load(q).graph.node]
    assert ops.count("QLinearMatMul") == 2
    x = rng.standard_normal((9, 24)).astype(np.float32)
    ref = ort.InferenceSession(q).run(None, {"x": x})[0]
    m = sko.load(q, min_sparsity=1.0)
    lin = [a for a in m.layers if isinstance(a, R.Linear)]
    assert len(lin) == 2 and all(a.weight.input_scale is not None for a in lin)
    step = _last_scale(q)
    assert np.abs(m(x) - ref).max() <= 1.01 * step


@pytest.mark.parametrize("opset,attrs", [(11, {}), (11, {"axis": 2}), (11, {"axis": -1}),
                                         (12, {"axis": 0}), (13, {}), (13, {"axis": 1})])
def test_softmax_axis_by_opset(rng, tmp_path, opset, attrs):
    """Before opset 13 Softmax runs over the input coerced to 2-D at `axis`
    (default 1): the axes from there on as one; from 13 over `axis` alone
    (default -1). Against ORT, and after save / load."""
    model = _graph([helper.make_node("Softmax", ["x"], ["y"], **attrs)], {},
                   [2, 3, 4], [2, 3, 4])
    model.opset_import[0].version = opset
    x = rng.standard_normal((2, 3, 4)).astype(np.float32) * 3
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    m = sko.load(model)
    np.testing.assert_allclose(m(x), ref, rtol=1e-5, atol=1e-7)
    sparsekit.save(m, tmp_path / "s.spk")
    np.testing.assert_array_equal(sparsekit.load(tmp_path / "s.spk")(x), m(x))
