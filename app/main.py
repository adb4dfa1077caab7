"""Start the CAST Explorer app: `python app.py` in a checkout (and on Spaces), or the `cast-explorer` command."""
from __future__ import annotations

import torch

from .collection_tab import collection_paths
from .config import AppConfig
from .ui import build_app


def main() -> None:
    """Build the UI from the environment's settings and serve it (blocking)."""
    config = AppConfig.from_env()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    demo = build_app(config, collections=collection_paths())  # --collection PATH (repeatable), CAST_COLLECTIONS
    demo.queue(default_concurrency_limit=config.max_concurrency)
    # Hosted: the server refuses any upload above the largest cap before it is written; our own per-input
    # caps (images, checkpoints, ZIPs) then answer with a message naming the file.
    max_file_size = f"{config.limits.max_upload_mb:g}mb" if config.hosted else None
    capacity = config.limits.max_sessions if config.hosted else 10_000  # sessions whose results stay in memory
    demo.launch(server_name=config.server_name, server_port=config.server_port, show_error=True,
                max_file_size=max_file_size, state_session_capacity=capacity)


if __name__ == "__main__":
    main()
