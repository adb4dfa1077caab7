"""The paper's evaluation protocols on datasets in their own on-disk formats (spec §7.2).

- **Pascal VOC 2012**: `JPEGImages/<id>.jpg`, `SegmentationClass/<id>.png` (palette PNG, 255 = void),
  `ImageSets/Segmentation/<split>.txt`. Every level is scored class-agnostically (mean best-match IoU
  over the GT segments, background included; boundary F), averaged over images.
- **PartImageNet** (OOD val): a COCO JSON (`images`, `annotations` with polygon or RLE `segmentation`,
  `categories` with `supercategory`) plus the image folder. Per image: `Resize(224)` + `CenterCrop(224)`,
  then level 4 (8 segments) against the OBJECT mask (supercategories + background) and level 3
  (16 segments) against the PART mask (part categories + background), by mean best-match IoU.

  NOT the official metric: the paper also names every segment zero-shot with CLIP ViT-B/16 and
  computes class mIoU with torchmetrics (12 object / 41 part classes). The CLIP weights cannot be
  downloaded in this environment, so that step is left to a `segment_labeller` callable; when one is
  given, class mIoU is computed with it (mean over classes present in GT or prediction, per image).

VOC scores use the hierarchy's own resolution (the segmented part of the original image), PartImageNet
the 224 x 224 model input; masks are aligned with `cast.evaluate.align_ground_truth`. Images that fail (unreadable, size mismatch, too few superpixels)
are skipped and listed, as the official notebook skips exceptions (there silently).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from .errors import CastError
from .evaluate import LevelScore, align_ground_truth, average_scores, colour_baseline_metrics, level_metrics
from .export import coco_rle_to_mask
from .image import InputConfig
from .render import voc_palette
from .segmenter import Segmenter

VOC_IGNORE = 255
# (image (H, W, 3) uint8, segment labels (H, W) int of one level, class names) -> (H, W) class-index map
SegmentLabeller = Callable[[np.ndarray, np.ndarray, Sequence[str]], np.ndarray]


class DatasetError(CastError, ValueError):
    """A dataset folder or annotation file is missing or not in the expected format."""


@dataclass(frozen=True)
class DatasetResult:
    """Per-level scores averaged over the images that were scored, and the images that were skipped."""

    dataset: str
    num_images: int
    scores: list[LevelScore]
    baseline: list[LevelScore] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class PartImageNetResult:
    """Class-agnostic object / part scores of every level; the protocol reads object_level / part_level."""

    num_images: int
    object_scores: list[LevelScore]
    part_scores: list[LevelScore]
    object_level: int
    part_level: int
    object_class_miou: float | None = None  # only with a segment_labeller
    part_class_miou: float | None = None
    baseline_object: list[LevelScore] | None = None
    baseline_part: list[LevelScore] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def score(self, which: str) -> LevelScore:
        """The protocol's score: "object" (level 4) or "part" (level 3)."""
        scores, level = (self.object_scores, self.object_level) if which == "object" else (self.part_scores, self.part_level)
        return next(s for s in scores if s.level == level)


# ---------------------------------------------------------------- masks
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


# ---------------------------------------------------------------- Pascal VOC
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


def evaluate_voc(
    segmenter: Segmenter, root: str | Path, *, split: str = "val", limit: int | None = None,
    baseline: bool = False, boundary_tolerance: int = 2, progress: bool = True,
) -> DatasetResult:  # fmt: skip
    """Unsupervised VOC protocol: every level's mean best-match IoU and boundary F, mean over images."""
    samples = voc_samples(root, split)[:limit]
    per_image, per_baseline, skipped = [], [], []
    for sample_id, image_path, mask_path in tqdm(samples, desc=f"VOC {split}", unit="image", disable=not progress):
        try:
            gt_full = load_label_mask(mask_path)  # a missing mask fails before the model runs
            hierarchy = segmenter.run(image_path)
            gt = align_ground_truth(gt_full, hierarchy)
            per_image.append(level_metrics(hierarchy, gt, ignore_index=VOC_IGNORE, boundary_tolerance=boundary_tolerance))
            if baseline:
                per_baseline.append(colour_baseline_metrics(hierarchy, gt, ignore_index=VOC_IGNORE,
                                                            boundary_tolerance=boundary_tolerance))  # fmt: skip
        except (CastError, OSError, ValueError) as err:
            skipped.append((sample_id, str(err)))
            tqdm.write(f"skipped {sample_id}: {err}", file=sys.stderr)
    return DatasetResult("voc", len(per_image), average_scores(per_image),
                         average_scores(per_baseline) if baseline else None, skipped)  # fmt: skip


# ---------------------------------------------------------------- PartImageNet
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


