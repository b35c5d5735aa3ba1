"""CSRLinear: an nn.Linear replacement running sparsekit.linear on a CSRMatrix.

bench-model uses it to run pruned torch models on sparsekit's kernels when
this build has no sparsekit.torch.accelerate. Inference only. Module-level
(not built inside a function) so torch.save(module) can pickle it; its packed
weight is a picklable CSRMatrix, which is what ends up on disk.
"""
import torch

import sparsekit


class CSRLinear(torch.nn.Module):
    def __init__(self, linear):
        super().__init__()
        self.w = sparsekit.CSRMatrix.from_dense(linear.weight.detach().numpy())
        self.b = None if linear.bias is None else linear.bias.detach().numpy().copy()
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad:
            raise RuntimeError("CSRLinear is inference-only (no autograd)")
        return torch.from_numpy(sparsekit.linear(x.detach().numpy(), self.w, self.b))

    def extra_repr(self):
        return repr(self.w)
