"""sparsekit.onnx: import ONNX models (fp32 pruned, QDQ, QOperator, ORT dynamic
and static int8; MLPs, CNNs and transformers such as a BERT from torch.onnx.export with
dynamic batch and sequence axes) into the torch-free runtime. MatMul / Gemm /
Conv weights become sparsekit formats; shape arithmetic, masks and the other
elementwise ops run as NumPy (see sparsekit.convert.onnx for the op list).

    model = sparsekit.onnx.load("model.onnx")   # a sparsekit.runtime.Model
    y = model(x)

Needs the onnx package (pip install "sparsekit[onnx]", or from a clone
pip install -e ".[onnx]").
"""
try:
    import onnx as _onnx  # noqa: F401  (the real onnx package, absolute import)
except ImportError as e:
    raise ImportError("sparsekit.onnx needs the onnx package: "
                      'pip install "sparsekit[onnx]" '
                      '(from a clone: pip install -e ".[onnx]")') from e

from sparsekit.convert.onnx import load  # noqa: E402

__all__ = ["load"]
