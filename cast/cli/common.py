"""What several commands share: the model and superpixel options, and building the Segmenter they describe."""
from __future__ import annotations

import argparse
import sys

from ..image import InputConfig
from ..segmenter import Segmenter
from ..superpixels import METHODS


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model, --superpixels, --num-superpixels."""
    parser.add_argument("--model", "--checkpoint", dest="model", default=None,
                        help="zoo name (e.g. cast_base_moco_in1k, vit_small_moco_in1k) or checkpoint file "
                        "(default: $CAST_DEFAULT_MODEL, else the best official model on this machine, else the "
                        "bundled one)")  # fmt: skip
    parser.add_argument("--superpixels", choices=METHODS, default=None,
                        help="superpixel method (default: the setting recorded with the model, SEEDS)")
    parser.add_argument("--num-superpixels", type=int, default=None, help="superpixels requested (default: 196)")


def segmenter_from_args(args: argparse.Namespace, mode: str = "center_crop") -> Segmenter:
    """Load the model the options name (saying which, on stderr) and build its Segmenter."""
    from ..api import load_model
    from ..weights.defaults import choose_default_model

    spec = args.model
    if spec is None:
        choice = choose_default_model()
        spec = choice.spec
        print(f"model: {spec} ({choice.reason}; --model chooses another)", file=sys.stderr)
    model = load_model(spec)
    return Segmenter(model, args.superpixels, InputConfig(size=model.config.img_size, mode=mode),
                     num_superpixels=args.num_superpixels)
