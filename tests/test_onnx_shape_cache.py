"""The ONNX importer's shape cache (sparsekit.convert.onnx_shapes ->
runtime.ShapeFunction): a BERT export's shape arithmetic runs once per
distinct tuple of input shapes and gives exactly what the uncached graph
gives, across changing shapes, after save / load, from several threads; a
graph whose shape code has float64 constants saves."""
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import sparsekit  # noqa: E402
import sparsekit.convert.onnx as onnx_import  # noqa: E402
import sparsekit.onnx as sko  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sparsekit.runtime.array_ops import ArrayOp  # noqa: E402
from sparsekit.runtime.shape_function import CACHE_BYTES, ShapeFunction  # noqa: E402
from test_onnx_transformer import _export, _feed, _ort, _quantize_dynamic  # noqa: E402

# (batch, tokens) in an order that revisits shapes and changes one axis at a time
SHAPES = [(1, 5), (1, 9), (3, 9), (3, 5), (1, 5), (2, 19), (2, 4), (1, 9), (3, 9)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("shapecache")
    out = {"fp32": _export(d / "bert.onnx")}
    out["int8"] = _quantize_dynamic(out["fp32"], d / "bert_int8.onnx")
    return out


def _uncached(path, monkeypatch):
    """The importer's graph without the shape pass (every node on every call)."""
    with monkeypatch.context() as mp:
        mp.setattr(onnx_import, "cache_shapes", lambda nodes, outputs, by_value=(): list(nodes))
        return sko.load(path)


def _shape_functions(m):
    return [a for a in m.layers if isinstance(a, ShapeFunction)]


@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_identical_to_uncached_graph(files, kind, monkeypatch):
    m, ref = sko.load(files[kind]), _uncached(files[kind], monkeypatch)
    assert not _shape_functions(ref)
    fns = _shape_functions(m)
    assert fns and not any(isinstance(a, ArrayOp) and a.op in ("Shape", "Concat", "Unsqueeze")
                           for a in m.layers)
    assert len(m.nodes) < 0.6 * len(ref.nodes)  # tiny BERT: 160 -> 77 nodes
    feeds = [_feed(b, t, seed=i) for i, (b, t) in enumerate(SHAPES)]
    for feed in feeds:
        got = m(**feed)
        np.testing.assert_array_equal(got, ref(**feed), err_msg=kind)
        if kind == "fp32":
            np.testing.assert_allclose(got, _ort(files[kind], feed), rtol=0, atol=1e-5)
    # (the attention mask and token types are cached by value: test_mask_cached_by_value)
    assert all(0 < len(f._cache) <= len(set(SHAPES)) for f in fns if not f.by_value)
    # every shape seen: the shape code does not run again (new data, same shapes)
    compute = ShapeFunction.compute
    with monkeypatch.context() as mp:
        mp.setattr(ShapeFunction, "compute", lambda self, *a: compute(self, *a)
                   if self.by_value else pytest.fail("cache miss"))
        for i, feed in enumerate(feeds):
            feed = _feed(*feed["input_ids"].shape, seed=100 + i)
            np.testing.assert_array_equal(m(**feed), ref(**feed), err_msg=kind)


def test_layers_share_one_function_per_program(files, monkeypatch):
    """Every layer computes its Reshape targets with the same ops from another
    tensor of the same shape: one ShapeFunction (one cache) serves them all,
    so a new input shape runs each distinct program once per call."""
    m = sko.load(files["int8"])
    fns = _shape_functions(m)
    distinct = {id(f): f for f in fns}
    assert len(distinct) < len(fns)
    calls = []
    compute = ShapeFunction.compute
    with monkeypatch.context() as mp:
        mp.setattr(ShapeFunction, "compute", lambda self, *xs: calls.append(1) or
                   compute(self, *xs))
        feed = _feed(2, 13, seed=3)
        got = m(**feed)
    assert len(calls) == len(distinct)  # one run per program, not per node
    np.testing.assert_array_equal(got, _uncached(files["int8"], monkeypatch)(**feed))


@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_mask_cached_by_value(files, kind, monkeypatch):
    """The export's attention mask (from attention_mask's values) and token
    type embeddings are ShapeFunctions keyed by those values too: the same
    mask is computed once, another mask (same shape) again, and the values are
    what the uncached graph gives. The word embeddings, a lookup of token ids
    in a big table, are not cached (onnx_shapes.LOOKUP_MAX)."""
    m, ref = sko.load(files[kind]), _uncached(files[kind], monkeypatch)
    valued = [f for f in _shape_functions(m) if f.by_value]
    assert len(valued) == 2
    assert any(isinstance(a, ArrayOp) and a.op == "Gather" and a.consts and
               max(v.size for v in a.consts.values()) > 1024 for a in m.layers)
    runs = []
    compute = ShapeFunction.compute
    with monkeypatch.context() as mp:
        mp.setattr(ShapeFunction, "compute", lambda self, *a: runs.append(self.by_value)
                   or compute(self, *a))
        base = _feed(3, 9, seed=1)
        other = {k: v.copy() for k, v in base.items()}
        other["attention_mask"][1, 4:] = 0  # another padding, same shapes
        other["token_type_ids"][0] = 1
        for feed, misses in ((base, 10), (dict(base, input_ids=other["input_ids"]), 0),
                             (other, 2), (base, 0), (other, 0)):
            del runs[:]
            got = m(**feed)
            np.testing.assert_array_equal(got, ref(**feed))
            if misses == 10:  # first call: every program runs
                assert len(runs) >= 2 and sum(bool(r) for r in runs) == 2
            else:
                assert len(runs) == misses and all(runs)


def test_by_value_inputs_join_the_key():
    add = ArrayOp("Add", {}, ["x", "x"])
    fn = ShapeFunction([(ArrayOp("Shape"), [1]), (ArrayOp("Cast", {"to": "int64"}), [0]),
                        (ArrayOp("ReduceSum", {"keepdims": 0}, ["x"]), [3]), (add, [2, 4])], 2,
                       by_value=[0])
    assert fn.config()["by_value"] == [0]
    for m, x, want in [([1, 1, 0], np.zeros((2, 5)), [4, 7]),
                       ([1, 1, 1], np.zeros((2, 5)), [5, 8]),
                       ([1, 1, 0], np.ones((2, 5)), [4, 7]),
                       ([1, 1, 0], np.zeros((3, 5)), [5, 7])]:
        np.testing.assert_array_equal(fn(np.array(m, np.int64), x), want)
    assert len(fn._cache) == 3  # the third call hits the first's entry: x read by shape
    with pytest.raises(ValueError, match="by_value: expected input indices"):
        ShapeFunction([(ArrayOp("Shape"), [0])], 1, by_value=[1])
    with pytest.raises(ValueError, match="reads input 0"):
        ShapeFunction([(ArrayOp("Neg"), [0])], 1, by_value=[])


def test_same_batch_other_length_is_not_stale(files, monkeypatch):
    """The key must hold every axis of every shape read: same batch, another
    sequence length (and the reverse) must not reuse the first call's shapes."""
    m, ref = sko.load(files["fp32"]), _uncached(files["fp32"], monkeypatch)
    for b, t in [(2, 6), (2, 11), (2, 6), (5, 6), (2, 6)]:
        feed = _feed(b, t, seed=b * t)
        got = m(**feed)
        assert got.shape == (b, t, 32)
        np.testing.assert_array_equal(got, ref(**feed))


def test_key_is_every_input_shape():
    concat = ArrayOp("Concat", {"axis": 0}, ["x", "x"])
    fn = ShapeFunction([(ArrayOp("Shape"), [0]), (ArrayOp("Shape"), [1]), (concat, [2, 3])], 2)
    for a, b in [((2, 5), (3,)), ((2, 7), (3,)), ((2, 7), (4,)), ((2, 5), (3,))]:
        np.testing.assert_array_equal(fn(np.zeros(a), np.zeros(b)), a + b)
    assert len(fn._cache) == 3
    # the cached value is shared by later calls: read-only
    with pytest.raises(ValueError, match="read-only"):
        fn(np.zeros((2, 5)), np.zeros(3))[0] = 9


def test_cache_is_bounded():
    fn = ShapeFunction([(ArrayOp("Shape"), [0])], 1, cache_size=2)
    for n in [1, 2, 3, 1, 4, 2]:
        np.testing.assert_array_equal(fn(np.zeros(n)), [n])
        assert len(fn._cache) <= 2
    # in bytes too: float32 zeros of the input's shape, 1 MiB each
    zeros = ShapeFunction([(ArrayOp("Shape"), [0]), (ArrayOp("ConstantOfShape"), [1])], 1)
    for n in range(8):
        x = np.broadcast_to(np.float32(n), (n + 1, 1 << 18))  # its shape is all that is read
        assert zeros(x).shape == x.shape
        assert sum(v.nbytes for v in zeros._cache.values()) <= max(CACHE_BYTES, (n + 1) << 20)
    assert len(zeros._cache) < 8


def test_program_reads_inputs_only_through_their_shape():
    with pytest.raises(ValueError, match="reads input 0"):
        ShapeFunction([(ArrayOp("Neg"), [0])], 1)
    with pytest.raises(ValueError, match="not an input or an earlier op"):
        ShapeFunction([(ArrayOp("Shape"), [1])], 1)
    with pytest.raises(ValueError, match="cache_size"):
        ShapeFunction([(ArrayOp("Shape"), [0])], 1, cache_size=0)


def test_save_load_round_trip(files, tmp_path):
    m = sko.load(files["int8"])
    path = tmp_path / "bert.spk"
    sparsekit.save(m, path)
    back = sparsekit.load(path)
    assert [type(a).__name__ for a in back.layers] == [type(a).__name__ for a in m.layers]
    assert [len(f.program) for f in _shape_functions(back)] == \
        [len(f.program) for f in _shape_functions(m)]
    for i, (b, t) in enumerate(SHAPES[:5]):
        feed = _feed(b, t, seed=i)
        np.testing.assert_array_equal(back(**feed), m(**feed))
    # a fresh process has the layers registered without importing sparsekit.onnx
    code = ("import sys, sparsekit; m = sparsekit.load(sys.argv[1]); "
            "assert 'sparsekit.convert.onnx' not in sys.modules; print(len(m.nodes))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(m.nodes)


def test_float64_shape_constants_save(tmp_path):
    """Reshape x [N, 6] to [2N, 3] with the target computed in float64
    (Shape -> Cast double -> Mul by a float64 constant -> Cast int64): the
    whole chain is one ShapeFunction (the Mul stays float64, not a float32
    MulConst) and it saves."""
    f, d, i64 = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64
    inits = [("two", np.array([2.0], np.float64)), ("zero", np.array([0], np.int64)),
             ("three", np.array([3], np.int64))]
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Cast", ["s"], ["sd"], to=d),
             helper.make_node("Gather", ["sd", "zero"], ["n"], axis=0),
             helper.make_node("Mul", ["n", "two"], ["n2"]),
             helper.make_node("Cast", ["n2"], ["n2i"], to=i64),
             helper.make_node("Concat", ["n2i", "three"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", f, [None, 6])],
                          [helper.make_tensor_value_info("y", f, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m = sko.load(model)
    (fn,) = _shape_functions(m)
    assert any(v.dtype == np.float64 for op, _ in fn.program for v in op.consts.values())
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    path = tmp_path / "f64.spk"
    sparsekit.save(m, path)  # was: TypeError: cannot store dtype float64
    back = sparsekit.load(path)
    rng = np.random.default_rng(0)
    for n in (1, 4, 1):
        x = rng.standard_normal((n, 6)).astype(np.float32)
        want = sess.run(None, {"x": x})[0]
        for got in (m(x), back(x)):
            assert got.shape == (2 * n, 3)
            np.testing.assert_array_equal(got, want)


def test_float64_array_op_constant_saves_exactly(tmp_path):
    c = np.array([0.1, 1e-300, -3.5], np.float64)  # not representable in float32
    m = sparsekit.runtime.Model.graph(
        [(ArrayOp("Mul", {}, ["x", "c0"], {"c0": c}), ["x"], "y")], ["x"], ["y"])
    path = tmp_path / "mul.spk"
    sparsekit.save(m, path)
    back = sparsekit.load(path)
    assert back.layers[0].consts["c0"].dtype == np.float64
    assert back.layers[0].consts["c0"].tobytes() == c.tobytes()
    x = np.array([3.0, 2.0, 1.0])
    np.testing.assert_array_equal(back(x), x * c)


def test_static_graph_output_is_a_fresh_array():
    """A graph output computed from shapes only is not served from the cache:
    the caller may write into it. The Reshape target next to it is cached."""
    i64 = TensorProto.INT64
    inits = [("zero", np.array([0], np.int64)), ("minus1", np.array([-1], np.int64))]
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Concat", ["n", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"]),
             helper.make_node("Concat", ["s", "minus1"], ["s2"], axis=0)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [None, None, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("s2", i64, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits])
    m = sko.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    assert len(_shape_functions(m)) == 1
    for shape in [(2, 3, 2), (2, 5, 2), (2, 3, 2)]:
        x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        y, s2 = m(x)
        np.testing.assert_array_equal(y, x.reshape(shape[0], -1))
        np.testing.assert_array_equal(s2, list(shape) + [-1])
        s2[0] = 99  # the caller's own array


def test_threads_with_different_shapes(files, monkeypatch):
    """Concurrent calls, each shape from several threads, caches small enough
    to evict while other threads read: every result is its own shape's."""
    m, ref = sko.load(files["fp32"]), _uncached(files["fp32"], monkeypatch)
    for fn in _shape_functions(m):
        fn.cache_size = 2
    tasks = [(b, t) for b, t in SHAPES[:6]] * 6
    feeds = {s: _feed(*s, seed=sum(s)) for s in set(tasks)}
    want = {s: ref(**feeds[s]) for s in feeds}
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda s: m(**feeds[s]), tasks))
    for s, g in zip(tasks, got):
        np.testing.assert_array_equal(g, want[s], err_msg=str(s))
