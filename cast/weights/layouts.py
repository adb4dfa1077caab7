"""Which published layout a checkpoint has, which CAST variant it holds, and the ONE key map to our names.

`to_model_state_dict` is the one place where official parameter names become ours (spec §5):
- wrapper prefixes `module.base_encoder.` / `base_encoder.` / `module.` are stripped; of a MoCo file
  only the online encoder is kept (momentum encoder and predictor are dropped);
- the MoCo projector `head.{0..7}.*` is dropped: it is not a classifier, so such files load without
  a head BY DESIGN;
- cast.py stage views `blocks{K}.{j}` (global j) must equal their twins `blocks.{j}`, then are dropped;
- cast_seg.py blocks `blocks{K}.{i}` (i restarting at 0 in each stage) become `blocks.{offset_K + i}`.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any, Mapping

import torch

from ..errors import CheckpointError, NotCastCheckpointError
from ..model import CastConfig, get_config
from ..model.config import MODEL_CONFIGS
from .format import METADATA_KEY

LAYOUTS = ("moco", "deit", "converted_deit", "plain", "ours")
_MOCO_ENCODER_PREFIXES = ("module.base_encoder.", "base_encoder.")
_MOCO_PREDICTOR_PREFIXES = ("module.predictor.", "predictor.")
_PROJECTOR_KEY = re.compile(r"head\.\d+\.")  # MoCo's Sequential projector; a classifier is head.weight
_STAGE_BLOCK_KEY = re.compile(r"blocks(\d+)\.(\d+)\.(.+)")
_SHARED_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.")
_POOL_KEY = re.compile(r"pool(\d+)\.pool_block\.")


def detect_layout(obj: Mapping[str, Any]) -> str:
    """Which published layout a loaded checkpoint object has: one of LAYOUTS (spec §5, §8.17)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"a checkpoint must be a dictionary, got {type(obj).__name__}")
    if isinstance(obj.get(METADATA_KEY), Mapping):
        return "ours"
    inner = obj.get("state_dict")
    if isinstance(inner, Mapping) and any(str(k).startswith(_MOCO_ENCODER_PREFIXES) for k in inner):
        return "moco"
    model = obj.get("model")
    if isinstance(model, Mapping) and is_tensor_dict(model):
        pos = model.get("pos_embed")
        rows = pos.shape[-2] if isinstance(pos, torch.Tensor) and pos.dim() == 3 else 0
        learned = "pe_token" not in model and rows > 1 and math.isqrt(rows - 1) ** 2 == rows - 1
        return "deit" if learned else "converted_deit"
    if is_tensor_dict(obj) or (isinstance(inner, Mapping) and is_tensor_dict(inner)):
        return "plain"
    keys = ", ".join(sorted(map(str, obj))[:8])
    raise CheckpointError(f"not a CAST checkpoint: no known layout fits its top-level entries ({keys})")


def infer_config(state_dict: Mapping[str, torch.Tensor]) -> CastConfig:
    """The registered variant a state dict (official or our names) belongs to, from names and shapes.

    Width from cls_token, stage depths from block indices, learned vs sin-cos table from pe_token,
    cast_seg from block_fusion, num_classes from head.weight (0 without a classifier). Head counts
    and cluster counts have no parameters of their own: they come from the matching registered config
    (cast_tiny: 6 heads; every full-size model: 12). A cast_seg segmentation-stage file (clusters
    320/160/80/40) has the same keys as the pretrain one and is reported as cast_seg_*_pretrain.
    """
    state, _ = strip_wrappers(state_dict)
    if not isinstance(state.get("cls_token"), torch.Tensor):
        raise CheckpointError("no cls_token: this is not a CAST backbone")
    width = int(state["cls_token"].shape[-1])
    stages = {int(m.group(1)) for k in state if (m := _POOL_KEY.match(k))}
    if not stages:
        raise NotCastCheckpointError(
            "this is not a CAST checkpoint: it has no graph-pooling layers (pool1..pool4). "
            "ViT baselines such as vit_conv_small load with cast.load_model(path)."
        )
    depths = _infer_depths(state, len(stages), width)
    pos_kind = "sincos" if "pe_token" in state else "learned"
    fusion = any(k.startswith("block_fusion.") for k in state)
    head = state.get("head.weight")
    num_classes = int(head.shape[0]) if isinstance(head, torch.Tensor) and head.dim() == 2 else 0
    registry = [get_config(name) for name in MODEL_CONFIGS]
    for cfg in registry:
        if (cfg.embed_dim, cfg.depths, cfg.pos_embed, cfg.block_fusion) == (width, depths, pos_kind, fusion):
            return cfg.with_(num_classes=num_classes)
    for cfg in registry:  # e.g. a deep DeiT model: a registered shape with another table / fusion
        if (cfg.embed_dim, cfg.depths) == (width, depths) and not cfg.block_fusion and cfg.pos_embed == "sincos":
            name = cfg.name + ("_deit" if pos_kind == "learned" else "") + ("_seg_pretrain" if fusion else "")
            return cfg.with_(name=name, pos_embed=pos_kind, block_fusion=fusion, num_classes=num_classes)
    raise CheckpointError(
        f"no registered CAST variant has width {width} and stage depths {depths}; pass config= explicitly"
    )


