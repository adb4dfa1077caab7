"""Segment search by CAST's own embeddings: rank every segment of one level across a collection by cosine
similarity to a query segment. One normalised matrix per level, one matrix product per query."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import CastError

if TYPE_CHECKING:
    from .build import CollectionItem


@dataclass(frozen=True)
class SearchHit:
    """One ranked segment: which image (index and name), which segment of which level, how similar."""

    image_index: int
    image: str
    segment: int
    level: int
    similarity: float

    def to_dict(self) -> dict:
        return {"image_index": self.image_index, "image": self.image, "segment": self.segment, "level": self.level,
                "similarity": round(self.similarity, 6)}


@dataclass(frozen=True)
class _LevelIndex:
    vectors: np.ndarray  # (N, C) float32, unit rows
    image_index: np.ndarray  # (N,) int
    segment: np.ndarray  # (N,) int
    offsets: dict[tuple[int, int], int]  # (image index, segment) -> row


class SegmentIndex:
    """Unit-norm embeddings of every present segment of every level, over all items of a collection."""

    def __init__(self, levels: dict[int, _LevelIndex], names: Sequence[str]) -> None:
        self._levels = levels
        self._names = list(names)

    @classmethod
    def build(cls, items: Sequence["CollectionItem"]) -> "SegmentIndex":
        """From collection items: the embeddings of each item's present segments."""
        per_image = []
        for item in items:
            rows = []
            for level, vectors in enumerate(item.embeddings):
                present = item.hierarchy.segment_ids(level)
                present = present[present < len(vectors)]
                rows.append((present, vectors[present]))
            per_image.append(rows)
        return cls.from_arrays([item.name for item in items], per_image)

    @classmethod
    def from_arrays(cls, names: Sequence[str], per_image: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]]) -> "SegmentIndex":
        """From (segment ids, (n, C) vectors) per level of every image, in image-index order."""
        levels: dict[int, _LevelIndex] = {}
        num_levels = max((len(rows) for rows in per_image), default=0)
        for level in range(num_levels):
            vectors, images, segments = [], [], []
            for image_index, rows in enumerate(per_image):
                if level < len(rows) and len(rows[level][0]):
                    ids, vecs = rows[level]
                    vectors.append(np.asarray(vecs, dtype=np.float32))
                    images.append(np.full(len(ids), image_index))
                    segments.append(np.asarray(ids, dtype=np.int64))
            if not vectors:
                continue
            matrix = np.concatenate(vectors)
            matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
            image_index, segment = np.concatenate(images), np.concatenate(segments)
            offsets = {(int(i), int(s)): row for row, (i, s) in enumerate(zip(image_index, segment))}
            levels[level] = _LevelIndex(np.ascontiguousarray(matrix), image_index, segment, offsets)
        return cls(levels, names)

    @property
    def levels(self) -> list[int]:
        return sorted(self._levels)

    def size(self, level: int) -> int:
        """Segments indexed at a level."""
        return len(self._levels[level].segment) if level in self._levels else 0

    def vector(self, image_index: int, level: int, segment: int) -> np.ndarray:
        """The unit embedding of one indexed segment."""
        index = self._level(level)
        row = index.offsets.get((int(image_index), int(segment)))
        if row is None:
            raise CastError(f"segment {segment} of level {level} is not present in image {image_index}")
        return index.vectors[row]

    def search(self, image_index: int, level: int, segment: int, top_k: int = 10) -> list[SearchHit]:
        """The `top_k` most similar segments of `level` in the whole collection, most similar first; the query
        itself always leads (its similarity is 1, up to rounding)."""
        index = self._level(level)
        query_row = index.offsets.get((int(image_index), int(segment)))
        query = self.vector(image_index, level, segment)
        scores = index.vectors @ query
        ranking = scores.copy()
        ranking[query_row] = np.inf
        k = max(1, min(int(top_k), len(scores)))
        top = np.argpartition(-ranking, k - 1)[:k]
        top = top[np.argsort(-ranking[top], kind="stable")]
        return [SearchHit(int(index.image_index[r]), self._names[int(index.image_index[r])], int(index.segment[r]), level,
                          float(scores[r])) for r in top]

    def similarities(self, image_index: int, level: int, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of every segment id of one image's level to a query vector (NaN where absent)."""
        index = self._level(level)
        rows = np.flatnonzero(index.image_index == image_index)
        out = np.full(int(index.segment[rows].max()) + 1 if len(rows) else 0, np.nan)
        out[index.segment[rows]] = index.vectors[rows] @ query
        return out

    def _level(self, level: int) -> _LevelIndex:
        if level not in self._levels:
            raise CastError(f"level {level} has no segment embeddings in this collection (levels {self.levels})")
        return self._levels[level]


def similarity_map(labels: np.ndarray, per_segment: np.ndarray) -> np.ndarray:
    """(H, W) float heat map: each pixel gets its segment's similarity (NaN for segments without one)."""
    padded = np.full(int(labels.max()) + 1, np.nan)
    padded[: len(per_segment)] = per_segment[: len(padded)]
    return padded[labels]
