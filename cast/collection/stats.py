"""Statistics of a collection (in memory or saved) per level: segment areas, parent confidence, stability;
ground-truth scores per image."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from ..datasets import load_label_mask
from ..errors import CastError
from ..evaluation import LevelScore, align_ground_truth, average_scores, best_level, level_metrics


def _per_level(collection, column: str, levels: range) -> dict[int, np.ndarray]:
    out = {}
    for level in levels:
        values = np.asarray(collection.segment_table(level)[column], dtype=np.float64)
        out[level] = values[np.isfinite(values)]
    return out


def _box(title: str, data: dict[int, np.ndarray], names: Mapping[int, str], y_title: str) -> go.Figure:
    """Box plots from quartiles computed here: the figure stays small for millions of segments."""
    traces = []
    for level, values in sorted(data.items()):
        if not len(values):
            continue
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        low, high = max(values.min(), q1 - 1.5 * (q3 - q1)), min(values.max(), q3 + 1.5 * (q3 - q1))
        traces.append({"type": "box", "name": names.get(level, f"level {level}"), "x": [names.get(level, f"level {level}")],
                       "q1": [q1], "median": [median], "q3": [q3], "lowerfence": [low], "upperfence": [high],
                       "mean": [float(values.mean())], "boxpoints": False})
    layout = {"title": {"text": title}, "height": 300, "margin": {"l": 50, "r": 10, "t": 40, "b": 40},
              "yaxis": {"title": {"text": y_title}}, "showlegend": False}
    return go.Figure({"data": traces, "layout": layout}, _validate=False)


def collection_figures(collection) -> dict[str, go.Figure]:
    """Plotly box plots per level across a collection (in memory or saved): "areas", "confidence", and
    "stability" when measured. Read from the per-segment tables: no image is opened."""
    if not len(collection):
        return {}
    levels = range(collection.num_levels)
    names = {level: collection.level_names[0].split(" (")[0] if level == 0 else f"level {level}" for level in levels}
    figures = {
        "areas": _box("Segment area (fraction of the image) per level", _per_level(collection, "area", levels), names,
                      "area"),
        "confidence": _box("Parent confidence per level (the model's soft assignment)",
                           _per_level(collection, "confidence", levels[:-1]), names, "p(parent)"),
    }
    stability = _per_level(collection, "stability", levels)
    if any(len(v) for v in stability.values()):
        figures["stability"] = _box("Stability per level (mean IoU under perturbations)", stability, names, "stability")
    return figures


def collection_scores(collection, masks: Mapping[str, str | Path], *,
                      ignore_index: int | None = 255) -> tuple[dict[str, list[LevelScore]], list[LevelScore], LevelScore]:
    """Ground-truth masks matched to images by file stem: (per-image scores, their mean per level, best level).

    Images without a mask are left out; a mask that does not belong to its image is an error naming both."""
    by_stem = {Path(name).stem: path for name, path in masks.items()}
    per_image: dict[str, list[LevelScore]] = {}
    for index, name in enumerate(collection.names()):
        path = by_stem.get(Path(name).stem)
        if path is None:
            continue
        hierarchy = collection.hierarchy(index)
        try:
            original = getattr(getattr(hierarchy.provenance, "input", None), "original_hw", None)  # header check
            expected = None if original is None else (int(original[1]), int(original[0]))
            gt = align_ground_truth(load_label_mask(path, expected_size=expected), hierarchy)
        except ValueError as err:
            raise CastError(f"{Path(path).name} does not fit {name}: {err}") from err
        per_image[name] = level_metrics(hierarchy, gt, ignore_index=ignore_index)
    if not per_image:
        raise CastError("no ground-truth mask matches an image of the collection by file name (e.g. cat.jpg ↔ cat.png)")
    mean = average_scores(list(per_image.values()))
    return per_image, mean, best_level(mean)


def scores_table(per_image: Mapping[str, Sequence[LevelScore]], mean: Sequence[LevelScore]) -> list[list[object]]:
    """Rows for a table: image, then mean best-match IoU per level; the last row is the mean."""
    rows = [[name, *(round(s.mean_best_iou, 3) for s in scores)] for name, scores in per_image.items()]
    rows.append(["mean", *(round(s.mean_best_iou, 3) for s in mean)])
    return rows
