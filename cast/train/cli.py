"""`cast train {moco,supervised,probe} --data DIR --out PATH ...` (also `python -m cast.train`): the jobs, headless.

Ctrl-C stops after the current step and keeps the resume state (`--resume` continues from it).
`add_train_command(subparsers)` registers the same interface as `python -m cast train ...`.
"""
from __future__ import annotations

import argparse
import signal
import sys
from typing import Any, Sequence

from cast.superpixels import SuperpixelConfig

from .config import CONFIGS, TrainConfig

_MODE_HELP = {
    "moco": "MoCo-v3 self-supervised adaptation on an unlabelled folder (changes the hierarchy itself)",
    "supervised": "DeiT-style fine-tune on a folder-per-class layout",
    "probe": "linear probe (frozen backbone) on a folder-per-class layout",
}


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="folder of images (recursive) or a .zip of one")
    parser.add_argument("--out", required=True, help="result checkpoint (.safetensors, our format)")
    parser.add_argument("--checkpoint", default=None, help="base checkpoint: a file or a zoo name (default: from scratch)")
    parser.add_argument("--variant", default="cast_small", help="architecture when training from scratch")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, help="optimisation steps")
    length.add_argument("--epochs", type=int, default=None, help="passes over the data (default 10)")
    parser.add_argument("--batch-size", type=int, default=8, help="global batch (default 8)")
    parser.add_argument("--lr", type=float, default=None, help="absolute learning rate (default: the recipe's scaled rule)")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--log-every", type=int, default=1)
    parser.add_argument("--save-every", type=int, default=50, help="steps between resume states (0: at the end only)")
    parser.add_argument("--resume", action="store_true", help="continue from the resume state next to --out")
    parser.add_argument("--superpixels", choices=("official", "deit"), default=None,
                        help="SEEDS setting (default: the recipe's: official for moco/probe, deit for supervised)")
    parser.add_argument("--freeze-stem-bn", choices=("auto", "yes", "no"), default="auto")
    parser.add_argument("--disable-dropout", action="store_true", help="graph-pooling dropout off (recorded)")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The `moco` / `supervised` / `probe` subcommands on `parser` (a new one by default)."""
    parser = parser or argparse.ArgumentParser(prog="cast train", description="Train CAST on your images")
    sub = parser.add_subparsers(dest="mode", required=True, metavar="MODE")
    for mode, help_text in _MODE_HELP.items():
        p = sub.add_parser(mode, help=help_text, description=help_text)
        _add_common(p)
        if mode == "moco":
            p.add_argument("--mlp-dim", type=int, default=4096, help="projector / predictor width (official 4096)")
        if mode == "supervised":
            p.add_argument("--drop-path", type=float, default=0.1, help="drop-path rate (official 0.1)")
        if mode == "probe":
            p.add_argument("--cache-features", action="store_true",
                           help="embed each image once (no augmentation; fast; recorded as a deviation)")
    parser.set_defaults(func=run_from_args)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The job config the command line describes."""
    fields: dict[str, Any] = {
        "data": args.data, "output": args.out, "checkpoint": args.checkpoint, "variant": args.variant,
        "steps": args.steps, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "num_workers": args.num_workers, "seed": args.seed, "device": args.device, "log_every": args.log_every,
        "save_every": args.save_every, "resume": args.resume, "disable_dropout": args.disable_dropout,
        "freeze_stem_bn": {"auto": None, "yes": True, "no": False}[args.freeze_stem_bn],
    }  # fmt: skip
    if args.superpixels is not None:
        fields["superpixels"] = getattr(SuperpixelConfig, args.superpixels)()
    if args.mode == "moco":
        fields["mlp_dim"] = args.mlp_dim
    if args.mode == "supervised":
        fields["drop_path_rate"] = args.drop_path
    if args.mode == "probe":
        fields["cache_features"] = args.cache_features
    return CONFIGS[args.mode](**fields)


def run_from_args(args: argparse.Namespace) -> int:
    """Run the job with a tqdm bar; print the deviations and where the result went."""
    from tqdm import tqdm

    from .engine import train

    config = config_from_args(args)
    interrupted = {"flag": False}

    def on_sigint(signum: int, frame: Any) -> None:
        if interrupted["flag"]:
            raise KeyboardInterrupt
        interrupted["flag"] = True
        print("\nstopping after this step (Ctrl-C again to abort at once)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    bar = tqdm(desc=config.kind, unit="step")
    try:
        def progress(info: dict[str, Any]) -> None:
            bar.total = info["total_steps"]
            bar.n = info["step"]
            bar.set_postfix(loss=f"{info['loss']:.4f}", lr=f"{info['lr']:.2e}", img_s=f"{info['images_per_s']:.1f}")

        result = train(config, progress_callback=progress, should_stop=lambda: interrupted["flag"])
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous)
    print(result.report.summary())
    print("deviations from the official recipe:\n  - " + "\n  - ".join(result.deviations))
    if result.cancelled:
        print(f"cancelled at step {result.steps}; resume state: {result.state_path} (run again with --resume)")
        return 1
    print(f"wrote {result.output_path} after {result.steps} steps (final loss {result.final_loss:.4f}); log: {result.log_path}")
    return 0


def add_train_command(subparsers: Any) -> None:
    """Register `train MODE ...` on the `python -m cast` parser."""
    parser = subparsers.add_parser("train", help="train CAST on your images (moco / supervised / probe)")
    build_parser(parser)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m cast.train ...`; errors print as `error: ...` with exit code 2."""
    from cast.cli import run_parser

    return run_parser(build_parser(), argv)
