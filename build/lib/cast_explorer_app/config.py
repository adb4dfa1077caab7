"""App settings from the environment (local runs and Hugging Face Spaces alike)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
IN_CHECKOUT = (REPO_ROOT / "app.py").is_file() and (REPO_ROOT / "cast").is_dir()
# A checkout keeps jobs and fine-tunes beside the code; an installed app keeps them in the user's data folder.
DATA_ROOT = REPO_ROOT if IN_CHECKOUT else Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "cast_explorer"


@dataclass(frozen=True)
class AppConfig:
    """Where the app listens and what it serves."""

    server_name: str = "127.0.0.1"
    server_port: int = 7860
    checkpoints_dir: Path = DATA_ROOT / "checkpoints"
    assets_dir: Path = REPO_ROOT / "assets"  # example photographs (a checkout has them)
    jobs_dir: Path = DATA_ROOT / "jobs"
    model_cache_size: int = 3
    max_concurrency: int = 2

    @classmethod
    def from_env(cls) -> "AppConfig":
        """GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (or PORT) win; on Spaces listen on all interfaces."""
        default_host = "0.0.0.0" if os.environ.get("SPACE_ID") else cls.server_name
        port = os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT") or cls.server_port
        return cls(
            server_name=os.environ.get("GRADIO_SERVER_NAME", default_host),
            server_port=int(port),
            checkpoints_dir=Path(os.environ.get("CAST_CHECKPOINTS_DIR", cls.checkpoints_dir)),
            assets_dir=Path(os.environ.get("CAST_ASSETS_DIR", cls.assets_dir)),
            jobs_dir=Path(os.environ.get("CAST_JOBS_DIR", cls.jobs_dir)),
        )
