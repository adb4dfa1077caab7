"""Gradio layout and callbacks. Every callback is a few lines over the library (cast/)."""
from __future__ import annotations

import dataclasses
import functools
import logging
import tempfile
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from cast.errors import CastError
from cast.image import InputConfig
from cast.segmenter import Segmenter, recorded_superpixels
from cast.superpixels import SuperpixelConfig
from cast.render import partition_figure, tree_figure

from cast.train.jobs import JobQueue

from .config import AppConfig
from .jobs_tab import build_jobs_tab
from .models import ModelCatalog
from .session import ExplorerSession

log = logging.getLogger(__name__)

VIEW_LABELS = {
    "fill": "filled colours",
    "boundaries": "boundaries",
    "all_boundaries": "all levels' boundaries",
    "grid": "grid of every level",
    "boundary_map": "hierarchy boundary map (UCM)",
    "confidence": "parent-assignment confidence",
}


class Notice(Exception):
    """A message for the user; the session is left as it was."""


def keeps_session(n_outputs: int) -> Callable:
    """Decorator: on a domain error, show it as a notice and leave every output unchanged."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args: Any) -> Any:
            try:
                return fn(*args)
            except (CastError, Notice) as err:
                gr.Warning(str(err))
                return (*([gr.skip()] * (n_outputs - 1)), f"⚠️ {err}")
            except Exception as err:  # never a traceback in the UI; the user's results stay
                log.exception("unexpected error in %s", fn.__name__)
                gr.Warning(f"Unexpected error: {err}")
                return (*([gr.skip()] * (n_outputs - 1)), f"⚠️ Unexpected error ({type(err).__name__}): {err}")

        return inner

    return wrap


def status_markdown(session: ExplorerSession | None, model_line: str) -> str:
    """The honesty line: which model (and what it was trained on) and which superpixels."""
    if session is None:
        return f"**Model:** {model_line}"
    prov = session.hierarchy.provenance
    sp = prov["superpixels"]
    inp = prov["input"]
    parity = "official pipeline (parity)" if inp["parity_with_official"] else "NOT the official pipeline"
    return (
        f"**Model:** {session.model_summary}  \n"
        f"**Superpixels:** {sp['description']} → {sp['count']} segments  \n"
        f"**Input:** {inp['mode'].replace('_', ' ')} at {inp['size']}×{inp['size']} — {parity}"
    )


def panel_markdown(session: ExplorerSession | None) -> str:
    """Details of the clicked segment (level, id, area, bbox, children, parent confidence) and top-5 classes."""
    if session is None:
        return "Segment an image, then click a segment."
    lines = []
    info = session.selected_info()
    if info is None:
        lines.append("*Click a segment in the image to see its parents and children.*")
    else:
        x, y, w, h = info["bbox"]
        lines += [
            f"### Segment {info['id']}",
            f"- **level:** {info['level']} ({info['level_name']})",
            f"- **area:** {info['area']} px",
            f"- **bounding box (x, y, w, h):** {x}, {y}, {w}, {h}",
            f"- **children:** {len(info['children'])}",
        ]
        if info["parent"] is not None:
            lines += [
                f"- **parent:** {info['parent']} (p = {info['parent_confidence']:.3f})",
                f"- **runner-up parent:** {info['runner_up_parent']} (p = {info['runner_up_confidence']:.3f})",
            ]
        else:
            lines.append("- **parent:** the image (coarsest level)")
    if session.top_classes:
        lines.append("### Top-5 ImageNet classes")
        lines += [f"{i}. {name} — {p:.1%}" for i, (name, p) in enumerate(session.top_classes, 1)]
    return "\n".join(lines)


def timings_markdown(session: ExplorerSession | None) -> str:
    if session is None:
        return ""
    parts = [f"{k} {v:.1f} ms" for k, v in session.timings().items()]
    return "**Timings:** " + " · ".join(parts)


def level_label(session: ExplorerSession | None, level: int) -> str:
    if session is None:
        return ""
    return f"Level {level}: {session.hierarchy.level_name(level)}"


def build_app(config: AppConfig | None = None) -> gr.Blocks:
    """The CAST Explorer UI. Models are cached in an explicit catalog shared by all sessions."""
    config = config or AppConfig.from_env()
    catalog = ModelCatalog(config.checkpoints_dir, cache_size=config.model_cache_size)
    default_key = catalog.default_key()
    try:
        catalog.load(default_key)  # load and warm up the default model before the first user arrives
    except CastError as err:  # the UI still starts and says so; another model can be chosen
        log.error("could not load the default model %s: %s", default_key, err)
    examples = sorted(str(p) for p in config.assets_dir.glob("*.jpg")) if config.assets_dir.is_dir() else []

    with gr.Blocks(title="CAST Explorer") as demo:
        session_state = gr.State(None)
        gr.Markdown("# CAST Explorer\nHierarchical segments learned by CAST (Ke, Mo, Yu, ICLR 2024): "
                    "superpixels → 64 → 32 → 16 → 8 segments from one forward pass.")
        status = gr.Markdown(status_markdown(None, catalog.describe(default_key)), elem_id="status")
        notice = gr.Markdown("", elem_id="notice")
        with gr.Tab("Explore"):
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    image_in = gr.Image(label="Image (drop, paste or click to upload)", type="filepath",
                                        sources=["upload", "clipboard"], height=260, elem_id="image_in")
                    file_in = gr.File(label="…or any image file (TIFF, 16-bit PNG, …)", type="filepath", elem_id="file_in")
                    if examples:
                        gr.Examples(examples=examples, inputs=image_in, label="Example photographs")
                    with gr.Accordion("Model and superpixels", open=True):
                        model_in = gr.Dropdown(catalog.choices(), value=default_key, label="Model", elem_id="model")
                        ckpt_in = gr.File(label="…or upload a checkpoint (.safetensors / .pth)", type="filepath",
                                          file_types=[".safetensors", ".pth", ".pt", ".tar", ".bin"])
                        method_in = gr.Radio(["seeds", "slic"], value="seeds", label="Superpixel method",
                                             info="SEEDS is what the published models were trained with")
                        count_in = gr.Slider(64, 400, value=196, step=1, label="Superpixels requested")
                        size_in = gr.Dropdown([224, 320, 448], value=224, label="Input resolution",
                                              info="224 is the trained size; others resize the position table")
                        mode_in = gr.Radio([("centre crop (official)", "center_crop"), ("full frame (squashed)", "full_frame")],
                                           value="center_crop", label="Framing")
                    run_btn = gr.Button("Segment", variant="primary", elem_id="segment")
                with gr.Column(scale=2, min_width=400):
                    picture = gr.Image(label="Hierarchy", type="numpy", format="png", interactive=False, elem_id="picture")
                    level_in = gr.Slider(0, 4, value=1, step=1, label="Level (0 = superpixels … 4 = 8 segments)", elem_id="level")
                    level_md = gr.Markdown("", elem_id="level_name")
                    with gr.Row():
                        view_in = gr.Dropdown([(v, k) for k, v in VIEW_LABELS.items()], value="fill", label="View")
                        opacity_in = gr.Slider(0.0, 1.0, value=0.6, step=0.05, label="Opacity")
                    timings = gr.Markdown("", elem_id="timings")
                    with gr.Accordion("Side by side with another model (e.g. before / after fine-tuning)", open=False):
                        with gr.Row():
                            compare_model = gr.Dropdown(catalog.choices(), value=default_key, label="Compare with",
                                                        elem_id="compare_model")
                            compare_btn = gr.Button("Compare on this image", elem_id="compare")
                        with gr.Row():
                            compare_a = gr.Image(label="Current model", type="numpy", format="png", interactive=False)
                            compare_b = gr.Image(label="Other model", type="numpy", format="png", interactive=False)
                        compare_info = gr.Markdown("")
                    with gr.Row():
                        export_btn = gr.Button("Export everything (ZIP)")
                        export_file = gr.File(label="Export", interactive=False)
                with gr.Column(scale=2, min_width=320):
                    panel = gr.Markdown(panel_markdown(None), elem_id="panel")
                    with gr.Accordion("Compare with a ground-truth mask", open=False):
                        gt_in = gr.File(label="Ground-truth mask (PNG, for the original image)", type="filepath",
                                        file_types=[".png", ".bmp", ".tif", ".tiff"])
                        gt_scores = gr.Markdown("", elem_id="gt_scores")
                    tree_plot = gr.Plot(label="Segment tree", elem_id="tree")
                    partition_plot = gr.Plot(label="Hierarchy (icicle)", elem_id="icicle")

            view_outputs = [session_state, picture, panel, tree_plot, partition_plot, level_md, timings, status]

            def refresh(session: ExplorerSession, figures: bool = True) -> tuple:
                pic = session.picture()
                sel = None if session.selection is None else (session.selection.level, session.selection.segment)
                trees = (tree_figure(session.hierarchy, sel), partition_figure(session.hierarchy, sel)) if figures else (gr.skip(), gr.skip())
                return (session, pic, panel_markdown(session), *trees, level_label(session, session.view.level),
                        timings_markdown(session), status_markdown(session, session.model_summary), "")

            @keeps_session(len(view_outputs) + 1)
            def segment(image_path, file_path, model_key, ckpt_path, method, count, size, mode, level, view, opacity):
                source = file_path or image_path
                if source is None:
                    raise Notice("Upload an image (or pick an example) first.")
                handle = catalog.load_file(ckpt_path) if ckpt_path else catalog.load(model_key or default_key)
                recorded = recorded_superpixels(handle.model) or SuperpixelConfig.official()
                superpixels = dataclasses.replace(recorded, method=method, num_superpixels=int(count))
                segmenter = Segmenter(handle.model, superpixels, InputConfig(size=int(size), mode=mode),
                                      provenance=handle.provenance)
                result = segmenter.run_detailed(source)
                session = ExplorerSession.create(result, handle.summary, handle.top_classes(result.output))
                session = session.with_view(level=int(level), view=view, opacity=float(opacity))
                out = refresh(session)
                if handle.notice:
                    gr.Info(handle.notice)
                    return (*out[:-1], f"ℹ️ {handle.notice}")
                return out

            @keeps_session(len(view_outputs) + 1)
            def change_view(session, level, view, opacity):
                if session is None:
                    return (*([gr.skip()] * len(view_outputs)), "")
                session = session.with_view(level=int(level), view=view, opacity=float(opacity))
                if session.selection is not None and session.selection.level != int(level):
                    session = session.clear_selection()
                    return refresh(session)
                return refresh(session, figures=False)

            @keeps_session(len(view_outputs) + 1)
            def click(session, evt: gr.SelectData):
                if session is None:
                    raise Notice("Segment an image first.")
                x, y = evt.index
                return refresh(session.select_at(x, y))

            @keeps_session(2)
            def export(session):
                if session is None:
                    raise Notice("Nothing to export yet: segment an image first.")
                from cast.export import export_zip

                out_dir = Path(tempfile.mkdtemp(prefix="cast-export-"))
                stem = Path(str(session.hierarchy.provenance.get("source_name", "image"))).stem or "image"
                return str(export_zip(session.hierarchy, out_dir / f"{stem}_cast.zip", stem=stem)), ""

            @keeps_session(2)
            def score_ground_truth(session, gt_path):
                if session is None or gt_path is None:
                    raise Notice("Segment an image and upload its ground-truth mask.")
                from cast.datasets import load_label_mask
                from cast.evaluation import align_ground_truth, best_level, format_scores, level_metrics

                scores = level_metrics(session.hierarchy, align_ground_truth(load_label_mask(gt_path), session.hierarchy))
                best = best_level(scores)
                return f"{format_scores(scores)}\n\nBest level: **{best.level}** ({best.level_name})", ""

            @keeps_session(4)
            def compare(session, other_key, level, view, opacity):
                if session is None:
                    raise Notice("Segment an image first, then compare.")
                other = catalog.load(other_key)
                theirs = Segmenter(other.model, provenance=other.provenance).rerun(session.result)
                settings = dict(level=int(level), view=view, opacity=float(opacity))
                mine = session.clear_selection().with_view(**settings).picture()
                other_pic = ExplorerSession.create(theirs, other.summary).with_view(**settings).picture()
                return mine, other_pic, f"Left: {session.model_summary}  \nRight: {other.summary}", ""

            seg_inputs = [image_in, file_in, model_in, ckpt_in, method_in, count_in, size_in, mode_in, level_in, view_in, opacity_in]
            run_btn.click(segment, seg_inputs, [*view_outputs, notice], api_name="segment")
            for control in (level_in, view_in, opacity_in):
                control.change(change_view, [session_state, level_in, view_in, opacity_in], [*view_outputs, notice],
                               api_name=False if control is not level_in else "set_view", show_progress="hidden")
            picture.select(click, [session_state], [*view_outputs, notice], api_name=False, show_progress="hidden")
            export_btn.click(export, [session_state], [export_file, notice], api_name="export")
            compare_btn.click(compare, [session_state, compare_model, level_in, view_in, opacity_in],
                              [compare_a, compare_b, compare_info, notice], api_name="compare")
            gt_in.change(score_ground_truth, [session_state, gt_in], [gt_scores, notice], api_name="score_ground_truth")

            def select_api(session, level, x, y):
                """Scripted click: select the segment under (x, y) at `level`; returns its record."""
                if session is None:
                    raise gr.Error("Segment an image first.")
                session = session.select_at(int(x), int(y), int(level))
                return session, session.selected_info()

            select_json = gr.JSON(visible=False)
            gr.Button(visible=False).click(select_api, [session_state, level_in, gr.Number(visible=False), gr.Number(visible=False)],
                                           [session_state, select_json], api_name="select")
        with gr.Tab("Fine-tune"):
            build_jobs_tab(JobQueue(config.jobs_dir), catalog, [model_in, compare_model])
    return demo
