"""Segment search by CAST's own embeddings: rank every segment of one level across a collection by cosine
similarity to a query segment. One matrix per level (in memory, or memory-mapped from a saved collection),
one matrix product per query.

Embeddings carry their image's identity (segments of one photo resemble each other more than the same part
in two photos), so by default the query's own image is left out of the ranking after the query itself, and
`centre=True` subtracts each image's mean segment embedding before the cosine (both measured in
benchmarks/bench_collection.py and the README).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import CastError


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
class LevelMatrix:
    """Every present segment of one level of a collection, one row each, grouped by image in index order.

    `vectors`: (N, C) float32 raw embeddings; `image`, `segment`: (N,) int32 row owners; `norms`: (N,) row
    norms; `means`: (n_images, C) each image's mean segment embedding; `centred_norms`: (N,) norms of
    vectors - means[image]. Arrays may be memory-mapped (read-only)."""

    vectors: np.ndarray
    image: np.ndarray
    segment: np.ndarray
    norms: np.ndarray
    means: np.ndarray
    centred_norms: np.ndarray
    ann: Any = None  # a FAISS index over the unit rows, for very large levels (cast.collection.ann)

    @classmethod
    def from_rows(cls, vectors: np.ndarray, image: np.ndarray, segment: np.ndarray, num_images: int) -> "LevelMatrix":
        """Derive norms and per-image means from raw rows (rows grouped by image, images in order)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        image = np.asarray(image, dtype=np.int32)
        counts = np.bincount(image, minlength=num_images).astype(np.float32)
        sums = np.zeros((num_images, vectors.shape[1]), np.float64)
        if len(image):  # rows come grouped by image: one sum per contiguous run
            starts = np.flatnonzero(np.r_[True, image[1:] != image[:-1]])
            np.add.at(sums, image[starts], np.add.reduceat(vectors, starts, axis=0))
        means = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        centred = np.linalg.norm(vectors - means[image], axis=1).astype(np.float32)
        return cls(vectors, image, np.asarray(segment, dtype=np.int32), np.linalg.norm(vectors, axis=1).astype(np.float32),
                   means, centred)

    def __len__(self) -> int:
        return len(self.image)

    def row_of(self, image_index: int, segment: int) -> int | None:
        """The row of one segment (rows of an image are contiguous: a binary search, then a scan of them)."""
        start, stop = np.searchsorted(self.image, [image_index, image_index + 1])
        rows = np.flatnonzero(np.asarray(self.segment[start:stop]) == segment)
        return int(start + rows[0]) if len(rows) else None

    def image_rows(self, image_index: int) -> slice:
        start, stop = np.searchsorted(self.image, [image_index, image_index + 1])
        return slice(int(start), int(stop))

    def similarities(self, row: int, centre: bool = False, rows: slice | np.ndarray | None = None) -> np.ndarray:
        """Cosine similarity of every row (or `rows`) to row `row`, optionally after per-image centring."""
        rows = slice(0, len(self)) if rows is None else rows
        vectors = self.vectors[rows]
        query = np.asarray(self.vectors[row], dtype=np.float32)
        if not centre:
            scores = vectors @ query
            return scores / np.maximum(self.norms[rows] * np.linalg.norm(query), 1e-12)
        query = query - self.means[self.image[row]]
        scores = vectors @ query - (self.means @ query)[self.image[rows]]
        return scores / np.maximum(self.centred_norms[rows] * np.linalg.norm(query), 1e-12)


