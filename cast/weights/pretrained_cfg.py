"""What a model's weights are: one typed record, `model.pretrained_cfg` (timm's `PretrainedCfg` habit).

Every loader builds it here and nowhere else: `untrained(...)` for random weights, `from_file(...)` for a
checkpoint file of any layout (CAST or ViT baseline), and `.from_zoo(name)` marks a published checkpoint.
`Segmenter` reads the superpixel setting from it; the app and the CLI read what to tell the user.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..superpixels import SuperpixelConfig

if TYPE_CHECKING:
    from torch import nn

    from .format import CheckpointMetadata


@dataclass(frozen=True)
class PretrainedCfg:
    """Where a model's weights come from and what they were trained with.

    `superpixels` is the setting the weights were trained with (None for the ViT baseline, which has none);
    `zoo_name` is set for published checkpoints; `source` is the file the weights were read from.
    """

    architecture: str
    trained: bool | None  # None: not recorded (a model built and loaded by hand)
    source: str | None = None
    zoo_name: str | None = None
    layout: str | None = None  # moco, deit, converted_deit, plain, ours (cast.weights.layouts); None: random init
    data: str = ""  # what the weights were trained on, as recorded in the file
    parent_checkpoint: str | None = None
    superpixels: SuperpixelConfig | None = None
    has_classifier: bool = False
    class_names: tuple[str, ...] | None = None

    @property
    def checkpoint(self) -> str:
        """How provenance names these weights: the zoo name, else the file's name, else "none (random init)"."""
        if self.zoo_name:
            return self.zoo_name
        if self.source:
            return Path(self.source).name
        return "none (random init)" if self.trained is False else "not recorded"

    def from_zoo(self, name: str) -> "PretrainedCfg":
        """The same record, marked as the published checkpoint `name`."""
        return replace(self, zoo_name=name)


def untrained(architecture: str, *, superpixels: SuperpixelConfig | None = None) -> PretrainedCfg:
    """Random weights of an architecture (CAST models record the official MoCo SEEDS setting)."""
    return PretrainedCfg(architecture=architecture, trained=False, superpixels=superpixels)


def from_file(
    path: str | Path,
    *,
    architecture: str,
    layout: str | None,
    metadata: "CheckpointMetadata | None",
    superpixels: SuperpixelConfig | None,
    has_classifier: bool = False,
    class_names: list[str] | tuple[str, ...] | None = None,
) -> PretrainedCfg:
    """The record of weights read from a checkpoint file (our format's metadata when it has some)."""
    prov = metadata.provenance if metadata is not None else None
    return PretrainedCfg(
        architecture=architecture,
        trained=metadata.trained if metadata is not None else True,
        source=str(path),
        layout=layout,
        data=prov.data if prov is not None else "",
        parent_checkpoint=prov.parent_checkpoint if prov is not None else None,
        superpixels=superpixels,
        has_classifier=has_classifier,
        class_names=tuple(class_names) if class_names else None,
    )


def pretrained_cfg_of(model: "nn.Module") -> PretrainedCfg:
    """`model.pretrained_cfg`, or "not recorded" when the model carries none (built and loaded by hand)."""
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, PretrainedCfg):
        return cfg
    from ..model import VitBaseline  # local: model/ does not depend on weights/

    is_vit = isinstance(model, VitBaseline)
    return PretrainedCfg(model.config.name, trained=None, superpixels=None if is_vit else SuperpixelConfig.official())
