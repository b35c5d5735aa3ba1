"""sparsekit.save / load: round trips of every weight format and layer, and
corrupted / truncated / foreign files raising ValueError (never crashing)."""
import io
import json
import struct
import zlib

import numpy as np
import pytest

import sparsekit
from sparsekit import runtime as R
from sparsekit.io import MAGIC, _PREFIX


def pruned(rng, shape, density):
    w = rng.standard_normal(shape).astype(np.float32)
    w[rng.random(shape) >= density] = 0
    return w


def cnn(rng):
    conv = pruned(rng, (6, 1, 3, 3), 0.5)
    return R.Model([
        R.Conv2d(sparsekit.CSRMatrix.from_dense(conv.reshape(6, -1)), rng.standard_normal(6),
                 in_channels=1, kernel_size=3, padding=1, activation="relu"),
        R.MaxPool2d(2), R.AvgPool2d(2, 1, (0, 1, 0, 1)), R.Flatten(),
        R.Linear(pruned(rng, (12, 96), 0.9), rng.standard_normal(12)), R.GELU(),
        R.LayerNorm(rng.standard_normal(12), rng.standard_normal(12), 1e-6),
        R.FakeQuantize(0.05, 128), R.Linear(rng.standard_normal((4, 12)).astype(np.float32)),
        R.Softmax(),
    ])


def test_round_trip_fp32(tmp_path, rng):
    m = cnn(rng)
    x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    p = tmp_path / "m.spk"
    sparsekit.save(m, p)
    m2 = sparsekit.load(p)
    np.testing.assert_array_equal(m2(x), m(x))  # same weights, same kernels: bit-identical
    assert [type(a).__name__ for a in m2.layers] == [type(a).__name__ for a in m.layers]
    assert isinstance(m2.layers[0].weight, sparsekit.CSRMatrix)


def test_round_trip_graph_and_list(tmp_path, rng):
    w = rng.standard_normal((8, 8)).astype(np.float32)
    g = R.Model.graph([(R.Linear(w), ["a"], "h"), (R.Add(), ["h", "b"], "y"),
                       (R.AddConst(np.ones(8)), ["y"], "z"), (R.MulConst(2 * np.ones(8)),
                                                              ["z"], "u")],
                      inputs=["a", "b"], outputs=["u", "h"])
    a, b = rng.standard_normal((2, 8)).astype(np.float32), rng.standard_normal((2, 8))
    sparsekit.save(g, tmp_path / "g.spk")
    g2 = sparsekit.load(tmp_path / "g.spk")
    for got, ref in zip(g2(a, b.astype(np.float32)), g(a, b.astype(np.float32))):
        np.testing.assert_array_equal(got, ref)
    sparsekit.save([R.Linear(w), R.ReLU()], tmp_path / "l.spk")
    np.testing.assert_array_equal(sparsekit.load(tmp_path / "l.spk")(a), np.maximum(a @ w.T, 0))


@pytest.mark.parametrize("density", [0.1, 0.9])
def test_round_trip_int8(tmp_path, rng, density):
    qm = sparsekit.QuantizedMatrix
    w = pruned(rng, (24, 40), density)
    m = R.Model([R.Linear(qm.from_float(w, per_channel=True), rng.standard_normal(24))])
    sparsekit.save(m, tmp_path / "q.spk")
    m2 = sparsekit.load(tmp_path / "q.spk")
    q1, s1 = m.layers[0].weight.q, m.layers[0].weight.scale
    q2, s2 = m2.layers[0].weight.q, m2.layers[0].weight.scale
    np.testing.assert_array_equal(np.asarray(q2), np.asarray(q1))
    np.testing.assert_array_equal(np.asarray(s2), np.asarray(s1))
    x = rng.standard_normal((5, 40)).astype(np.float32)
    np.testing.assert_array_equal(m2(x), m(x))
    head = json.loads(open(tmp_path / "q.spk", "rb").read()[24:].split(b"\0")[0])
    assert head["nodes"][0]["weight"]["storage"] == ("csr" if density < 0.5 else "dense")


def test_round_trip_static_input(tmp_path, rng):
    qm = sparsekit.QuantizedMatrix
    w = qm.from_float(rng.standard_normal((6, 10)).astype(np.float32)).with_static_input(
        0.05, 120)
    sparsekit.save([R.Linear(w)], tmp_path / "s.spk")
    w2 = sparsekit.load(tmp_path / "s.spk").layers[0].weight
    assert (w2.input_scale, w2.input_zero_point) == (w.input_scale, w.input_zero_point)
    x = rng.standard_normal((3, 10)).astype(np.float32)
    np.testing.assert_array_equal(sparsekit.linear(x, w2), sparsekit.linear(x, w))


def test_pruned_int8_file_is_small(tmp_path, rng):
    """A 90%-pruned int8 model file is <= 15% of the fp32 state_dict's size."""
    torch = pytest.importorskip("torch")
    qm = sparsekit.QuantizedMatrix
    shapes = [(512, 256), (256, 512), (10, 256)]
    ws = [pruned(rng, s, 0.1) for s in shapes]
    bs = [rng.standard_normal(s[0]).astype(np.float32) for s in shapes]
    sd = {f"l{i}.weight": torch.from_numpy(w) for i, w in enumerate(ws)}
    sd.update({f"l{i}.bias": torch.from_numpy(b) for i, b in enumerate(bs)})
    buf = io.BytesIO()
    torch.save(sd, buf)
    m = R.Model([R.Linear(qm.from_float(w), b) for w, b in zip(ws, bs)])
    sparsekit.save(m, tmp_path / "p.spk")
    size = (tmp_path / "p.spk").stat().st_size
    assert size <= 0.15 * len(buf.getvalue()), (size, len(buf.getvalue()))


