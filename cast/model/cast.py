"""The CAST backbone: superpixel tokens, transformer stages and graph pooling (spec §2)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn

from .config import CastConfig
from .embed import conv_stem, labels_to_grid, resize_pos_grid, segment_mean, sincos_pos_table
from .linear import set_linear_kernel
from .pooling import GraphPooling


@dataclass
class CastOutput:
    """Every per-stage output of one forward pass (spec §2.8). Index l-1 holds stage l.

    Shapes for batch B, S superpixel tokens, width C and clusters K_l (S_0 = S, S_l = K_l):
    """

    blocks: tuple[torch.Tensor, ...]  # (B, S_{l-1}, C) tokens after stage l's blocks
    logits: tuple[torch.Tensor, ...]  # (B, S_{l-1}, K_l) assignment logits (5 x cosine)
    centroids: tuple[torch.Tensor, ...]  # (B, K_l, C) pooled segment tokens
    seeds: tuple[torch.Tensor, ...]  # (B, K_l) int64 FPS seed indices ("sampled_inds")
    padding_masks: tuple[torch.Tensor, ...]  # (B, S_{l-1}) bool, the mask that entered stage l
    cls_tokens: tuple[torch.Tensor, ...]  # (B, C) class token after pooling l
    embedding: torch.Tensor  # (B, C) "out4": normalised class token (or fused mean for cast_seg)
    class_logits: torch.Tensor | None  # (B, num_classes) head(embedding), None without a head

    @property
    def num_tokens(self) -> int:
        """S: the number of superpixel tokens (max id on the token grid + 1, over the batch)."""
        return self.logits[0].shape[1]

    def item(self, b: int) -> "CastOutput":
        """Image b of the batch as a batch of one (views, no copies)."""
        one = lambda tensors: tuple(t[b : b + 1] for t in tensors)  # noqa: E731
        return CastOutput(
            blocks=one(self.blocks), logits=one(self.logits), centroids=one(self.centroids), seeds=one(self.seeds),
            padding_masks=one(self.padding_masks), cls_tokens=one(self.cls_tokens), embedding=self.embedding[b : b + 1],
            class_logits=None if self.class_logits is None else self.class_logits[b : b + 1],
        )

    def assignments(self, level: int) -> torch.Tensor:
        """Soft assignment (B, S_{l-1}, K_l) of level l-1 segments to level-l parents."""
        return self.logits[level - 1].softmax(dim=-1)


class TokenBatchNorm(nn.Module):
    """BatchNorm1d over the channels of (B, T, C) tokens; key layout `*.norm.*` of cast_seg.py."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(tokens.transpose(1, 2)).transpose(1, 2)


class BlockFusion(nn.Module):
    """cast_seg.py's fusion of the four stages back onto the superpixel tokens (spec §2.9)."""

    def __init__(self, dim: int, num_stages: int) -> None:
        super().__init__()
        self.proj_blocks = nn.Sequential(TokenBatchNorm(dim * num_stages), nn.Dropout(0.2), nn.Linear(dim * num_stages, dim))

    def forward(self, out: "CastOutput") -> torch.Tensor:
        """Fused superpixel tokens (B, S, C); the class tokens are fused alongside, as in the official head."""
        fused = [out.blocks[0]]
        token_to_segment = out.logits[0].argmax(-1)  # (B, S)
        for level in range(1, len(out.blocks)):
            feats = out.blocks[level]
            fused.append(torch.gather(feats, 1, token_to_segment.unsqueeze(-1).expand(-1, -1, feats.shape[-1])))
            token_to_segment = torch.gather(out.logits[level].argmax(-1), 1, token_to_segment)
        cls = torch.cat([c.unsqueeze(1) for c in out.cls_tokens], dim=-1)
        rows = torch.cat([cls, torch.cat(fused, dim=-1)], dim=1)
        return self.proj_blocks(rows)[:, 1:]


