"""The fine-tuning tab: start a job, watch its progress and loss curve, cancel or resume it.

Local mode: a server folder or a ZIP, results in the checkpoints folder, every session sees every job.
Hosted mode: uploads only, every cap of HostedLimits, a job and its model belong to the session that
started it (the queue refuses everyone else), results live in the job's folder until they expire.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import plotly.graph_objects as go

from cast.errors import JobError

from .jobs import Job, JobQueue, JobRequest, JobService
from .models import DEFAULT_KEY
from .notices import keeps_session, redact_paths
from .owners import VisitorError, Visitors

KIND_CHOICES = [("Self-supervised adaptation (MoCo-v3, unlabelled images)", "moco"),
                ("Supervised fine-tune (DeiT-style, one folder per class)", "supervised"),
                ("Linear probe (frozen backbone, one folder per class)", "probe")]
TABLE_HEADERS = ["job", "kind", "state", "step", "loss", "images/s", "ETA (s)", "result / error"]


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


def build_jobs_tab(service: JobService, model_pickers: list[gr.Dropdown], visitors: Visitors) -> None:
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
        try:
            owner = visitors.owner(token, request)
        except VisitorError:  # a token this app did not sign sees nothing (its requests say why)
            owner = "nobody"
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
                            visitors.visitor(token, request))
        position = queue.queue_position(job.id)
        return job.id, f"Started job {job.id}" + (f" (queued, position {position})" if position else "")

    @keeps_session(2)
    def change_job(action, job_id, token=None, request: gr.Request = None):
        if not job_id:
            raise JobError("choose a job first")
        job = getattr(queue, action)(job_id, visitors.owner(token, request))
        return job.id, f"Job {job.id}: {job.state}"

    def cancel_job(job_id=None, token=None, request: gr.Request = None):
        """Cancel a job of this session (another session's job is refused and left as it is)."""
        return change_job("cancel", job_id, token, request)

    def resume_job(job_id=None, token=None, request: gr.Request = None):
        """Resume a failed or cancelled job of this session from its last saved step."""
        return change_job("resume", job_id, token, request)

    outputs = [table, job_pick, curve, logs, *model_pickers, base]
    # the UI's follow-up refreshes are internal events, not endpoints (`/jobs` is the API's view of the jobs)
    start.click(start_job, [kind, data_dir, data_zip, base, steps, batch, name, visitors.state], [job_pick, job_notice],
                api_name="start_job").then(refresh, [job_pick, visitors.state], outputs, api_visibility="private")
    cancel.click(cancel_job, [job_pick, visitors.state], [job_pick, job_notice], api_name="cancel_job").then(
        refresh, [job_pick, visitors.state], outputs, api_visibility="private")
    resume.click(resume_job, [job_pick, visitors.state], [job_pick, job_notice], api_name="resume_job").then(
        refresh, [job_pick, visitors.state], outputs, api_visibility="private")
    job_pick.change(refresh, [job_pick, visitors.state], outputs, show_progress="hidden", api_visibility="private")
    gr.Timer(2.0).tick(refresh, [job_pick, visitors.state], outputs, show_progress="hidden", api_visibility="private")

    def jobs_api(token=None, request: gr.Request = None) -> list[dict[str, Any]]:
        """This session's jobs: id, kind, state, queue position, steps done, result name, error."""
        try:
            owner = visitors.owner(token, request)
        except VisitorError as err:
            raise gr.Error(str(err)) from err
        rows = []
        for job in queue.poll(owner):
            last = (queue.progress(job.id) or [{}])[-1]
            rows.append({"id": job.id, "kind": job.kind, "state": job.state, "queue_position": queue.queue_position(job.id),
                         "step": last.get("step", 0), "result": Path(job.output).name if job.output else None,
                         "error": redact_paths(job.error) if job.error else None})
        return rows

    gr.Button(visible=False).click(jobs_api, [visitors.state], [gr.JSON(visible=False)], api_name="jobs")
