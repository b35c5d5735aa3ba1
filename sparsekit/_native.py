"""The compiled C core, or a stand-in that says why it is missing.

sparsekit still imports without its compiled extension (a source tree that was
not built, a platform without a compiler): CSRMatrix and sparsekit.linear then
run on the portable Numba backend, and everything that needs the C core raises
an ImportError that names the cause."""
try:
    from sparsekit import _core as core

    AVAILABLE = True
    IMPORT_ERROR = None
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    AVAILABLE = False
    IMPORT_ERROR = e

    class _MissingCore:
        def __getattr__(self, name):
            raise ImportError(
                f"sparsekit's compiled C core is unavailable ({IMPORT_ERROR}); build it "
                "with `pip install -e .`. Without it only CSRMatrix with the Numba backend "
                '(pip install "sparsekit[numba]"; from a clone: pip install -e ".[numba]") '
                "runs.")

    core = _MissingCore()
