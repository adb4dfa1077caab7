"""One entry point: image + model + superpixel settings -> Hierarchy (with timings and raw outputs).

`Segmenter(model).run(image)` runs the official notebooks' pipeline for CAST (crop -> SEEDS -> forward ->
hierarchy, spec §1, §4) and, for the paper's ViT baseline, the official clustering of its patch features
(crop -> forward -> spherical k-means 64 -> 32 -> 16 -> 8, spec §10) into the same Hierarchy type.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from .errors import SuperpixelError
from .hierarchy import Hierarchy
from .hierarchy.kmeans import kmeans_hierarchy
from .image import InputConfig, ModelInput, in_original_coordinates, prepare_input, read_image, to_tensor
from .model import Cast, CastOutput, VitBaseline
from .superpixels import SuperpixelConfig, compute_superpixels, validate_for_model

DEFAULT_MAX_OUTPUT_PIXELS = 4_000_000  # label maps larger than this are computed at a reduced scale


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


def recorded_superpixels(model: nn.Module) -> SuperpixelConfig | None:
    """The superpixel setting recorded with a model's weights (`model.pretrained_cfg`), if any."""
    recorded = (getattr(model, "pretrained_cfg", None) or {}).get("superpixels")
    return recorded if isinstance(recorded, SuperpixelConfig) else None


