"""Shared test fixtures: the reference-data folders and real test images.

The reference folders default to the repository's compact copies under tests/data/ (see
tests/data/README.md); CAST_PARITY_DIR / CAST_VIT_BASELINE_DIR point at any other folder of the same
format. A missing or empty folder fails the tests that need it: it is never a skip.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

# No test reaches the internet or the developer's own caches: offline by default, with empty caches of
# the test run's own (tests that serve a local Hub turn this off for themselves). Set before anything
# imports huggingface_hub, which reads these variables at import time.
_CACHES = Path(tempfile.mkdtemp(prefix="cast-tests-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = str(_CACHES / "hf")
os.environ["CAST_EXPLORER_CACHE"] = str(_CACHES / "cast_explorer")
os.environ.pop("CAST_DEFAULT_MODEL", None)

import numpy as np  # noqa: E402
import pytest
import torch
from reference import first_single_fixture, parity_dir, single_image_fixtures, tiny_model, vit_baseline_dir, vit_fixtures

REPO_ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(2)

__all__ = ["REPO_ROOT", "parity_dir", "vit_baseline_dir"]


@pytest.fixture(scope="session")
def parity_path() -> Path:
    path = parity_dir()
    if not path.is_dir() or not single_image_fixtures(path):
        pytest.fail(f"parity folder {path} is missing or holds no single-image parity_*.safetensors (CAST_PARITY_DIR)")
    return path


@pytest.fixture(scope="session")
def vit_path() -> Path:
    path = vit_baseline_dir()
    if not path.is_dir() or not vit_fixtures(path):
        pytest.fail(f"ViT-baseline folder {path} is missing or holds no vit_baseline_*.safetensors (CAST_VIT_BASELINE_DIR)")
    return path


@pytest.fixture(scope="session")
def tiny_segmenter():
    """A Segmenter on the reduced official CAST of the parity folder (fast, real weights)."""
    from cast.segmenter import Segmenter

    return Segmenter(tiny_model(parity_dir()))


@pytest.fixture(scope="session")
def reference_hierarchy():
    """The official implementation's own hierarchy of the folder's first parity image (chelsea in tests/data),
    rebuilt from its stored superpixels and logits, with the provenance a Segmenter would record."""
    from cast.hierarchy import Grouping, Hierarchy, InputGeometry, SegmentationProvenance

    fx = first_single_fixture()
    superpixels = fx["superpixel"][0].numpy()
    provenance = SegmentationProvenance(
        model_variant="cast_tiny", checkpoint="tiny_cast.safetensors", trained=True, layout="plain",
        grouping=Grouping("seeds", int(superpixels.max()) + 1, "official SEEDS", {"num_superpixels": 196}),
        input=InputGeometry(224, "center_crop", (0, 0, 224, 224), (224, 224), parity_with_official=True),
    )  # fmt: skip
    logits = [fx[f"logit{level}"][0].numpy() for level in range(1, 5)]
    return Hierarchy.from_logits(superpixels, logits, image=fx["image_uint8"].numpy(), provenance=provenance)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def chelsea() -> np.ndarray:
    from skimage import data

    return data.chelsea()
