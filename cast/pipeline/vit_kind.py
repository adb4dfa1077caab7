"""The paper's ViT baseline (spec §10): patch features, then the official notebook's spherical k-means tree."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from ..hierarchy import Grouping, Hierarchy, SegmentationProvenance
from ..hierarchy.kmeans import kmeans_hierarchy
from ..image import to_tensor
from ..model import VitBaseline
from .records import PreparedImage, upsample_labels


class VitKind:
    """The ViT baseline: no superpixels; k-means 64 -> 32 -> 16 -> 8 of the last block's patch tokens."""

    base_name = "k-means clusters"
    batchable = False  # k-means runs per image; the forward pass is cheap next to it

    def __init__(self, model: VitBaseline, kmeans_seed: int, device: torch.device) -> None:
        self.model, self.kmeans_seed, self.device = model, kmeans_seed, device

    def group(self, pixels: np.ndarray) -> tuple[None, int]:
        return None, 0

    def count_tokens(self, labels: np.ndarray | None) -> int:
        return 0  # not batched by token count

    @torch.inference_mode()
    def forward(self, batch: Sequence[PreparedImage]) -> list[torch.Tensor]:
        """(1, 196, C) patch features of each image (spec §10.2)."""
        return [self.model.token_features(to_tensor(p.model_input.pixels).to(self.device)) for p in batch]

    def grouping(self, level0: np.ndarray) -> Grouping:
        description = ("ViT baseline: no superpixels; spherical k-means of the patch features "
                       f"(64 -> 32 -> 16 -> 8, seed {self.kmeans_seed}, official notebook)")
        return Grouping("vit_kmeans", int(level0.max()) + 1, description, {"kmeans_seed": self.kmeans_seed})

    def build(self, prepared: PreparedImage, features: torch.Tensor,
              provenance_for: Callable[[np.ndarray], SegmentationProvenance]) -> tuple[Hierarchy, np.ndarray]:
        """The k-means hierarchy of one image, and its level-1 clusters on the model input."""
        config = self.model.config
        level1, parents = kmeans_hierarchy(features[0], grid=config.grid_size, scale=config.patch_size,
                                           seed=self.kmeans_seed)
        level1 = level1.numpy()
        identity = np.arange(int(level1.max()) + 1)
        hierarchy = Hierarchy.from_parents(
            upsample_labels(level1, *prepared.canvas_shape), [identity, *(p.numpy() for p in parents)],
            image=prepared.canvas, provenance=provenance_for(level1), base_name=self.base_name,
        )
        return hierarchy, level1
