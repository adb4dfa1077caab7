"""What `Segmenter` runs, one small strategy per model kind, over shared records.

    records.py   PreparedImage (an image ready for the model), SegmentResult (a hierarchy and what made it)
    cast_kind.py CAST: superpixels on the model input -> forward (batched by token count) -> argmax tree (§1, §4)
    vit_kind.py  the ViT baseline: forward -> spherical k-means 64 -> 32 -> 16 -> 8 of its patch features (§10)
"""
from .cast_kind import CastKind
from .records import PreparedImage, SegmentResult
from .vit_kind import VitKind

__all__ = ["CastKind", "PreparedImage", "SegmentResult", "VitKind"]
