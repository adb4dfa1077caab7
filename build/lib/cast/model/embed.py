"""Input side of CAST: the convolutional stem, the 2D sin-cos table and superpixel token pooling."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_stem(embed_dim: int, strides: tuple[int, ...] = (2, 2, 2, 1)) -> nn.Sequential:
    """Four 3x3 convs with BatchNorm+ReLU, then a 1x1 conv (spec §2.2; the ViT baseline's §10.1).

    Module indices match the official checkpoint keys `patch_embed.proj.{0..12}`. CAST's strides
    (2, 2, 2, 1) give (B, 3, H, W) -> (B, C, H/8, W/8); the ViT baseline's (2, 2, 2, 2) give H/16.
    """
    widths = [3, embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim]
    layers: list[nn.Module] = []
    for i, stride in enumerate(strides):
        layers += [
            nn.Conv2d(widths[i], widths[i + 1], 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(widths[i + 1]),
            nn.ReLU(inplace=True),
        ]
    layers.append(nn.Conv2d(embed_dim, embed_dim, 1))
    return nn.Sequential(*layers)


def sincos_pos_table(embed_dim: int, grid_size: int, temperature: float = 10000.0) -> torch.Tensor:
    """The fixed 2D table, (1, grid*grid, C). First half encodes the row, second the column (§2.3)."""
    quarter = embed_dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    coords = torch.arange(grid_size, dtype=torch.float32)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    out_r = rows.flatten()[:, None] * omega[None]
    out_c = cols.flatten()[:, None] * omega[None]
    table = torch.cat([out_r.sin(), out_r.cos(), out_c.sin(), out_c.cos()], dim=1)
    return table.unsqueeze(0)


def resize_pos_grid(grid_table: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Bicubically resize a square (1, G*G, C) table to grid_hw. Not parity: only for non-224 input."""
    _, n, c = grid_table.shape
    side = int(round(n**0.5))
    if (side, side) == tuple(grid_hw):
        return grid_table
    grid = grid_table.reshape(1, side, side, c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=grid_hw, mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, grid_hw[0] * grid_hw[1], c)


def labels_to_grid(superpixels: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Legacy-nearest resize of (B, H, W) labels: cell (i, j) takes pixel (floor(i*H/h), floor(j*W/w)).

    This is PyTorch's legacy `nearest` (spec §1.3): the top-left pixel of each cell at 224.
    """
    _, height, width = superpixels.shape
    gh, gw = grid_hw
    rows = torch.floor(torch.arange(gh, dtype=torch.float64) * (height / gh)).long().clamp_(max=height - 1)
    cols = torch.floor(torch.arange(gw, dtype=torch.float64) * (width / gw)).long().clamp_(max=width - 1)
    rows, cols = rows.to(superpixels.device), cols.to(superpixels.device)
    return superpixels[:, rows][:, :, cols]


def segment_mean(values: torch.Tensor, labels: torch.Tensor, num_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of `values` (B, P, C) over cells sharing a label in `labels` (B, P) int64.

    Returns (means (B, S, C), counts (B, S)); ids with no cell give a zero row and count 0 (§2.4).
    """
    batch, _, channels = values.shape
    sums = values.new_zeros(batch, num_segments, channels)
    sums.scatter_add_(1, labels.unsqueeze(-1).expand(-1, -1, channels), values)
    counts = torch.zeros(batch, num_segments, dtype=values.dtype, device=values.device)
    counts.scatter_add_(1, labels, torch.ones_like(labels, dtype=values.dtype))
    return sums / counts.clamp(min=1).unsqueeze(-1), counts
