"""The Explore tab: one image, its hierarchy, clicks, a second model side by side (e.g. CAST vs ViT), exports.

Every callback is a few lines over the library; a session's results live in the app's SessionMemory (one
budget for all visitors), its gr.State values hold tickets to them.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from cast.collection.stability import stability_scores
from cast.datasets import load_label_mask
from cast.errors import CastError
from cast.evaluation import align_ground_truth, level_metrics
from cast.export import export_zip
from cast.image import MAX_PIXELS, InputConfig
from cast.segmenter import Segmenter
from cast.weights.hub import offline_reason

from .components import OriginalImage, UploadedFile
from .config import AppConfig
from .models import DEFAULT_KEY, ModelCatalog, ModelHandle
from .memory import Held, SessionMemory
from .notices import Notice, keeps_session, redact_paths
from .owners import Visitors, check_image_pixels, check_upload_size
from .session import ExplorerSession
from .texts import level_label, panel_markdown, scores_markdown, segment_markdown, status_markdown, timings_markdown

VIEW_LABELS = {
    "fill": "filled colours",
    "boundaries": "boundaries",
    "all_boundaries": "all levels' boundaries",
    "grid": "grid of every level",
    "boundary_map": "hierarchy boundary map (UCM)",
    "confidence": "parent-assignment confidence",
    "stability": "stability (measure it first)",
    "named": "named segments (name them first)",
}
IMAGE_FORMATS = "PNG (8/16-bit), JPEG (incl. CMYK), TIFF, WebP, GIF, BMP"


@dataclass
class ExploreControls:
    """What other tabs need from this one."""

    image_in: OriginalImage
    model_in: gr.Dropdown
    model_key_state: gr.State
    compare_model: gr.Dropdown
    status: gr.Markdown
    downloads_md: gr.Markdown
    download_timer: gr.Timer
    view_outputs: list  # what `show` fills
    show: Callable[[ExplorerSession], tuple]  # an ExplorerSession made elsewhere (a saved hierarchy) on screen


def ensure_model(catalog: ModelCatalog, key: str, progress: gr.Progress | None = None,
                 owner: str | None = None) -> ModelHandle:
    """The model behind a picker key, downloading its official weights first (with a progress bar) if needed.

    A model whose file vanished from the cache under the running app is served from memory while the file
    is fetched (or converted) again; the default model that cannot be had at all falls back to the bundled
    one with a notice, so that no request fails for it."""
    key = catalog.check_key(key)
    name = catalog.needs_download(key)
    if name is not None:
        loaded = catalog.cached(key)
        if loaded is not None:  # the file went away, the weights did not: answer now, fetch in the background
            if offline_reason() is None:
                catalog.downloads.start(name)
            return loaded
        state = catalog.downloads.start(name, waiter=owner)
        while state is not None and state.active:
            if progress is not None:
                progress(state.fraction or 0.0, desc=state.describe())
            time.sleep(0.25)
            state = catalog.downloads.state(name)
        if state is None or state.status != "ready":
            why = state.describe() if state else name + " could not be downloaded"
            if key == DEFAULT_KEY and catalog.bundled_key() != catalog.default_key():
                bundled = catalog.load(catalog.bundled_key(), owner)
                return dataclasses.replace(bundled, notice=f"{why}. Showing the bundled model instead.")
            raise Notice(f"{why}. Kept the current model.")
    return catalog.load(key, owner)


def build_explore_tab(catalog: ModelCatalog, config: AppConfig, default_key: str, visitors: Visitors,
                      memory: SessionMemory, naming: Any = None) -> ExploreControls:
    """Add the Explore tab to the current Blocks and wire its events (with `naming`, an app.naming_panel
    NamingService: "Name the segments", /name_segments and /name_image)."""
    caps = config.limits if config.hosted else None
    examples = sorted(str(p) for p in config.assets_dir.glob("*.jpg")) if config.assets_dir.is_dir() else []
    ttl = config.session_ttl_s()  # hosted: a visitor's results leave memory after a while without use
    scratch = config.scratch()
    session_state = gr.State(None, time_to_live=ttl, delete_callback=memory.drop)  # Held tickets (app/memory.py)
    compare_state = gr.State(None, time_to_live=ttl, delete_callback=memory.drop)  # the other model, same pixels
    model_key_state = gr.State(DEFAULT_KEY)  # the model in use: a failed download goes back to it
    status = gr.Markdown(status_markdown(None, catalog.describe(default_key)), elem_id="status")
    downloads_md = gr.Markdown(redact_paths(catalog.default_status()), elem_id="downloads")
    notice = gr.Markdown("", elem_id="notice")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            image_in = OriginalImage(label=f"Image — drop, paste or click ({IMAGE_FORMATS})", type="filepath",
                                     sources=["upload", "clipboard"], height=260, elem_id="image_in")
            if examples:
                gr.Examples(examples=examples, inputs=image_in, label="Example photographs")
            with gr.Accordion("Model and superpixels", open=True):
                # choices change per session (downloads, fine-tunes): keys are checked by the catalog, not the widget
                model_in = gr.Dropdown(catalog.choices(), value=DEFAULT_KEY, label="Model", elem_id="model",
                                       allow_custom_value=True)
                cancel_download = gr.Button("Cancel download", size="sm", visible=bool(catalog.downloads.active()),
                                            elem_id="cancel_download")
                ckpt_in = gr.File(label="…or upload a checkpoint (.safetensors / .pth)", type="filepath",
                                  file_types=[".safetensors", ".pth", ".pt", ".tar", ".bin"])
                method_in = gr.Radio(["seeds", "slic"], value="seeds", label="Superpixel method",
                                     info="SEEDS is what the published models were trained with")
                count_in = gr.Slider(64, 400, value=196, step=1, label="Superpixels requested")
                size_in = gr.Dropdown([224, 320, 448], value=224, label="Input resolution",
                                      info="224 is the trained size; others resize the position table")
                mode_in = gr.Radio([("centre crop (official)", "center_crop"), ("full frame (squashed)", "full_frame")],
                                   value="center_crop", label="Framing")
            run_btn = gr.Button("Segment again with these settings", variant="primary", elem_id="segment")
        with gr.Column(scale=2, min_width=400):
            picture = gr.Image(label="Hierarchy", type="numpy", format="png", interactive=False, elem_id="picture")
            level_in = gr.Slider(0, 4, value=1, step=1, label="Level (0 = superpixels … 4 = 8 segments)", elem_id="level")
            level_md = gr.Markdown("", elem_id="level_name")
            with gr.Row():
                view_in = gr.Dropdown([(v, k) for k, v in VIEW_LABELS.items()], value="fill", label="View")
                opacity_in = gr.Slider(0.0, 1.0, value=0.6, step=0.05, label="Opacity")
            timings = gr.Markdown("", elem_id="timings")
            stability_btn = gr.Button("Measure stability (5 perturbed runs: flip, ±16 superpixels, noise, JPEG)",
                                      size="sm", elem_id="measure_stability")
            with gr.Accordion("Side by side: CAST vs the ViT baseline, or any two models", open=False):
                with gr.Row():
                    compare_model = gr.Dropdown(catalog.choices(), value=_default_compare(catalog), label="Compare with",
                                                elem_id="compare_model", allow_custom_value=True)
                    compare_btn = gr.Button("Compare on this image", elem_id="compare")
                with gr.Row():
                    compare_a = gr.Image(label="This model", type="numpy", format="png", interactive=False,
                                         elem_id="compare_a")
                    compare_b = gr.Image(label="Other model (click a segment)", type="numpy", format="png",
                                         interactive=False, elem_id="compare_b")
                compare_info = gr.Markdown("", elem_id="compare_info")
            naming_slot = gr.Column()  # "Name the segments" (app/naming_panel.py), filled in below
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
    download_timer = gr.Timer(2.0, active=bool(catalog.downloads.active()))

    view_outputs = [session_state, picture, panel, tree_plot, partition_plot, level_md, timings, status]
    compare_outputs = [compare_a, compare_b, compare_info]

    def refresh(session: ExplorerSession, held: Held | None, figures: bool = True) -> tuple:
        pic = session.picture()
        trees = session.tree_figures() if figures else (gr.skip(), gr.skip())
        return (memory.put(session, held, "explore"), pic, panel_markdown(session), *trees, level_label(session, session.view.level),
                timings_markdown(session), status_markdown(session, session.model_summary))

    def compare_pictures(session: ExplorerSession, other: ExplorerSession | None) -> tuple:
        if other is None:
            return gr.skip(), gr.skip(), gr.skip()
        other = other.with_view(level=session.view.level, view=session.view.view, opacity=session.view.opacity)
        info = other.selected_info()
        text = f"**Left:** {session.model_summary}  \n**Right:** {other.model_summary}"
        if info is not None:
            text += "\n\n" + "\n".join(segment_markdown(info, title="Right:"))
        return session.picture(), other.picture(), text

    @keeps_session(len(view_outputs) + 2)
    def segment(upload: UploadedFile | None, model_key=None, ckpt_path=None, method="seeds", count=196, size=224,
                mode="center_crop", level=1, view="fill", opacity=0.6, token=None, held=None,
                request: gr.Request = None, progress=gr.Progress()):
        if upload is None:
            raise Notice("Upload an image (or pick an example) first.")
        check_upload_size(upload.path, caps and caps.max_image_mb, "images", upload.name)
        check_image_pixels(upload.path, caps and caps.max_image_megapixels, upload.name)
        check_upload_size(ckpt_path, caps and caps.max_checkpoint_mb, "checkpoints")
        owner = visitors.owner(token, request)
        handle = catalog.load_file(ckpt_path) if ckpt_path else ensure_model(catalog, model_key or DEFAULT_KEY, progress, owner)
        # the superpixel controls do not apply to the ViT baseline (its level 0 is k-means)
        segmenter = Segmenter(handle.model, None if handle.is_vit else method, InputConfig(size=int(size), mode=mode),
                              num_superpixels=None if handle.is_vit else int(count))
        result = segmenter.run_detailed(upload.path, name=upload.name)
        session = ExplorerSession.create(result, handle.summary, handle.top_classes(result.output))
        session = dataclasses.replace(session, segmenter=segmenter, source=upload.path)
        session = session.with_view(level=int(level), view="fill" if view == "stability" else view, opacity=float(opacity))
        message = redact_paths(f"ℹ️ {handle.notice}") if handle.notice else ""
        if handle.notice:
            gr.Info(redact_paths(handle.notice))
        return (*refresh(session, held), model_key, message)

    @keeps_session(len(view_outputs) + len(compare_outputs) + 1)
    def change_view(held, held_other, level, view, opacity):
        session, other = memory.get(held), memory.get(held_other)
        if session is None:
            return (*([gr.skip()] * (len(view_outputs) + len(compare_outputs))), "")
        session = session.with_view(level=int(level), view=view, opacity=float(opacity))
        figures = session.selection is not None and session.selection.level != int(level)
        if figures:
            session = session.clear_selection()
        if other is not None and other.selection is not None and other.selection.level != int(level):
            other = other.clear_selection()
        return (*refresh(session, held, figures=figures), *compare_pictures(session, other), "")

    @keeps_session(len(view_outputs) + len(compare_outputs) + 1)
    def click(held, held_other, evt: gr.SelectData):
        session, other = memory.get(held), memory.get(held_other)
        if session is None:
            raise Notice("Segment an image first.")
        session = session.select_at(*evt.index)
        return (*refresh(session, held), *compare_pictures(session, other), "")

    @keeps_session(len(view_outputs) + 2)
    def measure_stability(held):
        """Score every segment by how it comes back under small perturbations; then show the stability view."""
        session = memory.get(held)
        if session is None or session.segmenter is None:
            raise Notice("Segment an image first.")
        result = session.result
        source = session.source if session.source is not None else result.hierarchy.image
        scores = stability_scores(session.segmenter, source, result.hierarchy)
        measured = dataclasses.replace(result, hierarchy=result.hierarchy.with_stability(scores))
        fresh = dataclasses.replace(ExplorerSession.create(measured, session.model_summary, session.top_classes),
                                    segmenter=session.segmenter, source=session.source)
        fresh = fresh.with_view(level=session.view.level, view="stability", opacity=session.view.opacity)
        return (*refresh(fresh, held), gr.update(value="stability"), "")

    @keeps_session(len(compare_outputs) + 2)
    def click_other(held, held_other, evt: gr.SelectData):
        session, other = memory.get(held), memory.get(held_other)
        if session is None or other is None:
            raise Notice("Compare two models first.")
        other = other.with_view(level=session.view.level).select_at(*evt.index)
        return (memory.put(other, held_other, "compare"), *compare_pictures(session, other), "")

    @keeps_session(len(compare_outputs) + 2)
    def compare(held, other_key, token=None, held_other=None, request: gr.Request = None, progress=gr.Progress()):
        session = memory.get(held)
        if session is None:
            raise Notice("Segment an image first, then compare.")
        other = ensure_model(catalog, other_key, progress, visitors.owner(token, request))
        theirs = Segmenter(other.model).rerun(session.result)
        other_session = ExplorerSession.create(theirs, other.summary).with_view(**dataclasses.asdict(session.view))
        return (memory.put(other_session, held_other, "compare"), *compare_pictures(session.clear_selection(), other_session),
                "")

    @keeps_session(3)
    def choose_model(key, previous, token=None, request: gr.Request = None, progress=gr.Progress()):
        """A model picked in the dropdown: fetch its weights now (with progress); a failure keeps the old one."""
        try:
            handle = ensure_model(catalog, key, progress, visitors.owner(token, request))
        except (CastError, Notice) as err:
            gr.Warning(redact_paths(str(err)))
            return previous, gr.update(value=previous), f"⚠️ {redact_paths(str(err))}"
        message = redact_paths(f"ℹ️ {handle.notice}" if handle.notice else f"Model ready: {handle.summary}")
        return key, gr.update(), message

    @keeps_session(2)
    def export(held):
        session = memory.get(held)
        if session is None:
            raise Notice("Nothing to export yet: segment an image first.")
        out_dir = scratch.new("export")
        prov = session.hierarchy.provenance
        stem = Path(str(prov.source_name if prov and prov.source_name else "image")).stem or "image"
        return str(export_zip(session.hierarchy, out_dir / f"{stem}_cast.zip", stem=stem, names=session.names)), ""

    @keeps_session(2)
    def score_ground_truth(held, held_other, gt_path):
        session, other = memory.get(held), memory.get(held_other)
        if session is None or gt_path is None:
            raise Notice("Segment an image and upload its ground-truth mask.")
        check_upload_size(gt_path, caps and caps.max_image_mb, "masks")
        # the size comes from the header and must be the image's: nothing larger is ever decoded
        mask = load_label_mask(gt_path, expected_size=original_size(session.hierarchy), name=Path(gt_path).name,
                               max_pixels=int(caps.max_image_megapixels * 1e6) if caps else MAX_PIXELS)
        columns = [("this model", level_metrics(session.hierarchy, align_ground_truth(mask, session.hierarchy)))]
        if other is not None:
            columns.append(("other model", level_metrics(other.hierarchy, align_ground_truth(mask, other.hierarchy))))
        return scores_markdown(columns), ""

    def tick():
        active = bool(catalog.downloads.active())
        return redact_paths(catalog.default_status()), gr.Timer(active=active), gr.update(visible=active)

    def before_choice(key):
        """Show the download bar's companions (status ticks, cancel) when the choice needs a download."""
        downloading = catalog.needs_download(key) is not None
        return gr.Timer(active=downloading or bool(catalog.downloads.active())), gr.update(visible=downloading)

    seg_inputs = [image_in, model_in, ckpt_in, method_in, count_in, size_in, mode_in, level_in, view_in, opacity_in,
                  visitors.state, session_state]
    seg_outputs = [*view_outputs, model_key_state, notice]
    run_btn.click(segment, seg_inputs, seg_outputs, api_name="segment")
    image_in.change(segment, seg_inputs, seg_outputs, api_visibility="private")  # an upload or example starts at once
    view_inputs = [session_state, compare_state, level_in, view_in, opacity_in]
    for control in (level_in, view_in, opacity_in):
        control.change(change_view, view_inputs, [*view_outputs, *compare_outputs, notice],
                       api_name="set_view" if control is level_in else False, show_progress="hidden")
    picture.select(click, [session_state, compare_state], [*view_outputs, *compare_outputs, notice],
                   api_visibility="private", show_progress="hidden")
    compare_a.select(click, [session_state, compare_state], [*view_outputs, *compare_outputs, notice],
                     api_visibility="private", show_progress="hidden")
    compare_b.select(click_other, [session_state, compare_state], [compare_state, *compare_outputs, notice],
                     api_visibility="private", show_progress="hidden")
    compare_btn.click(compare, [session_state, compare_model, visitors.state, compare_state], [compare_state, *compare_outputs, notice],
                      api_name="compare")
    model_in.input(before_choice, [model_in], [download_timer, cancel_download], api_visibility="private").then(
        choose_model, [model_in, model_key_state, visitors.state], [model_key_state, model_in, notice],
        api_visibility="private").then(
        lambda: gr.update(visible=bool(catalog.downloads.active())), None, [cancel_download], api_visibility="private")
    # hosted: a visitor only stops waiting (others may need the file); locally, cancel stops the download
    cancel_download.click(lambda key, token=None, request=None: _cancel(
                              catalog, key, visitors.owner(token, request) if config.hosted else None),
                          [model_in, visitors.state], [notice], api_name="cancel_download")
    export_btn.click(export, [session_state], [export_file, notice], api_name="export")
    stability_btn.click(measure_stability, [session_state], [*view_outputs, view_in, notice], api_name="measure_stability")
    gt_in.change(score_ground_truth, [session_state, compare_state, gt_in], [gt_scores, notice], api_name="score_ground_truth")
    download_timer.tick(tick, None, [downloads_md, download_timer, cancel_download], show_progress="hidden",
                        api_visibility="private")

    if naming is not None:
        from .naming_panel import build_naming_panel

        def segment_file(path: str, name: str):
            handle = ensure_model(catalog, DEFAULT_KEY)
            return Segmenter(handle.model).run(path, name=name)

        with naming_slot:
            build_naming_panel(naming, session_state, picture, view_in, level_in, view_outputs, refresh, segment_file,
                               memory)

    def select_api(held, level, x, y):
        """Scripted click: select the segment under (x, y) at `level`; returns its record."""
        try:
            session = memory.get(held)
        except Notice as err:
            raise gr.Error(str(err)) from err
        if session is None:
            raise gr.Error("Segment an image first.")
        session = session.select_at(int(x), int(y), int(level))
        return memory.put(session, held, "explore"), session.selected_info()

    select_json = gr.JSON(visible=False)
    gr.Button(visible=False).click(select_api, [session_state, level_in, gr.Number(visible=False), gr.Number(visible=False)],
                                   [session_state, select_json], api_name="select")
    return ExploreControls(image_in, model_in, model_key_state, compare_model, status, downloads_md, download_timer,
                           view_outputs, lambda session: refresh(session, None))


