"""onnx_static.fold_into_requantize (attention's scale and requantization as
a table in the projection's requantization, through Reshape / Transpose) and
drop_requantization through views, on small synthetic graphs: bit-identical
to the unfused nodes, and the patterns that must stay as they are."""
import numpy as np
import pytest

import sparsekit
from sparsekit._native import AVAILABLE
from sparsekit.convert.onnx_static import drop_requantization, fold_into_requantize
from sparsekit.runtime import Model
from sparsekit.runtime import layers as L
from sparsekit.runtime.array_ops import ArrayOp
from sparsekit.runtime.qlinear import BiasRequantize, LookupTable

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="needs the C core")

SHAPE = np.array([2, 3, 2, 4], np.int64)  # [B, T, C = 8] -> [B, T, H, D]


def _q_branch(mul=np.float32(0.4204482), extra=()):
    """BiasRequantize -> Reshape -> Transpose (+ Shape) -> MulConst -> FakeQuantize -> MatMul."""
    bias = np.linspace(-1, 1, 8, dtype=np.float32)
    return [(BiasRequantize((0.05, 120), bias, (0.04, 130)), ["x"], "p"),
            (ArrayOp("Reshape", slots=("x", "x")), ["p", "shape"], "r"),
            (ArrayOp("Transpose", {"perm": [0, 2, 1, 3]}), ["r"], "t"),
            (ArrayOp("Shape"), ["t"], "tshape"),
            (L.MulConst(mul), ["t"], "m"),
            (L.FakeQuantize(0.03, 125), ["m"], "f"),
            (ArrayOp("MatMul", slots=("x", "x")), ["f", "k"], "y"), *extra]


def _run(nodes, outputs, feed):
    return Model.graph(nodes, ["x", "shape", "k"], outputs)(**feed)


def _feed(rng):
    return {"x": (rng.standard_normal((2, 3, 8)) * 4).astype(np.float32), "shape": SHAPE,
            "k": rng.standard_normal((2, 2, 4, 5)).astype(np.float32)}


def test_scale_and_grid_fold_into_the_table():
    rng = np.random.default_rng(0)
    nodes, outputs = _q_branch(), ["y", "tshape"]
    folded = fold_into_requantize(nodes, outputs)
    kinds = [type(n[0]) for n in folded]
    assert L.MulConst not in kinds and L.FakeQuantize not in kinds
    assert isinstance(folded[0][0].last, LookupTable)
    assert [n[2] for n in folded if n[1][:1] == ["f"]] == ["tshape", "y"]  # readers of f
    for _ in range(3):
        feed = _feed(rng)
        for want, got in zip(_run(nodes, outputs, feed), _run(folded, outputs, feed)):
            np.testing.assert_array_equal(got, want)
    m = Model.graph(folded, ["x", "shape", "k"], outputs)
    assert isinstance(m.nodes[0][0], BiasRequantize)


@pytest.mark.parametrize("change", ["mul by a vector", "fq two readers", "view read twice",
                                    "output on the way"])
def test_fold_leaves_what_it_must_not_change(change):
    rng = np.random.default_rng(1)
    outputs = ["y"]
    if change == "mul by a vector":  # [D] along the last axis: not one value per code
        nodes = _q_branch(mul=np.linspace(0.5, 1.5, 4, dtype=np.float32))
    elif change == "fq two readers":  # the grid is folded; the reader of m keeps m
        nodes = _q_branch(extra=[(L.MulConst(np.float32(2)), ["m"], "z")])
        outputs = ["y", "z"]
    elif change == "view read twice":
        nodes = _q_branch(extra=[(L.MulConst(np.float32(2)), ["r"], "z")])
        outputs = ["y", "z"]
    else:
        nodes, outputs = _q_branch(), ["y", "m"]
    folded = fold_into_requantize(nodes, outputs)
    kinds = [type(n[0]) for n in folded]
    if change == "fq two readers":  # all of it stays (m has another reader)
        assert L.MulConst in kinds and L.FakeQuantize in kinds
    elif change == "output on the way":  # the chain ends at the output m
        assert L.MulConst not in kinds and L.FakeQuantize in kinds
    else:
        assert [type(n[0]) for n in folded] == [type(n[0]) for n in nodes]
    feed = _feed(rng)
    for want, got in zip(_run(nodes, outputs, feed), _run(folded, outputs, feed)):
        np.testing.assert_array_equal(got, want)


def _context(scale=0.02119, zp=145, extra=()):
    """x -> FakeQuantize -> Transpose -> Reshape (+ Shape) -> int8 Linear (static input)."""
    rng = np.random.default_rng(5)
    w = sparsekit.QuantizedMatrix.from_float(rng.standard_normal((6, 8)).astype(np.float32))
    return [(L.FakeQuantize(0.02119, 145), ["x"], "f"),
            (ArrayOp("Transpose", {"perm": [0, 2, 1, 3]}), ["f"], "t"),
            (ArrayOp("Shape"), ["t"], "tshape"),
            (ArrayOp("Reshape", slots=("x", "x")), ["t", "shape"], "r"),
            (L.Linear(w.with_static_input(scale, zp)), ["r"], "y"), *extra]


@pytest.mark.parametrize("change", [None, "other grid", "view read by a layer"])
def test_requantization_drops_through_views(change):
    rng = np.random.default_rng(2)
    extra, outputs = (), ["y", "tshape"]
    if change == "view read by a layer":
        extra, outputs = [(L.MulConst(np.float32(2)), ["t"], "z")], ["y", "z"]
    nodes = _context(zp=146 if change == "other grid" else 145, extra=extra)
    dropped = drop_requantization(nodes, outputs)
    assert (L.FakeQuantize in [type(n[0]) for n in dropped]) == (change is not None)
    feed = {"x": (rng.standard_normal((2, 2, 3, 4)) * 2).astype(np.float32),
            "shape": np.array([2, 3, 8], np.int64)}
    run = [Model.graph(n, ["x", "shape"], outputs)(**feed) for n in (nodes, dropped)]
    for want, got in zip(*run):
        np.testing.assert_array_equal(got, want)
