"""Frozen configs for every official CAST backbone and a registry by name (spec §2.1)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Callable

from ..errors import ConfigError


@dataclass(frozen=True)
class CastConfig:
    """Architecture of one CAST variant. Cluster counts carry no parameters (spec §2.1)."""

    name: str = "cast_small"
    embed_dim: int = 384
    num_heads: int = 12
    depths: tuple[int, ...] = (3, 3, 3, 2)
    num_clusters: tuple[int, ...] = (64, 32, 16, 8)
    pool_num_heads: int = 12  # the official GraphPooling always uses its default of 12 heads
    mlp_ratio: float = 4.0
    patch_size: int = 8
    img_size: int = 224
    num_classes: int = 1000
    # "sincos": fixed 2D table + zero pe_token (MoCo, cast.py); "learned": 785-row table (DeiT).
    pos_embed: str = "sincos"
    # cast_seg.py pretrain layout: no final norm, a block-fusion head over all four stages.
    block_fusion: bool = False
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        if len(self.depths) != len(self.num_clusters):
            raise ConfigError("depths and num_clusters need one entry per stage")
        if self.embed_dim % 8 or self.embed_dim % self.num_heads or self.embed_dim % self.pool_num_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} must divide by 8 and by the head counts")
        if self.pos_embed not in ("sincos", "learned"):
            raise ConfigError(f"pos_embed must be 'sincos' or 'learned', got {self.pos_embed!r}")
        if list(self.num_clusters) != sorted(self.num_clusters, reverse=True):
            raise ConfigError("num_clusters must decrease from stage to stage")

    @property
    def grid_size(self) -> int:
        """Side of the stem's token grid at the native input size (28 for 224 / 8)."""
        return self.img_size // self.patch_size

    @property
    def min_tokens(self) -> int:
        """Distinct valid superpixel tokens needed for stage 1's FPS (spec §3.3)."""
        return self.num_clusters[0] + 1

    def to_dict(self) -> dict:
        """JSON-friendly view (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "CastConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown CastConfig fields: {sorted(unknown)}")
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**fixed)

    def with_(self, **changes) -> "CastConfig":
        """A copy with some fields changed."""
        return replace(self, **changes)


def cast_small() -> CastConfig:
    return CastConfig(name="cast_small")


def cast_small_deep() -> CastConfig:
    return CastConfig(name="cast_small_deep", depths=(6, 3, 3, 3))


def cast_base() -> CastConfig:
    return CastConfig(name="cast_base", embed_dim=768)


def cast_base_deep() -> CastConfig:
    return CastConfig(name="cast_base_deep", embed_dim=768, depths=(6, 3, 3, 3))


def cast_small_deit() -> CastConfig:
    return CastConfig(name="cast_small_deit", pos_embed="learned", drop_path_rate=0.1)


def cast_small_deep_deit() -> CastConfig:
    """cast_deit.py `cast_small_deep` (the published DeiT file snapshots/deit/imagenet1k/cast_small_deep)."""
    return CastConfig(name="cast_small_deep_deit", depths=(6, 3, 3, 3), pos_embed="learned", drop_path_rate=0.1)


def cast_base_deit() -> CastConfig:
    return CastConfig(name="cast_base_deit", embed_dim=768, pos_embed="learned", drop_path_rate=0.1)


def cast_seg_small_pretrain() -> CastConfig:
    """cast_seg.py `cast_small_pretrain` (MoCo on COCO, checkpoints #6/#7)."""
    return CastConfig(name="cast_seg_small_pretrain", block_fusion=True)


def cast_seg_base_pretrain() -> CastConfig:
    return CastConfig(name="cast_seg_base_pretrain", embed_dim=768, block_fusion=True)


def cast_tiny() -> CastConfig:
    """The reduced official model of the parity fixtures (tiny_cast_config.json)."""
    return CastConfig(name="cast_tiny", embed_dim=96, num_heads=6, depths=(1, 1, 1, 1))


MODEL_CONFIGS: dict[str, Callable[[], CastConfig]] = {
    f.__name__: f
    for f in (
        cast_small,
        cast_small_deep,
        cast_base,
        cast_base_deep,
        cast_small_deit,
        cast_small_deep_deit,
        cast_base_deit,
        cast_seg_small_pretrain,
        cast_seg_base_pretrain,
        cast_tiny,
    )
}


def get_config(name: str, **overrides) -> CastConfig:
    """Look up a variant by name, optionally overriding fields (e.g. num_classes=0)."""
    if name not in MODEL_CONFIGS:
        raise ConfigError(f"unknown CAST variant {name!r}; known: {', '.join(sorted(MODEL_CONFIGS))}")
    cfg = MODEL_CONFIGS[name]()
    return cfg.with_(**overrides) if overrides else cfg
