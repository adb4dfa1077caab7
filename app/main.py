"""Start the CAST Explorer app: `python app.py` in a checkout (and on Spaces), or the `cast-explorer` command."""
from __future__ import annotations

import torch

from .config import AppConfig
from .hosting import server_options
from .ui import build_app


def main() -> None:
    """Build the UI from the environment's settings and serve it (blocking)."""
    config = AppConfig.from_env()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    demo = build_app(config)
    demo.queue(default_concurrency_limit=config.max_concurrency)
    # Hosted: the server refuses any upload above the largest cap before it is written, and makes room for it
    # in its upload folder's budget (app/hosting.py); our own per-input caps (images, checkpoints, ZIPs) then
    # answer with a message naming the file.
    capacity = config.limits.max_sessions if config.hosted else 10_000  # sessions whose results stay in memory
    demo.launch(server_name=config.server_name, server_port=config.server_port, show_error=True,
                state_session_capacity=capacity, **server_options(config))


if __name__ == "__main__":
    main()
