"""A collection in memory: many images through one Segmenter (batched where token counts allow), each kept with
its hierarchy and CAST's segment embeddings. For a handful of images in a notebook; saved collections
(cast.collection.store, `cast segment`) hold thousands and reopen without recomputation."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import CastError, OutOfRangeError
from ..hierarchy import Hierarchy
from ..model import CastOutput
from ..segmenter import Segmenter
from .search import SearchHit, SegmentIndex
from .tables import SEGMENT_DTYPE, segment_table

COLLECTION_MAX_PIXELS = 512 * 512  # label maps of a collection item; open an image alone for full resolution


def segment_embeddings(output: CastOutput | torch.Tensor) -> tuple[np.ndarray, ...]:
    """CAST's embedding of every segment id of every level, (K_l, C) float32 each, of one image.

    Level 0 (superpixels): the superpixel tokens after stage 1's blocks; level l >= 1: the tokens that
    stage l's graph pooling produced for its K_l segments (spec §2.6). The ViT baseline has none (empty).
    """
    if not isinstance(output, CastOutput):
        return ()
    levels = [output.blocks[0][0]] + [c[0] for c in output.centroids]
    return tuple(t.detach().float().cpu().numpy() for t in levels)


def present_embeddings(hierarchy: Hierarchy, embeddings: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(present segment ids, their (n, C) float32 rows) per level: what a collection indexes of one image."""
    rows = []
    for level, vectors in enumerate(embeddings):
        ids = hierarchy.segment_ids(level)
        ids = ids[ids < len(vectors)]
        rows.append((ids.astype(np.int32), np.asarray(vectors[ids], dtype=np.float32)))
    return rows


@dataclass
class CollectionItem:
    """One image of a collection: its hierarchy, CAST's segment embeddings, where it came from."""

    index: int
    name: str
    hierarchy: Hierarchy
    embeddings: tuple[np.ndarray, ...]
    source: Path | None = None  # the original file, to open the image alone at full resolution
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class MemoryCollection:
    """Segmented images in input order, the ones that failed (name, message), and what produced them."""

    items: list[CollectionItem]
    failures: list[tuple[str, str]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def index(self) -> SegmentIndex:
        """The segment search index over every item (built on first use)."""
        return SegmentIndex.from_arrays(self.names(), [present_embeddings(i.hierarchy, i.embeddings) for i in self.items])

    def __len__(self) -> int:
        return len(self.items)

    def item(self, index: int) -> CollectionItem:
        if not 0 <= index < len(self.items):
            raise CastError(f"image index {index} is outside this collection (0..{len(self.items) - 1})")
        return self.items[index]

    def names(self) -> list[str]:
        return [item.name for item in self.items]

    @property
    def num_levels(self) -> int:
        return max((item.hierarchy.num_levels for item in self.items), default=0)

    @property
    def level_names(self) -> list[str]:
        first = self.items[0].hierarchy if self.items else None
        return [first.level_name(level) for level in range(first.num_levels)] if first else []

    def hierarchy(self, index: int) -> Hierarchy:
        return self.item(index).hierarchy

    def search(self, image_index: int, level: int, x: float | None = None, y: float | None = None, *,
               segment: int | None = None, top_k: int = 10, include_query_image: bool = False,
               centre: bool = False) -> list[SearchHit]:
        """Like :meth:`cast.collection.Collection.search`."""
        if segment is None:
            segment = query_segment(self.hierarchy(image_index), self.item(image_index).name, level, x, y)
        return self.index.search(image_index, level, segment, top_k, include_query_image=include_query_image,
                                 centre=centre)

    def segment_table(self, level: int) -> np.ndarray:
        """Every present segment of `level` in every image (cast.collection.tables.SEGMENT_DTYPE)."""
        return np.concatenate([segment_table(item.hierarchy, level, item.index) for item in self.items
                               if level < item.hierarchy.num_levels] or [np.zeros(0, SEGMENT_DTYPE)])


def query_segment(hierarchy: Hierarchy, name: str, level: int, x: float | None, y: float | None) -> int:
    """The segment of `level` under (x, y), in pixels of the original image."""
    if x is None or y is None:
        raise CastError("say which segment to search for: x= and y= (pixels of the original image) or segment=")
    try:
        return hierarchy.segment_at_original(level, float(x), float(y))
    except OutOfRangeError as err:  # say which image, once
        if name in str(err):
            raise
        raise OutOfRangeError(f"{name}: {err}") from err


def build_collection(
    segmenter: Segmenter,
    sources: Sequence[Any],
    *,
    names: Sequence[str] | None = None,
    batch_size: int = 8,
    stability: Callable[[Any, Hierarchy], tuple[np.ndarray, ...]] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> MemoryCollection:
    """Segment every source (paths, bytes, arrays) with `segmenter` into memory, batched where token counts allow.

    Results equal one-at-a-time runs (Segmenter.run_many). `stability(source, hierarchy)` adds a stability
    score per segment (cast.collection.stability); `progress(done, total, name)` is called per image.
    Unreadable images are listed in `failures`, never fatal. To save a collection, use `segment_collection`.
    """
    names = list(names) if names is not None else [_name_of(s, i) for i, s in enumerate(sources)]
    items: list[CollectionItem] = []
    failures: list[tuple[str, str]] = []
    start = time.perf_counter()
    for position, result in segmenter.run_many(sources, names=names, batch_size=batch_size):
        name = names[position]
        if isinstance(result, CastError):
            failures.append((name, str(result)))
        else:
            hierarchy = result.hierarchy
            if stability is not None:
                try:
                    hierarchy = hierarchy.with_stability(stability(sources[position], hierarchy))
                except CastError as err:
                    failures.append((name, f"stability not measured: {err}"))
            source = Path(sources[position]) if isinstance(sources[position], (str, Path)) else None
            items.append(CollectionItem(len(items), name, hierarchy, segment_embeddings(result.output), source,
                                        dict(result.timings_ms)))
        if progress is not None:
            progress(position + 1, len(sources), name)
    provenance = {"images": len(items), "failed": len(failures), "seconds": round(time.perf_counter() - start, 3),
                  "batch_size": batch_size, "model_variant": segmenter.model.config.name}
    return MemoryCollection(items, failures, provenance)


def _name_of(source: Any, index: int) -> str:
    return Path(source).name if isinstance(source, (str, Path)) else f"image_{index:04d}"
