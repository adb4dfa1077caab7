"""Score segmentation hierarchies against ground-truth masks (spec §7.2), class-agnostically.

Metrics, per level, against an (H, W) int ground-truth mask (pixels equal to `ignore_index` do not count):

- **best-match IoU**: for every ground-truth segment, the highest IoU that any single predicted segment
  reaches; its unweighted mean over GT segments is the unsupervised protocol's "mean best-match IoU".
  The reverse (per predicted segment, best over GT segments) is reported too. Both come from one
  contingency matrix (a bincount of pred * G + gt), never a loop over segment masks.
- **boundary precision / recall / F** at a pixel tolerance: a predicted boundary pixel is matched when
  it lies within `boundary_tolerance` px (Euclidean distance transform) of a GT boundary; a GT boundary
  pixel is recalled when a predicted boundary lies within the tolerance. Boundary pixels are those whose
  right or lower neighbour has another label (`cast.render.boundary_mask`); the image frame is none.

Ignored pixels (VOC draws a 5 px void band along every object outline) are handled so that a boundary
against them is neither a GT boundary nor an error: GT boundaries are drawn on the mask with every
ignored pixel given the label of its nearest labelled pixel, so a thin void band becomes a contour
through its middle (kept only within `IGNORE_BAND_PX` of labelled pixels, so wide unlabelled areas make
no contours); predicted boundary pixels on ignored pixels are not judged, and those within the
tolerance of (or touching) an ignored pixel count as matched, since the true contour lies in the band.
Empty cases: no predicted boundary -> precision 1; no GT boundary -> recall 1.

The colour-merging baseline (`cast.evaluation.baselines`) is scored by the same code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..hierarchy import Hierarchy
from ..render.overlays import boundary_mask

IGNORE_BAND_PX = 8  # ignored regions up to ~2x this wide are outline bands: they carry a GT contour
METRICS = ("mean_best_iou", "mean_pred_best_iou", "boundary_precision", "boundary_recall", "boundary_f")


@dataclass(frozen=True)
class LevelScore:
    """Scores of one level (or their mean over images, where `num_segments` is a mean too).

    per_gt_best_iou: best-match IoU of every GT segment, keyed by its label value in the mask.
    """

    level: int
    level_name: str
    num_segments: float
    mean_best_iou: float
    per_gt_best_iou: dict[int, float]
    mean_pred_best_iou: float
    boundary_precision: float
    boundary_recall: float
    boundary_f: float


@dataclass(frozen=True)
class _Truth:
    """A ground-truth mask prepared once and shared by every level scored against it."""

    valid: np.ndarray  # (H, W) bool, labelled pixels
    index: np.ndarray  # (n_valid,) int64 compact GT id of every labelled pixel
    values: np.ndarray  # (G,) the label value of every compact id
    area: np.ndarray  # (G,) pixels
    boundary: np.ndarray  # (H, W) bool GT contours
    dist_to_boundary: np.ndarray  # (H, W) float px, inf when there is no contour
    dist_to_ignored: np.ndarray  # (H, W) float px, inf when nothing is ignored


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """(H, W) Euclidean distance of every pixel to the nearest True pixel of `mask` (inf if none)."""
    if not mask.any():
        return np.full(mask.shape, np.inf)
    return ndimage.distance_transform_edt(~mask)


def _compact(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique values, inverse index) of a 1-D int array; a bincount lookup for small non-negative ids."""
    if values.size and values.dtype.kind in "iub" and values.min() >= 0 and values.max() < 4 * values.size + 1024:
        present = np.bincount(values)
        uniques = np.flatnonzero(present)
        lookup = np.cumsum(present > 0) - 1
        return uniques, lookup[values]
    return np.unique(values, return_inverse=True)


