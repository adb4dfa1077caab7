"""The Collection tab: many images at once, a gallery at any level, segment search by CAST's embeddings,
stability, statistics, ground-truth scores per image, and the collection export. Thin over cast.collection.
"""
from __future__ import annotations

import dataclasses
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from cast.collection import Collection, build_collection, collection_figures, collection_scores, stability_scores
from cast.collection.stats import scores_table
from cast.datasets import IMAGE_SUFFIXES, prepare_data_root, scan_images
from cast.errors import CastError
from cast.export.collection import CollectionWriter, export_stems, merge_collection
from cast.render import Selection, render, segment_crop, value_view
from cast.segmenter import Segmenter

from .config import AppConfig
from .explore_tab import ExploreControls, ensure_model
from .models import DEFAULT_KEY, ModelCatalog
from .memory import Held, SessionMemory
from .notices import Notice, keeps_session
from .owners import Visitors, check_image_pixels, check_upload_size, check_zip
from .scratch import Scratch

THUMB_PIXELS = 256 * 256  # label maps of collection items: open an image in Explore for full resolution
VIEWS = [("filled colours", "fill"), ("stability", "stability"), ("parent confidence", "confidence")]


@dataclass
class CollectionView:
    """One visitor's collection and what they are looking at in it (kept in a gr.State)."""

    collection: Collection
    selected: int = 0
    level: int = 2
    view: str = "fill"
    query: tuple[int, int] | None = None  # (level, segment) of the last search in the selected image

    def item(self):
        return self.collection.item(self.selected)


def gather_files(paths: list[str] | None, caps: Any | None, scratch: Scratch) -> tuple[list[Path], list[str]]:
    """Image files of an upload (images and ZIPs, checked, then expanded into a short-lived folder), with their
    names as the user knows them. Every cap is checked before anything is extracted."""
    if not paths:
        raise Notice("Upload images, or a ZIP of images, first.")
    paths = [Path(p) for p in paths]
    limit = getattr(caps, "max_collection_images", None)
    contents = {}
    for path in paths:
        if zipfile.is_zipfile(path):
            check_upload_size(path, caps and caps.max_zip_mb, "ZIP files")
            contents[path] = check_zip(path, caps.zip_limits(max_images=limit) if caps else None)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            check_upload_size(path, caps and caps.max_image_mb, "images")
            check_image_pixels(path, caps and caps.max_image_megapixels)
        else:
            raise CastError(f"{path.name} is neither an image nor a ZIP of images")
    total = sum(len(c.images) for c in contents.values()) + len(paths) - len(contents)
    if limit is not None and total > limit:
        raise CastError(f"{total} images uploaded; this app segments at most {limit} per collection")
    files, names = [], []
    for path in paths:
        if path in contents:  # only the images are extracted, into a folder reserved for exactly them
            folder = scratch.new("collection", reserve_bytes=contents[path].image_bytes,
                                 reserve_files=len(contents[path].images) + 1)
            root = prepare_data_root(path, extract_dir=folder, limits=caps.zip_limits(max_images=limit) if caps else None)
            found, _ = scan_images(root)
            files += sorted(found)
            names += [str(p.relative_to(root)) for p in sorted(found)]
        else:
            files.append(path)
            names.append(path.name)
    if not files:
        raise CastError("the upload holds no images")
    return files, names


def gallery(view: CollectionView) -> list[tuple[np.ndarray, str]]:
    """A thumbnail per image at the chosen level and view, captioned with its name."""
    out = []
    for item in view.collection.items:
        h = item.hierarchy
        mode = view.view if (view.view != "stability" or h.stability is not None) else "fill"
        out.append((render(h, mode, min(view.level, h.num_levels - 1)), item.name))
    return out


def selected_picture(view: CollectionView) -> np.ndarray:
    item = view.item()
    h = item.hierarchy
    mode = view.view if (view.view != "stability" or h.stability is not None) else "fill"
    selection = Selection(*view.query) if view.query is not None and mode == "fill" else None
    return render(h, mode, min(view.level, h.num_levels - 1), selection=selection)


