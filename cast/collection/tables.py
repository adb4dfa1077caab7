"""Per-segment numbers of a collection, one row per present segment of a level: what statistics, sorting and
filtering read without opening any image (saved as one memory-mappable .npy per level)."""
from __future__ import annotations

import numpy as np

from ..hierarchy import Hierarchy

SEGMENT_DTYPE = np.dtype([("image", "<i4"), ("segment", "<i4"), ("area", "<f4"), ("confidence", "<f4"),
                          ("stability", "<f4")])  # area: fraction of the image; NaN where not defined


def segment_table(hierarchy: Hierarchy, level: int, image_index: int = 0) -> np.ndarray:
    """(n,) SEGMENT_DTYPE rows for the present segments of one level of one image."""
    area = hierarchy.stats(level).area
    ids = np.flatnonzero(area > 0)
    rows = np.zeros(len(ids), SEGMENT_DTYPE)
    rows["image"], rows["segment"] = image_index, ids
    rows["area"] = area[ids] / max(1, area.sum())
    rows["confidence"] = (np.asarray(hierarchy.parent_prob[level], np.float64)[ids]
                          if level < hierarchy.num_levels - 1 else np.nan)
    rows["stability"] = hierarchy.stability[level][ids] if hierarchy.stability is not None else np.nan
    return rows


def per_image_means(table: np.ndarray, column: str, num_images: int) -> np.ndarray:
    """(num_images,) mean of a column over each image's rows (NaN for images without finite values)."""
    values = table[column].astype(np.float64)
    finite = np.isfinite(values)
    sums = np.bincount(table["image"][finite], values[finite], minlength=num_images)
    counts = np.bincount(table["image"][finite], minlength=num_images)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
