"""Ground-truth label masks from PNGs (palette, grey or RGB) and COCO segmentations (polygons or RLE)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from ..errors import DatasetError
from ..image import MAX_PIXELS
from ..export.coco_rle import coco_rle_to_mask
from ..render.overlays import voc_palette


MAX_MASK_COLOURS = 65_536  # an RGB mask with more distinct colours is a photograph, not a label map
_ROWS_PER_CHUNK = 256


def smallest_label_dtype(max_label: int) -> np.dtype:
    """The smallest unsigned integer type that holds labels 0..max_label (uint8, uint16 or uint32)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_label <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise DatasetError(f"label {max_label} does not fit a 32-bit label map")


def mask_size(path: str | Path, *, name: str | None = None) -> tuple[int, int]:
    """(width, height) of a mask file from its header; nothing is decoded."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, Image.DecompressionBombError) as err:
        raise DatasetError(f"cannot read the mask {name or path}: {err}") from err


def load_label_mask(path: str | Path, *, expected_size: tuple[int, int] | None = None, max_pixels: int = MAX_PIXELS,
                    name: str | None = None) -> np.ndarray:
    """(H, W) label mask from a PNG: palette indices, grey values, or RGB colours, in the smallest unsigned type.

    The size is checked from the header before any pixel is decoded: at most `max_pixels`, and exactly
    `expected_size` (width, height: the image the mask belongs to) when given. Decoding holds the file's own
    pixels plus the label map, never a wider copy. A greyscale mask holding only 0 and 255 is read as binary
    (0 / 1) rather than 255 = ignore; RGB masks in the VOC colours become VOC indices, other RGB masks one id
    per distinct colour (in the order of their RGB codes).
    """
    shown = name or Path(path).name
    try:
        with Image.open(path) as img:
            width, height = img.size
            if expected_size is not None and (width, height) != tuple(expected_size):
                raise DatasetError(f"the mask {shown} is {width}x{height} pixels but the image is "
                                   f"{expected_size[0]}x{expected_size[1]}: a mask must belong to the same image")
            if width * height > max_pixels:
                raise DatasetError(f"the mask {shown} is {width}x{height} pixels; at most {max_pixels / 1e6:,.0f} "
                                   "megapixels are accepted")
            return _labels(img, shown)
    except DatasetError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(f"cannot read the mask {shown}: {err}") from err


def _labels(img: Image.Image, shown: str) -> np.ndarray:
    mode = img.mode
    if mode in ("LA", "PA"):  # grey or palette + alpha: the labels are the first band
        img, mode = img.getchannel(0), mode[0]
    if mode == "1":
        return np.asarray(img.convert("L")) // 255
    if mode in ("L", "P"):
        counts = img.histogram()[:256]  # counted in Pillow, no copy of the pixels
        array = np.asarray(img)
        if mode == "L" and all(c == 0 for i, c in enumerate(counts) if i not in (0, 255)):
            return (array > 0).astype(np.uint8)
        return array
    if mode.startswith("I"):  # 16- or 32-bit grey: label values as they are
        array = np.asarray(img)
        if array.size and int(array.min()) < 0:
            raise DatasetError(f"the mask {shown} holds negative labels")
        return array.astype(smallest_label_dtype(int(array.max()) if array.size else 0))
    rgb = img if mode == "RGB" else img.convert("RGB")
    colours = rgb.getcolors(MAX_MASK_COLOURS)
    if colours is None:
        raise DatasetError(f"the mask {shown} has more than {MAX_MASK_COLOURS:,} colours: it is not a label mask")
    codes = np.array(sorted((r << 16) | (g << 8) | b for _, (r, g, b) in colours), dtype=np.uint32)
    palette = voc_palette(256).astype(np.int64)
    palette_codes = {int((r << 16) | (g << 8) | b): i for i, (r, g, b) in enumerate(palette)}
    if all(int(c) in palette_codes for c in codes):
        ids = np.array([palette_codes[int(c)] for c in codes], dtype=np.int64)
    else:
        ids = np.arange(len(codes), dtype=np.int64)
    ids = ids.astype(smallest_label_dtype(int(ids.max())))
    width, height = rgb.size
    out = np.empty((height, width), ids.dtype)
    for top in range(0, height, _ROWS_PER_CHUNK):  # a band at a time: no full copy of the pixels or their codes
        band = np.asarray(rgb.crop((0, top, width, min(height, top + _ROWS_PER_CHUNK)))).astype(np.uint32)
        band_codes = (band[..., 0] << 16) | (band[..., 1] << 8) | band[..., 2]
        out[top : top + _ROWS_PER_CHUNK] = ids[np.searchsorted(codes, band_codes)]
    return out


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