def summary_records(collection: Collection) -> list[dict[str, Any]]:
    """What an API client gets back per image: index, name, segments per level, failures listed apart."""
    records = []
    for item in collection.items:
        h = item.hierarchy
        records.append({"image_index": item.index, "image": item.name,
                        "segments_per_level": [len(h.segment_ids(lv)) for lv in range(h.num_levels)],
                        "stability_measured": h.stability is not None})
    return records


def search_outputs(view: CollectionView, hits, level: int) -> tuple[list, np.ndarray]:
    """(crops of the hits with captions, similarity heat map over the selected image)."""
    crops = []
    for rank, hit in enumerate(hits, 1):
        other = view.collection.item(hit.image_index).hierarchy
        crop = segment_crop(other.image, other.labels(level), hit.segment)
        crops.append((crop, f"#{rank} {hit.image} L{level}:s{hit.segment:02d} — {hit.similarity:.3f}"))
    item = view.item()
    query = view.collection.index.vector(view.selected, level, hits[0].segment)
    per_segment = view.collection.index.similarities(view.selected, level, query)
    finite = per_segment[np.isfinite(per_segment)]
    low = float(finite.min()) if len(finite) else -1.0  # stretched over this image's range: red least, green most
    heat = value_view(item.hierarchy.image, item.hierarchy.labels(level), per_segment, opacity=0.75, low=low,
                      high=max(low + 1e-6, float(finite.max()) if len(finite) else 1.0))
    return crops, heat


