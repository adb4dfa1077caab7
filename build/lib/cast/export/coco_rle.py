"""COCO run-length encoding of masks and label maps (the uncompressed form pycocotools stores)."""
from __future__ import annotations

from typing import Any

import numpy as np


def mask_to_coco_rle(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed COCO RLE of an (H, W) mask: column-major runs, starting with a run of zeros.

    Identical to what `pycocotools.mask.encode` stores before compressing the counts.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    flat = mask.ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], change, [flat.size]]))
    if flat.size and flat[0]:
        counts = np.concatenate([[0], counts])
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts.tolist()}


def coco_rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """(H, W) bool mask of an uncompressed COCO RLE {"size": [H, W], "counts": [...]}."""
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        raise ValueError("compressed COCO RLE (string counts) is not supported; decode it with pycocotools")
    height, width = (int(v) for v in rle["size"])
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != height * width:
        raise ValueError(f"RLE counts add up to {counts.sum()}, not {height}x{width}={height * width}")
    values = np.arange(counts.size) % 2 == 1  # runs alternate 0, 1, 0, ...
    return np.repeat(values, counts).reshape(width, height).T


def label_map_rles(labels: np.ndarray) -> dict[int, dict[str, Any]]:
    """COCO RLE of every id in an (H, W) label map, in one pass over its column-major runs."""
    height, width = labels.shape
    flat = labels.ravel(order="F")
    n = flat.size
    starts = np.flatnonzero(np.concatenate([[True], flat[1:] != flat[:-1]]))
    ends = np.append(starts[1:], n)
    run_ids = flat[starts]
    # group runs by id, keeping each id's runs in scan order
    order = np.argsort(run_ids, kind="stable")
    starts, ends, run_ids = starts[order], ends[order], run_ids[order]
    first = np.concatenate([[True], run_ids[1:] != run_ids[:-1]])
    prev_end = np.concatenate([[0], ends[:-1]])
    prev_end[first] = 0
    pairs = np.stack([starts - prev_end, ends - starts], axis=1).ravel()  # zeros then ones, per run
    group = np.flatnonzero(first)
    last = np.append(group[1:], len(run_ids)) - 1
    rles = {}
    for seg, counts, tail in zip(run_ids[group].tolist(), np.split(pairs, 2 * group[1:]), (n - ends[last]).tolist()):
        counts = counts.tolist() + ([tail] if tail else [])
        rles[seg] = {"size": [height, width], "counts": counts}
    return rles
