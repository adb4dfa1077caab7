"""Plain colour merging of the same superpixels, scored like the model at equal segment counts.

So the model can be compared with colour grouping that learned nothing: each level of the baseline has
the segment count of the hierarchy's level, and is nested like it.
"""
from __future__ import annotations

import heapq
from typing import Sequence

import numpy as np
from skimage import color, graph

from ..hierarchy import Hierarchy
from .metrics import LevelScore, metrics_for_label_maps


def colour_merging_hierarchy(
    image: np.ndarray, superpixels: np.ndarray, counts: Sequence[int] = (64, 32, 16, 8)
) -> list[np.ndarray]:
    """Greedy colour merging of superpixels: one (H, W) label map (ids 0..n-1) per requested count.

    The region adjacency graph comes from `skimage.graph.rag_mean_color` on the CIE-Lab image; the two
    adjacent regions with the closest mean colours merge first (means weighted by pixel count), so the
    maps are nested: each finer segment lies inside one coarser segment.
    """
    superpixels = np.asarray(superpixels)
    if image.shape[:2] != superpixels.shape:
        raise ValueError(f"image {image.shape[:2]} and superpixels {superpixels.shape} differ in size")
    rag = graph.rag_mean_color(color.rgb2lab(image[..., :3]), superpixels)
    ids = np.array(sorted(rag.nodes), dtype=np.int64)
    if any(c < 1 or c > len(ids) for c in counts):
        raise ValueError(f"counts must lie in 1..{len(ids)} (the number of superpixels), got {tuple(counts)}")
    slot = {int(n): i for i, n in enumerate(ids)}
    total = np.array([rag.nodes[n]["total color"] for n in ids], dtype=np.float64)
    size = np.array([rag.nodes[n]["pixel count"] for n in ids], dtype=np.float64)
    neighbours = [set() for _ in ids]
    for a, b in rag.edges:
        neighbours[slot[int(a)]].add(slot[int(b)])
        neighbours[slot[int(b)]].add(slot[int(a)])
    members = [[i] for i in range(len(ids))]
    owner = np.arange(len(ids))  # region that holds each superpixel now
    version = np.zeros(len(ids), dtype=np.int64)

    def distance(a: int, b: int) -> float:
        return float(np.linalg.norm(total[a] / size[a] - total[b] / size[b]))

    heap = [(distance(a, b), a, b, 0, 0) for a in range(len(ids)) for b in neighbours[a] if a < b]
    heapq.heapify(heap)
    wanted = sorted(set(int(c) for c in counts), reverse=True)
    maps: dict[int, np.ndarray] = {}
    lookup = np.zeros(int(ids.max()) + 1, dtype=np.int64)
    regions = len(ids)
    while wanted:
        if regions == wanted[0]:
            _, compact = np.unique(owner, return_inverse=True)
            lookup[ids] = compact
            maps[wanted.pop(0)] = lookup[superpixels]
            continue
        if not heap:
            raise ValueError("the superpixels do not form one connected region graph; cannot merge further")
        _, a, b, va, vb = heapq.heappop(heap)
        if va != version[a] or vb != version[b]:
            continue  # stale: one side has merged since this pair was pushed
        if len(members[a]) < len(members[b]):
            a, b = b, a  # keep the larger member list
        total[a] += total[b]
        size[a] += size[b]
        owner[members[b]] = a
        members[a].extend(members[b])
        members[b] = []
        version[a] += 1
        version[b] = -1  # b is gone
        for n in neighbours[b]:
            neighbours[n].discard(b)
            if n != a:
                neighbours[n].add(a)
                neighbours[a].add(n)
        neighbours[b] = set()
        neighbours[a].discard(b)
        regions -= 1
        for n in neighbours[a]:
            heapq.heappush(heap, (distance(a, n), min(a, n), max(a, n),
                                  version[min(a, n)], version[max(a, n)]))  # fmt: skip
    return [maps[int(c)] for c in counts]


def colour_baseline_metrics(
    hierarchy: Hierarchy, gt: np.ndarray, *, ignore_index: int | None = 255, boundary_tolerance: int = 2
) -> list[LevelScore]:
    """Score the colour-merging baseline at the segment counts of the hierarchy's levels 1..L."""
    if hierarchy.image is None or hierarchy.image.shape[:2] != hierarchy.shape:
        raise ValueError("the colour baseline needs the hierarchy's image (Hierarchy.image) at its resolution")
    levels = list(range(1, hierarchy.num_levels))
    counts = [len(hierarchy.segment_ids(lv)) for lv in levels]
    maps = colour_merging_hierarchy(hierarchy.image, hierarchy.superpixels, counts)
    return metrics_for_label_maps(maps, gt, levels=levels, names=[f"{c} segments" for c in counts],
                                  ignore_index=ignore_index, boundary_tolerance=boundary_tolerance)

