"""One entry point: image + model + superpixel settings -> Hierarchy (with timings and raw outputs).

`Segmenter(model).run(image)` runs the official notebooks' pipeline for CAST (crop -> SEEDS -> forward ->
hierarchy, spec §1, §4) and, for the paper's ViT baseline, the official clustering of its patch features
(crop -> forward -> spherical k-means 64 -> 32 -> 16 -> 8, spec §10) into the same Hierarchy type.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch
from torch import nn

from .errors import CastError, SuperpixelError
from .hierarchy import Hierarchy
from .hierarchy.kmeans import kmeans_hierarchy
from .image import InputConfig, ModelInput, in_original_coordinates, prepare_input, read_image, to_tensor
from .model import Cast, CastOutput, VitBaseline
from .superpixels import SuperpixelConfig, compute_superpixels, validate_for_model

DEFAULT_MAX_OUTPUT_PIXELS = 4_000_000  # label maps larger than this are computed at a reduced scale


def token_count(superpixels: np.ndarray, grid: int) -> int:
    """CAST's token count for a superpixel map: 1 + the largest id left on the grid x grid token grid (§1.3)."""
    height, width = superpixels.shape
    rows, cols = (np.arange(grid) * height) // grid, (np.arange(grid) * width) // grid
    return int(superpixels[np.ix_(rows, cols)].max()) + 1


