"""Fetching a published checkpoint by name from the Hugging Face Hub, and converting it once.

`fetch_pretrained(name)` returns our converted copy of a zoo entry, looking in order for
1. the converted copy `<converted_dir>/<name>.safetensors` (made on the first successful load; no network);
2. the raw file in the local Hugging Face cache (`hf_hub_download(..., local_files_only=True)`);
3. unless offline, a download with `hf_hub_download` (resumable; progress and cancellation by callback);
and converts the raw file once to a slim backbone-only safetensors file in our format. When the file
cannot be had it raises a CheckpointError that names the model and says how to get it: the library
never substitutes another model (falling back is the app's own, visible choice).

Metadata APIs (`model_info`, listings) are never called: they fail offline even when the file is cached.
Offline means `offline=True`, or `HF_HUB_OFFLINE` set. `HF_ENDPOINT` points the client at another Hub
(the tests serve one on 127.0.0.1).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from filelock import FileLock
from huggingface_hub import constants as hf_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.file_download import http_get, repo_folder_name
from huggingface_hub.utils import build_hf_headers
from tqdm.auto import tqdm

try:
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
    )
except ImportError:  # huggingface_hub < 0.24 kept them in utils only
    from huggingface_hub.utils import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
    )

from ..errors import CheckpointError
from .format import Provenance
from .loading import LoadedCheckpoint, convert_checkpoint, load_checkpoint
from .zoo import ZooEntry, zoo_entry

if TYPE_CHECKING:
    from ..model.vit import VitBaseline

_TRUTHY = {"1", "true", "yes", "on"}


class _UnreadableSource(CheckpointError):
    """The raw file itself cannot be loaded (as opposed to our copy not being writable)."""


class DownloadCancelled(CheckpointError):
    """The caller asked a download to stop; the partial file stays in the cache and a later call resumes it."""


@dataclass(frozen=True)
class DownloadProgress:
    """Bytes of one file fetched so far (resumed bytes included) and its size when the server said it."""

    name: str
    downloaded: int
    total: int | None

    @property
    def fraction(self) -> float | None:
        """0..1, or None while the size is unknown."""
        return None if not self.total else min(1.0, self.downloaded / self.total)


ProgressCallback = Callable[[DownloadProgress], None]


def _download_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError]
    # huggingface_hub 2.x speaks through the `httpx2` package; older releases through httpx or requests.
    for module, name in (("httpx", "HTTPError"), ("httpx2", "HTTPError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


DOWNLOAD_ERRORS = _download_errors()


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


ModelRef = str | ZooEntry  # a zoo name, or an entry of one's own (a mirror, a test file)


def _entry(ref: ModelRef) -> ZooEntry:
    return ref if isinstance(ref, ZooEntry) else zoo_entry(ref)


def converted_path(ref: ModelRef, converted_dir: str | Path | None = None) -> Path:
    """Where the converted copy of a zoo entry lives (whether or not it exists yet)."""
    return Path(converted_dir or default_converted_dir()) / f"{_entry(ref).name}.safetensors"


def local_status(ref: ModelRef, *, cache_dir: str | Path | None = None, converted_dir: str | Path | None = None) -> str | None:
    """"converted" / "cached" (raw file in the HF cache) / None, without any network access."""
    entry = _entry(ref)
    if _converted_copy(entry, converted_path(entry, converted_dir)) is not None:
        return "converted"
    return "cached" if _cached_raw(entry, cache_dir) is not None else None


def fetch_pretrained(
    ref: ModelRef,
    *,
    offline: bool | None = None,
    cache_dir: str | Path | None = None,
    converted_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """The converted copy of a zoo entry, downloading and converting it if needed (see the module doc)."""
    entry = _loadable(ref)
    name = entry.name
    converted = converted_path(entry, converted_dir)
    if _converted_copy(entry, converted) is not None:
        return converted
    converted.parent.mkdir(parents=True, exist_ok=True)
    # one conversion per file at a time, across threads and processes (the app, the CLI)
    with FileLock(str(converted.with_name(f".{converted.name}.lock"))):
        if _converted_copy(entry, converted) is not None:  # converted while we waited
            return converted
        raw = _cached_raw(entry, cache_dir)
        fresh = raw is None
        if raw is None:
            raw = _download(entry, offline, cache_dir, progress, should_stop)
        try:
            _convert(entry, raw, converted)
        except _UnreadableSource as err:
            if fresh:
                _discard(raw)  # a corrupt download is never left in the cache to be used again
                raise CheckpointError(f"The downloaded file of {name} is unusable and was removed: {err}") from err
            raise CheckpointError(f"The cached file of {name} is unusable: {err} Delete it and download it again "
                                  f"(`cast download {name}`).") from err
    return converted


def load_vit_pretrained(ref: ModelRef, **options) -> "VitBaseline":
    """Load a published ViT baseline by zoo name (fetching it first); CheckpointError if it cannot be had."""
    from .vit import load_vit_checkpoint

    entry = _loadable(ref)
    if entry.kind != "vit":
        raise CheckpointError(f"{entry.name} is not a ViT baseline")
    model = load_vit_checkpoint(fetch_pretrained(entry, **options))
    model.pretrained_cfg = model.pretrained_cfg.from_zoo(entry.name)
    return model


def load_pretrained(ref: ModelRef, **options) -> LoadedCheckpoint:
    """Load a published CAST checkpoint by zoo name (fetching it first); CheckpointError if it cannot be had."""
    entry = _loadable(ref)
    name = entry.name
    if entry.kind != "cast":
        raise CheckpointError(f"{name} is a {entry.kind} model, not CAST: load it with cast.create_model({name!r}, pretrained=True)")
    path = fetch_pretrained(entry, **options)
    loaded = load_checkpoint(path)
    loaded.report += f" Official file {entry.url_id}, converted once to {path} (backbone only)."
    loaded.model.pretrained_cfg = loaded.model.pretrained_cfg.from_zoo(name)
    return loaded


def _loadable(ref: ModelRef) -> ZooEntry:
    entry = _entry(ref)
    if not entry.loadable:
        raise CheckpointError(f"{entry.name} cannot be loaded: {entry.reason}.")
    return entry


def _converted_copy(entry: ZooEntry, converted: Path) -> Path | None:
    """Our converted copy, if present and made from this entry's file (its header says so)."""
    if not converted.is_file():
        return None
    try:
        header = _peek_header(converted)
    except CheckpointError as err:
        warnings.warn(f"ignoring the damaged converted copy {converted}: {err}", stacklevel=3)
        return None
    parent = ((header or {}).get("provenance") or {}).get("parent_checkpoint") or ""
    return converted if parent.partition("@")[0] == entry.url_id else None


