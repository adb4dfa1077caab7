"""Weights: safe reading, layout detection and the one key map, our safetensors format, the model zoo.

    reading   bytes -> checkpoint object (safetensors, torch.load(weights_only=True); nothing executes)
    layouts   which published layout / CAST variant a file holds; official names -> ours
    loading   load_checkpoint(path) -> LoadedCheckpoint (strict), convert_checkpoint(src, dst)
    format    CAST Explorer's own safetensors format with JSON metadata (config, superpixels, provenance)
    pretrained_cfg  PretrainedCfg: what a loaded model's weights are (model.pretrained_cfg), built only there
    classes   ImageNet-1k class names, top-k predictions
    zoo       every published checkpoint (spec §5) and loading one by name from the Hugging Face Hub
"""
from .classes import imagenet_class_names, top_k_classes
from .format import CheckpointMetadata, Provenance, save_cast_checkpoint
from .layouts import LAYOUTS, detect_layout, infer_config, to_model_state_dict
from .loading import LoadedCheckpoint, convert_checkpoint, load_checkpoint
from .pretrained_cfg import PretrainedCfg
from .reading import read_checkpoint_file

__all__ = [
    "LAYOUTS", "CheckpointMetadata", "LoadedCheckpoint", "PretrainedCfg", "Provenance", "convert_checkpoint", "detect_layout",
    "imagenet_class_names", "infer_config", "load_checkpoint", "read_checkpoint_file", "save_cast_checkpoint",
    "to_model_state_dict", "top_k_classes",
]  # fmt: skip
