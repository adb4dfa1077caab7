"""`cast evaluate {mask,voc,partimagenet} ...`: score hierarchies against ground truth.

- `mask IMAGE GT_MASK`: one image and a label mask of the whole original image; prints the per-level table
  and the colour-merging baseline at the same segment counts.
- `voc ROOT`: Pascal VOC 2012 segmentation split, class-agnostic (mean best-match IoU, boundary F).
- `partimagenet ROOT ANNOTATION_JSON`: the PartImageNet object / part protocol: label-free scores, and with
  `--clip` the paper's class mIoU of CLIP-named segments (spec §11.5); `--compare-vit` adds the ViT
  baseline of the same size side by side.
The work is done by `cast.evaluation` and `cast.datasets`; this module only parses and prints.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from .common import (
    INPUT_MODES,
    add_model_options,
    existing_dir,
    existing_file,
    output_file,
    non_negative_int,
    positive_int,
    segmenter_from_args,
)

CLIP_NOTE = (
    "The paper's PartImageNet metric names every segment zero-shot with CLIP ViT-B/16 and reports class mIoU "
    "(torchmetrics, 12 object / 41 part classes); add --clip to compute it (CAST_CLIP_MODEL, default OpenAI "
    "ViT-B/16, fetched once into the Hugging Face cache). Without it: class-agnostic mean best-match IoU only."
)
SAME_SIZE_VIT = {"cast_small": "vit_small_moco_in1k", "cast_base": "vit_base_moco_in1k"}


def _best_line(scores: list) -> str:
    from ..evaluation import best_level

    best = best_level(scores)
    return f"best level: {best.level} ({best.level_name}), mean best-match IoU {best.mean_best_iou:.3f}"


def _write_json(path: Path | None, payload: Any) -> None:
    if path is not None:
        path.write_text(json.dumps(dataclasses.asdict(payload) if dataclasses.is_dataclass(payload) else payload, indent=2))
        print(f"wrote {path}")


def _mask_main(args: argparse.Namespace) -> int:
    from ..datasets import load_label_mask
    from ..evaluation import align_ground_truth, colour_baseline_metrics, format_scores, level_metrics

    gt_full = load_label_mask(args.gt_mask)  # fail on a bad mask before loading the model
    hierarchy = segmenter_from_args(args, args.mode).run(args.image)
    gt = align_ground_truth(gt_full, hierarchy)
    options = {"ignore_index": args.ignore_index, "boundary_tolerance": args.tolerance}
    scores = level_metrics(hierarchy, gt, **options)
    print(f"## CAST hierarchy of {args.image} (tolerance {args.tolerance} px)\n")
    print(format_scores(scores))
    print(f"\n{_best_line(scores)}")
    baseline = colour_baseline_metrics(hierarchy, gt, **options) if args.baseline else None
    if baseline:
        print("\n## Colour-merging baseline (same superpixels, same segment counts)\n")
        print(format_scores(baseline))
    _write_json(args.json, {"scores": [dataclasses.asdict(s) for s in scores],
                            "baseline": [dataclasses.asdict(s) for s in baseline] if baseline else None})  # fmt: skip
    return 0


def _report_skipped(skipped: list[tuple[str, str]]) -> None:
    if skipped:
        print(f"\n{len(skipped)} image(s) skipped (first: {skipped[0][0]}: {skipped[0][1]})", file=sys.stderr)


def _voc_main(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_voc, format_scores

    segmenter = segmenter_from_args(args, args.mode)
    result = evaluate_voc(segmenter, args.root, split=args.split, limit=args.limit, baseline=args.baseline,
                          boundary_tolerance=args.tolerance)  # fmt: skip
    _report_skipped(result.skipped)
    if not result.num_images:
        print("error: no image could be scored", file=sys.stderr)
        return 1
    print(f"## Pascal VOC 2012 {args.split}: {result.num_images} images, class-agnostic, mean over images\n")
    print(format_scores(result.scores))
    print(f"\n{_best_line(result.scores)}")
    if result.baseline:
        print("\n## Colour-merging baseline (same segment counts)\n")
        print(format_scores(result.baseline))
    _write_json(args.json, result)
    return 0


def _partimagenet_main(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_partimagenet, format_scores
    from ..evaluation.protocols import PartImageNetResult

    segmenter = segmenter_from_args(args, "center_crop")
    namer = None
    if args.clip is not None:
        from ..naming import SegmentNamer, load_clip

        clip = load_clip(args.clip or None)  # "" (a bare --clip): $CAST_CLIP_MODEL, else OpenAI's ViT-B/16
        print(f"naming with {clip.describe()}", file=sys.stderr)
        namer = SegmentNamer(clip)
    segmenters = {"CAST": segmenter}
    if args.compare_vit is not None:
        segmenters["ViT baseline"] = _vit_segmenter(args, segmenter)
    options = {"limit": args.limit, "baseline": args.baseline, "boundary_tolerance": args.tolerance, "namer": namer}
    results: dict[str, PartImageNetResult] = {}
    for title, runner in segmenters.items():
        results[title] = evaluate_partimagenet(runner, args.root, args.annotations, **options)
        _report_skipped(results[title].skipped)
    result = results["CAST"]
    if not result.num_images:
        print("error: no image could be scored", file=sys.stderr)
        return 1
    obj, part = result.score("object"), result.score("part")
    print(f"## PartImageNet: {result.num_images} images, Resize(224) + CenterCrop(224)\n")
    print(f"object (level {result.object_level}, {obj.level_name}): mean best-match IoU {obj.mean_best_iou:.3f}")
    print(f"part   (level {result.part_level}, {part.level_name}): mean best-match IoU {part.mean_best_iou:.3f}")
    if namer is not None:
        print(f"object class mIoU (CLIP-named, §11.5): {100 * result.object_class_miou:.2f}")
        print(f"part   class mIoU (CLIP-named, §11.5): {100 * result.part_class_miou:.2f}")
    else:
        print(f"\n{CLIP_NOTE}")
    print("\n" + _side_by_side(results))
    print("\n### every level vs the object masks\n")
    print(format_scores(result.object_scores))
    print("\n### every level vs the part masks\n")
    print(format_scores(result.part_scores))
    for title, scores in (("object", result.baseline_object), ("part", result.baseline_part)):
        if scores:
            print(f"\n### colour-merging baseline vs the {title} masks\n")
            print(format_scores(scores))
    _write_json(args.json, {title: dataclasses.asdict(r) for title, r in results.items()} if len(results) > 1 else result)
    return 0


def _vit_segmenter(args: argparse.Namespace, cast_segmenter):
    """The paper's comparison: the ViT baseline of the CAST model's size (or the one --compare-vit names)."""
    from ..api import load_model
    from ..errors import CheckpointError
    from ..image import InputConfig
    from ..segmenter import Segmenter

    spec = args.compare_vit or SAME_SIZE_VIT.get(cast_segmenter.model.config.name)
    if not spec:
        raise CheckpointError(f"no published ViT baseline has the size of {cast_segmenter.model.config.name}; "
                              "name one: --compare-vit MODEL")
    return Segmenter(load_model(spec), input_config=InputConfig(224, "center_crop"))


def _side_by_side(results: dict) -> str:
    """One row per model: the protocol's label-free scores and, when named, the class mIoU (×100)."""
    rows = ["| model | images | object L4 best-match IoU | part L3 best-match IoU | object mIoU (CLIP) | "
            "part mIoU (CLIP) |", "|---|---|---|---|---|---|"]
    pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}"  # noqa: E731
    for title, r in results.items():
        if not r.num_images:
            rows.append(f"| {title} ({r.model}) | 0 | n/a | n/a | n/a | n/a |")
            continue
        rows.append(f"| {title} ({r.model}) | {r.num_images} | {r.score('object').mean_best_iou:.3f} | "
                    f"{r.score('part').mean_best_iou:.3f} | {pct(r.object_class_miou)} | {pct(r.part_class_miou)} |")
    return "\n".join(rows)


