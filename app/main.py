"""Start the CAST Explorer app: `python app.py` in a checkout (and on Spaces), or the `cast-explorer` command."""
from __future__ import annotations

import os
import sys

import torch

from .config import AppConfig
from .ui import build_app


def main() -> None:
    """Build the UI from the environment's settings and serve it (blocking)."""
    config = AppConfig.from_env()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    demo = build_app(config)
    demo.queue(default_concurrency_limit=config.max_concurrency)
    # Hosted: the server refuses any upload above the largest cap before it is written; our own per-input
    # caps (images, checkpoints, ZIPs) then answer with a message naming the file.
    max_file_size = f"{config.limits.max_upload_mb:g}mb" if config.hosted else None
    capacity = config.limits.max_sessions if config.hosted else 10_000  # sessions whose results stay in memory
    demo.launch(server_name=config.server_name, server_port=config.server_port, show_error=True,
                max_file_size=max_file_size, state_session_capacity=capacity, mcp_server=mcp_requested())


def mcp_requested(argv: list[str] | None = None) -> bool:
    """`cast-explorer --mcp` or CAST_MCP=1: also serve Gradio's MCP server (segment, name and search as tools)."""
    argv = sys.argv[1:] if argv is None else argv
    return "--mcp" in argv or os.environ.get("CAST_MCP", "").strip().lower() in {"1", "true", "yes", "on"}


if __name__ == "__main__":
    main()
