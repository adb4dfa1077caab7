"""Acceptance test: our CAST reproduces the official implementation on every fixture (spec §9)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cast.hierarchy import Hierarchy
from cast.model import CastConfig, build_model

from conftest import parity_dir

FLOAT_TOL = 1e-4


def fixture_files() -> list[Path]:
    folder = parity_dir()
    return sorted(folder.glob("parity_*.safetensors")) if folder.is_dir() else []


def tiny_model(folder: Path) -> torch.nn.Module:
    """Build the reduced official model from its config and load its weights strictly."""
    kwargs = json.loads((folder / "tiny_cast_config.json").read_text())["kwargs"]
    config = CastConfig(
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
    from cast.checkpoints import to_model_state_dict

    model = build_model(config)
    model.load_state_dict(to_model_state_dict(load_file(folder / "tiny_cast.safetensors"), config), strict=True)
    return model


def test_fixture_folder_is_not_empty(parity_path: Path) -> None:
    assert fixture_files(), f"no parity_*.safetensors in {parity_path}: a missing or empty folder is a failure"
    assert (parity_path / "tiny_cast.safetensors").is_file()


@pytest.fixture(scope="module")
def model(parity_path: Path) -> torch.nn.Module:
    return tiny_model(parity_path)


def _close(name: str, ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert ours.shape == ref.shape, f"{name}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    diff = (ours - ref).abs()
    bound = FLOAT_TOL + FLOAT_TOL * ref.abs()
    assert bool((diff <= bound).all()), f"{name}: max abs error {diff.max().item():.3g}"
    return diff.max().item()


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.stem)
def test_parity(path: Path, model: torch.nn.Module) -> None:
    fx = load_file(path)
    with torch.no_grad():
        out = model(fx["image"], fx["superpixel"])
    worst = 0.0
    for level in range(1, 5):
        i = level - 1
        assert torch.equal(out.seeds[i], fx[f"sampled_inds{level}"]), f"sampled_inds{level} differ"
        assert torch.equal(out.padding_masks[i], fx[f"padding_mask{level}"]), f"padding_mask{level} differ"
        worst = max(worst, _close(f"block{level}", out.blocks[i], fx[f"block{level}"]))
        worst = max(worst, _close(f"logit{level}", out.logits[i], fx[f"logit{level}"]))
        worst = max(worst, _close(f"centroid{level}", out.centroids[i], fx[f"centroid{level}"]))
    worst = max(worst, _close("out4", out.embedding, fx["out4"]))
    worst = max(worst, _close("logits", out.class_logits, fx["logits"]))
    for b in range(fx["image"].shape[0]):
        hierarchy = Hierarchy.from_logits(fx["superpixel"][b].numpy(), [lg[b].numpy() for lg in out.logits])
        for level in range(1, 5):
            np.testing.assert_array_equal(hierarchy.labels(level), fx[f"seg_level{level}"][b].numpy())
            # token labels of the superpixel ids this image has (a batch may hold more tokens than ids)
            tokens = fx[f"token_label_level{level}"][b].numpy()
            n = min(len(tokens), hierarchy.sizes[0])
            np.testing.assert_array_equal(hierarchy.superpixel_segments(level)[:n], tokens[:n])
    print(f"{path.stem}: largest float error {worst:.3g}")


def test_batch_matches_single_images(parity_path: Path, model: torch.nn.Module) -> None:
    """Images with equal token counts give the same result in a batch as alone (spec §9)."""
    batch = load_file(parity_path / "parity_batch.safetensors")
    with torch.no_grad():
        together = model(batch["image"], batch["superpixel"])
        for b in range(2):
            alone = model(batch["image"][b : b + 1], batch["superpixel"][b : b + 1])
            torch.testing.assert_close(alone.class_logits[0], together.class_logits[b], atol=1e-5, rtol=1e-5)
            for level in range(4):
                assert torch.equal(alone.seeds[level][0], together.seeds[level][b])