@dataclass
class PreparedImage:
    """An image ready for the model: its input crop, output canvas, superpixels (CAST) and token count."""

    model_input: ModelInput
    canvas: np.ndarray
    superpixels: np.ndarray | None
    token_count: int
    timings: dict[str, float]
    extra: dict[str, Any]


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
        return self._finish_one(self.prepare(image, name=name))

    def run_many(self, images: Iterable[Any], *, names: Iterable[str | None] | None = None,
                 batch_size: int = 8) -> Iterator[tuple[int, SegmentResult | CastError]]:
        """Segment many images, batching CAST's forward pass where token counts allow (spec §2.4).

        Yields (position, result) in input order as soon as results are ready; an image that cannot be
        read or segmented yields its CastError instead. Only images with the same token count share a
        batch, so every result equals a one-at-a-time run's; at most `batch_size` prepared images are
        held at once (pending ones wait for their batch, flushed before memory grows)."""
        names = list(names) if names is not None else None
        pending: dict[int, list[tuple[int, PreparedImage]]] = {}
        done: dict[int, SegmentResult | CastError] = {}
        next_out = 0
        held = 0
        for position, image in enumerate(images):
            try:
                prepared = self.prepare(image, name=names[position] if names else None)
                if self.is_vit or batch_size <= 1:
                    done[position] = self._try(self._finish_one, prepared)
                else:
                    group = pending.setdefault(prepared.token_count, [])
                    group.append((position, prepared))
                    held += 1
                    if len(group) >= batch_size:
                        done.update(self._finish_batch(pending.pop(prepared.token_count)))
                        held -= len(group)
                    elif held >= batch_size:  # many token counts at once: flush the oldest waiting images
                        oldest = min(pending, key=lambda k: pending[k][0][0])
                        held -= len(pending[oldest])
                        done.update(self._finish_batch(pending.pop(oldest)))
            except CastError as err:
                done[position] = err
            while next_out in done:
                yield next_out, done.pop(next_out)
                next_out += 1
        for group in list(pending.values()):
            done.update(self._finish_batch(group))
        while next_out in done:
            yield next_out, done.pop(next_out)
            next_out += 1

    def prepare(self, image: Any, *, name: str | None = None) -> "PreparedImage":
        """Decode, crop, and (for CAST) compute and check the superpixels: everything before the model."""
        timings: dict[str, float] = {}
        t = time.perf_counter()
        # validates every source, arrays included (size limits, dtype, channels); large files decode reduced
        read = read_image(image, name=name, reduction=self.reduction_for)
        model_input = prepare_input(read.rgb, self.input_config)
        canvas = _output_canvas(read.rgb, model_input, self.max_output_pixels)
        model_input = in_original_coordinates(model_input, read.original_size)
        timings["decode"] = (time.perf_counter() - t) * 1000
        extra = {"source_name": read.name, "source": read.describe(), "decoded_scale": read.scale}
        if self.is_vit:
            return PreparedImage(model_input, canvas, None, 0, timings, extra)
        t = time.perf_counter()
        superpixels = compute_superpixels(model_input.pixels, self.superpixel_config)
        grid = self.input_config.size // self.model.config.patch_size
        validate_for_model(superpixels, grid=grid, min_tokens=self.model.config.min_tokens, rgb=model_input.pixels)
        timings["superpixels"] = (time.perf_counter() - t) * 1000
        return PreparedImage(model_input, canvas, superpixels, token_count(superpixels, grid), timings, extra)

    def finish(self, prepared: "PreparedImage", output: CastOutput) -> SegmentResult:
        """The hierarchy of one prepared image from its (batch-of-one) model output."""
        t = time.perf_counter()
        hierarchy = Hierarchy.from_logits(
            _upsample_labels(prepared.superpixels, *prepared.canvas.shape[:2]),
            [lg[0].float().cpu().numpy() for lg in output.logits],
            image=prepared.canvas,
            provenance={**self.describe(prepared.model_input, prepared.superpixels), **prepared.extra},
        )
        timings = {**prepared.timings, "hierarchy": (time.perf_counter() - t) * 1000}
        return SegmentResult(hierarchy, prepared.model_input, prepared.superpixels, output, timings)

    @torch.inference_mode()
    def forward_batch(self, prepared: Sequence["PreparedImage"]) -> list[CastOutput]:
        """One forward pass over images of equal token count; returns each image's batch-of-one output."""
        if len({p.token_count for p in prepared}) != 1:
            raise ValueError("images of a batch must share one token count (their results would change, spec §2.4)")
        images = torch.cat([to_tensor(p.model_input.pixels) for p in prepared]).to(self.device)
        labels = torch.from_numpy(np.stack([p.superpixels.astype(np.int64) for p in prepared])).to(self.device)
        try:
            output = self.model(images, labels)
        except ValueError as err:  # too few distinct tokens for FPS (spec §3.3)
            raise SuperpixelError(str(err)) from err
        return [output.item(b) for b in range(len(prepared))]

    def _timed_forward(self, prepared: "PreparedImage") -> CastOutput:
        t = time.perf_counter()
        output = self.forward(prepared.model_input.pixels, prepared.superpixels)
        prepared.timings["forward"] = (time.perf_counter() - t) * 1000
        return output

    def _finish_one(self, prepared: "PreparedImage") -> SegmentResult:
        if self.is_vit:
            return self._segment_vit(prepared.model_input, prepared.canvas, prepared.canvas.shape[:2],
                                     prepared.timings, prepared.extra)
        return self.finish(prepared, self._timed_forward(prepared))

    def _finish_batch(self, group: list[tuple[int, "PreparedImage"]]) -> dict[int, SegmentResult | CastError]:
        """Results of a batch; when the batch fails, each image is tried alone, so one image's error stays its own."""
        t = time.perf_counter()
        try:
            outputs = self.forward_batch([p for _, p in group])
        except CastError:
            return {position: self._try(self._finish_one, prepared) for position, prepared in group}
        per_image = (time.perf_counter() - t) * 1000 / len(group)
        results: dict[int, SegmentResult | CastError] = {}
        for (position, prepared), output in zip(group, outputs):
            prepared.timings["forward"] = per_image
            results[position] = self._try(self.finish, prepared, output)
        return results

    @staticmethod
    def _try(fn, *args) -> SegmentResult | CastError:
        try:
            return fn(*args)
        except CastError as err:
            return err

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
        """An earlier result's pixels (and superpixels) through this model (rerun)."""
        shape = canvas.shape[:2] if canvas is not None else canvas_shape
        if self.is_vit:
            return self._segment_vit(model_input, canvas, shape, timings, extra or {})
        grid = self.input_config.size // self.model.config.patch_size
        prepared = PreparedImage(model_input, canvas if canvas is not None else np.zeros((*shape, 3), np.uint8),
                                 superpixels, token_count(superpixels, grid), timings, extra or {})
        result = self.finish(prepared, self._timed_forward(prepared))
        if canvas is None:
            result.hierarchy.image = None
        return result

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
