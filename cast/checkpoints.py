"""Reading CAST checkpoints of every published layout, safely and strictly (spec §5, §8.14-18, §9).

This module is the ONE place where official parameter names become ours (`to_model_state_dict`):
- wrapper prefixes `module.base_encoder.` / `base_encoder.` / `module.` are stripped; of a MoCo file
  only the online encoder is kept (momentum encoder and predictor are dropped);
- the MoCo projector `head.{0..7}.*` is dropped: it is not a classifier, so such files load without
  a head BY DESIGN;
- cast.py stage views `blocks{K}.{j}` (global j) must equal their twins `blocks.{j}`, then are dropped;
- cast_seg.py blocks `blocks{K}.{i}` (i restarting at 0 in each stage) become `blocks.{offset_K + i}`.

Files are read with safetensors, or `torch.load(weights_only=True)` with only `argparse.Namespace`
allow-listed (the DeiT file's `args`); there is no fallback to unsafe unpickling.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import pickle
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file

from .ckpt_format import METADATA_KEY, CheckpointMetadata, Provenance, parse_metadata, save_cast_checkpoint, split_extras
from .errors import CheckpointError
from .model import Cast, CastConfig, build_model, get_config
from .model.config import MODEL_CONFIGS

LAYOUTS = ("moco", "deit", "converted_deit", "plain", "ours")
_MOCO_ENCODER_PREFIXES = ("module.base_encoder.", "base_encoder.")
_MOCO_PREDICTOR_PREFIXES = ("module.predictor.", "predictor.")
_PROJECTOR_KEY = re.compile(r"head\.\d+\.")  # MoCo's Sequential projector; a classifier is head.weight
_STAGE_BLOCK_KEY = re.compile(r"blocks(\d+)\.(\d+)\.(.+)")
_SHARED_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.")
_POOL_KEY = re.compile(r"pool(\d+)\.pool_block\.")
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_SAFETENSORS_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
_MAGIC = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
)


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
    notice: str | None = None  # set by cast.zoo when it fell back to another checkpoint

    @property
    def trained(self) -> bool:
        """False only for files of ours that declare an untrained / placeholder model."""
        return self.metadata.trained if self.metadata is not None else True

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


# ----------------------------------------------------------------------------------------- reading
def read_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """Read a .safetensors / .pth / .pth.tar / .pt / .bin file safely; CheckpointError on any problem.

    A safetensors file in our format comes back as {"cast_explorer": header, "state_dict", "extras"};
    any other safetensors file as its flat tensor dict; torch files as the object they hold.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file.")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): an interrupted download or copy?")
    with path.open("rb") as handle:
        head = handle.read(512)
    kind = _sniff(head)
    if kind == "safetensors":
        return _read_safetensors(path, size)
    if kind in ("zip", "pickle"):
        return _read_torch(path)
    if path.name.endswith(".safetensors") and kind == "unrecognised binary data":
        raise CheckpointError(f"{path} is not a readable safetensors file: its header is corrupt.")
    raise CheckpointError(f"{path} is not a checkpoint: it looks like {kind}.")


def _sniff(head: bytes) -> str:
    """What the first bytes of a file say it is."""
    if head.startswith(b"PK\x03\x04"):
        return "zip"  # torch.save's default container
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"  # legacy torch.save, or a bare pickle
    if len(head) > 8 and head[8:9] == b"{":
        return "safetensors"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    try:
        text = head.decode("utf-8")
        if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
            return "a text file"
    except UnicodeDecodeError:
        pass
    return "unrecognised binary data"


