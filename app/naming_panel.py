"""Naming in the app: "Name the segments" in Explore (/name_segments) and "find segments that look like …"
in Collection (/search_text). Thin callbacks over cast.naming.

The CLIP model is the server's (`CAST_CLIP_MODEL`, default OpenAI's ViT-B/16): a request cannot choose it.
Its weights are fetched on the first naming request (never at start-up), with progress; when they cannot
be had, the request says why and the rest of the app keeps working. Hosted mode caps the vocabulary, the
search text and the CLIP passes of one request.
"""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import gradio as gr
import numpy as np

from cast.errors import ClipModelError
from cast.naming import (
    ClipModelCache,
    ClipModelSpec,
    HierarchyNames,
    SegmentNamer,
    TextSearchCache,
    VocabularyLimits,
    clip_spec,
)
from cast.render import figure_data, segment_crop, with_names
from cast.weights.hub import DownloadProgress

from .config import AppConfig
from .notices import Notice, keeps_session, redact_paths
from .owners import check_upload_size

PRESETS = [("PartImageNet: 11 objects, 40 parts (the paper's)", "partimagenet"), ("COCO: 80 objects", "coco"),
           ("ImageNet-1k: 1000 classes", "imagenet"), ("the text below", "typed")]  # fmt: skip
COARSEST, NEXT_FINER, NO_PARTS = "coarsest", "next finer", "none"


class NamingService:
    """The server's CLIP model (loaded on first use), one namer for it, the text-search indexes, the caps."""

    def __init__(self, config: AppConfig) -> None:
        self.hosted = config.hosted
        caps = config.limits
        self.limits = VocabularyLimits(caps.max_vocabulary_chars, caps.max_vocabulary_objects, caps.max_vocabulary_parts) \
            if config.hosted else VocabularyLimits()
        self.max_segments = caps.max_named_segments if config.hosted else None
        self.max_text = caps.max_search_text_chars
        # text search encodes every segment of one level once per collection: hosted, at most 32 per image
        # (level 2 of CAST) over the largest collection a visitor may upload
        self.max_search_segments = 32 * caps.max_collection_images if config.hosted else None
        self.max_image_mb = caps.max_image_mb if config.hosted else None
        self._spec_error: str | None = None
        try:
            self.spec: ClipModelSpec | None = clip_spec()  # from the environment only, never from a request
        except ClipModelError as err:
            self.spec, self._spec_error = None, str(err)
        self.clips = ClipModelCache()
        self.searches = TextSearchCache()
        self._namer: SegmentNamer | None = None
        self._lock = threading.Lock()

    def public(self, text: str) -> str:
        """`text` as visitors may see it: a `local-dir:` CLIP folder by its name, no server path anywhere."""
        if self.spec is not None and self.spec.kind == "local-dir":
            text = text.replace(str(self.spec), f"local-dir:{Path(self.spec.target).name}")
        return redact_paths(text)

    def describe(self) -> str:
        if self.spec is None:
            return self.public(f"CLIP model setting is invalid: {self._spec_error}")
        state = "loaded" if self.clips.loaded(self.spec) else "fetched on first use into the Hugging Face cache"
        return self.public(f"CLIP model: `{self.spec}` ({state}; the server's CAST_CLIP_MODEL)")

    def namer(self, progress: gr.Progress | None = None) -> SegmentNamer:
        """The namer of the server's CLIP model; its weights are fetched now if needed (with progress)."""
        if self.spec is None:
            raise Notice(self.public(f"Naming is unavailable: {self._spec_error}"))

        def report(p: DownloadProgress) -> None:
            if progress is not None:
                progress(p.fraction or 0.0, desc=f"Downloading {p.name} ({p.downloaded / 1e6:.0f} MB)")

        with self._lock:  # one load at a time; later requests wait for it, then share it
            try:
                clip = self.clips.get(self.spec, progress=report)
            except ClipModelError as err:
                raise Notice(self.public(f"Naming is unavailable: {err}")) from err
            if self._namer is None or self._namer.clip is not clip:
                self._namer = SegmentNamer(clip, batch_size=8)
            return self._namer


def _level(choice: Any, default: int | None) -> int | None:
    if choice in (None, "", COARSEST, NEXT_FINER):
        return default
    if choice == NO_PARTS:
        return None
    try:
        return int(float(choice))
    except (TypeError, ValueError):
        raise Notice(f"a level must be a number, got {choice!r}") from None


