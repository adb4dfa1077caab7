"""One entry point for naming: `SegmentNamer(clip).name_hierarchy(hierarchy, vocabulary)` (spec §11).

The namer holds the two caches naming needs: segment features per image and level (vocabulary-free)
and text features per vocabulary, so renaming an image with another vocabulary only encodes text.
`name_maps` is the notebook's procedure on maps already in CLIP's frame (the protocol and the
fidelity test use it); `name_hierarchy` brings a hierarchy's image and levels into that frame first.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import VocabularyError
from ..hierarchy import Hierarchy
from .clip import ClipModel
from .features import (
    FeatureCache,
    FramedImage,
    Progress,
    digest,
    SegmentFeatures,
    dropped_segment_masks,
    encode_segments,
    frame_image,
    frame_labels,
)
from .names import SegmentName, VocabularyFeatures, class_map, name_objects, name_parts
from .vocabulary import Vocabulary, VocabularyLimits, resolve_vocabulary


@dataclass(frozen=True)
class MapNames:
    """Names of one object map and optionally one part map, all in CLIP's frame (the notebook's outputs).

    object_classes / part_classes: (S, S) class index per pixel (`pred_c` / `pred_f` of the notebook)."""

    objects: list[SegmentName]
    object_features: SegmentFeatures
    object_classes: np.ndarray
    parts: list[SegmentName] = field(default_factory=list)
    part_features: SegmentFeatures | None = None
    part_classes: np.ndarray | None = None


@dataclass(frozen=True)
class HierarchyNames:
    """Names of the segments of some levels of one hierarchy: one record per present segment."""

    vocabulary: Vocabulary
    clip_model: str
    object_level: int
    part_levels: tuple[int, ...]
    records: tuple[SegmentName, ...]

    def name_of(self, level: int, segment: int) -> SegmentName | None:
        return self._index.get((level, segment))

    @property
    def _index(self) -> dict[tuple[int, int], SegmentName]:
        return {(r.level, r.segment): r for r in self.records}

    @property
    def levels(self) -> tuple[int, ...]:
        return (self.object_level, *self.part_levels)

    def for_level(self, level: int) -> list[SegmentName]:
        return [r for r in self.records if r.level == level]

    def names_used(self) -> list[str]:
        """Distinct names in order of first use (coarse level first): the legend."""
        return list(dict.fromkeys(r.name for r in self.records))

    def to_dict(self) -> dict[str, Any]:
        return {"vocabulary": self.vocabulary.describe(), "clip_model": self.clip_model,
                "object_level": self.object_level, "part_levels": list(self.part_levels),
                "records": [r.to_dict() for r in self.records]}  # fmt: skip


def default_levels(hierarchy: Hierarchy) -> tuple[int, int | None]:
    """The object level (the coarsest) and the part level (the next finer, None below level 1)."""
    coarsest = hierarchy.num_levels - 1
    return coarsest, (coarsest - 1 if coarsest - 1 >= 1 else None)


class SegmentNamer:
    """Names segments with one CLIP model; keeps segment and text features between calls (thread-safe)."""

    def __init__(self, clip: ClipModel, *, batch_size: int = 16, feature_cache: FeatureCache | None = None,
                 max_prompts: int = 20_000) -> None:
        self.clip = clip
        self.batch_size = batch_size
        self.features = feature_cache if feature_cache is not None else FeatureCache()
        self.max_prompts = max_prompts
        self._prompts: OrderedDict[str, torch.Tensor] = OrderedDict()  # name -> its prompt's text feature
        self._framed: OrderedDict[str, FramedImage] = OrderedDict()  # image digest -> the image in CLIP's frame
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- building blocks
    def prompt_features(self, names: Sequence[str]) -> torch.Tensor:
        """(n, D) text features of `a photo of a {name}` for each name. Each prompt is encoded once and kept
        (up to `max_prompts`), so vocabularies and searches seen before cost no CLIP forward."""
        with self._lock:
            missing = [n for n in dict.fromkeys(names) if n not in self._prompts]
        encoded: dict[str, torch.Tensor] = {}
        for start in range(0, len(missing), 256):
            chunk = missing[start : start + 256]
            encoded.update(zip(chunk, self.clip.encode_text(chunk)))
        with self._lock:
            self._prompts.update(encoded)
            found = [self._prompts.get(n, encoded.get(n)) for n in names]
            for n in dict.fromkeys(names):
                if n in self._prompts:
                    self._prompts.move_to_end(n)
            while len(self._prompts) > self.max_prompts:
                self._prompts.popitem(last=False)
        return torch.stack(found) if found else torch.zeros((0, 0))

    def text_features(self, vocabulary: Vocabulary) -> VocabularyFeatures:
        """Text features of a vocabulary (spec §11.2): objects + background, and each object's parts."""
        objects = self.prompt_features(vocabulary.object_classes)
        parts = tuple(self.prompt_features(group) if group else objects[j : j + 1]
                      for j, group in enumerate(vocabulary.parts))  # fmt: skip
        return VocabularyFeatures(vocabulary, objects, parts)

    def framed_image(self, image: np.ndarray, *, pad: bool = True) -> FramedImage:
        """An image in CLIP's frame, kept for the last few images (renaming does not transform it again)."""
        key = digest(np.asarray(image)) + str(pad)
        with self._lock:
            if key in self._framed:
                self._framed.move_to_end(key)
                return self._framed[key]
        framed = frame_image(self.clip, image, pad=pad)
        with self._lock:
            self._framed[key] = framed
            while len(self._framed) > 16:
                self._framed.popitem(last=False)
        return framed

    def segment_features(self, framed: FramedImage, labels: torch.Tensor, *, progress: Progress | None = None,
                         extra_masks: dict[int, torch.Tensor] | None = None) -> SegmentFeatures:
        """CLIP features of every segment of an (S, S) map of `framed`, from the cache when known."""
        encode = lambda: encode_segments(self.clip, framed, labels, batch_size=self.batch_size,  # noqa: E731
                                         progress=progress, extra_masks=extra_masks)
        return self.features.get_or_encode(self.clip, framed, labels, encode, tuple(sorted(extra_masks or ())))

    # ---------------------------------------------------------------- the notebook's procedure
    def name_maps(self, framed: FramedImage, object_map: torch.Tensor, vocabulary: Vocabulary,
                  part_map: torch.Tensor | None = None, *, object_level: int = 0, part_level: int = 0,
                  progress: Progress | None = None) -> MapNames:
        """Name an object map (§11.3) and optionally a part map conditioned on it (§11.4); maps in the frame."""
        text = self.text_features(vocabulary)
        scale = self.clip.logit_scale
        obj_feats = self.segment_features(framed, object_map, progress=progress)
        objects = name_objects(object_level, obj_feats, text, scale=scale)
        object_classes = class_map(object_map, objects, fill=len(vocabulary.objects))
        if part_map is None:
            return MapNames(objects, obj_feats, object_classes)
        part_feats = self.segment_features(framed, part_map, progress=progress)
        parts = name_parts(part_level, part_feats, object_classes, text, scale=scale)
        return MapNames(objects, obj_feats, object_classes, parts, part_feats,
                        class_map(part_map, parts, fill=vocabulary.background_part))

    # ---------------------------------------------------------------- hierarchies
    def name_hierarchy(self, hierarchy: Hierarchy, vocabulary: str | Vocabulary, *, object_level: int | None = None,
                       part_levels: Sequence[int] | None = None, limits: VocabularyLimits = VocabularyLimits(),
                       max_segments: int | None = None, pad: bool = True,
                       progress: Callable[[float, str], None] | None = None) -> HierarchyNames:
        """Name the segments of `object_level` (default: the coarsest) with the vocabulary's objects, and of
        each of `part_levels` (default: the next finer) with the parts of the object under them (§11.4;
        a vocabulary without parts names those levels with its objects too).

        The hierarchy's image and label maps are brought into CLIP's frame (`pad`: padded to a square, so
        every segment is seen). `max_segments` caps the CLIP forwards of one call (hosted mode)."""
        vocab = resolve_vocabulary(vocabulary, limits=limits)
        if hierarchy.image is None:
            raise VocabularyError("this hierarchy carries no image; naming needs the pixels")
        coarsest, finer = default_levels(hierarchy)
        object_level = coarsest if object_level is None else int(object_level)
        part_levels = tuple(int(p) for p in part_levels) if part_levels is not None else ((finer,) if finer else ())
        for level in (object_level, *part_levels):
            if not 0 <= level < hierarchy.num_levels:
                raise VocabularyError(f"level {level} does not exist; this hierarchy has levels 0..{hierarchy.num_levels - 1}")
        if object_level in part_levels:
            raise VocabularyError(f"level {object_level} cannot be both the object level and a part level")
        wanted = len(hierarchy.segment_ids(object_level)) + sum(len(hierarchy.segment_ids(p)) for p in part_levels)
        if max_segments is not None and wanted > max_segments:
            raise VocabularyError(f"naming these levels needs {wanted} CLIP passes; at most {max_segments} are "
                                  "allowed per request here: choose coarser levels")
        framed = self.framed_image(hierarchy.image, pad=pad)
        done = [0]

        def tick(level: int) -> Progress:
            def report(k: int, n: int) -> None:
                if progress is not None:
                    progress(min(1.0, (done[0] + k) / max(1, wanted)), f"CLIP: level {level}, segment {k}/{n}")
            return report

        text = self.text_features(vocab)
        scale = self.clip.logit_scale
        obj_labels, obj_feats = self._level_features(hierarchy, object_level, framed, pad, tick(object_level))
        done[0] += len(obj_feats.segments)
        records = name_objects(object_level, obj_feats, text, scale=scale)
        object_classes = class_map(obj_labels, records, fill=len(vocab.objects))
        for level in part_levels:
            labels, feats = self._level_features(hierarchy, level, framed, pad, tick(level))
            done[0] += len(feats.segments)
            if vocab.has_parts:
                records += name_parts(level, feats, object_classes, text, scale=scale)
            else:
                records += name_objects(level, feats, text, scale=scale)
        return HierarchyNames(vocab, self.clip.id, object_level, part_levels, tuple(records))

    def _level_features(self, hierarchy: Hierarchy, level: int, framed: FramedImage, pad: bool,
                        progress: Progress) -> tuple[torch.Tensor, SegmentFeatures]:
        labels = hierarchy.labels(level)
        framed_labels = frame_labels(self.clip, labels, pad=pad)
        extra = dropped_segment_masks(labels, framed_labels, self.clip, pad=pad, present=hierarchy.segment_ids(level))
        return framed_labels, self.segment_features(framed, framed_labels, progress=progress, extra_masks=extra)
