"""Model math: tensors in, tensors out (no images, files or UI here). CAST, and the paper's ViT baseline."""
from .cast import Cast, CastOutput, build_model
from .config import MODEL_CONFIGS, CastConfig, get_config
from .fps import farthest_point_sample
from .linear import LINEAR_KERNELS, set_linear_kernel
from .vit import VIT_CONFIGS, VitBaseline, VitConfig, build_vit

__all__ = [
    "Cast", "CastConfig", "CastOutput", "LINEAR_KERNELS", "MODEL_CONFIGS", "VIT_CONFIGS", "VitBaseline", "VitConfig", "build_model",
    "build_vit", "farthest_point_sample", "get_config", "set_linear_kernel",
]  # fmt: skip
