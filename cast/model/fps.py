"""Farthest-point sampling with the exact semantics of dgl's `farthest_point_sampler` (spec §3)."""
from __future__ import annotations

import torch


def farthest_point_sample(points: torch.Tensor, num_samples: int, start_idx: int = 0) -> torch.Tensor:
    """Pick `num_samples` indices per batch row by farthest-point sampling.

    points: (B, M, D) float (computed in float64, as the official code does).
    Returns (B, num_samples) int64. Distances are squared Euclidean; the lowest index wins ties;
    once every distance is 0 the argmax falls back to index 0 (dgl's behaviour).
    """
    if points.dim() != 3:
        raise ValueError(f"points must be (B, M, D), got shape {tuple(points.shape)}")
    batch, num_points, _ = points.shape
    if not 0 <= start_idx < num_points:
        raise ValueError(f"start_idx {start_idx} outside 0..{num_points - 1}")
    pts = points.detach().to(torch.float64)
    rows = torch.arange(batch, device=pts.device)
    picked = torch.empty(batch, num_samples, dtype=torch.int64, device=pts.device)
    last = torch.full((batch,), start_idx, dtype=torch.int64, device=pts.device)
    picked[:, 0] = last
    min_dist = None
    for i in range(1, num_samples):
        diff = pts - pts[rows, last].unsqueeze(1)
        dist = (diff * diff).sum(-1)
        min_dist = dist if min_dist is None else torch.minimum(min_dist, dist)
        last = torch.argmax(min_dist, dim=1)  # torch.argmax returns the first maximal index
        picked[:, i] = last
    return picked