def _ignore_index(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def add_evaluate_command(subparsers: Any) -> None:
    """Register `evaluate {mask,voc,partimagenet}`; `args.func(args)` returns the exit code."""
    common = argparse.ArgumentParser(add_help=False)
    add_model_options(common)
    common.add_argument("--tolerance", type=non_negative_int, default=2,
                        help="boundary match tolerance in pixels (default: 2)")
    common.add_argument("--json", type=output_file, default=None, help="also write the scores to this JSON file")
    modes = INPUT_MODES

    parser = subparsers.add_parser(
        "evaluate", help="score hierarchies against ground-truth masks (one image, VOC, PartImageNet)",
        description="Class-agnostic evaluation of every hierarchy level: mean best-match IoU over the "
        "ground-truth segments and boundary precision / recall / F at a pixel tolerance.",
    )  # fmt: skip
    which = parser.add_subparsers(dest="dataset", required=True, metavar="{mask,voc,partimagenet}")

    mask = which.add_parser("mask", parents=[common], help="one image and its ground-truth label mask",
                            description="Score one image's hierarchy against a label mask (PNG) of the whole "
                            "original image; it is cropped like the image.")  # fmt: skip
    mask.add_argument("image", type=existing_file, help="image file")
    mask.add_argument("gt_mask", type=existing_file, help="label mask PNG (palette, greyscale ids or RGB colours)")
    mask.add_argument("--ignore-index", type=_ignore_index, default=255, help="label to ignore, or 'none' (default: 255)")
    mask.add_argument("--mode", choices=modes, default="center_crop", help="model input (default: center_crop)")
    mask.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                      help="also score the colour-merging baseline (default: on)")
    mask.set_defaults(func=_mask_main)

    voc = which.add_parser("voc", parents=[common], help="Pascal VOC 2012 (class-agnostic, unsupervised)",
                           description="Every level's mean best-match IoU (background included, 255 = void "
                           "ignored) and boundary F, averaged over the images of a split.")  # fmt: skip
    voc.add_argument("root", type=existing_dir, metavar="ROOT", help="VOC2012 folder (or VOCdevkit, or its parent)")
    voc.add_argument("--split", default="val", help="ImageSets/Segmentation/<split>.txt (default: val)")
    voc.add_argument("--limit", type=positive_int, default=None, help="score only the first N images")
    voc.add_argument("--mode", choices=modes, default="full_frame",
                     help="model input (default: full_frame, so every annotated pixel is scored; center_crop "
                     "scores only the centred square)")  # fmt: skip
    voc.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=False,
                     help="also score the colour-merging baseline (default: off; ~1 s per image)")
    voc.set_defaults(func=_voc_main)

    pim = which.add_parser("partimagenet", parents=[common], help="PartImageNet object / part (with --clip: the paper's class mIoU)",
                           description="Level 4 vs the object masks and level 3 vs the part masks, by "
                           f"class-agnostic mean best-match IoU, at 224 x 224. {CLIP_NOTE}")  # fmt: skip
    pim.add_argument("root", type=existing_dir, metavar="ROOT", help="folder with the images named by the JSON's file_name")
    pim.add_argument("annotations", type=existing_file, metavar="ANNOTATION_JSON", help="COCO-format PartImageNet JSON")
    pim.add_argument("--limit", type=positive_int, default=None, help="score only the first N images")
    pim.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=False,
                     help="also score the colour-merging baseline (default: off)")
    pim.add_argument("--clip", nargs="?", const="", default=None, metavar="CLIP_MODEL",
                     help="name segments with CLIP and report the paper's class mIoU (spec §11.5); optional value: "
                     "ARCH:TAG, hf-hub:org/repo or local-dir:/path (default $CAST_CLIP_MODEL, else ViT-B-16:openai)")
    pim.add_argument("--compare-vit", nargs="?", const="", default=None, metavar="MODEL",
                     help="also evaluate the paper's ViT baseline, side by side (default: the published one of the "
                     "CAST model's size; or a zoo name / checkpoint file)")
    pim.set_defaults(func=_partimagenet_main)
