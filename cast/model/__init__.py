"""CAST model math: tensors in, tensors out (no images, files or UI here)."""
from .cast import Cast, CastOutput, build_model
from .config import MODEL_CONFIGS, CastConfig, get_config
from .fps import farthest_point_sample

__all__ = ["Cast", "CastOutput", "CastConfig", "MODEL_CONFIGS", "build_model", "farthest_point_sample", "get_config"]
