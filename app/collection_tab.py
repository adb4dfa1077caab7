"""The Collection tab: saved collections (the host's, `--collection PATH` / CAST_COLLECTIONS, and a visitor's
own uploads, saved in the same format), a gallery that pages, sorts and filters, segment search across the
collection, stability, statistics, ground-truth scores, and "Open in Explore". Thin over cast.collection.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr
import numpy as np

from cast.collection import Collection, CollectionError, collection_figures, collection_scores, is_collection
from cast.collection import open_collection, segment_collection
from cast.collection.browse import SORT_KEYS, gallery_page, thumbnail
from cast.collection.format import read_manifest
from cast.collection.stats import scores_table
from cast.datasets import IMAGE_SUFFIXES, prepare_data_root, scan_images
from cast.errors import CastError
from cast.export.collection import collection_zip
from cast.image import ModelInput
from cast.render import Selection, render, segment_crop, value_view
from cast.segmenter import Segmenter, SegmentResult

from .config import AppConfig
from .explore_tab import ExploreControls, ensure_model
from .models import DEFAULT_KEY, ModelCatalog
from .notices import Notice, keeps_session
from .owners import Visitors, check_image_pixels, check_upload_size, check_zip
from .scratch import Scratch
from .session import ExplorerSession

THUMB_PIXELS = 256 * 256  # label maps of uploaded collections: open an image in Explore for full resolution
PAGE_SIZE = 48
VIEWS = [("filled colours", "fill"), ("stability", "stability"), ("parent confidence", "confidence")]
SORTS = [(label, key) for key, label in SORT_KEYS.items()]
UPLOAD_PREFIX = "collection"
OPEN_CACHE = 32  # collections kept open (each holds its image list; its arrays are memory-mapped)


def collection_paths(paths: Sequence[Path] = (), environ: dict[str, str] | None = None) -> list[Path]:
    """Saved collections the host offers: each of `paths` (`--collection PATH`), then every collection in the
    folder CAST_COLLECTIONS (the folder itself, or its subfolders). A path that is no collection is refused."""
    out = []
    for path in map(Path, paths):
        read_manifest(path)  # CollectionError: not a collection, damaged, or missing, said at start-up
        out.append(path)
    folder = (os.environ if environ is None else environ).get("CAST_COLLECTIONS")
    if folder:
        root = Path(folder)
        if not root.is_dir():
            raise CollectionError(f"CAST_COLLECTIONS={folder}: not a folder")
        out += [root] if is_collection(root) else sorted(p for p in root.iterdir() if p.is_dir() and is_collection(p))
    return out


@dataclass
class CollectionLibrary:
    """The collections this app lists: the host's (read-only, opened once and shared by every session) and
    the ones built from uploads, saved in the scratch space (hosted: each visitor sees only their own)."""

    host: list[Path]
    scratch: Scratch
    hosted: bool
    _opened: dict[Path, tuple[float, Collection]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def choices(self, owner: str | None) -> list[tuple[str, str]]:
        """(label, key) of every collection this visitor may open: the host's, then their own uploads."""
        out = [(f"{path.name} (saved)", f"host:{i}") for i, path in enumerate(self.host)]
        root = self.scratch.root
        prefix = f"{UPLOAD_PREFIX}-{self._owner_tag(owner)}-" if self.hosted else f"{UPLOAD_PREFIX}-"
        if root.is_dir():
            own = sorted((p for p in root.iterdir() if p.name.startswith(prefix) and is_collection(p)),
                         key=lambda p: p.stat().st_mtime, reverse=True)
            out += [(f"upload of {_when(p)}", f"own:{p.name}") for p in own]
        return out

    def new_folder(self, owner: str | None) -> Path:
        """A fresh folder in the scratch space for a collection built from uploads (expires with the scratch)."""
        return self.scratch.new(f"{UPLOAD_PREFIX}-{self._owner_tag(owner)}")

    def open(self, key: str, owner: str | None) -> Collection:
        """The collection behind a key (opened once; again when a run changed it)."""
        path = self._path(key, owner)
        stamp = (path / "collection.json").stat().st_mtime if (path / "collection.json").is_file() else 0.0
        with self._lock:
            cached = self._opened.get(path)
            if cached is None or cached[0] != stamp:
                cached = (stamp, open_collection(path))
                self._opened.pop(path, None)
                self._opened[path] = cached
                while len(self._opened) > OPEN_CACHE:  # the least recently opened go first
                    self._opened.pop(next(iter(self._opened)))
            return cached[1]

    def key_of(self, folder: Path) -> str:
        return f"own:{folder.name}" if folder.parent == self.scratch.root else f"host:{self.host.index(folder)}"

    def _path(self, key: str, owner: str | None) -> Path:
        kind, _, name = str(key or "").partition(":")
        if kind == "host" and name.isdigit() and int(name) < len(self.host):
            return self.host[int(name)]
        prefix = f"{UPLOAD_PREFIX}-{self._owner_tag(owner)}-" if self.hosted else f"{UPLOAD_PREFIX}-"
        if kind == "own" and name.startswith(prefix) and "/" not in name and (self.scratch.root / name).is_dir():
            return self.scratch.root / name
        raise Notice("That collection is not available (uploads expire after a while): choose another one.")

    @staticmethod
    def _owner_tag(owner: str | None) -> str:
        return hashlib.sha256(str(owner or "anyone").encode()).hexdigest()[:12]