def name_session(service: NamingService, session: Any, vocabulary: str, object_level: Any = None,
                 part_level: Any = None, progress: Callable | None = None) -> Any:
    """The ExplorerSession with names for its object level (default: the coarsest) and part level
    (default: the next finer; "none" for objects only), its tree figures carrying the names."""
    names = _names_only(service, session, vocabulary, object_level, part_level, progress)
    hierarchy = session.hierarchy
    labels = {f"L{r.level}:s{r.segment:02d}": f"{r.name} ({r.score:.2f})" for r in names.records}
    figures = with_names(session.figures or figure_data(hierarchy), labels)
    return dataclasses.replace(session, names=names, figures=figures).with_view(view="named", level=names.object_level)


def _names_only(service: NamingService, session: Any, vocabulary: str, object_level: Any = None,
                part_level: Any = None, progress: Callable | None = None) -> HierarchyNames:
    if session is None:
        raise Notice("Segment an image first, then name its segments.")
    if not str(vocabulary or "").strip():
        raise Notice("Choose a vocabulary preset or type one, e.g. 'cat: head, ear, tail; car: wheel, door'.")
    hierarchy = session.hierarchy
    coarsest = hierarchy.num_levels - 1
    obj = _level(object_level, coarsest)
    parts = _level(part_level, obj - 1 if obj - 1 >= 1 else None) if part_level != NO_PARTS else None
    namer = service.namer(progress)
    report = (lambda f, msg: progress(f, desc=msg)) if progress is not None else None
    return namer.name_hierarchy(hierarchy, vocabulary, object_level=obj, part_levels=[] if parts is None else [parts],
                                limits=service.limits, max_segments=service.max_segments, progress=report)


def name_records(names: HierarchyNames | None) -> list[dict[str, Any]]:
    """The /name_segments answer: one record per named segment."""
    return [] if names is None else [r.to_dict() for r in names.records]


@dataclass
class NamingControls:
    vocabulary: gr.Textbox
    button: gr.Button


