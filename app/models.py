"""Which models the app offers, and an explicit LRU cache of the loaded ones (shared by sessions)."""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cast.checkpoints import LoadedCheckpoint, imagenet_class_names, load_checkpoint, top_k_classes
from cast.errors import CheckpointError
from cast.model import Cast, CastOutput, build_model
from cast.zoo import ZOO, ZooEntry, load_model

UNTRAINED_KEY = "untrained:cast_small"
BUNDLED_NAME = "cast_explorer_default.safetensors"


@dataclass(frozen=True)
class ModelHandle:
    """A loaded model plus the words the UI shows about it (what it is, what it was trained on)."""

    key: str
    model: Cast
    summary: str
    has_classifier: bool = False
    notice: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def top_classes(self, output: CastOutput, k: int = 5) -> list[tuple[str, float]]:
        """ImageNet top-k for classifier checkpoints; empty for embedding-only (MoCo) models."""
        if not self.has_classifier or output.class_logits is None:
            return []
        return top_k_classes(output.class_logits[0], k=k, names=imagenet_class_names())


def _summary(loaded: LoadedCheckpoint, label: str, official: ZooEntry | None = None) -> str:
    """What the model is and what it was trained on, in one line (the app's honesty line)."""
    if official is not None:
        trained = f"official weights: {official.training} on {official.data} ({official.reported})"
    elif loaded.metadata is not None and loaded.trained:
        prov = loaded.metadata.provenance
        trained = f"trained on {prov.data}, {prov.steps} steps, from {prov.parent_checkpoint} — {prov.recipe}"
    elif loaded.metadata is not None:
        trained = "UNTRAINED placeholder weights"
    else:
        known = ", ".join(x for x in (f"arch {loaded.arch}" if loaded.arch else "",
                                      f"epoch {loaded.epoch}" if loaded.epoch else "") if x)
        trained = "training data not recorded in the file" + (f" ({known})" if known else "")
    return f"{label} — {loaded.describe()} — {trained}"


def warm_up(model: Cast) -> None:
    """One forward pass on a synthetic image, so that a user's first image is not the slow one."""
    size = model.config.img_size
    grid = torch.arange(size) // 16
    labels = (grid[:, None] * (size // 16) + grid[None, :])[None]
    with torch.inference_mode():
        model(torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)), labels)


class ModelCatalog:
    """Model choices (bundled, fine-tuned, official zoo, untrained) and an LRU of loaded models."""

    def __init__(self, checkpoints_dir: Path, cache_size: int = 3) -> None:
        self.checkpoints_dir = Path(checkpoints_dir)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, ModelHandle] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def bundled_path(self) -> Path:
        return self.checkpoints_dir / BUNDLED_NAME

    def local_checkpoints(self) -> list[Path]:
        """Our-format checkpoints in checkpoints/: the bundled one first, then fine-tuned ones."""
        if not self.checkpoints_dir.is_dir():
            return []
        files = sorted(self.checkpoints_dir.glob("*.safetensors"))
        return sorted(files, key=lambda p: p.name != BUNDLED_NAME)

    def choices(self) -> list[tuple[str, str]]:
        """(label, key) pairs for the model dropdown."""
        items = [(("bundled: " if p.name == BUNDLED_NAME else "local: ") + p.stem, f"file:{p}") for p in self.local_checkpoints()]
        items += [(f"official: {name} ({e.training}, {e.data})", f"zoo:{name}") for name, e in ZOO.items() if e.loadable]
        items.append(("untrained cast_small (random weights — placeholder)", UNTRAINED_KEY))
        return items

    def default_key(self) -> str:
        return f"file:{self.bundled_path}" if self.bundled_path.is_file() else UNTRAINED_KEY

    def describe(self, key: str) -> str:
        """A one-line description without loading anything."""
        labels = dict((k, label) for label, k in self.choices())
        return labels.get(key, key)

    def load(self, key: str) -> ModelHandle:
        """Load (or fetch from the cache) the model behind a dropdown key."""
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        handle = self._load_uncached(key)
        warm_up(handle.model)
        with self._lock:
            self._cache[key] = handle
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return handle

    def load_file(self, path: str | Path) -> ModelHandle:
        """An uploaded checkpoint, cached by content hash."""
        path = Path(path)
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        except OSError as err:
            raise CheckpointError(f"cannot read checkpoint {path.name}: {err}") from err
        return self.load(f"upload:{digest}:{path}")

    def _load_uncached(self, key: str) -> ModelHandle:
        kind, _, rest = key.partition(":")
        if key == UNTRAINED_KEY:
            with torch.random.fork_rng(devices=[]):  # a fixed placeholder, without touching the global RNG
                torch.manual_seed(0)
                model = build_model("cast_small")
            summary = "UNTRAINED cast_small (random weights, seed 0) — a placeholder: its hierarchy reflects colour and position only, nothing learned"
            return ModelHandle(key, model, summary, provenance={"checkpoint": "none (random init)", "trained": False})
        official = None
        if kind == "zoo":
            loaded = load_model(rest)
            official = None if loaded.notice else ZOO[rest]  # a fallback is the bundled model, not this entry
            label = rest if official else f"bundled model (fallback for {rest})"
        elif kind == "upload":
            path = Path(rest.partition(":")[2])
            loaded = load_checkpoint(path)
            label = f"uploaded {path.name}"
        elif kind == "file":
            loaded = load_checkpoint(Path(rest))
            label = Path(rest).name
        else:
            raise CheckpointError(f"unknown model choice {key!r}")
        return ModelHandle(
            key=key,
            model=loaded.model.eval(),
            summary=_summary(loaded, label, official),
            has_classifier=loaded.has_classifier,
            notice=getattr(loaded, "notice", "") or "",
            provenance={"checkpoint": str(loaded.source), "layout": loaded.layout, "checkpoint_report": loaded.report},
        )
