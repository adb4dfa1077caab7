"""A collection: many images through one Segmenter (batched where token counts allow), each kept with its
hierarchy at a modest resolution and CAST's segment embeddings for search."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import CastError
from ..hierarchy import Hierarchy
from ..model import CastOutput
from ..segmenter import Segmenter

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
class Collection:
    """Segmented images in input order, the ones that failed (name, message), and what produced them."""

    items: list[CollectionItem]
    failures: list[tuple[str, str]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def index(self):
        """The segment search index over every item (built on first use)."""
        from .search import SegmentIndex

        return SegmentIndex.build(self.items)

    def item(self, index: int) -> CollectionItem:
        if not 0 <= index < len(self.items):
            raise CastError(f"image index {index} is outside this collection (0..{len(self.items) - 1})")
        return self.items[index]

    def names(self) -> list[str]:
        return [item.name for item in self.items]


def build_collection(
    segmenter: Segmenter,
    sources: Sequence[Any],
    *,
    names: Sequence[str] | None = None,
    batch_size: int = 8,
    stability: Callable[[Any, Hierarchy], tuple[np.ndarray, ...]] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> Collection:
    """Segment every source (paths, bytes, arrays) with `segmenter`, batched where token counts allow.

    Results equal one-at-a-time runs (Segmenter.run_many). `stability(source, hierarchy)` adds a stability
    score per segment (cast.collection.stability); `progress(done, total, name)` is called per image.
    Unreadable images are listed in `failures`, never fatal.
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
    return Collection(items, failures, provenance)


def _name_of(source: Any, index: int) -> str:
    return Path(source).name if isinstance(source, (str, Path)) else f"image_{index:04d}"
