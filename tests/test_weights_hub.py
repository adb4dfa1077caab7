"""Downloading a published checkpoint: the real `hf_hub_download` path of cast.weights.hub against a local Hub.

A Hub stand-in (tests/hub_server.py) runs on 127.0.0.1 and huggingface_hub is pointed at it
(HF_ENDPOINT, and the endpoint constants it read at import time). It serves an official-layout MoCo
checkpoint of the tiny CAST under a test ZooEntry, and injects faults: a transfer cut off mid-file, a
404, a corrupt file. Every test uses its own HF cache and converted-copy folder under tmp_path.
"""
from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest
import torch

import cast
from cast.errors import CheckpointError
from cast.weights import hub as hub_module
from cast.weights import load_checkpoint, zoo
from cast.weights.hub import DownloadCancelled, DownloadProgress, fetch_pretrained, load_pretrained, local_status
from cast.weights.zoo import ZooEntry
from hub_server import COMMIT, HubServer
from official_layouts import tiny_moco_checkpoint
from reference import first_single_fixture, tiny_model

REPO = "twke/CAST"
FILENAME = "snapshots/moco/test/cast_tiny/checkpoint_0099.pth.tar"
CHUNK = 64 * 1024  # huggingface_hub's download chunk, made small so that a transfer reports many times


@pytest.fixture(scope="module")
def checkpoint_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save(tiny_moco_checkpoint(), buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def entry(checkpoint_bytes: bytes) -> ZooEntry:
    return ZooEntry(name="cast_tiny_moco_test", filename=FILENAME, architecture="cast_tiny", training="MoCo-v3",
                    data="none (test fixture)", reported="n/a", expected_size=len(checkpoint_bytes))  # fmt: skip


@pytest.fixture(scope="module")
def reference_model() -> torch.nn.Module:
    return tiny_model().eval()


@pytest.fixture
def hub(monkeypatch) -> Iterator[HubServer]:
    """The Hub stand-in, with huggingface_hub online and pointed at it (plain HTTP, no retry waits)."""
    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setattr(hf_constants, "ENDPOINT", server.endpoint)
        monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)
        monkeypatch.setattr(time, "sleep", lambda seconds: None)  # http_get waits 1 s before resuming
        try:  # huggingface_hub >= 2 fetches an "agent harness" list from the endpoint once: not the test's business
            from huggingface_hub.utils import _detect_agent

            monkeypatch.setattr(_detect_agent, "_registry", _detect_agent._EMPTY_REGISTRY)
        except (ImportError, AttributeError):
            pass
        yield server


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    return {"cache_dir": tmp_path / "hf-cache", "converted_dir": tmp_path / "converted"}


def _offline(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)


def _embedding(model: torch.nn.Module) -> torch.Tensor:
    inputs = first_single_fixture()
    with torch.no_grad():
        return model(inputs["image"], inputs["superpixel"]).embedding


def _get_ranges(hub: HubServer) -> list[str | None]:
    return [r.range for r in hub.gets()]


# ---------------------------------------------------------------------------------------------- tests
def test_download_reports_progress_and_converts_once(hub, entry, checkpoint_bytes, dirs, reference_model):
    hub.add(REPO, FILENAME, checkpoint_bytes)
    reports: list[DownloadProgress] = []
    assert local_status(entry, **dirs) is None

    path = fetch_pretrained(entry, progress=reports.append, **dirs)

    size = len(checkpoint_bytes)
    assert path == dirs["converted_dir"] / f"{entry.name}.safetensors" and path.is_file()
    assert _get_ranges(hub) == [None]  # one plain GET of the whole file
    assert len(reports) > size // CHUNK  # one report per chunk (and one at the start)
    assert all(r.name == entry.name and r.total == size for r in reports)
    done = [r.downloaded for r in reports]
    assert done == sorted(done) and done[-1] == size and reports[-1].fraction == 1.0
    loaded = load_checkpoint(path)
    assert loaded.layout == "ours" and loaded.config.name == "cast_tiny" and not loaded.has_classifier
    expected = reference_model.state_dict()
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, expected[key]), key  # the online encoder, not the momentum one (+0.1)
    assert loaded.metadata.provenance.parent_checkpoint == f"hf://{REPO}/{FILENAME}@{COMMIT}"
    assert local_status(entry, **dirs) == "converted"

    hub.clear_log()
    assert fetch_pretrained(entry, progress=reports.append, **dirs) == path
    assert hub.requests == []  # the converted copy answers: not even a HEAD


