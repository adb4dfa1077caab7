"""Segments in CLIP's frame and their masked-image features (spec §11.1, §11.3 step 1-2).

An image goes through CLIP's own eval transform; a segment map is brought into the same S x S frame
(`Resize(S, nearest)` + `CenterCrop(S)`, the notebook's `seg_transform`). Each segment is encoded once:
the normalised image with every pixel outside the segment set to 0.5 *in normalised space*. The features
do not depend on any vocabulary, so `FeatureCache` keeps them per image and segment map.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import functional as TF
from torchvision.transforms import InterpolationMode

from ..errors import InvalidImageError
from .clip import ClipModel, clip_array

MASK_VALUE = 0.5  # outside the segment, in CLIP-normalised space (spec §11.3; not grey before normalising)
OUTSIDE = -1  # label of frame pixels that belong to no segment (padding)

Progress = Callable[[int, int], None]  # (segments encoded so far, segments to encode)


@dataclass(frozen=True)
class FramedImage:
    """An image in CLIP's frame: the normalised (3, S, S) pixels and how it got there."""

    pixels: torch.Tensor
    pad: bool  # padded to a square first (every pixel kept) instead of centre-cropped
    key: str  # digest of the pixels, for caches

    @property
    def size(self) -> int:
        return int(self.pixels.shape[-1])


