"""sparsekit.torch: run pruned / quantized PyTorch models on sparsekit kernels.

    model = sparsekit.torch.accelerate(model, quantize="dynamic")
    print(sparsekit.torch.report(model))
    rt = sparsekit.torch.to_runtime(model)  # nn.Sequential or (sentence-transformers)
                                            # BertModel -> torch-free runtime.Model

Needs PyTorch (pip install "sparsekit[torch]", or from a clone
pip install -e ".[torch]"). Absolute imports only: this
module's name shadows nothing, `import torch` below is the real PyTorch.
"""
try:
    import torch as _torch  # noqa: F401  (the real PyTorch, absolute import)
except ImportError as e:
    raise ImportError("sparsekit.torch needs PyTorch: "
                      'pip install "sparsekit[torch]" '
                      '(from a clone: pip install -e ".[torch]")') from e

from sparsekit.convert.torch import accelerate, report, to_runtime  # noqa: E402

__all__ = ["accelerate", "report", "to_runtime"]
