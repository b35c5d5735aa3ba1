"""`sparsekit pack --measure` and benchmarks/pack_accuracy.py time every
format rotating over copies of its weight, as a model's consecutive layers
(_pack_measure.ROTATION; --rotation 1: one weight back to back, the old warm
timing). Which calls are made, not how long they take."""
import importlib
import json
import types

import numpy as np
import pytest

import sparsekit

M = importlib.import_module("sparsekit._pack_measure")

pytest.importorskip("sparsekit._core")


def _arrays(obj):
    """The ndarrays an object holds (its pickled state)."""
    return [a for a in obj.__reduce__()[1] if isinstance(a, np.ndarray)]


@pytest.mark.parametrize("fmt", ["dense", "csr", "sell", "spint8"])
def test_rotation_copies_hold_their_own_memory_and_compute_the_same(rng, fmt):
    w = M._random_weight(rng, 48, 40, 0.6, "unstructured")
    copies = M._rotation(M._build(fmt, w), 3)
    assert len(copies) == 3 and len({id(c) for c in copies}) == 3
    x = rng.standard_normal((2, 40)).astype(np.float32)
    want = sparsekit.linear(x, copies[0])
    for c in copies[1:]:
        np.testing.assert_array_equal(sparsekit.linear(x, c), want)
        for a, b in zip(_arrays(copies[0]), _arrays(c)):
            assert not np.shares_memory(a, b)


def test_time_formats_calls_every_copy_equally_in_whole_passes(monkeypatch, rng):
    """Per round and format: whole passes over its copies, one call each in
    turn (a copy is never called twice in a row), formats interleaved."""
    calls = []
    monkeypatch.setattr(sparsekit, "linear", lambda x, obj: calls.append(obj))
    w = M._random_weight(rng, 16, 32, 0.5, "unstructured")
    built = {f: M._rotation(M._build(f, w), 4) for f in ("dense", "csr")}
    x = np.zeros((1, 32), np.float32)
    t = M._time_formats(built, x, reps=2)
    assert set(t) == {"dense", "csr"} and all(v >= 0 for v in t.values())
    warm = 8  # one warm-up call per copy
    assert calls[:warm] == built["dense"] + built["csr"]
    timed = calls[warm:]
    for f, objs in built.items():
        mine = [c for c in timed if any(c is o for o in objs)]
        counts = [sum(c is o for c in mine) for o in objs]
        assert len(set(counts)) == 1 and counts[0] > 0  # whole passes
    assert all(a is not b for a, b in zip(timed, timed[1:]))
    # rounds interleave the formats: a dense pass, a csr pass, a dense pass, ...
    owner = ["dense" if any(c is o for o in built["dense"]) else "csr" for c in timed]
    runs = [f for i, f in enumerate(owner) if i == 0 or owner[i - 1] != f]
    assert runs == ["dense", "csr", "dense", "csr"]


def test_rotation_one_is_the_old_back_to_back_timing(monkeypatch, rng):
    calls = []
    monkeypatch.setattr(sparsekit, "linear", lambda x, obj: calls.append(obj))
    obj = M._build("csr", M._random_weight(rng, 16, 32, 0.5, "unstructured"))
    M._time_formats({"csr": M._rotation(obj, 1)}, np.zeros((1, 32), np.float32), reps=1)
    assert len(calls) == 1 + 50 and all(c is obj for c in calls)  # a tiny weight: 50 calls


def test_measure_raw_hands_each_format_its_copies_and_records_the_rotation(monkeypatch):
    seen = []

    def fake_time(built, x, reps):
        seen.append({f: len(v) for f, v in built.items()})
        return {f: 1e-6 for f in built}

    monkeypatch.setattr(M, "_time_formats", fake_time)
    raw = M.measure_raw(shapes=((16, 32),), sparsities=(0.5,), ms=(1,), reps=1,
                        fmts=["dense", "csr"], patterns=("unstructured",), rotation=5)
    assert seen == [{"dense": 5, "csr": 5}]
    assert [r["rotation"] for r in raw] == [5, 5]
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="rotation"):
            M.measure_raw(shapes=((16, 32),), sparsities=(0.5,), ms=(1,), rotation=bad)


def test_fit_refuses_runs_of_different_rotations():
    row = dict(n=8, k=8, sparsity=0.5, pattern="unstructured", m=1, fmt="csr", sec=1e-6)
    old = [row]  # saved before --rotation: one weight, back to back
    assert M.median_runs([old, [dict(row, rotation=1, sec=3e-6)]])[0]["sec"] == 2e-6
    with pytest.raises(ValueError, match="rotation"):
        M.median_runs([old, [dict(row, rotation=8)]])


def test_rotation_option(tmp_path, monkeypatch):
    base = dict(shapes=None, ms=None, formats=None, sparsities=None, patterns=None)
    assert M._measure_options(types.SimpleNamespace(**base, rotation=3))["rotation"] == 3
    with pytest.raises(ValueError, match="--rotation"):
        M._measure_options(types.SimpleNamespace(**base, rotation=0))
    # --measure passes it on and --save keeps it with every timing
    got = {}

    def fake_raw(**kw):
        got.update(kw)
        return [dict(n=8, k=8, sparsity=0.5, pattern="unstructured", m=1, fmt="csr", nnz=32,
                     nblocks=16, ngroups=16, sell_groups=1, shared_bytes=None,
                     rotation=kw["rotation"], sec=1e-6)]

    monkeypatch.setattr(M, "measure_raw", fake_raw)
    monkeypatch.setattr(sparsekit, "set_num_threads", lambda n: None)  # keep the session's
    monkeypatch.setattr(M, "_model_from_raw", lambda raw, base=None: {
        "coef": {}, "sell_isa": "avx2", "shared_isa": "avx2"})
    monkeypatch.setattr(M, "crossover_table", lambda model: [])
    path = tmp_path / "r.json"
    args = types.SimpleNamespace(fit=None, plan=False, measure=True, reps=1, save=str(path),
                                 **dict(base, formats="csr"), rotation=3)
    M._cli_run(args)
    assert got["rotation"] == 3 and json.load(open(path))[0]["rotation"] == 3