def digest(*arrays: np.ndarray | torch.Tensor) -> str:
    h = hashlib.sha1()
    for a in arrays:
        a = a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        h.update(str((a.shape, a.dtype)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _square_pad(array: np.ndarray, value: int) -> np.ndarray:
    height, width = array.shape[:2]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    pads = ((top, side - height - top), (left, side - width - left)) + ((0, 0),) * (array.ndim - 2)
    return np.pad(array, pads, constant_values=value)


def frame_image(clip: ClipModel, rgb: np.ndarray, *, pad: bool = False) -> FramedImage:
    """An (H, W, 3) uint8 image through CLIP's eval transform (spec §11.1).

    `pad=True` first pads it to a square, so that no segment falls outside a centre crop (the app's
    choice for non-square images; identical to the official transform for square ones)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InvalidImageError(f"naming needs an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    if pad:
        rgb = _square_pad(rgb, 0)
    pixels = clip.preprocess(clip_array(rgb)).float()
    return FramedImage(pixels, pad, digest(pixels))


def frame_labels(clip: ClipModel, labels: np.ndarray, *, pad: bool = False) -> torch.Tensor:
    """An (H, W) segment map in CLIP's (S, S) frame: nearest resize of the shorter side + centre crop,
    as the notebook's `seg_transform` (with `pad`, after padding to a square with -1 = no segment)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"a segment map must be (H, W), got {labels.shape}")
    if pad:
        labels = _square_pad(labels.astype(np.int64), OUTSIDE)
    size = clip.image_size
    tensor = torch.from_numpy(labels.astype(np.float32))[None]  # float like the notebook (exact below 2**24)
    if clip.resize_mode == "squash":
        tensor = TF.resize(tensor, [size, size], interpolation=InterpolationMode.NEAREST)
    elif clip.resize_mode == "shortest":
        tensor = TF.center_crop(TF.resize(tensor, size, interpolation=InterpolationMode.NEAREST), [size, size])
    else:
        raise ValueError(f"CLIP's resize mode {clip.resize_mode!r} is not supported for segment maps")
    return tensor[0].round().long()


@dataclass(frozen=True)
class SegmentFeatures:
    """CLIP features of every segment of one segment map (one image, one level), vocabulary-free.

    segments: ids in ascending order; features: (n, D) L2-normalised; first_pixel: each segment's first
    pixel in row-major order in the frame (spec §11.4 step 2); area: its pixels in the frame."""

    segments: tuple[int, ...]
    features: torch.Tensor
    first_pixel: tuple[tuple[int, int], ...]
    area: tuple[int, ...]

    def row(self, segment: int) -> int:
        return self.segments.index(segment)


def segment_masks(labels: torch.Tensor, segments: list[int] | None = None) -> tuple[list[int], torch.Tensor]:
    """(ids, (n, S, S) bool masks) of the segments of an (S, S) map (ids >= 0 present, ascending)."""
    ids = segments if segments is not None else [int(i) for i in torch.unique(labels) if i >= 0]
    return ids, torch.stack([labels == i for i in ids]) if ids else torch.zeros((0, *labels.shape), dtype=torch.bool)


def masked_images(pixels: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(n, 3, S, S): the image with every pixel outside mask k set to 0.5 (spec §11.3 step 1)."""
    return torch.where(masks[:, None], pixels[None], torch.full((), MASK_VALUE, dtype=pixels.dtype))


def encode_segments(clip: ClipModel, framed: FramedImage, labels: torch.Tensor, *, batch_size: int = 16,
                    progress: Progress | None = None, extra_masks: dict[int, torch.Tensor] | None = None) -> SegmentFeatures:
    """Encode every segment of an (S, S) map: one CLIP forward per segment, `batch_size` at a time.

    Batching changes nothing but speed (features equal one-at-a-time within float tolerance).
    `extra_masks` adds segments given as (S, S) masks (those a resize dropped from the map)."""
    ids, masks = segment_masks(labels)
    if extra_masks:
        ids = ids + sorted(extra_masks)
        masks = torch.cat([masks, torch.stack([extra_masks[i] for i in sorted(extra_masks)])])
        order = sorted(range(len(ids)), key=ids.__getitem__)
        ids, masks = [ids[k] for k in order], masks[order]
    chunks = []
    for start in range(0, len(ids), max(1, batch_size)):
        chunks.append(clip.encode_images(masked_images(framed.pixels, masks[start : start + batch_size])))
        if progress is not None:
            progress(min(start + batch_size, len(ids)), len(ids))
    features = torch.cat(chunks) if chunks else torch.zeros((0, 0))
    flat = masks.flatten(1)
    first = flat.to(torch.uint8).argmax(dim=1)  # first True in row-major order
    size = labels.shape[1]
    return SegmentFeatures(tuple(ids), features, tuple((int(f) // size, int(f) % size) for f in first),
                           tuple(int(a) for a in flat.sum(1)))


def dropped_segment_masks(labels: np.ndarray, framed_labels: torch.Tensor, clip: ClipModel, *,
                          pad: bool, present: np.ndarray | None = None) -> dict[int, torch.Tensor]:
    """Masks in the frame of segments that the nearest resize dropped (thin or tiny ones): every frame
    pixel the segment covers at all, so each segment of the map still gets a name. `present`: the ids
    of `labels`, when known."""
    counts = torch.bincount(framed_labels.flatten() + 1)  # + 1: the padding's -1
    kept = set((torch.nonzero(counts[1:]).flatten()).tolist())
    ids = np.unique(labels) if present is None else present
    missing = [int(i) for i in ids if i >= 0 and int(i) not in kept]
    out = {}
    for seg in missing:
        coverage = (np.asarray(labels) == seg).astype(np.float32)
        if pad:
            coverage = _square_pad(coverage, 0)
        t = torch.from_numpy(coverage)[None, None]
        size = clip.image_size
        if clip.resize_mode == "squash":
            t = F.adaptive_max_pool2d(t, (size, size))[0]
        else:
            h, w = t.shape[-2:]
            scale = size / min(h, w)
            t = F.adaptive_max_pool2d(t, (max(size, round(h * scale)), max(size, round(w * scale))))[0]
            t = TF.center_crop(t, [size, size])
        mask = t[0] > 0
        if mask.any():  # outside the centre crop altogether: it cannot be named in this frame
            out[seg] = mask
    return out


class FeatureCache:
    """Segment features by (CLIP model, framed image, segment map): an explicit, thread-safe LRU.

    Trying another vocabulary on the same image and level only encodes text."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str, str], SegmentFeatures] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_encode(self, clip: ClipModel, framed: FramedImage, labels: torch.Tensor,
                      encode: Callable[[], SegmentFeatures], extra: tuple[int, ...] = ()) -> SegmentFeatures:
        key = (clip.id, framed.key, digest(labels) + repr(extra))
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
        features = encode()
        with self._lock:
            self.misses += 1
            self._entries[key] = features
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return features

    def __len__(self) -> int:
        return len(self._entries)
