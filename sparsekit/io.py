"""sparsekit.save / sparsekit.load: one versioned, self-checking model file.

Layout (docs/FORMAT.md has the full description for a C reader):

    0   8  magic  b"SPKMODEL"
    8   4  u32 LE format version (1)
    12  4  u32 LE crc32 of the header bytes
    16  8  u64 LE header length H
    24  H  header: UTF-8 JSON (graph, layer configs, array table)
    ..     zero padding to a multiple of 64
    D   .. data: arrays at 64-aligned offsets relative to D, little-endian, C order

Every array has an entry {dtype, shape, offset, nbytes, crc32}; load checks all
of them (and the header CRC) before building layers, and the layers' own
constructors validate what they get (CSR index ranges, shapes). Any problem is a
ValueError naming the file and what was wrong.

A SlicedEllMatrix weight is stored as its CSR (kind "csr_f32" with "runtime":
"sliced ell fp32") and rebuilt on load: 0.61 instead of 0.88 bytes per weight
at 90% sparsity, the one sparse fp32 layout a reader has to know, and files that
older readers still load (as CSRMatrix, same outputs); the rebuild costs a few
ms per BERT-size layer (benchmarks/RESULTS.md, "SlicedEllMatrix in the
framework layers").

A CSRMatrix with its shared-column layout (CSRMatrix.with_shared_columns, which
sparsekit.pack picks at 65-83% sparsity on AVX-512) is stored as its CSR with
"shared_columns": true, and the layout is rebuilt on load (where this CPU uses
it): the layout is derived data and ~0.9x the CSR's bytes again. Readers that
predate the key ignore it and run the weight as plain CSR (same results).
"""
import json
import math
import os
import struct
import zlib

import numpy as np

from sparsekit import _dense_f32
from sparsekit.runtime import weights as W
from sparsekit.runtime.layers import LAYERS, Layer
from sparsekit.runtime.model import Model

MAGIC = b"SPKMODEL"
VERSION = 1
ALIGN = 64
_PREFIX = struct.Struct("<8sIIQ")
DTYPES = {"float32": "<f4", "int8": "i1", "uint16": "<u2", "int32": "<i4", "int64": "<i8",
          "float64": "<f8"}  # float64: constants of an imported graph's shape code
# a sparse int8 weight is stored as CSR when it saves space (values + uint16 index)
_CSR_STORE_MIN_SPARSITY = 0.5
# the kernel format the saver ran an int8 weight as (W.describe); absent = dense
INT8_RUNTIMES = ("dense int8", "sparse int8")


class _Writer:
    def __init__(self):
        self.table = []
        self.blobs = []
        self.size = 0

    def add(self, a):
        a = np.ascontiguousarray(a)
        name = a.dtype.name
        if name not in DTYPES:
            raise TypeError(f"cannot store dtype {a.dtype}")
        raw = a.astype(DTYPES[name], copy=False).tobytes()
        pad = (-self.size) % ALIGN
        self.blobs.append(b"\0" * pad)
        self.size += pad
        self.table.append({"dtype": name, "shape": list(a.shape), "offset": self.size,
                           "nbytes": len(raw), "crc32": zlib.crc32(raw)})
        self.blobs.append(raw)
        self.size += len(raw)
        return len(self.table) - 1


def _encode_weight(w, wr):
    """Header entry for a weight format; arrays go to the writer."""
    n, k = w.shape
    kind = W.describe(w)
    if kind == "dense fp32":
        e = {"kind": "dense_f32", "shape": [n, k], "values": wr.add(np.asarray(w, np.float32))}
        if not isinstance(w, np.ndarray):  # a PackedDenseMatrix: packed again on load
            e["runtime"] = "packed dense fp32"
        return e
    if kind in ("csr fp32", "csr shared fp32"):
        e = {"kind": "csr_f32", "shape": [n, k], "data": wr.add(w.data),
             "indices": wr.add(w.indices), "indptr": wr.add(w.indptr)}
        if w.shared_columns:  # the layout is rebuilt on load (module docstring)
            e["shared_columns"] = True
        return e
    if kind == "sliced ell fp32":  # its CSR, rebuilt on load (module docstring)
        c = w.to_csr()
        return {"kind": "csr_f32", "shape": [n, k], "runtime": kind, "data": wr.add(c.data),
                "indices": wr.add(c.indices), "indptr": wr.add(c.indptr)}
    if kind in ("dense int8", "sparse int8"):
        q, scale = W.int8_parts(w)
        e = {"kind": "int8", "shape": [n, k], "runtime": kind, "scale": wr.add(scale)}
        if getattr(w, "input_scale", None) is not None:  # static input quantization
            e.update(input_scale=float(w.input_scale), input_zero_point=int(w.input_zero_point))
        if W.sparsity(q) >= _CSR_STORE_MIN_SPARSITY:
            rows, cols = np.nonzero(q)
            indptr = np.zeros(n + 1, np.int64)
            np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
            e.update(storage="csr", values=wr.add(q[rows, cols]), indptr=wr.add(indptr),
                     indices=wr.add(cols.astype(np.uint16 if k <= 65536 else np.int32)))
        else:
            e.update(storage="dense", values=wr.add(q))
        return e
    raise TypeError(f"cannot save a weight of type {type(w).__name__}")