def _infer_depths(state: Mapping[str, Any], num_stages: int, width: int) -> tuple[int, ...]:
    per_stage: dict[int, set[int]] = defaultdict(set)
    for key in state:
        if m := _STAGE_BLOCK_KEY.match(key):
            per_stage[int(m.group(1))].add(int(m.group(2)))
    if per_stage:
        return tuple(len(per_stage.get(k, ())) for k in range(1, num_stages + 1))
    shared = {int(m.group(1)) for k in state if (m := _SHARED_BLOCK_KEY.match(k))}
    if not shared:
        raise CheckpointError("the checkpoint has no transformer blocks")
    total = max(shared) + 1
    registered = [get_config(name).depths for name in MODEL_CONFIGS]
    splits = {d for d in registered if sum(d) == total and len(d) == num_stages}
    if len(splits) != 1:
        raise CheckpointError(f"cannot tell how {total} transformer blocks split into stages; pass config= explicitly")
    return splits.pop()


# ------------------------------------------------------------------------------------ key mapping
def to_model_state_dict(raw_state_dict: Mapping[str, torch.Tensor], config: CastConfig) -> dict[str, torch.Tensor]:
    """Official names -> ours (see the module docstring); raises CheckpointError on inconsistent files."""
    return map_keys(raw_state_dict, config)[0]


def strip_wrappers(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Drop DDP / MoCo prefixes and the MoCo projector; returns (state, notes on what was dropped)."""
    notes = []
    keys = [str(k) for k in raw]
    prefix = next((p for p in _MOCO_ENCODER_PREFIXES if any(k.startswith(p) for k in keys)), None)
    if prefix is None and keys and all(k.startswith("module.") for k in keys):
        prefix = "module."
    if prefix is None:
        state = dict(raw)
    else:
        state = {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}
        if len(state) < len(raw):
            notes.append(f"kept {prefix}* only ({len(raw) - len(state)} other tensors skipped)")
    projector = [k for k in state if _PROJECTOR_KEY.match(k)]
    if projector:
        state = {k: v for k, v in state.items() if not _PROJECTOR_KEY.match(k)}
        notes.append(f"dropped the MoCo projector head ({len(projector)} tensors; not a classifier)")
    return state, notes


def map_keys(raw: Mapping[str, Any], config: CastConfig) -> tuple[dict[str, Any], list[str]]:
    state, notes = strip_wrappers(raw)
    staged = {k: m for k in state if (m := _STAGE_BLOCK_KEY.fullmatch(k))}
    if not staged:
        return state, notes
    rest = {k: v for k, v in state.items() if k not in staged}
    if any(_SHARED_BLOCK_KEY.match(k) for k in rest):
        # cast.py: blocks{K}.{j} are views of blocks.{j} (global j); the file must agree with itself.
        for key, m in staged.items():
            twin = f"blocks.{m.group(2)}.{m.group(3)}"
            if twin not in rest:
                raise CheckpointError(f"{key} has no twin {twin}: the file is inconsistent")
            a, b = state[key], rest[twin]
            if a.shape != b.shape or a.dtype != b.dtype or not torch.equal(a, b):
                raise CheckpointError(f"{key} differs from its twin {twin}: the file is inconsistent")
        notes.append(f"checked and dropped {len(staged)} duplicate stage-view tensors (blocks1..blocks{len(config.depths)})")
        return rest, notes
    # cast_seg.py: per-stage numbering restarting at 0 (global numbering is accepted too).
    offsets = [sum(config.depths[:k]) for k in range(len(config.depths))]
    per_stage: dict[int, set[int]] = defaultdict(set)
    for m in staged.values():
        per_stage[int(m.group(1))].add(int(m.group(2)))
    shift = {}
    for stage, indices in sorted(per_stage.items()):
        if not 1 <= stage <= len(config.depths):
            raise CheckpointError(f"the file has blocks{stage}.* but {config.name} has {len(config.depths)} stages")
        depth, offset = config.depths[stage - 1], offsets[stage - 1]
        if indices == set(range(depth)):
            shift[stage] = offset
        elif indices == set(range(offset, offset + depth)):
            shift[stage] = 0
        else:
            raise CheckpointError(
                f"stage {stage} of the file holds blocks {sorted(indices)}, but {config.name} has {depth} "
                f"blocks in stage {stage} (indices 0..{depth - 1})"
            )
    for key, m in staged.items():
        stage, index = int(m.group(1)), int(m.group(2))
        rest[f"blocks.{shift[stage] + index}.{m.group(3)}"] = state[key]
    notes.append("renumbered cast_seg per-stage blocks (blocksK.i -> blocks.j)")
    return rest, notes



def moco_extras(state_dict: Mapping[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
    """The MoCo projector (online encoder's head) and predictor, kept for later MoCo fine-tuning."""
    extras: dict[str, dict[str, torch.Tensor]] = {}
    groups = (("projector", tuple(p + "head." for p in _MOCO_ENCODER_PREFIXES)), ("predictor", _MOCO_PREDICTOR_PREFIXES))
    for group, prefixes in groups:
        for key, value in state_dict.items():
            prefix = next((p for p in prefixes if key.startswith(p)), None)
            if prefix is not None:
                extras.setdefault(group, {})[key[len(prefix) :]] = value
    return extras



def is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


