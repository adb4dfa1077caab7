"""The ViT baseline's hierarchy: spherical k-means on upsampled patch features, 64 -> 32 -> 16 -> 8 (spec §10.3).

As the official notebook (`save_segmentation_vit.ipynb`) does: features bilinearly upsampled x16 to one
vector per pixel; level 1 clusters the pixels from random initial labels; levels 2-4 cluster the
previous level's prototypes, and every pixel takes the label of its previous-level segment, so the
levels nest. Clusters that empty out are lost (the "64" level often has fewer segments).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

KMEANS_ITERATIONS = 30
LEVEL_CLUSTERS = (64, 32, 16, 8)


def prototypes(vectors: torch.Tensor, labels: torch.Tensor, num_clusters: int) -> torch.Tensor:
    """M-step: (K, C) L2-normalised sum of the vectors of each label; an empty cluster gives zeros."""
    sums = vectors.new_zeros(num_clusters, vectors.shape[1]).index_add_(0, labels, vectors)
    return F.normalize(sums, dim=1)


def spherical_kmeans(vectors: torch.Tensor, labels: torch.Tensor, iterations: int = KMEANS_ITERATIONS) -> torch.Tensor:
    """`kmeans_with_initial_labels`: alternate M-step and E-step (argmax dot product, first index on ties)."""
    num_clusters = int(labels.max()) + 1
    for _ in range(iterations):
        labels = (vectors @ prototypes(vectors, labels, num_clusters).T).argmax(dim=1)
    return labels


def relabel(labels: torch.Tensor) -> torch.Tensor:
    """Ids 0..n-1 in sorted order of the surviving clusters."""
    return torch.unique(labels, return_inverse=True)[1]


def pixel_features(token_features: torch.Tensor, grid: int, scale: int = 16) -> torch.Tensor:
    """(N, C) tokens of a grid x grid image -> (grid*scale)^2 x C pixel vectors (bilinear, align_corners False)."""
    channels = token_features.shape[-1]
    maps = token_features.reshape(1, grid, grid, channels).permute(0, 3, 1, 2)
    up = F.interpolate(maps, scale_factor=scale, mode="bilinear", align_corners=False)
    return up[0].permute(1, 2, 0).reshape(-1, channels)


def kmeans_hierarchy(
    token_features: torch.Tensor,
    *,
    grid: int = 14,
    scale: int = 16,
    clusters: tuple[int, ...] = LEVEL_CLUSTERS,
    seed: int = 0,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Cluster one image's (N, C) token features -> (pixel labels of level 1 (H, W), parents per level).

    parents[0] maps each level-1 segment to its level-2 segment, and so on; the seeded generator draws
    the initial labels of level 1, 2, 3, 4 in that order (spec §10.3 step 5).
    """
    generator = torch.Generator().manual_seed(seed)
    vectors = pixel_features(token_features.detach().float().cpu(), grid, scale)
    side = grid * scale
    initial = torch.randint(0, clusters[0], (vectors.shape[0],), generator=generator)
    level1 = relabel(spherical_kmeans(vectors, initial))
    previous, parents = level1, []
    for k in clusters[1:]:
        protos = prototypes(vectors, previous, int(previous.max()) + 1)
        initial = torch.randint(0, k, (protos.shape[0],), generator=generator)
        parent = relabel(spherical_kmeans(protos, initial))
        parents.append(parent)
        previous = parent[previous]
    return level1.reshape(side, side), parents
