"""The fine-tuning tab: start a job, watch its progress and loss curve, cancel or resume it.

Local mode: a server folder or a ZIP, results in the checkpoints folder, every session sees every job.
Hosted mode: uploads only, every cap of HostedLimits, a job and its model belong to the session that
started it (the queue refuses everyone else), results live in the job's folder until they expire.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import plotly.graph_objects as go

from cast.errors import JobError
from cast.train.jobs import Job, JobQueue

from .config import AppConfig
from .models import DEFAULT_KEY, UNTRAINED_KEY, ModelCatalog
from .notices import keeps_session, redact_paths
from .owners import check_upload_size, check_zip, owner_of

KIND_CHOICES = [("Self-supervised adaptation (MoCo-v3, unlabelled images)", "moco"),
                ("Supervised fine-tune (DeiT-style, one folder per class)", "supervised"),
                ("Linear probe (frozen backbone, one folder per class)", "probe")]
TABLE_HEADERS = ["job", "kind", "state", "step", "loss", "images/s", "ETA (s)", "result / error"]


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

    def __init__(self, queue: JobQueue, catalog: ModelCatalog, config: AppConfig) -> None:
        self.queue, self.catalog, self.config = queue, catalog, config
        catalog.set_job_results(self.result_of)

    def start(self, request: JobRequest, owner: str | None) -> Job:
        """Check the request against this app's mode and caps, then queue it for `owner`."""
        hosted, caps = self.config.hosted, self.config.limits
        data = self._data(request, hosted)
        model_key = self.catalog.default_key() if request.model_key in (DEFAULT_KEY, None, "") else request.model_key
        model_key = self.catalog.check_key(model_key)
        # the cheap caps first: a refused request costs no model load
        self.queue.check_request({"steps": request.steps, "batch_size": request.batch}, owner)
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
        if hosted:  # extracted into the job's folder, so the retention rules remove it with the job
            config["max_data_bytes"] = int(caps.max_zip_expanded_mb * 1e6)
            config["data_cache_dir"] = str(self.queue.job_dir(job_id) / "data")
        return self.queue.submit(request.kind, config, owner, job_id=job_id, model_params=params)

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
                check_zip(request.data_zip, caps.max_zip_images, caps.max_zip_expanded_mb)
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


def job_row(queue: JobQueue, job: Job) -> list:
    last = (queue.progress(job.id) or [{}])[-1]
    result = redact_paths(job.error) if job.error else (Path(job.output).name if job.output else "")
    fmt = lambda key, spec: format(last[key], spec) if isinstance(last.get(key), (int, float)) else ""  # noqa: E731
    step = f"{last.get('step', 0)}/{last.get('total_steps', job.config.get('steps', '?'))}"
    position = queue.queue_position(job.id)
    state = f"queued (#{position})" if position else job.state
    return [job.id, job.kind, state, step, fmt("loss", ".4f"), fmt("images_per_s", ".1f"), fmt("eta_s", ".0f"), result]


def loss_figure(queue: JobQueue, job_id: str | None) -> go.Figure:
    rows = queue.progress(job_id) if job_id else []
    fig = go.Figure(go.Scatter(x=[r["step"] for r in rows], y=[r["loss"] for r in rows], mode="lines+markers"))
    fig.update_layout(title=f"Training loss — {job_id}" if job_id else "Training loss", height=300,
                      margin=dict(l=40, r=10, t=40, b=30), xaxis_title="step", yaxis_title="loss")
    return fig