def save(model_or_layers, path):
    """Write model_or_layers, a sparsekit.runtime.Model (or a list of runtime
    layers, run in sequence), to the file `path` (str, bytes or os.PathLike;
    replaced if it exists) in the format of docs/FORMAT.md. Raises TypeError
    for anything else (framework models: convert them first, e.g. with
    sparsekit.torch.to_runtime or sparsekit.onnx.load) or a non-path `path`."""
    model = model_or_layers
    if isinstance(model, (list, tuple)):
        model = Model(list(model))
    if not isinstance(model, Model):
        raise TypeError(f"model_or_layers: expected a sparsekit.runtime.Model or a list of "
                        f"layers, got {type(model).__name__} (convert framework models "
                        "first, e.g. sparsekit.onnx.load, or sparsekit.torch.to_runtime "
                        "for an nn.Sequential)")
    path = _check_path(path)
    wr = _Writer()
    nodes = []
    for layer, ins, out in model.nodes:
        entry = {"op": type(layer).__name__, "inputs": ins, "output": out,
                 "config": layer.config(),
                 "arrays": {k: wr.add(np.asarray(v)) for k, v in layer.arrays().items()}}
        if layer.weight is not None:
            entry["weight"] = _encode_weight(layer.weight, wr)
        nodes.append(entry)
    head = {"format": "sparsekit-model", "version": VERSION, "inputs": model.inputs,
            "outputs": model.outputs, "nodes": nodes, "arrays": wr.table}
    if getattr(model, "optional_inputs", None):  # absent unless used: older files unchanged
        head["optional_inputs"] = model.optional_inputs
    header = json.dumps(head, separators=(",", ":")).encode()
    prefix = _PREFIX.pack(MAGIC, VERSION, zlib.crc32(header), len(header))
    pad = (-(len(prefix) + len(header))) % ALIGN
    tmp = f"{path}.tmp{os.getpid()}" if isinstance(path, str) else \
        path + f".tmp{os.getpid()}".encode()
    with open(tmp, "wb") as f:  # write then rename: a crash never leaves half a file
        f.write(prefix + header + b"\0" * pad)
        for b in wr.blobs:
            f.write(b)
    os.replace(tmp, path)


def _check_path(path):
    """`path` as str/bytes; ints are refused (open() would take them as file
    descriptors: load(0) would read stdin, and closing it after would close
    the caller's descriptor)."""
    if isinstance(path, (bool, int)) or not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path: expected a file path (str or os.PathLike), "
                        f"got {type(path).__name__}")
    return os.fspath(path)


def _bad(path, msg):
    return ValueError(f"{os.fspath(path)}: not a valid sparsekit model file: {msg}")


def _read_arrays(path, table, data):
    if not isinstance(table, list):
        raise _bad(path, "header 'arrays' is not a list")
    out = []
    for i, e in enumerate(table):
        try:
            dtype, shape = DTYPES[e["dtype"]], [int(s) for s in e["shape"]]
            off, nb, crc = int(e["offset"]), int(e["nbytes"]), int(e["crc32"])
        except (KeyError, TypeError, ValueError):
            raise _bad(path, f"array {i}: malformed entry") from None
        if min(shape, default=0) < 0 or off < 0:
            raise _bad(path, f"array {i}: negative shape or offset")
        if math.prod(shape) * np.dtype(dtype).itemsize != nb:  # exact: Python ints
            raise _bad(path, f"array {i}: nbytes {nb} does not match shape {shape}")
        if off + nb > len(data):
            raise _bad(path, f"array {i}: extends past the end of the file (truncated?)")
        raw = data[off:off + nb]
        if zlib.crc32(raw) != crc:
            raise _bad(path, f"array {i}: checksum mismatch (corrupted)")
        out.append(np.frombuffer(raw, dtype=dtype).reshape(shape).astype(
            e["dtype"], copy=False))
    return out


