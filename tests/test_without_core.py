"""Without the compiled extension (e.g. a source tree that was not built),
sparsekit still imports, CSRMatrix runs on the portable Numba backend, and
what needs the C core raises an ImportError that says why."""
import subprocess
import sys
import textwrap

BLOCK_CORE = textwrap.dedent("""
    import importlib.abc, sys
    class BlockCore(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "sparsekit._core":
                raise ImportError("no compiled extension (blocked by the test)")
    sys.meta_path.insert(0, BlockCore())
""")


def _run(body):
    code = BLOCK_CORE + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


def test_csr_linear_falls_back_to_numba():
    r = _run("""
        import numpy as np, sparsekit
        rng = np.random.default_rng(0)
        w = rng.standard_normal((40, 30)).astype(np.float32)
        w[rng.random(w.shape) < 0.8] = 0
        x = rng.standard_normal((9, 30)).astype(np.float32)
        b = rng.standard_normal(40).astype(np.float32)
        y = sparsekit.linear(x, sparsekit.CSRMatrix.from_dense(w), b, activation="relu")
        ref = np.maximum(x.astype(np.float64) @ w.T.astype(np.float64) + b, 0)
        assert np.abs(y - ref).max() < 1e-4, np.abs(y - ref).max()
        info = sparsekit.info()
        assert info["compiled"] is False and "blocked by the test" in info["core_error"]
        print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr


def test_core_only_features_say_why():
    r = _run("""
        import numpy as np, sparsekit
        try:
            sparsekit.QuantizedMatrix.from_float(np.ones((4, 4), np.float32))
        except ImportError as e:
            assert "compiled C core is unavailable" in str(e), e
            print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr
    r = subprocess.run([sys.executable, "-c", BLOCK_CORE +
                        "from sparsekit.cli import main; main(['info'])"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "C core       : unavailable" in r.stdout, r.stderr
