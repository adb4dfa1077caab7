"""Part discovery on our example images: a CAST checkpoint vs the same model untrained vs colour merging.

Run:  python benchmarks/eval_part_discovery.py [--checkpoint PATH] [--per-image] [--json OUT.json]

For every image in assets/ with ground truth under assets/ground_truth/ (`<stem>_object.png`, optionally
`<stem>_parts.png`; how they were made and how far to trust them: assets/ground_truth/README.md), the
hierarchy's levels 1-4 (64 / 32 / 16 / 8 segments) are scored by `cast.evaluate`:

- **checkpoint**: the given checkpoint (default: the bundled checkpoints/cast_explorer_default.safetensors),
  loaded with `cast.weights.load_checkpoint`;
- **untrained**: `build_model(<the checkpoint's config>)` after `torch.manual_seed(0)`: what the
  architecture alone (superpixel pooling of random features) gives, so training has to beat it;
- **colour merging**: `cast.evaluate.colour_baseline_metrics`: the same superpixels merged greedily by
  mean colour down to the checkpoint's segment counts.

All three use the official pipeline: `Segmenter` with Resize(224) + CenterCrop(224) and the official SEEDS
setting; the masks are cropped and resized to the hierarchy with `align_ground_truth`. Scores are the mean
best-match IoU over GT segments and the boundary F at a 2 px tolerance (parts masks ignore label 255),
averaged over images; one table per mask kind, then the best level of each method.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import table  # noqa: E402

from cast.weights import load_checkpoint  # noqa: E402
from cast.datasets import load_label_mask  # noqa: E402
from cast.errors import CastError  # noqa: E402
from cast.evaluation import (  # noqa: E402
    LevelScore,
    align_ground_truth,
    average_scores,
    best_level,
    colour_baseline_metrics,
    level_metrics,
)
from cast.hierarchy import Hierarchy  # noqa: E402
from cast.image import InputConfig  # noqa: E402
from cast.model import build_model  # noqa: E402
from cast.segmenter import Segmenter  # noqa: E402
from cast.superpixels import SuperpixelConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO / "checkpoints" / "cast_explorer_default.safetensors"
GROUND_TRUTH = REPO / "assets" / "ground_truth"
MASK_KINDS = ("object", "parts")
METHODS = ("checkpoint", "untrained", "colour merging")
LEVELS = (1, 2, 3, 4)
IGNORE_INDEX = 255


def examples_with_ground_truth(images: Path, masks: Path) -> list[tuple[Path, dict[str, Path]]]:
    """(image, {mask kind: mask path}) of every assets/*.jpg that has at least an object mask."""
    found = []
    for image in sorted(images.glob("*.jpg")):
        kinds = {k: masks / f"{image.stem}_{k}.png" for k in MASK_KINDS if (masks / f"{image.stem}_{k}.png").is_file()}
        if "object" in kinds:
            found.append((image, kinds))
    return found


def score_image(hierarchies: dict[str, Hierarchy], gt_full: np.ndarray, tolerance: int) -> dict[str, list[LevelScore]]:
    """Levels 1-4 of each method against one original-size mask."""
    options = {"ignore_index": IGNORE_INDEX, "boundary_tolerance": tolerance}
    reference = hierarchies["checkpoint"]
    gt = align_ground_truth(gt_full, reference)
    out = {}
    for method in ("checkpoint", "untrained"):
        scores = level_metrics(hierarchies[method], align_ground_truth(gt_full, hierarchies[method]), **options)
        out[method] = [s for s in scores if s.level in LEVELS]
    out["colour merging"] = [s for s in colour_baseline_metrics(reference, gt, **options) if s.level in LEVELS]
    return out


def comparison_table(per_method: dict[str, list[LevelScore]]) -> str:
    """One row per level; per method: mean segment count, mean best-match IoU, boundary F."""
    headers = ["level"]
    for method in METHODS:
        headers += [f"{method}: segments", f"{method}: best IoU", f"{method}: boundary F"]
    rows = []
    for level in LEVELS:
        row: list[object] = [level]
        for method in METHODS:
            s = next(x for x in per_method[method] if x.level == level)
            row += [f"{s.num_segments:.1f}", f"{s.mean_best_iou:.3f}", f"{s.boundary_f:.3f}"]
        rows.append(row)
    return table(headers, rows)


def best_lines(per_method: dict[str, list[LevelScore]]) -> list[str]:
    lines = []
    for method in METHODS:
        by_iou = best_level(per_method[method], "mean_best_iou")
        by_f = best_level(per_method[method], "boundary_f")
        lines.append(f"- {method}: level {by_iou.level} by best IoU ({by_iou.mean_best_iou:.3f}), "
                     f"level {by_f.level} by boundary F ({by_f.boundary_f:.3f})")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help=f"CAST checkpoint (default {DEFAULT_CHECKPOINT.relative_to(REPO)})")
    parser.add_argument("--images", type=Path, default=REPO / "assets", help="folder of the example images")
    parser.add_argument("--ground-truth", type=Path, default=GROUND_TRUTH, help="folder of <stem>_{object,parts}.png")
    parser.add_argument("--tolerance", type=int, default=2, help="boundary tolerance in px (default 2)")
    parser.add_argument("--per-image", action="store_true", help="also print one table per image and mask kind")
    parser.add_argument("--json", type=Path, default=None, help="write every score here")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    if not args.checkpoint.is_file():
        print(f"error: no checkpoint at {args.checkpoint}; pass --checkpoint PATH", file=sys.stderr)
        return 1
    examples = examples_with_ground_truth(args.images, args.ground_truth)
    if not examples:
        print(f"error: no image in {args.images} has a mask in {args.ground_truth}", file=sys.stderr)
        return 1
    try:
        loaded = load_checkpoint(args.checkpoint)
    except CastError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    torch.manual_seed(0)
    untrained = build_model(loaded.config)
    superpixels = SuperpixelConfig.official()
    inputs = InputConfig(size=224, mode="center_crop")
    segmenters = {"checkpoint": Segmenter(loaded.model, superpixels, inputs),
                  "untrained": Segmenter(untrained, superpixels, inputs)}  # fmt: skip

    meta = loaded.metadata
    print("# Part discovery on the example images\n")
    print(f"checkpoint: {args.checkpoint} ({loaded.config.name}, layout {loaded.layout}, "
          f"trained={loaded.trained}{', data: ' + meta.provenance.data if meta and meta.provenance.data else ''})")
    print(f"untrained: build_model({loaded.config.name}) after torch.manual_seed(0)")
    print(f"input: Resize(224) + CenterCrop(224); superpixels: {superpixels.describe()}")
    print(f"metrics: mean best-match IoU over GT segments, boundary F at {args.tolerance} px; "
          f"parts masks ignore label {IGNORE_INDEX}; colour merging uses the checkpoint's segment counts\n")  # fmt: skip
    per_kind: dict[str, dict[str, list[list[LevelScore]]]] = {k: {m: [] for m in METHODS} for k in MASK_KINDS}
    per_image_json: dict[str, dict] = {}
    for image, masks in examples:
        hierarchies = {name: seg.run(image) for name, seg in segmenters.items()}
        if not np.array_equal(hierarchies["checkpoint"].superpixels, hierarchies["untrained"].superpixels):
            raise RuntimeError(f"{image.name}: SEEDS gave different superpixels for the two models")  # never expected
        per_image_json[image.stem] = {}
        for kind, mask_path in masks.items():
            scores = score_image(hierarchies, load_label_mask(mask_path), args.tolerance)
            for method in METHODS:
                per_kind[kind][method].append(scores[method])
            per_image_json[image.stem][kind] = {m: [dataclasses.asdict(s) for s in v] for m, v in scores.items()}
            if args.per_image:
                print(f"### {image.name}, {kind} mask\n\n{comparison_table(scores)}\n")

    summary: dict[str, dict] = {}
    for kind in MASK_KINDS:
        images = [img.stem for img, masks in examples if kind in masks]
        if not images:
            continue
        averaged = {m: average_scores(per_kind[kind][m]) for m in METHODS}
        print(f"## {kind} masks: mean over {len(images)} images ({', '.join(images)})\n")
        print(comparison_table(averaged))
        print("\nbest level per method:")
        print("\n".join(best_lines(averaged)) + "\n")
        summary[kind] = {m: [dataclasses.asdict(s) for s in v] for m, v in averaged.items()}
    print(f"({len(examples)} images, {time.perf_counter() - start:.1f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "mean": summary, "per_image": per_image_json}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
