"""The `cast` command (also `python -m cast`): one parser, one error policy for every subcommand.

Each subcommand is registered by an `add_*_command(subparsers)` function that sets `func=handler`
(handler(args) -> exit code). The policy, in `run_parser`: a domain error (CastError), a file error
(OSError) or a refused value (ValueError) prints `error: <message>` and exits 2, never a traceback;
Ctrl-C exits 130.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

from ..errors import CastError


def _commands() -> tuple[Callable[[Any], None], ...]:
    from ..train.cli import add_train_command
    from .evaluate import add_evaluate_command
    from .name import add_name_command
    from .search import add_search_command
    from .segment import add_segment_command
    from .weights import add_convert_command, add_download_command, add_list_command

    return (add_list_command, add_download_command, add_convert_command, add_segment_command, add_search_command,
            add_evaluate_command, add_train_command, add_name_command)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="cast", description="CAST Explorer command line")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _commands():
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command (the `cast` console script)."""
    return run_parser(build_parser(), argv)


def run_parser(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse and run `args.func` under the one error policy (see the module docstring)."""
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `cast list | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    except (CastError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
