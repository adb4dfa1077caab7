"""Reading reference folders of the official format, full-size (../shared/data) or compact (tests/data).

Tests never name a fixture file: they ask this module what a folder holds. Compact copies
(scripts/make_test_fixtures.py) differ only in storage: narrow integer dtypes, `image` as uint8
pixels, manifests as .json.gz; `load_reference` returns every file in the official dtypes.
"""
from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

TESTS_DIR = Path(__file__).resolve().parent
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def parity_dir() -> Path:
    """The CAST parity folder: $CAST_PARITY_DIR, else the repository's copy tests/data/parity."""
    return Path(os.environ.get("CAST_PARITY_DIR") or TESTS_DIR / "data" / "parity")


def vit_baseline_dir() -> Path:
    """The ViT-baseline folder: $CAST_VIT_BASELINE_DIR, else tests/data/vit_baseline."""
    return Path(os.environ.get("CAST_VIT_BASELINE_DIR") or TESTS_DIR / "data" / "vit_baseline")


def naming_dir() -> Path:
    """The segment-naming folder: $CAST_NAMING_DIR, else tests/data/segment_naming."""
    return Path(os.environ.get("CAST_NAMING_DIR") or TESTS_DIR / "data" / "segment_naming")


def clip_normalize(rgb: torch.Tensor, clip_folder: Path) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 exactly as ToTensor + Normalize with the CLIP folder's mean / std."""
    from torchvision import transforms

    cfg = json.loads((clip_folder / "open_clip_config.json").read_text()).get("preprocess_cfg", {})
    mean, std = cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)), cfg.get("std", (0.26862954, 0.26130258, 0.27577711))
    return transforms.Normalize(mean, std)(transforms.functional.to_tensor(rgb.numpy()))


def load_naming_reference(folder: Path) -> dict[str, torch.Tensor]:
    """naming_reference.safetensors of a folder in the official dtypes (int64 maps, float32 `image_k`)."""
    raw = load_file(str(folder / "naming_reference.safetensors"))
    out: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if key.startswith("rgb_"):
            out[key] = value
            out.setdefault(key.replace("rgb_", "image_"), clip_normalize(value, folder / "clip_tiny"))
        elif value.dtype in (torch.uint8, torch.int16, torch.int32):
            out[key] = value.to(torch.int64)
        else:
            out[key] = value  # an official image_k replaces one rebuilt from rgb_k
    return out


