"""Text search across a collection: "find segments that look like …" ranks every segment of one level by
the CLIP similarity of its masked image to the text's prompt (`a photo of a {text}`).

The segment features are computed once per collection, level and CLIP model (`TextSearchIndex.build`,
through the namer's feature cache, so naming and search share them) and kept in one unit-norm matrix:
a query is one text feature (cached per prompt) and one matrix-vector product.
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..collection.search import SearchHit  # the same records as /search
from ..errors import VocabularyError
from ..hierarchy import Hierarchy
from .features import frame_image, frame_labels
from .namer import SegmentNamer

MAX_QUERY_LENGTH = 200


@dataclass(frozen=True)
class TextSearchIndex:
    """Unit-norm CLIP features of every present segment of one level over a collection's images."""

    clip_model: str
    level: int
    vectors: torch.Tensor  # (N, D) float32
    image_index: np.ndarray  # (N,) int
    segment: np.ndarray  # (N,) int
    names: tuple[str, ...]  # image names, by image index

    @classmethod
    def build(cls, namer: SegmentNamer, images: Sequence[tuple[str, Hierarchy]], level: int, *,
              progress: Callable[[float, str], None] | None = None) -> "TextSearchIndex":
        """Encode every segment of `level` of every (name, hierarchy) with an image (skipping those without)."""
        vectors, owners, segments, names = [], [], [], []
        for k, (name, hierarchy) in enumerate(images):  # each image once (a collection may load them lazily)
            names.append(name)
            if progress is not None:
                progress(k / max(1, len(images)), f"CLIP features of level {level}: image {k + 1}/{len(images)}")
            if hierarchy.image is None or not 0 <= level < hierarchy.num_levels:
                continue
            framed = frame_image(namer.clip, hierarchy.image, pad=True)
            labels = hierarchy.labels(level)
            features = namer.segment_features(framed, frame_labels(namer.clip, labels, pad=True))
            vectors.append(features.features)
            owners += [k] * len(features.segments)
            segments += list(features.segments)
        dim = vectors[0].shape[1] if vectors else 0
        return cls(namer.clip.id, level, torch.cat(vectors) if vectors else torch.zeros((0, dim)),
                   np.asarray(owners, np.int64), np.asarray(segments, np.int64), tuple(names))

    def __len__(self) -> int:
        return len(self.segment)

    def search(self, namer: SegmentNamer, text: str, top_k: int = 12) -> list[SearchHit]:
        """The `top_k` segments most similar to `text` (cosine similarity of CLIP features), best first."""
        text = " ".join(str(text or "").split())
        if not text:
            raise VocabularyError("type what the segments should look like, e.g. 'a head'")
        if len(text) > MAX_QUERY_LENGTH:
            raise VocabularyError(f"the search text has {len(text)} characters; at most {MAX_QUERY_LENGTH} are allowed")
        if namer.clip.id != self.clip_model:
            raise VocabularyError(f"this index holds {self.clip_model} features, not {namer.clip.id}")
        query = namer.prompt_features([text])[0]
        similarity = self.vectors @ query
        k = max(0, min(int(top_k), len(similarity)))
        best = torch.topk(similarity, k).indices.tolist() if k else []
        return [SearchHit(int(self.image_index[i]), self.names[int(self.image_index[i])], int(self.segment[i]),
                        self.level, float(similarity[i])) for i in best]  # fmt: skip


class TextSearchCache:
    """Built indexes by (collection, level, CLIP model): an explicit, thread-safe LRU.

    A collection is any object (held weakly): an index is reused only for that very object, never for
    another one that happens to get its id after it is gone."""

    def __init__(self, max_indexes: int = 8) -> None:
        self.max_indexes = max_indexes
        self._indexes: OrderedDict[tuple[int, int, str], tuple[Callable[[], object], TextSearchIndex]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, collection: object, level: int, namer: SegmentNamer,
            images: Callable[[], Sequence[tuple[str, Hierarchy]]], *,
            progress: Callable[[float, str], None] | None = None) -> TextSearchIndex:
        """The index of a collection's level, built on first use (`images()` is only called then)."""
        cache_key = (id(collection), int(level), namer.clip.id)
        with self._lock:
            entry = self._indexes.get(cache_key)
            if entry is not None and entry[0]() is collection:
                self._indexes.move_to_end(cache_key)
                return entry[1]
        index = TextSearchIndex.build(namer, images(), int(level), progress=progress)
        with self._lock:
            try:
                held = weakref.ref(collection)
            except TypeError:  # not weakly referable: hold it (the LRU is small), so its id cannot be reused
                held = lambda: collection  # noqa: E731
            self._indexes[cache_key] = (held, index)
            while len(self._indexes) > self.max_indexes:
                self._indexes.popitem(last=False)
        return index
