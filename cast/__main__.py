"""`python -m cast COMMAND ...`: the command-line entry point.

Each subcommand is registered by an `add_*_command(subparsers)` function that sets
`func=handler` (handler(args) -> exit code). To add one, write such a function and list it in
`COMMANDS` below.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import CastError


def _convert_main(args: argparse.Namespace) -> int:
    from .checkpoints import convert_checkpoint

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
    from .zoo import ZOO, download

    if args.name is None:
        for entry in ZOO.values():
            status = "" if entry.loadable else f"  [not loadable: {entry.reason}]"
            print(f"{entry.name:28s} {entry.training:8s} {entry.data:16s} {entry.reported}{status}")
        return 0
    path = download(args.name, cache_dir=args.cache_dir, converted_dir=args.converted_dir)
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


def _add_segment_command(subparsers: Any) -> None:
    from .cli_segment import add_segment_command

    add_segment_command(subparsers)


def _add_evaluate_command(subparsers: Any) -> None:
    from .cli_evaluate import add_evaluate_command

    add_evaluate_command(subparsers)


def _add_train_command(subparsers: Any) -> None:
    from .train.__main__ import add_train_command

    add_train_command(subparsers)


COMMANDS: tuple[Callable[[Any], None], ...] = (
    add_convert_command, add_download_command, _add_segment_command, _add_evaluate_command, _add_train_command,
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="python -m cast", description="CAST Explorer command line")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; domain errors print as `error: ...` with exit code 2, never a traceback."""
    return run_parser(build_parser(), argv)


def run_parser(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse and run `args.func`; shared by every command-line entry point."""
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CastError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
