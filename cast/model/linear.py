"""The linear-layer kernel of a model: PyTorch's default, or oneDNN's CPU kernel for inference.

On CPU in float32, PyTorch's default linear (a BLAS sgemm) reaches about half of what oneDNN's kernel does
on the token counts CAST runs (17 to 197 rows): CAST-S's forward drops from ~44 ms to ~28 ms on 2 cores
(benchmarks/bench_forward.py). The choice is the model's, explicit and visible: `model.linear_kernel` is
"onednn" or "default", and `set_linear_kernel(model, kernel)` switches it by replacing the model's
`nn.Linear` modules (timm's blocks included) with modules of the other kind that share the same
parameters, so state-dict keys, optimizers and results stay the same. Models are built with "onednn"
(inference is what the library does most); the training engine switches to "default".

Even when chosen, `OneDnnLinear` runs oneDNN's op (`torch.ops.mkldnn._linear_pointwise`, the op PyTorch's
own compiler emits for CPU) only where it is safe: CPU, float32, no autograd, and a PyTorch whose op
exists and agrees with F.linear. Anything else goes through F.linear. Both kernels agree to ~1e-6
(tests/test_model.py).
"""
from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

LINEAR_KERNELS = ("onednn", "default")


@cache
def onednn_linear_available() -> bool:
    """Whether this PyTorch has the oneDNN linear op and it agrees with F.linear (checked once per process)."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        gen = torch.Generator().manual_seed(0)
        x, w, b = torch.randn(5, 8, generator=gen), torch.randn(4, 8, generator=gen), torch.randn(4, generator=gen)
        with torch.no_grad():
            return bool(torch.allclose(op(x, w, b, "none", [], ""), F.linear(x, w, b), atol=1e-5))
    except Exception:  # op missing, oneDNN not built in, or another signature: use F.linear
        return False


class OneDnnLinear(nn.Linear):
    """An nn.Linear (same parameters, same state-dict keys) that runs oneDNN's kernel for CPU inference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))
            and onednn_linear_available()
        )
        if not fast:
            return F.linear(x, self.weight, self.bias)
        flat = x.reshape(-1, x.shape[-1])
        out = torch.ops.mkldnn._linear_pointwise(flat, self.weight, self.bias, "none", [], "")
        return out.reshape(*x.shape[:-1], out.shape[-1])


_KERNEL_CLASSES = {"onednn": OneDnnLinear, "default": nn.Linear}


def set_linear_kernel(module: nn.Module, kernel: str) -> nn.Module:
    """Run every linear layer inside `module` with `kernel` ("onednn" or "default"); returns `module`.

    Each nn.Linear is replaced by a module of the chosen class holding the very same parameters, and
    `module.linear_kernel` records the choice."""
    if kernel not in _KERNEL_CLASSES:
        raise ConfigError(f"linear kernel must be one of {LINEAR_KERNELS}, got {kernel!r}")
    target = _KERNEL_CLASSES[kernel]
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in (nn.Linear, OneDnnLinear) and type(child) is not target:
                replacement = target(child.in_features, child.out_features, bias=child.bias is not None, device="meta")
                replacement.weight = child.weight
                replacement.bias = child.bias
                replacement.train(child.training)
                setattr(parent, name, replacement)
    module.linear_kernel = kernel
    return module