def build_naming_panel(service: NamingService, session_state: gr.State, picture: gr.Image, view_in: gr.Dropdown,
                       level_in: gr.Slider, refresh_outputs: list, refresh: Callable,
                       segment_file: Callable[[str, str], Any] | None = None, memory: Any = None) -> NamingControls:
    """The "Name the segments" accordion of Explore, its /name_segments endpoint and, with `segment_file`
    (path, name -> Hierarchy with the default model), the one-call /name_image endpoint for agents.

    `refresh(session, held)` gives the values of `refresh_outputs` (the Explore tab's picture, panel, trees
    ...); `memory` (app.memory.SessionMemory) holds the sessions whose tickets `session_state` keeps."""
    load = memory.get if memory is not None else (lambda held: held)
    store = (lambda session, held: memory.put(session, held, "explore")) if memory is not None else (lambda s, h: s)
    with gr.Accordion("Name the segments (zero-shot, CLIP)", open=False, elem_id="naming"):
        gr.Markdown("Names every segment of the object level with the vocabulary's objects (plus *Background*) "
                    "and of the part level with the parts of the object under it — the paper's PartImageNet "
                    f"protocol (spec §11). {service.describe()}", elem_id="naming_about")  # fmt: skip
        with gr.Row():
            preset_in = gr.Dropdown(PRESETS, value="partimagenet", label="Vocabulary", elem_id="naming_preset")
            object_in = gr.Dropdown([COARSEST, "4", "3", "2", "1"], value=COARSEST, label="Object level",
                                    elem_id="naming_object_level")
            part_in = gr.Dropdown([NEXT_FINER, NO_PARTS, "3", "2", "1", "0"], value=NEXT_FINER, label="Part level",
                                  elem_id="naming_part_level")
        text_in = gr.Textbox(label="…or type objects and their parts", lines=2, elem_id="naming_text",
                             placeholder="cat: head, ear, leg, tail; car: wheel, door, window; tree",
                             max_length=service.limits.max_text_length)
        name_btn = gr.Button("Name the segments", variant="secondary", elem_id="name_segments")
        records_json = gr.JSON(visible=False)
        naming_notice = gr.Markdown("", elem_id="naming_notice")

    def vocabulary_of(preset: str, text: str) -> str:
        if preset == "typed" or (text or "").strip():
            return text or ""
        return preset

    @keeps_session(len(refresh_outputs) + 3)
    def name_ui(held, preset, text, object_level, part_level, progress=gr.Progress()):
        named = name_session(service, load(held), vocabulary_of(preset, text), object_level, part_level, progress)
        count = len(named.names.records)
        message = service.public(f"Named {count} segments with {named.names.vocabulary.describe()} "
                                 f"({named.names.clip_model}). Click a segment to see its name, score and runner-ups.")
        return (*refresh(named, held), gr.update(value="named"), gr.update(value=named.view.level), message)

    name_btn.click(name_ui, [session_state, preset_in, text_in, object_in, part_in],
                   [*refresh_outputs, view_in, level_in, naming_notice], api_visibility="private")

    @keeps_session(3)
    def name_segments(held, vocabulary: str, object_level: float | None = None, part_level: float | None = None,
                 progress=gr.Progress()):
        """Name the segments of the current image zero-shot with CLIP (the paper's "by recognition" step).

        Args:
            vocabulary: a preset (partimagenet, coco, imagenet) or text such as "cat: head, ear; car: wheel".
            object_level: the level named with the vocabulary's objects (default: the coarsest).
            part_level: the level named with the parts of the object under each segment (default: the next
                finer; -1 for none).
        Returns one record per segment of those levels: level, segment, name, score, runner-ups.
        """
        part = NO_PARTS if part_level is not None and float(part_level) < 0 else part_level
        named = name_session(service, load(held), vocabulary, object_level, part, progress)
        return store(named, held), name_records(named.names), ""

    vocab_api = gr.Textbox(visible=False)
    obj_api, part_api = gr.Number(None, visible=False), gr.Number(None, visible=False)
    gr.Button(visible=False).click(name_segments, [session_state, vocab_api, obj_api, part_api],
                                   [session_state, records_json, naming_notice], api_name="name_segments")
    if segment_file is not None:
        @keeps_session(2)
        def name_image(image, vocabulary: str, object_level: float | None = None, part_level: float | None = None,
                       progress=gr.Progress()):
            """Segment an image with CAST and name its segments zero-shot with CLIP, in one call.

            Args:
                image: the image file.
                vocabulary: a preset (partimagenet, coco, imagenet) or text such as "cat: head, ear; car: wheel".
                object_level: the level named with the vocabulary's objects (default: the coarsest).
                part_level: the level named with the parts of the object under each segment (default: the
                    next finer; -1 for none).
            Returns one record per segment of those levels: level, segment, name, score, runner-ups.
            """
            if image is None:
                raise Notice("Give an image to name.")
            check_upload_size(image.path, service.max_image_mb, "images", image.name)
            hierarchy = segment_file(str(image.path), image.name)
            part = NO_PARTS if part_level is not None and float(part_level) < 0 else part_level
            session = SimpleNamespace(hierarchy=hierarchy)
            names = _names_only(service, session, vocabulary, object_level, part, progress)
            return name_records(names), ""

        from .components import OriginalImage

        image_api = OriginalImage(type="filepath", visible=False)
        gr.Button(visible=False).click(name_image, [image_api, vocab_api, obj_api, part_api],
                                       [records_json, naming_notice], api_name="name_image")
    return NamingControls(text_in, name_btn)


# ---------------------------------------------------------------- Collection: text search
class _CollectionImages:
    """(name, hierarchy) of every image of a collection, each hierarchy loaded only when asked for."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection

    def __len__(self) -> int:
        return len(self.collection.items)

    def __getitem__(self, index: int) -> tuple[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        if hasattr(self.collection, "hierarchy"):  # a saved collection: hierarchies load from its folder
            return self.collection.items[index].name, self.collection.hierarchy(index)
        item = self.collection.items[index]
        return item.name, item.hierarchy


def collection_images(view: Any) -> _CollectionImages:
    """(name, hierarchy) of every image of a Collection tab's state."""
    if view is None:
        raise Notice("Open or segment a collection first.")
    return _CollectionImages(getattr(view, "collection", view))