def _peek_header(path: Path) -> dict | None:
    """Our JSON header of a safetensors file, read without loading the tensors."""
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            meta = handle.metadata() or {}
        return json.loads(meta["cast_explorer"]) if "cast_explorer" in meta else None
    except Exception as err:  # safetensors raises its own error types on damaged files
        raise CheckpointError(f"{path}: {err}") from err


def _cached_raw(entry: ZooEntry, cache_dir: str | Path | None) -> Path | None:
    try:
        return Path(hf_hub_download(entry.repo_id, entry.filename, cache_dir=_str(cache_dir), local_files_only=True))
    except DOWNLOAD_ERRORS:
        return None


def _download(entry: ZooEntry, offline: bool | None, cache_dir: str | Path | None,
              progress: ProgressCallback | None, should_stop: Callable[[], bool] | None) -> Path:
    hub_url = f"{hf_constants.ENDPOINT.rstrip('/')}/{entry.repo_id}"
    how = (f"To get it, run once with network access: `cast download {entry.name}` (files come from "
           f"{hub_url}, about {entry.expected_size / 1e6:.0f} MB).")
    reason = offline_reason(offline)
    if reason is not None:
        raise CheckpointError(f"The pretrained model {entry.name} is not available ({reason}, and "
                              f"{entry.filename} is not in the local Hugging Face cache). {how}")
    tqdm_class = _progress_class(entry.name, progress, should_stop)
    try:
        _download_blob(entry, cache_dir, tqdm_class)
        return Path(hf_hub_download(entry.repo_id, entry.filename, cache_dir=_str(cache_dir), tqdm_class=tqdm_class))
    except DownloadCancelled:
        raise
    except DOWNLOAD_ERRORS as err:
        raise CheckpointError(f"The pretrained model {entry.name} could not be downloaded ({describe_failure(err)}). "
                              f"{how}") from err


