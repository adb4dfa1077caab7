"""The `cast` command (also `python -m cast`): one parser, one error policy for every subcommand.

Each subcommand module has an `add_*_command(subparsers)` function that sets `func=handler`
(handler(args) -> exit code) and imports the library only inside its handlers, so `cast --help` and
`cast SUBCOMMAND --help` never import PyTorch. The error policy is `common.run_parser`.
"""
from __future__ import annotations

import argparse
from typing import Any, Callable, Sequence

from .common import run_parser

__all__ = ["build_parser", "main", "run_parser"]


def _commands() -> tuple[Callable[[Any], None], ...]:
    from .evaluate import add_evaluate_command
    from .search import add_search_command
    from .segment import add_segment_command
    from .train import add_train_command
    from .weights import add_convert_command, add_download_command, add_list_command

    return (add_list_command, add_download_command, add_convert_command, add_segment_command, add_search_command,
            add_evaluate_command, add_train_command)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="cast", description="CAST Explorer command line: hierarchical "
                                     "segmentation with CAST (Ke, Mo, Yu, ICLR 2024). `cast COMMAND --help` "
                                     "describes each command.")  # fmt: skip
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _commands():
        add(subparsers)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command (the `cast` console script)."""
    return run_parser(build_parser(), argv)
