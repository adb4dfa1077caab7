"""Evaluation: known answers on synthetic masks, real images with honest ground truth (the horse
silhouette, Otsu-labelled coins), the colour-merging baseline, and tiny VOC- and PartImageNet-format
datasets written here in the datasets' own formats, run end to end through the API and the CLI."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reference import parity_dir
from scipy import ndimage
from skimage import data, filters, measure, morphology, transform

from cast.cli import main
from cast.datasets import load_label_mask, read_part_annotations, segmentation_mask
from cast.errors import DatasetError
from cast.evaluation import (
    LevelScore,
    align_ground_truth,
    best_level,
    colour_baseline_metrics,
    colour_merging_hierarchy,
    evaluate_dataset,
    evaluate_partimagenet,
    evaluate_voc,
    format_scores,
    level_metrics,
    metrics_for_label_maps,
)
from cast.export import mask_to_coco_rle
from cast.hierarchy import Hierarchy
from cast.image import InputConfig
from cast.render import boundary_mask, voc_palette
from cast.segmenter import Segmenter
from cast.weights import convert_checkpoint

METRIC_FIELDS = ("mean_best_iou", "mean_pred_best_iou", "boundary_precision", "boundary_recall", "boundary_f")


def halves(height: int = 40, width: int = 60, split: int = 30) -> np.ndarray:
    gt = np.zeros((height, width), np.int64)
    gt[:, split:] = 1
    return gt


def score(pred: np.ndarray, gt: np.ndarray, **options) -> LevelScore:
    return metrics_for_label_maps([pred], gt, **options)[0]


def in_unit_range(s: LevelScore) -> bool:
    values = [getattr(s, f) for f in METRIC_FIELDS] + list(s.per_gt_best_iou.values())
    return all(0.0 <= v <= 1.0 for v in values)


# ----------------------------------------------------------------------------- known answers
def test_identical_masks_score_one_even_relabelled() -> None:
    gt = halves()
    gt[5:15, 5:15] = 7
    for pred in (gt, np.choose(np.searchsorted([0, 1, 7], gt), [42, 3, 9])):  # same partition, other ids
        s = score(pred, gt)
        assert s.per_gt_best_iou == {0: 1.0, 1: 1.0, 7: 1.0}
        assert s.mean_best_iou == s.mean_pred_best_iou == 1.0
        assert s.boundary_precision == s.boundary_recall == s.boundary_f == 1.0
        assert s.num_segments == 3


def test_one_pixel_shift_is_within_tolerance_two_but_not_zero() -> None:
    gt, pred = halves(split=30), halves(split=31)
    near = score(pred, gt, boundary_tolerance=2)
    assert near.boundary_f == 1.0
    assert near.per_gt_best_iou == pytest.approx({0: 30 / 31, 1: 29 / 30})
    exact = score(pred, gt, boundary_tolerance=0)
    assert exact.boundary_precision == exact.boundary_recall == exact.boundary_f == 0.0
    far = score(halves(split=40), gt, boundary_tolerance=2)  # 10 px off: nothing matches
    assert far.boundary_f == 0.0 and far.mean_best_iou < near.mean_best_iou


def test_split_segment_has_best_match_iou_one_half() -> None:
    gt = halves()
    pred = gt.copy()
    pred[20:, 30:] = 2  # the right GT segment split into two equal halves
    s = score(pred, gt)
    assert s.per_gt_best_iou == {0: 1.0, 1: 0.5}
    assert s.mean_best_iou == 0.75
    assert s.mean_pred_best_iou == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert s.boundary_recall == 1.0 and s.boundary_precision < 1.0  # the extra cut is a false boundary


def test_ignored_void_band_neither_counts_nor_hides_the_contour() -> None:
    gt = halves(split=33)
    gt[:, 28:33] = 255  # a VOC-style 5 px void band along the contour
    pred = halves(split=30)
    noisy = pred.copy()
    noisy[:, 28:33] = np.random.default_rng(0).integers(0, 5, size=(40, 5))  # anything inside the band
    for p in (pred, noisy):
        assert score(p, gt).mean_best_iou == 1.0
    s = score(pred, gt)
    assert s.boundary_precision == s.boundary_recall == 1.0
    off = score(halves(split=12), gt)  # a contour in the wrong place is still found wrong
    assert off.boundary_f == 0.0 and off.mean_best_iou < 1.0
    assert score(pred, gt, ignore_index=None).per_gt_best_iou.keys() == {0, 1, 255}


def test_wide_unlabelled_area_makes_no_contour() -> None:
    gt = np.zeros((40, 60), np.int64)
    gt[:, 20:] = 255  # most of the image is not annotated
    pred = np.arange(60)[None, :].repeat(40, 0) // 10  # cuts every 10 px, most inside the void
    s = score(pred, gt)
    assert s.boundary_recall == 1.0  # no GT contour to find
    assert s.boundary_precision < 1.0  # the cut at x=10 lies in labelled background, 10 px from any void
    assert s.per_gt_best_iou == {0: 0.5}


def test_bad_inputs_raise_clear_errors() -> None:
    gt = halves()
    with pytest.raises(ValueError, match="no labelled pixels"):
        score(gt, np.full_like(gt, 255))
    with pytest.raises(ValueError, match="boundary_tolerance"):
        score(gt, gt, boundary_tolerance=-1)
    with pytest.raises(ValueError, match="metric"):
        best_level([score(gt, gt)], metric="accuracy")


def test_best_level_and_table() -> None:
    gt = halves()
    maps = [np.arange(60)[None, :].repeat(40, 0) // 6, halves(split=31), gt]
    scores = metrics_for_label_maps(maps, gt, levels=[0, 1, 2], names=["fine", "close", "exact"])
    assert best_level(scores).level == 2
    assert best_level(scores, "boundary_recall").level == 0  # the finest map (first on ties) finds every contour
    table = format_scores(scores).splitlines()
    assert table[0].startswith("| level |") and len(table) == 2 + len(scores)
    assert "| 2 * | exact | 1.000 |" in table[-1]


# ----------------------------------------------------------------------------- real images
@pytest.fixture(scope="module")
def segmenter(tiny_segmenter: Segmenter) -> Segmenter:
    return tiny_segmenter


def horse_image() -> tuple[np.ndarray, np.ndarray]:
    """A brown horse on grass with mild noise, and its silhouette as ground truth (1 = horse)."""
    silhouette = ~data.horse()  # data.horse() is True on the background
    rng = np.random.default_rng(0)
    rgb = np.where(silhouette[..., None], [120, 70, 30], [60, 150, 60]) + rng.normal(0, 8, silhouette.shape + (3,))
    return np.clip(rgb, 0, 255).astype(np.uint8), silhouette.astype(np.int64)


def coins_image() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's coins and an Otsu-threshold mask labelled into connected coins (0 = background)."""
    grey = data.coins()
    foreground = morphology.remove_small_objects(ndimage.binary_fill_holes(grey > filters.threshold_otsu(grey)), max_size=50)
    return np.repeat(grey[..., None], 3, axis=2), measure.label(foreground)


