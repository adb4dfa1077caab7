"""One frozen config per training job (spec §6.4) and the deviations from the official recipe it implies.

- `MocoConfig`: self-supervised adaptation, MoCo-v3 exactly as in §6.1, scaled down (§6.4 mode 2);
- `SupervisedConfig`: DeiT-style fine-tune (§6.3, §6.4 mode 3);
- `LinearProbeConfig`: the linear probe of §6.2 (§6.4 mode 1), with an optional feature cache.

`deviations(world_size, device)` lists, in words, everything that differs from the official recipe; the
engine adds what only the run itself knows (data, base checkpoint contents) and stores it all in the
output checkpoint's provenance.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from cast.superpixels import SuperpixelConfig

DEFAULT_EPOCHS = 10


@dataclass(frozen=True)
class TrainConfig:
    """Fields every job shares. `batch_size` is the GLOBAL batch (split over DDP processes)."""

    data: str  # folder of images (searched recursively) or a .zip of one
    output: str  # the result, a .safetensors file in our format; state and log files go next to it
    checkpoint: str | None = None  # base: a path or a zoo name; None = from scratch as `variant`
    variant: str = "cast_small"  # only used when checkpoint is None
    steps: int | None = None  # optimisation steps; exclusive with epochs
    epochs: int | None = None  # passes over the data; DEFAULT_EPOCHS when neither is given
    batch_size: int = 8
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"  # "auto" -> cuda if available else cpu; or "cpu", "cuda", "cuda:1"
    log_every: int = 1  # steps between lines of the JSON-lines log
    save_every: int = 50  # steps between resume states (0: only at the end)
    resume: bool = False  # continue from the resume state next to `output`, if there is one
    image_size: int = 224
    superpixels: SuperpixelConfig = field(default_factory=SuperpixelConfig.official)
    lr: float | None = None  # absolute learning rate; None = the recipe's batch-scaled rule
    freeze_stem_bn: bool | None = None  # stem BatchNorm in eval mode; None = auto (see stem_bn_frozen)
    disable_dropout: bool = False  # graph-pooling dropout (p = 0.1) off, e.g. for exact DDP checks
    data_cache_dir: str | None = None  # where uploaded ZIPs are extracted (default: ~/.cache/...)
    max_data_bytes: int = 8 * 1024**3  # cap on the uncompressed size of an uploaded ZIP

    kind: ClassVar[str] = ""
    recipe: ClassVar[str] = ""
    official_batch: ClassVar[int] = 256
    official_length: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give steps or epochs, not both")
        for name in ("steps", "epochs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.batch_size < 1 or self.num_workers < 0 or self.log_every < 1 or self.save_every < 0:
            raise ValueError("batch_size and log_every must be >= 1, num_workers and save_every >= 0")
        if self.image_size % 8 or not 64 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be a multiple of 8 in [64, 1024], got {self.image_size}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if isinstance(self.superpixels, dict):  # accept the to_dict() form
            object.__setattr__(self, "superpixels", SuperpixelConfig.from_dict(self.superpixels))

    # ------------------------------------------------------------------ derived values
    @property
    def scaled_lr(self) -> float:
        """The recipe's learning rate for this batch (overridden by `lr`)."""
        raise NotImplementedError

    @property
    def effective_lr(self) -> float:
        return self.lr if self.lr is not None else self.scaled_lr

    def stem_bn_frozen(self, batch_per_bn: int | None = None) -> bool:
        """Whether the stem BatchNorm runs in eval mode. Auto: when BN sees <= 32 images (spec §6.4) and
        there are statistics to keep, i.e. a base checkpoint; a fresh model's are 0 / 1, and freezing
        those drowns the image signal under the position table."""
        if self.freeze_stem_bn is not None:
            return self.freeze_stem_bn
        return self.checkpoint is not None and (batch_per_bn if batch_per_bn is not None else self.batch_size) <= 32

    def bn_batch(self, world_size: int = 1, device: str = "cpu") -> int:
        """Images one BatchNorm sees: the global batch under SyncBatchNorm (DDP on GPUs), else the local one."""
        synced = world_size > 1 and device.startswith("cuda")
        return self.batch_size if synced or world_size == 1 else self.batch_size // world_size

    def length_description(self) -> str:
        return f"{self.steps} steps" if self.steps is not None else f"{self.epochs or DEFAULT_EPOCHS} epochs"

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field, with `kind` naming the job."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["superpixels"] = self.superpixels.to_dict()
        return {"kind": self.kind, **out}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; a wrong `kind` or an unknown key is an error."""
        data = dict(data)
        kind = data.pop("kind", cls.kind)
        if kind != cls.kind:
            raise ValueError(f"this is a {kind!r} config, not {cls.kind!r}")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**data)

    def with_(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ deviations
    def deviations(self, world_size: int = 1, device: str = "cpu") -> list[str]:
        """Every difference from the official recipe this config implies, in words."""
        out = [f"batch {self.batch_size} instead of {self.official_batch}",
               f"{self.length_description()} instead of {self.official_length}"]  # fmt: skip
        if self.lr is not None:
            out.append(f"learning rate {self.lr:g} set explicitly instead of the recipe's {self.scaled_lr:g}")
        if self.image_size != 224:
            out.append(f"input {self.image_size} px instead of 224 (position table resized: not parity)")
        if self.superpixels != self._official_superpixels():
            out.append(f"superpixels: {self.superpixels.describe()}")
        if self.disable_dropout:
            out.append("graph-pooling dropout (p = 0.1) disabled")
        if self.checkpoint is None:
            out.append(f"trained from scratch ({self.variant})")
        out += self._precision_deviations(device)
        return out

    def _official_superpixels(self) -> SuperpixelConfig:
        return SuperpixelConfig.official()

    def _precision_deviations(self, device: str) -> list[str]:
        if device.startswith("cuda"):
            return ["bf16 autocast instead of AMP fp16 with GradScaler"]
        return ["fp32 on CPU instead of AMP fp16 on GPUs"]

    def _bn_deviations(self, world_size: int, device: str, official: str) -> list[str]:
        per_bn = self.bn_batch(world_size, device)
        if self.stem_bn_frozen(per_bn):
            out = [f"stem BatchNorm frozen (eval mode, batch {per_bn}; official: {official})"]
        else:
            out = [f"stem BatchNorm statistics over batches of {per_bn} (official: {official})"]
        if world_size > 1 and not device.startswith("cuda"):
            out.append("BatchNorm statistics per process: SyncBatchNorm needs GPUs (torch refuses CPU input)")
        return out


@dataclass(frozen=True)
class MocoConfig(TrainConfig):
    """MoCo-v3 continuation / adaptation on an unlabelled folder (spec §6.1, §6.4 mode 2)."""

    base_lr: float = 1.5e-4  # per 256 images
    weight_decay: float = 0.1
    temperature: float = 0.2
    momentum: float = 0.99  # m(0); cosine-increased to 1
    warmup_fraction: float = 0.1  # of all steps (official: 10 of 100 epochs)
    mlp_dim: int = 4096
    out_dim: int = 256

    kind: ClassVar[str] = "moco"
    recipe: ClassVar[str] = "MoCo-v3 self-supervised (CAST spec §6.1), scaled down per §6.4"
    official_batch: ClassVar[int] = 256
    official_length: ClassVar[str] = "100 epochs on ImageNet-1k"

    @property
    def scaled_lr(self) -> float:
        return self.base_lr * self.batch_size / 256

    def deviations(self, world_size: int = 1, device: str = "cpu") -> list[str]:
        out = super().deviations(world_size, device)
        if world_size == 1:
            out.append("single process: keys from the local batch, not gathered from all GPUs")
        out += self._bn_deviations(world_size, device, "SyncBatchNorm over 256 images")
        defaults = {f.name: f.default for f in fields(MocoConfig)}
        for name in ("base_lr", "weight_decay", "temperature", "momentum", "mlp_dim", "out_dim"):
            if getattr(self, name) != defaults[name]:
                out.append(f"{name} {getattr(self, name):g} instead of {defaults[name]:g}")
        if self.warmup_fraction != 0.1:
            out.append(f"warm-up {self.warmup_fraction:.0%} of the steps instead of 10 %")
        return out


@dataclass(frozen=True)
class SupervisedConfig(TrainConfig):
    """DeiT-style supervised fine-tune on a folder-per-class layout (spec §6.3, §6.4 mode 3)."""

    superpixels: SuperpixelConfig = field(default_factory=SuperpixelConfig.deit)
    base_lr: float = 5e-4  # per 512 images
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1  # official: 5 of 300 epochs
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    label_smoothing: float = 0.1
    drop_path_rate: float = 0.1

    kind: ClassVar[str] = "supervised"
    recipe: ClassVar[str] = "DeiT supervised fine-tune (CAST spec §6.3), scaled down per §6.4"
    official_batch: ClassVar[int] = 1024
    official_length: ClassVar[str] = "300 epochs on ImageNet-1k"

    @property
    def scaled_lr(self) -> float:
        return self.base_lr * self.batch_size / 512

    def _official_superpixels(self) -> SuperpixelConfig:
        return SuperpixelConfig.deit()

    def deviations(self, world_size: int = 1, device: str = "cpu") -> list[str]:
        out = super().deviations(world_size, device)
        out += [
            "augmentation reduced to RandomResizedCrop + flip (no RandAugment, random erasing, "
            "mixup/cutmix or repeated augmentation)",
            "hard labels with label smoothing (no mixup/cutmix soft targets); no model EMA",
            f"warm-up over {self.warmup_fraction:.0%} of the steps, schedule per step instead of per epoch",
        ]
        out += self._bn_deviations(world_size, device, "batch statistics")
        if self.min_lr > self.effective_lr:
            out.append(f"minimum lr {self.min_lr:g} exceeds the lr {self.effective_lr:g}: lr kept constant after warm-up")
        defaults = {f.name: f.default for f in fields(SupervisedConfig)}
        for name in ("base_lr", "weight_decay", "label_smoothing", "drop_path_rate"):
            if getattr(self, name) != defaults[name]:
                out.append(f"{name} {getattr(self, name):g} instead of {defaults[name]:g}")
        return out


@dataclass(frozen=True)
class LinearProbeConfig(TrainConfig):
    """Linear probe on frozen features (spec §6.2, §6.4 mode 1); `cache_features` is the fast mode."""

    base_lr: float = 0.8  # per 256 images (the authors' small-data setting)
    momentum: float = 0.9
    weight_decay: float = 0.0
    cache_features: bool = False  # embed each image once (center crop) and train on the cache

    kind: ClassVar[str] = "probe"
    recipe: ClassVar[str] = "linear probe (CAST spec §6.2), scaled down per §6.4"
    official_batch: ClassVar[int] = 256
    official_length: ClassVar[str] = "90 epochs"

    @property
    def scaled_lr(self) -> float:
        return self.base_lr * self.batch_size / 256

    def deviations(self, world_size: int = 1, device: str = "cpu") -> list[str]:
        out = super().deviations(world_size, device)
        if self.cache_features:
            out.append(
                "features cached once from Resize + CenterCrop images: no RandomResizedCrop + flip "
                "augmentation while training the classifier"
            )
        defaults = {f.name: f.default for f in fields(LinearProbeConfig)}
        for name in ("base_lr", "momentum", "weight_decay"):
            if getattr(self, name) != defaults[name]:
                out.append(f"{name} {getattr(self, name):g} instead of {defaults[name]:g}")
        return out


CONFIGS: dict[str, type[TrainConfig]] = {c.kind: c for c in (MocoConfig, SupervisedConfig, LinearProbeConfig)}


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Any job config from its `to_dict()` form (dispatching on `kind`)."""
    kind = data.get("kind")
    if kind not in CONFIGS:
        raise ValueError(f"unknown training kind {kind!r}; known: {', '.join(CONFIGS)}")
    return CONFIGS[kind].from_dict(data)
