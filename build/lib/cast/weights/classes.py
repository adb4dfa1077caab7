"""ImageNet-1k class names and top-k predictions for classifier checkpoints (the DeiT file, spec §5.2)."""
from __future__ import annotations

from importlib import resources

import torch

from ..errors import CheckpointError


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in class-index order (cast/data/imagenet_classes.txt)."""
    text = resources.files("cast").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    names = text.splitlines()
    if len(names) != 1000:
        raise CheckpointError(f"cast/data/imagenet_classes.txt has {len(names)} lines, expected 1000")
    return names


def top_k_classes(class_logits: torch.Tensor, k: int = 5, names: list[str] | None = None) -> list[tuple[str, float]]:
    """The k most probable classes of ONE image: [(name, softmax probability)], best first.

    class_logits: (num_classes,) or (1, num_classes); names default to the ImageNet-1k names.
    """
    logits = torch.as_tensor(class_logits).detach().float()
    if logits.dim() == 2 and logits.shape[0] == 1:
        logits = logits[0]
    if logits.dim() != 1:
        raise ValueError(f"top_k_classes expects the logits of one image, (C,) or (1, C); got {tuple(logits.shape)}")
    names = imagenet_class_names() if names is None else list(names)
    if len(names) != logits.numel():
        raise ValueError(f"{logits.numel()} logits but {len(names)} class names")
    probs = logits.softmax(dim=-1)
    values, indices = probs.topk(min(k, probs.numel()))
    return [(names[int(i)], float(v)) for v, i in zip(values, indices)]


