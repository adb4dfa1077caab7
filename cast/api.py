"""The public face of the library, in the timm habit: list models, create one, load a checkpoint.

    import cast
    cast.list_models("cast_*")                      # architectures
    cast.list_models(pretrained=True)               # published checkpoints by zoo name
    model = cast.create_model("cast_small_moco_in1k", pretrained=True)
    hierarchy = cast.Segmenter(model).run("photo.jpg")

A zoo name with `pretrained=True` loads the official weights (converted copy, then the Hugging Face
cache, then a download). When they cannot be had, a CheckpointError names the model and says how to get
it: another model is never substituted.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError, NotCastCheckpointError
from .model import MODEL_CONFIGS, VIT_CONFIGS, build_model, build_vit, get_config
from .weights import LoadedCheckpoint, load_checkpoint
from .weights.bundled import BUNDLED_ENTRY, BUNDLED_MODEL, bundled_checkpoint, bundled_models
from .weights.hub import load_pretrained, load_vit_pretrained
from .weights.vit import load_vit_checkpoint
from .weights.zoo import DEFAULT_PREFERENCE, ZOO, list_pretrained, zoo_entry


def _architectures() -> list[str]:
    return sorted([*MODEL_CONFIGS, *VIT_CONFIGS])


def list_models(pattern: str | None = None, pretrained: bool = False) -> list[str]:
    """Architecture names (`cast_small`, `vit_conv_small`, ...), or with `pretrained=True` the published
    checkpoints by zoo name (`cast_small_moco_in1k`, ...) and the bundled `cast_explorer_default`.
    `pattern` is a shell glob such as `"cast_small*"`."""
    names = sorted([*list_pretrained(), *bundled_models()]) if pretrained else _architectures()
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def default_pretrained_for(architecture: str) -> str | None:
    """The published checkpoint of an architecture (the preferred one when several exist), or None."""
    entries = [n for n in DEFAULT_PREFERENCE if ZOO[n].architecture == architecture]
    entries += [e.name for e in ZOO.values() if e.loadable and e.architecture == architecture and e.name not in entries]
    return entries[0] if entries else None


def create_model(
    name: str,
    pretrained: bool = False,
    *,
    checkpoint_path: str | Path | None = None,
    device: str | torch.device | None = None,
) -> nn.Module:
    """A CAST (or ViT-baseline) model in eval mode.

    `name` is an architecture or a zoo name. `pretrained=True` loads the published weights (for an
    architecture, its published checkpoint); `checkpoint_path` loads a file of any supported layout
    strictly into that architecture instead. The model carries `model.pretrained_cfg` (source, training
    data, the superpixel setting the weights were trained with), which `Segmenter` reads.
    """
    architecture, zoo_name = _resolve(name, pretrained)
    if checkpoint_path is not None and pretrained:
        raise CheckpointError("pass either pretrained=True or checkpoint_path, not both")
    if architecture in VIT_CONFIGS:
        if zoo_name is not None:
            model = load_vit_pretrained(zoo_name)
        elif checkpoint_path is not None:
            model = load_vit_checkpoint(checkpoint_path, architecture)
        else:
            model = build_vit(architecture)
            model.pretrained_cfg = {"source": None, "architecture": architecture, "trained": False}
    elif zoo_name == BUNDLED_MODEL:
        model = _with_cfg(load_checkpoint(bundled_checkpoint()), BUNDLED_MODEL)
    elif zoo_name is not None:
        model = _with_cfg(load_pretrained(zoo_name), zoo_name)
    elif checkpoint_path is not None:
        model = _with_cfg(load_checkpoint(checkpoint_path, config=get_config(architecture)), None)
    else:
        model = build_model(architecture)
        model.pretrained_cfg = {"source": None, "architecture": architecture, "trained": False}
    if device is not None:
        model = model.to(device)
    return model.eval()


def load_model(name_or_path: str | Path, *, device: str | torch.device | None = None) -> nn.Module:
    """A published model by zoo name (pretrained), or any checkpoint file (CAST or ViT baseline, layout detected)."""
    key = str(name_or_path)
    if key in ZOO or key == BUNDLED_MODEL:
        return create_model(key, pretrained=True, device=device)
    if key in _architectures():
        raise CheckpointError(f"{key!r} is an architecture, not a checkpoint: use cast.create_model({key!r}) for random "
                              f"weights or cast.create_model({key!r}, pretrained=True) for its published weights")
    path = Path(name_or_path)
    if not (path.exists() or path.suffix or "/" in key):
        raise CheckpointError(f"unknown model {key!r}: not a file, and not a published checkpoint "
                              f"({', '.join(list_models(pretrained=True))})")
    try:
        model = _with_cfg(load_checkpoint(path), None)
    except NotCastCheckpointError:
        model = load_vit_checkpoint(path)
    return model.to(device).eval() if device is not None else model


def _resolve(name: str, pretrained: bool) -> tuple[str, str | None]:
    """(architecture, zoo name to load or None); the bundled model counts as a zoo name."""
    if name == BUNDLED_MODEL:
        if pretrained and not bundled_checkpoint().is_file():
            raise CheckpointError(f"{name}: the bundled checkpoint is missing from this installation "
                                  f"({bundled_checkpoint()}); reinstall cast-explorer")
        return BUNDLED_ENTRY.architecture, name if pretrained else None
    if name in ZOO:
        entry = zoo_entry(name)
        if not entry.loadable or entry.architecture is None:
            raise CheckpointError(f"{name} cannot be loaded: {entry.reason}.")
        return entry.architecture, name if pretrained else None
    if name in _architectures():
        if not pretrained:
            return name, None
        published = default_pretrained_for(name)
        if published is None:
            raise CheckpointError(
                f"no published weights exist for the architecture {name!r}; published checkpoints: "
                f"{', '.join(list_pretrained())}. Use pretrained=False, or checkpoint_path= for your own file."
            )
        return name, published
    raise CheckpointError(
        f"unknown model {name!r}. Architectures: {', '.join(_architectures())}. "
        f"Published checkpoints: {', '.join(list_pretrained())}."
    )


def _with_cfg(loaded: LoadedCheckpoint, zoo_name: str | None) -> nn.Module:
    model = loaded.model
    model.pretrained_cfg = {**loaded.pretrained_cfg(), "zoo_name": zoo_name}
    return model