def pixels_to_model_input(pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> float32 exactly as torchvision ToTensor + Normalize(ImageNet)."""
    x = pixels.float().div(255)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def load_reference(path: Path) -> dict[str, torch.Tensor]:
    """One fixture file in the official dtypes: int64 ids, bool masks, float32 `image`, `image_uint8`."""
    raw = load_file(str(path))
    out: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if key == "image" and value.dtype == torch.uint8:
            out["image"] = pixels_to_model_input(value)
            if value.shape[0] == 1 and "superpixel_deit" in raw:  # single-image parity files carry the pixels
                out.setdefault("image_uint8", value[0].permute(1, 2, 0).contiguous())
        elif value.dtype in (torch.uint8, torch.int16, torch.int32) and key not in ("image_uint8", "labels"):
            out[key] = value.to(torch.int64)
        else:
            out.setdefault(key, value)
    return out


def metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file."""
    with safe_open(str(path), "pt") as handle:
        return dict(handle.metadata() or {})


def read_manifest(folder: Path, name: str) -> dict:
    """manifest_<name>.json or its compact .json.gz twin."""
    plain, packed = folder / f"manifest_{name}.json", folder / f"manifest_{name}.json.gz"
    if plain.is_file():
        return json.loads(plain.read_text())
    return json.loads(gzip.decompress(packed.read_bytes()))


@dataclass(frozen=True)
class Fixture:
    """A parity file and what it holds: batch size and whether it is a single-image file."""

    path: Path
    batch: int
    has_pixels: bool  # single-image files also carry image_uint8 / superpixel_deit

    @property
    def name(self) -> str:
        return self.path.stem


def parity_fixtures(folder: Path | None = None) -> list[Fixture]:
    """Every parity_*.safetensors of a folder, sorted; empty when the folder is missing."""
    folder = folder or parity_dir()
    out = []
    for path in sorted(folder.glob("parity_*.safetensors")) if folder.is_dir() else []:
        with safe_open(str(path), "pt") as handle:
            keys = set(handle.keys())
            batch = handle.get_slice("image").get_shape()[0]
        out.append(Fixture(path, batch, "superpixel_deit" in keys))
    return out


def single_image_fixtures(folder: Path | None = None) -> list[Fixture]:
    """Parity files of one image with its SEEDS inputs (image_uint8 / superpixel_deit)."""
    return [f for f in parity_fixtures(folder) if f.batch == 1 and f.has_pixels]


def vit_fixtures(folder: Path | None = None) -> list[Path]:
    """Every per-image ViT-baseline file (`vit_baseline_*.safetensors`) of a folder."""
    folder = folder or vit_baseline_dir()
    return sorted(folder.glob("vit_baseline_*.safetensors")) if folder.is_dir() else []


def tiny_cast_config(folder: Path | None = None):
    """The CastConfig of the folder's tiny official CAST (tiny_cast_config.json)."""
    from cast.model import CastConfig

    kwargs = json.loads(((folder or parity_dir()) / "tiny_cast_config.json").read_text())["kwargs"]
    return CastConfig(
        name="cast_tiny",
        embed_dim=kwargs["embed_dim"],
        num_heads=kwargs["num_heads"],
        depths=tuple(kwargs["depth"]),
        num_clusters=tuple(kwargs["num_clusters"]),
        mlp_ratio=kwargs["mlp_ratio"],
        patch_size=kwargs["patch_size"],
        img_size=kwargs["img_size"],
        num_classes=kwargs["num_classes"],
    )


def official_tiny_state(folder: Path | None = None) -> dict[str, torch.Tensor]:
    """The tiny official CAST's state dict in the official cast.py layout: `blocks.{j}` AND their stage
    views `blocks{K}.{j}` (the compact copy stores each block once; the views are rebuilt here)."""
    folder = folder or parity_dir()
    state = dict(load_file(str(folder / "tiny_cast.safetensors")))
    if any(k.startswith("blocks1.") for k in state):
        return state
    depths = tiny_cast_config(folder).depths
    starts = [sum(depths[:k]) for k in range(len(depths))]
    for key in [k for k in state if k.startswith("blocks.")]:
        j, rest = key.split(".", 2)[1:]
        stage = max(k for k, start in enumerate(starts) if start <= int(j))
        state[f"blocks{stage + 1}.{j}.{rest}"] = state[key].clone()  # separate copies, as in the official file
    return state


def tiny_model(folder: Path | None = None) -> torch.nn.Module:
    """The reduced official CAST built from its config, its weights loaded strictly, eval mode."""
    from cast.model import build_model
    from cast.weights import to_model_state_dict

    config = tiny_cast_config(folder)
    model = build_model(config)
    model.load_state_dict(to_model_state_dict(official_tiny_state(folder), config), strict=True)
    return model


def tiny_vit_config(folder: Path | None = None):
    """The VitConfig of the folder's tiny official MoCo ViT (tiny_vit_conv_config.json)."""
    from cast.model import VitConfig

    kwargs = json.loads(((folder or vit_baseline_dir()) / "tiny_vit_conv_config.json").read_text())["kwargs"]
    return VitConfig(name="vit_conv_tiny", embed_dim=kwargs["embed_dim"], depth=kwargs["depth"],
                     num_heads=kwargs["num_heads"], mlp_ratio=kwargs["mlp_ratio"], patch_size=kwargs["patch_size"],
                     img_size=kwargs["img_size"])


def first_single_fixture(folder: Path | None = None) -> dict[str, torch.Tensor]:
    """The first single-image parity fixture of a folder, in official dtypes."""
    fixtures = single_image_fixtures(folder)
    if not fixtures:
        raise FileNotFoundError(f"no single-image parity fixture in {folder or parity_dir()}")
    return load_reference(fixtures[0].path)
