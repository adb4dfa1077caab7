"""Statistics of a collection per level: segment areas, parent confidence, stability; ground-truth scores."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from ..datasets import load_label_mask
from ..errors import CastError
from ..evaluation import LevelScore, align_ground_truth, average_scores, best_level, level_metrics
from .build import Collection


def _per_level(collection: Collection, value) -> dict[int, np.ndarray]:
    out: dict[int, list[np.ndarray]] = {}
    for item in collection.items:
        h = item.hierarchy
        for level in range(h.num_levels):
            values = value(h, level)
            if values is not None:
                out.setdefault(level, []).append(values[np.isfinite(values)])
    return {level: np.concatenate(v) if v else np.zeros(0) for level, v in out.items()}


def _box(title: str, data: dict[int, np.ndarray], names: Mapping[int, str], y_title: str) -> go.Figure:
    traces = [{"type": "box", "y": values.tolist(), "name": names.get(level, f"level {level}"), "boxpoints": False}
              for level, values in sorted(data.items()) if len(values)]
    layout = {"title": {"text": title}, "height": 300, "margin": {"l": 50, "r": 10, "t": 40, "b": 40},
              "yaxis": {"title": {"text": y_title}}, "showlegend": False}
    return go.Figure({"data": traces, "layout": layout}, _validate=False)


def collection_figures(collection: Collection) -> dict[str, go.Figure]:
    """Plotly box plots per level across the collection: "areas", "confidence", and "stability" when measured."""
    if not collection.items:
        return {}
    first = collection.items[0].hierarchy
    names = {level: first.level_name(level).split(" (")[0] if level == 0 else f"level {level}"
             for level in range(first.num_levels)}

    def areas(h, level):
        area = h.stats(level).area
        return area[area > 0] / area.sum()

    def confidence(h, level):
        if level >= h.num_levels - 1:
            return None
        present = h.stats(level).area > 0
        return np.asarray(h.parent_prob[level], dtype=np.float64)[present]

    def stability(h, level):
        return None if h.stability is None else h.stability[level]

    figures = {
        "areas": _box("Segment area (fraction of the image) per level", _per_level(collection, areas), names, "area"),
        "confidence": _box("Parent confidence per level (the model's soft assignment)", _per_level(collection, confidence),
                           names, "p(parent)"),
    }
    if any(item.hierarchy.stability is not None for item in collection.items):
        figures["stability"] = _box("Stability per level (mean IoU under perturbations)",
                                    _per_level(collection, stability), names, "stability")
    return figures


def collection_scores(collection: Collection, masks: Mapping[str, str | Path], *,
                      ignore_index: int | None = 255) -> tuple[dict[str, list[LevelScore]], list[LevelScore], LevelScore]:
    """Ground-truth masks matched to images by file stem: (per-image scores, their mean per level, best level).

    Images without a mask are left out; a mask that does not belong to its image is an error naming both."""
    by_stem = {Path(name).stem: path for name, path in masks.items()}
    per_image: dict[str, list[LevelScore]] = {}
    for item in collection.items:
        path = by_stem.get(Path(item.name).stem)
        if path is None:
            continue
        try:
            original = getattr(getattr(item.hierarchy.provenance, "input", None), "original_hw", None)  # header check
            expected = None if original is None else (int(original[1]), int(original[0]))
            gt = align_ground_truth(load_label_mask(path, expected_size=expected), item.hierarchy)
        except ValueError as err:
            raise CastError(f"{Path(path).name} does not fit {item.name}: {err}") from err
        per_image[item.name] = level_metrics(item.hierarchy, gt, ignore_index=ignore_index)
    if not per_image:
        raise CastError("no ground-truth mask matches an image of the collection by file name (e.g. cat.jpg ↔ cat.png)")
    mean = average_scores(list(per_image.values()))
    return per_image, mean, best_level(mean)


def scores_table(per_image: Mapping[str, Sequence[LevelScore]], mean: Sequence[LevelScore]) -> list[list[object]]:
    """Rows for a table: image, then mean best-match IoU per level; the last row is the mean."""
    rows = [[name, *(round(s.mean_best_iou, 3) for s in scores)] for name, scores in per_image.items()]
    rows.append(["mean", *(round(s.mean_best_iou, 3) for s in mean)])
    return rows