def _when(path: Path) -> str:
    return time.strftime("%H:%M:%S", time.localtime(path.stat().st_mtime))


@dataclass
class CollectionView:
    """One visitor's open collection and what they are looking at in it (kept in a gr.State)."""

    key: str
    collection: Collection
    selected: int = 0
    level: int = 2
    view: str = "fill"
    sort: str = "name"
    descending: bool = False
    minimum: float | None = None
    page: int = 0
    shown: tuple[int, ...] = ()  # image indices of the gallery page on screen
    query: tuple[int, int] | None = None  # (level, segment) of the last search in the selected image
    gt_scores: dict[int, float] = field(default_factory=dict)


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
            folder = scratch.new("upload", reserve_bytes=contents[path].image_bytes,
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


# ---------------------------------------------------------------- pictures and records (no Gradio)
def gallery(view: CollectionView) -> tuple[CollectionView, list[tuple[np.ndarray, str]], str]:
    """The current page's thumbnails with captions, and a line saying where the page lies."""
    c = view.collection
    page = gallery_page(c, view.level, view.sort, descending=view.descending, minimum=view.minimum, page=view.page,
                        page_size=PAGE_SIZE, scores=view.gt_scores)
    view = dataclasses.replace(view, page=page.page, shown=tuple(int(i) for i in page.indices))
    label = SORT_KEYS[view.sort]
    items = []
    for index, value in zip(page.indices, page.values):
        caption = c.item(index).name if view.sort == "name" else \
            f"{'–' if not np.isfinite(value) else f'{value:.3g}'} · {c.item(index).name}"  # the value stays visible
        items.append((thumbnail(c, int(index), view.level, view.view), caption))
    title = c.name if view.key.startswith("host:") else "your upload"  # scratch folder names mean nothing
    where = (f"**{title}** — {len(c):,} images · page {page.page + 1} of {page.pages} · sorted by {label}"
             f"{'' if page.matching == len(c) else f' ({page.matching:,} pass the filter)'} · {c.settings.describe()}")
    return view, items, where


def selected_picture(view: CollectionView) -> np.ndarray:
    h = view.collection.hierarchy(view.selected)
    mode = view.view if (view.view != "stability" or h.stability is not None) else "fill"
    selection = Selection(*view.query) if view.query is not None and mode == "fill" else None
    return render(h, mode, min(view.level, h.num_levels - 1), selection=selection)


def search_outputs(view: CollectionView, hits, level: int, centre: bool) -> tuple[list, np.ndarray]:
    """(crops of the hits with captions, similarity heat map over the query image)."""
    crops = []
    for rank, hit in enumerate(hits, 1):
        other = view.collection.hierarchy(hit.image_index)
        crop = segment_crop(other.image, other.labels(level), hit.segment)
        crops.append((crop, f"#{rank} {hit.image} L{level}:s{hit.segment:02d} — {hit.similarity:.3f}"))
    h = view.collection.hierarchy(view.selected)
    per_segment = view.collection.similarities(view.selected, level, hits[0].segment, centre)
    finite = per_segment[np.isfinite(per_segment)]
    low = float(finite.min()) if len(finite) else -1.0  # stretched over this image's range: red least, green most
    heat = value_view(h.image, h.labels(level), per_segment, opacity=0.75, low=low,
                      high=max(low + 1e-6, float(finite.max()) if len(finite) else 1.0))
    return crops, heat


def summary_records(collection: Collection) -> list[dict[str, Any]]:
    """What an API client gets back per image: index, name, segments per level."""
    return [{"image_index": i, "image": item.name, "segments_per_level": list(item.segments)}
            for i, item in enumerate(collection.items)]


def saved_session(collection: Collection, index: int) -> ExplorerSession:
    """An Explore session on the saved hierarchy of one image: shown at once, nothing recomputed."""
    h = collection.hierarchy(index)
    geometry = h.provenance.input if h.provenance is not None else None
    model_input = ModelInput(np.zeros((0, 0, 3), np.uint8),
                             tuple(geometry.crop_box_xyxy) if geometry else (0, 0, h.shape[1], h.shape[0]),
                             tuple(geometry.original_hw) if geometry else h.shape)
    result = SegmentResult(h, model_input, h.superpixels, None, {})
    summary = f"saved in collection {collection.name}: {collection.settings.describe()}"
    return ExplorerSession.create(result, summary)


# ---------------------------------------------------------------- the tab
def build_collection_tab(catalog: ModelCatalog, config: AppConfig, explore: ExploreControls,
                         visitors: Visitors, tabs: gr.Tabs, demo: gr.Blocks,
                         collections: Sequence[Path] = (), naming: Any = None) -> None:
    """Add the Collection tab to the current Blocks and wire its events (/collection and /search among them)."""
    caps = config.limits if config.hosted else None
    scratch = config.scratch()
    library = CollectionLibrary([Path(p) for p in collections], scratch, config.hosted)
    first = library.choices(None)[0][1] if library.host else None
    state = gr.State(None, time_to_live=config.session_ttl_s())
    gr.Markdown("Open a saved collection (`cast segment … --out DIR`, then `cast-explorer --collection DIR`) or "
                "segment uploads into a new one; click a segment to find similar parts in the other images (cosine "
                "similarity of CAST's own segment embeddings at that level). Stability scores each segment by how it "
                "comes back under a flip, other superpixel counts, noise and JPEG re-encoding (6 runs per image).")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            with gr.Row():
                pick_in = gr.Dropdown(library.choices(None), value=first, label="Saved collections",
                                      allow_custom_value=True, elem_id="coll_pick", scale=4)
                refresh_btn = gr.Button("↻", size="sm", scale=1, min_width=40, elem_id="coll_refresh")
            with gr.Accordion("…or segment uploads into a new collection", open=not library.host):
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
            with gr.Row():
                sort_in = gr.Dropdown(SORTS, value="name", label="Sort by", elem_id="coll_sort")
                descending_in = gr.Checkbox(False, label="Descending", elem_id="coll_desc")
            minimum_in = gr.Textbox("", label="Only images whose sort value is at least (empty: every image)",
                                    placeholder="e.g. 0.6", elem_id="coll_min")
            topk_in = gr.Slider(1, 30, value=12, step=1, label="Matches to show")
            own_in = gr.Checkbox(False, label="Also rank the query image's own segments", elem_id="coll_own")
            centre_in = gr.Checkbox(False, label="Centre each image's embeddings (subtract its mean segment)",
                                    elem_id="coll_centre")
            export_btn = gr.Button("Export the collection (ZIP)")
            export_file = gr.File(label="Collection export", interactive=False)
        with gr.Column(scale=3):
            with gr.Row():
                prev_btn = gr.Button("◀ previous page", size="sm", elem_id="coll_prev")
                page_md = gr.Markdown("", elem_id="coll_page")
                next_btn = gr.Button("next page ▶", size="sm", elem_id="coll_next")
            gallery_out = gr.Gallery(label="Collection (click an image to search in it)", columns=8, height=320,
                                     allow_preview=False, elem_id="coll_gallery")
            with gr.Row():
                selected_out = gr.Image(label="Selected image: click a segment", type="numpy", interactive=False,
                                        elem_id="coll_selected")
                heat_out = gr.Image(label="Similarity to the clicked segment (red: least, green: most, in this image)",
                                    type="numpy", interactive=False, elem_id="coll_heat")
            open_btn = gr.Button("Open this image in Explore", elem_id="coll_open")
            results_out = gr.Gallery(label="Most similar segments (the query first)", columns=6, height=260,
                                     allow_preview=False, elem_id="coll_results")
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

    def shown(view: CollectionView) -> tuple:
        """Everything that changes when another collection is opened."""
        view, items, where = gallery(view)
        c = view.collection
        text = f"**{len(c):,} images** · {c.settings.describe()}" + (f" · {c.manifest.failed} failed" if c.manifest.failed else "")
        return (view, items, text, where, selected_picture(view), *figures(view), summary_records(c))

    def current(view: CollectionView | None, key: str | None, owner: str | None) -> CollectionView:
        """The collection `key` names, else the session's, else the host's first: a new session needs no
        /collection or /open_collection before /search."""
        if view is not None and (not key or key == view.key):
            return view
        key = key or first
        if not key:
            raise Notice("Open a saved collection or segment one first (/collection).")
        return CollectionView(key, library.open(key, owner))

    outputs = [state, gallery_out, summary, page_md, selected_out, areas_plot, confidence_plot, stability_plot,
               records_json]

    @keeps_session(len(outputs) + 2)
    def segment_uploads(paths, model_key=DEFAULT_KEY, batch_size=8, stability=False, level=2, token=None,
                        request: gr.Request = None, progress=gr.Progress()):
        owner = visitors.owner(token, request)
        files, names = gather_files(paths, caps, scratch)
        handle = ensure_model(catalog, model_key or DEFAULT_KEY, progress, owner)
        segmenter = Segmenter(handle.model, max_output_pixels=THUMB_PIXELS)
        folder = library.new_folder(owner)
        report = segment_collection(segmenter, files, folder, names=names, batch_size=int(batch_size),
                                    stability=bool(stability), record_sources=False,
                                    progress=lambda done, total, name: progress(done / total, desc=f"{done}/{total}: {name}"))
        if not report.ok:
            raise CastError("no image of the upload could be segmented: " +
                            "; ".join(f"{r.name}: {r.message}" for r in report.failed[:3]))
        key = library.key_of(folder)
        view = CollectionView(key, library.open(key, owner), level=int(level))
        result = shown(view)
        failed = f" · {len(report.failed)} failed ({report.failed[0].name}: {report.failed[0].message})" if report.failed else ""
        return (*result[:2], result[2] + failed, *result[3:], gr.update(choices=library.choices(owner), value=key), "")

    @keeps_session(len(outputs) + 1)
    def open_saved(key, level, token=None, request: gr.Request = None):
        if not key:
            return (*([gr.skip()] * len(outputs)), "")
        view = CollectionView(key, library.open(key, visitors.owner(token, request)), level=int(level))
        return (*shown(view), "")

    def refresh_choices(token=None, request: gr.Request = None):
        return gr.update(choices=library.choices(visitors.owner(token, request)))

    def regallery(view: CollectionView) -> tuple:
        view, items, where = gallery(view)
        return view, items, where, selected_picture(view), ""

    @keeps_session(5)
    def settle(view, level, mode, sort, descending, minimum):
        if view is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), ""
        try:
            threshold = float(minimum) if str(minimum or "").strip() else None
        except ValueError as err:
            raise Notice(f"The filter needs a number, not {minimum!r}.") from err
        return regallery(dataclasses.replace(view, level=int(level), view=mode, sort=sort, descending=bool(descending),
                                             minimum=threshold, page=0, query=None))

    @keeps_session(5)
    def turn_page(view, step):
        if view is None:
            raise Notice("Open or segment a collection first.")
        return regallery(dataclasses.replace(view, page=view.page + int(step)))

    @keeps_session(4)
    def pick(view, evt: gr.SelectData):
        if view is None:
            raise Notice("Open or segment a collection first.")
        view = dataclasses.replace(view, selected=view.shown[int(evt.index)], query=None)
        return view, selected_picture(view), None, ""

    def run_search(view: CollectionView, image_index: int, level: int, segment: int, top_k: int, own: bool,
                   centre: bool):
        view = dataclasses.replace(view, selected=int(image_index), level=int(level), query=(int(level), int(segment)))
        hits = view.collection.search(int(image_index), int(level), segment=int(segment), top_k=int(top_k),
                                      include_query_image=bool(own), centre=bool(centre))
        crops, heat = search_outputs(view, hits, int(level), bool(centre))
        return view, selected_picture(view), heat, crops, [h.to_dict() for h in hits]

    @keeps_session(6)
    def click_segment(view, top_k, own, centre, evt: gr.SelectData):
        if view is None:
            raise Notice("Open or segment a collection first.")
        h = view.collection.hierarchy(view.selected)
        level = min(view.level, h.num_levels - 1)
        return (*run_search(view, view.selected, level, h.segment_at(level, *evt.index), top_k, own, centre), "")

    @keeps_session(6)
    def search_api(view, image_index=0, level=2, x=0.0, y=0.0, top_k=10, key=None, own=False, centre=False,
                   token=None, request: gr.Request = None):
        """Rank every segment of `level` across the collection by similarity to the segment under (x, y) of image
        `image_index` (in that image's own pixels): the query first, then other images' segments (`own` adds the
        query image's). `key`: a saved collection (default: the one open in this session, else the first)."""
        view = current(view, key, visitors.owner(token, request))
        item = view.collection.item(int(image_index))
        segment = view.collection.hierarchy(int(image_index)).segment_at_original(int(level), float(x), float(y))
        return (*run_search(view, int(image_index), int(level), segment, top_k, own, centre), "")

    @keeps_session(len(explore.view_outputs) + 2)
    def open_in_explore(view):
        if view is None:
            raise Notice("Open or segment a collection first.")
        return (*explore.show(saved_session(view.collection, view.selected)), gr.Tabs(selected="explore"), "")

    @keeps_session(4)
    def score(view, masks):
        if view is None or not masks:
            raise Notice("Open a collection and upload its ground-truth masks.")
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
        names = {name: i for i, name in enumerate(view.collection.names())}
        view = dataclasses.replace(view, gt_scores={names[n]: s[best.level].mean_best_iou for n, s in per_image.items()})
        levels = [f"level {lv}" for lv in range(len(mean))]
        table = {"headers": ["image", *levels], "data": scores_table(per_image, mean)}
        return view, table, f"Best level over {len(per_image)} images: **{best.level}** ({best.level_name}), " \
                            f"mean best-match IoU {best.mean_best_iou:.3f} (sort by ground-truth IoU to browse them)", ""

    @keeps_session(2)
    def export(view):
        if view is None:
            raise Notice("Nothing to export yet: open or segment a collection first.")
        if config.hosted and not view.key.startswith("own:"):
            raise Notice("The host's collections are not exported from a hosted app; export your own uploads.")
        archive = scratch.new("collection-export") / f"{view.collection.name}.zip"
        return str(collection_zip(view.collection.folder, archive)), ""

    run_btn.click(segment_uploads, [files_in, explore.model_in, batch_in, stability_in, level_in, visitors.state],
                  [*outputs, pick_in, coll_notice], api_name="collection")
    pick_in.input(open_saved, [pick_in, level_in, visitors.state], [*outputs, coll_notice], api_name="open_collection")
    refresh_btn.click(refresh_choices, [visitors.state], [pick_in], api_visibility="private")
    pick_in.focus(refresh_choices, [visitors.state], [pick_in], api_visibility="private")
    gallery_outputs = [state, gallery_out, page_md, selected_out, coll_notice]
    for control in (level_in, view_in, sort_in, descending_in, minimum_in):
        (control.submit if control is minimum_in else control.change)(settle, [state, level_in, view_in, sort_in, descending_in, minimum_in], gallery_outputs,
                       api_visibility="private", show_progress="hidden")
    prev_btn.click(turn_page, [state, gr.Number(-1, visible=False)], gallery_outputs, api_visibility="private")
    next_btn.click(turn_page, [state, gr.Number(1, visible=False)], gallery_outputs, api_visibility="private")
    gallery_out.select(pick, [state], [state, selected_out, heat_out, coll_notice], api_visibility="private")
    search_out = [state, selected_out, heat_out, results_out, hits_json, coll_notice]
    selected_out.select(click_segment, [state, topk_in, own_in, centre_in], search_out, api_visibility="private")
    image_index = gr.Number(0, precision=0, visible=False)
    x_in, y_in = gr.Number(0, visible=False), gr.Number(0, visible=False)
    key_in = gr.Textbox("", visible=False)  # /search: a saved collection's key; empty: this session's, else the first
    gr.Button(visible=False).click(search_api, [state, image_index, level_in, x_in, y_in, topk_in, key_in, own_in,
                                                centre_in, visitors.state], search_out, api_name="search")
    open_btn.click(open_in_explore, [state], [*explore.view_outputs, tabs, coll_notice], api_visibility="private")
    gt_in.change(score, [state, gt_in], [state, gt_table, gt_best, coll_notice], api_visibility="private")
    export_btn.click(export, [state], [export_file, coll_notice], api_name="export_collection")
    if naming is not None:  # "find segments that look like …" and /search_text (app/naming_panel.py)
        from .naming_panel import build_text_search

        build_text_search(naming, state, level_in, topk_in)
    if first:  # every new page shows the host's first collection at once
        demo.load(open_saved, [pick_in, level_in, visitors.state], [*outputs, coll_notice], api_visibility="private")
