"""The checkpoint shipped with CAST Explorer (`checkpoints/cast_explorer_default.safetensors`, see its model card).

Installed packages carry it as package data (`cast/data/`, a link to `checkpoints/` in the repository),
so it is found from any working directory.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

BUNDLED_NAME = "cast_explorer_default.safetensors"


def bundled_checkpoint() -> Path:
    """Path of the bundled checkpoint (it may be missing in a stripped install; callers check)."""
    return Path(str(resources.files("cast").joinpath("data", BUNDLED_NAME)))
