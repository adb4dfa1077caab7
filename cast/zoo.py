"""Every published CAST checkpoint (spec §5, Hub repo `twke/CAST`), and loading one by name.

`load_model(name)` looks, in order, for
1. our converted copy `<converted_dir>/<name>.safetensors` (made on the first successful load; no network);
2. the raw file in the local Hugging Face cache (`hf_hub_download(..., local_files_only=True)`);
3. unless offline, a download with `hf_hub_download` (huggingface_hub shows its own progress bar);
and converts the raw file once to a slim backbone-only safetensors file in our format.
If none of that works (offline, no network, download error) it FALLS BACK to the bundled checkpoint
and says so in one line (`warnings.warn` and `LoadedCheckpoint.notice`). Metadata APIs
(`model_info`, listings) are never called: they fail offline even when the file is cached.

Offline means `offline=True`, or `HF_HUB_OFFLINE` set (read at call time, and huggingface_hub's own
import-time constant). Without network and without HF_HUB_OFFLINE, huggingface_hub retries for about
25 s before giving up; set HF_HUB_OFFLINE=1 to skip that wait.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download
try:
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled
except ImportError:  # huggingface_hub < 0.24 kept them in utils only
    from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

from .checkpoints import LoadedCheckpoint, convert_checkpoint, load_checkpoint
from .ckpt_format import Provenance
from .errors import CheckpointError
from .model import get_config

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_CHECKPOINT = REPO_ROOT / "checkpoints" / "cast_explorer_default.safetensors"
DEFAULT_BUNDLED = BUNDLED_CHECKPOINT
HUB_REPO = "twke/CAST"
DEFAULT = "cast_small_moco_in1k"
CAST_LICENCE = "MIT (twke18/CAST README and LICENSE); the Hub repo twke/CAST states no licence we could check"


class ZooFallbackWarning(UserWarning):
    """Raised via warnings.warn when load_model falls back to the bundled checkpoint."""


@dataclass(frozen=True)
class ZooEntry:
    """One published checkpoint file. Sizes are estimates from parameter counts, not measured."""

    name: str
    repo_id: str
    filename: str
    variant: str | None  # our config name; None for files that are not CAST models
    training: str  # "MoCo-v3" / "DeiT"
    data: str  # "ImageNet-1K" / "COCO train2017"
    reported: str  # the result the official README reports for it
    licence: str = CAST_LICENCE
    expected_size: int = 0  # bytes, approximate
    size_is_estimate: bool = True
    loadable: bool = True
    reason: str = ""  # why it cannot be loaded into CAST, when loadable is False
    notes: str = ""


_MB = 1_000_000
# expected_size: 4 bytes x every tensor + 8 bytes x trainable ones (AdamW moments), from the parameter
# counts of the parity manifests; the ViT rows from the vit_conv_* shapes. Estimates, unconfirmed.
_ENTRIES = (
    ZooEntry("vit_small_moco_in1k", HUB_REPO, "snapshots/moco/imagenet1k/vit_small/checkpoint_0099.pth.tar",
             None, "MoCo-v3", "ImageNet-1K", "linear probe 67.9 % (README)", expected_size=660 * _MB,
             loadable=False, reason="MoCo-v3 ViT baseline (vit_conv_small, patch 16): not a CAST model; listed "
             "for ViT-vs-CAST comparisons only", notes="100 epochs"),
    ZooEntry("cast_small_moco_in1k", HUB_REPO, "snapshots/moco/imagenet1k/cast_small/checkpoint_0099.pth.tar",
             "cast_small", "MoCo-v3", "ImageNet-1K", "linear probe 68.1 % (README)", expected_size=767 * _MB,
             notes="100 epochs; no classifier (embeddings and hierarchies only)"),
    ZooEntry("cast_small_deep_moco_in1k", HUB_REPO, "snapshots/moco/imagenet1k/cast_small_deep/checkpoint_0099.pth.tar",
             "cast_small_deep", "MoCo-v3", "ImageNet-1K", "linear probe 69.1 % (README)", expected_size=880 * _MB,
             notes="100 epochs; no classifier"),
    ZooEntry("vit_base_moco_in1k", HUB_REPO, "snapshots/moco/imagenet1k/vit_base/checkpoint_0099.pth.tar",
             None, "MoCo-v3", "ImageNet-1K", "linear probe 72.5 % (README)", expected_size=1600 * _MB,
             loadable=False, reason="MoCo-v3 ViT baseline (vit_conv_base, patch 16): not a CAST model; listed "
             "for ViT-vs-CAST comparisons only", notes="100 epochs"),
    ZooEntry("cast_base_moco_in1k", HUB_REPO, "snapshots/moco/imagenet1k/cast_base/checkpoint_0099.pth.tar",
             "cast_base", "MoCo-v3", "ImageNet-1K", "linear probe 72.4 % (README)", expected_size=2076 * _MB,
             notes="100 epochs; no classifier; the model of the official hierarchy and PartImageNet notebooks"),
    ZooEntry("cast_small_moco_coco_ep150", HUB_REPO, "snapshots/moco/coco/cast_small/checkpoint_0149.pth.tar",
             "cast_seg_small_pretrain", "MoCo-v3", "COCO train2017", "VOC unsupervised mIoU 38.4 (README)",
             expected_size=791 * _MB, notes="epoch 150 of 400; cast_seg.py layout (per-stage block numbering)"),
    ZooEntry("cast_small_moco_coco", HUB_REPO, "snapshots/moco/coco/cast_small/checkpoint_0399.pth.tar",
             "cast_seg_small_pretrain", "MoCo-v3", "COCO train2017",
             "VOC mIoU 67.6 after fine-tuning (README; the fine-tuned weights are not published)",
             expected_size=791 * _MB, notes="final epoch 400; cast_seg.py layout"),
    ZooEntry("cast_small_deit_in1k", HUB_REPO, "snapshots/deit/imagenet1k/cast_small/best_checkpoint.pth",
             "cast_small_deit", "DeiT", "ImageNet-1K",
             "ImageNet-1K top-1 80.4 %; ADE20K 43.1 / Pascal Context 49.1 mIoU after Segmenter fine-tuning (README)",
             expected_size=439 * _MB, notes="the only file with a 1000-class classifier (ImageNet top-5 available)"),
    ZooEntry("cast_snapshots_zip", HUB_REPO, "snapshots.zip", None, "MoCo-v3 / DeiT", "various",
             "archive of most trained weights (contents not listed anywhere we could read)", expected_size=0,
             loadable=False, reason="a zip archive, not a checkpoint: extract it and load a file by path"),
)  # fmt: skip
ZOO: Mapping[str, ZooEntry] = MappingProxyType({e.name: e for e in _ENTRIES})
_TRUTHY = {"1", "true", "yes", "on"}


def _download_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError]
    for module, name in (("httpx", "HTTPError"), ("httpx2", "HTTPError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


DOWNLOAD_ERRORS = _download_errors()


class _Unavailable(Exception):
    """Internal: the raw file could not be obtained; the message says why, in a few words."""


def default_converted_dir() -> Path:
    """Where converted copies live: $CAST_EXPLORER_CACHE/converted, else ~/.cache/cast_explorer/converted."""
    root = os.environ.get("CAST_EXPLORER_CACHE")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cast_explorer"
    return Path(root) / "converted"


def offline_reason(offline: bool | None = None) -> str | None:
    """Why we are offline ("offline: HF_HUB_OFFLINE=1", ...), or None when downloads are allowed."""
    if offline is not None:
        return "offline=True" if offline else None
    value = os.environ.get("HF_HUB_OFFLINE", "")
    if value.strip().lower() in _TRUTHY:
        return f"offline: HF_HUB_OFFLINE={value}"
    if hf_constants.HF_HUB_OFFLINE:
        return "offline: HF_HUB_OFFLINE is set"
    return None


def load_model(
    name_or_path: str | Path = DEFAULT,
    *,
    offline: bool | None = None,
    cache_dir: str | Path | None = None,
    bundled: str | Path | None = DEFAULT_BUNDLED,
    converted_dir: str | Path | None = None,
    zoo: Mapping[str, ZooEntry] = ZOO,
) -> LoadedCheckpoint:
    """Load a zoo checkpoint by name (see the module docstring) or any checkpoint file by path."""
    key = str(name_or_path)
    if key not in zoo:
        if isinstance(name_or_path, Path) or Path(key).exists() or Path(key).suffix or os.sep in key:
            return load_checkpoint(name_or_path)
        raise CheckpointError(f"unknown model {key!r}: not a file and not one of {', '.join(zoo)}")
    entry = zoo[key]
    if not entry.loadable:
        raise CheckpointError(f"{entry.name} cannot be loaded into CAST: {entry.reason}.")
    converted = _converted_path(entry, converted_dir)
    cached = _load_converted(entry, converted)
    if cached is not None:
        return cached
    try:
        raw = _fetch_raw(entry, offline, cache_dir)
    except _Unavailable as why:
        return _fall_back(entry.name, str(why), bundled)
    return _convert_once(entry, raw, converted)


def download(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    converted_dir: str | Path | None = None,
    zoo: Mapping[str, ZooEntry] = ZOO,
) -> Path:
    """Fetch a zoo checkpoint (cache first, then network) and convert it; returns the converted file."""
    if name not in zoo:
        raise CheckpointError(f"unknown model {name!r}; known: {', '.join(zoo)}")
    entry = zoo[name]
    if not entry.loadable:
        raise CheckpointError(f"{entry.name} cannot be loaded into CAST: {entry.reason}.")
    converted = _converted_path(entry, converted_dir)
    try:
        raw = _fetch_raw(entry, None, cache_dir)
    except _Unavailable as why:
        raise CheckpointError(f"Could not download {name} from the Hugging Face Hub ({why}).") from None
    _convert_once(entry, raw, converted)
    if not converted.is_file():
        raise CheckpointError(f"downloaded {raw} but could not write the converted copy {converted}")
    return converted


def _converted_path(entry: ZooEntry, converted_dir: str | Path | None) -> Path:
    return Path(converted_dir or default_converted_dir()) / f"{entry.name}.safetensors"


def _parent_id(entry: ZooEntry) -> str:
    return f"hf://{entry.repo_id}/{entry.filename}"


def _load_converted(entry: ZooEntry, converted: Path) -> LoadedCheckpoint | None:
    """Our converted copy, if present, intact and made from this entry's file; else None."""
    if not converted.is_file():
        return None
    try:
        loaded = load_checkpoint(converted)
    except CheckpointError as err:
        warnings.warn(f"ignoring the damaged converted copy {converted}: {err}", ZooFallbackWarning, stacklevel=3)
        return None
    parent = loaded.metadata.provenance.parent_checkpoint if loaded.metadata else None
    if loaded.layout != "ours" or (parent or "").partition("@")[0] != _parent_id(entry):
        return None
    return loaded


