"""Loading any supported checkpoint strictly into a Cast, and converting it to our format (spec §5, §9).

`load_checkpoint(path)` reads the file safely (`reading`), detects its layout and variant and maps its
keys (`layouts`), builds the model and loads it with strict=True; every mismatch is one readable
CheckpointError. `convert_checkpoint` writes the result in our safetensors format (`format`).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError, ConfigError, NotCastCheckpointError
from ..model import Cast, CastConfig, build_model, get_config
from ..superpixels import SuperpixelConfig
from .classes import imagenet_class_names
from .format import (
    METADATA_KEY,
    CheckpointMetadata,
    Provenance,
    parse_metadata,
    save_cast_checkpoint,
)
from .pretrained_cfg import PretrainedCfg, from_file
from .layouts import detect_layout, infer_config, is_tensor_dict, map_keys, moco_extras
from .reading import first_line, read_checkpoint_file


@dataclass
class LoadedCheckpoint:
    """A checkpoint loaded into our model (eval mode), with what the UI needs to explain it."""

    model: Cast
    config: CastConfig
    layout: str  # one of LAYOUTS
    source: Path
    report: str  # a few plain sentences: what the file was and what was loaded
    has_classifier: bool
    missing_keys: list[str] = field(default_factory=list)  # missing by design (the head of MoCo files)
    extras: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # MoCo projector / predictor
    epoch: int | None = None
    arch: str | None = None
    class_names: list[str] | None = None
    metadata: CheckpointMetadata | None = None  # our format only

    @property
    def trained(self) -> bool:
        """False only for files of ours that declare an untrained / placeholder model."""
        return self.metadata.trained if self.metadata is not None else True

    @property
    def superpixels(self) -> SuperpixelConfig:
        """The superpixel setting the weights were trained with: recorded in our files, else by layout."""
        if self.metadata is not None:
            return self.metadata.superpixels
        return SuperpixelConfig.deit() if self.layout == "deit" else SuperpixelConfig.official()

    def pretrained_cfg(self) -> PretrainedCfg:
        """What a model built from this file carries as `model.pretrained_cfg` (the timm habit)."""
        return from_file(self.source, architecture=self.config.name, layout=self.layout, metadata=self.metadata,
                         superpixels=self.superpixels, has_classifier=self.has_classifier,
                         class_names=self.class_names)

    def describe(self) -> str:
        """One line for a UI: variant, layout, classifier or not, and untrained if so."""
        head = f"{self.config.num_classes}-class classifier" if self.has_classifier else "no classifier (embeddings + hierarchy)"
        state = "" if self.trained else "UNTRAINED placeholder, "
        return f"{self.config.name} ({state}{_LAYOUT_NAMES[self.layout]}, {head})"


_LAYOUT_NAMES = {
    "moco": "MoCo-v3 training checkpoint",
    "deit": "DeiT supervised checkpoint",
    "converted_deit": "MoCo-v3 backbone converted for DeiT",
    "plain": "plain state dict",
    "ours": "CAST Explorer checkpoint",
}


# ---------------------------------------------------------------------------------------- loading
def load_checkpoint(path: str | Path, *, config: CastConfig | str | None = None) -> LoadedCheckpoint:
    """Load any supported checkpoint file strictly into a Cast in eval mode.

    Only `head.weight`/`head.bias` may be absent, and only when the file has no classifier (the model
    is then built with num_classes=0). Everything else that does not fit raises CheckpointError.
    """
    path = Path(path)
    obj = read_checkpoint_file(path)
    layout = detect_layout(obj)
    metadata = None
    extras: dict[str, dict[str, torch.Tensor]] = {}
    epoch = arch = None
    if layout == "ours":
        saved_config, metadata, _ = _parse_ours(path, obj[METADATA_KEY])
        raw, extras = obj["state_dict"], dict(obj.get("extras") or {})
        inferred: CastConfig | CheckpointError = saved_config
    else:
        raw, epoch, arch = _payload(obj, layout)
        if layout == "moco":
            extras = moco_extras(obj["state_dict"])
        try:
            inferred = infer_config(raw)
        except CheckpointError as err:
            inferred = err
    if config is not None:
        try:
            cfg = get_config(config) if isinstance(config, str) else config
        except ConfigError as err:
            raise CheckpointError(str(err)) from err
    elif isinstance(inferred, CheckpointError):
        raise type(inferred)(f"{path}: {inferred}")
    else:
        cfg = inferred
    try:
        state, notes = map_keys(raw, cfg)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}{_variant_hint(cfg, inferred)}") from err
    has_classifier = "head.weight" in state or "head.bias" in state
    missing_by_design = [] if has_classifier else ["head.weight", "head.bias"]
    if not has_classifier and cfg.num_classes:
        cfg = cfg.with_(num_classes=0)
    model = _build_and_load(cfg, state, path, inferred)
    class_names = metadata.class_names if metadata is not None else None
    if layout == "deit" and cfg.num_classes == 1000:
        class_names = imagenet_class_names()
    report = _report(layout, cfg, has_classifier, epoch, arch, notes, metadata, extras)
    loaded = LoadedCheckpoint(
        model=model, config=cfg, layout=layout, source=path, report=report, has_classifier=has_classifier,
        missing_keys=missing_by_design, extras=extras, epoch=epoch, arch=arch, class_names=class_names,
        metadata=metadata,
    )  # fmt: skip
    model.pretrained_cfg = loaded.pretrained_cfg()
    return loaded


def _parse_ours(path: Path, header: Mapping[str, Any]) -> tuple[CastConfig, CheckpointMetadata, str]:
    try:
        config, metadata, dtype = parse_metadata(header)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from err
    if not isinstance(config, CastConfig):
        raise NotCastCheckpointError(f"{path} holds a ViT baseline ({config.name}), not CAST: load it with "
                              f"cast.load_model(path)")
    return config, metadata, dtype


def _payload(obj: Mapping[str, Any], layout: str) -> tuple[Mapping[str, Any], int | None, str | None]:
    """(raw state dict, epoch, arch) of a non-ours layout."""
    epoch = obj.get("epoch") if isinstance(obj.get("epoch"), int) else None
    if layout == "moco":
        return obj["state_dict"], epoch, obj.get("arch") if isinstance(obj.get("arch"), str) else None
    if layout in ("deit", "converted_deit"):
        args = obj.get("args")
        arch = getattr(args, "model", None) if isinstance(args, argparse.Namespace) else None
        return obj["model"], epoch, arch if isinstance(arch, str) else None
    inner = obj.get("state_dict")
    if isinstance(inner, Mapping) and not is_tensor_dict(obj):
        return inner, epoch, obj.get("arch") if isinstance(obj.get("arch"), str) else None
    return obj, None, None


def _build_and_load(cfg: CastConfig, state: Mapping[str, Any], source: Path, inferred: Any) -> Cast:
    """Build the model and load strictly; every mismatch becomes one readable CheckpointError."""
    return load_strict(build_model(cfg), state, source, cfg.name, hint=_variant_hint(cfg, inferred))


def load_strict(model: torch.nn.Module, state: Mapping[str, Any], source: Path | str, name: str, hint: str = "") -> Any:
    """load_state_dict(strict=True) with every mismatch (missing, unexpected, shapes) in one CheckpointError."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    not_tensors = [k for k in state if k in expected and not isinstance(state[k], torch.Tensor)]
    shapes = [
        f"{k}: file {list(state[k].shape)} vs model {list(expected[k].shape)}"
        for k in expected
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != expected[k].shape
    ]
    problems = [
        _some(len(missing), "key missing", "keys missing", missing),
        _some(len(unexpected), "unexpected key", "unexpected keys", unexpected),
        _some(len(shapes), "shape mismatch", "shape mismatches", shapes),
        _some(len(not_tensors), "entry is not a tensor", "entries are not tensors", not_tensors),
    ]
    problems = [p for p in problems if p]
    if problems:
        raise CheckpointError(f"{source} does not fit the {name} model: {'; '.join(problems)}.{hint}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{source}: the weights do not fit the {name} model ({first_line(err)}).") from err
    return model.eval()


