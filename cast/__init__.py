"""CAST Explorer: hierarchical segmentation with CAST (Ke, Mo, Yu, ICLR 2024), as a library.

    import cast
    model = cast.create_model("cast_base_moco_in1k", pretrained=True)   # the official weights
    hierarchy = cast.Segmenter(model).run("photo.jpg")                   # superpixels -> 64 -> 32 -> 16 -> 8
    hierarchy.labels(2), hierarchy.parent_of(2, 7), hierarchy.segment(2, 7)

Data flows image -> `cast.image` -> `cast.superpixels` -> `cast.model` -> `cast.hierarchy` -> `cast.render`
/ `cast.export`; `cast.weights` reads every published checkpoint layout, `cast.evaluation` scores
hierarchies, `cast.train` fine-tunes, `cast.cli` is the `cast` command.
"""
from .api import create_model, default_pretrained_for, list_models, load_model
from .collection.store import Collection, open_collection
from .errors import (
    CastError,
    CheckpointError,
    DatasetError,
    InvalidImageError,
    JobError,
    NotCastCheckpointError,
    SuperpixelError,
    TrainingError,
)
from .hierarchy import Hierarchy, SegmentRecord
from .image import InputConfig, load_image
from .model import CastConfig, VitConfig
from .segmenter import SegmentResult, Segmenter
from .superpixels import SuperpixelConfig
from .weights import LoadedCheckpoint, load_checkpoint

__version__ = "0.3.0"

__all__ = [
    "CastConfig", "CastError", "CheckpointError", "DatasetError", "Hierarchy", "InputConfig", "InvalidImageError",
    "JobError", "LoadedCheckpoint", "NotCastCheckpointError", "SegmentRecord", "SegmentResult", "Segmenter",
    "SuperpixelConfig", "SuperpixelError", "TrainingError", "VitConfig", "__version__", "create_model",
    "default_pretrained_for", "list_models", "load_checkpoint", "load_image", "load_model",
]  # fmt: skip
