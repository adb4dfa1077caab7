"""CAST's pipeline (spec §1, §4): superpixels on the model input, a forward pass, the argmax tree."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import SuperpixelError
from ..hierarchy import Grouping, Hierarchy, SegmentationProvenance
from ..image import to_tensor
from ..model import Cast, CastOutput
from ..superpixels import SuperpixelConfig, compute_superpixels, validate_for_model
from .records import PreparedImage, upsample_labels


def token_count(superpixels: np.ndarray, grid: int) -> int:
    """CAST's token count for a superpixel map: 1 + the largest id left on the grid x grid token grid (§1.3)."""
    height, width = superpixels.shape
    rows, cols = (np.arange(grid) * height) // grid, (np.arange(grid) * width) // grid
    return int(superpixels[np.ix_(rows, cols)].max()) + 1


class CastKind:
    """CAST: SEEDS / SLIC superpixels are its tokens; images of equal token count share a batch (spec §2.4)."""

    base_name = "superpixels"
    batchable = True

    def __init__(self, model: Cast, superpixels: SuperpixelConfig, input_size: int, device: torch.device) -> None:
        self.model, self.superpixels, self.device = model, superpixels, device
        self.grid = input_size // model.config.patch_size

    def group(self, pixels: np.ndarray) -> tuple[np.ndarray, int]:
        """Superpixels of the (size, size, 3) model input, checked for enough tokens, and their token count."""
        labels = compute_superpixels(pixels, self.superpixels)
        validate_for_model(labels, grid=self.grid, min_tokens=self.model.config.min_tokens, rgb=pixels)
        return labels, self.count_tokens(labels)

    def count_tokens(self, labels: np.ndarray) -> int:
        """The batching key of a superpixel map on this model's token grid."""
        return token_count(labels, self.grid)

    @torch.inference_mode()
    def forward(self, batch: Sequence[PreparedImage]) -> list[CastOutput]:
        """One forward pass over images of one token count; each image's batch-of-one output."""
        if len({p.token_count for p in batch}) != 1:
            raise SuperpixelError("images of a batch must share one token count (their results would change, spec §2.4)")
        images = torch.cat([to_tensor(p.model_input.pixels) for p in batch]).to(self.device)
        labels = torch.from_numpy(np.stack([p.superpixels.astype(np.int64) for p in batch])).to(self.device)
        try:
            output = self.model(images, labels)
        except ValueError as err:  # too few distinct tokens for FPS (spec §3.3)
            raise SuperpixelError(str(err)) from err
        return [output.item(b) for b in range(len(batch))]

    def grouping(self, level0: np.ndarray) -> Grouping:
        settings = {k: v for k, v in self.superpixels.to_dict().items() if k != "method"}
        return Grouping(self.superpixels.method, int(level0.max()) + 1, self.superpixels.describe(), settings)

    def build(self, prepared: PreparedImage, output: CastOutput,
              provenance_for: Callable[[np.ndarray], SegmentationProvenance]) -> tuple[Hierarchy, np.ndarray]:
        """The hierarchy of one image from its batch-of-one output, and its level-0 map on the model input."""
        hierarchy = Hierarchy.from_logits(
            upsample_labels(prepared.superpixels, *prepared.canvas_shape),
            [lg[0].float().cpu().numpy() for lg in output.logits],
            image=prepared.canvas,
            provenance=provenance_for(prepared.superpixels),
        )
        return hierarchy, prepared.superpixels