def _fetch_raw(entry: ZooEntry, offline: bool | None, cache_dir: str | Path | None) -> Path:
    """The raw file: local HF cache first (no network), then a download unless offline."""
    cache = str(cache_dir) if cache_dir is not None else None
    try:
        return Path(hf_hub_download(entry.repo_id, entry.filename, cache_dir=cache, local_files_only=True))
    except DOWNLOAD_ERRORS:
        pass
    reason = offline_reason(offline)
    if reason is not None:
        raise _Unavailable(f"{reason}, and the file is not in the local Hugging Face cache")
    try:
        return Path(hf_hub_download(entry.repo_id, entry.filename, cache_dir=cache))
    except DOWNLOAD_ERRORS as err:
        raise _Unavailable(_describe_failure(err)) from err


def _describe_failure(err: BaseException) -> str:
    """A few words on why a download failed, from the innermost error of the chain."""
    root, seen = err, {id(err)}
    while (nxt := root.__cause__ or root.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        root = nxt
    text = (str(root).strip().splitlines() or [""])[0]
    text = text if len(text) <= 80 else text[:77].rsplit(" ", 1)[0] + "..."
    detail = f"{type(root).__name__}: {text}" if text else type(root).__name__
    response = getattr(err, "response", None)
    if isinstance(err, HfHubHTTPError) and response is not None:
        return f"the Hub answered HTTP {response.status_code}"
    if any(word in type(root).__name__ for word in ("Connect", "Timeout", "Network")) or isinstance(root, OSError):
        return f"no network connection: {detail}"
    return f"download failed: {detail}"


def _convert_once(entry: ZooEntry, raw: Path, converted: Path) -> LoadedCheckpoint:
    """Load the raw file as the entry's variant and write our slim copy; the copy is best-effort."""
    provenance = Provenance(
        data=entry.data,
        parent_checkpoint=_parent_id(entry) + _commit_suffix(raw, entry),
        recipe=f"{entry.training} (official CAST release)",
        notes=f"zoo entry {entry.name}; reported: {entry.reported}",
    )
    try:
        loaded = convert_checkpoint(raw, converted, config=get_config(entry.variant), provenance=provenance)
    except OSError as err:  # read-only cache folder etc.: still give the model
        loaded = load_checkpoint(raw, config=get_config(entry.variant))
        warnings.warn(f"could not write the converted copy {converted} ({err}); it will be converted again next time",
                      ZooFallbackWarning, stacklevel=3)
        return loaded
    loaded.report += f" Converted once to {converted} (backbone only); later loads read that file."
    return loaded


def _commit_suffix(raw: Path, entry: ZooEntry) -> str:
    """'@<commit>' when the file sits in the HF cache layout snapshots/<commit>/<filename>."""
    depth = len(Path(entry.filename).parts)
    snapshot = raw.parents[depth - 1] if len(raw.parents) >= depth else None
    if snapshot is not None and snapshot.parent.name == "snapshots":
        return f"@{snapshot.name}"
    return ""


def _fall_back(name: str, why: str, bundled: str | Path | None) -> LoadedCheckpoint:
    """Load the bundled checkpoint with a one-line notice, or say that it is missing too."""
    hint = f"To get the official weights, run once with network access: python -m cast download {name}"
    if bundled is None or not Path(bundled).is_file():
        shown = _display(bundled) if bundled is not None else "(none configured)"
        raise CheckpointError(
            f"Could not download {name} from the Hugging Face Hub ({why}), and the bundled checkpoint {shown} "
            f"is missing too. {hint}"
        )
    loaded = load_checkpoint(bundled)
    untrained = "" if loaded.trained else " (an UNTRAINED placeholder: its hierarchies reflect no learning)"
    notice = (
        f"Could not download {name} from the Hugging Face Hub ({why}); using the bundled checkpoint "
        f"{_display(bundled)}{untrained} instead. {hint}"
    )
    warnings.warn(notice, ZooFallbackWarning, stacklevel=3)
    return replace(loaded, notice=notice)


def _display(path: str | Path) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
