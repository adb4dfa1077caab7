"""Browsing a saved collection: images ordered and filtered by a per-image number, a page at a time, with
thumbnails rendered when each image was saved (collection/thumbs/), so a page never opens a hierarchy."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import cv2
import numpy as np

from ..image import load_image
from ..render import render
from ..export.collection import THUMB_SIDE
from .format import DATA_DIR
from .store import Collection

SORT_KEYS = {"name": "name", "stability": "mean stability", "segments": "segments", "ground_truth": "ground-truth IoU",
             "confidence": "mean parent confidence"}


@dataclass(frozen=True)
class GalleryPage:
    """One page of an ordered, filtered collection: image indices, their sort values, where it lies."""

    indices: np.ndarray
    values: np.ndarray  # the sort value of each (NaN: not measured; for "name": NaN)
    page: int
    pages: int
    matching: int  # images that pass the filter


def image_values(collection: Collection, level: int, key: str, scores: Mapping[int, float] | None = None) -> np.ndarray:
    """(n_images,) the number an image is sorted by at `level` (NaN where unknown)."""
    if key == "name":
        return np.full(len(collection), np.nan)
    if key == "ground_truth":
        values = np.full(len(collection), np.nan)
        for index, score in (scores or {}).items():
            values[int(index)] = score
        return values
    if key not in SORT_KEYS:
        raise ValueError(f"sort by one of {', '.join(SORT_KEYS)}, not {key!r}")
    return collection.image_values(level, key)


def gallery_page(collection: Collection, level: int, sort: str = "name", *, descending: bool = False,
                 minimum: float | None = None, page: int = 0, page_size: int = 48,
                 scores: Mapping[int, float] | None = None) -> GalleryPage:
    """Images sorted by `sort` (unknown values last), those below `minimum` left out, page `page` of them."""
    values = image_values(collection, level, sort, scores)
    if sort == "name":
        order = np.argsort(np.array(collection.names(), dtype=object), kind="stable")
        order = order[::-1] if descending else order
    else:
        known = np.isfinite(values)
        keep = known if minimum is not None else np.ones(len(values), bool)
        if minimum is not None:
            keep &= values >= minimum
        candidates = np.flatnonzero(keep)
        key = -values[candidates] if descending else values[candidates]
        key = np.where(np.isfinite(key), key, np.inf)
        order = candidates[np.argsort(key, kind="stable")]
    pages = max(1, -(-len(order) // page_size))
    page = min(max(0, int(page)), pages - 1)
    chosen = order[page * page_size:(page + 1) * page_size]
    return GalleryPage(chosen, values[chosen], page, pages, len(order))


def thumbnail(collection: Collection, index: int, level: int, view: str = "fill") -> np.ndarray:
    """A small picture of image `index` at `level`: the saved thumbnail for "fill", else rendered from the
    saved hierarchy (stability, confidence)."""
    item = collection.item(index)
    level = min(int(level), max(0, len(item.segments) - 1))
    path = collection.folder / DATA_DIR / "thumbs" / f"{item.stem}.level{level}.jpg"
    if view == "fill" and path.is_file():
        return load_image(path)
    hierarchy = collection.hierarchy(index)
    if view == "stability" and hierarchy.stability is None:
        view = "fill"
    return shrink(render(hierarchy, view, level))


def shrink(picture: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """`picture` with its longer side at most `side` pixels."""
    scale = side / max(picture.shape[:2])
    if scale >= 1:
        return picture
    size = (max(1, round(picture.shape[1] * scale)), max(1, round(picture.shape[0] * scale)))
    return cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
