"""CAST Explorer: hierarchical segmentation with CAST (Ke, Mo, Yu, ICLR 2024), as a library.

    import cast
    model = cast.create_model("cast_base_moco_in1k", pretrained=True)   # a model by name (official weights)
    model = cast.load_model("my_finetune.safetensors")                   # or from a file
    hierarchy = cast.Segmenter(model).run("photo.jpg")                   # superpixels -> 64 -> 32 -> 16 -> 8
    hierarchy.labels(2), hierarchy.parent_of(2, 7), hierarchy.segment(2, 7)

Data flows image -> `cast.image` -> `cast.superpixels` -> `cast.model` -> `cast.hierarchy` -> `cast.render`
/ `cast.export`; `cast.segmenter` runs that path through one strategy per model kind (`cast.pipeline`);
`cast.weights` reads every published checkpoint layout, `cast.evaluation` scores hierarchies,
`cast.train` fine-tunes, `cast.cli` is the `cast` command. Every error raised on purpose is a CastError.
"""
from .api import create_model, default_pretrained_for, list_models, load_model
from .errors import (
    CastError,
    CheckpointError,
    ConfigError,
    DatasetError,
    HierarchyError,
    InvalidImageError,
    JobError,
    NotCastCheckpointError,
    OutOfRangeError,
    SuperpixelError,
    TrainingError,
)
from .hierarchy import Hierarchy, SegmentationProvenance, SegmentRecord
from .image import InputConfig, load_image
from .model import CastConfig, VitConfig
from .segmenter import SegmentResult, Segmenter
from .superpixels import SuperpixelConfig
from .weights.pretrained_cfg import PretrainedCfg

__version__ = "0.3.0"

__all__ = [
    "CastConfig", "CastError", "CheckpointError", "ConfigError", "DatasetError", "Hierarchy", "HierarchyError",
    "InputConfig", "InvalidImageError", "JobError", "NotCastCheckpointError", "OutOfRangeError", "PretrainedCfg",
    "SegmentRecord", "SegmentResult", "SegmentationProvenance", "Segmenter", "SuperpixelConfig", "SuperpixelError",
    "TrainingError", "VitConfig", "__version__", "create_model", "default_pretrained_for", "list_models",
    "load_image", "load_model",
]  # fmt: skip
