"""PartImageNet annotations: a COCO JSON of part polygons / RLE with supercategories (the objects)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DatasetError
from .masks import segmentation_mask

if TYPE_CHECKING:
    from ..naming.vocabulary import Vocabulary


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
    categories: tuple[dict[str, Any], ...] = ()  # in the file's order

    @property
    def vocabulary(self) -> "Vocabulary":
        """The protocol's classes in the official order (spec §11.2): supercategories in order of first
        appearance, each with its part names (which already carry the object, "Quadruped Head")."""
        from ..naming.vocabulary import Vocabulary

        objects = list(dict.fromkeys(_supercategory(c) for c in self.categories))
        parts = tuple(tuple(_part_name(c) for c in self.categories if _supercategory(c) == o) for o in objects)
        return Vocabulary(tuple(objects), parts, name="partimagenet-json")

    def class_masks(self, image: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(object mask, part mask) of one image record with the official class indices (§11.5): objects
        0..n-1 in `vocabulary` order, background n; parts grouped by object, background last."""
        vocab = self.vocabulary
        object_of = {int(c["id"]): vocab.objects.index(_supercategory(c)) for c in self.categories}
        part_of = {int(c["id"]): vocab.part_classes.index(_part_name(c)) for c in self.categories}
        height, width = int(image["height"]), int(image["width"])
        objects = np.full((height, width), len(vocab.objects), np.int64)
        parts = np.full((height, width), vocab.background_part, np.int64)
        for ann in self.by_image.get(int(image["id"]), []):
            mask = coco_mask(ann["segmentation"], height, width)
            objects[mask] = object_of[int(ann["category_id"])]
            parts[mask] = part_of[int(ann["category_id"])]
        return objects, parts

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


def coco_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of a COCO segmentation rasterised by pycocotools, as the official evaluation
    does (`COCO.annToMask`): its polygon rasterisation differs from OpenCV's at the edges."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError as err:
        raise DatasetError("the PartImageNet class masks are rasterised by pycocotools, as in the official "
                           "evaluation: pip install pycocotools") from err
    try:
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        elif isinstance(segmentation, dict):
            counts = segmentation["counts"]
            rle = {"size": segmentation["size"], "counts": counts.encode() if isinstance(counts, str) else counts}
        else:
            raise TypeError(f"unknown segmentation of type {type(segmentation).__name__}")
        return mask_utils.decode(rle).astype(bool)
    except (TypeError, ValueError, KeyError, IndexError) as err:
        raise DatasetError(f"cannot read a COCO segmentation: {err}") from err


def _supercategory(category: dict[str, Any]) -> str:
    return str(category.get("supercategory") or category["name"])


def _part_name(category: dict[str, Any]) -> str:
    """PartImageNet's part names already carry the object ("Quadruped Head"); others get it prefixed."""
    name, sup = str(category["name"]), _supercategory(category)
    return name if sup in name else f"{sup} {name}"


def read_part_annotations(path: str | Path) -> PartAnnotations:
    """Read a PartImageNet (COCO-format) annotation JSON."""
    try:
        data = json.loads(Path(path).read_text())
        in_file_order = tuple(data["categories"])
        categories = sorted(in_file_order, key=lambda c: c["id"])
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
        part_classes=["Background", *(_part_name(c) for c in categories)],
        object_classes=["Background", *supercategories],
        part_index={int(c["id"]): i + 1 for i, c in enumerate(categories)},
        object_index={int(c["id"]): supercategories.index(c.get("supercategory") or c["name"]) + 1 for c in categories},
        categories=in_file_order,
    )
