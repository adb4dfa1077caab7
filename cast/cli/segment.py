"""`cast segment IMAGES_OR_FOLDERS... --out DIR`: segment a collection and export it.

Every image gets its own export (<out>/<stem>/...); the collection gets one COCO-style JSON of every
segment, a FiftyOne data set with a field per level and CAST's segment embeddings for `cast search`
(cast.export.collection). Images go through the model in batches where token counts allow, results are
written as they come (memory stays bounded for thousands of images), and under `torchrun` every process
takes its share of the files (on its own GPU when there are GPUs) and rank 0 merges one index.

`run_segment` does the work with any Segmenter (tests pass one built on the tiny parity model);
`add_segment_command` registers the subcommand.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import CastError
from .common import INPUT_MODES, add_model_options, existing_path, positive_int, segmenter_from_args

if TYPE_CHECKING:  # the library is imported inside the functions: `cast segment --help` stays fast
    from ..segmenter import Segmenter

INDEX_COLUMNS = ("image", "status", "output", "message")


def expand_inputs(inputs: Sequence[Path], quiet: bool = False) -> list[Path]:
    """Files as given; folders replaced by the images under them (recursively, sorted; skipped files said)."""
    from ..datasets import scan_images

    out: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found, report = scan_images(item)
            for rel, reason in [] if quiet else report.skipped:
                print(f"skipped {item / rel}: {reason}", file=sys.stderr)
            out += sorted(found)
        else:
            out.append(item)
    return out


def run_segment(
    paths: Sequence[Path], out_dir: Path, segmenter: Segmenter, zip_outputs: bool = False, *,
    batch_size: int = 8, stability: bool = False, rank: int = 0, world_size: int = 1,
) -> list[dict[str, str]]:  # fmt: skip
    """Segment and export this process's share of `paths` (every `world_size`-th, from `rank`).

    Returns this share's index rows; rank 0 of a single process also writes index.csv and the merged
    collection files (under torchrun, `merge_parts` does that after every rank has finished)."""
    from tqdm import tqdm

    from ..collection.build import segment_embeddings
    from ..collection.stability import stability_scores
    from ..export import export_zip
    from ..export.collection import CollectionWriter, export_stems

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in paths]
    stems = export_stems(paths)
    mine = list(range(rank, len(paths), world_size))
    writer = CollectionWriter(out_dir, part=f"rank{rank}")
    rows: list[dict[str, Any]] = []
    results = segmenter.run_many([paths[i] for i in mine], names=[paths[i].name for i in mine], batch_size=batch_size)
    bar = tqdm(total=len(mine), desc=f"segment{f' (rank {rank})' if world_size > 1 else ''}", unit="image")
    for local, result in results:
        position = mine[local]
        path, stem = paths[position], stems[position]
        row = {"position": position, "image": str(path)}
        try:
            if isinstance(result, CastError):
                raise result
            hierarchy = result.hierarchy
            if stability:
                hierarchy = hierarchy.with_stability(stability_scores(segmenter, path, hierarchy))
            extra = {"source_image": str(path)}
            writer.add(position, path.name, stem, hierarchy, segment_embeddings(result.output), extra_provenance=extra)
            output = stem
            if zip_outputs:
                output = export_zip(hierarchy, out_dir / f"{stem}.zip", stem=stem, extra_provenance=extra).name
            rows.append({**row, "status": "ok", "output": output, "message": ""})
        except (CastError, OSError) as err:  # unreadable image, too few superpixels, disk errors
            message = str(err).replace("\n", " ")
            tqdm.write(f"skipped {_about(path, message)}", file=sys.stderr)
            rows.append({**row, "status": "failed", "output": "", "message": message})
        bar.update(1)
    bar.close()
    writer.close()
    _write_rows(out_dir / "collection" / "parts" / f"index.rank{rank}.csv", rows, with_position=True)
    if world_size == 1:
        merge_parts(out_dir)
    return [{k: str(v) for k, v in r.items() if k != "position"} for r in rows]


def merge_parts(out_dir: Path) -> list[dict[str, str]]:
    """One index.csv and one set of collection files from every process's parts, in input order."""
    from ..export.collection import merge_collection

    parts = sorted((Path(out_dir) / "collection" / "parts").glob("index.rank*.csv"))
    rows = []
    for part in parts:
        with part.open(newline="", encoding="utf-8") as handle:
            rows += list(csv.DictReader(handle))
    rows.sort(key=lambda r: int(r["position"]))
    _write_rows(Path(out_dir) / "index.csv", rows, with_position=False)
    merge_collection(out_dir)
    return rows


