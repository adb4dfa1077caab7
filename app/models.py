"""Which models the app offers, and an explicit LRU cache of the loaded ones (shared by sessions).

Keys of the model picker name no server path: `default`, `zoo:<name>` (a published checkpoint),
`file:<file name>` (the bundled checkpoint, or one in the checkpoints folder: fine-tunes the host put
there), `job:<id>` (a fine-tune of the asking session), `upload:<digest>:<path>` (an uploaded checkpoint,
never shown), and the untrained placeholder. Falling back from
an official model that cannot be had to the bundled one is this module's explicit choice, shown to the
user as a notice; the library itself never substitutes a model.
"""
from __future__ import annotations

import hashlib
import io
import logging
import threading
from collections import OrderedDict
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image
from torch import nn

from cast.api import create_model, load_model
from cast.errors import CheckpointError
from cast.model import CastOutput, VitBaseline
from cast.segmenter import Segmenter
from cast.weights import imagenet_class_names, top_k_classes
from cast.weights.bundled import BUNDLED_MODEL, BUNDLED_NAME, bundled_checkpoint
from cast.weights.defaults import choose_default_model
from cast.weights.hub import offline_reason
from cast.weights.pretrained_cfg import pretrained_cfg_of
from cast.weights.zoo import DEFAULT_PREFERENCE, ZOO, ZooEntry

from .downloads import DownloadManager
from .notices import redact_paths

log = logging.getLogger(__name__)

UNTRAINED_KEY = "untrained:cast_small"
DEFAULT_KEY = "default"  # whatever the default is when the request arrives (API clients that name no model)


@dataclass(frozen=True)
class ModelHandle:
    """A loaded model plus the words the UI shows about it (what it is, what it was trained on)."""

    key: str
    model: nn.Module
    summary: str
    has_classifier: bool = False
    notice: str = ""

    @property
    def is_vit(self) -> bool:
        return isinstance(self.model, VitBaseline)

    def top_classes(self, output: Any, k: int = 5) -> list[tuple[str, float]]:
        """ImageNet top-k for classifier checkpoints; empty for embedding-only (MoCo) models."""
        if not self.has_classifier or not isinstance(output, CastOutput) or output.class_logits is None:
            return []
        names = list(pretrained_cfg_of(self.model).class_names or imagenet_class_names())
        return top_k_classes(output.class_logits[0], k=k, names=names)


def describe_model(model: nn.Module, label: str, official: ZooEntry | None = None) -> str:
    """What the model is and what it was trained on, in one line (the app's honesty line)."""
    cfg = pretrained_cfg_of(model)
    arch = model.config.name
    if official is not None:
        trained = f"official weights: {official.training} on {official.data} ({official.reported})"
    elif cfg.trained is False:
        trained = "UNTRAINED placeholder weights"
    elif cfg.data:  # file names only: a checkpoint records the paths of the machine that made it
        parent = cfg.parent_checkpoint or ""
        origin = f", from {parent if parent.startswith('hf://') else Path(parent).name}" if parent else ""
        trained = f"trained on {redact_paths(cfg.data)}{origin}"
    else:
        trained = "training data not recorded in the file"
    kind = "ViT baseline, hierarchy by k-means of its patch features" if isinstance(model, VitBaseline) else "CAST"
    head = f"{model.config.num_classes}-class classifier" if cfg.has_classifier else "no classifier"
    return f"{label} — {arch} ({kind}, {head}) — {trained}"


