"""The public face of the library, in the timm habit: list models, create one by name, load one from a file.

    import cast
    cast.list_models("cast_*")                      # architectures
    cast.list_models(pretrained=True)               # published checkpoints by zoo name
    model = cast.create_model("cast_small_moco_in1k", pretrained=True)   # by name
    model = cast.load_model("my_finetune.safetensors")                   # from a file (or a zoo name)
    hierarchy = cast.Segmenter(model).run("photo.jpg")

A zoo name with `pretrained=True` loads the official weights (converted copy, then the Hugging Face
cache, then a download). When they cannot be had, a CheckpointError names the model and says how to get
it: another model is never substituted. Every model carries `model.pretrained_cfg`, a `PretrainedCfg`.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path

import torch

from .errors import CheckpointError, NotCastCheckpointError
from .model import MODEL_CONFIGS, VIT_CONFIGS, Cast, VitBaseline, build_model, build_vit, get_config
from .superpixels import SuperpixelConfig
from .weights import load_checkpoint
from .weights.bundled import BUNDLED_ENTRY, BUNDLED_MODEL, bundled_checkpoint, bundled_models
from .weights.hub import load_pretrained, load_vit_pretrained
from .weights.pretrained_cfg import untrained
from .weights.vit import load_vit_checkpoint
from .weights.zoo import DEFAULT_PREFERENCE, ZOO, list_pretrained, zoo_entry

Model = Cast | VitBaseline


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


def create_model(name: str, pretrained: bool = False, *, device: str | torch.device | None = None) -> Model:
    """A CAST (or ViT-baseline) model by name, in eval mode.

    `name` is an architecture (`cast_small`: random weights, or with `pretrained=True` its published
    checkpoint) or a zoo name (`cast_small_moco_in1k`: its published weights with `pretrained=True`, else
    the architecture with random weights). To load a file, use `load_model`.
    """
    architecture, zoo_name = _resolve(name, pretrained)
    if zoo_name == BUNDLED_MODEL:
        model: Model = load_checkpoint(bundled_checkpoint()).model
        model.pretrained_cfg = model.pretrained_cfg.from_zoo(BUNDLED_MODEL)
    elif zoo_name is not None:
        model = load_vit_pretrained(zoo_name) if architecture in VIT_CONFIGS else load_pretrained(zoo_name).model
    elif architecture in VIT_CONFIGS:
        model = build_vit(architecture)
        model.pretrained_cfg = untrained(architecture)
    else:
        model = build_model(architecture)
        model.pretrained_cfg = untrained(architecture, superpixels=SuperpixelConfig.official())
    return _placed(model, device)


def load_model(name_or_path: str | Path, *, architecture: str | None = None,
               device: str | torch.device | None = None) -> Model:
    """A model from a checkpoint file of any supported layout (CAST or ViT baseline, detected), in eval mode;
    a zoo name loads its published weights. `architecture` forces the variant a file is read as."""
    if not isinstance(name_or_path, (str, Path)):
        raise CheckpointError(f"load_model takes a file path or a model name, got {type(name_or_path).__name__}")
    key = str(name_or_path)
    if (key in ZOO or key == BUNDLED_MODEL) and architecture is None:
        return create_model(key, pretrained=True, device=device)
    if key in _architectures():
        raise CheckpointError(f"{key!r} is an architecture, not a checkpoint: use cast.create_model({key!r}) for random "
                              f"weights or cast.create_model({key!r}, pretrained=True) for its published weights")
    path = Path(name_or_path)
    if not (path.exists() or path.suffix or "/" in key):
        raise CheckpointError(f"unknown model {key!r}: not a file, and not a published checkpoint "
                              f"({', '.join(list_models(pretrained=True))})")
    if architecture is not None and architecture in VIT_CONFIGS:
        return _placed(load_vit_checkpoint(path, architecture), device)
    if architecture is not None and architecture not in MODEL_CONFIGS:
        raise CheckpointError(f"unknown architecture {architecture!r}; known: {', '.join(_architectures())}")
    try:
        model: Model = load_checkpoint(path, config=get_config(architecture) if architecture else None).model
    except NotCastCheckpointError:
        model = load_vit_checkpoint(path)
    return _placed(model, device)


def _placed(model: Model, device: str | torch.device | None) -> Model:
    return (model.to(device) if device is not None else model).eval()


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
                f"{', '.join(list_pretrained())}. Use pretrained=False, or cast.load_model(path) for your own file."
            )
        return name, published
    raise CheckpointError(
        f"unknown model {name!r}. Architectures: {', '.join(_architectures())}. "
        f"Published checkpoints: {', '.join(list_pretrained())}."
    )
