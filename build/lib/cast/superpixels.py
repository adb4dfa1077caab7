"""Superpixel label maps for CAST: OpenCV SEEDS (official, spec §1.2) or scikit-image SLIC (§1.4).

`compute_superpixels` turns an (H, W, 3) uint8 RGB image into an (H, W) int64 map with ids 0..K-1;
`validate_for_model` checks that enough distinct tokens survive the model's 28 x 28 token grid (§1.3).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np
from skimage import segmentation

from cast.errors import SuperpixelError

METHODS = ("seeds", "slic")
# SEEDS hangs or crashes on tiny inputs and on blocks below ~2 px; these bounds keep well clear.
MIN_SIDE = 16
MIN_PIXELS_PER_SUPERPIXEL = 16
SLIC_MAX_ATTEMPTS = 4  # the first try plus up to three compactness increases (x3 each)

_MOCO_SEEDS = {"num_levels": 1, "prior": 2, "histogram_bins": 15, "iterations": 20, "double_step": False}
_DEIT_SEEDS = {**_MOCO_SEEDS, "histogram_bins": 5, "iterations": 15}


@dataclass(frozen=True)
class SuperpixelConfig:
    """Which superpixel method to run and with which parameters.

    The defaults are the official MoCo / notebook SEEDS setting (spec §1.2); `deit()` gives the DeiT
    one. SEEDS fields are ignored by SLIC and `compactness` is ignored by SEEDS.
    """

    method: str = "seeds"
    num_superpixels: int = 196
    num_levels: int = 1
    prior: int = 2
    histogram_bins: int = 15
    iterations: int = 20
    double_step: bool = False
    compactness: float = 10.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SuperpixelError(f"unknown superpixel method {self.method!r}; choose one of {METHODS}")
        positive = ("num_superpixels", "num_levels", "histogram_bins", "iterations")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SuperpixelError(f"{name} must be a positive integer, got {value!r}")
        if self.num_levels > 8:
            raise SuperpixelError(f"num_levels must be at most 8, got {self.num_levels}")
        if isinstance(self.prior, bool) or not isinstance(self.prior, int) or not 0 <= self.prior <= 5:
            raise SuperpixelError(f"prior must be an integer in 0..5, got {self.prior!r}")
        if not isinstance(self.double_step, bool):
            raise SuperpixelError(f"double_step must be True or False, got {self.double_step!r}")
        if not np.isfinite(self.compactness) or self.compactness <= 0:
            raise SuperpixelError(f"compactness must be a positive number, got {self.compactness!r}")

    @classmethod
    def official(cls) -> SuperpixelConfig:
        """SEEDS as in MoCo pre-training, the linear probe and the notebooks (use this for the app)."""
        return cls()

    @classmethod
    def deit(cls) -> SuperpixelConfig:
        """SEEDS as in the supervised DeiT pipeline: 5 histogram bins, 15 iterations."""
        return cls(**_DEIT_SEEDS)

    @classmethod
    def slic(cls, num_superpixels: int = 196, compactness: float = 10.0) -> SuperpixelConfig:
        """scikit-image SLIC, the authors' alternative (not the training distribution)."""
        return cls(method="slic", num_superpixels=num_superpixels, compactness=compactness)

    def describe(self) -> str:
        """One line for the UI: method, main settings, and whether it matches training."""
        if self.method == "slic":
            return (
                f"scikit-image SLIC ({self.num_superpixels} requested, compactness {self.compactness:g})"
                " — not the training distribution"
            )
        seeds = {name: getattr(self, name) for name in _MOCO_SEEDS}
        if self.num_superpixels == 196 and seeds == _MOCO_SEEDS:
            note = "official MoCo setting"
        elif self.num_superpixels == 196 and seeds == _DEIT_SEEDS:
            note = "official DeiT setting"
        else:
            note = "custom setting, not the training distribution"
        return (
            f"OpenCV SEEDS ({self.num_superpixels} requested, bins {self.histogram_bins}, "
            f"{self.iterations} iterations) — {note}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SuperpixelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise SuperpixelError(f"unknown superpixel settings: {sorted(unknown)}")
        return cls(**data)


def compute_superpixels(rgb: np.ndarray, config: SuperpixelConfig) -> np.ndarray:
    """Superpixels of an (H, W, 3) uint8 RGB image -> (H, W) int64 labels 0..K-1, deterministic."""
    _check_image(rgb, config)
    labels = _seeds(rgb, config) if config.method == "seeds" else _slic(rgb, config)
    return _consecutive(labels)


def count_superpixels(labels: np.ndarray) -> int:
    """Number of distinct ids in a label map."""
    return int(np.unique(labels).size)


def validate_for_model(
    labels: np.ndarray,
    grid: int = 28,
    min_tokens: int = 65,
    *,
    rgb: np.ndarray | None = None,
) -> None:
    """Raise `SuperpixelError` if the label map cannot feed CAST's first pooling stage (spec §1.3-1.4).

    Counts the distinct ids left after the model's legacy-nearest downsample to grid x grid; with
    `rgb` (the model input) given, also rejects (nearly) constant images, whose tokens all look alike.
    """
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise SuperpixelError(
            f"expected an (H, W) integer label map, got shape {labels.shape} dtype {labels.dtype}"
        )
    if rgb is not None:
        channels = rgb.reshape(-1, rgb.shape[-1]) if rgb.ndim == 3 else rgb.reshape(-1, 1)
        spread = float(channels.std(axis=0).max())  # per channel: a flat colour is constant too
        if spread < 1.0:
            raise SuperpixelError(
                f"the image is constant (pixel std {spread:.2f}): every superpixel token gets the same "
                "features, so CAST cannot group them. Use an image with visible structure."
            )
    height, width = labels.shape
    rows = (np.arange(grid) * height) // grid  # cell (i, j) takes pixel (floor(i*H/grid), floor(j*W/grid))
    cols = (np.arange(grid) * width) // grid
    surviving = count_superpixels(labels[np.ix_(rows, cols)])
    if surviving < min_tokens:
        raise SuperpixelError(
            f"only {surviving} distinct superpixels survive on the {grid}x{grid} token grid; CAST needs at "
            f"least {min_tokens} ({min_tokens - 1} clusters + the mean point). The image is too uniform or "
            "too small — try SEEDS or more superpixels."
        )


def _check_image(rgb: np.ndarray, config: SuperpixelConfig) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        shape = getattr(rgb, "shape", None)
        dtype = getattr(rgb, "dtype", type(rgb).__name__)
        raise SuperpixelError(
            f"superpixels need an (H, W, 3) uint8 RGB image, got shape {shape} dtype {dtype}; "
            "use cast.image.load_image first"
        )
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise SuperpixelError(
            f"image is {width}x{height} pixels; superpixels need at least {MIN_SIDE}x{MIN_SIDE}"
        )
    if height * width < config.num_superpixels * MIN_PIXELS_PER_SUPERPIXEL:
        raise SuperpixelError(
            f"{config.num_superpixels} superpixels is too many for a {width}x{height} image; "
            f"use at most {height * width // MIN_PIXELS_PER_SUPERPIXEL}"
        )


def _seeds(rgb: np.ndarray, config: SuperpixelConfig) -> np.ndarray:
    """OpenCV SEEDS exactly as the official pipeline calls it (spec §1.2, steps 2-3)."""
    height, width = rgb.shape[:2]
    lab = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB)
    seeds = cv2.ximgproc.createSuperpixelSEEDS(
        width, height, 3,
        config.num_superpixels, config.num_levels, config.prior, config.histogram_bins, config.double_step,
    )
    seeds.iterate(lab, config.iterations)
    return seeds.getLabels().astype(np.int64)


def _slic(rgb: np.ndarray, config: SuperpixelConfig) -> np.ndarray:
    """scikit-image SLIC with the authors' retry rule: too few segments -> compactness x3 (spec §1.4)."""
    image = rgb.astype(np.float64) / 255.0
    compactness = config.compactness
    for _ in range(SLIC_MAX_ATTEMPTS):
        labels = segmentation.slic(
            image,
            n_segments=config.num_superpixels,
            compactness=compactness,
            convert2lab=True,
            start_label=0,
            channel_axis=-1,
        )
        if count_superpixels(labels) >= config.num_superpixels // 2:
            break
        compactness *= 3
    return labels.astype(np.int64)


def _consecutive(labels: np.ndarray) -> np.ndarray:
    """Ids 0..K-1 in the original order; maps that already are consecutive are returned unchanged."""
    ids = np.unique(labels)
    if ids[0] == 0 and ids[-1] == ids.size - 1:
        return np.ascontiguousarray(labels, dtype=np.int64)
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int64)
