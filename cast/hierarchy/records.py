"""One typed record per segment: what the click panel, the API, the networkx tree and the exports say about it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def node_id(level: int, segment: int) -> str:
    """Unique id of a segment across levels, e.g. `L2:s07`."""
    return f"L{level}:s{segment:02d}"


def parse_node_id(node: str) -> tuple[int, int]:
    """Inverse of :func:`node_id`."""
    level, seg = node.split(":")
    return int(level[1:]), int(seg[1:])


@dataclass(frozen=True)
class SegmentRecord:
    """One segment of one level. Parent / runner-up are ids at level+1, children ids at level-1.

    bbox is COCO XYWH in pixels of the hierarchy's image; centroid is (x, y); mean_color is RGB
    (None without an image); stability is the mean best-match IoU under perturbations (None unless
    it was measured, see cast.analysis.stability).
    """

    level: int
    segment: int
    level_name: str
    area: int
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    children: tuple[int, ...]
    parent: int | None = None
    parent_confidence: float | None = None
    runner_up: int | None = None
    runner_up_confidence: float | None = None
    mean_color: tuple[float, float, float] | None = None
    stability: float | None = None

    @property
    def id(self) -> str:
        """`L{level}:s{segment}`, unique across levels."""
        return node_id(self.level, self.segment)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the /select answer, segments.json): ids as `L2:s07` strings, None where absent."""
        return {
            "id": self.id,
            "level": self.level,
            "level_name": self.level_name,
            "segment": self.segment,
            "area": self.area,
            "bbox": list(self.bbox),
            "centroid": [round(v, 2) for v in self.centroid],
            "children": [node_id(self.level - 1, c) for c in self.children],
            "parent": None if self.parent is None else node_id(self.level + 1, self.parent),
            "parent_confidence": self.parent_confidence,
            "runner_up_parent": None if self.runner_up is None else node_id(self.level + 1, self.runner_up),
            "runner_up_confidence": self.runner_up_confidence,
            "mean_color": None if self.mean_color is None else [round(v, 1) for v in self.mean_color],
            "stability": self.stability,
        }

    def graph_attributes(self) -> dict[str, Any]:
        """Node attributes of the networkx tree (JSON-ready numbers only)."""
        attrs: dict[str, Any] = {
            "level": self.level,
            "segment": self.segment,
            "area": self.area,
            "bbox": list(self.bbox),
            "centroid": list(self.centroid),
        }
        if self.mean_color is not None:
            attrs["mean_color"] = list(self.mean_color)
        if self.parent_confidence is not None:
            attrs["confidence"] = self.parent_confidence
        if self.stability is not None:
            attrs["stability"] = self.stability
        return attrs
