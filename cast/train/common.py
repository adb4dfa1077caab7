"""Pieces the three jobs share: the base model, frozen parts, schedules and the job interface."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from cast.datasets import DatasetReport
from cast.errors import CheckpointError
from cast.model import Cast
from cast.weights import LoadedCheckpoint

from .config import TrainConfig

STATE_FORMAT = "cast_explorer_train_state"


def run_files(output: str | Path) -> tuple[Path, Path]:
    """(resume-state path, JSON-lines log path) next to the output file."""
    out = Path(output)
    stem = out.name.removesuffix(".safetensors")
    return out.with_name(f"{stem}.train-state.pt"), out.with_name(f"{stem}.log.jsonl")


def remove_resume_state(output: str | Path) -> int:
    """Delete the resume state next to a finished run's `output` (it holds the optimizer and, for MoCo, the
    heads: ~80x the model file); returns the bytes freed (0 when there was none). Call it only after a
    successful run: a cancelled one needs its state to resume."""
    state = run_files(output)[0]
    try:
        size = state.stat().st_size
        state.unlink()
    except FileNotFoundError:
        return 0
    return size


class TrainingJob(Protocol):
    """What the engine needs from one recipe (moco.py, supervised.py)."""

    config: TrainConfig
    model: nn.Module  # everything the job runs (moved to the device)
    module: nn.Module  # the part that is optimised, inside `model` (the engine wraps it in DDP)
    dataset: torch.utils.data.Dataset
    report: DatasetReport
    notes: list[str]  # deviations only the run knows (e.g. "momentum encoder copied from base")

    def optimizer(self) -> torch.optim.Optimizer: ...
    def lr_at(self, step: int, total_steps: int, steps_per_epoch: int) -> float: ...
    def set_train_mode(self) -> None: ...
    def loss(self, model: nn.Module, batch: dict[str, Any], step: int, total_steps: int) -> torch.Tensor: ...
    def evaluate(self, batch: dict[str, Any]) -> float: ...
    def save(self, path: str, metadata: Any) -> None: ...


@dataclass
class BaseModel:
    """The starting point of a job: a loaded checkpoint, or a fresh variant."""

    loaded: LoadedCheckpoint | None
    description: str  # for provenance: the path / zoo name, or "none (random init cast_small)"
    notes: list[str] = field(default_factory=list)


def load_base(config: TrainConfig) -> BaseModel:
    """Load `config.checkpoint` (path or zoo name; a zoo model that cannot be had is an error, never replaced)."""
    if config.checkpoint is None:
        return BaseModel(None, f"none (random init {config.variant})")
    from cast.weights import load_checkpoint
    from cast.weights.bundled import BUNDLED_MODEL, bundled_checkpoint
    from cast.weights.hub import load_pretrained  # network only for zoo names
    from cast.weights.zoo import ZOO

    name = str(config.checkpoint)
    if name == BUNDLED_MODEL:  # the bundled model by its name
        loaded = load_checkpoint(bundled_checkpoint())
    else:
        loaded = load_pretrained(name) if name in ZOO else load_checkpoint(config.checkpoint)
    notes = [] if loaded.trained else ["the base checkpoint is an UNTRAINED placeholder"]
    return BaseModel(loaded, str(config.checkpoint), notes)


def backbone_state(model: Cast) -> dict[str, torch.Tensor]:
    """A Cast's state dict without the classifier head."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}


def load_backbone(target: Cast, source: Cast) -> None:
    """Copy every non-head tensor of `source` into `target`; anything else missing is an error."""
    result = target.load_state_dict(backbone_state(source), strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("head.")]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"backbone does not fit: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}")


def stem_batchnorms(model: Cast) -> list[nn.BatchNorm2d]:
    return [m for m in model.patch_embed.proj if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def freeze_stem_statistics(model: Cast) -> None:
    """Stem BatchNorm in eval mode (running statistics fixed), spec §6.4 / §8.19. Call after .train()."""
    for bn in stem_batchnorms(model):
        bn.eval()


def disable_dropout(module: nn.Module) -> None:
    """p = 0 for every nn.Dropout (the graph pooling's 0.1); drop-path is set through the config."""
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0


def init_like_official_moco(model: Cast) -> None:
    """cast.py's from-scratch init (spec §2.10): qkv uniform +-sqrt(6/2C), other Linear Xavier, bias 0."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            if "qkv" in name:
                bound = math.sqrt(6.0 / float(m.weight.shape[0] // 3 + m.weight.shape[1]))
                nn.init.uniform_(m.weight, -bound, bound)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    nn.init.normal_(model.cls_token, std=1e-6)


def init_like_timm(model: Cast) -> None:
    """timm's ViT default init for the transformer blocks (cast_deit.py from scratch, spec §2.10)."""
    for m in model.blocks.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def warmup_cosine(step: float, total: float, base_lr: float, warmup: float, start_lr: float = 0.0, min_lr: float = 0.0) -> float:
    """Linear warm-up from start_lr over `warmup` steps, then half-cycle cosine to min_lr (per step)."""
    if step < warmup:
        return start_lr + (base_lr - start_lr) * step / warmup
    progress = (step - warmup) / max(total - warmup, 1e-12)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def no_weight_decay_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """timm's rule (DeiT): no decay for biases, norms (1-D tensors) and position / class tokens."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(".bias") or name in ("pos_embed", "cls_token", "pe_token")
        (no_decay if skip else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]