def _some(count: int, one: str, many: str, examples: list[str]) -> str:
    if not count:
        return ""
    shown = ", ".join(examples[:3])
    return f"{count} {one if count == 1 else many}, e.g. {shown}"


def _variant_hint(cfg: CastConfig, inferred: Any) -> str:
    if isinstance(inferred, CastConfig) and inferred.name != cfg.name:
        return f" The file looks like a {inferred.name} checkpoint; load it without forcing config={cfg.name!r}."
    return ""


def _report(
    layout: str,
    cfg: CastConfig,
    has_classifier: bool,
    epoch: int | None,
    arch: str | None,
    notes: list[str],
    metadata: CheckpointMetadata | None,
    extras: Mapping[str, Any],
) -> str:
    """A few plain sentences for the UI / CLI."""
    classes = (
        f"It has a {cfg.num_classes}-class classifier."
        if has_classifier
        else "It has no classifier, so this model gives embeddings and hierarchies but no class predictions."
    )
    when = ", ".join(x for x in (f"epoch {epoch}" if epoch is not None else "", f"arch {arch}" if arch else "") if x)
    when = f" ({when})" if when else ""
    if layout == "moco":
        kept = f" The {' and '.join(sorted(extras))} are kept in `extras` for MoCo fine-tuning." if extras else ""
        text = (
            f"MoCo-v3 training checkpoint{when}: loaded the online encoder (base_encoder) as {cfg.name}; the MoCo "
            "projector head is not a classifier, so this model gives embeddings and hierarchies but no class "
            f"predictions. The momentum encoder and optimizer state were skipped.{kept}"
        )
    elif layout == "deit":
        text = f"DeiT supervised checkpoint{when}: loaded `model` (not `model_ema`) as {cfg.name}. {classes}"
    elif layout == "converted_deit":
        text = f"MoCo-v3 backbone converted for DeiT fine-tuning (convert_to_deit.py layout): loaded as {cfg.name}. {classes}"
    elif layout == "plain":
        text = f"Plain state dict{when}: loaded as {cfg.name}. {classes}"
    else:
        prov = metadata.provenance
        status = "trained" if metadata.trained else "UNTRAINED placeholder: its hierarchies reflect no learning"
        origin = f" from {prov.parent_checkpoint}" if prov.parent_checkpoint else ""
        data = f", data: {prov.data}" if prov.data else ""
        text = f"CAST Explorer checkpoint ({cfg.name}, {status}{data}){origin}. {classes}"
        if prov.notes:
            text += f" Notes: {prov.notes}"
    if notes and layout != "ours":
        text += f" Key mapping: {'; '.join(notes)}."
    if layout == "plain" and cfg.name in ("cast_tiny",):
        text += " Head counts cannot be read from shapes; they come from the registered cast_tiny config."
    if cfg.block_fusion and layout != "ours":
        text += (
            f" Cluster counts {list(cfg.num_clusters)} come from the registered config (they have no weights); "
            "a segmentation-stage file needs config=...with_(num_clusters=(320, 160, 80, 40))."
        )
    return text


