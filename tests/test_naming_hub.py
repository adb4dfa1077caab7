"""Fetching a CLIP model for naming through the real huggingface_hub path, against the local Hub stand-in.

The tiny CLIP of the naming reference folder is served as an `hf-hub:` repo (open_clip's layout:
open_clip_config.json + open_clip_model.safetensors). Weights come once, with progress, resume after a
broken transfer, and offline without a cached copy is a clear error; never random weights instead.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants as hf_constants
import numpy as np
import pytest
import torch
from reference import naming_dir
from skimage import data

from cast.errors import ClipModelError
from cast.naming import SegmentNamer, frame_image, load_clip
from cast.weights.hub import DownloadProgress
from hub_server import HubServer

CHUNK = 256 * 1024
CONFIG, WEIGHTS = "open_clip_config.json", "open_clip_model.safetensors"


@pytest.fixture
def hub(monkeypatch, tmp_path: Path) -> Iterator[HubServer]:
    """The Hub stand-in with huggingface_hub online, pointed at it, and an empty HF cache of this test."""
    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setattr(hf_constants, "ENDPOINT", server.endpoint)
        monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)
        monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
        monkeypatch.setattr(time, "sleep", lambda seconds: None)  # http_get waits before resuming
        try:  # huggingface_hub >= 2 asks the endpoint for an "agent harness" list once: not this test's business
            from huggingface_hub.utils import _detect_agent

            monkeypatch.setattr(_detect_agent, "_registry", _detect_agent._EMPTY_REGISTRY)
        except (ImportError, AttributeError):
            pass
        yield server


def _serve(hub: HubServer, repo: str, **faults) -> bytes:
    folder = naming_dir() / "clip_tiny"
    hub.add(repo, CONFIG, (folder / CONFIG).read_bytes())
    weights = (folder / WEIGHTS).read_bytes()
    hub.add(repo, WEIGHTS, weights, **faults)
    return weights


def _features(clip) -> torch.Tensor:
    rgb = data.chelsea()
    labels = np.arange(rgb.shape[0] * rgb.shape[1]).reshape(rgb.shape[:2]) * 4 // (rgb.shape[0] * rgb.shape[1])
    framed = frame_image(clip, rgb)
    return SegmentNamer(clip).segment_features(framed, torch.from_numpy(labels[:224, :224].astype(np.int64))).features


def test_hub_clip_downloads_once_with_progress(hub) -> None:
    weights = _serve(hub, "cast-tests/clip_tiny")
    reports: list[DownloadProgress] = []
    clip = load_clip("hf-hub:cast-tests/clip_tiny", progress=reports.append)
    assert clip.id == "hf-hub:cast-tests/clip_tiny"
    fetched = [r.path for r in hub.gets()]
    assert sum(p.endswith(WEIGHTS) for p in fetched) == 1 and sum(p.endswith(CONFIG) for p in fetched) == 1
    done = [r.downloaded for r in reports if r.total == len(weights)]
    assert len(done) > len(weights) // CHUNK and done == sorted(done) and done[-1] == len(weights)
    # the same weights as the folder they were served from
    local = load_clip(f"local-dir:{naming_dir() / 'clip_tiny'}")
    assert torch.allclose(_features(clip), _features(local), atol=1e-6, rtol=0)
    hub.clear_log()
    load_clip("hf-hub:cast-tests/clip_tiny")
    assert hub.gets() == []  # cached: nothing downloaded again


def test_broken_transfer_resumes_with_a_range_request(hub) -> None:
    weights = _serve(hub, "cast-tests/clip_resume", truncate_first=3 * CHUNK + 100)
    load_clip("hf-hub:cast-tests/clip_resume")
    ranges = [r.range for r in hub.gets() if r.path.endswith(WEIGHTS)]
    assert len(ranges) == 2 and ranges[0] is None and ranges[1].startswith("bytes=")
    assert 0 < int(ranges[1].removeprefix("bytes=").rstrip("-")) <= 3 * CHUNK + 100 < len(weights)


def test_repo_without_weights_is_refused(hub) -> None:
    folder = naming_dir() / "clip_tiny"
    hub.add("cast-tests/clip_config_only", CONFIG, (folder / CONFIG).read_bytes())
    with pytest.raises(ClipModelError, match="has none of open_clip_model.safetensors, open_clip_pytorch_model.bin"):
        load_clip("hf-hub:cast-tests/clip_config_only")


def test_offline_and_not_cached_says_which_model_and_how(hub, monkeypatch) -> None:
    _serve(hub, "cast-tests/clip_offline")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ClipModelError) as err:
        load_clip("hf-hub:cast-tests/clip_offline")
    message = str(err.value)
    assert "hf-hub:cast-tests/clip_offline" in message and "not in the Hugging Face cache" in message
    assert "hf download cast-tests/clip_offline" in message and "CAST_CLIP_MODEL=local-dir:" in message
    assert hub.gets() == []
