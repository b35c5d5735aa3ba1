"""Torch-free runtime: NumPy layers on sparsekit kernels and a small executor.

    framework model ─► sparsekit.{torch,onnx,keras} importer ─► runtime.Model
                                                          ├─► model(x)   (NumPy in/out)
                                                          └─► sparsekit.save / load

The torch drop-in modules used by sparsekit.torch.accelerate live in
sparsekit.runtime.torch_modules (imported only when torch is).
"""
from sparsekit.runtime.layers import (
    Add, AvgPool2d, Conv2d, FakeQuantize, Flatten, GELU, GlobalAvgPool2d, Identity, LayerNorm,
    Linear, MaxPool2d, ReLU, Sigmoid, Softmax, Tanh, Transpose, Reshape, AddConst, MulConst,
    conv_weight_hwc, AddLayerNorm, L2Normalize,
)
from sparsekit.runtime.model import Model
from sparsekit.runtime.embedding import Embedding
from sparsekit.runtime.attention import SelfAttention
from sparsekit.runtime.sequence import PackTokens, UnpackTokens
from sparsekit.runtime.pooling import ClsPool, Concat, MaxPool, MeanPool
from sparsekit.runtime.token_mask import PrepareMask, TokenMask
# imported for their layers' registration (sparsekit.load of ONNX imports)
from sparsekit.runtime import array_ops, qlinear, shape_function, tensor_quant  # noqa: F401,E402
from sparsekit.runtime import quant_norm  # noqa: F401,E402

__all__ = [
    "Model", "Linear", "Conv2d", "ReLU", "GELU", "Sigmoid", "Tanh", "LayerNorm", "Softmax",
    "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "Flatten", "Transpose", "Identity", "Add",
    "FakeQuantize", "Reshape", "AddConst", "MulConst", "conv_weight_hwc",
    # text encoders (BERT): see sparsekit.torch.to_runtime
    "Embedding", "SelfAttention", "AddLayerNorm", "PackTokens", "UnpackTokens", "MeanPool",
    "L2Normalize", "PrepareMask", "TokenMask", "MaxPool", "ClsPool", "Concat",
]
