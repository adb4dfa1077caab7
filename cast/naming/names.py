"""Naming segments from their CLIP features: objects (spec §11.3) and parts given the objects (§11.4).

Decisions follow the notebook exactly: the argmax of plain dot products between the L2-normalised image
and text features. The *scores* we report are CLIP's own probabilities (softmax of `logit_scale` x the
cosine similarities, as CLIP's zero-shot classifier); the argmax is the same either way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .features import SegmentFeatures
from .vocabulary import Vocabulary

RUNNER_UPS = 3


@dataclass(frozen=True)
class VocabularyFeatures:
    """Text features of a vocabulary (spec §11.2): objects + background, and each object's parts."""

    vocabulary: Vocabulary
    objects: torch.Tensor  # (n_objects + 1, D)
    parts: tuple[torch.Tensor, ...]  # per object: (n_parts_j, D)


@dataclass(frozen=True)
class SegmentName:
    """The name of one segment: its class, score and runner-ups. Parts carry the object they were
    conditioned on (`object_name`, `object_index`); `class_index` is the global class index
    (objects: 0..n-1, background n; parts: grouped by object, background part last)."""

    level: int
    segment: int
    name: str
    score: float  # CLIP's probability of `name` among the candidates
    similarity: float  # cosine similarity of the segment's and the name's features
    class_index: int
    kind: str  # "object" or "part"
    runner_ups: tuple[tuple[str, float], ...] = ()
    object_name: str | None = None
    object_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the /name_segments records, exports)."""
        return {"level": self.level, "segment": self.segment, "name": self.name, "score": round(self.score, 6),
                "similarity": round(self.similarity, 6), "class_index": self.class_index, "kind": self.kind,
                "runner_ups": [{"name": n, "score": round(s, 6)} for n, s in self.runner_ups],
                "object": self.object_name}  # fmt: skip


def _decide(features: torch.Tensor, text: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(similarities (n, k), probabilities (n, k), argmax (n,)) of image features against text features."""
    similarity = features @ text.T
    return similarity, (scale * similarity).softmax(dim=-1), similarity.argmax(dim=-1)


def _runner_ups(names: tuple[str, ...], probs: torch.Tensor, best: int) -> tuple[tuple[str, float], ...]:
    order = [int(k) for k in torch.argsort(probs, descending=True) if int(k) != best]
    return tuple((names[k], float(probs[k])) for k in order[:RUNNER_UPS])


def name_objects(level: int, features: SegmentFeatures, text: VocabularyFeatures, *, scale: float) -> list[SegmentName]:
    """Every segment's object class among the objects + background (spec §11.3 steps 2-3)."""
    if not features.segments:
        return []
    names = text.vocabulary.object_classes
    similarity, probs, best = _decide(features.features, text.objects, scale)
    out = []
    for row, segment in enumerate(features.segments):
        k = int(best[row])
        out.append(SegmentName(level, segment, names[k], float(probs[row, k]), float(similarity[row, k]), k,
                               "object", _runner_ups(names, probs[row], k)))
    return out


def name_parts(level: int, features: SegmentFeatures, object_class_map: torch.Tensor | np.ndarray,
               text: VocabularyFeatures, *, scale: float) -> list[SegmentName]:
    """Every segment's part class, conditioned on the object class at its first pixel (spec §11.4).

    `object_class_map` is the (S, S) object class per pixel of the coarser level in the same frame."""
    vocab = text.vocabulary
    object_map = torch.as_tensor(np.asarray(object_class_map))
    background = len(vocab.objects)
    out = []
    for row, segment in enumerate(features.segments):
        obj = int(object_map[features.first_pixel[row]])  # the first pixel in row-major order, not a vote
        if obj >= background or obj < 0:
            # a part of the background is background (the notebook's last part index), with certainty
            similarity = float(features.features[row] @ text.objects[background])
            out.append(SegmentName(level, segment, vocab.background, 1.0, similarity, vocab.background_part, "part",
                                   (), vocab.background, background))  # fmt: skip
            continue
        group = vocab.parts[obj] or (vocab.objects[obj],)  # an object without parts is its own only part
        similarity, probs, best = _decide(features.features[row : row + 1], text.parts[obj], scale)
        k = int(best[0])
        out.append(SegmentName(level, segment, group[k], float(probs[0, k]), float(similarity[0, k]),
                               vocab.part_offset(obj) + k, "part", _runner_ups(group, probs[0], k),
                               vocab.objects[obj], obj))  # fmt: skip
    return out


def class_map(labels: torch.Tensor | np.ndarray, names: list[SegmentName], fill: int) -> np.ndarray:
    """Paint each segment's class index over its pixels; pixels of unnamed segments get `fill`."""
    labels = np.asarray(labels)
    lookup = np.full(int(max(labels.max(initial=0), max((n.segment for n in names), default=0))) + 2, fill, np.int64)
    for n in names:
        lookup[n.segment] = n.class_index
    out = np.full(labels.shape, fill, np.int64)
    inside = labels >= 0
    out[inside] = lookup[labels[inside]]
    return out
