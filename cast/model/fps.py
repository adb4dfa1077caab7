"""Farthest-point sampling with the semantics of dgl's `farthest_point_sampler` (spec §3)."""
from __future__ import annotations

import numpy as np
import torch

# Distances below this fraction of the largest squared norm are rounding noise of the Gram form: they
# are exact zeros (duplicate points, e.g. padded tokens filled with the mean) and are treated as such.
ZERO_DISTANCE_RTOL = 1e-12


def pairwise_sq_distances(points: torch.Tensor) -> torch.Tensor:
    """(B, M, D) -> (B, M, M) squared Euclidean distances in float64, exact zeros kept exact."""
    pts = points.detach().to(torch.float64)
    gram = pts @ pts.transpose(1, 2)
    sq = gram.diagonal(dim1=1, dim2=2)
    dist = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * gram).clamp_(min=0.0)
    scale = sq.amax(dim=1, keepdim=True).unsqueeze(2)
    return dist.masked_fill_(dist <= ZERO_DISTANCE_RTOL * scale, 0.0)


def farthest_point_sample(points: torch.Tensor, num_samples: int, start_idx: int = 0) -> torch.Tensor:
    """Pick `num_samples` indices per batch row by farthest-point sampling.

    points: (B, M, D) float. Returns (B, num_samples) int64. As in dgl: squared Euclidean distances in
    float64, a running minimum to the chosen set, the lowest index wins ties, and once every distance
    is 0 the argmax falls back to index 0. Distances come from one Gram matrix (one matmul instead of
    an M x D pass per sample); they agree with the direct sum to ~1e-13 relative, so only exact ties
    matter, and those are resolved as dgl does.
    """
    if points.dim() != 3:
        raise ValueError(f"points must be (B, M, D), got shape {tuple(points.shape)}")
    batch, num_points, _ = points.shape
    if not 0 <= start_idx < num_points:
        raise ValueError(f"start_idx {start_idx} outside 0..{num_points - 1}")
    dist = pairwise_sq_distances(points)
    if dist.device.type == "cpu":
        return _sample_on_cpu(dist, num_samples, start_idx)
    rows = torch.arange(batch, device=points.device)
    picked = torch.empty(batch, num_samples, dtype=torch.int64, device=points.device)
    last = torch.full((batch,), start_idx, dtype=torch.int64, device=points.device)
    picked[:, 0] = last
    min_dist = dist[rows, last].clone()
    for i in range(1, num_samples):
        last = torch.argmax(min_dist, dim=1)  # torch.argmax returns the first maximal index
        picked[:, i] = last
        torch.minimum(min_dist, dist[rows, last], out=min_dist)
    return picked


def _sample_on_cpu(dist: torch.Tensor, num_samples: int, start_idx: int) -> torch.Tensor:
    """The same loop in NumPy: ~10x less overhead per step than torch ops on small CPU tensors."""
    distances = dist.numpy()
    picked = np.empty((distances.shape[0], num_samples), dtype=np.int64)
    for b, matrix in enumerate(distances):
        last = start_idx
        picked[b, 0] = last
        min_dist = matrix[last].copy()
        for i in range(1, num_samples):
            last = int(min_dist.argmax())  # NumPy's argmax returns the first maximal index, as dgl does
            picked[b, i] = last
            np.minimum(min_dist, matrix[last], out=min_dist)
    return torch.from_numpy(picked)
