"""Labelled jobs: the DeiT-style fine-tune (spec §6.3, §6.4 mode 3) and the linear probe (§6.2, mode 1).

Both read a folder-per-class layout. The fine-tune trains the backbone (pool4 and a sin-cos table stay
frozen) and a new or kept head; the probe trains only Linear(C, classes) on a frozen backbone kept in
eval mode, optionally on features cached once (a recorded deviation).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from cast.datasets import DatasetReport, prepare_data_root, scan_class_folders
from cast.model import Cast, get_config
from cast.weights.format import save_cast_checkpoint

from .common import (
    BaseModel,
    disable_dropout,
    freeze_stem_statistics,
    init_like_timm,
    load_backbone,
    load_base,
    no_weight_decay_groups,
    trainable,
    warmup_cosine,
)  # fmt: skip
from .config import LinearProbeConfig, SupervisedConfig, TrainConfig
from .views import (
    ImageDataset,
    OneView,
    collate_samples,
    eval_crop_transform,
    train_crop_transform,
)


def classifier_from_base(base: BaseModel, config: TrainConfig, class_names: list[str], drop_path: float,
                         keep_head: bool = True) -> tuple[Cast, list[str]]:  # fmt: skip
    """A Cast with a `len(class_names)`-way head: the base's head if it has the same classes (and
    `keep_head`), else a new one initialised as timm / DeiT do (truncated normal, std 0.02)."""
    loaded = base.loaded
    arch = loaded.config if loaded is not None else get_config(config.variant)
    model = Cast(arch.with_(num_classes=len(class_names), drop_path_rate=drop_path))
    notes = list(base.notes)
    if loaded is None:
        init_like_timm(model)
    else:
        load_backbone(model, loaded.model)
        same = loaded.has_classifier and loaded.class_names == class_names and loaded.config.num_classes == len(class_names)
        if keep_head and same:
            model.head.load_state_dict(loaded.model.head.state_dict())
            notes.append("kept the base checkpoint's classifier head (same classes)")
            return model, notes
    nn.init.trunc_normal_(model.head.weight, std=0.02)
    nn.init.zeros_(model.head.bias)
    return model, notes


def _labelled_data(config: TrainConfig) -> tuple[list, list[int], DatasetReport, Any]:
    root = prepare_data_root(config.data, extract_dir=config.data_cache_dir, max_bytes=config.max_data_bytes)
    files, labels, report = scan_class_folders(root)
    return files, labels, report, root


class SupervisedJob:
    """DeiT-style fine-tune: AdamW, warm-up + cosine, label smoothing, drop-path (spec §6.3 / §6.4)."""

    def __init__(self, config: SupervisedConfig, world_size: int = 1, device: str = "cpu") -> None:
        self.config = config
        files, labels, self.report, root = _labelled_data(config)
        crop = train_crop_transform(config.image_size, bicubic=True)
        self.dataset = ImageDataset(files, OneView(crop, config.superpixels), root=root, labels=labels, seed=config.seed)
        self.base = load_base(config)
        self.model, self.notes = classifier_from_base(self.base, config, self.report.class_names, config.drop_path_rate)
        if config.disable_dropout:
            disable_dropout(self.model)
        self.module = self.model
        self.freeze_stem = config.stem_bn_frozen(config.bn_batch(world_size, device))

    def optimizer(self) -> torch.optim.Optimizer:
        groups = no_weight_decay_groups(self.module, self.config.weight_decay)
        return torch.optim.AdamW(groups, lr=self.config.effective_lr)

    def lr_at(self, step: int, total_steps: int, steps_per_epoch: int) -> float:
        base = self.config.effective_lr
        warmup = self.config.warmup_fraction * total_steps
        return warmup_cosine(step, total_steps, base, warmup, start_lr=min(self.config.warmup_lr, base),
                             min_lr=min(self.config.min_lr, base))  # fmt: skip

    def set_train_mode(self) -> None:
        self.module.train()
        if self.freeze_stem:
            freeze_stem_statistics(self.model)

    def loss(self, model: nn.Module, batch: dict[str, Any], step: int, total_steps: int) -> torch.Tensor:
        logits = model(batch["images"], batch["superpixels"]).class_logits
        return F.cross_entropy(logits.float(), batch["labels"], label_smoothing=self.config.label_smoothing)

    @torch.no_grad()
    def evaluate(self, batch: dict[str, Any]) -> float:
        """Label-smoothed cross-entropy on `batch` in eval mode."""
        self.model.eval()
        device = next(self.model.parameters()).device
        logits = self.model(batch["images"].to(device), batch["superpixels"].to(device)).class_logits
        return float(F.cross_entropy(logits.float(), batch["labels"].to(device), label_smoothing=self.config.label_smoothing))

    def save(self, path: str, metadata: Any) -> None:
        save_cast_checkpoint(path, self.model, metadata=metadata)


class FeatureDataset(Dataset):
    """Cached (C,) embeddings and labels, as samples for the engine's DataLoader."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"features": self.features[index], "labels": int(self.labels[index]), "load_failures": []}


