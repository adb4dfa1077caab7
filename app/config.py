"""App settings from the environment (local runs and Hugging Face Spaces alike), and the hosted-mode caps.

Hosted mode is on when `SPACE_ID` is set (a Hugging Face Space) or `CAST_HOSTED=1`; `CAST_HOSTED=0` turns
it off. In hosted mode visitors share one machine: jobs are private to the session that started them,
there is no server-folder input, and every cap of `HostedLimits` applies. Each cap comes from an
environment variable `CAST_<FIELD>` (e.g. `CAST_MAX_IMAGE_MB=10`), else from the JSON file named by
`CAST_HOSTED_CONFIG`, else the default (sized for the free CPU Space: 2 vCPU, 16 GB RAM, 50 GB disk).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cast.datasets import ZipLimits
from cast.errors import CastError
from cast.examples import examples_dir

from .jobs.queue import JobLimits
from .owners import VisitorKeys
from .scratch import Scratch

REPO_ROOT = Path(__file__).resolve().parents[1]
IN_CHECKOUT = (REPO_ROOT / "app.py").is_file() and (REPO_ROOT / "cast").is_dir()
# A checkout keeps jobs and fine-tunes beside the code; an installed app keeps them in the user's data folder.
DATA_ROOT = REPO_ROOT if IN_CHECKOUT else Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "cast_explorer"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


@dataclass(frozen=True)
class HostedLimits:
    """Caps of a hosted app (one field, one setting: `CAST_<FIELD>` or the config file's key `<field>`)."""

    max_image_mb: float = 20.0  # one uploaded image or mask
    max_image_megapixels: float = 40.0  # one image or mask, from its header, before any pixel is decoded
    max_checkpoint_mb: float = 300.0  # one uploaded checkpoint (CAST-S in our format is ~112 MB)
    max_zip_mb: float = 200.0  # one uploaded ZIP of training images
    max_zip_images: int = 2000  # images in one ZIP
    max_zip_expanded_mb: float = 1000.0  # what the images of one ZIP may expand to
    max_zip_unused_files: int = 50  # members that are not usable images (never extracted); more refuse the ZIP
    max_zip_unused_mb: float = 5.0  # ... and their size together
    max_collection_images: int = 100  # images of one collection (the Collection tab keeps them in memory)
    max_job_steps: int = 300
    max_job_batch: int = 16
    max_job_model_params_m: float = 30.0  # CAST-S (28 M) and smaller; CAST-B would take hours on 2 vCPU
    allow_from_scratch: bool = False  # jobs must start from a trained model
    max_running_jobs: int = 1  # training at the same time, all sessions together
    max_queued_jobs: int = 6  # waiting, all sessions together
    max_jobs_per_session: int = 1  # queued + running of one session
    max_jobs_per_address: int = 2  # queued + running of one network address, whatever sessions it opens
    max_queue_share: float = 0.5  # of the waiting places, what one address may hold
    results_disk_gb: float = 5.0  # finished jobs kept; when full, new jobs wait for results to expire
    max_results_per_session: int = 3  # a session's finished models beyond this: its own oldest go
    max_results_per_address: int = 6  # the same per network address
    results_ttl_hours: float = 24.0  # finished jobs (and their models) are removed after this long
    job_nice: int = 15  # CPU priority of training processes (19 = lowest), so clicks stay fast
    scratch_ttl_hours: float = 2.0  # extracted uploads and exports are removed after this long
    scratch_disk_gb: float = 10.0  # all of them together; beyond it, the oldest folders go first
    scratch_max_files: int = 20_000  # ... and their number of files
    upload_cache_gb: float = 5.0  # Gradio's copies of uploads and outputs; beyond it the oldest go first
    upload_cache_max_files: int = 2_000  # ... and their number of files
    session_ttl_hours: float = 2.0  # a visitor's results in memory are dropped after this long without use
    session_memory_gb: float = 4.0  # every session's results together; the least recently used go first
    max_sessions: int = 200  # sessions whose results are kept in memory, the least recently used go first
    max_vocabulary_objects: int = 100  # naming with CLIP: objects of one typed vocabulary (presets are fixed lists)
    max_vocabulary_parts: int = 300  # parts of one typed vocabulary
    max_vocabulary_chars: int = 4000  # a typed vocabulary
    max_named_segments: int = 48  # CLIP passes of one naming request (levels 4 + 3 of CAST need 24)
    max_search_text_chars: int = 200  # a "find segments that look like ..." text

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "HostedLimits":
        """Defaults, overridden by the CAST_HOSTED_CONFIG file, overridden by CAST_<FIELD> variables."""
        env = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        if env.get("CAST_HOSTED_CONFIG"):
            path = Path(env["CAST_HOSTED_CONFIG"])
            try:
                values.update(json.loads(path.read_text()))
            except (OSError, ValueError) as err:
                raise CastError(f"cannot read the hosted-mode settings {path.name}: {err}") from err
        known = {f.name: f for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise CastError(f"unknown hosted-mode settings: {', '.join(sorted(unknown))}")
        for name in known:
            if f"CAST_{name.upper()}" in env:
                values[name] = env[f"CAST_{name.upper()}"]
        return cls(**{name: _parse(known[name].type, value, name) for name, value in values.items()})

    def job_limits(self) -> JobLimits:
        """The job queue's side of these caps (jobs private to their owner)."""
        return JobLimits(
            private=True, max_running=self.max_running_jobs, max_queued=self.max_queued_jobs,
            max_active_per_owner=self.max_jobs_per_session, max_active_per_address=self.max_jobs_per_address,
            max_queue_share=self.max_queue_share, max_steps=self.max_job_steps,
            max_batch_size=self.max_job_batch, max_model_params=int(self.max_job_model_params_m * 1e6),
            result_ttl_s=self.results_ttl_hours * 3600, max_results_bytes=int(self.results_disk_gb * 1e9),
            max_results_per_owner=self.max_results_per_session, max_results_per_address=self.max_results_per_address,
            nice=self.job_nice,
        )  # fmt: skip

    def zip_limits(self, max_images: int | None = None) -> ZipLimits:
        """What one uploaded ZIP may hold (checked before anything is extracted)."""
        images = self.max_zip_images if max_images is None else max_images
        return ZipLimits(
            max_total_bytes=int(self.max_zip_expanded_mb * 1e6), max_members=2 * images + self.max_zip_unused_files + 100,
            max_images=images, max_image_bytes=int(self.max_image_mb * 1e6),
            max_image_pixels=int(self.max_image_megapixels * 1e6), max_unused_files=self.max_zip_unused_files,
            max_unused_bytes=int(self.max_zip_unused_mb * 1e6),
        )  # fmt: skip

    @property
    def max_upload_mb(self) -> float:
        """The largest single upload any input accepts (the server-side guard, before our own checks)."""
        return max(self.max_image_mb, self.max_checkpoint_mb, self.max_zip_mb)

    def describe(self) -> str:
        """One line for the app's mode banner."""
        return (f"uploads up to {self.max_image_mb:g} MB per image, {self.max_checkpoint_mb:g} MB per checkpoint, "
                f"{self.max_zip_mb:g} MB per ZIP ({self.max_zip_images} images); fine-tuning jobs up to "
                f"{self.max_job_steps} steps, batch {self.max_job_batch}, models up to {self.max_job_model_params_m:g} M "
                f"parameters, {self.max_jobs_per_session} per session and {self.max_jobs_per_address} per address; results kept "
                f"{self.results_ttl_hours:g} h")


def _parse(kind: Any, value: Any, name: str) -> Any:
    kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    try:
        if kind == "bool":
            text = str(value).strip().lower()
            if text not in _TRUE | _FALSE:
                raise ValueError(value)
            return text in _TRUE
        number = float(value) if kind == "float" else int(value)
        if number < 0:
            raise ValueError(value)
        return number
    except (TypeError, ValueError) as err:
        raise CastError(f"hosted-mode setting {name} must be a non-negative {kind}, got {value!r}") from err


def _flag(text: str | None, default: bool) -> bool:
    value = (text or "").strip().lower()
    return value in _TRUE if value in _TRUE | _FALSE else default


def hosted_from_env(environ: dict[str, str] | None = None) -> bool:
    """On a Space (SPACE_ID) or with CAST_HOSTED=1; CAST_HOSTED=0 wins over SPACE_ID."""
    env = os.environ if environ is None else environ
    flag = env.get("CAST_HOSTED", "").strip().lower()
    if flag in _TRUE | _FALSE:
        return flag in _TRUE
    return bool(env.get("SPACE_ID"))


@dataclass(frozen=True)
class AppConfig:
    """Where the app listens, what it serves, and whether strangers share it (hosted mode)."""

    server_name: str = "127.0.0.1"
    server_port: int = 7860
    checkpoints_dir: Path = DATA_ROOT / "checkpoints"
    assets_dir: Path = field(default_factory=examples_dir)  # example photographs (shipped with the package)
    jobs_dir: Path = DATA_ROOT / "jobs"
    model_cache_size: int = 3
    max_concurrency: int = 2
    hosted: bool = False
    limits: HostedLimits = field(default_factory=HostedLimits)
    scratch_dir: Path = Path(tempfile.gettempdir()) / "cast-explorer"  # per-request files (ZIPs, exports)
    behind_proxy: bool = False  # a visitor's address is the first X-Forwarded-For hop (a Space's proxy sets it)
    model_dirs: tuple[Path, ...] = ()  # more folders of .safetensors models for the picker (CAST_MODEL_DIRS)

    @classmethod
    def from_env(cls) -> "AppConfig":
        """GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (or PORT) win; on Spaces listen on all interfaces."""
        default_host = "0.0.0.0" if os.environ.get("SPACE_ID") else cls.server_name
        port = os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT") or cls.server_port
        return cls(
            server_name=os.environ.get("GRADIO_SERVER_NAME", default_host),
            server_port=int(port),
            checkpoints_dir=Path(os.environ.get("CAST_CHECKPOINTS_DIR", cls.checkpoints_dir)),
            assets_dir=Path(os.environ.get("CAST_ASSETS_DIR") or examples_dir()),
            jobs_dir=Path(os.environ.get("CAST_JOBS_DIR", cls.jobs_dir)),
            hosted=hosted_from_env(),
            limits=HostedLimits.from_env(),
            scratch_dir=Path(os.environ.get("CAST_SCRATCH_DIR", cls.scratch_dir)),
            behind_proxy=_flag(os.environ.get("CAST_BEHIND_PROXY"), default=bool(os.environ.get("SPACE_ID"))),
            model_dirs=tuple(Path(p) for p in os.environ.get("CAST_MODEL_DIRS", "").split(os.pathsep) if p.strip()),
        )

    def scratch(self) -> Scratch:
        """Per-request folders, removed after the hosted TTL (a day in local mode), within the hosted disk budget."""
        if not self.hosted:
            return Scratch(self.scratch_dir, 24 * 3600)
        caps = self.limits
        return Scratch(self.scratch_dir, caps.scratch_ttl_hours * 3600, int(caps.scratch_disk_gb * 1e9),
                       caps.scratch_max_files)

    def upload_cache(self, root: Path) -> Scratch | None:
        """Gradio's folder of uploads and outputs as a budget (hosted only): TTL, bytes and files."""
        if not self.hosted:
            return None
        caps = self.limits
        return Scratch(root, caps.scratch_ttl_hours * 3600, int(caps.upload_cache_gb * 1e9), caps.upload_cache_max_files)

    def session_ttl_s(self) -> float | None:
        """How long a session's results stay in memory without use (hosted only)."""
        return self.limits.session_ttl_hours * 3600 if self.hosted else None

    def session_memory_bytes(self) -> int | None:
        """What every session's results may take in memory together (hosted only)."""
        return int(self.limits.session_memory_gb * 1e9) if self.hosted else None

    def visitor_keys(self) -> VisitorKeys:
        """The key that signs visitors' tokens, kept beside the jobs it protects (stable across restarts)."""
        return VisitorKeys.load(self.jobs_dir, behind_proxy=self.behind_proxy)

    def job_limits(self) -> JobLimits:
        """Private, capped jobs when hosted; a local app keeps its full power (no caps, lower CPU priority only)."""
        return self.limits.job_limits() if self.hosted else JobLimits()

    def mode_banner(self) -> str:
        """What the app says about its mode (shown at the top of every page)."""
        if not self.hosted and self.server_name not in ("127.0.0.1", "localhost", "::1"):
            return ("**Local mode on a network address** — anyone who reaches this app can train on any folder of "
                    "this machine and see every job. For an app others use, set `CAST_HOSTED=1`.")
        if self.hosted:
            return (f"**Hosted mode** — {self.limits.describe()}. Your fine-tuning jobs and their models are visible "
                    "to this browser session only; data come from your uploads.")
        return "**Local mode** — no upload or job caps; jobs and results are shared by every session of this app."
