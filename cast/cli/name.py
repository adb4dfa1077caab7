"""`cast name IMAGE --vocabulary partimagenet --levels 4,3`: name an image's segments zero-shot with CLIP.

The first level is named with the vocabulary's objects, every further level with the parts of the
object under each segment (spec §11.4); a vocabulary without parts names every level with its objects.
The work is done by `cast.naming`; this module only parses and prints.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .common import INPUT_MODES, add_model_options, existing_file, output_file, segmenter_from_args


def add_naming_options(parser: argparse.ArgumentParser, *, vocabulary_flag: str = "--vocabulary",
                       required: bool = True) -> None:
    """The vocabulary and --clip options (shared with `cast segment --name`)."""
    dest = vocabulary_flag.lstrip("-").replace("-", "_")
    parser.add_argument(vocabulary_flag, dest=dest, required=required, default=None, metavar="VOCAB",
                        help="names to choose from: a preset (partimagenet, coco, imagenet) or text such as "
                        "'cat: head, ear, tail; car: wheel, door'")  # fmt: skip
    parser.add_argument("--clip", default=None, metavar="CLIP_MODEL",
                        help="CLIP model: ARCH:TAG, hf-hub:org/repo or local-dir:/path (default $CAST_CLIP_MODEL, "
                        "else ViT-B-16:openai, fetched once into the Hugging Face cache)")  # fmt: skip


def _levels(text: str) -> list[int]:
    try:
        levels = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"levels must be integers separated by commas, got {text!r}") from None
    if not levels or len(set(levels)) != len(levels):
        raise argparse.ArgumentTypeError(f"give distinct levels such as 4,3, got {text!r}")
    return levels


def _name_main(args: argparse.Namespace) -> int:
    from ..naming import SegmentNamer, load_clip, resolve_vocabulary

    vocabulary = resolve_vocabulary(args.vocabulary)  # bad text fails before any model loads
    clip = load_clip(args.clip)
    print(f"naming with {clip.describe()}, vocabulary {vocabulary.describe()}", file=sys.stderr)
    hierarchy = segmenter_from_args(args, args.mode).run(args.image)
    levels = args.levels or None
    names = SegmentNamer(clip).name_hierarchy(hierarchy, vocabulary, object_level=levels[0] if levels else None,
                                              part_levels=levels[1:] if levels else None)  # fmt: skip
    print(f"## {args.image}: objects at level {names.object_level}"
          + (f", parts at level(s) {', '.join(map(str, names.part_levels))}" if names.part_levels else ""))
    print("\n| level | segment | area | name | score | runner-ups |\n|---|---|---|---|---|---|")
    areas = {(r.level, r.segment): r.area for lv in names.levels for r in hierarchy.records(lv)}
    for r in names.records:
        others = ", ".join(f"{n} {s:.3f}" for n, s in r.runner_ups)
        print(f"| {r.level} | {r.segment} | {areas[(r.level, r.segment)]} | {r.name} | {r.score:.3f} | {others} |")
    if args.json is not None:
        args.json.write_text(json.dumps(names.to_dict(), indent=2))
        print(f"wrote {args.json}")
    return 0


def add_name_command(subparsers: Any) -> None:
    """Register `name`; `args.func(args)` returns the exit code."""
    parser = subparsers.add_parser(
        "name", help="name an image's segments zero-shot with CLIP (objects, then parts)",
        description="Segment an image and name the segments of the given levels with CLIP (the paper's "
        "open-vocabulary step, spec §11): the first level with the vocabulary's objects (plus Background), the "
        "others with the parts of the object under each segment. Prints name, score and runner-ups.",
    )  # fmt: skip
    parser.add_argument("image", type=existing_file, help="image file")
    add_naming_options(parser)
    parser.add_argument("--levels", type=_levels, default=None,
                        help="object level, then part levels, e.g. 4,3 (default: the coarsest, then the next finer)")
    add_model_options(parser)
    parser.add_argument("--mode", choices=INPUT_MODES, default="center_crop",
                        help="model input (default: center_crop, the official pipeline)")
    parser.add_argument("--json", type=output_file, default=None, help="also write the names to this JSON file")
    parser.set_defaults(func=_name_main)