@pytest.fixture(scope="module")
def horse(segmenter: Segmenter) -> tuple[Hierarchy, np.ndarray, np.ndarray]:
    rgb, gt = horse_image()
    return segmenter.run(rgb), gt, rgb


def test_align_ground_truth_crops_like_the_image(horse) -> None:
    hierarchy, gt_full, rgb = horse
    x0, y0, x1, y1 = hierarchy.provenance.input.crop_box_xyxy
    assert (x1 - x0, y1 - y0) != (rgb.shape[1], rgb.shape[0])  # 400 x 328 is really cropped
    aligned = align_ground_truth(gt_full, hierarchy)
    assert aligned.shape == hierarchy.shape
    np.testing.assert_array_equal(aligned, gt_full[y0:y1, x0:x1])
    half = hierarchy.resized(hierarchy.shape[0] // 2, hierarchy.shape[1] // 2)
    np.testing.assert_array_equal(align_ground_truth(gt_full, half), gt_full[y0:y1, x0:x1][1::2, 1::2])
    with pytest.raises(ValueError, match="align_ground_truth"):
        level_metrics(hierarchy, gt_full)
    with pytest.raises(ValueError, match="same image"):
        align_ground_truth(gt_full[:-1], hierarchy)


def test_horse_silhouette_scores(horse) -> None:
    hierarchy, gt_full, _ = horse
    gt = align_ground_truth(gt_full, hierarchy)
    scores = level_metrics(hierarchy, gt)
    assert [s.level for s in scores] == list(range(hierarchy.num_levels))
    assert all(in_unit_range(s) for s in scores)
    assert [s.num_segments for s in scores] == [len(hierarchy.segment_ids(lv)) for lv in range(hierarchy.num_levels)]
    assert best_level(scores) in scores
    # superpixels follow the strong colour edge: the silhouette's contour is found
    assert scores[0].boundary_recall > 0.8
    # a mask stretched over the whole image instead of cropped scores clearly worse at the same level
    stretched = dataclasses.replace(hierarchy, provenance=None)
    naive = transform.resize(gt_full, hierarchy.shape, order=0, preserve_range=True, anti_aliasing=False)
    assert level_metrics(stretched, naive.astype(np.int64))[0].boundary_recall < scores[0].boundary_recall - 0.3
    # two colours: merging the same superpixels by colour gathers the horse into one segment and drops the
    # cuts inside uniform areas (the grass stays in pieces: the horse separates them, merging is adjacent-only)
    fine, coarse = metrics_for_label_maps(colour_merging_hierarchy(hierarchy.image, hierarchy.superpixels, (64, 8)), gt)
    assert coarse.per_gt_best_iou[1] > 0.85 > fine.per_gt_best_iou[1]
    assert coarse.boundary_precision > fine.boundary_precision + 0.3 and coarse.boundary_f > 0.8


def test_coins_and_colour_baseline(segmenter: Segmenter) -> None:
    rgb, gt_full = coins_image()
    hierarchy = segmenter.run(rgb)
    gt = align_ground_truth(gt_full, hierarchy)
    scores = level_metrics(hierarchy, gt)
    assert all(in_unit_range(s) for s in scores)
    assert set(scores[0].per_gt_best_iou) == set(np.unique(gt).tolist()) and len(np.unique(gt)) > 10
    assert best_level(scores).level in range(hierarchy.num_levels)

    counts = (64, 32, 16, 8)
    maps = colour_merging_hierarchy(hierarchy.image, hierarchy.superpixels, counts)
    assert [len(np.unique(m)) for m in maps] == list(counts)
    for finer, coarser in zip([hierarchy.superpixels, *maps], maps):  # nested: one coarser segment per finer one
        pairs = np.unique(np.stack([finer.ravel(), coarser.ravel()]), axis=1)
        assert pairs.shape[1] == len(np.unique(finer))
    baseline = colour_baseline_metrics(hierarchy, gt)
    assert [s.level for s in baseline] == [1, 2, 3, 4]
    assert [s.num_segments for s in baseline] == [s.num_segments for s in scores[1:]]  # equal counts
    assert all(in_unit_range(s) for s in baseline)
    with pytest.raises(ValueError, match="counts"):
        colour_merging_hierarchy(hierarchy.image, hierarchy.superpixels, counts=(10_000,))


# ----------------------------------------------------------------------------- dataset formats
def small(rgb: np.ndarray, scale: float = 0.5) -> np.ndarray:
    h, w = rgb.shape[:2]
    return np.array(Image.fromarray(rgb).resize((int(w * scale), int(h * scale)), Image.Resampling.BILINEAR))


def threshold_mask(rgb: np.ndarray) -> np.ndarray:
    grey = rgb.mean(axis=2)
    return grey < filters.threshold_otsu(grey)


def write_voc(root: Path) -> dict[str, np.ndarray]:
    """VOC2012 layout: JPEGImages, palette SegmentationClass PNGs with a void band, split lists."""
    base = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / sub).mkdir(parents=True)
    masks = {}
    for sample_id, rgb, cls in (("2007_000001", small(data.chelsea()), 8), ("2007_000002", small(data.coffee()), 5)):
        mask = np.where(threshold_mask(rgb), cls, 0).astype(np.uint8)
        mask[boundary_mask(mask, thickness=3)] = 255  # VOC's void outline
        png = Image.fromarray(mask, mode="P")
        png.putpalette(voc_palette(256).astype(np.uint8).ravel().tolist())
        png.save(base / "SegmentationClass" / f"{sample_id}.png")
        Image.fromarray(rgb).save(base / "JPEGImages" / f"{sample_id}.jpg", quality=95)
        masks[sample_id] = mask
    (base / "ImageSets/Segmentation/val.txt").write_text("2007_000001\n2007_000002\n2007_000003\n")  # 3: no files
    (base / "ImageSets/Segmentation/train.txt").write_text("2007_000002\n")
    return masks


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    convert_checkpoint(parity_dir() / "tiny_cast.safetensors", path)
    return path


