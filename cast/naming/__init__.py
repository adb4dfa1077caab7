"""Naming CAST's segments zero-shot with CLIP (spec §11): the paper's "by recognition" step.

    from cast.naming import SegmentNamer, load_clip
    namer = SegmentNamer(load_clip())                      # $CAST_CLIP_MODEL, default OpenAI ViT-B/16
    names = namer.name_hierarchy(hierarchy, "partimagenet")  # objects at level 4, parts at level 3
    names.name_of(4, 2).name, names.name_of(4, 2).score

Data flows vocabulary -> text features; image + label map -> CLIP frame -> masked-segment features
(cached per image and level) -> names. `cast.naming.clip` chooses and fetches the CLIP weights.
"""
from .clip import (
    DEFAULT_CLIP_MODEL,
    ENV_VAR,
    ClipModel,
    ClipModelCache,
    ClipModelSpec,
    clip_spec,
    fetch_clip_weights,
    load_clip,
    wrap_open_clip,
)
from .features import FeatureCache, FramedImage, SegmentFeatures, encode_segments, frame_image, frame_labels
from .namer import HierarchyNames, MapNames, SegmentNamer, default_levels
from .names import SegmentName, VocabularyFeatures
from .search import TextSearchCache, TextSearchIndex
from .vocabulary import (
    BACKGROUND,
    PRESETS,
    PROMPT,
    Vocabulary,
    VocabularyLimits,
    coco,
    imagenet,
    parse_vocabulary,
    partimagenet,
    resolve_vocabulary,
)

__all__ = [
    "BACKGROUND", "DEFAULT_CLIP_MODEL", "ENV_VAR", "PRESETS", "PROMPT", "ClipModel", "ClipModelCache",
    "ClipModelSpec", "FeatureCache", "FramedImage", "HierarchyNames", "MapNames", "SegmentFeatures",
    "SegmentName", "SegmentNamer", "TextSearchCache", "TextSearchIndex", "Vocabulary", "VocabularyFeatures", "VocabularyLimits", "clip_spec", "coco",
    "default_levels", "encode_segments", "fetch_clip_weights", "frame_image",
    "frame_labels", "imagenet", "load_clip", "parse_vocabulary", "partimagenet", "resolve_vocabulary",
    "wrap_open_clip",
]  # fmt: skip