class Segmenter:
    """Runs one model over images: CAST (spec §1, §4) or the ViT baseline (spec §10).

    Superpixels default to the setting recorded with the weights (a DeiT checkpoint gets the DeiT SEEDS
    setting), else the official MoCo one. They are computed on the model input (as in training) and
    mapped back with nearest neighbour to the original image's resolution (capped at `max_output_pixels`).
    """

    def __init__(
        self,
        model: Cast | VitBaseline,
        superpixels: SuperpixelConfig | None = None,
        input_config: InputConfig | None = None,
        *,
        device: str | torch.device | None = None,
        max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS,
        provenance: dict[str, Any] | None = None,
        kmeans_seed: int = 0,
    ) -> None:
        self.model = model.eval()
        self.is_vit = isinstance(model, VitBaseline)
        default = None if self.is_vit else (recorded_superpixels(model) or SuperpixelConfig.official())
        self.superpixel_config = default if superpixels is None or self.is_vit else superpixels
        self.input_config = input_config or InputConfig(size=model.config.img_size)
        if self.is_vit and (self.input_config.size != model.config.img_size):
            raise SuperpixelError(f"the ViT baseline runs at {model.config.img_size} px only (spec §10)")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.max_output_pixels = max_output_pixels
        self.provenance = dict(provenance or {})
        self.kmeans_seed = kmeans_seed

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **options: Any) -> "Segmenter":
        """A zoo name or a checkpoint file, with the superpixel setting recorded with its weights."""
        from .api import load_model

        device = options.pop("device", None)
        model = load_model(name_or_path, device=device)
        cfg = model.pretrained_cfg
        provenance = {"checkpoint": cfg.get("zoo_name") or cfg.get("source"), **options.pop("provenance", {})}
        return cls(model, provenance=provenance, device=device, **options)

    def run(self, image: Any, *, name: str | None = None) -> Hierarchy:
        """Segment one image (path, bytes, PIL image or array) into a Hierarchy; `name` is used in messages."""
        return self.run_detailed(image, name=name).hierarchy

    def run_detailed(self, image: Any, *, name: str | None = None) -> SegmentResult:
        """Like :meth:`run`, also returning the model input, raw outputs and per-stage timings (ms)."""
        timings: dict[str, float] = {}
        t = time.perf_counter()
        # validates every source, arrays included (size limits, dtype, channels); large files decode reduced
        read = read_image(image, name=name, reduction=self.reduction_for)
        model_input = prepare_input(read.rgb, self.input_config)
        canvas = _output_canvas(read.rgb, model_input, self.max_output_pixels)
        model_input = in_original_coordinates(model_input, read.original_size)
        timings["decode"] = (time.perf_counter() - t) * 1000
        source = {"source_name": read.name, "source": read.describe(), "decoded_scale": read.scale}
        return self._segment(model_input, canvas, timings, extra=source)

    def reduction_for(self, width: int, height: int) -> int:
        """How much smaller a (width x height) image may be decoded: 1, 2, 4 or 8.

        Only when the part the hierarchy describes still has `max_output_pixels` and the model input is
        resized from at least twice its size; ordinary photos (up to ~20 MP) always decode in full."""
        side = min(width, height)
        region = side * side if self.input_config.mode == "center_crop" else width * height
        factor = 1
        for f in (2, 4, 8):
            if region / (f * f) >= self.max_output_pixels and side / f >= 2 * self.input_config.size:
                factor = f
        return factor

    def rerun(self, previous: SegmentResult) -> SegmentResult:
        """This segmenter's model on exactly the pixels (and, for CAST, superpixels) of an earlier result."""
        reuse = None if self.is_vit else previous.superpixels
        prov = previous.hierarchy.provenance
        extra = {k: prov[k] for k in ("source_name", "source", "decoded_scale") if k in prov}
        return self._segment(previous.model_input, previous.hierarchy.image, {}, superpixels=reuse,
                             canvas_shape=previous.hierarchy.shape, extra=extra)

    def _segment(self, model_input: ModelInput, canvas: np.ndarray | None, timings: dict[str, float], *,
                 superpixels: np.ndarray | None = None, canvas_shape: tuple[int, int] | None = None,
                 extra: dict[str, Any] | None = None) -> SegmentResult:
        shape = canvas.shape[:2] if canvas is not None else canvas_shape
        if self.is_vit:
            return self._segment_vit(model_input, canvas, shape, timings, extra or {})
        if superpixels is None:
            t = time.perf_counter()
            superpixels = compute_superpixels(model_input.pixels, self.superpixel_config)
            validate_for_model(superpixels, grid=self.input_config.size // self.model.config.patch_size,
                               min_tokens=self.model.config.min_tokens, rgb=model_input.pixels)
            timings["superpixels"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        output = self.forward(model_input.pixels, superpixels)
        timings["forward"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        hierarchy = Hierarchy.from_logits(
            _upsample_labels(superpixels, *shape),
            [lg[0].float().cpu().numpy() for lg in output.logits],
            image=canvas,
            provenance={**self.describe(model_input, superpixels), **(extra or {})},
        )
        timings["hierarchy"] = (time.perf_counter() - t) * 1000
        return SegmentResult(hierarchy, model_input, superpixels, output, timings)

    def _segment_vit(self, model_input: ModelInput, canvas: np.ndarray | None, shape: tuple[int, int],
                     timings: dict[str, float], extra: dict[str, Any]) -> SegmentResult:
        t = time.perf_counter()
        with torch.inference_mode():
            features = self.model.token_features(to_tensor(model_input.pixels).to(self.device))
        timings["forward"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        grid = self.model.config.grid_size
        level1, parents = kmeans_hierarchy(features[0], grid=grid, scale=self.model.config.patch_size,
                                           seed=self.kmeans_seed)
        level1 = level1.numpy()
        identity = np.arange(int(level1.max()) + 1)
        hierarchy = Hierarchy.from_parents(
            _upsample_labels(level1, *shape), [identity, *(p.numpy() for p in parents)], image=canvas,
            provenance={**self.describe(model_input, level1), **extra}, base_name="k-means clusters",
        )
        timings["hierarchy"] = (time.perf_counter() - t) * 1000
        return SegmentResult(hierarchy, model_input, level1, features, timings)

    @torch.inference_mode()
    def forward(self, pixels: np.ndarray, superpixels: np.ndarray) -> CastOutput:
        """One image through CAST (batch 1, as official inference does: spec §2.4)."""
        images = to_tensor(pixels).to(self.device)
        labels = torch.from_numpy(superpixels.astype(np.int64))[None].to(self.device)
        try:
            return self.model(images, labels)
        except ValueError as err:  # too few distinct tokens for FPS (spec §3.3)
            raise SuperpixelError(str(err)) from err

    def describe(self, model_input: ModelInput, superpixels: np.ndarray) -> dict[str, Any]:
        """Provenance recorded in every hierarchy: model, superpixels (or clustering), input geometry."""
        if self.is_vit:
            grouping = {"method": "vit_kmeans", "count": int(superpixels.max()) + 1, "kmeans_seed": self.kmeans_seed,
                        "description": "ViT baseline: no superpixels; spherical k-means of the patch features "
                                       f"(64 -> 32 -> 16 -> 8, seed {self.kmeans_seed}, official notebook)"}
        else:
            grouping = {**self.superpixel_config.to_dict(), "count": int(superpixels.max()) + 1,
                        "description": self.superpixel_config.describe()}
        return {
            **self.provenance,
            "model_variant": self.model.config.name,
            "superpixels": grouping,
            "input": {"size": self.input_config.size, "mode": self.input_config.mode,
                      "parity_with_official": self.input_config.mode == "center_crop" and self.input_config.size == 224,
                      "crop_box_xyxy": list(model_input.crop_box),
                      "original_hw": list(model_input.original_size)},
        }
