"""`cast segment IMAGES... --out DIR`: segment images in batch and export each hierarchy.

`run_segment` does the work with any Segmenter (tests pass one built on the tiny parity model);
`add_segment_command` registers the subcommand.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from ..errors import CastError
from ..export import export_hierarchy, export_zip
from ..segmenter import Segmenter
from .common import add_model_options, segmenter_from_args

INDEX_COLUMNS = ("image", "status", "output", "message")


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output folder names: each file's stem, with -2, -3, ... added when stems repeat (case-blind)."""
    taken: set[str] = set()
    stems = []
    for path in paths:
        base = Path(path).stem or "image"
        stem, n = base, 1
        while stem.casefold() in taken:
            n += 1
            stem = f"{base}-{n}"
        taken.add(stem.casefold())
        stems.append(stem)
    return stems


def run_segment(
    paths: Sequence[Path], out_dir: Path, segmenter: Segmenter, zip_outputs: bool = False
) -> list[dict[str, str]]:
    """Segment and export each image; skip unreadable ones. Returns (and writes) the index.csv rows."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in paths]
    rows = []
    for path, stem in tqdm(list(zip(paths, unique_stems(paths))), desc="segment", unit="image"):
        try:
            hierarchy = segmenter.run_detailed(path).hierarchy
            extra = {"source_image": str(path)}
            if zip_outputs:
                output = export_zip(hierarchy, out_dir / f"{stem}.zip", stem=stem, extra_provenance=extra).name
            else:
                output = export_hierarchy(hierarchy, out_dir, stem=stem, extra_provenance=extra).root.name
            rows.append({"image": str(path), "status": "ok", "output": output, "message": ""})
        except (CastError, OSError) as err:  # unreadable image, too few superpixels, disk errors
            message = str(err).replace("\n", " ")
            tqdm.write(f"skipped {_about(path, message)}", file=sys.stderr)
            rows.append({"image": str(path), "status": "failed", "output": "", "message": message})
    with (out_dir / "index.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=INDEX_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _about(path: Path | str, message: str) -> str:
    """`path: message`, without repeating the path when the message already names it."""
    return message if str(path) in message else f"{path}: {message}"


def _segment_main(args: argparse.Namespace) -> int:
    """Handler of the `segment` subcommand: returns the process exit code (1 when some images failed)."""
    segmenter = segmenter_from_args(args, args.mode)
    rows = run_segment(args.images, args.out, segmenter, zip_outputs=args.zip)
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"exported {len(rows) - len(failed)} of {len(rows)} images to {args.out} (index: {args.out / 'index.csv'})")
    if failed:
        print(f"{len(failed)} failed:", file=sys.stderr)
        for row in failed:
            print(f"  {_about(row['image'], row['message'])}", file=sys.stderr)
    return 1 if failed else 0


def add_segment_command(subparsers: Any) -> None:
    """Register `segment` on an argparse subparsers object; `args.func(args)` returns the exit code."""
    parser = subparsers.add_parser(
        "segment",
        help="segment images and export their hierarchies",
        description="Segment each image with CAST and export its hierarchy (label PNGs, COCO RLE segments, "
        "metadata.csv, tree.json, FiftyOne layout) under --out, with an index.csv of all inputs.",
    )
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    add_model_options(parser)
    parser.add_argument("--mode", choices=("center_crop", "full_frame"), default="center_crop",
                        help="center_crop is the official pipeline; full_frame squashes the whole image")
    parser.add_argument("--zip", action="store_true", help="write one ZIP per image instead of a folder")
    parser.set_defaults(func=_segment_main)
