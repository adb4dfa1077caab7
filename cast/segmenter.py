"""One entry point: image + model + superpixel settings -> Hierarchy (with timings and raw outputs)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from .errors import SuperpixelError
from .hierarchy import Hierarchy
from .image import InputConfig, ModelInput, load_image, prepare_input, to_tensor
from .model import Cast, CastOutput
from .superpixels import SuperpixelConfig, compute_superpixels, validate_for_model

DEFAULT_MAX_OUTPUT_PIXELS = 4_000_000  # label maps larger than this are computed at a reduced scale


@dataclass(frozen=True)
class SegmentResult:
    """A hierarchy plus what produced it: the model input, the raw model output and stage timings."""

    hierarchy: Hierarchy
    model_input: ModelInput
    superpixels: np.ndarray  # (size, size) ids on the model input
    output: CastOutput
    timings_ms: dict[str, float] = field(default_factory=dict)


def _upsample_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an int label map (used to map results back to the image)."""
    if labels.shape == (height, width):
        return labels
    return cv2.resize(labels.astype(np.int32), (width, height), interpolation=cv2.INTER_NEAREST)


def _output_canvas(rgb: np.ndarray, model_input: ModelInput, max_pixels: int) -> np.ndarray:
    """The part of the original image the hierarchy describes, capped at `max_pixels`."""
    x0, y0, x1, y1 = model_input.crop_box
    region = rgb[y0:y1, x0:x1]
    h, w = region.shape[:2]
    if h * w > max_pixels:
        scale = (max_pixels / (h * w)) ** 0.5
        region = cv2.resize(region, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(region)


class Segmenter:
    """Runs the CAST pipeline of the official notebooks: crop -> SEEDS -> forward -> hierarchy (spec §1, §4).

    Superpixels are computed on the model input (as in training) and mapped back with nearest
    neighbour to the original image's resolution (capped at `max_output_pixels`).
    """

    def __init__(
        self,
        model: Cast,
        superpixels: SuperpixelConfig | None = None,
        input_config: InputConfig | None = None,
        *,
        device: str | torch.device | None = None,
        max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        self.model = model.eval()
        self.superpixel_config = superpixels or SuperpixelConfig()
        self.input_config = input_config or InputConfig(size=model.config.img_size)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.max_output_pixels = max_output_pixels
        self.provenance = dict(provenance or {})

    def run(self, image: Any) -> Hierarchy:
        """Segment one image (path, bytes, PIL image or array) into a Hierarchy."""
        return self.run_detailed(image).hierarchy

    def run_detailed(self, image: Any) -> SegmentResult:
        """Like :meth:`run`, also returning the model input, raw outputs and per-stage timings (ms)."""
        timings: dict[str, float] = {}
        t = time.perf_counter()
        rgb = load_image(image)  # validates every source, arrays included (size limits, dtype, channels)
        model_input = prepare_input(rgb, self.input_config)
        timings["decode"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        superpixels = compute_superpixels(model_input.pixels, self.superpixel_config)
        validate_for_model(superpixels, grid=self.input_config.size // self.model.config.patch_size,
                           min_tokens=self.model.config.min_tokens, rgb=model_input.pixels)
        timings["superpixels"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        output = self.forward(model_input.pixels, superpixels)
        timings["forward"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        canvas = _output_canvas(rgb, model_input, self.max_output_pixels)
        full_res = _upsample_labels(superpixels, *canvas.shape[:2])
        hierarchy = self._hierarchy(output, full_res, canvas, model_input, superpixels)
        timings["hierarchy"] = (time.perf_counter() - t) * 1000
        return SegmentResult(hierarchy, model_input, superpixels, output, timings)

    def rerun(self, previous: SegmentResult) -> SegmentResult:
        """This segmenter's model on exactly the pixels and superpixels of an earlier result (fair comparisons)."""
        t = time.perf_counter()
        output = self.forward(previous.model_input.pixels, previous.superpixels)
        forward_ms = (time.perf_counter() - t) * 1000
        old = previous.hierarchy
        hierarchy = self._hierarchy(output, old.superpixels, old.image, previous.model_input, previous.superpixels)
        return SegmentResult(hierarchy, previous.model_input, previous.superpixels, output, {"forward": forward_ms})

    def _hierarchy(self, output: CastOutput, full_res: np.ndarray, canvas: np.ndarray | None,
                   model_input: ModelInput, superpixels: np.ndarray) -> Hierarchy:
        return Hierarchy.from_logits(
            full_res,
            [lg[0].float().cpu().numpy() for lg in output.logits],
            image=canvas,
            provenance=self.describe(model_input, superpixels),
        )

    @torch.inference_mode()
    def forward(self, pixels: np.ndarray, superpixels: np.ndarray) -> CastOutput:
        """One image through the model (batch 1, as official inference does: spec §2.4)."""
        images = to_tensor(pixels).to(self.device)
        labels = torch.from_numpy(superpixels.astype(np.int64))[None].to(self.device)
        try:
            return self.model(images, labels)
        except ValueError as err:  # too few distinct tokens for FPS (spec §3.3)
            raise SuperpixelError(str(err)) from err

    def describe(self, model_input: ModelInput, superpixels: np.ndarray) -> dict[str, Any]:
        """Provenance recorded in every hierarchy: model, superpixels, input geometry."""
        return {
            **self.provenance,
            "model_variant": self.model.config.name,
            "superpixels": {**self.superpixel_config.to_dict(), "count": int(superpixels.max()) + 1,
                            "description": self.superpixel_config.describe()},
            "input": {"size": self.input_config.size, "mode": self.input_config.mode,
                      "parity_with_official": self.input_config.mode == "center_crop" and self.input_config.size == 224,
                      "crop_box_xyxy": list(model_input.crop_box),
                      "original_hw": list(model_input.original_size)},
        }
