"""Graph pooling: merge S' tokens into K segments by FPS seeds and soft cosine assignment (spec §2.6)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention
from torch import nn

from .fps import farthest_point_sample

ASSIGNMENT_TEMPERATURE = 5.0  # logits are 5 x cosine; a constant, not learned (spec §2.6 step 5)


class CentroidFeatures(nn.Module):
    """`centroid_fc`: attention residual only (no MLP), then per-channel centring plus a bias."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=True)
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, S, C) -> grouping features (B, S, C); the mean runs over all S rows."""
        h = tokens + self.attn(self.norm(tokens))
        return h - h.mean(dim=1, keepdim=True) + self.bias


@dataclass
class PoolResult:
    """What one pooling stage returns; shapes for batch B, S' input tokens and K clusters."""

    cls_token: torch.Tensor  # (B, 1, C) pooled class token
    tokens: torch.Tensor  # (B, K, C) segment tokens ("centroid")
    logits: torch.Tensor  # (B, S', K) 5 x cosine assignment logits
    seeds: torch.Tensor  # (B, K) int64 FPS seed index of each segment


class GraphPooling(nn.Module):
    """One pooling block with the official key layout `pool{l}.pool_block.*`."""

    def __init__(self, dim: int, num_clusters: int, num_heads: int = 12, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.num_clusters = num_clusters
        self.centroid_fc = CentroidFeatures(dim, num_heads)
        # LayerNorm eps is PyTorch's default 1e-5 here, unlike everywhere else (spec §8.9).
        self.fc1 = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden))
        self.fc2 = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(0.1)

    def forward(self, cls_token: torch.Tensor, tokens: torch.Tensor, padding: torch.Tensor) -> PoolResult:
        """cls_token (B, 1, C), tokens (B, S', C), padding (B, S') bool -> PoolResult."""
        seeds = self.sample_seeds(tokens, padding)
        feats = self.centroid_fc(tokens)
        unit = F.normalize(feats, dim=-1)
        seed_unit = torch.gather(unit, 1, seeds.unsqueeze(-1).expand(-1, -1, unit.shape[-1]))
        logits = ASSIGNMENT_TEMPERATURE * unit @ seed_unit.transpose(1, 2)
        assign = logits.softmax(dim=-1)

        hidden = self.drop(F.gelu(self.fc1(torch.cat([cls_token, tokens], dim=1))))
        cls_hidden, tok_hidden = hidden[:, :1], hidden[:, 1:]
        mass = assign.sum(dim=1).unsqueeze(-1)  # (B, K, 1) soft column mass
        cluster_hidden = (assign.transpose(1, 2) @ tok_hidden) / mass
        out = self.fc2(torch.cat([cls_hidden, cluster_hidden], dim=1))
        seed_tokens = torch.gather(tokens, 1, seeds.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        return PoolResult(
            cls_token=cls_token + out[:, :1],
            tokens=seed_tokens + out[:, 1:],
            logits=logits,
            seeds=seeds,
        )

    @torch.no_grad()
    def sample_seeds(self, tokens: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """FPS over [mean point; tokens with padded rows replaced by the mean] (steps 1-3)."""
        valid = (~padding).unsqueeze(-1).to(tokens.dtype)
        mean = (tokens * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp(min=1)
        filled = torch.where(padding.unsqueeze(-1), mean, tokens)
        picked = farthest_point_sample(torch.cat([mean, filled], dim=1), self.num_clusters + 1)
        seeds = picked[:, 1:] - 1
        if bool((seeds < 0).any()):
            raise ValueError(
                f"graph pooling needs more than {self.num_clusters} distinct valid tokens; "
                "the image has too few distinct superpixels (constant or tiny image?)"
            )
        return seeds