def test_cached_raw_file_is_converted_without_a_request(hub, entry, checkpoint_bytes, dirs):
    hub.add(REPO, FILENAME, checkpoint_bytes)
    path = fetch_pretrained(entry, **dirs)
    path.unlink()
    assert local_status(entry, **dirs) == "cached"
    hub.clear_log()
    assert fetch_pretrained(entry, **dirs) == path and load_checkpoint(path).layout == "ours"
    assert hub.requests == []


def test_interrupted_transfer_resumes_with_a_range_request(hub, entry, checkpoint_bytes, dirs):
    cut = 5 * CHUNK + 1000
    hub.add(REPO, FILENAME, checkpoint_bytes, truncate_first=cut)
    reports: list[DownloadProgress] = []

    fetch_pretrained(entry, progress=reports.append, **dirs)

    ranges = _get_ranges(hub)
    assert len(ranges) == 2 and ranges[0] is None and ranges[1] is not None
    start = int(ranges[1].removeprefix("bytes=").removesuffix("-"))
    assert ranges[1] == f"bytes={start}-" and 0 < start <= cut
    done = [r.downloaded for r in reports]
    assert done == sorted(done) and done[-1] == len(checkpoint_bytes)
    raw = hub_module._cached_raw(entry, dirs["cache_dir"])
    assert raw is not None and raw.read_bytes() == checkpoint_bytes
    assert local_status(entry, **dirs) == "converted"


def test_transfer_that_keeps_failing_is_a_clear_error(hub, entry, checkpoint_bytes, dirs):
    hub.add(REPO, FILENAME, checkpoint_bytes, truncate_first=0, truncate_gets=100)  # headers, then nothing
    with pytest.raises(CheckpointError) as caught:
        fetch_pretrained(entry, **dirs)
    assert entry.name in str(caught.value) and f"cast download {entry.name}" in str(caught.value)
    assert len(hub.gets()) > 1  # huggingface_hub retried before giving up
    assert local_status(entry, **dirs) is None


def _cancel_after_first_bytes(reports: list[DownloadProgress]):
    return lambda: any(r.downloaded > 0 for r in reports)


def test_cancelled_download_leaves_nothing_usable_and_can_be_restarted(hub, entry, checkpoint_bytes, dirs):
    hub.add(REPO, FILENAME, checkpoint_bytes)
    reports: list[DownloadProgress] = []
    with pytest.raises(DownloadCancelled, match=entry.name):
        fetch_pretrained(entry, progress=reports.append, should_stop=_cancel_after_first_bytes(reports), **dirs)
    assert [r.downloaded for r in reports] == [0, CHUNK]  # stopped at the next chunk
    assert not hub_module.converted_path(entry, dirs["converted_dir"]).exists()  # no converted copy (a lock file may stay)
    assert local_status(entry, **dirs) is None

    path = fetch_pretrained(entry, **dirs)
    assert load_checkpoint(path).layout == "ours"
    assert hub_module._cached_raw(entry, dirs["cache_dir"]).read_bytes() == checkpoint_bytes


