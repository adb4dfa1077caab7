"""Shared test fixtures: the reference-data folder and real test images."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(2)


def parity_dir() -> Path:
    """Folder of official reference fixtures: $CAST_PARITY_DIR or ../shared/data/parity."""
    return Path(os.environ.get("CAST_PARITY_DIR", REPO_ROOT.parent / "shared" / "data" / "parity"))


@pytest.fixture(scope="session")
def parity_path() -> Path:
    path = parity_dir()
    if not path.is_dir():
        pytest.fail(f"parity fixtures folder {path} does not exist (set CAST_PARITY_DIR)")
    return path


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def chelsea() -> np.ndarray:
    from skimage import data

    return data.chelsea()
