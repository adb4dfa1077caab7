"""nn.Linear with oneDNN's CPU kernel for inference: the same parameters and results, about twice the speed.

On CPU in float32, PyTorch's default linear (a BLAS sgemm) reaches about half of what oneDNN's kernel does
on the token counts CAST runs (17 to 197 rows): CAST-S's forward drops from ~44 ms to ~30 ms on 2 cores
(benchmarks/bench_forward.py). `FastLinear` uses that kernel (`torch.ops.mkldnn._linear_pointwise`, the
op PyTorch's own compiler emits for CPU) only where it is safe: CPU, float32, no autograd. Everything
else — training, CUDA, other dtypes, a PyTorch without the op — is the ordinary F.linear. Results agree
with F.linear to ~1e-6 (tests/test_model.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _onednn_linear_works() -> bool:
    """Whether this PyTorch has the oneDNN linear op and it agrees with F.linear (checked once, at import)."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        gen = torch.Generator().manual_seed(0)
        x, w, b = torch.randn(5, 8, generator=gen), torch.randn(4, 8, generator=gen), torch.randn(4, generator=gen)
        with torch.no_grad():
            return bool(torch.allclose(op(x, w, b, "none", [], ""), F.linear(x, w, b), atol=1e-5))
    except Exception:  # op missing, oneDNN not built in, or another signature: use F.linear
        return False


ONEDNN_LINEAR = _onednn_linear_works()


class FastLinear(nn.Linear):
    """An nn.Linear (same parameters, same state-dict keys) that runs oneDNN's kernel for CPU inference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = (
            ONEDNN_LINEAR
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))
        )
        if not fast:
            return F.linear(x, self.weight, self.bias)
        flat = x.reshape(-1, x.shape[-1])
        out = torch.ops.mkldnn._linear_pointwise(flat, self.weight, self.bias, "none", [], "")
        return out.reshape(*x.shape[:-1], out.shape[-1])


def use_fast_linear(module: nn.Module) -> nn.Module:
    """Turn every plain nn.Linear inside `module` (timm's blocks included) into a FastLinear, in place."""
    for sub in module.modules():
        if type(sub) is nn.Linear:
            sub.__class__ = FastLinear
    return module