def original_size(hierarchy: Any) -> tuple[int, int] | None:
    """(width, height) of the image a hierarchy was made from, as recorded in its provenance."""
    original = getattr(getattr(hierarchy.provenance, "input", None), "original_hw", None)
    return None if original is None else (int(original[1]), int(original[0]))


def _default_compare(catalog: ModelCatalog) -> str:
    """The paper's comparison: the ViT-S baseline (local files of ours first, then the published one)."""
    vit = [key for _, key in catalog.choices(kind="vit")]
    local = [key for key in vit if key.startswith("file:")]
    return (local or vit or [catalog.bundled_key()])[0]


def _cancel(catalog: ModelCatalog, key: str, owner: str | None) -> str:
    """Stop waiting for a download; it stops when nobody waits for it any more (and it is not the default's)."""
    name = catalog.needs_download(key) if key else None
    if name is None:
        return "Nothing is downloading for this choice."
    stopped = catalog.downloads.cancel(name, waiter=owner)
    return f"Cancelling the download of {name}…" if stopped else f"Stopped waiting for {name}; others still need it."


def page_load_updates(catalog: ModelCatalog) -> tuple[Any, ...]:
    """Per page load: the current default model (an official one once its download finished) and fresh labels."""
    key = catalog.default_key()
    return (gr.update(value=DEFAULT_KEY, choices=catalog.choices()), DEFAULT_KEY, gr.update(choices=catalog.choices()),
            status_markdown(None, catalog.describe(key)), redact_paths(catalog.default_status()),
            gr.Timer(active=bool(catalog.downloads.active())))
