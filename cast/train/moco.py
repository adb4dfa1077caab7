"""MoCo-v3 for CAST (spec §6.1), as the official `moco/builder.py` does it, scaled down per §6.4.

Module names follow the official checkpoints: `projector` holds `base_encoder.head.{0..7}` (Linear ->
BN -> ReLU twice, Linear -> BN without affine), `predictor` holds `predictor.{0..4}`, so the `extras`
of `cast.weights.load_checkpoint` load with `strict=True`. Keys are gathered from all processes
under DDP (targets offset by rank x N); on one process they are the local batch.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from cast.datasets import prepare_data_root, scan_images
from cast.errors import CheckpointError
from cast.model import Cast, build_model, get_config
from cast.weights import read_checkpoint_file, to_model_state_dict

from .common import (
    STATE_FORMAT,
    BaseModel,
    disable_dropout,
    freeze_stem_statistics,
    init_like_official_moco,
    load_backbone,
    load_base,
    run_files,
    trainable,
    warmup_cosine,
)  # fmt: skip
from .config import MocoConfig
from .views import ImageDataset, TwoViews

_MOMENTUM_PREFIXES = ("module.momentum_encoder.", "momentum_encoder.")


def build_mlp(num_layers: int, in_dim: int, mlp_dim: int, out_dim: int, last_bn: bool = True) -> nn.Sequential:
    """MoCo-v3's `_build_mlp`: bias-free Linear layers; BN + ReLU between, BN without affine at the end."""
    layers: list[nn.Module] = []
    for layer in range(num_layers):
        dim1 = in_dim if layer == 0 else mlp_dim
        dim2 = out_dim if layer == num_layers - 1 else mlp_dim
        layers.append(nn.Linear(dim1, dim2, bias=False))
        if layer < num_layers - 1:
            layers += [nn.BatchNorm1d(dim2), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(dim2, affine=False))
    return nn.Sequential(*layers)