@pytest.fixture(scope="module")
def voc(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("voc")
    return root, write_voc(root)


def test_voc_dataset(voc, segmenter: Segmenter) -> None:
    root, masks = voc
    mask_path = root / "VOCdevkit/VOC2012/SegmentationClass/2007_000001.png"
    np.testing.assert_array_equal(load_label_mask(mask_path), masks["2007_000001"])  # palette indices, 255 kept
    result = evaluate_voc(segmenter, root, baseline=True, progress=False)
    assert result.num_images == 2 and [s[0] for s in result.skipped] == ["2007_000003"]
    assert [s.level for s in result.scores] == [0, 1, 2, 3, 4]
    assert all(in_unit_range(s) for s in result.scores + result.baseline)
    assert set(result.scores[4].per_gt_best_iou) == {0, 5, 8}  # per class, averaged over the images holding it
    assert 255 not in result.scores[0].per_gt_best_iou
    one = evaluate_dataset("voc", segmenter, root / "VOCdevkit", split="train", limit=1, progress=False)
    assert one.num_images == 1 and one.baseline is None and not one.skipped
    with pytest.raises(DatasetError, match="ImageSets/Segmentation"):
        evaluate_voc(segmenter, root / "VOCdevkit/VOC2012/JPEGImages")


def test_cli_voc_and_mask(voc, checkpoint: Path, tmp_path: Path, capsys) -> None:
    root, _ = voc
    out = tmp_path / "voc.json"
    assert main(["evaluate", "voc", str(root), "--checkpoint", str(checkpoint), "--limit", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| level | segments | mean best IoU" in printed and "best level:" in printed
    assert json.loads(out.read_text())["num_images"] == 1

    rgb, silhouette = horse_image()
    Image.fromarray(rgb).save(tmp_path / "horse.png")
    Image.fromarray((silhouette * 255).astype(np.uint8)).save(tmp_path / "horse_mask.png")  # 0 / 255 binary
    assert main(["evaluate", "mask", str(tmp_path / "horse.png"), str(tmp_path / "horse_mask.png"),
                 "--checkpoint", str(checkpoint)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "## CAST hierarchy" in printed and "Colour-merging baseline" in printed
    assert sum(line.startswith("| 4 ") for line in printed.splitlines()) == 2  # level 4 in both tables
    assert main(["evaluate", "mask", str(tmp_path / "horse.png"), str(tmp_path / "missing.png"),
                 "--checkpoint", str(checkpoint)]) == 2  # fmt: skip
    assert "error:" in capsys.readouterr().err


# ----------------------------------------------------------------------------- PartImageNet format
CATEGORIES = [
    {"id": 1, "name": "Head", "supercategory": "Quadruped"},
    {"id": 2, "name": "Body", "supercategory": "Quadruped"},
    {"id": 3, "name": "Body", "supercategory": "Boat"},
]


def write_partimagenet(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """COCO JSON with a polygon, an uncompressed and a compressed RLE part; images named by file_name."""
    mask_api = pytest.importorskip("pycocotools.mask")
    images, annotations, truth = [], [], {}
    cat = small(data.chelsea())
    h, w = cat.shape[:2]
    head = [60.0, 10.0, 140.0, 10.0, 140.0, 90.0, 60.0, 90.0]  # a rectangle around the cat's head
    body = threshold_mask(cat)
    body[10:91, 60:141] = False
    boat = small(data.coffee())  # stands in for a second object class
    cup = threshold_mask(boat)
    compressed = mask_api.encode(np.asfortranarray(cup.astype(np.uint8)))
    compressed["counts"] = compressed["counts"].decode("ascii")
    for image_id, (name, rgb) in enumerate((("n0001_cat.JPEG", cat), ("n0002_cup.JPEG", boat)), start=1):
        Image.fromarray(rgb).save(root / name, format="JPEG", quality=95)
        images.append({"id": image_id, "file_name": name, "height": rgb.shape[0], "width": rgb.shape[1]})
    annotations += [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [head]},
        {"id": 2, "image_id": 1, "category_id": 2, "segmentation": mask_to_coco_rle(body)},
        {"id": 3, "image_id": 2, "category_id": 3, "segmentation": compressed},
    ]
    truth["body"], truth["cup"], truth["shape"] = body, cup, np.array([h, w])
    path = root / "val.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return path, truth


@pytest.fixture(scope="module")
def partimagenet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("partimagenet")
    path, truth = write_partimagenet(root)
    return root, path, truth


def test_partimagenet_annotations(partimagenet) -> None:
    root, path, truth = partimagenet
    ann = read_part_annotations(path)
    assert ann.part_classes == ["Background", "Quadruped Head", "Quadruped Body", "Boat Body"]
    assert ann.object_classes == ["Background", "Boat", "Quadruped"]
    parts, objects = ann.masks(ann.images[0])
    assert np.count_nonzero(parts == 1) == 81 * 81  # cv2.fillPoly includes the polygon's edges
    np.testing.assert_array_equal(parts == 2, truth["body"])
    np.testing.assert_array_equal(objects == 2, (parts == 1) | (parts == 2))
    parts, objects = ann.masks(ann.images[1])
    np.testing.assert_array_equal(parts == 3, truth["cup"])
    np.testing.assert_array_equal(objects, np.where(truth["cup"], 1, 0))
    with pytest.raises(DatasetError, match="segmentation"):
        segmentation_mask(42, 4, 4)


def test_partimagenet_protocol(partimagenet, segmenter: Segmenter) -> None:
    root, path, _ = partimagenet
    calls = []

    def background_everywhere(image: np.ndarray, labels: np.ndarray, classes) -> np.ndarray:
        calls.append((image.shape, len(np.unique(labels)), list(classes)))
        return np.zeros(labels.shape, np.int64)

    result = evaluate_partimagenet(segmenter, root, path, segment_labeller=background_everywhere, baseline=True,
                                   progress=False)  # fmt: skip
    assert result.num_images == 2 and not result.skipped
    assert result.score("object").level == 4 and result.score("part").level == 3
    assert all(in_unit_range(s) for s in result.object_scores + result.part_scores + result.baseline_part)
    assert set(result.object_scores[4].per_gt_best_iou) == {0, 1, 2}  # background, Boat, Quadruped
    # the labeller sees the 224 x 224 input, level 4 then level 3, with the protocol's class lists
    assert [c[0] for c in calls] == [(224, 224, 3)] * 4
    assert all(c[1] <= 8 for c in calls[::2]) and all(c[1] <= 16 for c in calls[1::2])
    assert calls[0][2] == ["Background", "Boat", "Quadruped"] and calls[1][2][0] == "Background"
    # all-background labels: background IoU < 1, every object class 0
    assert 0.0 < result.object_class_miou < 0.5 and 0.0 < result.part_class_miou < 0.5
    full_frame = Segmenter(segmenter.model, input_config=InputConfig(224, "full_frame"))
    with pytest.raises(DatasetError, match="CenterCrop"):
        evaluate_partimagenet(full_frame, root, path, progress=False)


def test_cli_partimagenet(partimagenet, checkpoint: Path, capsys) -> None:
    root, path, _ = partimagenet
    assert main(["evaluate", "partimagenet", str(root), str(path), "--checkpoint", str(checkpoint), "--limit", "1"]) == 0
    printed = capsys.readouterr().out
    assert "object (level 4" in printed and "part   (level 3" in printed
    assert "CLIP ViT-B/16" in printed and "not implemented" in printed
    assert main(["evaluate", "partimagenet", str(root), str(root / "nope.json"), "--checkpoint", str(checkpoint)]) == 2