def build_jobs_tab(service: JobService, model_pickers: list[gr.Dropdown], owner_state: gr.BrowserState) -> None:
    """Add the fine-tuning tab to the current Blocks; the explorer's model pickers are refreshed as jobs finish."""
    queue, catalog, config = service.queue, service.catalog, service.config
    hosted = config.hosted
    gr.Markdown("Fine-tune CAST on your own images. Each job runs in its own process at a lower CPU priority (the "
                "explorer stays responsive), survives an app restart, and its result appears in the model picker "
                "when done. Recipes follow the paper's, scaled down; every deviation is recorded in the checkpoint."
                + (" On this hosted app your jobs and their models are visible to you only." if hosted else ""))
    with gr.Row():
        with gr.Column():
            kind = gr.Radio(KIND_CHOICES, value="moco", label="Job", elem_id="job_kind")
            data_dir = gr.Textbox(label="Image folder on the server", elem_id="job_data", visible=not hosted)
            data_zip = gr.File(label="…or upload a ZIP of images" if not hosted else "Upload a ZIP of images",
                               file_types=[".zip"], type="filepath", elem_id="job_zip")
            base = gr.Dropdown(catalog.choices(kind="cast"), value=DEFAULT_KEY, label="Start from", elem_id="job_base",
                               allow_custom_value=True)  # keys are checked by the catalog
            with gr.Row():
                max_steps = config.limits.max_job_steps if hosted else None
                max_batch = config.limits.max_job_batch if hosted else None
                steps = gr.Number(20, label=f"Steps{f' (≤ {max_steps})' if max_steps else ''}", precision=0, minimum=1,
                                  maximum=max_steps, elem_id="job_steps")
                batch = gr.Number(8, label=f"Batch size{f' (≤ {max_batch})' if max_batch else ''}", precision=0,
                                  minimum=2, maximum=max_batch, elem_id="job_batch")
            name = gr.Textbox("my-images", label="Name of the result", elem_id="job_name")
            start = gr.Button("Start job", variant="primary", elem_id="job_start")
            job_notice = gr.Markdown("", elem_id="job_notice")
        with gr.Column(scale=2):
            table = gr.Dataframe(headers=TABLE_HEADERS, value=[], interactive=False, elem_id="job_table")
            job_pick = gr.Dropdown([], label="Job to watch", elem_id="job_pick", allow_custom_value=True)
            with gr.Row():
                cancel = gr.Button("Cancel job", elem_id="job_cancel")
                resume = gr.Button("Resume job", elem_id="job_resume")
            curve = gr.Plot(label="Loss", elem_id="job_curve")
            logs = gr.Textbox(label="Log", lines=8, max_lines=8, elem_id="job_log")

    def refresh(job_id, token=None, request: gr.Request = None):
        owner = owner_of(token, request)
        jobs = queue.poll(owner)
        ids = [j.id for j in jobs]
        job_id = job_id if job_id in ids else (ids[0] if ids else None)
        mine = service.finished_models(owner)
        choices = catalog.choices(jobs=mine)
        log = redact_paths(queue.log_tail(job_id)) if job_id else ""
        return ([job_row(queue, j) for j in jobs], gr.update(choices=ids, value=job_id), loss_figure(queue, job_id),
                log, *[gr.update(choices=choices)] * len(model_pickers),
                gr.update(choices=catalog.choices(kind="cast", jobs=mine)))

    @keeps_session(2)
    def start_job(kind, data_dir=None, data_zip=None, model_key=DEFAULT_KEY, steps=20, batch=8, name="my-images",
                  token=None, request: gr.Request = None):
        job = service.start(JobRequest(kind, data_dir, data_zip, model_key, int(steps), int(batch), name),
                            owner_of(token, request))
        position = queue.queue_position(job.id)
        return job.id, f"Started job {job.id}" + (f" (queued, position {position})" if position else "")

    @keeps_session(2)
    def change_job(action, job_id, token=None, request: gr.Request = None):
        if not job_id:
            raise JobError("choose a job first")
        job = getattr(queue, action)(job_id, owner_of(token, request))
        return job.id, f"Job {job.id}: {job.state}"

    def cancel_job(job_id=None, token=None, request: gr.Request = None):
        """Cancel a job of this session (another session's job is refused and left as it is)."""
        return change_job("cancel", job_id, token, request)

    def resume_job(job_id=None, token=None, request: gr.Request = None):
        """Resume a failed or cancelled job of this session from its last saved step."""
        return change_job("resume", job_id, token, request)

    outputs = [table, job_pick, curve, logs, *model_pickers, base]
    # the UI's follow-up refreshes are internal events, not endpoints (`/jobs` is the API's view of the jobs)
    start.click(start_job, [kind, data_dir, data_zip, base, steps, batch, name, owner_state], [job_pick, job_notice],
                api_name="start_job").then(refresh, [job_pick, owner_state], outputs, api_visibility="private")
    cancel.click(cancel_job, [job_pick, owner_state], [job_pick, job_notice], api_name="cancel_job").then(
        refresh, [job_pick, owner_state], outputs, api_visibility="private")
    resume.click(resume_job, [job_pick, owner_state], [job_pick, job_notice], api_name="resume_job").then(
        refresh, [job_pick, owner_state], outputs, api_visibility="private")
    job_pick.change(refresh, [job_pick, owner_state], outputs, show_progress="hidden", api_visibility="private")
    gr.Timer(2.0).tick(refresh, [job_pick, owner_state], outputs, show_progress="hidden", api_visibility="private")

    def jobs_api(token=None, request: gr.Request = None) -> list[dict[str, Any]]:
        """This session's jobs: id, kind, state, queue position, steps done, result name, error."""
        rows = []
        for job in queue.poll(owner_of(token, request)):
            last = (queue.progress(job.id) or [{}])[-1]
            rows.append({"id": job.id, "kind": job.kind, "state": job.state, "queue_position": queue.queue_position(job.id),
                         "step": last.get("step", 0), "result": Path(job.output).name if job.output else None,
                         "error": redact_paths(job.error) if job.error else None})
        return rows

    gr.Button(visible=False).click(jobs_api, [owner_state], [gr.JSON(visible=False)], api_name="jobs")
