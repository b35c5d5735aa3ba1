"""Optional frameworks stay optional: with torch, onnx, onnxruntime and keras
blocked from importing (in a fresh interpreter), `import sparsekit`, the runtime
and save/load work, and each importer names the extra to install."""
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BLOCK = textwrap.dedent("""
    import sys

    class Block:
        BLOCKED = ("torch", "onnx", "onnxruntime", "keras", "tensorflow")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"blocked for the test: {name}")
            return None

    sys.meta_path.insert(0, Block())
""")


def run(code):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_core_and_runtime_work_without_frameworks(tmp_path):
    out = run(f"""
        import numpy as np
        import sparsekit
        from sparsekit import runtime as R
        w = np.eye(3, dtype=np.float32)
        m = R.Model([R.Linear(sparsekit.CSRMatrix.from_dense(w)), R.ReLU()])
        sparsekit.save(m, {str(tmp_path / 'm.spk')!r})
        y = sparsekit.load({str(tmp_path / 'm.spk')!r})(np.array([[1, -2, 3]], np.float32))
        print(y.tolist())
        print(sorted(k for k in sys.modules if k.split('.')[0] in Block.BLOCKED))
    """)
    assert out.splitlines() == ["[[1.0, 0.0, 3.0]]", "[]"]


@pytest.mark.parametrize("mod,extra", [("torch", "sparsekit[torch]"),
                                       ("onnx", "sparsekit[onnx]"),
                                       ("keras", "sparsekit[keras]")])
def test_importers_name_their_extra(mod, extra):
    out = run(f"""
        import sparsekit
        for how in ("import", "attr"):
            try:
                if how == "import":
                    import sparsekit.{mod}
                else:
                    sparsekit.{mod}
            except ImportError as e:
                print(how, e)
    """)
    lines = out.splitlines()
    assert len(lines) == 2
    assert all(f'pip install "{extra}"' in line for line in lines), out