@pytest.fixture
def saved(tmp_path, rng):
    p = tmp_path / "m.spk"
    sparsekit.save(cnn(rng), p)
    return p, p.read_bytes()


def test_truncated_files_raise(saved, tmp_path):
    p, blob = saved
    q = tmp_path / "t.spk"
    for n in sorted({0, 3, 8, 23, 24, 30, len(blob) // 2, len(blob) - 1}):
        q.write_bytes(blob[:n])
        with pytest.raises(ValueError, match="not a valid sparsekit model file"):
            sparsekit.load(q)


def test_corrupted_bytes_raise(saved, tmp_path):
    p, blob = saved
    q = tmp_path / "c.spk"
    rng = np.random.default_rng(7)
    positions = list(range(0, 24)) + list(rng.integers(24, len(blob), 60))
    for pos in positions:
        bad = bytearray(blob)
        bad[pos] ^= 0x5A
        q.write_bytes(bytes(bad))
        try:
            m = sparsekit.load(q)
        except ValueError:
            continue
        # a flip in alignment padding is harmless: the model must then be intact
        assert len(m.nodes) == 10


def _rewrite_header(blob, edit):
    magic, ver, crc, hlen = _PREFIX.unpack_from(blob)
    head = json.loads(blob[24:24 + hlen])
    edit(head)
    data_start = 24 + hlen + (-(24 + hlen)) % 64
    new = json.dumps(head).encode()
    pad = (-(24 + len(new))) % 64
    return _PREFIX.pack(magic, ver, zlib.crc32(new), len(new)) + new + b"\0" * pad + \
        blob[data_start:]


def test_consistent_but_invalid_headers_raise(saved, tmp_path):
    """Headers with a valid checksum but bad content still raise ValueError."""
    p, blob = saved
    q = tmp_path / "h.spk"

    def set_op(h):
        h["nodes"][0]["op"] = "os.system"

    def big_shape(h):
        h["arrays"][0]["shape"] = [1 << 40]

    def out_of_file(h):
        h["arrays"][0]["offset"] = 1 << 40

    def bad_csr(h):  # point the CSR indices at the data array: wrong dtype
        w = h["nodes"][0]["weight"]
        w["indices"] = w["data"]

    def bad_input(h):
        h["nodes"][1]["inputs"] = ["nowhere"]

    def bad_config(h):
        h["nodes"][0]["config"]["unknown"] = 1

    def bad_index(h):
        h["nodes"][0]["arrays"]["bias"] = 999

    def huge_product(h):  # 2**64 * 4 wraps to 0 in int64 arithmetic
        h["arrays"][0]["shape"] = [1 << 32, 1 << 32]
        h["arrays"][0]["nbytes"] = 0

    def not_a_list(h):
        h["nodes"] = 7

    for edit in (set_op, big_shape, out_of_file, bad_csr, bad_input, bad_config, bad_index,
                 huge_product, not_a_list):
        q.write_bytes(_rewrite_header(blob, edit))
        with pytest.raises(ValueError):
            sparsekit.load(q)


def test_csr_index_out_of_range_in_file(tmp_path, rng):
    """Column indices beyond K, with valid checksums, are caught by CSRMatrix."""
    w = pruned(rng, (4, 6), 0.5)
    p = tmp_path / "m.spk"
    sparsekit.save([R.Linear(sparsekit.CSRMatrix.from_dense(w))], p)
    blob = bytearray(p.read_bytes())
    magic, ver, crc, hlen = _PREFIX.unpack_from(blob)
    head = json.loads(blob[24:24 + hlen])
    ent = head["arrays"][head["nodes"][0]["weight"]["indices"]]
    start = 24 + hlen + (-(24 + hlen)) % 64 + ent["offset"]
    blob[start:start + 2] = struct.pack("<H", 60000)
    ent["crc32"] = zlib.crc32(bytes(blob[start:start + ent["nbytes"]]))
    p.write_bytes(_rewrite_header(bytes(blob), lambda h: h.update(arrays=head["arrays"])))
    with pytest.raises(ValueError, match="indices"):
        sparsekit.load(p)


def test_deeply_nested_header(tmp_path, saved):
    """A header nested past the JSON parser's recursion limit is a ValueError."""
    p, blob = saved
    head = b"[" * 100000 + b"]" * 100000
    q = tmp_path / "d.spk"
    q.write_bytes(_PREFIX.pack(MAGIC, 1, zlib.crc32(head), len(head)) + head)
    with pytest.raises(ValueError, match="JSON"):
        sparsekit.load(q)


def test_foreign_and_future_files(tmp_path, saved):
    p, blob = saved
    q = tmp_path / "x.spk"
    q.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(ValueError, match="magic"):
        sparsekit.load(q)
    q.write_bytes(MAGIC + struct.pack("<I", 99) + blob[12:])
    with pytest.raises(ValueError, match="version 99"):
        sparsekit.load(q)


def test_save_rejects_non_models(tmp_path):
    with pytest.raises(TypeError, match="model_or_layers"):
        sparsekit.save({"w": 1}, tmp_path / "a.spk")
    with pytest.raises(TypeError, match="nodes"):
        sparsekit.save([np.zeros(3)], tmp_path / "a.spk")
