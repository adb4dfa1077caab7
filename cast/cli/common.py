"""What every `cast` command shares: the one error policy (`run_parser`), checked argument types, and the
model and superpixel options with the Segmenter they describe.

Importing this module is cheap (no PyTorch): `cast --help` and `cast SUBCOMMAND --help` build every parser,
and each command imports the library inside its handler. Argument types check values while parsing, so a
bad number or a missing input fails before any model is loaded, with a message that says what is allowed.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ..errors import CastError

if TYPE_CHECKING:
    from ..segmenter import Segmenter

# cast.superpixels.METHODS, spelled here so that building the parser does not import OpenCV (a test keeps them equal)
SUPERPIXEL_METHODS = ("seeds", "slic")
INPUT_MODES = ("center_crop", "full_frame")
# The model's first graph pooling makes 64 segments; SEEDS needs ~16 pixels per superpixel at 224 x 224.
MIN_SUPERPIXELS, MAX_SUPERPIXELS = 64, 3136


# ------------------------------------------------------------------------------------ the error policy
def run_parser(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse and run `args.func` under the one error policy.

    A domain error (CastError), a file error (OSError) or a refused value (ValueError) prints
    `error: <message>` and exits 2, never a traceback; Ctrl-C exits 130; a bad argument is argparse's usage
    message and exit 2, before any work (returned, like every exit code, rather than raised)."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a refused argument (argparse said why)
        return done.code if isinstance(done.code, int) else 2
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


def is_main_process() -> bool:
    """False on every process but rank 0 under torchrun (summaries are printed once)."""
    return int(os.environ.get("RANK", "0")) == 0


# ------------------------------------------------------------------------------------ argument types
def int_range(low: int, high: int | None = None, what: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high] (no upper bound when high is None)."""

    def parse(text: str) -> int:
        allowed = f"from {low} to {high}" if high is not None else f"of at least {low}"
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number {allowed}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a whole number {allowed}{what}, got {value}")
        return value

    parse.__name__ = "whole number"  # argparse names the type in its messages
    return parse


positive_int = int_range(1)
non_negative_int = int_range(0)


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


def existing_path(text: str) -> Path:
    """An argparse type: a file or folder that exists."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return path


def output_file(text: str) -> Path:
    """An argparse type: a file to write, in a folder that exists (checked before any work)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name to write")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: the folder {path.parent} does not exist")
    return path


def existing_file(text: str) -> Path:
    """An argparse type: a file that exists."""
    path = existing_path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a file")
    return path


def existing_dir(text: str) -> Path:
    """An argparse type: a folder that exists."""
    path = existing_path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a folder")
    return path


# ------------------------------------------------------------------------------------ model options
def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model, --superpixels, --num-superpixels (the same meaning in every command)."""
    parser.add_argument("--model", "--checkpoint", dest="model", default=None, metavar="NAME_OR_FILE",
                        help="a published checkpoint (e.g. cast_base_moco_in1k, vit_small_moco_in1k), the bundled "
                        "cast_explorer_default, or a checkpoint file; `cast list --pretrained` lists the names "
                        "(default: $CAST_DEFAULT_MODEL, else the best official model on this machine, else the "
                        "bundled one)")  # fmt: skip
    add_superpixel_options(parser, default_help="the method recorded with the model, SEEDS")


def add_superpixel_options(parser: argparse.ArgumentParser, default_help: str) -> None:
    """--superpixels METHOD and --num-superpixels N."""
    parser.add_argument("--superpixels", choices=SUPERPIXEL_METHODS, default=None,
                        help=f"superpixel method (default: {default_help})")
    parser.add_argument("--num-superpixels", type=int_range(MIN_SUPERPIXELS, MAX_SUPERPIXELS), default=None,
                        metavar="N", help=f"superpixels requested, {MIN_SUPERPIXELS}..{MAX_SUPERPIXELS} "
                        "(default: the number recorded with the model, 196)")  # fmt: skip


def load_model_for_cli(spec: str):  # -> nn.Module
    """`cast.load_model(spec)`, with an unknown name answered in command-line terms."""
    from ..api import list_models, load_model
    from ..errors import CheckpointError

    try:
        return load_model(spec)
    except CheckpointError:
        if spec in list_models():  # an architecture: the library's advice is Python; ours is a flag
            raise CheckpointError(
                f"--model {spec}: {spec!r} is an architecture, not a trained model. Name a published checkpoint "
                f"(`cast list --pretrained`: {', '.join(list_models(pretrained=True))}) or a checkpoint file."
            ) from None
        raise


def segmenter_from_args(args: argparse.Namespace, mode: str = "center_crop") -> "Segmenter":
    """Load the model the options name (saying which, on stderr) and build its Segmenter."""
    from ..image import InputConfig
    from ..segmenter import Segmenter
    from ..weights.defaults import choose_default_model

    spec = args.model
    if spec is None:
        choice = choose_default_model()
        spec = choice.spec
        print(f"model: {spec} ({choice.reason}; --model chooses another)", file=sys.stderr)
    model = load_model_for_cli(spec)
    return Segmenter(model, args.superpixels, InputConfig(size=model.config.img_size, mode=mode),
                     num_superpixels=args.num_superpixels)