def _prepare_truth(gt: np.ndarray, ignore_index: int | None) -> _Truth:
    gt = np.asarray(gt)
    if gt.ndim != 2:
        raise ValueError(f"ground truth must be an (H, W) label mask, got shape {gt.shape}")
    if gt.dtype == bool:
        gt = gt.astype(np.uint8)
    if gt.dtype.kind not in "iu":
        raise ValueError(f"ground truth must hold integer labels, got dtype {gt.dtype}")
    valid = np.ones(gt.shape, bool) if ignore_index is None else gt != ignore_index
    if not valid.any():
        raise ValueError(f"ground truth has no labelled pixels (all equal ignore_index={ignore_index})")
    values, index = _compact(gt[valid])
    area = np.bincount(index, minlength=len(values))
    if valid.all():
        boundary = boundary_mask(gt)
        dist_to_ignored = np.full(gt.shape, np.inf)
    else:
        dist_to_valid, (rows, cols) = ndimage.distance_transform_edt(~valid, return_indices=True)
        filled = gt[rows, cols]  # every ignored pixel takes its nearest labelled pixel's label
        boundary = boundary_mask(filled) & (dist_to_valid <= IGNORE_BAND_PX)
        dist_to_ignored = ndimage.distance_transform_edt(valid)
    return _Truth(valid, index.astype(np.int64), values, area, boundary, _distance_to(boundary), dist_to_ignored)


def _score_labels(pred: np.ndarray, truth: _Truth, level: int, level_name: str | None, tolerance: int) -> LevelScore:
    """Every metric of one predicted label map against a prepared ground truth."""
    pred = np.asarray(pred)
    if pred.shape != truth.valid.shape:
        raise ValueError(f"label map of level {level} is {pred.shape}, ground truth is {truth.valid.shape}")
    num_segments = len(_compact(pred.ravel())[0])
    _, pred_index = _compact(pred[truth.valid])
    num_pred, num_gt = int(pred_index.max()) + 1, len(truth.values)
    joint = np.bincount(pred_index * num_gt + truth.index, minlength=num_pred * num_gt).reshape(num_pred, num_gt)
    pred_area = joint.sum(axis=1)
    iou = joint / (pred_area[:, None] + truth.area[None, :] - joint)  # unions are never 0: areas are > 0
    best_per_gt = iou.max(axis=0)

    pred_boundary = boundary_mask(pred)
    judged = pred_boundary & truth.valid
    if judged.any():
        near = (truth.dist_to_boundary <= tolerance) | (truth.dist_to_ignored <= max(tolerance, 1))
        precision = float(np.count_nonzero(judged & near) / np.count_nonzero(judged))
    else:
        precision = 1.0
    if truth.boundary.any():
        recalled = truth.boundary & (_distance_to(pred_boundary) <= tolerance)
        recall = float(np.count_nonzero(recalled) / np.count_nonzero(truth.boundary))
    else:
        recall = 1.0
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return LevelScore(
        level=level,
        level_name=level_name or f"{num_segments} segments",
        num_segments=num_segments,
        mean_best_iou=float(best_per_gt.mean()),
        per_gt_best_iou={int(v): float(s) for v, s in zip(truth.values, best_per_gt)},
        mean_pred_best_iou=float(iou.max(axis=1).mean()),
        boundary_precision=precision,
        boundary_recall=recall,
        boundary_f=float(f),
    )


def metrics_for_label_maps(
    label_maps: Sequence[np.ndarray],
    gt: np.ndarray,
    *,
    levels: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    ignore_index: int | None = 255,
    boundary_tolerance: int = 2,
) -> list[LevelScore]:
    """Score any (H, W) label maps (a model's levels or a baseline's) against one ground-truth mask."""
    if boundary_tolerance < 0:
        raise ValueError(f"boundary_tolerance must be >= 0 px, got {boundary_tolerance}")
    levels = list(range(len(label_maps))) if levels is None else list(levels)
    names = [None] * len(label_maps) if names is None else list(names)
    if not len(levels) == len(names) == len(label_maps):
        raise ValueError("label_maps, levels and names must have the same length")
    truth = _prepare_truth(gt, ignore_index)
    return [_score_labels(m, truth, lv, nm, boundary_tolerance) for m, lv, nm in zip(label_maps, levels, names)]