# ------------------------------------------------------------------------------- converting files
def convert_checkpoint(
    source: str | Path,
    destination: str | Path,
    *,
    config: CastConfig | str | None = None,
    dtype: torch.dtype | str = torch.float32,
    trained: bool | None = None,
    keep_extras: bool = False,
    provenance: Provenance | None = None,
) -> LoadedCheckpoint:
    """Load any supported file and write it in our format (backbone only unless keep_extras)."""
    loaded = load_checkpoint(source, config=config)
    if loaded.metadata is not None:
        metadata = loaded.metadata
        if trained is not None:
            metadata = CheckpointMetadata(trained, metadata.superpixels, metadata.provenance, metadata.class_names)
    else:
        recipe = {"moco": "MoCo-v3 (official CAST code)", "deit": "DeiT supervised (official CAST code)"}.get(loaded.layout, "")
        given = provenance or Provenance(parent_checkpoint=str(source), recipe=recipe, date=datetime.date.today().isoformat())
        metadata = CheckpointMetadata(
            trained=True if trained is None else trained,
            superpixels=loaded.superpixels,  # the DeiT file was trained with the DeiT SEEDS setting
            provenance=dataclasses.replace(
                given,
                epoch=given.epoch if given.epoch is not None else loaded.epoch,
                notes=f"{given.notes} {loaded.report}".strip(),  # what the source file was, in words
            ),
            class_names=loaded.class_names,
        )
    save_cast_checkpoint(destination, loaded.model, metadata=metadata, dtype=dtype, extras=loaded.extras if keep_extras else None)
    return loaded