def build_collection_tab(catalog: ModelCatalog, config: AppConfig, explore: ExploreControls,
                         visitors: Visitors, tabs: gr.Tabs, memory: SessionMemory) -> None:
    """Add the Collection tab to the current Blocks and wire its events (/collection and /search among them)."""
    caps = config.limits if config.hosted else None
    scratch = config.scratch()
    state = gr.State(None, time_to_live=config.session_ttl_s(), delete_callback=memory.drop)  # a Held ticket
    gr.Markdown("Segment many images at once, then click a segment to find similar ones across the collection "
                "(cosine similarity of CAST's own segment embeddings at that level). Stability scores each segment "
                "by how it comes back under a flip, other superpixel counts, noise and JPEG re-encoding (6 runs "
                "per image).")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            files_in = gr.File(label="Images or ZIPs of images", file_count="multiple", type="filepath",
                               elem_id="coll_files")
            with gr.Row():
                batch_in = gr.Slider(1, 16, value=8, step=1, label="Batch size")
                stability_in = gr.Checkbox(False, label="Measure stability (slower)", elem_id="coll_stability")
            run_btn = gr.Button("Segment the collection", variant="primary", elem_id="coll_run")
            summary = gr.Markdown("", elem_id="coll_summary")
            coll_notice = gr.Markdown("", elem_id="coll_notice")
            level_in = gr.Slider(0, 4, value=2, step=1, label="Level", elem_id="coll_level")
            view_in = gr.Radio(VIEWS, value="fill", label="Colour by", elem_id="coll_view")
            topk_in = gr.Slider(1, 30, value=12, step=1, label="Matches to show")
            export_btn = gr.Button("Export the collection (ZIP)")
            export_file = gr.File(label="Collection export", interactive=False)
        with gr.Column(scale=3):
            gallery_out = gr.Gallery(label="Collection (click an image to search in it)", columns=6, height=300,
                                     allow_preview=False, elem_id="coll_gallery")
            with gr.Row():
                selected_out = gr.Image(label="Selected image: click a segment", type="numpy", interactive=False,
                                        elem_id="coll_selected")
                heat_out = gr.Image(label="Similarity to the clicked segment (red: least, green: most, in this image)",
                                    type="numpy", interactive=False,
                                    elem_id="coll_heat")
            open_btn = gr.Button("Open this image in Explore", elem_id="coll_open")
            results_out = gr.Gallery(label="Most similar segments", columns=6, height=260, allow_preview=False,
                                     elem_id="coll_results")
            hits_json = gr.JSON(visible=False)
            with gr.Row():
                areas_plot = gr.Plot(label="Segment areas")
                confidence_plot = gr.Plot(label="Parent confidence")
                stability_plot = gr.Plot(label="Stability")
            with gr.Accordion("Ground-truth masks (matched to images by file name)", open=False):
                gt_in = gr.File(label="Masks (PNG) or a ZIP of them", file_count="multiple", type="filepath")
                gt_table = gr.Dataframe(label="Mean best-match IoU per image and level", interactive=False,
                                        elem_id="coll_gt")
                gt_best = gr.Markdown("")
            records_json = gr.JSON(visible=False)

    def figures(view: CollectionView) -> tuple:
        figs = collection_figures(view.collection)
        return figs.get("areas"), figs.get("confidence"), figs.get("stability")

    @keeps_session(9)
    def segment_collection(paths, model_key=DEFAULT_KEY, batch_size=8, stability=False, level=2, token=None, held=None,
                           request: gr.Request = None, progress=gr.Progress()):
        files, names = gather_files(paths, caps, scratch)
        handle = ensure_model(catalog, model_key or DEFAULT_KEY, progress, visitors.owner(token, request))
        segmenter = Segmenter(handle.model, max_output_pixels=THUMB_PIXELS)
        measure = (lambda source, h: stability_scores(segmenter, source, h)) if stability else None
        collection = build_collection(segmenter, files, names=names, batch_size=int(batch_size), stability=measure,
                                      progress=lambda done, total, name: progress(done / total, desc=f"{done}/{total}: {name}"))
        if not collection.items:
            raise CastError("no image of the upload could be segmented: " + "; ".join(m for _, m in collection.failures[:3]))
        view = CollectionView(collection, level=int(level))
        failed = f" · {len(collection.failures)} failed ({collection.failures[0][0]}: {collection.failures[0][1]})" \
            if collection.failures else ""
        text = (f"**{len(collection.items)} images** with {handle.summary} in {collection.provenance['seconds']:.1f} s"
                f"{failed}")
        return (memory.put(view, held, "collection"), gallery(view), text, selected_picture(view), *figures(view),
                summary_records(collection), "")

    @keeps_session(4)
    def change_view(held, level, mode):
        view = memory.get(held)
        if view is None:
            return gr.skip(), gr.skip(), gr.skip(), ""
        view = dataclasses.replace(view, level=int(level), view=mode, query=None)
        return memory.put(view, held, "collection"), gallery(view), selected_picture(view), ""

    @keeps_session(4)
    def pick(held, evt: gr.SelectData):
        view = memory.get(held)
        if view is None:
            raise Notice("Segment a collection first.")
        view = dataclasses.replace(view, selected=int(evt.index), query=None)
        return memory.put(view, held, "collection"), selected_picture(view), None, ""

    def run_search(view: CollectionView, held: Held, image_index: int, level: int, segment: int, top_k: int):
        view = dataclasses.replace(view, selected=int(image_index), level=int(level), query=(int(level), int(segment)))
        hits = view.collection.index.search(int(image_index), int(level), int(segment), int(top_k))
        crops, heat = search_outputs(view, hits, int(level))
        return memory.put(view, held, "collection"), selected_picture(view), heat, crops, [h.to_dict() for h in hits]

    @keeps_session(6)
    def click_segment(held, top_k, evt: gr.SelectData):
        view = memory.get(held)
        if view is None:
            raise Notice("Segment a collection first.")
        item = view.item()
        level = min(view.level, item.hierarchy.num_levels - 1)
        segment = item.hierarchy.segment_at(level, *evt.index)
        return (*run_search(view, held, view.selected, level, segment, top_k), "")

    @keeps_session(6)
    def search_api(held, image_index=0, level=2, x=0.0, y=0.0, top_k=10):
        """Rank every segment of `level` across the collection by similarity to the segment under (x, y) of image
        `image_index` (in that image's own pixels)."""
        view = memory.get(held)
        if view is None:
            raise Notice("Segment a collection first (/collection).")
        item = view.collection.item(int(image_index))
        segment = item.hierarchy.segment_at_original(int(level), float(x), float(y))  # OutOfRangeError names the image
        return (*run_search(view, held, int(image_index), int(level), segment, top_k), "")

    @keeps_session(2)
    def open_in_explore(held):
        view = memory.get(held)
        if view is None:
            raise Notice("Segment a collection first.")
        item = view.item()
        if item.source is None:
            raise Notice(f"{item.name} has no file to open")
        return gr.update(value=str(item.source)), gr.Tabs(selected="explore")

    @keeps_session(3)
    def score(held, masks):
        view = memory.get(held)
        if view is None or not masks:
            raise Notice("Segment a collection and upload its ground-truth masks.")
        mask_files = {}
        for path in map(Path, masks):
            if zipfile.is_zipfile(path):
                check_upload_size(path, caps and caps.max_zip_mb, "ZIP files")
                limits = caps.zip_limits() if caps else None
                contents = check_zip(path, limits)
                folder = scratch.new("masks", reserve_bytes=contents.image_bytes, reserve_files=len(contents.images) + 1)
                root = prepare_data_root(path, extract_dir=folder, limits=limits)
                mask_files.update({p.name: p for p in root.rglob("*.png")})
            else:
                check_upload_size(path, caps and caps.max_image_mb, "masks")
                check_image_pixels(path, caps and caps.max_image_megapixels)
                mask_files[path.name] = path
        per_image, mean, best = collection_scores(view.collection, mask_files)
        levels = [f"level {lv}" for lv in range(len(mean))]
        table = {"headers": ["image", *levels], "data": scores_table(per_image, mean)}
        return table, f"Best level over {len(per_image)} images: **{best.level}** ({best.level_name}), " \
                      f"mean best-match IoU {best.mean_best_iou:.3f}", ""

    @keeps_session(2)
    def export(held):
        view = memory.get(held)
        if view is None:
            raise Notice("Nothing to export yet: segment a collection first.")
        out = scratch.new("collection-export")
        writer = CollectionWriter(out / "collection_export")
        for item, stem in zip(view.collection.items, export_stems(view.collection.names())):
            writer.add(item.index, item.name, stem, item.hierarchy, item.embeddings)
        writer.close()
        merge_collection(out / "collection_export")
        archive = out / "cast_collection.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted((out / "collection_export").rglob("*")):
                if path.is_file() and "parts" not in path.parts:
                    zf.write(path, path.relative_to(out))
        return str(archive), ""

    outputs = [state, gallery_out, summary, selected_out, areas_plot, confidence_plot, stability_plot, records_json]
    run_btn.click(segment_collection, [files_in, explore.model_in, batch_in, stability_in, level_in, visitors.state, state],
                  [*outputs, coll_notice], api_name="collection")
    for control in (level_in, view_in):
        control.change(change_view, [state, level_in, view_in], [state, gallery_out, selected_out, coll_notice],
                       api_visibility="private", show_progress="hidden")
    gallery_out.select(pick, [state], [state, selected_out, heat_out, coll_notice], api_visibility="private")
    search_out = [state, selected_out, heat_out, results_out, hits_json, coll_notice]
    selected_out.select(click_segment, [state, topk_in], search_out, api_visibility="private")
    image_index = gr.Number(0, precision=0, visible=False)
    x_in, y_in = gr.Number(0, visible=False), gr.Number(0, visible=False)
    gr.Button(visible=False).click(search_api, [state, image_index, level_in, x_in, y_in, topk_in], search_out,
                                   api_name="search")
    open_btn.click(open_in_explore, [state], [explore.image_in, tabs], api_visibility="private")
    gt_in.change(score, [state, gt_in], [gt_table, gt_best, coll_notice], api_visibility="private")
    export_btn.click(export, [state], [export_file, coll_notice], api_name="export_collection")
