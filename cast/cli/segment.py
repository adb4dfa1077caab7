"""`cast segment IMAGES_OR_FOLDERS... --out DIR`: segment images into a collection folder (README "Collection
folders"). Parsing and printing only: cast.collection does the work (batched, streamed to disk, resumable;
under `torchrun` each process takes its share and rank 0 merges)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import INPUT_MODES, add_model_options, existing_path, positive_int, segmenter_from_args

if TYPE_CHECKING:  # the library is imported inside the functions: `cast segment --help` stays fast
    from ..segmenter import Segmenter


def _about(path: str, message: str) -> str:
    """`path: message`, without repeating the path (or its file name, which the library's messages start with)."""
    if path in message:
        return message
    return f"{path}: {message.removeprefix(f'{Path(path).name}: ')}"


def _distributed() -> tuple[int, int, Any]:
    """(rank, world size, barrier) under torchrun (joining a gloo or nccl process group), else (0, 1, None)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, None
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world_size, dist.barrier


def _on_own_gpu(segmenter: Segmenter, rank: int) -> Segmenter:
    import torch

    if not torch.cuda.is_available():
        return segmenter
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    return segmenter.replace(model=segmenter.model.to(device), device=device, superpixels=segmenter.superpixel_config)


def _segment_main(args: argparse.Namespace) -> int:
    """Handler of the `segment` subcommand: the exit code (1 when some images failed)."""
    from tqdm import tqdm

    from ..collection import list_inputs, segment_collection
    from ..export.collection import zip_image_exports

    inputs = list_inputs(args.images)  # before any model is loaded
    rank, world_size, barrier = _distributed()
    if rank == 0:
        for path, reason in inputs.skipped:
            print(f"skipped {path}: {reason}", file=sys.stderr)
    segmenter = segmenter_from_args(args, args.mode)
    if world_size > 1:
        segmenter = _on_own_gpu(segmenter, rank)
    bar = tqdm(desc=f"segment{f' (rank {rank})' if world_size > 1 else ''}", unit="image", disable=None)

    def progress(done: int, total: int, name: str) -> None:
        bar.total = total
        bar.update(1)

    report = segment_collection(segmenter, inputs.paths, args.out, names=inputs.names, batch_size=args.batch_size,
                                stability=args.stability, exports="compact" if args.compact else "full", rank=rank,
                                world_size=world_size, barrier=barrier, progress=progress)
    bar.close()
    if rank != 0:
        return 0
    if args.zip:
        zip_image_exports(args.out, [record.stem for record in report.ok])
    print(f"{report.summary()} (index: {args.out / 'index.csv'}; open with cast.open_collection)")
    if report.failed:
        print(f"{len(report.failed)} failed:", file=sys.stderr)
        for record in report.failed:
            print(f"  {_about(record.source or record.name, record.message)}", file=sys.stderr)
    return 1 if report.failed else 0


def add_segment_command(subparsers: Any) -> None:
    """Register `segment` on an argparse subparsers object; `args.func(args)` returns the exit code."""
    parser = subparsers.add_parser(
        "segment",
        help="segment images or folders of images into a collection folder (reopens, resumes, appends)",
        description="Segment each image with CAST (or the ViT baseline) into the collection folder --out: each "
        "image's export (label PNGs, COCO RLE segments, metadata.csv, tree.json, FiftyOne layout), the segment "
        "embeddings (memory-mapped .npy per level), one COCO JSON of every segment, index.csv of every input and "
        "collection.json (model and settings). Running it again into the same folder skips images already there "
        "(by content) and adds new ones; another model or other settings are refused. Under torchrun, each "
        "process takes its share of the files.",
    )
    parser.add_argument("images", nargs="+", type=existing_path,
                        help="image files and/or folders (searched recursively)")
    parser.add_argument("--out", required=True, type=Path, help="the collection folder (new, empty, or a collection)")
    add_model_options(parser)
    parser.add_argument("--mode", choices=INPUT_MODES, default="center_crop",
                        help="center_crop is the official pipeline; full_frame squashes the whole image")
    parser.add_argument("--batch-size", type=positive_int, default=8,
                        help="images per forward pass when their token counts agree")
    parser.add_argument("--stability", action="store_true",
                        help="also score every segment's stability (6 runs per image)")
    parser.add_argument("--compact", action="store_true",
                        help="keep only what the collection needs per image (hierarchy.json): no overlays, COCO or "
                        "FiftyOne files; for very large collections")
    parser.add_argument("--zip", action="store_true", help="also write one ZIP per image export (<stem>.zip)")
    parser.set_defaults(func=_segment_main)
