"""CAST Explorer's own checkpoint format: one safetensors file, our parameter names, JSON metadata.

Layout of a file written by :func:`save_cast_checkpoint`:
- tensors: the model's ``state_dict()`` under our names (each transformer block once, as
  ``blocks.{j}``), optionally stored as float16; optional extra groups (e.g. the MoCo projector)
  as ``extras.{group}.{key}``;
- header ``__metadata__`` (safetensors allows str -> str only): ONE key, ``"cast_explorer"``, whose
  value is a JSON object with the format version, ``CastConfig.to_dict()``, the superpixel settings,
  provenance, class names and ``trained`` (False marks an untrained / placeholder model).

Reading goes through :func:`cast.weights.load_checkpoint` (layout ``"ours"``). Files of format 1 that
recorded superpixels with the older keys (``num_iterations``, ``color_space``) are still read.
"""
from __future__ import annotations

import datetime
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import save_file
from torch import nn

from ..errors import CheckpointError, SuperpixelError
from ..model.config import CastConfig
from ..model.vit import VitConfig
from ..superpixels import SuperpixelConfig

METADATA_KEY = "cast_explorer"
FORMAT_VERSION = 1
EXTRAS_PREFIX = "extras."

# Keys of the first superpixel schema, read for old files: old name -> SuperpixelConfig field (None: dropped).
_LEGACY_SUPERPIXEL_KEYS = {"num_iterations": "iterations", "color_space": None}

_STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _today() -> str:
    return datetime.date.today().isoformat()


@dataclass
class Provenance:
    """Where the weights came from and how they were made."""

    data: str = ""  # e.g. "ImageNet-1K", "COCO train2017", "none (random init)"
    steps: int | None = None  # optimisation steps, when known
    epoch: int | None = None  # training epoch of the parent checkpoint, when known
    parent_checkpoint: str | None = None  # path or hf://repo/file@commit the weights came from
    date: str = field(default_factory=_today)
    recipe: str = ""  # e.g. "MoCo-v3 (official CAST release)"
    deviations: list[str] = field(default_factory=list)  # differences from the official recipe
    notes: str = ""


@dataclass
class CheckpointMetadata:
    """Everything stored next to the weights. ``trained=False`` marks a placeholder model."""

    trained: bool
    superpixels: SuperpixelConfig = field(default_factory=SuperpixelConfig.official)
    provenance: Provenance = field(default_factory=Provenance)
    class_names: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CheckpointMetadata":
        """Inverse of :meth:`to_dict`; unknown provenance fields are an error."""
        prov = dict(data.get("provenance") or {})
        unknown = set(prov) - set(Provenance.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown provenance fields: {sorted(unknown)}")
        names = data.get("class_names")
        return cls(
            trained=bool(data["trained"]),
            superpixels=superpixels_from_header(data.get("superpixels")),
            provenance=Provenance(**prov),
            class_names=list(names) if names is not None else None,
        )


def superpixels_from_header(data: Mapping[str, Any] | None) -> SuperpixelConfig:
    """The superpixel settings recorded in a header (official MoCo SEEDS when none were recorded)."""
    if not data:
        return SuperpixelConfig.official()
    fields = {}
    for key, value in data.items():
        key = _LEGACY_SUPERPIXEL_KEYS.get(key, key)
        if key is not None:
            fields[key] = value
    try:
        return SuperpixelConfig.from_dict(fields)
    except (SuperpixelError, TypeError) as err:
        raise ValueError(f"invalid superpixel settings {dict(data)}: {err}") from err


def save_cast_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    metadata: CheckpointMetadata,
    dtype: torch.dtype | str = torch.float32,
    extras: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
) -> Path:
    """Write `model` (a Cast or a ViT baseline) as ONE safetensors file in our format, floats as `dtype`.

    The file is written next to its destination and renamed into place, so a crash never leaves a
    half-written checkpoint under the final name. Returns the path written.
    """
    config = model.config
    dtype_name = _dtype_name(dtype)
    store = _STORAGE_DTYPES[dtype_name]
    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        tensors[key] = (value.to(store) if value.is_floating_point() else value).contiguous()
    for group, entries in (extras or {}).items():
        if "." in group or not group:
            raise ValueError(f"extras group names must be non-empty and dot-free, got {group!r}")
        for key, value in entries.items():
            value = value.detach().cpu()
            value = value.to(store) if value.is_floating_point() else value
            tensors[f"{EXTRAS_PREFIX}{group}.{key}"] = value.contiguous().clone()
    header = {
        "format": METADATA_KEY,
        "format_version": FORMAT_VERSION,
        "family": "vit" if isinstance(config, VitConfig) else "cast",
        "config": config.to_dict(),
        "dtype": dtype_name,
        "extras": sorted(extras or {}),
        **metadata.to_dict(),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    partial = Path(name)  # unique per call: two writers of the same file never share a partial
    try:
        save_file(tensors, str(partial), metadata={METADATA_KEY: json.dumps(header)})
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def parse_metadata(header: Mapping[str, Any]) -> tuple[CastConfig | VitConfig, CheckpointMetadata, str]:
    """Validate our JSON header -> (config, metadata, storage dtype name); CheckpointError if unusable.

    The config is a CastConfig, or a VitConfig for a ViT-baseline file (header "family": "vit").
    """
    version = header.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError("the CAST Explorer header has no format version; the file is damaged")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"the file uses CAST Explorer checkpoint format {version}, newer than this version "
            f"understands ({FORMAT_VERSION}); update CAST Explorer"
        )
    try:
        family = header.get("family", "cast")
        if family not in ("cast", "vit"):
            raise ValueError(f"unknown model family {family!r}")
        config = (VitConfig if family == "vit" else CastConfig).from_dict(header["config"])
        metadata = CheckpointMetadata.from_dict(header)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"the CAST Explorer header is incomplete or invalid ({err})") from err
    return config, metadata, str(header.get("dtype", "float32"))


def split_extras(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """Separate model tensors from ``extras.{group}.{key}`` tensors of a file in our format."""
    model: dict[str, torch.Tensor] = {}
    extras: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(EXTRAS_PREFIX):
            group, _, rest = key[len(EXTRAS_PREFIX) :].partition(".")
            extras.setdefault(group, {})[rest] = value
        else:
            model[key] = value
    return model, extras


def _dtype_name(dtype: torch.dtype | str) -> str:
    if isinstance(dtype, str):
        name = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}.get(dtype, dtype)
    else:
        name = str(dtype).removeprefix("torch.")
    if name not in _STORAGE_DTYPES:
        raise ValueError(f"storage dtype must be one of {sorted(_STORAGE_DTYPES)}, got {dtype!r}")
    return name
