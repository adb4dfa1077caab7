"""Pascal VOC 2012 on disk: `JPEGImages/<id>.jpg`, `SegmentationClass/<id>.png` (255 = void), split lists."""
from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError

VOC_IGNORE = 255


def voc_root(root: str | Path) -> Path:
    """The VOC2012 folder under `root` (root itself, root/VOC2012 or root/VOCdevkit/VOC2012)."""
    root = Path(root)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "ImageSets" / "Segmentation").is_dir():
            return candidate
    raise DatasetError(f"{root} is not a Pascal VOC 2012 folder: no ImageSets/Segmentation under it")


def voc_samples(root: str | Path, split: str = "val") -> list[tuple[str, Path, Path]]:
    """(id, image path, mask path) of every image listed in ImageSets/Segmentation/<split>.txt."""
    base = voc_root(root)
    listing = base / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise DatasetError(f"no split list {listing}")
    ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    return [(i, base / "JPEGImages" / f"{i}.jpg", base / "SegmentationClass" / f"{i}.png") for i in ids]
