"""The checkpoint shipped with CAST Explorer (`checkpoints/cast_explorer_default.safetensors`, see its model card).

Its name is `cast_explorer_default` (the file's stem): `cast.create_model(BUNDLED_MODEL, pretrained=True)`,
`cast.load_model(BUNDLED_MODEL)`, `--model cast_explorer_default`, and it is listed by
`cast.list_models(pretrained=True)` and `cast list --pretrained`. It is not a zoo entry: nothing is
downloaded. Installed packages carry it as package data (`cast/data/`, a link to `checkpoints/` in the
repository), so it is found from any working directory.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

BUNDLED_NAME = "cast_explorer_default.safetensors"
BUNDLED_MODEL = "cast_explorer_default"


@dataclass(frozen=True)
class BundledEntry:
    """What `cast list --pretrained` says about the bundled model (its file records the rest)."""

    name: str = BUNDLED_MODEL
    architecture: str = "cast_tiny"
    training: str = "MoCo-v3"
    data: str = "44 photographs"
    reported: str = "a small demo model trained on CPU, far from the official ones (checkpoints/README.md)"


BUNDLED_ENTRY = BundledEntry()


def bundled_checkpoint() -> Path:
    """Path of the bundled checkpoint (it may be missing in a stripped install; callers check)."""
    return Path(str(resources.files("cast").joinpath("data", BUNDLED_NAME)))


def bundled_models() -> list[str]:
    """The names of the bundled models present in this installation (`[BUNDLED_MODEL]`, or empty if stripped)."""
    return [BUNDLED_MODEL] if bundled_checkpoint().is_file() else []
