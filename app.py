"""CAST Explorer: `python app.py` serves the UI (locally or on Hugging Face Spaces)."""
from __future__ import annotations

import torch

from app.config import AppConfig
from app.ui import build_app


def main() -> None:
    config = AppConfig.from_env()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    demo = build_app(config)
    demo.queue(default_concurrency_limit=config.max_concurrency)
    demo.launch(server_name=config.server_name, server_port=config.server_port, show_error=True)


if __name__ == "__main__":
    main()
