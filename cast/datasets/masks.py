"""Ground-truth label masks from PNGs (palette, grey or RGB) and COCO segmentations (polygons or RLE)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from ..errors import DatasetError
from ..export.coco_rle import coco_rle_to_mask
from ..render.overlays import voc_palette


def load_label_mask(path: str | Path) -> np.ndarray:
    """(H, W) int label mask from a PNG: palette indices, grey values, or RGB colours.

    A greyscale mask holding only 0 and 255 is read as binary (0 / 1) rather than 255 = ignore; RGB
    masks in the VOC colours become VOC indices, other RGB masks one id per distinct colour.
    """
    try:
        with Image.open(path) as img:
            mode = img.mode
            array = np.array(img)
    except OSError as err:
        raise DatasetError(f"cannot read the mask {path}: {err}") from err
    if array.ndim == 3 and array.shape[2] == 2:  # grey + alpha
        array, mode = array[..., 0], "L"
    if mode == "P" or array.ndim == 2:
        array = array.astype(np.int64)
        if mode in ("1", "L") and set(np.unique(array).tolist()) <= {0, 255}:
            array = (array > 0).astype(np.int64)
        return array
    rgb = array[..., :3].reshape(-1, 3).astype(np.int64)
    codes = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    uniques, inverse = np.unique(codes, return_inverse=True)
    palette = voc_palette(256).astype(np.int64)
    palette_codes = {int((r << 16) | (g << 8) | b): i for i, (r, g, b) in enumerate(palette)}
    if all(int(c) in palette_codes for c in uniques):
        ids = np.array([palette_codes[int(c)] for c in uniques], dtype=np.int64)
    else:
        ids = np.arange(len(uniques), dtype=np.int64)
    return ids[inverse].reshape(array.shape[:2])


def segmentation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of a COCO `segmentation`: polygon list, uncompressed or compressed RLE."""
    if isinstance(segmentation, list):
        mask = np.zeros((height, width), np.uint8)
        polygons = [np.round(np.asarray(p, dtype=np.float64).reshape(-1, 2)).astype(np.int32)
                    for p in segmentation if len(p) >= 6]  # fmt: skip
        if polygons:
            cv2.fillPoly(mask, polygons, 1)
        return mask.astype(bool)
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), (str, bytes)):
        try:
            from pycocotools import mask as mask_api
        except ImportError as err:
            raise DatasetError("compressed COCO RLE needs pycocotools (pip install pycocotools)") from err
        rle = dict(segmentation)
        rle["counts"] = rle["counts"].encode("ascii") if isinstance(rle["counts"], str) else rle["counts"]
        return mask_api.decode(rle).astype(bool)
    if isinstance(segmentation, dict):
        return coco_rle_to_mask(segmentation)
    raise DatasetError(f"unknown COCO segmentation of type {type(segmentation).__name__}")