def rank_segments_by_text(service: NamingService, view: Any, text: str, level: Any, top_k: Any,
                progress: Callable | None = None) -> list[Any]:
    """Rank every segment of `level` across the collection by CLIP similarity to `text` (features built once)."""
    text = str(text or "")
    if len(text) > service.max_text:
        raise Notice(f"the search text has {len(text)} characters; at most {service.max_text} are allowed")
    images = collection_images(view)
    num_levels = max((h.num_levels for _, h in images), default=0)
    level, top_k = _whole_number(level, "level"), _whole_number(12 if top_k is None else top_k, "top_k")
    if not 1 <= level < num_levels:
        raise Notice(f"level must be a segment level, 1 to {num_levels - 1}, got {level}")
    if not 1 <= top_k <= MAX_TEXT_HITS:
        raise Notice(f"top_k must be 1 to {MAX_TEXT_HITS}, got {top_k}")
    if service.max_search_segments is not None:
        count = sum(len(h.segment_ids(level)) for _, h in images)
        if count > service.max_search_segments:
            raise Notice(f"level {level} has {count:,} segments in this collection; this app encodes at most "
                         f"{service.max_search_segments:,} for a text search: choose a coarser level")
    namer = service.namer(progress)
    report = (lambda f, msg: progress(f, desc=msg)) if progress is not None else None
    collection = getattr(view, "collection", view)
    index = service.searches.get(collection, level, namer, lambda: images, progress=report)
    return index.search(namer, text, top_k=top_k)


MAX_TEXT_HITS = 100


def _whole_number(value: Any, name: str) -> int:
    """A request's number as an int, or a Notice (NaN, infinities, fractions and text are refused)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Notice(f"{name} must be a whole number") from None
    if not number.is_integer():
        raise Notice(f"{name} must be a whole number")
    return int(number)


def hit_crops(view: Any, hits: list[Any]) -> list[tuple[np.ndarray, str]]:
    images = collection_images(view)
    out = []
    for hit in hits:
        hierarchy = images[hit.image_index][1]
        crop = segment_crop(hierarchy.image, hierarchy.labels(hit.level), hit.segment)
        out.append((crop, f"{hit.image} · L{hit.level}:s{hit.segment:02d} · {hit.similarity:.3f}"))
    return out


def build_text_search(service: NamingService, collection_state: gr.State, level_in: gr.Slider,
                      topk_in: gr.Slider) -> None:
    """The "find segments that look like …" box of the Collection tab and its /search_text endpoint."""
    with gr.Accordion("Find segments that look like … (CLIP text search)", open=True, elem_id="text_search"):
        with gr.Row():
            query_in = gr.Textbox(label="Text", placeholder="a head", scale=3, elem_id="search_text_in",
                                  max_length=service.max_text)
            search_btn = gr.Button("Search", scale=1, elem_id="search_text_btn")
        hits_gallery = gr.Gallery(label="Segments ranked by CLIP similarity to the text", columns=6, height=260,
                                  allow_preview=False, elem_id="search_text_results")
        hits_json = gr.JSON(visible=False)
        search_notice = gr.Markdown("", elem_id="search_text_notice")

    @keeps_session(3)
    def search_ui(view, text, level, top_k, progress=gr.Progress()):
        hits = rank_segments_by_text(service, view, text, level, top_k, progress)
        return hit_crops(view, hits), [h.to_dict() for h in hits], ""

    search_btn.click(search_ui, [collection_state, query_in, level_in, topk_in],
                     [hits_gallery, hits_json, search_notice], api_visibility="private")
    query_in.submit(search_ui, [collection_state, query_in, level_in, topk_in],
                    [hits_gallery, hits_json, search_notice], api_visibility="private")

    @keeps_session(2)
    def search_text(view, text: str, level: float = 3, top_k: float = 12, progress=gr.Progress()):
        """Find the segments of the collection that look like `text` (CLIP similarity of the masked segment).

        Args:
            text: what the segments should look like, e.g. "a head".
            level: the hierarchy level whose segments are ranked (default 3).
            top_k: how many segments to return (default 12).
        Returns records with image_index, image, segment, level, similarity, best first.
        """
        hits = rank_segments_by_text(service, view, text, 3 if level is None else level, 12 if top_k is None else top_k, progress)
        return [h.to_dict() for h in hits], ""

    text_api = gr.Textbox(visible=False)
    level_api, topk_api = gr.Number(3, visible=False), gr.Number(12, visible=False)
    gr.Button(visible=False).click(search_text, [collection_state, text_api, level_api, topk_api],
                                   [hits_json, search_notice], api_name="search_text")
