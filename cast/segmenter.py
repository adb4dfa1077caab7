"""One entry point: image + model + settings -> Hierarchy (with timings and raw outputs).

`Segmenter(model).run(image)` reads the image, frames the model input, and hands the rest to the
strategy of the model's kind (`cast.pipeline`): for CAST the official notebooks' pipeline (SEEDS ->
forward -> hierarchy, spec §1, §4), for the paper's ViT baseline the official clustering of its patch
features (forward -> spherical k-means 64 -> 32 -> 16 -> 8, spec §10), both into the same Hierarchy type
with a typed provenance record. This is the one way to get a segmenter: the app and the CLI call it too.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from .errors import CastError, ConfigError
from .hierarchy import Hierarchy, InputGeometry, SegmentationProvenance
from .image import InputConfig, ModelInput, in_original_coordinates, prepare_input, read_image
from .model import Cast, CastOutput, VitBaseline
from .pipeline import CastKind, PreparedImage, SegmentResult, VitKind
from .pipeline.cast_kind import token_count
from .pipeline.records import output_canvas
from .superpixels import METHODS, SuperpixelConfig
from .weights.pretrained_cfg import pretrained_cfg_of

DEFAULT_MAX_OUTPUT_PIXELS = 4_000_000  # label maps larger than this are computed at a reduced scale

__all__ = ["DEFAULT_MAX_OUTPUT_PIXELS", "PreparedImage", "SegmentResult", "Segmenter", "token_count"]


class Segmenter:
    """Runs one model over images: CAST (spec §1, §4) or the ViT baseline (spec §10).

    `superpixels` (CAST only) is a SuperpixelConfig, a method name ("seeds", "slic") or None; the
    setting recorded with the weights fills in the rest (a DeiT checkpoint gets the DeiT SEEDS setting,
    an untrained model the official MoCo one), and `num_superpixels` overrides the count. They are computed
    on the model input (as in training) and mapped back with nearest neighbour to the original image's
    resolution, capped at `max_output_pixels`. The ViT baseline has no superpixels: asking for some is an
    error, never ignored. `kmeans_seed` seeds its clustering. Use :meth:`replace` for a changed copy.
    """

    def __init__(
        self,
        model: Cast | VitBaseline,
        superpixels: SuperpixelConfig | str | None = None,
        input_config: InputConfig | None = None,
        *,
        num_superpixels: int | None = None,
        device: str | torch.device | None = None,
        max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS,
        kmeans_seed: int = 0,
    ) -> None:
        if not isinstance(model, (Cast, VitBaseline)):
            raise ConfigError(f"Segmenter needs a CAST or ViT-baseline model (cast.create_model / cast.load_model), "
                              f"got {type(model).__name__}")
        if isinstance(max_output_pixels, bool) or not isinstance(max_output_pixels, int) or max_output_pixels < 1:
            raise ConfigError(f"max_output_pixels must be a positive integer, got {max_output_pixels!r}")
        if input_config is not None and not isinstance(input_config, InputConfig):
            raise ConfigError(f"input_config must be a cast.InputConfig, got {type(input_config).__name__}")
        if isinstance(kmeans_seed, bool) or not isinstance(kmeans_seed, int):
            raise ConfigError(f"kmeans_seed must be an integer, got {kmeans_seed!r}")
        self.model = model.eval()
        self.pretrained_cfg = pretrained_cfg_of(model)
        self.input_config = input_config or InputConfig(size=model.config.img_size)
        try:
            self.device = torch.device(device) if device is not None else next(model.parameters()).device
        except (RuntimeError, TypeError) as err:
            raise ConfigError(f"device {device!r} is not a torch device: {err}") from err
        self.max_output_pixels = max_output_pixels
        self.kmeans_seed = kmeans_seed
        if isinstance(model, VitBaseline):
            if superpixels is not None or num_superpixels is not None:
                raise ConfigError("the ViT baseline has no superpixels: its level 0 is k-means of its patch "
                                  "features (spec §10); leave superpixels and num_superpixels unset")
            if self.input_config.size != model.config.img_size:
                raise ConfigError(f"the ViT baseline runs at {model.config.img_size} px only (spec §10)")
            self.superpixel_config: SuperpixelConfig | None = None
            self.kind: CastKind | VitKind = VitKind(model, kmeans_seed, self.device)
        else:
            self.superpixel_config = _superpixel_setting(self.pretrained_cfg.superpixels, superpixels, num_superpixels)
            self.kind = CastKind(model, self.superpixel_config, self.input_config.size, self.device)

    @property
    def is_vit(self) -> bool:
        """Whether this segmenter runs the paper's ViT baseline (no superpixels)."""
        return isinstance(self.kind, VitKind)

    def replace(self, **changes: Any) -> "Segmenter":
        """A copy with some settings changed (model, superpixels, input_config, num_superpixels, device,
        max_output_pixels, kmeans_seed); every other setting is kept."""
        settings: dict[str, Any] = {
            "model": self.model, "superpixels": self.superpixel_config, "input_config": self.input_config,
            "device": self.device, "max_output_pixels": self.max_output_pixels, "kmeans_seed": self.kmeans_seed,
        }  # fmt: skip
        unknown = set(changes) - set(settings) - {"num_superpixels"}
        if unknown:
            raise ConfigError(f"Segmenter has no setting {sorted(unknown)}; settings: {sorted(settings)}")
        if "model" in changes and "superpixels" not in changes:
            settings["superpixels"] = None  # the new model's recorded setting, not the old model's
        return Segmenter(**{**settings, **changes})

    # ------------------------------------------------------------------------------------ running
    def run(self, image: Any, *, name: str | None = None) -> Hierarchy:
        """Segment one image (path, bytes, PIL image or array) into a Hierarchy; `name` is used in messages."""
        return self.run_detailed(image, name=name).hierarchy

    def run_detailed(self, image: Any, *, name: str | None = None) -> SegmentResult:
        """Like :meth:`run`, also returning the model input, raw outputs and per-stage timings (ms)."""
        return self._finish([self.prepare(image, name=name)])[0]

    def run_many(self, images: Iterable[Any], *, names: Iterable[str | None] | None = None,
                 batch_size: int = 8) -> Iterator[tuple[int, SegmentResult | CastError]]:
        """Segment many images, batching CAST's forward pass where token counts allow (spec §2.4).

        Yields (position, result) in input order as soon as results are ready; an image that cannot be
        read or segmented yields its CastError instead. Only images with the same token count share a
        batch, so every result equals a one-at-a-time run's; at most `batch_size` prepared images are
        held at once (pending ones wait for their batch, flushed before memory grows)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        names = list(names) if names is not None else None
        pending: dict[int, list[tuple[int, PreparedImage]]] = {}
        done: dict[int, SegmentResult | CastError] = {}
        next_out = held = 0
        for position, image in enumerate(images):
            try:
                prepared = self.prepare(image, name=names[position] if names else None)
                if not self.kind.batchable or batch_size == 1:
                    done.update(self._finish_group([(position, prepared)]))
                else:
                    group = pending.setdefault(prepared.token_count, [])
                    group.append((position, prepared))
                    held += 1
                    if len(group) >= batch_size:
                        done.update(self._finish_group(pending.pop(prepared.token_count)))
                        held -= len(group)
                    elif held >= batch_size:  # many token counts at once: flush the oldest waiting images
                        oldest = min(pending, key=lambda k: pending[k][0][0])
                        held -= len(pending[oldest])
                        done.update(self._finish_group(pending.pop(oldest)))
            except CastError as err:
                done[position] = err
            while next_out in done:
                yield next_out, done.pop(next_out)
                next_out += 1
        for group in list(pending.values()):
            done.update(self._finish_group(group))
        while next_out in done:
            yield next_out, done.pop(next_out)
            next_out += 1

    def rerun(self, previous: SegmentResult) -> SegmentResult:
        """This segmenter's model on exactly the pixels (and, for CAST, the superpixels) of an earlier result."""
        before = previous.hierarchy
        prov = before.provenance
        superpixels = None if self.is_vit else previous.superpixels
        if superpixels is not None and superpixels.shape != (self.input_config.size,) * 2:
            raise ConfigError("the earlier result was made at another input size; run the image again instead")
        count = self.kind.count_tokens(superpixels)
        prepared = PreparedImage(
            previous.model_input, before.image, before.shape, superpixels, count, {},
            source_name=prov.source_name if prov else None, source=prov.source if prov else None,
            decoded_scale=prov.decoded_scale if prov else 1,
        )
        return self._finish([prepared])[0]

    # ----------------------------------------------------------------------------------- stages
    def prepare(self, image: Any, *, name: str | None = None) -> PreparedImage:
        """Decode, frame the model input and (for CAST) compute and check superpixels: everything before the model."""
        timings: dict[str, float] = {}
        t = time.perf_counter()
        # validates every source, arrays included (size limits, dtype, channels); large files decode reduced
        read = read_image(image, name=name, reduction=self.reduction_for)
        model_input = prepare_input(read.rgb, self.input_config)
        canvas = output_canvas(read.rgb, model_input, self.max_output_pixels)
        model_input = in_original_coordinates(model_input, read.original_size)
        timings["decode"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        superpixels, count = self.kind.group(model_input.pixels)
        if superpixels is not None:
            timings["superpixels"] = (time.perf_counter() - t) * 1000
        return PreparedImage(model_input, canvas, canvas.shape[:2], superpixels, count, timings,
                             source_name=read.name, source=read.describe(), decoded_scale=read.scale)

    def forward(self, pixels: np.ndarray, superpixels: np.ndarray | None = None) -> CastOutput | torch.Tensor:
        """One (size, size, 3) model input through the model, batch 1 as official inference (spec §2.4):
        CAST's CastOutput (superpixels required), or the ViT baseline's (1, N, C) patch features."""
        count = 0 if superpixels is None else self.kind.count_tokens(superpixels)
        model_input = ModelInput(pixels, (0, 0, pixels.shape[1], pixels.shape[0]), pixels.shape[:2])
        prepared = PreparedImage(model_input, None, pixels.shape[:2], superpixels, count, {})
        return self.kind.forward([prepared])[0]

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

    def provenance(self, prepared: PreparedImage, level0: np.ndarray) -> SegmentationProvenance:
        """The record every hierarchy carries: model, weights, grouping, input geometry, the image as read."""
        cfg, inputs = self.pretrained_cfg, self.input_config
        return SegmentationProvenance(
            model_variant=self.model.config.name,
            checkpoint=cfg.checkpoint,
            trained=cfg.trained,
            layout=cfg.layout,
            grouping=self.kind.grouping(level0),
            input=InputGeometry(size=inputs.size, mode=inputs.mode, crop_box_xyxy=prepared.model_input.crop_box,
                                original_hw=prepared.model_input.original_size, parity_with_official=inputs.is_parity),
            source_name=prepared.source_name,
            source=prepared.source,
            decoded_scale=prepared.decoded_scale,
        )

    def _finish(self, batch: Sequence[PreparedImage]) -> list[SegmentResult]:
        """Forward pass and hierarchy of prepared images (one batch: CAST needs one token count)."""
        t = time.perf_counter()
        outputs = self.kind.forward(batch)
        per_image = (time.perf_counter() - t) * 1000 / len(batch)
        results = []
        for prepared, output in zip(batch, outputs):
            t = time.perf_counter()
            hierarchy, level0 = self.kind.build(prepared, output, lambda base: self.provenance(prepared, base))
            timings = {**prepared.timings, "forward": per_image, "hierarchy": (time.perf_counter() - t) * 1000}
            results.append(SegmentResult(hierarchy, prepared.model_input, level0, output, timings))
        return results

    def _finish_group(self, group: list[tuple[int, PreparedImage]]) -> dict[int, SegmentResult | CastError]:
        """Results of a batch; when the batch fails, each image is tried alone, so one image's error stays its own."""
        try:
            return dict(zip((position for position, _ in group), self._finish([p for _, p in group])))
        except CastError as err:
            if len(group) == 1:
                return {group[0][0]: err}
            return {position: self._finish_group([(position, prepared)])[position] for position, prepared in group}


def _superpixel_setting(recorded: SuperpixelConfig | None, chosen: SuperpixelConfig | str | None,
                        count: int | None) -> SuperpixelConfig:
    """The recorded setting (else the official one), with the chosen method or config and count applied."""
    base = recorded or SuperpixelConfig.official()
    if isinstance(chosen, SuperpixelConfig):
        base = chosen
    elif isinstance(chosen, str):
        if chosen not in METHODS:
            raise ConfigError(f"unknown superpixel method {chosen!r}; choose one of {', '.join(METHODS)}")
        base = dataclasses.replace(base, method=chosen)
    elif chosen is not None:
        raise ConfigError(f"superpixels must be a SuperpixelConfig, a method name or None, got {type(chosen).__name__}")
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"num_superpixels must be a positive integer, got {count!r}")
        base = dataclasses.replace(base, num_superpixels=count)
    return base
