"""The fine-tuning tab's logic over the queue and the model catalog, one visitor at a time (no Gradio here)."""
from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cast.errors import JobError

from ..models import DEFAULT_KEY, UNTRAINED_KEY, ModelCatalog
from ..owners import Visitor, check_upload_size, check_zip
from .queue import Job, JobQueue

if TYPE_CHECKING:  # the settings import the queue's limits
    from ..config import AppConfig


@dataclass(frozen=True)
class JobRequest:
    """What a visitor asked for, before any server path is involved."""

    kind: str
    data_dir: str | None
    data_zip: str | None
    model_key: str
    steps: int
    batch: int
    name: str


class JobService:
    """The tab's logic over the queue and the catalog, one owner at a time (no Gradio in here)."""

    def __init__(self, queue: JobQueue, catalog: ModelCatalog, config: "AppConfig") -> None:
        self.queue, self.catalog, self.config = queue, catalog, config
        catalog.set_job_results(self.result_of)

    def start(self, request: JobRequest, visitor: Visitor) -> Job:
        """Check the request against this app's mode and caps, then queue it for `visitor`."""
        owner, address = visitor.owner, visitor.address
        hosted, caps = self.config.hosted, self.config.limits
        data = self._data(request, hosted)
        model_key = self.catalog.default_key() if request.model_key in (DEFAULT_KEY, None, "") else request.model_key
        model_key = self.catalog.check_key(model_key)
        # the cheap caps first: a refused request costs no model load
        self.queue.check_request({"steps": request.steps, "batch_size": request.batch}, owner, address=address)
        checkpoint, variant, params = self._base(model_key, owner)
        if checkpoint is None and hosted and not caps.allow_from_scratch:
            raise JobError("this app does not train from scratch: choose a trained model to start from")
        job_id = self.queue.new_job_id()
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.name.strip() or request.kind).strip("-") or request.kind
        stem = f"finetuned-{stem}-{time.strftime('%Y%m%d-%H%M%S')}.safetensors"
        out = (self.queue.job_dir(job_id) if hosted else self.config.checkpoints_dir) / stem
        config = {"data": data, "output": str(out), "checkpoint": checkpoint, "variant": variant,
                  "steps": int(request.steps), "batch_size": int(request.batch),
                  "save_every": max(1, int(request.steps) // 4)}  # fmt: skip
        if hosted:  # the upload and its images live in the job's folder: only the job's own rules remove them
            data_dir = self.queue.job_dir(job_id) / "data"
            data_dir.mkdir(parents=True)
            config["data"] = str(shutil.copyfile(data, data_dir / Path(data).name))
            config["max_data_bytes"] = int(caps.max_zip_expanded_mb * 1e6)
            config["data_cache_dir"] = str(data_dir)
        try:
            return self.queue.submit(request.kind, config, owner, address=address, job_id=job_id, model_params=params)
        except BaseException:
            if hosted:
                shutil.rmtree(self.queue.job_dir(job_id), ignore_errors=True)
            raise

    def result_of(self, job_id: str, owner: str | None) -> Path:
        """The model a finished job wrote; JobError for anyone but its owner (hosted) or an unfinished job."""
        job = self.queue.get(job_id, owner)
        if job.state != "done" or not job.output or not Path(job.output).is_file():
            raise JobError(f"job {job_id} has no model (it is {job.state})")
        return Path(job.output)

    def finished_models(self, owner: str | None) -> list[tuple[str, str]]:
        """(job id, result name) of the owner's finished jobs whose results live outside the checkpoints folder."""
        if not self.config.hosted:
            return []  # a local app writes results into the checkpoints folder, where the pickers list them
        return [(j.id, Path(j.output).stem) for j in self.queue.jobs(owner)
                if j.state == "done" and j.output and Path(j.output).is_file()]

    def _data(self, request: JobRequest, hosted: bool) -> str:
        folder = (request.data_dir or "").strip()
        caps = self.config.limits
        if hosted and folder:
            raise JobError("a hosted app trains on uploaded images only: upload a ZIP instead of naming a folder")
        if request.data_zip:
            if hosted:
                check_upload_size(request.data_zip, caps.max_zip_mb, "ZIP files")
                check_zip(request.data_zip, caps.zip_limits())
            return str(request.data_zip)
        if not folder:
            raise JobError("upload a ZIP of images" + ("" if hosted else ", or give a folder of images on the server"))
        if not Path(folder).is_dir():
            raise JobError(f"{folder} is not a folder on the server")
        return folder

    def _base(self, model_key: str, owner: str | None) -> tuple[str | None, str, int | None]:
        """(checkpoint path or zoo name, variant, parameter count) of the model a job starts from."""
        if model_key == UNTRAINED_KEY:
            return None, "cast_small", 28_000_000
        kind, _, rest = model_key.partition(":")
        missing = self.catalog.needs_download(model_key)
        if missing is not None:
            raise JobError(f"{missing} is not on this machine yet: choose it in the Explore tab first (it downloads "
                           "there, with progress), then start the job")
        handle = self.catalog.load(model_key, owner)
        if handle.is_vit:
            raise JobError("the ViT baselines cannot be fine-tuned here; choose a CAST model")
        params = sum(p.numel() for p in handle.model.parameters())
        if kind == "zoo":
            return rest, handle.model.config.name, params
        if kind == "file":
            return str(self.catalog.resolve_file(rest)), handle.model.config.name, params
        if kind == "job":
            return str(self.result_of(rest, owner)), handle.model.config.name, params
        if kind == "path":
            return rest, handle.model.config.name, params
        raise JobError(f"cannot start a job from {self.catalog.describe(model_key)}")