def class_miou(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> float:
    """Mean IoU over the classes present in the GT or the prediction (one image)."""
    if pred.shape != gt.shape:
        raise ValueError(f"labelled map is {pred.shape}, ground truth is {gt.shape}")
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"class indices must lie in 0..{num_classes - 1}")
    confusion = np.bincount(gt.ravel() * num_classes + pred.ravel(), minlength=num_classes**2)
    confusion = confusion.reshape(num_classes, num_classes)
    inter = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - inter
    return float((inter[union > 0] / union[union > 0]).mean())


def evaluate_partimagenet(
    segmenter: Segmenter, root: str | Path, annotation_json: str | Path, *, limit: int | None = None,
    object_level: int = 4, part_level: int = 3, segment_labeller: SegmentLabeller | None = None,
    baseline: bool = False, boundary_tolerance: int = 2, progress: bool = True,
) -> PartImageNetResult:  # fmt: skip
    """Label-free PartImageNet protocol: class-agnostic mean best-match IoU of `object_level` (4) vs the
    object masks and of `part_level` (3) vs the part masks, averaged over images.

    Not the official metric, which also names each segment with CLIP ViT-B/16 and reports torchmetrics
    class mIoU: CLIP weights cannot be downloaded here. Pass `segment_labeller` to add that step. The
    segmenter must use the official 224 px `center_crop` input; `root` holds the JSON's `file_name`s.
    """
    if segmenter.input_config != InputConfig(224, "center_crop"):
        raise DatasetError(f"the PartImageNet protocol uses Resize(224) + CenterCrop(224); got {segmenter.input_config}")
    ann = read_part_annotations(annotation_json)
    objects, parts, base_objects, base_parts, skipped = [], [], [], [], []
    object_mious, part_mious = [], []
    for image in tqdm(ann.images[:limit], desc="PartImageNet", unit="image", disable=not progress):
        name = str(image.get("file_name", image.get("id")))
        try:
            # scored at the model input's 224 x 224, as the official notebook does
            hierarchy = segmenter.run(Path(root) / name).resized(224, 224)
            if max(object_level, part_level) >= hierarchy.num_levels:
                raise DatasetError(f"the model has levels 0..{hierarchy.num_levels - 1}; "
                                   f"object_level={object_level}, part_level={part_level}")
            part_full, object_full = ann.masks(image)
            part_gt, object_gt = align_ground_truth(part_full, hierarchy), align_ground_truth(object_full, hierarchy)
            scored = [level_metrics(hierarchy, gt, ignore_index=None, boundary_tolerance=boundary_tolerance)
                      for gt in (object_gt, part_gt)]  # fmt: skip
            if segment_labeller is not None:
                image_rgb = hierarchy.image
                obj_pred = segment_labeller(image_rgb, hierarchy.labels(object_level), ann.object_classes)
                part_pred = segment_labeller(image_rgb, hierarchy.labels(part_level), ann.part_classes)
                object_mious.append(class_miou(np.asarray(obj_pred), object_gt, len(ann.object_classes)))
                part_mious.append(class_miou(np.asarray(part_pred), part_gt, len(ann.part_classes)))
            if baseline:
                base_objects.append(colour_baseline_metrics(hierarchy, object_gt, ignore_index=None,
                                                            boundary_tolerance=boundary_tolerance))  # fmt: skip
                base_parts.append(colour_baseline_metrics(hierarchy, part_gt, ignore_index=None,
                                                          boundary_tolerance=boundary_tolerance))  # fmt: skip
            objects.append(scored[0])
            parts.append(scored[1])
        except (CastError, OSError, ValueError) as err:
            skipped.append((name, str(err)))
            tqdm.write(f"skipped {name}: {err}", file=sys.stderr)
    mean_or_none = lambda values: float(np.mean(values)) if values else None  # noqa: E731
    return PartImageNetResult(
        num_images=len(objects),
        object_scores=average_scores(objects),
        part_scores=average_scores(parts),
        object_level=object_level,
        part_level=part_level,
        object_class_miou=mean_or_none(object_mious),
        part_class_miou=mean_or_none(part_mious),
        baseline_object=average_scores(base_objects) if baseline else None,
        baseline_part=average_scores(base_parts) if baseline else None,
        skipped=skipped,
    )


def evaluate_dataset(name: str, segmenter: Segmenter, root: str | Path, **options: Any) -> DatasetResult | PartImageNetResult:
    """Dispatch to :func:`evaluate_voc` ("voc") or :func:`evaluate_partimagenet` ("partimagenet")."""
    runners = {"voc": evaluate_voc, "partimagenet": evaluate_partimagenet}
    if name not in runners:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(runners)}")
    return runners[name](segmenter, root, **options)
