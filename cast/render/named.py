"""The "named" view: segments coloured by their CLIP name, each name written on its segment, and a legend.

Names are drawn in white with a dark outline at each segment's most interior point (the maximum of the
distance transform), so they stay readable over any image and never sit on a boundary. Segments that
share a name share a colour; the legend below the picture lists every name shown with its colour.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Mapping

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .overlays import blend, boundary_mask

# distinct, mid-light colours (Tableau 20 order), so white text with a dark outline reads on all of them
NAME_COLORS = np.array([
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120),
    (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210), (199, 199, 199),
    (219, 219, 141), (158, 218, 229),
], dtype=np.uint8)  # fmt: skip
BACKGROUND_COLOR = (40, 40, 40)


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font, no file needed
    except TypeError:
        return ImageFont.load_default()


def name_colors(names: list[str], background: str = "Background") -> dict[str, tuple[int, int, int]]:
    """A colour per distinct name, in order of first appearance; the background is dark grey."""
    out: dict[str, tuple[int, int, int]] = {}
    for name in names:
        if name not in out:
            out[name] = BACKGROUND_COLOR if name == background else tuple(int(v) for v in NAME_COLORS[len(out) % len(NAME_COLORS)])
    return out


def label_points(labels: np.ndarray, segments: list[int]) -> dict[int, tuple[int, int]]:
    """(x, y) of each segment's most interior pixel (the largest distance to its border)."""
    points = {}
    for seg in segments:
        mask = (labels == seg).astype(np.uint8)
        if not mask.any():
            continue
        distance = cv2.distanceTransform(np.pad(mask, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
        points[seg] = (int(x), int(y))
    return points


def draw_names(picture: np.ndarray, labels: np.ndarray, names: Mapping[int, str]) -> np.ndarray:
    """`picture` with each segment's name written at its most interior point (white, dark outline)."""
    height, width = picture.shape[:2]
    size = max(11, min(28, round(min(height, width) / 28)))
    font = _font(size)
    canvas = Image.fromarray(picture)
    draw = ImageDraw.Draw(canvas)
    for seg, (x, y) in label_points(labels, list(names)).items():
        text = names[seg]
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=2)
        w, h = right - left, bottom - top
        x0 = int(np.clip(x - w / 2, 0, max(0, width - w)))
        y0 = int(np.clip(y - h / 2, 0, max(0, height - h)))
        draw.text((x0 - left, y0 - top), text, font=font, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
    return np.asarray(canvas)


def legend_strip(colors: Mapping[str, tuple[int, int, int]], width: int, counts: Mapping[str, int] | None = None) -> np.ndarray:
    """Rows of colour swatches with names, `width` pixels wide (white background)."""
    size = max(11, min(20, width // 40))
    font = _font(size)
    pad, swatch = 6, size
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    items = []
    for name, color in colors.items():
        text = f"{name} ({counts[name]})" if counts and name in counts else name
        items.append((text, color, probe.textlength(text, font=font)))
    rows, row, used = [], [], pad
    for item in items:
        need = swatch + 4 + item[2] + 2 * pad
        if row and used + need > width:
            rows.append(row)
            row, used = [], pad
        row.append(item)
        used += need
    if row:
        rows.append(row)
    line = swatch + pad
    strip = Image.new("RGB", (width, pad + line * max(1, len(rows))), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for r, entries in enumerate(rows):
        x, y = pad, pad + r * line
        for text, color, length in entries:
            draw.rectangle([x, y, x + swatch, y + swatch], fill=tuple(color), outline=(0, 0, 0))
            draw.text((x + swatch + 4, y), text, font=font, fill=(0, 0, 0))
            x += int(swatch + 4 + length + 2 * pad)
    return np.asarray(strip)


def named_view(image: np.ndarray, labels: np.ndarray, names: Mapping[int, str], *, opacity: float = 0.55,
               legend: bool = True, background: str = "Background") -> np.ndarray:
    """Segments of one level coloured by name, names written on them, and (below) the legend.

    `names` maps segment id -> name; segments without a name keep the image as it is."""
    labels = np.asarray(labels)
    ordered = sorted(names, key=lambda s: -int(np.count_nonzero(labels == s)))  # big segments pick colours first
    colors = name_colors([names[s] for s in ordered], background)
    lookup = np.zeros((int(labels.max(initial=0)) + 2, 3), np.uint8)
    named = np.zeros(int(labels.max(initial=0)) + 2, bool)
    for seg, name in names.items():
        if 0 <= seg < len(lookup):
            lookup[seg], named[seg] = colors[name], True
    inside = named[labels]
    coloured = blend(image, lookup[labels], opacity)
    out = np.where(inside[..., None], coloured, image)
    out[boundary_mask(labels, thickness=2)] = (255, 255, 255)
    out = draw_names(np.ascontiguousarray(out), labels, dict(names))
    if not legend:
        return out
    counts: dict[str, int] = {}
    for name in names.values():
        counts[name] = counts.get(name, 0) + 1
    return np.concatenate([out, legend_strip(colors, out.shape[1], counts)], axis=0)