def test_cancelled_download_resumes_where_it_stopped(hub, entry, checkpoint_bytes, dirs):
    hub.add(REPO, FILENAME, checkpoint_bytes)
    reports: list[DownloadProgress] = []
    with pytest.raises(DownloadCancelled):
        fetch_pretrained(entry, progress=reports.append, should_stop=_cancel_after_first_bytes(reports), **dirs)
    hub.clear_log()
    resumed: list[DownloadProgress] = []

    fetch_pretrained(entry, progress=resumed.append, **dirs)

    assert _get_ranges(hub) == [f"bytes={CHUNK}-"]  # only the remaining bytes
    assert resumed[0].downloaded == CHUNK and resumed[-1].downloaded == len(checkpoint_bytes)
    assert hub_module._cached_raw(entry, dirs["cache_dir"]).read_bytes() == checkpoint_bytes


def test_corrupt_download_is_refused_and_removed(hub, entry, checkpoint_bytes, dirs):
    hub.add(REPO, FILENAME, checkpoint_bytes[: len(checkpoint_bytes) // 2])  # served whole: Content-Length agrees
    with pytest.raises(CheckpointError, match=f"{entry.name} is unusable"):
        fetch_pretrained(entry, **dirs)
    assert not (dirs["converted_dir"] / f"{entry.name}.safetensors").exists()
    assert local_status(entry, **dirs) is None and hub_module._cached_raw(entry, dirs["cache_dir"]) is None

    with pytest.raises(CheckpointError, match=entry.name):
        fetch_pretrained(entry, **dirs)
    assert len(hub.gets()) == 2  # downloaded again, not taken from the cache

    hub.add(REPO, FILENAME, checkpoint_bytes)  # the Hub serves a good file again
    assert load_checkpoint(fetch_pretrained(entry, **dirs)).layout == "ours"


def test_missing_file_is_a_clear_error(hub, entry, dirs):
    hub.add(REPO, FILENAME, b"", status=404)
    with pytest.raises(CheckpointError) as caught:
        fetch_pretrained(entry, **dirs)
    message = str(caught.value)
    assert entry.name in message and "HTTP 404" in message and f"cast download {entry.name}" in message
    assert hub.requests and hub.gets() == []  # the HEAD answered 404: no GET
    assert local_status(entry, **dirs) is None


def test_offline_uses_the_cache_only(hub, entry, checkpoint_bytes, dirs, monkeypatch):
    hub.add(REPO, FILENAME, checkpoint_bytes)
    _offline(monkeypatch)
    with pytest.raises(CheckpointError, match=rf"{entry.name} is not available \(offline: HF_HUB_OFFLINE=1") as caught:
        fetch_pretrained(entry, **dirs)
    assert f"cast download {entry.name}" in str(caught.value)
    assert hub.requests == []

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    fetch_pretrained(entry, **dirs).unlink()  # downloaded; only the raw file stays, in the HF cache
    _offline(monkeypatch)
    hub.clear_log()
    assert load_checkpoint(fetch_pretrained(entry, **dirs)).layout == "ours"
    assert hub.requests == []


def test_create_model_end_to_end(hub, entry, checkpoint_bytes, tmp_path, monkeypatch, reference_model):
    hub.add(REPO, FILENAME, checkpoint_bytes)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # the default locations
    monkeypatch.setenv("CAST_EXPLORER_CACHE", str(tmp_path / "cast-cache"))
    registry = {**zoo.ZOO, entry.name: entry}
    monkeypatch.setattr(zoo, "ZOO", registry)
    monkeypatch.setattr(cast.api, "ZOO", registry)

    model = cast.create_model(entry.name, pretrained=True)

    assert model.pretrained_cfg.zoo_name == entry.name and len(hub.gets()) == 1
    expected = _embedding(reference_model)
    torch.testing.assert_close(_embedding(model), expected, rtol=0, atol=0)
    hub.clear_log()
    loaded = load_pretrained(entry)
    assert hub.requests == [] and entry.url_id in loaded.report
    assert (tmp_path / "cast-cache" / "converted" / f"{entry.name}.safetensors").is_file()
    torch.testing.assert_close(_embedding(loaded.model), expected, rtol=0, atol=0)
