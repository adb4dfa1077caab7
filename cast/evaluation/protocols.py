"""The paper's evaluation protocols on datasets in their own on-disk formats (spec §7.2).

- **Pascal VOC 2012**: `JPEGImages/<id>.jpg`, `SegmentationClass/<id>.png` (palette PNG, 255 = void),
  `ImageSets/Segmentation/<split>.txt`. Every level is scored class-agnostically (mean best-match IoU
  over the GT segments, background included; boundary F), averaged over images.
- **PartImageNet** (OOD val): a COCO JSON (`images`, `annotations` with polygon or RLE `segmentation`,
  `categories` with `supercategory`) plus the image folder. Per image: `Resize(224)` + `CenterCrop(224)`,
  then level 4 (8 segments) against the OBJECT mask (supercategories + background) and level 3
  (16 segments) against the PART mask (part categories + background), by class-agnostic mean
  best-match IoU; and, given a CLIP `SegmentNamer`, the paper's metric (spec §11): every segment named
  zero-shot (objects at level 4, parts at level 3 conditioned on them) and the class mIoU of the named
  maps (torchmetrics' multiclass Jaccard, 12 object / 41 part classes for PartImageNet), per image,
  averaged over images.

VOC scores use the hierarchy's own resolution (the segmented part of the original image), PartImageNet
the 224 x 224 model input; masks are aligned with `cast.evaluation.align_ground_truth`. Images that fail (unreadable, size mismatch, too few superpixels)
are skipped and listed, as the official notebook skips exceptions (there silently).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from ..datasets.masks import load_label_mask
from ..datasets.partimagenet import read_part_annotations
from ..datasets.voc import VOC_IGNORE, voc_samples
from ..errors import CastError, DatasetError
from ..image import InputConfig
from ..segmenter import Segmenter
from .baselines import colour_baseline_metrics
from .metrics import LevelScore, align_ground_truth, average_scores, level_metrics

if TYPE_CHECKING:
    from ..naming import SegmentNamer

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
    object_class_miou: float | None = None  # only with a CLIP namer (spec §11.5)
    part_class_miou: float | None = None
    clip_model: str | None = None
    model: str | None = None  # the segmenter's checkpoint
    baseline_object: list[LevelScore] | None = None
    baseline_part: list[LevelScore] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def score(self, which: str) -> LevelScore:
        """The protocol's score: "object" (level 4) or "part" (level 3)."""
        scores, level = (self.object_scores, self.object_level) if which == "object" else (self.part_scores, self.part_level)
        return next(s for s in scores if s.level == level)


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
def class_miou(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> float:
    """Mean IoU over the classes present in the GT or the prediction (one image): torchmetrics'
    `JaccardIndex(task="multiclass", num_classes=n)` with its default macro average (spec §11.5)."""
    if pred.shape != gt.shape:
        raise ValueError(f"labelled map is {pred.shape}, ground truth is {gt.shape}")
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes or gt.min() < 0 or gt.max() >= num_classes):
        raise ValueError(f"class indices must lie in 0..{num_classes - 1}")
    confusion = np.bincount(gt.ravel() * num_classes + pred.ravel(), minlength=num_classes**2)
    confusion = confusion.reshape(num_classes, num_classes)
    inter = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - inter
    return float((inter[union > 0] / union[union > 0]).mean())


def named_class_mious(namer: "SegmentNamer", image_path: Path, hierarchy, annotations, image: dict[str, Any],
                      object_level: int, part_level: int) -> tuple[float, float]:
    """One image's object and part class mIoU of CLIP-named segments (spec §11.3-§11.5).

    `hierarchy` lives in the 224 x 224 model input; the image goes through CLIP's own transform and the
    ground truth through the notebook's `seg_transform` (nearest Resize(224) + CenterCrop(224))."""
    import torch

    from ..image import load_image
    from ..naming import frame_image, frame_labels

    vocab = annotations.vocabulary
    framed = frame_image(namer.clip, load_image(image_path))
    if framed.size != hierarchy.shape[0] or hierarchy.shape[0] != hierarchy.shape[1]:
        raise DatasetError(f"CLIP's frame is {framed.size} px but the hierarchy is {hierarchy.shape}")
    maps = [torch.from_numpy(hierarchy.labels(level).astype(np.int64)) for level in (object_level, part_level)]
    names = namer.name_maps(framed, maps[0], vocab, maps[1], object_level=object_level, part_level=part_level)
    gt_objects, gt_parts = (frame_labels(namer.clip, m).numpy() for m in annotations.class_masks(image))
    return (class_miou(names.object_classes, gt_objects, len(vocab.object_classes)),
            class_miou(names.part_classes, gt_parts, vocab.background_part + 1))  # fmt: skip


def evaluate_partimagenet(
    segmenter: Segmenter, root: str | Path, annotation_json: str | Path, *, limit: int | None = None,
    object_level: int = 4, part_level: int = 3, namer: "SegmentNamer | None" = None,
    baseline: bool = False, boundary_tolerance: int = 2, progress: bool = True,
) -> PartImageNetResult:  # fmt: skip
    """PartImageNet object / part protocol: class-agnostic mean best-match IoU of `object_level` (4) vs the
    object masks and of `part_level` (3) vs the part masks; with `namer` (a CLIP SegmentNamer) also the
    paper's class mIoU of the CLIP-named segments (spec §11.5). All averaged over images.

    The segmenter must use the official 224 px `center_crop` input; `root` holds the JSON's `file_name`s.
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
            if namer is not None:
                obj_miou, part_miou = named_class_mious(namer, Path(root) / name, hierarchy, ann, image,
                                                        object_level, part_level)  # fmt: skip
                object_mious.append(obj_miou)
                part_mious.append(part_miou)
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
        clip_model=None if namer is None else namer.clip.id,
        model=segmenter.pretrained_cfg.checkpoint,
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