def _decode_weight(e, arrays, where="weight"):
    def get(name):
        i = e[name]
        if not isinstance(i, int) or not 0 <= i < len(arrays):
            raise ValueError(f"weight.{name}: bad array index {i!r}")
        return arrays[i]

    import sparsekit

    kind = e["kind"]
    n, k = (int(s) for s in e["shape"])
    if kind == "dense_f32":
        v = get("values")
        if v.shape != (n, k):
            raise ValueError(f"weight: values shape {v.shape} != {(n, k)}")
        runtime = e.get("runtime", "dense fp32")
        if runtime not in ("dense fp32", "packed dense fp32"):
            raise ValueError(f"weight: unknown dense_f32 runtime {runtime!r}")
        if runtime == "packed dense fp32" and _dense_f32.wanted():
            return _dense_f32.PackedDenseMatrix(v)
        return v.copy()
    if kind == "csr_f32":
        csr = sparsekit.CSRMatrix((get("data"), get("indices"), get("indptr")), (n, k))
        runtime = e.get("runtime", "csr fp32")
        shared = e.get("shared_columns", False)
        if not isinstance(shared, bool):
            raise ValueError(f"weight: shared_columns must be true or false, got {shared!r}")
        if shared and runtime != "csr fp32":
            raise ValueError(f"weight: shared_columns is for a csr_f32 weight run as CSR, "
                             f"not with runtime {runtime!r}")
        if runtime == "sliced ell fp32":
            return sparsekit.SlicedEllMatrix.from_csr(csr)
        if runtime != "csr fp32":
            raise ValueError(f"weight: unknown csr_f32 runtime {runtime!r}")
        return csr.with_shared_columns() if shared else csr
    if kind == "int8":
        if e.get("runtime", "dense int8") not in INT8_RUNTIMES:
            raise ValueError(f"{where}: unknown int8 runtime {e['runtime']!r} (expected "
                             f"one of {INT8_RUNTIMES} or none)")
        scale = get("scale")
        if e["storage"] == "dense":
            q = get("values")
            if q.shape != (n, k) or q.dtype != np.int8:
                raise ValueError(f"weight: int8 values shape {q.shape} != {(n, k)}")
        elif e["storage"] == "csr":  # CSRMatrix validates the index structure
            vals = get("values")
            if vals.dtype != np.int8:
                raise ValueError("weight: csr int8 values must be int8")
            csr = sparsekit.CSRMatrix((vals.astype(np.float32), get("indices"),
                                       get("indptr")), (n, k))
            q = csr.to_dense().astype(np.int8)
        else:
            raise ValueError(f"weight: unknown int8 storage {e['storage']!r}")
        w, _ = W.pack_int8(q, scale, min_sparsity=0.0 if e.get("runtime") == "sparse int8"
                           else 1.01)
        if "input_scale" in e:
            w = w.with_static_input(float(e["input_scale"]), int(e["input_zero_point"]))
        return w
    raise ValueError(f"weight: unknown kind {kind!r}")


def load(path):
    """Read the model file `path` (str, bytes or os.PathLike) written by
    sparsekit.save; returns a runtime Model. Raises TypeError for a non-path
    `path` (a file descriptor int included), OSError when the file cannot be
    read, ValueError for a truncated, corrupted or unknown file."""
    path = _check_path(path)
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < _PREFIX.size:
        raise _bad(path, f"only {len(blob)} bytes (truncated?)")
    magic, version, crc, hlen = _PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise _bad(path, f"bad magic {magic!r}")
    if version != VERSION:
        raise _bad(path, f"format version {version} is not supported (this sparsekit "
                         f"reads version {VERSION})")
    hend = _PREFIX.size + hlen
    if hend > len(blob):
        raise _bad(path, "header extends past the end of the file (truncated?)")
    hbytes = blob[_PREFIX.size:hend]
    if zlib.crc32(hbytes) != crc:
        raise _bad(path, "header checksum mismatch (corrupted)")
    try:
        header = json.loads(hbytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad(path, "header is not valid JSON") from None
    data = memoryview(blob)[hend + (-hend) % ALIGN:]
    arrays = _read_arrays(path, header.get("arrays") if isinstance(header, dict) else None,
                          data)
    try:
        nodes = []
        for i, e in enumerate(header["nodes"]):
            cls = LAYERS.get(e["op"])
            if cls is None or not issubclass(cls, Layer):
                raise ValueError(f"nodes[{i}]: unknown layer {e['op']!r}")
            arrs = {}
            for name, idx in e["arrays"].items():
                if not isinstance(idx, int) or not 0 <= idx < len(arrays):
                    raise ValueError(f"nodes[{i}].{name}: bad array index {idx!r}")
                arrs[name] = arrays[idx]
            w = _decode_weight(e["weight"], arrays, f"nodes[{i}].weight") \
                if "weight" in e else None
            layer = cls.from_state(dict(e["config"]), arrs, w)
            nodes.append((layer, list(e["inputs"]), str(e["output"])))
        return Model.graph(nodes, header["inputs"], header["outputs"],
                           header.get("optional_inputs", []))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError,
            RecursionError) as ex:
        raise _bad(path, f"{type(ex).__name__}: {ex}") from None
