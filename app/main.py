"""Start the CAST Explorer app: `python app.py` in a checkout (and on Spaces), or the `cast-explorer` command.

    cast-explorer [--host HOST] [--port PORT] [--model NAME_OR_FILE] [--model-dir DIR ...] [--collection PATH ...]
                  [--share] [--mcp]

Options override the environment's settings (GRADIO_SERVER_NAME, GRADIO_SERVER_PORT, CAST_DEFAULT_MODEL,
CAST_MODEL_DIRS, CAST_MCP; the rest is app/config.py). `--help` imports neither PyTorch nor Gradio. Once the default
model is loaded, one line says which model it is, why, and the mode; a background download that fails
says so on the console too.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

DEFAULT_MODEL_ENV = "CAST_DEFAULT_MODEL"  # cast.weights.defaults.DEFAULT_MODEL_ENV (not imported: --help stays light)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The `cast-explorer` command line."""
    parser = argparse.ArgumentParser(
        prog="cast-explorer",
        description="Serve the CAST Explorer app (Gradio): segment an image with CAST, slide through the levels of "
        "its part-to-whole hierarchy, audit collections, fine-tune. Hosted mode (caps, private jobs) is on with "
        "CAST_HOSTED=1 or on a Hugging Face Space; see the README's Hosting section for every setting.",
    )
    parser.add_argument("--host", default=None,
                        help="address to listen on (default: $GRADIO_SERVER_NAME, else 127.0.0.1; 0.0.0.0 on a Space)")
    parser.add_argument("--port", type=_port, default=None,
                        help="port to listen on (default: $GRADIO_SERVER_PORT or $PORT, else 7860)")
    parser.add_argument("--model", default=None, metavar="NAME_OR_FILE",
                        help="model to start on: a published checkpoint (`cast list --pretrained`), the bundled "
                        "cast_explorer_default, or a checkpoint file; the same as $CAST_DEFAULT_MODEL (default: the "
                        "best official model on this machine, else the bundled one)")  # fmt: skip
    parser.add_argument("--model-dir", action="append", type=Path, default=[], metavar="DIR",
                        help="another folder of .safetensors models for the model picker, e.g. where `cast train "
                        "--out` wrote; repeatable; adds to $CAST_MODEL_DIRS")  # fmt: skip
    parser.add_argument("--collection", action="append", type=Path, default=[], metavar="PATH",
                        help="a saved collection (`cast segment ... --out PATH`) for the Collection tab; repeatable; "
                        "adds to the collections in $CAST_COLLECTIONS")  # fmt: skip
    parser.add_argument("--share", action="store_true",
                        help="also serve on a public gradio.live link (needs network); turns hosted mode on unless "
                        "CAST_HOSTED=0 says otherwise, since anyone with the link can use the app")  # fmt: skip
    parser.add_argument("--mcp", action="store_true",
                        help="also serve Gradio's MCP server, so agents can call segment, name_segments, name_image "
                        "and search_text as tools (the same as CAST_MCP=1)")  # fmt: skip
    return parser


def mcp_requested(flag: bool = False) -> bool:
    """`--mcp` or CAST_MCP=1: serve Gradio's MCP server too."""
    return flag or os.environ.get("CAST_MCP", "").strip().lower() in {"1", "true", "yes", "on"}


def _check_model(spec: str) -> None:
    """Refuse an unknown --model before anything loads (a name of `cast list --pretrained`, or a file)."""
    from cast.api import list_models
    from cast.errors import CheckpointError

    if spec not in list_models(pretrained=True) and not Path(spec).is_file():
        raise CheckpointError(f"--model {spec}: not a file, and not a published checkpoint "
                              f"({', '.join(list_models(pretrained=True))})")  # fmt: skip


def startup_line(config, catalog, url: str) -> str:  # (AppConfig, ModelCatalog)
    """What the console says once the default model is loaded: the model, why, and the mode."""
    mode = "hosted mode (caps on, jobs private to their session)" if config.hosted else "local mode (no caps)"
    return f"CAST Explorer on {url} — {mode}\n{catalog.default_status()}"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, build the UI and serve it (blocking); returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import dataclasses

    from cast.errors import CastError

    try:
        if args.model is not None:
            _check_model(args.model)
            os.environ[DEFAULT_MODEL_ENV] = args.model  # read by cast.weights.defaults, here and in job processes
        if args.share and os.environ.get("CAST_HOSTED", "").strip() == "":
            os.environ["CAST_HOSTED"] = "1"
        from .config import AppConfig

        config = AppConfig.from_env()
    except CastError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    config = dataclasses.replace(
        config, server_name=args.host or config.server_name, server_port=args.port or config.server_port,
        model_dirs=(*config.model_dirs, *args.model_dir),
    )  # fmt: skip
    for folder in args.model_dir:
        if not folder.is_dir():
            print(f"error: --model-dir {folder}: not a folder", file=sys.stderr)
            return 2
    from .collection_tab import collection_paths

    try:
        collections = collection_paths(args.collection)  # --collection PATH (repeatable), CAST_COLLECTIONS
    except CastError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    import torch

    from .hosting import server_options
    from .ui import build_app, build_catalog

    torch.set_num_threads(max(1, torch.get_num_threads()))
    catalog = build_catalog(config)
    demo = build_app(config, catalog=catalog, collections=collections)
    demo.queue(default_concurrency_limit=config.max_concurrency)
    print(startup_line(config, catalog, f"http://{config.server_name}:{config.server_port}"), flush=True)
    # Hosted: the server refuses any upload above the largest cap before it is written, and makes room for it
    # in its upload folder's budget (app/hosting.py); our own per-input caps (images, checkpoints, ZIPs) then
    # answer with a message naming the file.
    capacity = config.limits.max_sessions if config.hosted else 10_000  # sessions whose results stay in memory
    demo.launch(server_name=config.server_name, server_port=config.server_port, show_error=True, share=args.share,
                state_session_capacity=capacity, mcp_server=mcp_requested(args.mcp), **server_options(config))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
