"""The paper's ViT baseline: MoCo-v3 `vit_conv_small` / `vit_conv_base` (spec §10.1), tensors in, tensors out.

Patch-16 convolutional stem, a zero cls position plus the fixed 2D sin-cos table of the 14 x 14 grid,
timm pre-norm blocks (depth 11: the conv stem replaces one block), a final norm. Parameter names follow
the official checkpoints (`patch_embed.proj.*`, `blocks.{j}.*`, `norm.*`) so they load after stripping
the MoCo prefixes. The hierarchy of the comparison clusters `token_features` (cast.hierarchy.kmeans).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn

from ..errors import ConfigError
from .embed import conv_stem, sincos_pos_table
from .linear import set_linear_kernel


@dataclass(frozen=True)
class VitConfig:
    """Architecture of one ViT baseline."""

    name: str = "vit_conv_small"
    embed_dim: int = 384
    depth: int = 11
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    img_size: int = 224

    @property
    def grid_size(self) -> int:
        """Side of the patch grid (14 at 224 / 16)."""
        return self.img_size // self.patch_size

    def to_dict(self) -> dict:
        """JSON-friendly view."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "VitConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown VitConfig fields: {sorted(unknown)}")
        return cls(**data)

    def with_(self, **changes) -> "VitConfig":
        """A copy with some fields changed."""
        return replace(self, **changes)


VIT_CONFIGS = {
    "vit_conv_small": VitConfig(),
    "vit_conv_base": VitConfig(name="vit_conv_base", embed_dim=768),
}


class VitBaseline(nn.Module):
    """MoCo-v3 ViT with a conv stem; `token_features` is what the official notebook clusters (§10.2)."""

    def __init__(self, config: VitConfig, *, linear_kernel: str = "onednn") -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = nn.Module()
        self.patch_embed.proj = conv_stem(dim, strides=(2, 2, 2, 2))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        table = sincos_pos_table(dim, config.grid_size)
        self.pos_embed = nn.Parameter(torch.cat([torch.zeros(1, 1, dim), table], dim=1), requires_grad=False)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(config.depth)
        )
        self.norm = norm(dim)
        set_linear_kernel(self, linear_kernel)  # "onednn": oneDNN's CPU inference kernel (cast/model/linear.py)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, 224, 224) normalised -> (B, 197, C): cls + patch tokens after the last block."""
        feats = self.patch_embed.proj(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(feats.shape[0], -1, -1), feats], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return x

    def token_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 196, C): the last block's patch tokens, cls dropped, before the final norm (spec §10.2)."""
        return self.encode(images)[:, 1:]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The MoCo embedding (B, C): final norm of the cls token."""
        return self.norm(self.encode(images))[:, 0]


def build_vit(config: VitConfig | str, *, linear_kernel: str = "onednn", **overrides) -> VitBaseline:
    """A randomly initialised ViT baseline in eval mode, from a config or a registered name."""
    if isinstance(config, str):
        if config not in VIT_CONFIGS:
            raise ConfigError(f"unknown ViT baseline {config!r}; known: {', '.join(VIT_CONFIGS)}")
        config = VIT_CONFIGS[config]
    return VitBaseline(config.with_(**overrides) if overrides else config, linear_kernel=linear_kernel).eval()