@torch.no_grad()
def concat_all_gather(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(keys of all processes concatenated, this process's offset); no gradient, as in MoCo-v3."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor, 0
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered, dim=0), dist.get_rank() * tensor.shape[0]


def contrastive_loss(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE of queries q (N, D) against all keys k (gathered); the matching key is the target; x 2 tau."""
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.float(), dim=1)
    keys, offset = concat_all_gather(k)
    logits = q @ keys.t() / temperature
    targets = torch.arange(q.shape[0], device=q.device) + offset
    return F.cross_entropy(logits, targets) * (2 * temperature)


def momentum_at(step: int, total_steps: int, base: float) -> float:
    """m(t) = 1 - 1/2 (1 + cos(pi t / T)) (1 - m0), t / T the fraction of training done (spec §6.1)."""
    return 1.0 - 0.5 * (1.0 + math.cos(math.pi * step / total_steps)) * (1.0 - base)


class MocoV3(nn.Module):
    """Online encoder + projector + predictor, and their momentum twins (no gradient)."""

    def __init__(self, encoder: Cast, mlp_dim: int = 4096, out_dim: int = 256, temperature: float = 0.2) -> None:
        super().__init__()
        if encoder.head is not None:
            raise ValueError("the MoCo base encoder must have no classifier head (num_classes=0)")
        self.temperature = temperature
        self.base_encoder = encoder
        self.projector = build_mlp(3, encoder.config.embed_dim, mlp_dim, out_dim)
        self.predictor = build_mlp(2, out_dim, mlp_dim, out_dim)
        self.momentum_encoder = copy.deepcopy(encoder)
        self.momentum_projector = copy.deepcopy(self.projector)
        for p in self.momentum_parameters():
            p.requires_grad_(False)

    def online_parameters(self) -> list[nn.Parameter]:
        return list(self.base_encoder.parameters()) + list(self.projector.parameters())

    def momentum_parameters(self) -> list[nn.Parameter]:
        return list(self.momentum_encoder.parameters()) + list(self.momentum_projector.parameters())

    @torch.no_grad()
    def update_momentum(self, m: float) -> None:
        """EMA of every online parameter (frozen ones included, as official), before the keys."""
        for online, twin in zip(self.online_parameters(), self.momentum_parameters()):
            twin.mul_(m).add_(online.detach(), alpha=1.0 - m)

    def forward(self, images1: torch.Tensor, superpixels1: torch.Tensor, images2: torch.Tensor,
                superpixels2: torch.Tensor, momentum: float) -> torch.Tensor:  # fmt: skip
        """Symmetric loss l(q1, k2) + l(q2, k1); images (B, 3, H, W), superpixels (B, H, W) int64."""
        q1 = self.predictor(self.projector(self.base_encoder(images1, superpixels1).embedding))
        q2 = self.predictor(self.projector(self.base_encoder(images2, superpixels2).embedding))
        with torch.no_grad():
            self.update_momentum(momentum)  # every iteration, before the keys (spec §8.25)
            k1 = self.momentum_projector(self.momentum_encoder(images1, superpixels1).embedding)
            k2 = self.momentum_projector(self.momentum_encoder(images2, superpixels2).embedding)
        return contrastive_loss(q1, k2, self.temperature) + contrastive_loss(q2, k1, self.temperature)

    def extras(self) -> dict[str, dict[str, torch.Tensor]]:
        """What our checkpoint stores next to the backbone to continue MoCo later."""
        momentum = dict(self.momentum_encoder.state_dict())
        momentum.update({f"head.{k}": v for k, v in self.momentum_projector.state_dict().items()})
        return {"projector": self.projector.state_dict(), "predictor": self.predictor.state_dict(),
                "momentum_encoder": momentum}  # fmt: skip


# ------------------------------------------------------------------------------------ building
def build_moco(config: MocoConfig, base: BaseModel) -> tuple[MocoV3, list[str]]:
    """The MoCo model for a config and a base (continuing a MoCo checkpoint keeps all its parts)."""
    notes: list[str] = list(base.notes)
    loaded = base.loaded
    cfg = (loaded.config if loaded is not None else get_config(config.variant))
    encoder = build_model(cfg.with_(num_classes=0, drop_path_rate=0.0))
    if loaded is None:
        init_like_official_moco(encoder)
    else:
        load_backbone(encoder, loaded.model)
        if loaded.has_classifier:
            notes.append("the base checkpoint's classifier head is not used by MoCo")
    moco = MocoV3(encoder, config.mlp_dim, config.out_dim, config.temperature)
    extras = (loaded.extras or _heads_from_resume_state(loaded.source)) if loaded is not None else {}
    for part in ("projector", "predictor"):
        if part in extras:
            _load_part(getattr(moco, part), extras[part], part, config)
        elif loaded is not None:
            notes.append(f"MoCo {part} newly initialised: the base checkpoint has none")
    momentum = extras.get("momentum_encoder") or (_official_momentum(loaded) if loaded is not None else None)
    if momentum is not None:
        heads = {k[len("head."):]: v for k, v in momentum.items() if k.startswith("head.")}
        moco.momentum_encoder.load_state_dict({k: v for k, v in momentum.items() if not k.startswith("head.")})
        if heads:
            _load_part(moco.momentum_projector, heads, "momentum projector", config)
        else:
            moco.momentum_projector.load_state_dict(moco.projector.state_dict())
    else:
        moco.momentum_projector.load_state_dict(moco.projector.state_dict())
        if loaded is not None:
            notes.append("momentum encoder initialised as a copy of the base encoder (the checkpoint has none)")
    return moco, notes


def _load_part(module: nn.Module, state: dict[str, torch.Tensor], name: str, config: MocoConfig) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"the base checkpoint's MoCo {name} does not fit mlp_dim={config.mlp_dim}, out_dim={config.out_dim} "
            f"({str(err).splitlines()[0]}...); use the checkpoint's sizes (official: 4096 / 256)"
        ) from err


def _heads_from_resume_state(model_file: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The MoCo heads of a fine-tune of ours, from the resume state kept next to its model file (or {})."""
    state_path = run_files(model_file)[0]
    if not state_path.is_file():
        return {}
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception:  # an unreadable state only means starting the heads fresh, as for any base
        return {}
    if state.get("format") != STATE_FORMAT or state.get("kind") != "moco":
        return {}
    module = state.get("module") or {}
    part = lambda prefix: {k[len(prefix):]: v for k, v in module.items() if k.startswith(prefix)}  # noqa: E731
    momentum = {**part("momentum_encoder."), **{f"head.{k}": v for k, v in part("momentum_projector.").items()}}
    heads = {"projector": part("projector."), "predictor": part("predictor."), "momentum_encoder": momentum}
    return {name: values for name, values in heads.items() if values}


def _official_momentum(loaded) -> dict[str, torch.Tensor] | None:
    """The momentum encoder (+ its projector as head.*) of an official MoCo file, in our names."""
    if loaded.layout != "moco":
        return None
    raw = read_checkpoint_file(loaded.source)["state_dict"]  # the loader keeps only the online encoder
    prefix = next((p for p in _MOMENTUM_PREFIXES if any(k.startswith(p) for k in raw)), None)
    if prefix is None:
        return None
    state = {k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}
    heads = {k: v for k, v in state.items() if k.startswith("head.")}
    body = to_model_state_dict({k: v for k, v in state.items() if not k.startswith("head.")}, loaded.config)
    body.pop("head.weight", None), body.pop("head.bias", None)
    return {**body, **heads}


# ----------------------------------------------------------------------------------------- job
class MocoJob:
    """Self-supervised adaptation on an unlabelled folder (spec §6.4 mode 2)."""

    def __init__(self, config: MocoConfig, world_size: int = 1, device: str = "cpu") -> None:
        self.config = config
        root = prepare_data_root(config.data, extract_dir=config.data_cache_dir, max_bytes=config.max_data_bytes)
        files, self.report = scan_images(root)
        self.dataset = ImageDataset(files, TwoViews(config.image_size, config.superpixels), root=root, seed=config.seed)
        self.base = load_base(config)
        self.module, self.notes = build_moco(config, self.base)
        if config.disable_dropout:
            disable_dropout(self.module)
        self.model = self.module
        self.freeze_stem = config.stem_bn_frozen(config.bn_batch(world_size, device))

    def optimizer(self) -> torch.optim.Optimizer:
        # AdamW with weight decay on every parameter that has a gradient (spec §6.1).
        return torch.optim.AdamW(trainable(self.module), lr=self.config.effective_lr, weight_decay=self.config.weight_decay)

    def lr_at(self, step: int, total_steps: int, steps_per_epoch: int) -> float:
        warmup = self.config.warmup_fraction * total_steps
        return warmup_cosine(step, total_steps, self.config.effective_lr, warmup)

    def set_train_mode(self) -> None:
        self.module.train()
        if self.freeze_stem:
            freeze_stem_statistics(self.module.base_encoder)
            freeze_stem_statistics(self.module.momentum_encoder)

    def loss(self, model: nn.Module, batch: dict[str, Any], step: int, total_steps: int) -> torch.Tensor:
        m = momentum_at(step, total_steps, self.config.momentum)
        return model(batch["images1"], batch["superpixels1"], batch["images2"], batch["superpixels2"], m)

    @torch.no_grad()
    def evaluate(self, batch: dict[str, Any]) -> float:
        """The loss on `batch` as training computes it (train-mode BN, no dropout), on a copy, momentum unchanged."""
        probe = copy.deepcopy(self.module)
        probe.train()
        for m in probe.modules():
            if isinstance(m, nn.Dropout):
                m.eval()  # deterministic: the batch statistics stay, the dropout noise goes
        if self.freeze_stem:
            freeze_stem_statistics(probe.base_encoder)
            freeze_stem_statistics(probe.momentum_encoder)
        device = next(probe.parameters()).device
        return float(probe(*(batch[k].to(device) for k in ("images1", "superpixels1", "images2", "superpixels2")), 1.0))

    def save(self, path: str, metadata: Any) -> None:
        """The model file holds what inference needs: the backbone. The MoCo heads stay in the resume state
        next to it (`run_files`), where continuing training finds them."""
        from cast.weights.format import save_cast_checkpoint

        save_cast_checkpoint(path, self.module.base_encoder, metadata=metadata)