def warm_up(model: nn.Module) -> None:
    """Run the whole path of a user's first image once, so that it is not the slow one.

    Decoding a JPEG, SEEDS (whose first call pays OpenCV's set-up), the forward pass, the hierarchy, a
    picture, both tree figures and a click: each is much slower the first time in a process."""
    from skimage import data

    from .session import ExplorerSession

    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, format="JPEG", quality=90)
    result = Segmenter(model).run_detailed(buffer.getvalue(), name="warm-up")
    session = ExplorerSession.create(result, "warm-up").with_view(level=2)
    session.picture()
    height, width = session.display.shape
    clicked = session.select_at(width // 2, height // 2)
    clicked.picture()
    for figure in clicked.tree_figures():
        figure.to_json()


class ModelCatalog:
    """Model choices (bundled, fine-tuned, official zoo, untrained), the default model, and an LRU of loaded models.

    The default follows cast.weights.defaults (CAST_DEFAULT_MODEL, else the best official checkpoint on this
    machine, else the bundled one). When the official model it wants is not local and downloads are allowed,
    the app serves the bundled model at once and fetches the official one in the background; sessions
    started after it is ready get it (`default_key` is asked at every page load).
    """

    def __init__(self, checkpoints_dir: Path, cache_size: int = 3, bundled: Path | None = None,
                 downloads: DownloadManager | None = None,
                 job_results: Callable[[str, str | None], Path] | None = None,
                 extra_dirs: tuple[Path, ...] = ()) -> None:
        self.checkpoints_dir = Path(checkpoints_dir)
        # checkpoints_dir first, then the host's extra model folders (CAST_MODEL_DIRS / --model-dir)
        self.model_dirs = (self.checkpoints_dir, *(Path(d) for d in extra_dirs))
        self.cache_size = cache_size
        self.bundled_path = Path(bundled) if bundled is not None else bundled_checkpoint()
        self.downloads = downloads or DownloadManager()
        self._job_results = job_results  # (job id, owner) -> the job's model file; raises JobError for others
        self._cache: OrderedDict[str, ModelHandle] = OrderedDict()
        self._lock = threading.Lock()
        self._initial_key = self.bundled_key()
        self._wanted: str | None = None  # the official default being fetched in the background
        self._reason = "the bundled model"

    def choose_default(self, background_download: bool = True) -> str:
        """Decide the default model now (never waiting for a download); returns its key."""
        choice = choose_default_model()
        self._reason = choice.reason
        if choice.is_official and self.downloads.is_local(choice.spec):
            self._initial_key = f"zoo:{choice.spec}"
        elif choice.is_official:
            self._wanted = choice.spec  # named by CAST_DEFAULT_MODEL but not here yet
        elif choice.spec == BUNDLED_MODEL:  # named on purpose (--model / CAST_DEFAULT_MODEL): no switching
            self._initial_key = self.bundled_key()
        elif Path(choice.spec) == self.bundled_path:
            self._wanted = DEFAULT_PREFERENCE[0]  # nothing official here: fetch the preferred one if the Hub answers
        else:
            self._initial_key = f"path:{choice.spec}"  # CAST_DEFAULT_MODEL names a file: the host's own path
        if self._wanted is not None and background_download and offline_reason() is None:
            self.downloads.start(self._wanted)
        return self.default_key()

    def default_key(self) -> str:
        """The model new sessions start on: the fetched official model once it is ready, else the initial one."""
        if self._wanted is not None:
            state = self.downloads.state(self._wanted)
            if state is not None and state.status == "ready":
                return f"zoo:{self._wanted}"
        return self._initial_key

    def default_status(self) -> str:
        """Why the default is what it is, and how the background download goes (one line, may be empty)."""
        key = self.default_key()
        if key.startswith("zoo:") and (self._wanted is None or key == f"zoo:{self._wanted}"):
            return f"default model {key[4:]}: {self._reason if self._wanted is None else 'official weights, downloaded'}"
        if self._wanted is None:
            return f"default model: {self.describe(key)} ({self._reason})"
        state = self.downloads.state(self._wanted)
        if state is None:
            return (f"default model: the bundled model; {self._wanted} is not on this machine (offline). "
                    f"Run `cast download {self._wanted}` once online.")
        return f"default model: the bundled model for now; {state.describe()} (new sessions use it when ready)"

    def local_checkpoints(self) -> list[Path]:
        """The bundled checkpoint first, then our-format checkpoints in checkpoints/ and the extra model folders
        (fine-tunes; the first file of each name)."""
        files: dict[str, Path] = {}
        for folder in self.model_dirs:
            for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
                files.setdefault(path.name, path)
        others = [p for p in files.values() if p.name != BUNDLED_NAME]
        return ([self.bundled_path] if self.bundled_path.is_file() else []) + others

    def choices(self, kind: str | None = None, jobs: list[tuple[str, str]] = ()) -> list[tuple[str, str]]:
        """(label, key) pairs for a model dropdown: official entries say whether they are on this machine or
        how large their download is. `kind` "vit" lists the ViT baselines only, "cast" CAST models only;
        `jobs` adds (job id, name) fine-tunes of the asking session."""
        items = [] if kind == "vit" else [(f"default — {self.describe(self.default_key())}", DEFAULT_KEY)]
        items += [] if kind == "vit" else [(("bundled: " if p == self.bundled_path else "local: ") + p.stem, f"file:{p.name}")
                                           for p in self.local_checkpoints()]  # fmt: skip
        items += [] if kind == "vit" else [(f"my fine-tune: {name} (job {job_id})", f"job:{job_id}") for job_id, name in jobs]
        for name, entry in ZOO.items():
            if entry.loadable and kind in (None, entry.kind):
                where = "on this machine" if self.downloads.is_local(name) else f"download ~{entry.expected_size / 1e6:,.0f} MB"
                items.append((f"official: {name} ({entry.training}, {entry.data}) — {where}", f"zoo:{name}"))
        if kind != "vit":
            items.append(("untrained cast_small (random weights — placeholder)", UNTRAINED_KEY))
        return items

    def bundled_key(self) -> str:
        return f"file:{self.bundled_path.name}" if self.bundled_path.is_file() else UNTRAINED_KEY

    def check_key(self, key: str) -> str:
        """A picker key as a visitor may send it: `default`, `zoo:<published>`, `file:<name in the checkpoints
        folder>`, `job:<id>` (its owner is checked when it loads), the untrained placeholder. Anything else —
        a server path, an internal key — is refused, whatever a client puts in a request."""
        kind, _, rest = str(key).partition(":")
        if key in (DEFAULT_KEY, UNTRAINED_KEY, self._initial_key) or kind == "job":
            return key
        if kind == "zoo" and rest in ZOO and ZOO[rest].loadable:
            return key
        if kind == "file":
            self.resolve_file(rest)
            return key
        raise CheckpointError(f"{key!r} is not a model choice of this app")

    def resolve_file(self, name: str) -> Path:
        """The checkpoint behind a `file:` key: the bundled one, or a file of that name in the checkpoints folder."""
        if not name or Path(name).name != name or name.startswith(".") or not name.endswith(".safetensors"):
            raise CheckpointError(f"{name!r} is not a checkpoint name of this app")
        if name == self.bundled_path.name and self.bundled_path.is_file():
            return self.bundled_path
        for folder in self.model_dirs:
            if (folder / name).is_file():
                return folder / name
        raise CheckpointError(f"there is no checkpoint {name!r} in this app's checkpoints folder")

    def job_result(self, job_id: str, owner: str | None) -> Path:
        """The model file a finished job wrote (only for its owner on a hosted app)."""
        if self._job_results is None:
            raise CheckpointError("this app has no fine-tuning jobs")
        return self._job_results(job_id, owner)

    def needs_download(self, key: str) -> str | None:
        """The zoo name behind a key when its weights are not on this machine yet, else None."""
        key = self.default_key() if key == DEFAULT_KEY else key
        kind, _, name = key.partition(":")
        return name if kind == "zoo" and name in ZOO and not self.downloads.is_local(name) else None

    def describe(self, key: str) -> str:
        """A one-line description without loading anything."""
        kind, _, rest = key.partition(":")
        if key == DEFAULT_KEY:
            return self.describe(self.default_key())
        if kind == "zoo" and rest in ZOO:
            entry = ZOO[rest]
            return f"official: {rest} ({entry.training}, {entry.data})"
        if kind == "file":
            return ("bundled: " if rest == self.bundled_path.name else "local: ") + Path(rest).stem
        if kind == "path":
            return f"local: {Path(rest).stem}"
        if kind == "job":
            return f"my fine-tune (job {rest})"
        if key == UNTRAINED_KEY:
            return "untrained cast_small (random weights — placeholder)"
        return key

    def load(self, key: str, owner: str | None = None) -> ModelHandle:
        """Load (or fetch from the cache) the model behind a dropdown key; `job:` keys only for their owner."""
        key = self.default_key() if key == DEFAULT_KEY else key
        # JobError for anyone but the owner, before any cache lookup
        job_path = self.job_result(key[4:], owner) if key.startswith("job:") else None
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        handle = self._load_uncached(key, job_path)
        try:
            warm_up(handle.model)
        except Exception as err:  # a degenerate model still loads; its images then fail with a clear message
            log.warning("warm-up of %s failed: %s", key, err)
        with self._lock:
            self._cache[key] = handle
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return handle

    def cached(self, key: str) -> ModelHandle | None:
        """The model behind a key if it is loaded already (nothing is read from disk)."""
        key = self.default_key() if key == DEFAULT_KEY else key
        with self._lock:
            return self._cache.get(key)

    def set_job_results(self, job_results: Callable[[str, str | None], Path]) -> None:
        """Where `job:` keys resolve: (job id, owner) -> model file (the jobs tab owns the queue)."""
        self._job_results = job_results

    def load_file(self, path: str | Path) -> ModelHandle:
        """An uploaded checkpoint, cached by content hash."""
        path = Path(path)
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        except OSError as err:
            raise CheckpointError(f"cannot read checkpoint {path.name}: {err}") from err
        return self.load(f"upload:{digest}:{path}")

    def _load_uncached(self, key: str, job_path: Path | None = None) -> ModelHandle:
        kind, _, rest = key.partition(":")
        if key == UNTRAINED_KEY:
            with torch.random.fork_rng(devices=[]):  # a fixed placeholder, without touching the global RNG
                torch.manual_seed(0)
                model = create_model("cast_small")
            summary = ("UNTRAINED cast_small (random weights, seed 0) — a placeholder: its hierarchy reflects colour "
                       "and position only, nothing learned")
            return ModelHandle(key, model, summary)
        if kind == "zoo":
            return self._load_official(key, rest)
        if kind == "upload":
            path = Path(rest.partition(":")[2])
            label = f"uploaded {path.name}"
        elif kind == "file":
            path = self.resolve_file(rest)
            label = "bundled model" if path == self.bundled_path else path.name
        elif kind == "path":  # only the host sets these (CAST_DEFAULT_MODEL)
            path = Path(rest)
            label = path.name
        elif kind == "job" and job_path is not None:  # the owner was checked in load()
            path = job_path
            label = f"my fine-tune {path.stem} (job {rest})"
        else:
            raise CheckpointError(f"unknown model choice {key!r}")
        return self._handle(key, load_model(path), label)

    def _load_official(self, key: str, name: str) -> ModelHandle:
        """A published checkpoint; when it cannot be had, the bundled model with a notice that says so."""
        try:
            return self._handle(key, load_model(name), name, official=ZOO[name])
        except CheckpointError as err:
            if not self.bundled_path.is_file():
                raise
            fallback = self._handle(key, load_model(self.bundled_path), f"bundled model (instead of {name})")
            return dataclasses.replace(fallback, notice=f"{err} Showing the bundled model instead.")

    @staticmethod
    def _handle(key: str, model: nn.Module, label: str, *, official: ZooEntry | None = None) -> ModelHandle:
        return ModelHandle(key=key, model=model.eval(), summary=describe_model(model, label, official),
                           has_classifier=pretrained_cfg_of(model).has_classifier)
