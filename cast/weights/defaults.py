"""Which model to start on when the user named none (the app's and the command line's default).

In this order (issue "Official CAST first"):
1. the model named by `CAST_DEFAULT_MODEL` (a zoo name or a checkpoint path), if set;
2. the best published checkpoint that needs no waiting: already converted, or in the local Hugging Face
   cache, in the order of `zoo.DEFAULT_PREFERENCE` (cast_base_moco_in1k first: the checkpoint the
   official notebooks visualise);
3. the bundled checkpoint.
Nothing here touches the network.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .bundled import bundled_checkpoint
from .hub import local_status
from .zoo import DEFAULT_PREFERENCE, ZOO

DEFAULT_MODEL_ENV = "CAST_DEFAULT_MODEL"


@dataclass(frozen=True)
class DefaultModel:
    """The chosen model (zoo name or file path) and why it was chosen, in words."""

    spec: str
    reason: str

    @property
    def is_official(self) -> bool:
        return self.spec in ZOO


def choose_default_model(*, cache_dir: str | Path | None = None, converted_dir: str | Path | None = None) -> DefaultModel:
    """The default model by the order in the module docstring (no network access)."""
    named = os.environ.get(DEFAULT_MODEL_ENV, "").strip()
    if named:
        return DefaultModel(named, f"set by {DEFAULT_MODEL_ENV}")
    preferred = preferred_local_official(cache_dir=cache_dir, converted_dir=converted_dir)
    if preferred is not None:
        return DefaultModel(preferred, "official weights already on this machine")
    return DefaultModel(str(bundled_checkpoint()), "the bundled model: no official checkpoint is on this machine yet")


def preferred_local_official(*, cache_dir: str | Path | None = None, converted_dir: str | Path | None = None) -> str | None:
    """The first published CAST checkpoint of DEFAULT_PREFERENCE that is converted or cached locally."""
    for name in DEFAULT_PREFERENCE:
        if local_status(name, cache_dir=cache_dir, converted_dir=converted_dir) is not None:
            return name
    return None