def _download_blob(entry: ZooEntry, cache_dir: str | Path | None, tqdm_class: type[tqdm]) -> None:
    """Fetch the file's blob into the HF cache through a partial file that survives a cancelled or broken
    transfer, so the next call resumes with a Range request (hf_hub_download deletes its own temporary
    file on any error). hf_hub_download then finds the blob and only links it into the snapshot."""
    metadata = get_hf_file_metadata(hf_hub_url(entry.repo_id, entry.filename))
    if metadata.etag is None or metadata.size is None:
        return  # not a plain file download (e.g. a server without ETag): leave it to hf_hub_download
    cache = Path(cache_dir or hf_constants.HF_HUB_CACHE)
    blobs = cache / repo_folder_name(repo_id=entry.repo_id, repo_type="model") / "blobs"
    blob = blobs / metadata.etag
    if blob.exists():
        return
    blobs.mkdir(parents=True, exist_ok=True)
    partial = blobs / f"{metadata.etag}.cast-partial"
    if partial.exists() and partial.stat().st_size > metadata.size:  # not this file's bytes: start over
        partial.unlink()
    with partial.open("ab") as handle:
        http_get(metadata.location, handle, resume_size=handle.tell(), headers=build_hf_headers(),
                 expected_size=metadata.size, tqdm_class=tqdm_class)
    if partial.stat().st_size != metadata.size:
        raise OSError(f"the download of {entry.filename} stopped at {partial.stat().st_size:,} of {metadata.size:,} bytes")
    partial.replace(blob)


def _progress_class(name: str, callback: ProgressCallback | None, should_stop: Callable[[], bool] | None) -> type[tqdm]:
    """A tqdm class for hf_hub_download that reports each chunk and can stop the transfer."""

    class Progress(tqdm):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.bytes_done = int(kwargs.get("initial") or 0)
            self._report()

        def update(self, n: float | None = 1) -> bool | None:
            self.bytes_done += int(n or 0)
            self._report()
            return super().update(n)

        def _report(self) -> None:
            if should_stop is not None and should_stop():
                raise DownloadCancelled(f"download of {name} cancelled; it resumes where it stopped next time")
            if callback is not None:
                callback(DownloadProgress(name, self.bytes_done, int(self.total) if self.total else None))

    return Progress


def _convert(entry: ZooEntry, raw: Path, converted: Path) -> None:
    """Write our slim copy of the raw file (atomically); a read-only cache is a warning, not a failure."""
    provenance = Provenance(
        data=entry.data,
        parent_checkpoint=entry.url_id + _commit_suffix(raw, entry),
        recipe=f"{entry.training} (official CAST release)",
        notes=f"zoo entry {entry.name}; reported: {entry.reported}",
    )
    try:
        if entry.kind == "vit":
            from .vit import convert_vit_checkpoint

            convert_vit_checkpoint(raw, converted, architecture=entry.architecture, provenance=provenance)
            return
        from ..model import get_config

        convert_checkpoint(raw, converted, config=get_config(entry.architecture), provenance=provenance)
    except OSError as err:  # our side (disk full, read-only folder): the raw file is fine and stays
        raise CheckpointError(f"could not write the converted copy {converted.name} ({err})") from err
    except CheckpointError as err:
        raise _UnreadableSource(str(err)) from err


def _commit_suffix(raw: Path, entry: ZooEntry) -> str:
    """'@<commit>' when the file sits in the HF cache layout snapshots/<commit>/<filename>."""
    depth = len(Path(entry.filename).parts)
    snapshot = raw.parents[depth - 1] if len(raw.parents) >= depth else None
    if snapshot is not None and snapshot.parent.name == "snapshots":
        return f"@{snapshot.name}"
    return ""


def _discard(raw: Path) -> None:
    """Remove a cached file (its snapshot link and the blob behind it)."""
    target = raw.resolve()
    for path in {raw, target}:
        try:
            path.unlink()
        except OSError:
            pass


def describe_failure(err: BaseException) -> str:
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
    names = {type(e).__name__ for e in _chain(err)}
    if any(word in n for n in names for word in ("Connect", "Timeout", "Network", "gaierror")):
        return f"no network connection: {detail}"
    return f"download failed: {detail}"


def _chain(err: BaseException) -> list[BaseException]:
    out, seen = [err], {id(err)}
    while (nxt := out[-1].__cause__ or out[-1].__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        out.append(nxt)
    return out


def _str(path: str | Path | None) -> str | None:
    return None if path is None else str(path)
