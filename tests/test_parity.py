"""Acceptance test: our CAST reproduces the official implementation on every fixture (spec §9).

Runs on whatever parity folder CAST_PARITY_DIR names (default: tests/data/parity), adapting to the
fixtures it holds: every parity_*.safetensors is checked, and batches are also built from the
single-image fixtures, so a folder without a batch fixture is covered the same way.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from reference import load_reference, parity_fixtures, single_image_fixtures, tiny_model

from cast.hierarchy import Hierarchy
from cast.model.embed import labels_to_grid

FLOAT_TOL = 1e-4


def test_fixture_folder_is_not_empty(parity_path: Path) -> None:
    assert parity_fixtures(parity_path), f"no parity_*.safetensors in {parity_path}: a missing folder is a failure"
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


@pytest.mark.parametrize("fixture", parity_fixtures(), ids=lambda f: f.name)
def test_parity(fixture, model: torch.nn.Module) -> None:
    fx = load_reference(fixture.path)
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
    print(f"{fixture.name}: largest float error {worst:.3g}")


def _own_token_counts(superpixels: torch.Tensor, grid: int) -> list[int]:
    """Each image's own token count: 1 + its largest id on the model's token grid (spec §1.3)."""
    return [int(m) + 1 for m in labels_to_grid(superpixels, (grid, grid)).flatten(1).amax(1)]


def _token_count(fx: dict[str, torch.Tensor]) -> int:
    return fx["logit1"].shape[1]


def test_batch_matches_single_images(parity_path: Path, model: torch.nn.Module) -> None:
    """Images with equal token counts give the same result in a batch as alone (spec §9).

    The batches are made from the folder's single-image fixtures (every pair with equal token counts),
    plus any batch fixture whose images share one token count."""
    singles = [load_reference(f.path) for f in single_image_fixtures(parity_path)]
    batches = [(torch.cat([a["image"], b["image"]]), torch.cat([a["superpixel"], b["superpixel"]]))
               for a, b in itertools.combinations(singles, 2) if _token_count(a) == _token_count(b)]
    for fixture in parity_fixtures(parity_path):
        if fixture.batch > 1:
            fx = load_reference(fixture.path)
            if len(set(_own_token_counts(fx["superpixel"], model.config.grid_size))) == 1:
                batches.append((fx["image"], fx["superpixel"]))
    assert batches, f"{parity_path}: no two images with equal token counts to batch"
    with torch.no_grad():
        for images, superpixels in batches:
            together = model(images, superpixels)
            for b in range(images.shape[0]):
                alone = model(images[b : b + 1], superpixels[b : b + 1])
                torch.testing.assert_close(alone.class_logits[0], together.class_logits[b], atol=1e-5, rtol=1e-5)
                for level in range(4):
                    assert torch.equal(alone.seeds[level][0], together.seeds[level][b])
