"""The segmentation hierarchy as a data structure (spec §4).

Level 0 holds the superpixels; level l (1..L) holds the segments of pooling stage l. Every level is
derived from the full-resolution superpixel map and the per-level parent arrays, so the tree
invariant (a pixel's coarser segment is the parent of its finer segment) holds by construction.
"""
from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Sequence

import cv2
import networkx as nx
import numpy as np
from scipy import ndimage

from ..errors import HierarchyError, OutOfRangeError
from .provenance import SegmentationProvenance
from .records import SegmentRecord, node_id

ROOT_ID = "image"
JSON_FORMAT = "cast-explorer-hierarchy/1"


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class LevelStats:
    """Per-segment statistics of one level, indexed by segment id (absent ids have area 0)."""

    area: np.ndarray  # (K,) int64 pixels
    bbox: np.ndarray  # (K, 4) int64 x, y, w, h (COCO XYWH); zeros for absent ids
    centroid: np.ndarray  # (K, 2) float64 x, y


@dataclass
class Hierarchy:
    """Per-level label maps with parent/children lookups, statistics, a networkx tree and JSON I/O.

    superpixels: (H, W) int superpixel ids 0..n-1 at the image's own resolution.
    parents[l]: (K_l,) int, the level-(l+1) parent of each level-l segment (l = 0 .. L-1).
    parent_prob[l]: (K_l,) model probability of that parent (its soft assignment).
    runner_up[l], runner_up_prob[l]: the second most likely parent and its probability.
    sizes: the id-space size of every level; ids absent from the image have area 0.
    """

    superpixels: np.ndarray
    parents: tuple[np.ndarray, ...]
    parent_prob: tuple[np.ndarray, ...]
    runner_up: tuple[np.ndarray, ...]
    runner_up_prob: tuple[np.ndarray, ...]
    sizes: tuple[int, ...]  # id-space size per level: (n superpixels, K_1, ..., K_L)
    image: np.ndarray | None = None
    provenance: SegmentationProvenance | None = None  # what produced it (set by Segmenter)
    base_name: str = "superpixels"  # what level 0 is: CAST's superpixels, or the ViT baseline's k-means clusters
    stability: tuple[np.ndarray, ...] | None = None  # per level, per segment id: mean IoU under perturbations

    def with_stability(self, scores: Sequence[np.ndarray]) -> "Hierarchy":
        """A copy carrying a stability score per segment of every level (cast.collection.stability)."""
        scores = tuple(np.asarray(s, dtype=np.float64) for s in scores)
        if [len(s) for s in scores] != list(self.sizes):
            raise HierarchyError(f"stability scores of sizes {[len(s) for s in scores]} do not fit the levels {self.sizes}")
        return replace(self, stability=scores)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_logits(
        cls,
        superpixels: np.ndarray,
        logits: Sequence[np.ndarray],
        *,
        image: np.ndarray | None = None,
        provenance: SegmentationProvenance | None = None,
    ) -> "Hierarchy":
        """Build from one image's assignment logits: logits[l] is (S_l, K_{l+1}) (spec §4).

        Superpixel ids >= S (ids whose token vanished beyond the largest surviving id) take the row
        of token S-1, the official export notebook's padding rule (spec §4, "for parity").
        """
        superpixels = np.ascontiguousarray(superpixels)
        if superpixels.ndim != 2:
            raise HierarchyError(f"superpixels must be (H, W), got {superpixels.shape}")
        num_superpixels = int(superpixels.max()) + 1
        parents, probs, runners, runner_probs = [], [], [], []
        for level, lg in enumerate(logits):
            lg = np.asarray(lg, dtype=np.float64)
            if level == 0 and lg.shape[0] < num_superpixels:
                pad = np.repeat(lg[-1:], num_superpixels - lg.shape[0], axis=0)
                lg = np.concatenate([lg, pad], axis=0)
            prob = _softmax(lg)
            rows = np.arange(prob.shape[0])
            # argmax of the logits (first index on ties), as the official composition does
            best = lg.argmax(axis=1)
            others = lg.copy()
            if lg.shape[1] > 1:
                others[rows, best] = -np.inf
            runner = others.argmax(axis=1)
            parents.append(best.astype(np.int64))
            probs.append(prob[rows, best])
            runners.append(runner.astype(np.int64))
            runner_probs.append(prob[rows, runner])
        return cls(
            superpixels=superpixels.astype(np.int32, copy=False),
            parents=tuple(parents),
            parent_prob=tuple(probs),
            runner_up=tuple(runners),
            runner_up_prob=tuple(runner_probs),
            sizes=(num_superpixels, *(int(np.asarray(lg).shape[1]) for lg in logits)),
            image=image,
            provenance=provenance,
        )

    @classmethod
    def from_parents(
        cls,
        base_labels: np.ndarray,
        parents: Sequence[np.ndarray],
        *,
        image: np.ndarray | None = None,
        provenance: SegmentationProvenance | None = None,
        base_name: str = "superpixels",
    ) -> "Hierarchy":
        """Build from hard assignments: parents[l][k] is the level-(l+1) segment of level-l segment k.

        For methods without soft assignments (the ViT baseline's k-means): probabilities are NaN, shown
        as "not available", and the runner-up is the parent itself.
        """
        base_labels = np.ascontiguousarray(base_labels)
        arrays = tuple(np.asarray(pa, dtype=np.int64) for pa in parents)
        sizes = [int(base_labels.max()) + 1]
        for pa in arrays:
            if len(pa) != sizes[-1]:
                raise HierarchyError(f"parents of level {len(sizes) - 1} map {len(pa)} ids, the level has {sizes[-1]}")
            sizes.append(int(pa.max()) + 1)
        unknown = tuple(np.full(len(pa), np.nan) for pa in arrays)
        return cls(base_labels.astype(np.int32, copy=False), arrays, unknown, arrays, unknown, tuple(sizes),
                   image=image, provenance=provenance, base_name=base_name)

    # ---------------------------------------------------------------- shape of the tree
    @property
    def num_levels(self) -> int:
        """Levels including the superpixels (5 for the default 64/32/16/8 model)."""
        return len(self.sizes)

    @property
    def shape(self) -> tuple[int, int]:
        return self.superpixels.shape  # type: ignore[return-value]

    def num_ids(self, level: int) -> int:
        """Size of the id space of a level (some ids may be absent from the image)."""
        self._check_level(level)
        return self.sizes[level]

    @cached_property
    def _superpixel_to_level(self) -> tuple[np.ndarray, ...]:
        """For each level, the segment of every superpixel id (composition by indexing, spec §4)."""
        chain = [np.arange(self.sizes[0], dtype=np.int32)]  # int32 label maps: half of int64 per session
        for parent in self.parents:
            chain.append(parent[chain[-1]].astype(np.int32))
        return tuple(chain)

    def superpixel_segments(self, level: int) -> np.ndarray:
        """(n superpixels,) the level-`level` segment of every superpixel id."""
        self._check_level(level)
        return self._superpixel_to_level[level]

    def labels(self, level: int) -> np.ndarray:
        """(H, W) label map of a level at the image's own resolution."""
        self._check_level(level)
        return self._label_maps[level]

    @cached_property
    def _label_maps(self) -> tuple[np.ndarray, ...]:
        return tuple(self.superpixels if l == 0 else m[self.superpixels] for l, m in enumerate(self._superpixel_to_level))

    def level_name(self, level: int) -> str:
        """What a level is, for people: "superpixels (196)", "64 segments", ..."""
        present = len(self.segment_ids(level))
        if level == 0:
            return f"{self.base_name} ({present})"
        return f"{present} segments"

    def segment_ids(self, level: int) -> np.ndarray:
        """Ids present (non-empty) at a level, ascending."""
        return np.flatnonzero(self.stats(level).area > 0)

    def segment_at(self, level: int, x: int, y: int) -> int:
        """Segment under pixel column x, row y."""
        h, w = self.shape
        if not (0 <= x < w and 0 <= y < h):
            raise OutOfRangeError(f"pixel ({x}, {y}) outside the {w}x{h} image")
        return int(self.labels(level)[y, x])

    def segment_at_original(self, level: int, x: float, y: float) -> int:
        """Segment under pixel (x, y) of the ORIGINAL image (before cropping / resizing for the model)."""
        if self.provenance is None:  # no record of a crop: the label maps cover the image as given
            return self.segment_at(level, int(x), int(y))
        x0, y0, x1, y1 = self.provenance.input.crop_box_xyxy
        if not (x0 <= x < x1 and y0 <= y < y1):
            name = f"{self.provenance.source_name}: " if self.provenance.source_name else ""
            raise OutOfRangeError(f"{name}pixel ({x:g}, {y:g}) lies outside the part of the image the model saw ({x0},{y0})-({x1},{y1})")
        h, w = self.shape
        return self.segment_at(level, min(w - 1, int((x - x0) * w / (x1 - x0))), min(h - 1, int((y - y0) * h / (y1 - y0))))

    def parent_of(self, level: int, segment: int) -> int | None:
        """Parent id at level+1, or None at the coarsest level."""
        self._check_segment(level, segment)
        if level == self.num_levels - 1:
            return None
        return int(self.parents[level][segment])

    def children_of(self, level: int, segment: int) -> list[int]:
        """Present children ids at level-1 (empty for superpixels)."""
        self._check_segment(level, segment)
        if level == 0:
            return []
        present = self.stats(level - 1).area > 0
        return [int(k) for k in np.flatnonzero((self.parents[level - 1] == segment) & present)]

    def ancestors(self, level: int, segment: int) -> list[tuple[int, int]]:
        """(level, id) of every coarser segment containing this one, nearest first."""
        path = []
        while (parent := self.parent_of(level, segment)) is not None:
            level, segment = level + 1, parent
            path.append((level, segment))
        return path

    def descendants(self, level: int, segment: int) -> list[tuple[int, int]]:
        """(level, id) of every finer segment inside this one, coarse to fine."""
        out, frontier = [], [segment]
        for finer in range(level - 1, -1, -1):
            mask = np.isin(self.parents[finer], frontier) & (self.stats(finer).area > 0)
            frontier = np.flatnonzero(mask).tolist()
            out.extend((finer, k) for k in frontier)
        return out

    def mask(self, level: int, segment: int) -> np.ndarray:
        """(H, W) bool mask of one segment."""
        return self.labels(level) == segment

    def resized(self, height: int, width: int) -> "Hierarchy":
        """The same tree on a nearest-neighbour resized superpixel map (for display); ids unchanged."""
        if (height, width) == self.shape:
            return self
        sp = cv2.resize(self.superpixels.astype(np.int32), (width, height), interpolation=cv2.INTER_NEAREST)
        image = None
        if self.image is not None:
            image = cv2.resize(self.image, (width, height), interpolation=cv2.INTER_AREA)
        return replace(self, superpixels=sp, image=image)

    # ---------------------------------------------------------------- statistics
    @cached_property
    def _stats(self) -> tuple[LevelStats, ...]:
        sp = self.superpixels
        h, w = sp.shape
        n = self.sizes[0]
        flat = sp.ravel()
        area = np.bincount(flat, minlength=n).astype(np.int64)
        sum_x = np.bincount(flat, weights=np.tile(np.arange(w, dtype=np.float64), h), minlength=n)
        sum_y = np.bincount(flat, weights=np.repeat(np.arange(h, dtype=np.float64), w), minlength=n)
        # per-superpixel bounding boxes in one C pass; coarser boxes are unions of these
        x0, y0 = np.zeros(n, np.int64), np.zeros(n, np.int64)
        x1, y1 = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
        for i, sl in enumerate(ndimage.find_objects(sp + 1, max_label=n)):
            if sl is not None:
                y0[i], y1[i], x0[i], x1[i] = sl[0].start, sl[0].stop - 1, sl[1].start, sl[1].stop - 1
        big = np.iinfo(np.int64).max
        out = []
        for level, to_level in enumerate(self._superpixel_to_level):
            k = self.sizes[level]
            a = np.bincount(to_level, weights=area, minlength=k).astype(np.int64)
            sx = np.bincount(to_level, weights=sum_x, minlength=k)
            sy = np.bincount(to_level, weights=sum_y, minlength=k)
            lx0, ly0 = np.full(k, big), np.full(k, big)
            lx1, ly1 = np.full(k, -1), np.full(k, -1)
            np.minimum.at(lx0, to_level, x0)
            np.minimum.at(ly0, to_level, y0)
            np.maximum.at(lx1, to_level, x1)
            np.maximum.at(ly1, to_level, y1)
            present = a > 0
            bbox = np.zeros((k, 4), dtype=np.int64)
            bbox[present] = np.stack(
                [lx0[present], ly0[present], lx1[present] - lx0[present] + 1, ly1[present] - ly0[present] + 1], axis=1
            )
            denom = np.maximum(a, 1)[:, None]
            centroid = np.stack([sx, sy], axis=1) / denom
            out.append(LevelStats(area=a, bbox=bbox, centroid=centroid))
        return tuple(out)

    @cached_property
    def _mean_colors(self) -> tuple[np.ndarray, ...] | None:
        if self.image is None or self.image.shape[:2] != self.shape:
            return None
        flat, px = self.superpixels.ravel(), self.image.reshape(-1, 3)
        n = self.sizes[0]
        sums = np.stack([np.bincount(flat, weights=px[:, c], minlength=n) for c in range(3)], axis=1)
        out = []
        for level, to_level in enumerate(self._superpixel_to_level):
            k = self.sizes[level]
            level_sums = np.stack([np.bincount(to_level, weights=sums[:, c], minlength=k) for c in range(3)], axis=1)
            out.append(level_sums / np.maximum(self.stats(level).area, 1)[:, None])
        return tuple(out)

    def mean_color(self, level: int) -> np.ndarray | None:
        """(K, 3) mean RGB of every segment at a level, or None when no image is attached."""
        self._check_level(level)
        return None if self._mean_colors is None else self._mean_colors[level]

    def stats(self, level: int) -> LevelStats:
        """Area, bounding box, centroid and mean colour of every segment at a level."""
        self._check_level(level)
        return self._stats[level]

    def segment(self, level: int, segment: int) -> SegmentRecord:
        """The typed record of one segment: geometry, parent (and runner-up) with probabilities, children."""
        self._check_segment(level, segment)
        st = self.stats(level)
        parent = self.parent_of(level, segment)
        colors = self.mean_color(level)
        return SegmentRecord(
            level=level,
            segment=int(segment),
            level_name=self.level_name(level),
            area=int(st.area[segment]),
            bbox=tuple(int(v) for v in st.bbox[segment]),
            centroid=(float(st.centroid[segment][0]), float(st.centroid[segment][1])),
            children=tuple(self.children_of(level, segment)),
            parent=parent,
            parent_confidence=None if parent is None else _known(self.parent_confidence(level, segment)),
            runner_up=None if parent is None else int(self.runner_up[level][segment]),
            runner_up_confidence=None if parent is None else _known(float(self.runner_up_prob[level][segment])),
            mean_color=None if colors is None else tuple(float(v) for v in colors[segment]),
            stability=None if self.stability is None else _known(float(self.stability[level][segment])),
        )

    def records(self, level: int | None = None) -> list[SegmentRecord]:
        """Records of every present segment of one level, or of all levels fine to coarse."""
        levels = range(self.num_levels) if level is None else [level]
        return [self.segment(lv, int(seg)) for lv in levels for seg in self.segment_ids(lv)]

    def parent_confidence(self, level: int, segment: int) -> float:
        """The model's soft assignment of a segment to its chosen parent (NaN where the method has none)."""
        return float(self.parent_prob[level][segment])

    # ---------------------------------------------------------------- networkx
    @cached_property
    def graph(self) -> nx.DiGraph:
        """Directed tree: image root -> coarsest segments -> ... -> superpixels, with node attributes."""
        g = nx.DiGraph()
        h, w = self.shape
        g.add_node(ROOT_ID, level=self.num_levels, area=h * w, bbox=[0, 0, w, h])
        for level in range(self.num_levels - 1, -1, -1):
            for record in self.records(level):
                g.add_node(record.id, **record.graph_attributes())
                parent = ROOT_ID if record.parent is None else node_id(level + 1, record.parent)
                g.add_edge(parent, record.id)
        return g

    def tree_data(self) -> dict[str, Any]:
        """networkx tree data (rooted at the image), JSON serialisable."""
        return nx.readwrite.json_graph.tree_data(self.graph, root=ROOT_ID)

    # ---------------------------------------------------------------- checks and I/O
    def check_invariants(self) -> None:
        """Raise HierarchyError if any pixel's coarser segment is not the parent of its finer one."""
        for level in range(self.num_levels - 1):
            fine, coarse = self.labels(level), self.labels(level + 1)
            if not np.array_equal(self.parents[level][fine], coarse):
                raise HierarchyError(f"level {level + 1} labels disagree with the parents of level {level}")
        for level in range(self.num_levels):
            if int(self.stats(level).area.sum()) != self.superpixels.size:
                raise HierarchyError(f"areas of level {level} do not add up to the image")

    def to_json(self) -> str:
        """Lossless JSON: the superpixel map (zlib + base64) and the per-level parent arrays."""
        sp = np.ascontiguousarray(self.superpixels, dtype=np.int32)
        payload = {
            "format": JSON_FORMAT,
            "shape": list(sp.shape),
            "superpixels": base64.b64encode(zlib.compress(sp.tobytes(), 6)).decode("ascii"),
            "parents": [p.tolist() for p in self.parents],
            "parent_prob": [_nan_to_none(p) for p in self.parent_prob],
            "runner_up": [p.tolist() for p in self.runner_up],
            "runner_up_prob": [_nan_to_none(p) for p in self.runner_up_prob],
            "sizes": list(self.sizes),
            "provenance": None if self.provenance is None else self.provenance.to_dict(),
            "base_name": self.base_name,
            "stability": None if self.stability is None else [_nan_to_none(p) for p in self.stability],
        }
        return json.dumps(payload)

    @classmethod
    def from_json(cls, text: str, image: np.ndarray | None = None) -> "Hierarchy":
        """Inverse of :meth:`to_json` (the image is not stored; pass it back if needed)."""
        try:
            data = json.loads(text)
        except ValueError as err:
            raise HierarchyError(f"not a CAST Explorer hierarchy (invalid JSON: {err})") from err
        if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
            raise HierarchyError(f"not a CAST Explorer hierarchy (format {data.get('format') if isinstance(data, dict) else None!r})")
        raw = zlib.decompress(base64.b64decode(data["superpixels"]))
        sp = np.frombuffer(raw, dtype=np.int32).reshape(data["shape"]).copy()
        as_arrays = lambda key, dt: tuple(np.asarray([np.nan if v is None else v for v in p], dtype=dt)  # noqa: E731
                                          for p in data[key])
        return cls(
            superpixels=sp,
            parents=as_arrays("parents", np.int64),
            parent_prob=as_arrays("parent_prob", np.float64),
            runner_up=as_arrays("runner_up", np.int64),
            runner_up_prob=as_arrays("runner_up_prob", np.float64),
            sizes=tuple(data["sizes"]),
            image=image,
            provenance=SegmentationProvenance.from_dict(data["provenance"]) if data.get("provenance") else None,
            base_name=data.get("base_name", "superpixels"),
            stability=as_arrays("stability", np.float64) if data.get("stability") is not None else None,
        )

    def _check_level(self, level: int) -> None:
        if not 0 <= level < self.num_levels:
            raise OutOfRangeError(f"level {level} outside 0..{self.num_levels - 1}")

    def _check_segment(self, level: int, segment: int) -> None:
        self._check_level(level)
        if not 0 <= segment < self.sizes[level]:
            raise OutOfRangeError(f"segment {segment} outside level {level}'s ids 0..{self.sizes[level] - 1}")


def _known(value: float) -> float | None:
    """None for a probability the method does not have (NaN), else the value."""
    return None if np.isnan(value) else float(value)


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values.tolist()]
