"""Loading the paper's ViT baselines (MoCo-v3 `vit_conv_*` files, spec §10.1) and converting them to our format."""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError
from ..model.vit import VIT_CONFIGS, VitBaseline, VitConfig, build_vit
from .format import (
    METADATA_KEY,
    CheckpointMetadata,
    Provenance,
    parse_metadata,
    save_cast_checkpoint,
)
from .layouts import detect_layout, is_tensor_dict
from .loading import load_strict
from .pretrained_cfg import from_file
from .reading import read_checkpoint_file

_ENCODER_PREFIXES = ("module.base_encoder.", "base_encoder.", "module.")


def vit_state_dict(raw: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Official names -> ours: the online encoder of a MoCo file without its projector head."""
    keys = list(raw)
    prefix = next((p for p in _ENCODER_PREFIXES if any(k.startswith(p) for k in keys)), "")
    state = {k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}
    return {k: v for k, v in state.items() if not k.startswith("head.")}


def infer_vit_config(state: Mapping[str, torch.Tensor]) -> VitConfig:
    """The registered ViT baseline a state dict belongs to (width and depth); heads come from the registry."""
    cls = state.get("cls_token")
    if not isinstance(cls, torch.Tensor) or any(k.startswith("pool1.") for k in state):
        raise CheckpointError("this is not a ViT-baseline backbone (no cls_token, or CAST pooling layers)")
    width = int(cls.shape[-1])
    depth = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("blocks.")), default=-1)
    for config in VIT_CONFIGS.values():
        if (config.embed_dim, config.depth) == (width, depth):
            return config
    raise CheckpointError(f"no registered ViT baseline has width {width} and depth {depth}; pass config= explicitly")


def load_vit_checkpoint(path: str | Path, architecture: str | VitConfig | None = None) -> VitBaseline:
    """Load a ViT-baseline file (official MoCo layout, plain state dict, or ours) strictly, in eval mode.

    The model carries `pretrained_cfg` like CAST models loaded through cast.create_model.
    """
    path = Path(path)
    obj = read_checkpoint_file(path)
    metadata = None
    layout = "ours"
    if METADATA_KEY in obj:
        config, metadata, _ = parse_metadata(obj[METADATA_KEY])
        if not isinstance(config, VitConfig):
            raise CheckpointError(f"{path} holds a CAST model ({config.name}), not a ViT baseline")
        state = dict(obj["state_dict"])
    else:
        layout = detect_layout(obj)
        raw = obj["state_dict"] if layout == "moco" or (layout == "plain" and not is_tensor_dict(obj)) else obj
        raw = obj["model"] if layout in ("deit", "converted_deit") else raw
        state = vit_state_dict(raw)
        config = infer_vit_config(state) if architecture is None else None
    if architecture is not None:
        config = VIT_CONFIGS[architecture] if isinstance(architecture, str) else architecture
    model = load_strict(build_vit(config), state, path, config.name)
    model.pretrained_cfg = from_file(path, architecture=config.name, layout=layout,
                                     metadata=metadata, superpixels=None)
    return model


def convert_vit_checkpoint(
    source: str | Path, destination: str | Path, *, architecture: str | VitConfig | None = None,
    provenance: Provenance | None = None,
) -> VitBaseline:  # fmt: skip
    """Load an official ViT-baseline file and write its backbone in our safetensors format."""
    model = load_vit_checkpoint(source, architecture)
    given = provenance or Provenance(parent_checkpoint=str(source), recipe="MoCo-v3 (official CAST code)",
                                     date=datetime.date.today().isoformat())
    save_cast_checkpoint(destination, model, metadata=CheckpointMetadata(trained=True, provenance=given))
    return model