class LinearProbeJob:
    """Linear(C, classes) on a frozen backbone in eval mode; SGD, cosine per epoch (spec §6.2)."""

    def __init__(self, config: LinearProbeConfig, world_size: int = 1, device: str = "cpu") -> None:
        self.config = config
        files, labels, self.report, root = _labelled_data(config)
        self.base = load_base(config)
        self.model, self.notes = classifier_from_base(self.base, config, self.report.class_names, 0.0, keep_head=False)
        nn.init.normal_(self.model.head.weight, std=0.01)  # main_lincls: N(0, 0.01^2), bias 0 (spec §6.2)
        nn.init.zeros_(self.model.head.bias)
        for name, p in self.model.named_parameters():
            p.requires_grad_(name.startswith("head."))
        self.module = self.model.head  # only the head is optimised (and wrapped by DDP)
        if config.cache_features:
            images = ImageDataset(files, OneView(eval_crop_transform(config.image_size), config.superpixels),
                                  root=root, labels=labels, seed=config.seed)  # fmt: skip
            self.dataset = self._cache(images, device)
        else:
            crop = train_crop_transform(config.image_size)
            self.dataset = ImageDataset(files, OneView(crop, config.superpixels), root=root, labels=labels, seed=config.seed)

    @torch.no_grad()
    def _cache(self, images: ImageDataset, device: str) -> FeatureDataset:
        """Embed every image once (each process embeds all of them: simple, redundant under DDP)."""
        self.model.to(device).eval()
        feats, labels = [], []
        step = max(1, self.config.batch_size)
        for start in range(0, len(images), step):
            batch = collate_samples([images[i] for i in range(start, min(start + step, len(images)))])
            for path, reason in batch["load_failures"]:
                self.report.record_failure(path, reason)
            feats.append(self.model(batch["images"].to(device), batch["superpixels"].to(device)).embedding.float().cpu())
            labels.append(batch["labels"])
        return FeatureDataset(torch.cat(feats), torch.cat(labels))

    def optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        return torch.optim.SGD(trainable(self.module), lr=c.effective_lr, momentum=c.momentum, weight_decay=c.weight_decay)

    def lr_at(self, step: int, total_steps: int, steps_per_epoch: int) -> float:
        # main_lincls: lr = lr0 * 0.5 * (1 + cos(pi * epoch / epochs)), set once per epoch, no warm-up.
        epochs = math.ceil(total_steps / steps_per_epoch)
        return self.config.effective_lr * 0.5 * (1.0 + math.cos(math.pi * (step // steps_per_epoch) / epochs))

    def set_train_mode(self) -> None:
        self.model.eval()  # the whole model, BN and dropout included (spec §6.2)

    def _features(self, batch: dict[str, Any]) -> torch.Tensor:
        if "features" in batch:
            return batch["features"]
        with torch.no_grad():
            return self.model(batch["images"], batch["superpixels"]).embedding.float()

    def loss(self, model: nn.Module, batch: dict[str, Any], step: int, total_steps: int) -> torch.Tensor:
        return F.cross_entropy(model(self._features(batch)).float(), batch["labels"])

    @torch.no_grad()
    def evaluate(self, batch: dict[str, Any]) -> float:
        self.model.eval()
        device = next(self.model.parameters()).device
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return float(F.cross_entropy(self.model.head(self._features(batch)).float(), batch["labels"]))

    def save(self, path: str, metadata: Any) -> None:
        save_cast_checkpoint(path, self.model, metadata=metadata)
