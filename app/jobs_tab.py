"""The fine-tuning tab: start a job, watch its progress and loss curve, cancel or resume it."""
from __future__ import annotations

import re
import time
from pathlib import Path

import gradio as gr
import plotly.graph_objects as go

from cast.train.jobs import Job, JobQueue

from .models import DEFAULT_KEY, UNTRAINED_KEY, ModelCatalog

KIND_CHOICES = [("Self-supervised adaptation (MoCo-v3, unlabelled images)", "moco"),
                ("Supervised fine-tune (DeiT-style, one folder per class)", "supervised"),
                ("Linear probe (frozen backbone, one folder per class)", "probe")]
TABLE_HEADERS = ["job", "kind", "state", "step", "loss", "images/s", "ETA (s)", "result / error"]


def base_checkpoint(model_key: str) -> tuple[str | None, str]:
    """(checkpoint path or zoo name, variant) for the job config, from a model-picker key."""
    if model_key == UNTRAINED_KEY or not model_key:
        return None, "cast_small"
    kind, _, rest = model_key.partition(":")
    return (rest, "cast_small") if kind in ("file", "zoo") else (None, "cast_small")


def job_config(kind: str, data_dir: str | None, data_zip: str | None, model_key: str, steps: float, batch: float,
               name: str, checkpoints_dir: Path) -> dict:
    """The job's config dict (the same dataclass fields as Python and `python -m cast.train`)."""
    data = data_zip or (data_dir or "").strip()
    if not data:
        raise gr.Error("Give a folder of images on the server, or upload a ZIP of images.")
    if not Path(data).exists():
        raise gr.Error(f"{data} does not exist on the server.")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", name.strip() or kind).strip("-") or kind
    checkpoint, variant = base_checkpoint(model_key)
    out = Path(checkpoints_dir) / f"finetuned-{stem}-{time.strftime('%Y%m%d-%H%M%S')}.safetensors"
    return {"data": str(data), "output": str(out), "checkpoint": checkpoint, "variant": variant,
            "steps": int(steps), "batch_size": int(batch), "save_every": max(1, int(steps) // 4)}


def job_row(queue: JobQueue, job: Job) -> list:
    last = (queue.progress(job.id) or [{}])[-1]
    result = job.error or (Path(job.output).name if job.output else "")
    fmt = lambda key, spec: format(last[key], spec) if isinstance(last.get(key), (int, float)) else ""  # noqa: E731
    step = f"{last.get('step', 0)}/{last.get('total_steps', job.config.get('steps', '?'))}"
    return [job.id, job.kind, job.state, step, fmt("loss", ".4f"), fmt("images_per_s", ".1f"), fmt("eta_s", ".0f"), result]


def loss_figure(queue: JobQueue, job_id: str | None) -> go.Figure:
    rows = queue.progress(job_id) if job_id else []
    fig = go.Figure(go.Scatter(x=[r["step"] for r in rows], y=[r["loss"] for r in rows], mode="lines+markers"))
    fig.update_layout(title=f"Training loss — {job_id}" if job_id else "Training loss", height=300,
                      margin=dict(l=40, r=10, t=40, b=30), xaxis_title="step", yaxis_title="loss")
    return fig


def build_jobs_tab(queue: JobQueue, catalog: ModelCatalog, model_pickers: list[gr.Dropdown]) -> None:
    """Add the fine-tuning tab to the current Blocks; the explorer's model pickers are refreshed as jobs finish."""
    gr.Markdown("Fine-tune CAST on your own images. Each job runs in its own process (the explorer stays "
                "responsive), survives an app restart, and its result appears in the model picker when done. "
                "Recipes follow the paper's, scaled down; every deviation is recorded in the checkpoint.")
    with gr.Row():
        with gr.Column():
            kind = gr.Radio(KIND_CHOICES, value="moco", label="Job", elem_id="job_kind")
            data_dir = gr.Textbox(label="Image folder on the server", elem_id="job_data")
            data_zip = gr.File(label="…or upload a ZIP of images", file_types=[".zip"], type="filepath")
            base = gr.Dropdown(catalog.choices(kind="cast"), value=DEFAULT_KEY, label="Start from")
            with gr.Row():
                steps = gr.Number(20, label="Steps", precision=0, minimum=1, elem_id="job_steps")
                batch = gr.Number(8, label="Batch size", precision=0, minimum=2, elem_id="job_batch")
            name = gr.Textbox("my-images", label="Name of the result", elem_id="job_name")
            start = gr.Button("Start job", variant="primary", elem_id="job_start")
        with gr.Column(scale=2):
            table = gr.Dataframe(headers=TABLE_HEADERS, value=[], interactive=False, elem_id="job_table")
            job_pick = gr.Dropdown([], label="Job to watch", elem_id="job_pick", allow_custom_value=True)
            with gr.Row():
                cancel = gr.Button("Cancel job", elem_id="job_cancel")
                resume = gr.Button("Resume job", elem_id="job_resume")
            curve = gr.Plot(label="Loss", elem_id="job_curve")
            logs = gr.Textbox(label="Log", lines=8, max_lines=8, elem_id="job_log")

    def refresh(job_id):
        jobs = queue.poll()
        ids = [j.id for j in jobs]
        job_id = job_id if job_id in ids else (ids[0] if ids else None)
        choices = catalog.choices()
        return ([job_row(queue, j) for j in jobs], gr.update(choices=ids, value=job_id), loss_figure(queue, job_id),
                queue.log_tail(job_id) if job_id else "", *[gr.update(choices=choices)] * len(model_pickers),
                gr.update(choices=catalog.choices(kind="cast")))

    def start_job(kind, data_dir, data_zip, model_key, steps, batch, name):
        model_key = catalog.default_key() if model_key in (DEFAULT_KEY, None) else model_key
        job = queue.submit(kind, job_config(kind, data_dir, data_zip, model_key, steps, batch, name, catalog.checkpoints_dir))
        return job.id

    outputs = [table, job_pick, curve, logs, *model_pickers, base]
    start.click(start_job, [kind, data_dir, data_zip, base, steps, batch, name], [job_pick], api_name="start_job").then(
        refresh, [job_pick], outputs)
    cancel.click(lambda j: queue.cancel(j).id if j else None, [job_pick], [job_pick], api_name="cancel_job").then(
        refresh, [job_pick], outputs)
    resume.click(lambda j: queue.resume(j).id if j else None, [job_pick], [job_pick], api_name="resume_job").then(
        refresh, [job_pick], outputs)
    job_pick.change(refresh, [job_pick], outputs, show_progress="hidden", api_visibility="private")
    gr.Timer(2.0).tick(refresh, [job_pick], outputs, show_progress="hidden", api_visibility="private")
