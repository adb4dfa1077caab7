"""The records that travel through a Segmenter: an image ready for the model, and a finished result."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ..hierarchy import Hierarchy
from ..image import ModelInput
from ..model import CastOutput


@dataclass
class PreparedImage:
    """An image ready for the model: its input crop, the output canvas and, for CAST, its superpixels.

    `canvas` is the part of the original image the hierarchy describes (None when rerunning a result that
    kept no pixels); `canvas_shape` is its (H, W) either way. `token_count` is CAST's batching key (0 for
    the ViT baseline). `timings` collects per-stage milliseconds."""

    model_input: ModelInput
    canvas: np.ndarray | None
    canvas_shape: tuple[int, int]
    superpixels: np.ndarray | None
    token_count: int
    timings: dict[str, float]
    source_name: str | None = None
    source: str | None = None
    decoded_scale: int = 1


@dataclass(frozen=True)
class SegmentResult:
    """A hierarchy plus what produced it: the model input, the raw model output and stage timings.

    `superpixels` is the (size, size) id map on the model input (for the ViT baseline: its level-1
    k-means clusters); `output` is CAST's CastOutput, or the ViT's (1, N, C) token features.
    """

    hierarchy: Hierarchy
    model_input: ModelInput
    superpixels: np.ndarray
    output: CastOutput | torch.Tensor
    timings_ms: dict[str, float] = field(default_factory=dict)


def upsample_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an int label map (results are mapped back to the image this way)."""
    if labels.shape == (height, width):
        return labels
    return cv2.resize(labels.astype(np.int32), (width, height), interpolation=cv2.INTER_NEAREST)


def output_canvas(rgb: np.ndarray, model_input: ModelInput, max_pixels: int) -> np.ndarray:
    """The part of the original image the hierarchy describes, capped at `max_pixels`."""
    x0, y0, x1, y1 = model_input.crop_box
    region = rgb[y0:y1, x0:x1]
    h, w = region.shape[:2]
    if h * w > max_pixels:
        scale = (max_pixels / (h * w)) ** 0.5
        region = cv2.resize(region, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(region)
