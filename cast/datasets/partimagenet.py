"""PartImageNet annotations: a COCO JSON of part polygons / RLE with supercategories (the objects)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from .masks import segmentation_mask


@dataclass(frozen=True)
class PartAnnotations:
    """A PartImageNet COCO file: image records, annotations per image, and the two class lists.

    part_classes[0] and object_classes[0] are "Background"; part_index / object_index map a
    category id to its class index.
    """

    images: list[dict[str, Any]]
    by_image: dict[int, list[dict[str, Any]]]
    part_classes: list[str]
    object_classes: list[str]
    part_index: dict[int, int]
    object_index: dict[int, int]

    def masks(self, image: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(part mask, object mask) of one image record: (H, W) int class indices, 0 = background."""
        height, width = int(image["height"]), int(image["width"])
        parts = np.zeros((height, width), np.int64)
        objects = np.zeros((height, width), np.int64)
        for ann in self.by_image.get(int(image["id"]), []):
            mask = segmentation_mask(ann["segmentation"], height, width)
            parts[mask] = self.part_index[int(ann["category_id"])]
            objects[mask] = self.object_index[int(ann["category_id"])]
        return parts, objects


def read_part_annotations(path: str | Path) -> PartAnnotations:
    """Read a PartImageNet (COCO-format) annotation JSON."""
    try:
        data = json.loads(Path(path).read_text())
        categories = sorted(data["categories"], key=lambda c: c["id"])
        images = list(data["images"])
        annotations = list(data["annotations"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DatasetError(f"{path} is not a COCO annotation file (images / annotations / categories): {err}") from err
    supercategories = sorted({c.get("supercategory") or c["name"] for c in categories})
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in annotations:
        by_image.setdefault(int(ann["image_id"]), []).append(ann)
    return PartAnnotations(
        images=images,
        by_image=by_image,
        part_classes=["Background", *(f"{c.get('supercategory', '')} {c['name']}".strip() for c in categories)],
        object_classes=["Background", *supercategories],
        part_index={int(c["id"]): i + 1 for i, c in enumerate(categories)},
        object_index={int(c["id"]): supercategories.index(c.get("supercategory") or c["name"]) + 1 for c in categories},
    )
