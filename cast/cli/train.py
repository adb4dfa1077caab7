"""`cast train {moco,supervised,probe} --data DIR --out PATH ...`: the fine-tuning jobs, headless.

Also `python -m cast.train ...`, and `torchrun --nproc-per-node N -m cast.train ...` for several GPUs
(every process runs this; rank 0 alone prints the summary and touches files). Ctrl-C stops after the
current step and keeps the resume state (`--resume` continues from it). After a successful run the resume
state (optimizer moments, MoCo heads: far larger than the model) is removed unless `--keep-state`.
The work is `cast.train.train`; this module only parses, reports progress and prints.
"""
from __future__ import annotations

import argparse
import signal
import sys
from typing import Any, Sequence

from .common import (
    add_superpixel_options,
    existing_path,
    is_main_process,
    non_negative_int,
    positive_float,
    positive_int,
    run_parser,
)

_MODE_HELP = {
    "moco": "MoCo-v3 self-supervised adaptation on an unlabelled folder (changes the hierarchy itself)",
    "supervised": "DeiT-style fine-tune on a folder-per-class layout",
    "probe": "linear probe (frozen backbone) on a folder-per-class layout",
}
# The SEEDS parameters of each official pipeline (cast.superpixels.SuperpixelConfig.official / .deit).
SEEDS_SETTINGS = ("official", "deit")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 up to (not including) 1, got {text}")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=existing_path, metavar="DIR_OR_ZIP",
                        help="folder of images (searched recursively; one sub-folder per class for supervised and "
                        "probe) or a .zip of one")  # fmt: skip
    parser.add_argument("--out", required=True, metavar="FILE.safetensors",
                        help="the trained model (our safetensors format); its log (.log.jsonl) goes beside it. "
                        "Write it into the app's checkpoints folder to see it in the app's model picker "
                        "(README: Fine-tuning)")  # fmt: skip
    parser.add_argument("--checkpoint", default=None, metavar="NAME_OR_FILE",
                        help="model to start from: a published checkpoint, cast_explorer_default (the bundled "
                        "model) or a file (default: random weights of --variant)")  # fmt: skip
    parser.add_argument("--variant", default="cast_small",
                        help="architecture when training from scratch (default: cast_small; `cast list`)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=positive_int, default=None, help="optimisation steps")
    length.add_argument("--epochs", type=positive_int, default=None, help="passes over the data (default: 10)")
    parser.add_argument("--batch-size", type=positive_int, default=8,
                        help="global batch, split over torchrun processes (default: 8)")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="absolute learning rate (default: the recipe's rule scaled to the batch)")
    parser.add_argument("--num-workers", type=non_negative_int, default=0,
                        help="data-loading processes per training process (default: 0, load in the main one)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed of weights, augmentation and order (default: 0)")
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--log-every", type=positive_int, default=1,
                        help="steps between lines of the JSON-lines log (default: 1)")
    parser.add_argument("--save-every", type=non_negative_int, default=50,
                        help="steps between resume states (0: only at the end; default: 50)")
    parser.add_argument("--resume", action="store_true", help="continue from the resume state next to --out")
    parser.add_argument("--keep-state", action="store_true",
                        help="keep the resume state after a successful run (to continue it with --resume, or to "
                        "keep the MoCo heads); by default it is removed")  # fmt: skip
    add_superpixel_options(parser, default_help="seeds")
    parser.add_argument("--seeds-setting", choices=SEEDS_SETTINGS, default=None,
                        help="SEEDS parameters of the official pipelines (default: the recipe's: official for "
                        "moco and probe, deit for supervised)")  # fmt: skip
    parser.add_argument("--freeze-stem-bn", choices=("auto", "yes", "no"), default="auto",
                        help="keep the convolutional stem's BatchNorm in eval mode (auto: when the per-process "
                        "batch is small; recorded as a deviation)")  # fmt: skip
    parser.add_argument("--disable-dropout", action="store_true", help="graph-pooling dropout off (recorded)")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The `moco` / `supervised` / `probe` subcommands on `parser` (a new one by default)."""
    parser = parser or argparse.ArgumentParser(prog="cast train", description="Train CAST on your images")
    sub = parser.add_subparsers(dest="mode", required=True, metavar="MODE")
    for mode, help_text in _MODE_HELP.items():
        p = sub.add_parser(mode, help=help_text, description=help_text)
        _add_common(p)
        if mode == "moco":
            p.add_argument("--mlp-dim", type=positive_int, default=4096,
                           help="projector / predictor width (default: 4096, the official)")
        if mode == "supervised":
            p.add_argument("--drop-path", type=_fraction, default=0.1,
                           help="drop-path rate (default: 0.1, the official)")
        if mode == "probe":
            p.add_argument("--cache-features", action="store_true",
                           help="embed each image once (no augmentation; fast; recorded as a deviation)")
    parser.set_defaults(func=run_from_args)
    return parser


def config_from_args(args: argparse.Namespace):  # -> cast.train.TrainConfig
    """The job config the command line describes."""
    import dataclasses

    from ..superpixels import SuperpixelConfig
    from ..train.config import CONFIGS

    fields: dict[str, Any] = {
        "data": str(args.data), "output": args.out, "checkpoint": args.checkpoint, "variant": args.variant,
        "steps": args.steps, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "num_workers": args.num_workers, "seed": args.seed, "device": args.device, "log_every": args.log_every,
        "save_every": args.save_every, "resume": args.resume, "disable_dropout": args.disable_dropout,
        "freeze_stem_bn": {"auto": None, "yes": True, "no": False}[args.freeze_stem_bn],
    }  # fmt: skip
    if args.mode == "moco":
        fields["mlp_dim"] = args.mlp_dim
    if args.mode == "supervised":
        fields["drop_path_rate"] = args.drop_path
    if args.mode == "probe":
        fields["cache_features"] = args.cache_features
    config = CONFIGS[args.mode](**fields)
    superpixels = config.superpixels
    if args.seeds_setting is not None:
        superpixels = getattr(SuperpixelConfig, args.seeds_setting)()
    requested = {"method": args.superpixels, "num_superpixels": args.num_superpixels}
    changes = {k: v for k, v in requested.items() if v is not None}
    if changes:
        superpixels = dataclasses.replace(superpixels, **changes)
    return config.with_(superpixels=superpixels) if superpixels != config.superpixels else config


def run_from_args(args: argparse.Namespace) -> int:
    """Run the job with a progress bar (made at the first step, so an error before it prints no empty bar);
    print the summary once (rank 0) and where the result went."""
    from tqdm import tqdm

    from ..train import remove_resume_state, train

    config = config_from_args(args)
    main_process = is_main_process()
    interrupted = {"flag": False}

    def on_sigint(signum: int, frame: Any) -> None:
        if interrupted["flag"]:
            raise KeyboardInterrupt
        interrupted["flag"] = True
        print("\nstopping after this step (Ctrl-C again to abort at once)", file=sys.stderr)

    bar: dict[str, Any] = {}

    def progress(info: dict[str, Any]) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(desc=config.kind, unit="step", total=info["total_steps"], initial=info["step"] - 1)
        bar["bar"].n = info["step"]
        bar["bar"].set_postfix(loss=f"{info['loss']:.4f}", lr=f"{info['lr']:.2e}", img_s=f"{info['images_per_s']:.1f}")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = train(config, progress_callback=progress, should_stop=lambda: interrupted["flag"])
    finally:
        if "bar" in bar:
            bar["bar"].close()
        signal.signal(signal.SIGINT, previous)
    if not main_process:  # torchrun: rank 0 speaks for every process
        return 1 if result.cancelled else 0
    print(result.report.summary())
    print("deviations from the official recipe:\n  - " + "\n  - ".join(result.deviations))
    if result.cancelled:
        print(f"cancelled at step {result.steps}; resume state: {result.state_path} (run again with --resume)")
        return 1
    print(f"wrote {result.output_path} after {result.steps} steps (final loss {result.final_loss:.4f}); "
          f"log: {result.log_path}")
    if args.keep_state:
        print(f"resume state kept: {result.state_path} (continue with --resume and more --steps)")
    else:
        freed = remove_resume_state(result.output_path)
        if freed:
            print(f"removed the resume state ({freed / 1e6:.0f} MB; --keep-state keeps it)")
    return 0


def add_train_command(subparsers: Any) -> None:
    """Register `train MODE ...` on the `cast` parser."""
    parser = subparsers.add_parser("train", help="train CAST on your images (moco / supervised / probe)",
                                   description="Train CAST on your images with the paper's recipes, scaled down. "
                                   "Under torchrun, every process runs this and the batch is split.")  # fmt: skip
    build_parser(parser)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m cast.train ...`; errors print as `error: ...` with exit code 2."""
    return run_parser(build_parser(argparse.ArgumentParser(prog="python -m cast.train",
                                                           description="Train CAST on your images")), argv)
