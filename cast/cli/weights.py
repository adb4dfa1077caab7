"""`cast convert`, `cast download` and `cast list`: checkpoints and the model zoo from the command line."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


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
    parser.add_argument("input", type=Path, help="checkpoint to read (.pth.tar, .pth, .pt, .bin, .safetensors)")
    parser.add_argument("output", type=Path, help="safetensors file to write")
    parser.add_argument("--config", default=None, help="force a registered variant (default: inferred from the file)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                        help="storage precision of the weights (default: float32)")
    parser.add_argument("--keep-extras", action="store_true", help="also keep the MoCo projector and predictor")
    parser.add_argument("--untrained", action="store_true", help="mark the weights as an untrained placeholder")
    parser.set_defaults(func=_convert_main)


def _download_main(args: argparse.Namespace) -> int:
    from ..weights.hub import DownloadProgress, fetch_pretrained

    if args.name is None:
        return _list_main(argparse.Namespace(pattern=None, pretrained=True))
    bar: dict[str, Any] = {}

    def progress(p: DownloadProgress) -> None:
        from tqdm import tqdm

        if "bar" not in bar:
            bar["bar"] = tqdm(total=p.total, unit="B", unit_scale=True, desc=p.name)
        bar["bar"].n = p.downloaded
        bar["bar"].refresh()

    try:
        path = fetch_pretrained(args.name, cache_dir=args.cache_dir, converted_dir=args.converted_dir, progress=progress)
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
    parser.add_argument("name", nargs="?", default=None, help="zoo entry, e.g. cast_small_moco_in1k")
    parser.add_argument("--cache-dir", type=Path, default=None, help="Hugging Face cache folder (default: HF's)")
    parser.add_argument("--converted-dir", type=Path, default=None,
                        help="folder for converted copies (default: ~/.cache/cast_explorer/converted)")
    parser.set_defaults(func=_download_main)


def _list_main(args: argparse.Namespace) -> int:
    from ..api import list_models
    from ..weights.hub import local_status
    from ..weights.zoo import ZOO

    for name in list_models(args.pattern, pretrained=args.pretrained):
        if not args.pretrained:
            print(name)
            continue
        entry = ZOO[name]
        where = local_status(name) or f"not downloaded, ~{entry.expected_size / 1e6:.0f} MB"
        print(f"{name:28s} {entry.training:8s} {entry.data:16s} [{where}] {entry.reported}")
    return 0


def add_list_command(subparsers: Any) -> None:
    """Register `list [PATTERN] [--pretrained]`: architectures, or published checkpoints and whether they are local."""
    parser = subparsers.add_parser("list", help="list architectures, or published checkpoints (--pretrained)")
    parser.add_argument("pattern", nargs="?", default=None, help="shell glob, e.g. 'cast_small*'")
    parser.add_argument("--pretrained", action="store_true", help="published checkpoints instead of architectures")
    parser.set_defaults(func=_list_main)