def level_metrics(
    hierarchy: Hierarchy, gt: np.ndarray, *, ignore_index: int | None = 255, boundary_tolerance: int = 2
) -> list[LevelScore]:
    """Score every level of a hierarchy against a GT mask of the same (H, W) as the hierarchy."""
    gt = np.asarray(gt)
    if gt.shape != hierarchy.shape:
        raise ValueError(
            f"ground truth is {gt.shape[1::-1] if gt.ndim >= 2 else gt.shape} (W x H) but the hierarchy covers "
            f"{hierarchy.shape[::-1]}; for a mask of the original image, pass align_ground_truth(mask, hierarchy)"
        )
    levels = range(hierarchy.num_levels)
    return metrics_for_label_maps(
        [hierarchy.labels(lv) for lv in levels], gt, levels=list(levels),
        names=[hierarchy.level_name(lv) for lv in levels],
        ignore_index=ignore_index, boundary_tolerance=boundary_tolerance,
    )  # fmt: skip


def align_ground_truth(gt_full: np.ndarray, hierarchy: Hierarchy) -> np.ndarray:
    """Crop an original-size mask to the hierarchy's crop box and resize it (nearest) to its shape."""
    gt_full = np.asarray(gt_full)
    if gt_full.ndim != 2:
        raise ValueError(f"ground truth must be an (H, W) label mask, got shape {gt_full.shape}")
    if hierarchy.provenance is None:
        if gt_full.shape == hierarchy.shape:
            return gt_full
        raise ValueError("the hierarchy records no provenance (no crop box); "
                         f"cannot align a {gt_full.shape} mask to its {hierarchy.shape} label maps")
    box, original = hierarchy.provenance.input.crop_box_xyxy, hierarchy.provenance.input.original_hw
    if tuple(original) != gt_full.shape:
        raise ValueError(f"ground truth is {gt_full.shape[1]}x{gt_full.shape[0]} but the segmented image was "
                         f"{original[1]}x{original[0]}: the mask must belong to the same image")
    x0, y0, x1, y1 = (int(v) for v in box)
    crop = gt_full[y0:y1, x0:x1]
    height, width = hierarchy.shape
    # nearest neighbour at pixel centres, for any integer dtype
    rows = np.minimum(((np.arange(height) + 0.5) * crop.shape[0] / height).astype(np.int64), crop.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * crop.shape[1] / width).astype(np.int64), crop.shape[1] - 1)
    return np.ascontiguousarray(crop[rows[:, None], cols[None, :]])


def best_level(scores: Sequence[LevelScore], metric: str = "mean_best_iou") -> LevelScore:
    """The level that fits the ground truth best by `metric` (the finer level on ties)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if not scores:
        raise ValueError("no scores to choose from")
    return max(scores, key=lambda s: getattr(s, metric))


def average_scores(per_image: Sequence[Sequence[LevelScore]]) -> list[LevelScore]:
    """Per-level mean over images; per_gt_best_iou becomes the mean per label over images that have it."""
    by_level: dict[int, list[LevelScore]] = {}
    for scores in per_image:
        for s in scores:
            by_level.setdefault(s.level, []).append(s)
    out = []
    for level, group in sorted(by_level.items()):
        per_label: dict[int, list[float]] = {}
        for s in group:
            for label, value in s.per_gt_best_iou.items():
                per_label.setdefault(label, []).append(value)
        names = {s.level_name for s in group}
        mean_segments = float(np.mean([s.num_segments for s in group]))
        out.append(LevelScore(
            level=level,
            level_name=names.pop() if len(names) == 1 else f"{mean_segments:.1f} segments (mean)",
            num_segments=mean_segments,
            per_gt_best_iou={k: float(np.mean(v)) for k, v in sorted(per_label.items())},
            **{m: float(np.mean([getattr(s, m) for s in group])) for m in METRICS},
        ))  # fmt: skip
    return out


def format_scores(scores: Sequence[LevelScore], metric: str = "mean_best_iou") -> str:
    """A markdown table, one row per level; the best level by `metric` is marked with *."""
    best = best_level(scores, metric).level if scores else None
    lines = [
        "| level | segments | mean best IoU | pred→GT IoU | boundary P | boundary R | boundary F |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in scores:
        mark = " *" if s.level == best else ""
        lines.append(
            f"| {s.level}{mark} | {s.level_name} | "
            f"{s.mean_best_iou:.3f} | {s.mean_pred_best_iou:.3f} | {s.boundary_precision:.3f} | "
            f"{s.boundary_recall:.3f} | {s.boundary_f:.3f} |"
        )
    return "\n".join(lines)