class Cast(nn.Module):
    """CAST with the official parameter names, so official state dicts load after one key mapping.

    Each transformer block is stored once as `blocks.{j}` (global index j); stage l uses a slice.
    """

    def __init__(self, config: CastConfig, *, linear_kernel: str = "onednn") -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = nn.Module()
        self.patch_embed.proj = conv_stem(dim).to(memory_format=torch.channels_last)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        grid_cells = config.grid_size**2
        if config.pos_embed == "sincos":
            self.pos_embed = nn.Parameter(sincos_pos_table(dim, config.grid_size), requires_grad=False)
            self.pe_token = nn.Parameter(torch.zeros(1, 1, dim), requires_grad=False)
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid_cells + 1, dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        depth = sum(config.depths)
        drop_path = torch.linspace(0, config.drop_path_rate, depth).tolist()
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio, qkv_bias=True, drop_path=drop_path[j], norm_layer=norm)
            for j in range(depth)
        )
        for level, k in enumerate(config.num_clusters, start=1):
            stage = nn.Module()
            stage.pool_block = GraphPooling(dim, k, config.pool_num_heads, config.mlp_ratio)
            self.add_module(f"pool{level}", stage)
        if config.block_fusion:
            self.block_fusion = BlockFusion(dim, len(config.depths))
        else:
            self.norm = norm(dim)
        self.head = nn.Linear(dim, config.num_classes) if config.num_classes > 0 else None
        set_linear_kernel(self, linear_kernel)  # "onednn": oneDNN's CPU inference kernel (cast/model/linear.py)
        # The last pooling layer never receives a gradient: frozen, as the official constructors do (§2.7).
        if not config.block_fusion:
            for p in self.pools[-1].parameters():
                p.requires_grad_(False)
        nn.init.normal_(self.cls_token, std=1e-6)

    @property
    def pools(self) -> list[GraphPooling]:
        """The graph-pooling blocks, stage 1 first."""
        return [getattr(self, f"pool{level}").pool_block for level in range(1, len(self.config.depths) + 1)]

    def stage_blocks(self, stage: int) -> nn.ModuleList:
        """The transformer blocks of stage `stage` (0-based)."""
        start = sum(self.config.depths[:stage])
        return self.blocks[start : start + self.config.depths[stage]]

    def _pos_tables(self, grid_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(cls position (1, 1, C), grid table (1, h*w, C)); resized bicubically off the native grid."""
        if self.config.pos_embed == "sincos":
            return self.pe_token, resize_pos_grid(self.pos_embed, grid_hw)
        return self.pos_embed[:, :1], resize_pos_grid(self.pos_embed[:, 1:], grid_hw)

    def embed_tokens(self, images: torch.Tensor, superpixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stem + per-superpixel means (spec §2.4) -> (cls (B,1,C), tokens (B,S,C), padding (B,S) bool).

        The stem runs channels-last (oneDNN's native layout: about twice as fast on CPU, same values), which
        also makes the channel-last token grid below a free view."""
        feats = self.patch_embed.proj(images.contiguous(memory_format=torch.channels_last)).permute(0, 2, 3, 1)
        batch, h, w, dim = feats.shape
        cls_pos, grid_pos = self._pos_tables((h, w))
        labels = labels_to_grid(superpixels, (h, w)).reshape(batch, h * w)
        num_tokens = int(labels.max()) + 1
        tokens, counts = segment_mean(feats.reshape(batch, h * w, dim) + grid_pos, labels, num_tokens)
        cls = (self.cls_token + cls_pos).expand(batch, -1, -1)
        return cls, tokens, counts == 0

    def forward(self, images: torch.Tensor, superpixels: torch.Tensor) -> CastOutput:
        """images: (B, 3, H, W) normalised float; superpixels: (B, H', W') int64 ids, 0-based."""
        if images.dim() != 4 or superpixels.dim() != 3 or images.shape[0] != superpixels.shape[0]:
            raise ValueError(
                f"expected images (B,3,H,W) and superpixels (B,H,W); got {tuple(images.shape)} and {tuple(superpixels.shape)}"
            )
        cls, tokens, padding = self.embed_tokens(images, superpixels.long())
        outs: dict[str, list[torch.Tensor]] = {k: [] for k in ("blocks", "logits", "centroids", "seeds", "masks", "cls")}
        final_cls = cls
        for stage, pool in enumerate(self.pools):
            x = torch.cat([cls, tokens], dim=1)
            for block in self.stage_blocks(stage):
                x = block(x)
            cls, tokens = x[:, :1], x[:, 1:]
            final_cls = cls
            pooled = pool(cls, tokens, padding)
            outs["blocks"].append(tokens)
            outs["logits"].append(pooled.logits)
            outs["centroids"].append(pooled.tokens)
            outs["seeds"].append(pooled.seeds)
            outs["masks"].append(padding)
            outs["cls"].append(pooled.cls_token[:, 0])
            cls, tokens = pooled.cls_token, pooled.tokens
            padding = torch.zeros(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        result = CastOutput(
            blocks=tuple(outs["blocks"]),
            logits=tuple(outs["logits"]),
            centroids=tuple(outs["centroids"]),
            seeds=tuple(outs["seeds"]),
            padding_masks=tuple(outs["masks"]),
            cls_tokens=tuple(outs["cls"]),
            embedding=torch.empty(0),
            class_logits=None,
        )
        if self.config.block_fusion:
            result.embedding = self.block_fusion(result).mean(dim=1)
        else:
            # out4 is the class token after the stage-4 blocks, *before* pool4 (spec §2.7).
            result.embedding = self.norm(final_cls)[:, 0]
        if self.head is not None:
            result.class_logits = self.head(result.embedding)
        return result


def build_model(config: CastConfig | str, *, linear_kernel: str = "onednn", **overrides) -> Cast:
    """A randomly initialised CAST in eval mode, from a config or a registered variant name.

    `linear_kernel` is "onednn" (oneDNN's CPU inference kernel) or "default" (cast/model/linear.py)."""
    from .config import get_config

    cfg = get_config(config, **overrides) if isinstance(config, str) else config.with_(**overrides)
    return Cast(cfg, linear_kernel=linear_kernel).eval()
