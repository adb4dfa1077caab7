"""The on-disk collection format (README "Collection folders"): paths, the manifest, the settings that must
match for images to share a collection, and the commit log every run appends to.

    OUT/collection.json                   manifest: format version, settings (+ their hash), counts, level names
    OUT/index.csv                         every input of every run: image, status (ok/failed), output, message
    OUT/<stem>/                           each image's own export (cast.export.one_image), or only hierarchy.json
    OUT/collection/items.jsonl            one line per segmented image, in index order (ItemRecord)
    OUT/collection/level{l}.segments.npy  one row per present segment (tables.SEGMENT_DTYPE + norms), by image
    OUT/collection/level{l}.embeddings.npy  (N_l, C) float32, the same rows: open with np.load(mmap_mode="r")
    OUT/collection/level{l}.means.npy     (n_images, C) float32 mean segment embedding of each image
    OUT/collection/images/<stem>.png      the picture each hierarchy describes; <stem>.npz its staged rows
    OUT/collection/runs/run{n}.rank{r}.jsonl  the commit log: one line per finished image, written last
    OUT/collection/segments_coco.json, fiftyone/   (full exports) every segment of every level; FiftyOne layout
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..errors import CastError
from ..segmenter import Segmenter
from .tables import SEGMENT_DTYPE

FORMAT = "cast-explorer-collection/1"
MANIFEST = "collection.json"
INDEX_CSV = "index.csv"
DATA_DIR = "collection"
EXPORTS = ("full", "compact")  # compact: only <stem>/hierarchy.json per image, no overlays, COCO or FiftyOne
ROW_DTYPE = np.dtype(SEGMENT_DTYPE.descr + [("norm", "<f4"), ("centred_norm", "<f4")])


class CollectionError(CastError):
    """A folder that is not a collection, a damaged one, or settings that do not match it."""


@dataclass(frozen=True)
class CollectionSettings:
    """What makes results comparable: the model (weights fingerprint), superpixels, input and exports.

    Two runs may share a collection only when these are equal (`digest`)."""

    model: dict[str, Any]  # variant, weights_sha256 (identity); checkpoint (for people, not compared)
    superpixels: dict[str, Any] | None
    input: dict[str, Any]
    max_output_pixels: int
    kmeans_seed: int | None
    stability: bool
    exports: str

    @classmethod
    def of(cls, segmenter: Segmenter, *, stability: bool = False, exports: str = "full") -> "CollectionSettings":
        if exports not in EXPORTS:
            raise ValueError(f"exports must be one of {EXPORTS}, got {exports!r}")
        model = {"variant": segmenter.model.config.name, "weights_sha256": weights_fingerprint(segmenter.model),
                 "checkpoint": segmenter.pretrained_cfg.checkpoint}
        superpixels = None if segmenter.superpixel_config is None else segmenter.superpixel_config.to_dict()
        return cls(model, superpixels, {"size": segmenter.input_config.size, "mode": segmenter.input_config.mode},
                   int(segmenter.max_output_pixels), segmenter.kmeans_seed if segmenter.is_vit else None, bool(stability),
                   exports)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CollectionSettings":
        return cls(**data)

    def identity(self) -> dict[str, Any]:
        """The compared part: everything but the checkpoint's name or path."""
        out = self.to_dict()
        out["model"] = {k: v for k, v in self.model.items() if k != "checkpoint"}
        return out

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> str:
        sp = self.superpixels
        superpixels = "none" if sp is None else f"{sp.get('method')} {sp.get('num_superpixels')}"
        return (f"model {self.model['variant']} ({self.model.get('checkpoint') or 'weights'}, weights "
                f"{self.model['weights_sha256'][:12]}), superpixels {superpixels}, input {self.input['size']} "
                f"{self.input['mode']}, stability {'on' if self.stability else 'off'}, {self.exports} exports")

    def differences(self, other: "CollectionSettings") -> list[str]:
        """What differs, in words: `other` is the folder's (here), self this run's (empty: they may share)."""
        mine, theirs = self.identity(), other.identity()
        out = []
        for key in mine:
            a, b = theirs[key], mine[key]
            if isinstance(a, dict) and isinstance(b, dict):
                out += [f"{key}.{k}: {_short(a.get(k))} here, {_short(b.get(k))} in this run"
                        for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            elif a != b:
                out.append(f"{key}: {_short(a)} here, {_short(b)} in this run")
        return out


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 16 else text[:12] + "…"


def weights_fingerprint(model: Any) -> str:
    """sha256 of the model's parameters and buffers (names, shapes, bytes): the model's identity."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        array = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(array.shape)}:{array.dtype}".encode())
        digest.update(array.reshape(-1).view(torch.uint8).numpy().tobytes() if array.numel() else b"")
    return digest.hexdigest()


def file_sha256(source: Any) -> str:
    """Content hash of an input: a file's bytes, bytes, or an array's bytes and shape."""
    digest = hashlib.sha256()
    if isinstance(source, (str, Path)):
        with open(source, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    elif isinstance(source, (bytes, bytearray)):
        digest.update(source)
    else:
        array = np.ascontiguousarray(np.asarray(source))
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class ItemRecord:
    """One line of the commit log (and of items.jsonl): an input and what became of it."""

    image_id: int  # unique in the collection; COCO image id; order of the index
    name: str
    stem: str
    source: str
    sha256: str
    status: str  # "ok" or "failed"
    message: str = ""
    width: int = 0
    height: int = 0
    level_names: tuple[str, ...] = ()
    segments: tuple[int, ...] = ()  # present segments per level

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, line: str) -> "ItemRecord":
        data = json.loads(line)
        data["level_names"], data["segments"] = tuple(data["level_names"]), tuple(data["segments"])
        return cls(**data)


@dataclass
class Manifest:
    """collection.json: what the folder is and what made it."""

    settings: CollectionSettings
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    updated: str = ""
    complete: bool = False  # the level files and items.jsonl match the commit log
    images: int = 0
    failed: int = 0
    level_names: list[str] = field(default_factory=list)
    embedding_dim: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "settings": self.settings.to_dict(), "settings_sha256": self.settings.digest(),
                "created": self.created, "updated": self.updated, "complete": self.complete, "images": self.images,
                "failed": self.failed, "level_names": self.level_names, "embedding_dim": self.embedding_dim}

    def write(self, folder: Path) -> None:
        write_atomic(Path(folder) / MANIFEST, json.dumps(self.to_dict(), indent=1) + "\n")


def read_manifest(folder: Path) -> Manifest:
    """The manifest of a collection folder, or a CollectionError saying what the folder is instead."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise CollectionError(f"{folder} does not exist or is not a folder")
    if not path.is_file():
        if (folder / DATA_DIR / "items.jsonl").is_file():
            raise CollectionError(f"{folder} was exported by an older CAST Explorer (no {MANIFEST}): segment the "
                                  "images again into a new folder to get a collection that reopens")
        raise CollectionError(f"{folder} is not a CAST Explorer collection (no {MANIFEST}): give the --out folder "
                              "of `cast segment`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise CollectionError(f"{path} is damaged: it holds JSON {type(data).__name__}, not a collection manifest")
        if data.get("format") != FORMAT:
            raise CollectionError(f"{path} has format {data.get('format')!r}; this CAST Explorer reads {FORMAT}")
        settings = CollectionSettings.from_dict(data["settings"])
        return Manifest(settings, data["created"], data.get("updated", ""), bool(data.get("complete")),
                        int(data.get("images", 0)), int(data.get("failed", 0)), list(data.get("level_names", [])),
                        int(data.get("embedding_dim", 0)))
    except CollectionError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CollectionError(f"{path} is damaged ({type(err).__name__}: {err}); nothing was changed. Segment "
                              "into a new folder, or restore the file") from err


def read_commit_log(folder: Path, run: int | None = None) -> Iterator[ItemRecord]:
    """Every committed record of every run (or of one), oldest run first (a killed run's torn last line is
    ignored)."""
    pattern = "run*.rank*.jsonl" if run is None else f"run{run:04d}.rank*.jsonl"
    for path in sorted((Path(folder) / DATA_DIR / "runs").glob(pattern)):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.endswith("\n"):
                    try:
                        yield ItemRecord.from_json(line)
                    except (ValueError, KeyError, TypeError):
                        continue


def write_atomic(path: Path, text: str) -> None:
    """Write a text file so that readers see the old or the new content, never half of it."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial.npy")
    np.save(partial, array)
    os.replace(partial, path)
