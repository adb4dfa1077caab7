"""`cast convert`, `cast download` and `cast list`: checkpoints and the model zoo from the command line."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import existing_file


def _convert_main(args: argparse.Namespace) -> int:
    from ..weights import convert_checkpoint

    loaded = convert_checkpoint(
        args.input, args.output, config=args.config, dtype=args.dtype,
        trained=False if args.untrained else None, keep_extras=args.keep_extras,
    )  # fmt: skip
    print(loaded.report)
    size = Path(args.output).stat().st_size / 1e6
    print(f"wrote {args.output} ({size:.1f} MB, {args.dtype}, layout: CAST Explorer safetensors)")
    return 0


def add_convert_command(subparsers: Any) -> None:
    """Register `convert IN OUT`: any supported checkpoint -> our safetensors format."""
    parser = subparsers.add_parser(
        "convert",
        help="convert an official CAST checkpoint to CAST Explorer's safetensors format",
        description="Read a MoCo-v3 / DeiT / plain / CAST Explorer checkpoint safely and strictly, and write "
        "one safetensors file with our parameter names and metadata (backbone only unless --keep-extras).",
    )
    parser.add_argument("input", type=existing_file,
                        help="checkpoint to read (.pth.tar, .pth, .pt, .bin, .safetensors)")
    parser.add_argument("output", type=Path, help="safetensors file to write")
    parser.add_argument("--config", default=None, help="force a registered variant (default: inferred from the file)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                        help="storage precision of the weights (default: float32)")
    parser.add_argument("--keep-extras", action="store_true", help="also keep the MoCo projector and predictor")
    parser.add_argument("--untrained", action="store_true", help="mark the weights as an untrained placeholder")
    parser.set_defaults(func=_convert_main)


def _download_main(args: argparse.Namespace) -> int:
    from ..errors import CheckpointError
    from ..weights.bundled import BUNDLED_MODEL, bundled_checkpoint
    from ..weights.hub import DownloadProgress, fetch_pretrained, offline_reason
    from ..weights.zoo import ZOO, list_pretrained

    if args.name is None:
        return _list_main(argparse.Namespace(pattern=None, pretrained=True))
    if args.name == BUNDLED_MODEL:
        print(f"{args.name}: bundled with CAST Explorer, nothing to download ({bundled_checkpoint()})")
        return 0
    if args.name not in ZOO:
        raise CheckpointError(f"unknown checkpoint {args.name!r}; the published ones: {', '.join(list_pretrained())}")
    reason = offline_reason()
    if reason is not None and local_status_of(args.name, args.cache_dir, args.converted_dir) is None:
        entry = ZOO[args.name]
        raise CheckpointError(f"cannot download {args.name}: downloads are turned off ({reason}). Unset HF_HUB_OFFLINE "
                              f"and run this command again with network access (~{entry.expected_size / 1e6:.0f} MB "
                              f"from the Hugging Face Hub repo {entry.repo_id}).")
    bar: dict[str, Any] = {}

    def progress(p: DownloadProgress) -> None:
        from tqdm import tqdm

        if "bar" not in bar:
            bar["bar"] = tqdm(total=p.total, unit="B", unit_scale=True, desc=p.name)
        bar["bar"].n = p.downloaded
        bar["bar"].refresh()

    try:
        path = fetch_pretrained(args.name, cache_dir=args.cache_dir, converted_dir=args.converted_dir, progress=progress)
    except CheckpointError as err:  # the library's advice is to run this very command: say what failed instead
        raise CheckpointError(str(err).split(" To get it, run once")[0] + " Check the network connection and run "
                              "this command again; a partial download resumes where it stopped.") from err
    finally:
        if "bar" in bar:
            bar["bar"].close()
    print(f"{args.name}: ready at {path}")
    return 0


def add_download_command(subparsers: Any) -> None:
    """Register `download NAME`: fetch a published checkpoint and convert it once (no NAME: list them)."""
    parser = subparsers.add_parser(
        "download",
        help="download a published CAST checkpoint from the Hugging Face Hub and convert it",
        description="Download a checkpoint of the model zoo (Hub repo twke/CAST) into the Hugging Face cache "
        "and convert it once to a slim safetensors file. Without NAME, list the zoo.",
    )
    parser.add_argument("name", nargs="?", default=None,
                        help="published checkpoint, e.g. cast_small_moco_in1k (`cast list --pretrained`)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="Hugging Face cache folder (default: HF's)")
    parser.add_argument("--converted-dir", type=Path, default=None,
                        help="folder for converted copies (default: ~/.cache/cast_explorer/converted)")
    parser.set_defaults(func=_download_main)


def local_status_of(name: str, cache_dir: Path | None = None, converted_dir: Path | None = None) -> str | None:
    """"converted" / "cached" / None for a zoo entry (no network access)."""
    from ..weights.hub import local_status

    return local_status(name, cache_dir=cache_dir, converted_dir=converted_dir)


def _list_main(args: argparse.Namespace) -> int:
    from ..api import list_models
    from ..errors import CastError
    from ..weights.bundled import BUNDLED_ENTRY, BUNDLED_MODEL
    from ..weights.zoo import ZOO

    names = list_models(args.pattern, pretrained=args.pretrained)
    if not names:
        what = "published checkpoint" if args.pretrained else "architecture"
        other = "" if args.pretrained else " (published checkpoints: `cast list --pretrained`)"
        command = "cast list --pretrained" if args.pretrained else "cast list"
        raise CastError(f"no {what} matches {args.pattern!r}{other}; `{command}` lists them all")
    for name in names:
        if not args.pretrained:
            print(name)
            continue
        entry = BUNDLED_ENTRY if name == BUNDLED_MODEL else ZOO[name]
        if name == BUNDLED_MODEL:
            where = "bundled, on this machine"
        else:
            where = local_status_of(name) or f"not downloaded, ~{ZOO[name].expected_size / 1e6:.0f} MB"
        print(f"{name:28s} {entry.training:8s} {entry.data:16s} [{where}] {entry.reported}")
    return 0


def add_list_command(subparsers: Any) -> None:
    """Register `list [PATTERN] [--pretrained]`: architectures, or published checkpoints and whether they are local."""
    parser = subparsers.add_parser("list", help="list architectures, or published checkpoints (--pretrained)",
                                   description="List the architectures (for `cast train --variant`), or with "
                                   "--pretrained the trained models --model accepts: the published "
                                   "checkpoints, whether each is on this machine, and the bundled "
                                   "cast_explorer_default.")  # fmt: skip
    parser.add_argument("pattern", nargs="?", default=None,
                        help="shell glob, e.g. 'cast_small*' (quote it; no match is an error)")
    parser.add_argument("--pretrained", action="store_true", help="published checkpoints instead of architectures")
    parser.set_defaults(func=_list_main)