def _write_rows(path: Path, rows: Sequence[dict[str, Any]], with_position: bool) -> None:
    columns = (("position",) if with_position else ()) + INDEX_COLUMNS
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _about(path: Path | str, message: str) -> str:
    """`path: message`, without repeating the path (or its file name, which the library's messages start with)."""
    if str(path) in message:
        return message
    return f"{path}: {message.removeprefix(f'{Path(path).name}: ')}"


def _distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun (a gloo or nccl process group is joined for the final barrier)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world_size


def _segment_main(args: argparse.Namespace) -> int:
    """Handler of the `segment` subcommand: returns the process exit code (1 when some images failed)."""
    from ..datasets import IMAGE_SUFFIXES
    from ..segmenter import Segmenter

    rank, world_size = _distributed()
    paths = expand_inputs(args.images, quiet=rank != 0)
    if not paths:
        raise CastError(f"no images found in {', '.join(map(str, args.images))} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    segmenter = segmenter_from_args(args, args.mode)
    if world_size > 1:
        import torch

        if torch.cuda.is_available():  # one GPU per process
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
            segmenter = segmenter.replace(model=segmenter.model.to(device), device=device,
                                          superpixels=segmenter.superpixel_config)
    rows = run_segment(paths, args.out, segmenter, zip_outputs=args.zip, batch_size=args.batch_size,
                       stability=args.stability, rank=rank, world_size=world_size)
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()
        if rank != 0:
            return 0
        rows = merge_parts(args.out)
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"exported {len(rows) - len(failed)} of {len(rows)} images to {args.out} (index: {args.out / 'index.csv'}, "
          f"collection: {args.out / 'collection'})")
    if failed:
        print(f"{len(failed)} failed:", file=sys.stderr)
        for row in failed:
            print(f"  {_about(row['image'], row['message'])}", file=sys.stderr)
    return 1 if failed else 0


def add_segment_command(subparsers: Any) -> None:
    """Register `segment` on an argparse subparsers object; `args.func(args)` returns the exit code."""
    parser = subparsers.add_parser(
        "segment",
        help="segment images or folders of images and export their hierarchies (one collection)",
        description="Segment each image with CAST (or the ViT baseline) and export its hierarchy (label PNGs, COCO "
        "RLE segments, metadata.csv, tree.json, FiftyOne layout) under --out, plus the collection files "
        "(collection/segments_coco.json, a FiftyOne data set, segment embeddings for `cast search`) and an "
        "index.csv of all inputs. Under torchrun, each process takes its share of the files.",
    )
    parser.add_argument("images", nargs="+", type=existing_path,
                        help="image files and/or folders (searched recursively)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    add_model_options(parser)
    parser.add_argument("--mode", choices=INPUT_MODES, default="center_crop",
                        help="center_crop is the official pipeline; full_frame squashes the whole image")
    parser.add_argument("--batch-size", type=positive_int, default=8,
                        help="images per forward pass when their token counts agree")
    parser.add_argument("--stability", action="store_true",
                        help="also score every segment's stability (6 runs per image)")
    parser.add_argument("--zip", action="store_true", help="also write one ZIP per image")
    parser.set_defaults(func=_segment_main)
