"""docs/FORMAT.md says it is enough to write a reader: this is one, written from
that page alone (no sparsekit.io), run on files sparsekit.save writes. If the
file layout or the names the page gives drift apart, it fails."""
import json
import math
import struct
import zlib

import numpy as np
import pytest

import sparsekit
from sparsekit.runtime import Linear, Model

DTYPES = {"float32": "<f4", "int8": "i1", "uint16": "<u2", "int32": "<i4", "int64": "<i8",
          "float64": "<f8"}


def read_spk(path):
    """(header, arrays) following docs/FORMAT.md "Layout" and "Arrays"."""
    blob = open(path, "rb").read()
    assert len(blob) >= 24
    magic, version, crc, h = struct.unpack_from("<8sIIQ", blob)
    assert magic == b"SPKMODEL" and version == 1
    assert 24 + h <= len(blob)
    header_bytes = blob[24:24 + h]
    assert zlib.crc32(header_bytes) == crc
    header = json.loads(header_bytes.decode("utf-8"))
    d = math.ceil((24 + h) / 64) * 64
    assert blob[24 + h:d] == b"\0" * (d - 24 - h)  # zero padding
    arrays = []
    for e in header["arrays"]:
        dt = np.dtype(DTYPES[e["dtype"]])
        assert e["offset"] % 64 == 0
        assert e["nbytes"] == math.prod(e["shape"]) * dt.itemsize
        raw = blob[d + e["offset"]:d + e["offset"] + e["nbytes"]]
        assert len(raw) == e["nbytes"] and zlib.crc32(raw) == e["crc32"]
        arrays.append(np.frombuffer(raw, dt).reshape(e["shape"]))
    return header, arrays


def weight_of(w, arrays):
    """Dense float64 [N, K] of a node's `weight` entry (FORMAT.md "Weights")."""
    n, k = w["shape"]
    get = arrays.__getitem__
    if w["kind"] == "dense_f32":
        return get(w["values"]).astype(np.float64)
    if w["kind"] == "csr_f32" or (w["kind"] == "int8" and w["storage"] == "csr"):
        indptr, indices, values = get(w["indptr"]), get(w["indices"]), get(w["values" if
                                                                           w["kind"] == "int8"
                                                                           else "data"])
        assert indptr[0] == 0 and indptr[-1] == len(values) and (np.diff(indptr) >= 0).all()
        dense = np.zeros((n, k))
        for r in range(n):
            cols = indices[indptr[r]:indptr[r + 1]]
            assert (np.diff(cols.astype(np.int64)) > 0).all() and (cols < k).all()
            dense[r, cols] = values[indptr[r]:indptr[r + 1]]
    elif w["kind"] == "int8":
        assert w["storage"] == "dense"
        dense = get(w["values"]).astype(np.float64)
    else:
        raise AssertionError(f"kind {w['kind']!r} is not in FORMAT.md")
    if w["kind"] == "int8":
        scale = get(w["scale"]).astype(np.float64)
        dense = dense * (scale[:, None] if scale.ndim == 1 else scale)
    return dense


@pytest.fixture
def model(rng):
    def pruned(n, k, sparsity):
        w = rng.standard_normal((n, k)).astype(np.float32)
        w[rng.random(w.shape) < sparsity] = 0
        return w

    layers = [
        Linear(sparsekit.CSRMatrix.from_dense(pruned(40, 24, 0.8)),
               rng.standard_normal(40).astype(np.float32), "relu"),
        Linear(sparsekit.SlicedEllMatrix.from_dense(pruned(33, 40, 0.9))),
        Linear(sparsekit.QuantizedMatrix.from_float(pruned(20, 33, 0.0))),
        Linear(sparsekit.SparseInt8Matrix.from_float(pruned(17, 20, 0.7), per_channel=False)),
        Linear(pruned(5, 17, 0.0), rng.standard_normal(5).astype(np.float32)),
    ]
    return Model(layers)


def test_a_reader_written_from_format_md_reads_saved_files(model, tmp_path):
    path = tmp_path / "m.spk"
    sparsekit.save(model, path)
    header, arrays = read_spk(path)
    assert header["format"] == "sparsekit-model" and header["version"] == 1
    nodes = header["nodes"]
    assert [n["op"] for n in nodes] == ["Linear"] * 5
    kinds = [(n["weight"]["kind"], n["weight"].get("runtime"), n["weight"].get("storage"))
             for n in nodes]
    assert kinds == [("csr_f32", None, None), ("csr_f32", "sliced ell fp32", None),
                     ("int8", "dense int8", "dense"), ("int8", "sparse int8", "csr"),
                     ("dense_f32", None, None)]
    assert nodes[0]["config"] == {"activation": "relu"} and "bias" in nodes[0]["arrays"]
    for node, layer in zip(nodes, model.layers):
        w = layer.weight
        want = w.dequantize() if hasattr(w, "dequantize") else (
            w if isinstance(w, np.ndarray) else w.to_dense())
        # exact for fp32; int8: q * scale in float64 against float32 dequantize()
        np.testing.assert_allclose(weight_of(node["weight"], arrays), want, rtol=1e-6, atol=0)

    # the fp32 part of the graph, computed from the file alone
    x = np.random.default_rng(1).standard_normal((3, 24)).astype(np.float32)
    tensors = {header["inputs"][0]: x.astype(np.float64)}
    for node in nodes[:2]:
        y = tensors[node["inputs"][0]] @ weight_of(node["weight"], arrays).T
        if "bias" in node["arrays"]:
            y = y + arrays[node["arrays"]["bias"]]
        if node["config"]["activation"] == "relu":
            y = np.maximum(y, 0)
        tensors[node["output"]] = y
    got = Model(model.layers[:2])(x)
    np.testing.assert_allclose(got, tensors[nodes[1]["output"]], rtol=1e-5, atol=1e-5)
