"""CAST Explorer: hierarchical segmentation with CAST (Ke, Mo, Yu, ICLR 2024), as a library.

    import cast
    model = cast.create_model("cast_base_moco_in1k", pretrained=True)   # the official weights
    hierarchy = cast.Segmenter(model).run("photo.jpg")                   # superpixels -> 64 -> 32 -> 16 -> 8
    hierarchy.labels(2), hierarchy.parent_of(2, 7), hierarchy.segment(2, 7)

Data flows image -> `cast.image` -> `cast.superpixels` -> `cast.model` -> `cast.hierarchy` -> `cast.render`
/ `cast.export`; `cast.segmenter` runs that path through one strategy per model kind (`cast.pipeline`);
`cast.weights` reads every published checkpoint layout, `cast.evaluation` scores hierarchies,
`cast.train` fine-tunes, `cast.cli` is the `cast` command. Every error raised on purpose is a CastError.

The names below are imported on first use (PEP 562), so that `import cast.cli` and `cast --help` do not
pay for PyTorch; `from cast import Segmenter` and `cast.Segmenter` work as usual.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"

# public name -> the submodule that defines it
_EXPORTS = {
    "create_model": "api", "default_pretrained_for": "api", "list_models": "api", "load_model": "api",
    "Collection": "collection.store", "open_collection": "collection.store",
    "CastError": "errors", "CheckpointError": "errors", "ConfigError": "errors", "DatasetError": "errors",
    "HierarchyError": "errors", "InvalidImageError": "errors", "JobError": "errors",
    "NotCastCheckpointError": "errors", "OutOfRangeError": "errors", "SuperpixelError": "errors",
    "TrainingError": "errors",
    "example_image": "examples", "example_images": "examples",
    "Hierarchy": "hierarchy", "SegmentationProvenance": "hierarchy", "SegmentRecord": "hierarchy",
    "InputConfig": "image", "load_image": "image",
    "CastConfig": "model", "VitConfig": "model",
    "SegmentResult": "segmenter", "Segmenter": "segmenter",
    "SuperpixelConfig": "superpixels",
    "PretrainedCfg": "weights.pretrained_cfg",
}  # fmt: skip

# subpackages reachable as attributes too (`cast.weights.bundled`), imported on first use
_SUBMODULES = {
    "api", "cli", "collection", "datasets", "errors", "evaluation", "examples", "export", "hierarchy", "image", "model",
    "pipeline", "render", "segmenter", "superpixels", "train", "weights",
}  # fmt: skip

__all__ = [
    "CastConfig", "CastError", "CheckpointError", "ConfigError", "DatasetError", "Hierarchy", "HierarchyError",
    "InputConfig", "InvalidImageError", "JobError", "NotCastCheckpointError", "OutOfRangeError", "PretrainedCfg",
    "SegmentRecord", "SegmentResult", "SegmentationProvenance", "Segmenter", "SuperpixelConfig", "SuperpixelError",
    "TrainingError", "VitConfig", "__version__", "create_model", "default_pretrained_for", "example_image",
    "example_images", "list_models", "load_image", "load_model", "Collection", "open_collection",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cast' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # what static tools see: the same names, imported eagerly
    from .api import create_model, default_pretrained_for, list_models, load_model
    from .collection.store import Collection, open_collection
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
    from .examples import example_image, example_images
    from .hierarchy import Hierarchy, SegmentationProvenance, SegmentRecord
    from .image import InputConfig, load_image
    from .model import CastConfig, VitConfig
    from .segmenter import SegmentResult, Segmenter
    from .superpixels import SuperpixelConfig
    from .weights.pretrained_cfg import PretrainedCfg
