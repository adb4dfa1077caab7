"""How consistently each segment comes back under changes that should not matter (issue: stability).

A perturbed run segments a slightly changed input — mirrored, other superpixel counts, mild noise, a JPEG
re-encoding — and maps its label maps back onto the original geometry. A segment's score is the mean,
over the perturbed runs, of its IoU with the best-matching segment of the same level: 1 means it always
comes back exactly, near 0 that it dissolves. Compared on label maps of at most 256 px a side.
"""
from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np
from PIL import Image

from ..hierarchy import Hierarchy
from ..image import load_image
from ..segmenter import Segmenter

COMPARE_SIDE = 256


@dataclass(frozen=True)
class Perturbation:
    """One change that should not matter: "flip", "superpixels" (count delta), "noise" (std in grey levels),
    "jpeg" (quality)."""

    kind: str
    value: float = 0.0

    def describe(self) -> str:
        return {"flip": "horizontal flip", "superpixels": f"superpixels {self.value:+g}", "noise": f"noise σ={self.value:g}",
                "jpeg": f"JPEG q={self.value:g}"}[self.kind]


DEFAULT_PERTURBATIONS = (
    Perturbation("flip"), Perturbation("superpixels", -16), Perturbation("superpixels", 16),
    Perturbation("noise", 2.0), Perturbation("jpeg", 85),
)  # fmt: skip


def perturbed_hierarchy(segmenter: Segmenter, rgb: np.ndarray, perturbation: Perturbation, seed: int = 0) -> Hierarchy:
    """The hierarchy of a perturbed copy of `rgb`, in the original image's geometry."""
    kind = perturbation.kind
    image = rgb
    run = segmenter
    if kind == "flip":
        image = np.ascontiguousarray(rgb[:, ::-1])
    elif kind == "noise":
        noise = np.random.default_rng(seed).normal(0.0, perturbation.value, rgb.shape)
        image = np.clip(rgb.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    elif kind == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="JPEG", quality=int(perturbation.value))
        image = load_image(buffer.getvalue())
    elif kind == "superpixels":
        config = segmenter.superpixel_config
        if config is None:  # the ViT baseline has no superpixels: nothing to vary
            return segmenter.run(rgb)
        count = max(config.num_superpixels // 2, config.num_superpixels + int(perturbation.value))
        run = segmenter.replace(num_superpixels=count)
    else:
        raise ValueError(f"unknown perturbation {kind!r}")
    hierarchy = run.run(image)
    if kind == "flip":
        hierarchy = dataclasses.replace(hierarchy, superpixels=np.ascontiguousarray(hierarchy.superpixels[:, ::-1]),
                                        image=None)
    return hierarchy


def best_match_iou(labels: np.ndarray, other: np.ndarray, num_ids: int) -> np.ndarray:
    """(num_ids,) for every id of `labels`: its IoU with the best-matching id of `other` (NaN if absent)."""
    other_ids = int(other.max()) + 1
    overlap = np.bincount(labels.ravel().astype(np.int64) * other_ids + other.ravel(), minlength=num_ids * other_ids)
    overlap = overlap[: num_ids * other_ids].reshape(num_ids, other_ids).astype(np.float64)
    area, other_area = overlap.sum(1), overlap.sum(0)
    union = area[:, None] + other_area[None, :] - overlap
    iou = np.where(union > 0, overlap / np.maximum(union, 1), 0.0).max(axis=1)
    return np.where(area > 0, iou, np.nan)


def stability_scores(segmenter: Segmenter, image: Any, hierarchy: Hierarchy,
                     perturbations: Sequence[Perturbation] = DEFAULT_PERTURBATIONS) -> tuple[np.ndarray, ...]:
    """Per level, per segment id of `hierarchy`: the mean best-match IoU over the perturbed runs."""
    rgb = load_image(image)
    shape = _compare_shape(hierarchy.shape)
    reference = [_resize(hierarchy.labels(level), shape) for level in range(hierarchy.num_levels)]
    totals = [np.zeros(size) for size in hierarchy.sizes]
    for i, perturbation in enumerate(perturbations):
        other = perturbed_hierarchy(segmenter, rgb, perturbation, seed=i)
        for level in range(min(hierarchy.num_levels, other.num_levels)):
            totals[level] += np.nan_to_num(best_match_iou(reference[level], _resize(other.labels(level), shape),
                                                          hierarchy.sizes[level]))
    scores = []
    for level, total in enumerate(totals):
        present = hierarchy.stats(level).area > 0
        scores.append(np.where(present, total / max(1, len(perturbations)), np.nan))
    return tuple(scores)


def _compare_shape(shape: tuple[int, int]) -> tuple[int, int]:
    scale = min(1.0, COMPARE_SIDE / max(shape))
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def _resize(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if labels.shape == shape:
        return labels
    return cv2.resize(labels.astype(np.int32), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
