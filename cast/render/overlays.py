"""Pictures of a Hierarchy: coloured overlays, boundaries, the UCM-style boundary map, highlights.

Everything here is plain NumPy on (H, W) label maps and (H, W, 3) uint8 images, so one click
re-renders in a few milliseconds without touching the model.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..hierarchy import Hierarchy

VIEWS = ("fill", "boundaries", "all_boundaries", "grid", "boundary_map", "confidence", "stability")


def voc_palette(num_colors: int = 256) -> np.ndarray:
    """The Pascal VOC colour map indexed by segment id, as in the official CAST figures."""
    palette = np.zeros((num_colors, 3), dtype=np.uint8)
    for i in range(num_colors):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    palette.setflags(write=False)
    return palette


PALETTE = voc_palette(1024)


def _confidence_ramp() -> np.ndarray:
    """256-entry red -> yellow -> green colour ramp for probabilities 0..1."""
    t = np.linspace(0.0, 1.0, 256)
    red = np.where(t < 0.5, 1.0, 2.0 * (1.0 - t))
    green = np.where(t < 0.5, 2.0 * t, 1.0)
    ramp = (np.stack([red, green, np.zeros_like(t)], axis=1) * 220).astype(np.uint8)
    ramp.setflags(write=False)
    return ramp


CONFIDENCE_RAMP = _confidence_ramp()


def segment_colors(labels: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colours, stable per segment id. Id 0 is black in VOC, so ids are shifted by 1."""
    return PALETTE[(labels + 1) % len(PALETTE)]


def boundary_mask(labels: np.ndarray, thickness: int = 1) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower neighbour has another label, optionally thickened."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    if thickness > 1:
        kernel = np.ones((thickness, thickness), np.uint8)
        edge = cv2.dilate(edge.view(np.uint8), kernel).astype(bool)
    return edge


def blend(image: np.ndarray, colors: np.ndarray, opacity: float) -> np.ndarray:
    """image*(1-opacity) + colors*opacity, uint8."""
    opacity = float(np.clip(opacity, 0.0, 1.0))
    return cv2.addWeighted(colors, opacity, image, 1.0 - opacity, 0.0)


def fill_view(image: np.ndarray, labels: np.ndarray, opacity: float = 0.6, edges: bool = True) -> np.ndarray:
    """Segments filled with their colours over the image, with thin white boundaries."""
    out = blend(image, segment_colors(labels), opacity)
    if edges:
        out[boundary_mask(labels)] = 255
    return out