def rank(matrix: LevelMatrix, names: Sequence[str], image_index: int, level: int, segment: int, top_k: int = 10, *,
         include_query_image: bool = False, centre: bool = False) -> list[SearchHit]:
    """The query segment first (similarity 1), then the `top_k - 1` most similar segments of `level`: of the
    other images by default, of every image with `include_query_image`."""
    row = matrix.row_of(image_index, segment)
    if row is None:
        raise CastError(f"segment {segment} of level {level} is not present in image {image_index}")
    own = matrix.image_rows(image_index)
    if matrix.ann is not None and not centre:  # candidates from the approximate index, rescored exactly
        from .ann import candidates

        extra = 0 if include_query_image else own.stop - own.start
        rows = np.union1d(candidates(matrix.ann, np.asarray(matrix.vectors[row]), int(top_k) + extra + 1), [row])
    else:
        rows = np.arange(len(matrix))
    scores = matrix.similarities(row, centre, rows if len(rows) < len(matrix) else None)
    ranking = scores.copy()
    if not include_query_image:
        ranking[(rows >= own.start) & (rows < own.stop)] = -np.inf
    ranking[rows == row] = np.inf
    k = max(1, min(int(top_k), int(np.isfinite(ranking).sum()) + 1))
    top = np.argpartition(-ranking, k - 1)[:k]
    top = top[np.argsort(-ranking[top], kind="stable")]
    return [SearchHit(int(matrix.image[r]), names[int(matrix.image[r])], int(matrix.segment[r]), level, float(scores[i]))
            for i, r in zip(top, rows[top])]


class SegmentIndex:
    """Search over the level matrices of a collection (in memory or memory-mapped)."""

    def __init__(self, levels: dict[int, LevelMatrix], names: Sequence[str]) -> None:
        self._levels = levels
        self._names = list(names)

    @classmethod
    def from_arrays(cls, names: Sequence[str],
                    per_image: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]]) -> "SegmentIndex":
        """From (segment ids, (n, C) vectors) per level of every image, in image-index order."""
        levels: dict[int, LevelMatrix] = {}
        for level in range(max((len(rows) for rows in per_image), default=0)):
            vectors, images, segments = [], [], []
            for image_index, rows in enumerate(per_image):
                if level < len(rows) and len(rows[level][0]):
                    ids, vecs = rows[level]
                    vectors.append(np.asarray(vecs, dtype=np.float32))
                    images.append(np.full(len(ids), image_index, np.int32))
                    segments.append(np.asarray(ids, dtype=np.int32))
            if vectors:
                levels[level] = LevelMatrix.from_rows(np.concatenate(vectors), np.concatenate(images),
                                                      np.concatenate(segments), len(per_image))
        return cls(levels, names)

    @property
    def levels(self) -> list[int]:
        return sorted(self._levels)

    def size(self, level: int) -> int:
        """Segments indexed at a level."""
        return len(self._levels[level]) if level in self._levels else 0

    def matrix(self, level: int) -> LevelMatrix:
        if level not in self._levels:
            raise CastError(f"level {level} has no segment embeddings in this collection (levels {self.levels})")
        return self._levels[level]

    def search(self, image_index: int, level: int, segment: int, top_k: int = 10, *, include_query_image: bool = False,
               centre: bool = False) -> list[SearchHit]:
        """See :func:`rank`."""
        return rank(self.matrix(level), self._names, image_index, level, segment, top_k,
                    include_query_image=include_query_image, centre=centre)

    def similarities(self, image_index: int, level: int, segment: int, centre: bool = False) -> np.ndarray:
        """Similarity of every segment id of the query's own image to the query (NaN where absent): a heat map."""
        matrix = self.matrix(level)
        row = matrix.row_of(image_index, segment)
        if row is None:
            raise CastError(f"segment {segment} of level {level} is not present in image {image_index}")
        rows = matrix.image_rows(image_index)
        ids = np.asarray(matrix.segment[rows])
        out = np.full(int(ids.max()) + 1, np.nan)
        out[ids] = matrix.similarities(row, centre, rows)
        return out


def similarity_map(labels: np.ndarray, per_segment: np.ndarray) -> np.ndarray:
    """(H, W) float heat map: each pixel gets its segment's similarity (NaN for segments without one)."""
    padded = np.full(int(labels.max()) + 1, np.nan)
    padded[: len(per_segment)] = per_segment[: len(padded)]
    return padded[labels]