def _read_safetensors(path: Path, size: int) -> dict[str, Any]:
    """Validate the header ourselves (no allocation from declared sizes), then load with safetensors."""
    with path.open("rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        if header_len > size - 8 or header_len > _MAX_SAFETENSORS_HEADER:
            raise CheckpointError(
                f"{path} has a corrupt safetensors header: it declares {header_len:,} header bytes but the "
                f"file has {size:,} bytes in all (truncated, or not a safetensors file)."
            )
        raw = handle.read(header_len)
    try:
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{path} has a corrupt safetensors header ({err}).") from err
    meta = header.pop("__metadata__", None) or {}
    data_bytes = size - 8 - header_len
    for name, info in header.items():
        _check_tensor_entry(path, name, info, data_bytes)
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError and others
        raise CheckpointError(f"{path} could not be read as safetensors ({_first_line(err)}).") from err
    if not isinstance(meta, dict) or METADATA_KEY not in meta:
        return tensors
    try:
        ours = json.loads(meta[METADATA_KEY])
    except ValueError as err:
        raise CheckpointError(f"{path}: the CAST Explorer metadata in its header is not valid JSON ({err}).") from err
    if not isinstance(ours, dict):
        raise CheckpointError(f"{path}: the CAST Explorer metadata in its header is not a JSON object.")
    model_tensors, extras = split_extras(tensors)
    return {METADATA_KEY: ours, "state_dict": model_tensors, "extras": extras}


def _check_tensor_entry(path: Path, name: str, info: Any, data_bytes: int) -> None:
    """One header entry: known dtype, sane shape, offsets inside the file and matching the shape."""
    try:
        dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        ok = dtype in _SAFETENSORS_ITEMSIZE and all(isinstance(d, int) and d >= 0 for d in shape)
        ok = ok and isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end
    except (TypeError, KeyError, ValueError):
        ok = False
    if not ok:
        raise CheckpointError(f"{path} has a corrupt safetensors header: entry {name!r} is malformed.")
    needed = math.prod(shape) * _SAFETENSORS_ITEMSIZE[dtype]
    if end > data_bytes:
        raise CheckpointError(
            f"{path}: tensor {name!r} (shape {list(shape)}, {_bytes(needed)}) lies beyond the end of the file, "
            f"which holds only {_bytes(data_bytes)} of data: the file is truncated or its header is corrupt."
        )
    if end - begin != needed:
        raise CheckpointError(
            f"{path} has a corrupt safetensors header: tensor {name!r} of shape {list(shape)} needs "
            f"{_bytes(needed)} but the header gives it {_bytes(end - begin)}."
        )


def _read_torch(path: Path) -> dict[str, Any]:
    """torch.load with weights_only=True; only argparse.Namespace is allow-listed."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # noise, not a problem
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        blocked = re.search(r"GLOBAL ([\w.]+)|[Uu]nsupported global:? (?:GLOBAL )?([\w.]+)", text)
        if blocked:
            culprit = blocked.group(1) or blocked.group(2)
            raise CheckpointError(
                f"{path} was refused: it contains code or Python objects that are not allowed in a checkpoint "
                f"({culprit}). It was NOT executed. A checkpoint should hold only tensors and plain containers; "
                "open files only from sources you trust."
            ) from err
        detail = next((ln.strip() for ln in text.splitlines() if "Unsupported" in ln), _first_line(err))
        raise CheckpointError(
            f"{path} was refused: it contains pickle content that is not allowed in a checkpoint ({detail}), "
            "possibly code. It was NOT executed. If it comes from a source you trust, re-save its weights "
            "with torch.save(state_dict, path)."
        ) from err
    except (EOFError, RuntimeError) as err:
        raise CheckpointError(
            f"{path} is truncated or corrupt ({_first_line(err)}); download or copy it again."
        ) from err
    except Exception as err:
        raise CheckpointError(
            f"{path} could not be read as a PyTorch checkpoint ({type(err).__name__}: {_first_line(err)})."
        ) from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a dictionary of weights.")
    return obj


# ------------------------------------------------------------------------------ layout and variant
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
    if isinstance(model, Mapping) and _is_tensor_dict(model):
        pos = model.get("pos_embed")
        rows = pos.shape[-2] if isinstance(pos, torch.Tensor) and pos.dim() == 3 else 0
        learned = "pe_token" not in model and rows > 1 and math.isqrt(rows - 1) ** 2 == rows - 1
        return "deit" if learned else "converted_deit"
    if _is_tensor_dict(obj) or (isinstance(inner, Mapping) and _is_tensor_dict(inner)):
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
    state, _ = _strip_wrappers(state_dict)
    if not isinstance(state.get("cls_token"), torch.Tensor):
        raise CheckpointError("no cls_token: this is not a CAST backbone")
    width = int(state["cls_token"].shape[-1])
    stages = {int(m.group(1)) for k in state if (m := _POOL_KEY.match(k))}
    if not stages:
        raise CheckpointError(
            "this is not a CAST checkpoint: it has no graph-pooling layers (pool1..pool4). "
            "ViT baselines such as vit_conv_small cannot be loaded into CAST."
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
    return _map_keys(raw_state_dict, config)[0]


def _strip_wrappers(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
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


def _map_keys(raw: Mapping[str, Any], config: CastConfig) -> tuple[dict[str, Any], list[str]]:
    state, notes = _strip_wrappers(raw)
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
            extras = _moco_extras(obj["state_dict"])
        try:
            inferred = infer_config(raw)
        except CheckpointError as err:
            inferred = err
    if config is not None:
        try:
            cfg = get_config(config) if isinstance(config, str) else config
        except KeyError as err:
            raise CheckpointError(str(err.args[0])) from err
    elif isinstance(inferred, CheckpointError):
        raise CheckpointError(f"{path}: {inferred}")
    else:
        cfg = inferred
    try:
        state, notes = _map_keys(raw, cfg)
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
    return LoadedCheckpoint(
        model=model, config=cfg, layout=layout, source=path, report=report, has_classifier=has_classifier,
        missing_keys=missing_by_design, extras=extras, epoch=epoch, arch=arch, class_names=class_names,
        metadata=metadata,
    )  # fmt: skip


def _parse_ours(path: Path, header: Mapping[str, Any]) -> tuple[CastConfig, CheckpointMetadata, str]:
    try:
        return parse_metadata(header)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from err


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
    if isinstance(inner, Mapping) and not _is_tensor_dict(obj):
        return inner, epoch, obj.get("arch") if isinstance(obj.get("arch"), str) else None
    return obj, None, None


def _moco_extras(state_dict: Mapping[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
    """The MoCo projector (online encoder's head) and predictor, kept for later MoCo fine-tuning."""
    extras: dict[str, dict[str, torch.Tensor]] = {}
    groups = (("projector", tuple(p + "head." for p in _MOCO_ENCODER_PREFIXES)), ("predictor", _MOCO_PREDICTOR_PREFIXES))
    for group, prefixes in groups:
        for key, value in state_dict.items():
            prefix = next((p for p in prefixes if key.startswith(p)), None)
            if prefix is not None:
                extras.setdefault(group, {})[key[len(prefix) :]] = value
    return extras


def _build_and_load(cfg: CastConfig, state: Mapping[str, Any], source: Path, inferred: Any) -> Cast:
    """Build the model and load strictly; every mismatch becomes one readable CheckpointError."""
    model = build_model(cfg)
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
        raise CheckpointError(f"{source} does not fit the {cfg.name} model: {'; '.join(problems)}.{_variant_hint(cfg, inferred)}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{source}: the weights do not fit the {cfg.name} model ({_first_line(err)}).") from err
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
            provenance=dataclasses.replace(
                given,
                epoch=given.epoch if given.epoch is not None else loaded.epoch,
                notes=f"{given.notes} {loaded.report}".strip(),  # what the source file was, in words
            ),
            class_names=loaded.class_names,
        )
    save_cast_checkpoint(destination, loaded.model, metadata=metadata, dtype=dtype, extras=loaded.extras if keep_extras else None)
    return loaded


# ---------------------------------------------------------------------------- ImageNet class names
def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in class-index order (cast/data/imagenet_classes.txt)."""
    text = resources.files("cast").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    names = text.splitlines()
    if len(names) != 1000:
        raise CheckpointError(f"cast/data/imagenet_classes.txt has {len(names)} lines, expected 1000")
    return names


def top_k_classes(class_logits: torch.Tensor, k: int = 5, names: list[str] | None = None) -> list[tuple[str, float]]:
    """The k most probable classes of ONE image: [(name, softmax probability)], best first.

    class_logits: (num_classes,) or (1, num_classes); names default to the ImageNet-1k names.
    """
    logits = torch.as_tensor(class_logits).detach().float()
    if logits.dim() == 2 and logits.shape[0] == 1:
        logits = logits[0]
    if logits.dim() != 1:
        raise ValueError(f"top_k_classes expects the logits of one image, (C,) or (1, C); got {tuple(logits.shape)}")
    names = imagenet_class_names() if names is None else list(names)
    if len(names) != logits.numel():
        raise ValueError(f"{logits.numel()} logits but {len(names)} class names")
    probs = logits.softmax(dim=-1)
    values, indices = probs.topk(min(k, probs.numel()))
    return [(names[int(i)], float(v)) for v, i in zip(values, indices)]


# ------------------------------------------------------------------------------------------ helpers
def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]


def _bytes(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} bytes"