def boundaries_view(image: np.ndarray, labels: np.ndarray, color: tuple[int, int, int] = (255, 255, 0)) -> np.ndarray:
    """The image with one level's boundaries drawn on it."""
    out = image.copy()
    out[boundary_mask(labels, thickness=max(1, min(image.shape[:2]) // 300))] = color
    return out


def boundary_strength(hierarchy: Hierarchy) -> np.ndarray:
    """(H, W) float in [0, 1]: the coarsest level at which the two sides of a boundary are apart.

    Because the hierarchy is nested, a boundary present at level l is present at every finer level,
    so the count of levels showing a boundary is that coarsest level (+1). UCM-style (spec §4).
    """
    total = np.zeros(hierarchy.shape, dtype=np.float32)
    for level in range(hierarchy.num_levels):
        total += boundary_mask(hierarchy.labels(level))
    return total / hierarchy.num_levels


def boundary_map_view(hierarchy: Hierarchy) -> np.ndarray:
    """The hierarchy boundary map as a grey image: darker = survives to coarser levels."""
    strength = boundary_strength(hierarchy)
    grey = (255 * (1.0 - strength)).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def all_boundaries_view(image: np.ndarray, hierarchy: Hierarchy) -> np.ndarray:
    """Every level's boundaries at once, thicker and warmer for coarser levels."""
    out = (image.astype(np.float32) * 0.7).astype(np.uint8)
    scale = max(1, min(image.shape[:2]) // 300)
    levels = hierarchy.num_levels
    for level in range(levels):
        t = level / max(1, levels - 1)
        color = (int(255 * t), int(255 * (1 - 0.5 * t)), int(255 * (1 - t)))
        out[boundary_mask(hierarchy.labels(level), thickness=scale * (1 + level // 2))] = color
    return out


def value_view(image: np.ndarray, labels: np.ndarray, per_segment: np.ndarray, opacity: float = 0.7,
               low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """Each segment coloured by a value of its own (red at `low`, green at `high`); NaN segments grey."""
    values = np.asarray(per_segment, dtype=np.float64)
    known = np.isfinite(values)
    scaled = np.clip((np.where(known, values, low) - low) / max(high - low, 1e-12), 0, 1)
    table = np.where(known[:, None], CONFIDENCE_RAMP[(scaled * 255).astype(np.uint8)], np.uint8(160))
    padded = np.full((int(labels.max()) + 1, 3), 160, np.uint8)
    padded[: min(len(table), len(padded))] = table[: len(padded)]
    out = blend(image, padded[labels], opacity)
    out[boundary_mask(labels)] = 255
    return out


def confidence_view(image: np.ndarray, hierarchy: Hierarchy, level: int, opacity: float = 0.7) -> np.ndarray:
    """Each segment coloured by the model's probability of its chosen parent (red low, green high).

    Segments without a probability (the ViT baseline's hard k-means assignments) are grey."""
    if level >= hierarchy.num_levels - 1:
        level = hierarchy.num_levels - 2
    return value_view(image, hierarchy.labels(level), hierarchy.parent_prob[level], opacity)


def stability_view(image: np.ndarray, hierarchy: Hierarchy, level: int, opacity: float = 0.7) -> np.ndarray:
    """Each segment coloured by its stability (red: dissolves under small perturbations, green: always back)."""
    if hierarchy.stability is None:
        raise ValueError("this hierarchy has no stability scores: measure them first (cast.collection.stability)")
    return value_view(image, hierarchy.labels(level), hierarchy.stability[level], opacity)


def segment_crop(image: np.ndarray, labels: np.ndarray, segment: int, margin: float = 0.15, side: int = 160) -> np.ndarray:
    """A square-ish crop around one segment, the rest dimmed and the segment outlined, about `side` px wide."""
    mask = labels == segment
    if not mask.any():
        return np.full((side, side, 3), 128, np.uint8)
    ys, xs = np.nonzero(mask)
    h, w = labels.shape
    pad_y, pad_x = int((ys.max() - ys.min() + 1) * margin) + 2, int((xs.max() - xs.min() + 1) * margin) + 2
    y0, y1 = max(0, ys.min() - pad_y), min(h, ys.max() + 1 + pad_y)
    x0, x1 = max(0, xs.min() - pad_x), min(w, xs.max() + 1 + pad_x)
    crop = image[y0:y1, x0:x1].astype(np.float32)
    inside = mask[y0:y1, x0:x1]
    crop[~inside] *= 0.35
    out = crop.astype(np.uint8)
    out[boundary_mask(inside.astype(np.int32))] = (255, 255, 0)
    scale = side / max(out.shape[:2])
    return cv2.resize(out, (max(1, round(out.shape[1] * scale)), max(1, round(out.shape[0] * scale))),
                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)


def grid_view(image: np.ndarray, hierarchy: Hierarchy, opacity: float = 0.6, columns: int | None = None) -> np.ndarray:
    """Every level side by side (superpixels first), with a caption strip per tile."""
    tiles = []
    for level in range(hierarchy.num_levels):
        tile = fill_view(image, hierarchy.labels(level), opacity)
        caption = np.full((22, tile.shape[1], 3), 255, np.uint8)
        cv2.putText(caption, hierarchy.level_name(level), (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([caption, tile]))
    columns = columns or min(len(tiles), 3)
    rows = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
    blank = np.full_like(tiles[0], 255)
    rows = [r + [blank] * (columns - len(r)) for r in rows]
    gap = 4
    strips = [np.hstack([np.pad(t, ((0, 0), (0, gap), (0, 0)), constant_values=255) for t in r]) for r in rows]
    return np.vstack([np.pad(s, ((0, gap), (0, 0), (0, 0)), constant_values=255) for s in strips])


@dataclass(frozen=True)
class Selection:
    """A clicked segment."""

    level: int
    segment: int


def highlight_view(image: np.ndarray, hierarchy: Hierarchy, selection: Selection, opacity: float = 0.6) -> np.ndarray:
    """The selected segment filled, its descendants' boundaries inside it, its ancestors outlined.

    Outside the selected segment the image is dimmed; each ancestor's outline is drawn thicker and
    in the colour of its own segment id, so the part-to-whole path is visible at once.
    """
    level, seg = selection.level, selection.segment
    inside = hierarchy.mask(level, seg)
    out = (image.astype(np.float32) * 0.35).astype(np.uint8)
    color = PALETTE[(seg + 1) % len(PALETTE)]
    out[inside] = blend(image[inside][None], np.broadcast_to(color, (1, inside.sum(), 3)).copy(), opacity)[0]
    if level > 0:  # finer structure inside the selection
        out[boundary_mask(hierarchy.labels(level - 1)) & inside] = 255
    scale = max(1, min(image.shape[:2]) // 300)
    for rank, (anc_level, anc_seg) in enumerate(hierarchy.ancestors(level, seg), start=1):
        outline = boundary_mask(hierarchy.mask(anc_level, anc_seg).view(np.uint8), thickness=scale * (1 + rank))
        out[outline] = PALETTE[(anc_seg + 1) % len(PALETTE)]
    own = boundary_mask(inside.view(np.uint8), thickness=scale * 2)
    out[own] = (255, 255, 255)
    return out


def render(
    hierarchy: Hierarchy,
    view: str,
    level: int,
    *,
    opacity: float = 0.6,
    selection: Selection | None = None,
    image: np.ndarray | None = None,
) -> np.ndarray:
    """One entry point for the UI: a view name, a level and an optional selection -> RGB uint8."""
    image = hierarchy.image if image is None else image
    if image is None:
        image = np.full((*hierarchy.shape, 3), 128, np.uint8)
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    if selection is not None and view in ("fill", "boundaries"):
        return highlight_view(image, hierarchy, selection, opacity)
    if view == "fill":
        return fill_view(image, hierarchy.labels(level), opacity)
    if view == "boundaries":
        return boundaries_view(image, hierarchy.labels(level))
    if view == "all_boundaries":
        return all_boundaries_view(image, hierarchy)
    if view == "grid":
        return grid_view(image, hierarchy, opacity)
    if view == "boundary_map":
        return boundary_map_view(hierarchy)
    if view == "stability":
        return stability_view(image, hierarchy, level, opacity)
    return confidence_view(image, hierarchy, level, opacity)
