"""sparsekit: fast sparse and int8 kernels for pruned and quantized networks on CPUs.

    w = sparsekit.CSRMatrix.from_dense(pruned_weight)   # validate + pack once
    y = sparsekit.linear(x, w, bias, activation="relu") # y = relu(x @ w.T + bias)

Weight formats: CSRMatrix and SlicedEllMatrix (pruned fp32; the latter for
1-16 rows per call), QuantizedMatrix and SparseInt8Matrix (int8, dense and
pruned); sparsekit.pack(w, quantize=None | "int8", m=rows per call) picks the
fastest one here and sparsekit.explain(...) says why. Int8 building blocks:
quantize_rows, int8_matmul, quantized_linear. Whole models: sparsekit.torch,
sparsekit.onnx, sparsekit.keras (imported on first use), sparsekit.runtime,
sparsekit.save / sparsekit.load (docs/FORMAT.md); compression methods:
`from sparsekit import compress`.

The C core (kernels/) picks the best instruction set at run time; see
sparsekit.info(), sparsekit.set_isa() and sparsekit.set_num_threads().
"""
from sparsekit._config import (
    get_isa, get_num_threads, info, set_isa, set_num_threads,
)
from sparsekit._config import get_thread_backoff, set_thread_backoff
from sparsekit.formats import CSRMatrix, QuantizedMatrix
from sparsekit.formats import SparseInt8Matrix
from sparsekit.formats import SlicedEllMatrix
from sparsekit.ops import linear
from sparsekit.pack import explain, pack
from sparsekit.quant_ops import int8_matmul, quantize_rows, quantized_linear
from sparsekit.io import load, save

__version__ = "0.1.0"

__all__ = [
    "CSRMatrix", "linear", "info", "set_isa", "get_isa", "set_num_threads",
    "get_num_threads", "__version__",
    "QuantizedMatrix", "quantize_rows", "int8_matmul", "quantized_linear",
    "SparseInt8Matrix", "pack", "explain", "save", "load",
    "set_thread_backoff", "get_thread_backoff", "SlicedEllMatrix",
]


def __getattr__(name):
    # framework importers load on first use: `import sparsekit` needs none of them
    if name in ("torch", "onnx", "keras", "runtime", "compress", "datasets"):
        import importlib

        return importlib.import_module(f"sparsekit.{name}")
    raise AttributeError(f"module 'sparsekit' has no attribute {name!r}")
