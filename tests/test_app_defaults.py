"""The app starts on the official models: from the local Hugging Face cache (offline), on a Space whose
cache `preload_from_hub` filled, and after a background download from a Hub (a local stand-in).

Each test runs the real `python app.py` in a subprocess with its own caches. The official files are
full-size official layouts built from the manifests with random weights (the online encoder in float16,
everything else stride-0 rows, so a CAST-S file is ~60 MB); the app converts them on first use like any
downloaded file.
"""
from __future__ import annotations

import io
import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from app_server import REPO_ROOT, running_app
from hub_server import COMMIT, HubServer
from official_layouts import moco_checkpoint
from reference import parity_dir, read_manifest

from cast.weights.zoo import ZOO

pytestmark = [pytest.mark.slow]
ASSET = REPO_ROOT / "assets" / "chelsea_cat.jpg"


def official_bytes(name: str) -> bytes:
    """An official MoCo file of a zoo entry (cast_small / cast_base layouts): a random online encoder in
    float16 (a model that segments), the rest stride-0 rows."""
    manifest = {"cast_small": "moco_cast_small", "cast_base": "moco_cast_base"}[ZOO[name].architecture]
    buffer = io.BytesIO()
    torch.save(moco_checkpoint(read_manifest(parity_dir(), manifest), dense=True, half=True), buffer)
    return buffer.getvalue()


def fill_hf_cache(cache: Path, name: str) -> None:
    """The huggingface_hub cache layout, as `preload_from_hub` or a past download leaves it."""
    repo = cache / "models--twke--CAST"
    target = repo / "snapshots" / COMMIT / ZOO[name].filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(official_bytes(name))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)


def initial_status(url: str) -> str:
    """The model line a new page shows first (from the app's config, before any request)."""
    config = json.loads(urllib.request.urlopen(url + "/config", timeout=30).read())
    return next(c["props"]["value"] for c in config["components"] if c.get("props", {}).get("elem_id") == "status")


def segment_status(url: str, tmp_path: Path) -> str:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=str(tmp_path / "dl"))
    outputs = client.predict(handle_file(str(ASSET)), api_name="/segment")
    return next(o for o in outputs if isinstance(o, str) and o.startswith("**Model:**"))


def preload_files() -> list[tuple[str, str]]:
    """(repo, file) pairs of the README front matter's preload_from_hub."""
    front = (REPO_ROOT / "README.md").read_text().split("---")[1]
    block = re.search(r"preload_from_hub:\n((?:\s+- .+\n)+)", front)
    assert block, "the Space front matter has no preload_from_hub"
    return [tuple(line.strip()[2:].split(" ", 1)) for line in block.group(1).splitlines()]


def test_offline_app_starts_on_the_cached_official_model(tmp_path: Path) -> None:
    cache = tmp_path / "hf"
    fill_hf_cache(cache, "cast_small_moco_in1k")
    start = time.perf_counter()
    env = {"HF_HUB_CACHE": str(cache), "CAST_EXPLORER_CACHE": str(tmp_path / "ours")}
    with running_app(tmp_path / "app.log", extra_env=env) as url:
        print(f"offline start-up with a cached official model: {time.perf_counter() - start:.1f} s")
        assert "official: cast_small_moco_in1k" in initial_status(url)
        status = segment_status(url, tmp_path)
        assert "cast_small_moco_in1k — cast_small (CAST" in status
        assert "official weights: MoCo-v3 on ImageNet-1K" in status


def test_space_starts_on_the_model_its_front_matter_preloads(tmp_path: Path) -> None:
    files = preload_files()
    names = {e.filename: e.name for e in ZOO.values()}
    assert files and all(repo == "twke/CAST" and name in names for repo, name in files)
    cache = tmp_path / "hf"
    for _, filename in files:
        fill_hf_cache(cache, names[filename])
    env = {"SPACE_ID": "someone/cast-explorer", "HF_HUB_CACHE": str(cache), "CAST_EXPLORER_CACHE": str(tmp_path / "ours"),
           "GRADIO_SERVER_NAME": "127.0.0.1"}
    with running_app(tmp_path / "space.log", extra_env=env, timeout=300) as url:
        preferred = names[files[0][1]]
        assert f"official: {preferred}" in initial_status(url)
        assert f"{preferred} — " in segment_status(url, tmp_path)


def test_background_download_serves_the_bundled_model_first(tmp_path: Path) -> None:
    name = "cast_small_moco_in1k"
    with HubServer() as hub:
        hub.add("twke/CAST", ZOO[name].filename, official_bytes(name))
        env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_XET": "1", "NO_PROXY": "127.0.0.1",
               "CAST_DEFAULT_MODEL": name, "HF_HUB_CACHE": str(tmp_path / "hf"),
               "CAST_EXPLORER_CACHE": str(tmp_path / "ours")}
        with running_app(tmp_path / "app.log", extra_env=env) as url:
            first = segment_status(url, tmp_path)  # start-up did not wait: the bundled model answers
            assert "bundled" in first or name in first
            deadline = time.monotonic() + 180
            while name not in segment_status(url, tmp_path):
                assert time.monotonic() < deadline, "the background download never became the default"
                time.sleep(2)
        assert any(r.method == "GET" and r.path.endswith(ZOO[name].filename) for r in hub.requests)


def test_download_manager_reports_progress_and_joins_running_downloads() -> None:
    """The app's background downloads: progress as the fetch reports it, one thread per file, failures and
    cancellation as states the UI shows (the fetch itself is tested against a local Hub in test_weights_hub.py)."""
    import threading

    from app.downloads import DownloadManager
    from cast.errors import CheckpointError
    from cast.weights.hub import DownloadProgress

    release = threading.Event()
    calls = []

    def fetch(name, progress, should_stop):
        calls.append(name)
        progress(DownloadProgress(name, 50, 200))
        release.wait(10)
        if should_stop():
            raise CheckpointError(f"download of {name} cancelled")
        if name == "cast_small_deit_in1k":
            raise CheckpointError("the Hub answered HTTP 404")
        progress(DownloadProgress(name, 200, 200))

    manager = DownloadManager(fetch=fetch)
    first = manager.start("cast_small_moco_in1k")
    assert manager.start("cast_small_moco_in1k") is not None and calls.count("cast_small_moco_in1k") <= 1
    deadline = time.monotonic() + 5
    while (manager.state("cast_small_moco_in1k").downloaded or 0) < 50:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    state = manager.state("cast_small_moco_in1k")
    assert state.active and state.fraction == 0.25 and first.active
    assert state.describe() == "downloading cast_small_moco_in1k: 25% of 200 bytes"
    manager.start("cast_small_deit_in1k")
    manager.start("cast_base_moco_in1k")
    manager.cancel("cast_base_moco_in1k")
    release.set()
    assert manager.wait("cast_small_moco_in1k", 10).status == "ready"
    failed = manager.wait("cast_small_deit_in1k", 10)
    assert failed.status == "failed" and "HTTP 404" in failed.describe()
    cancelled = manager.wait("cast_base_moco_in1k", 10)
    assert cancelled.status == "cancelled" and "resumes where it stopped" in cancelled.describe()
    assert calls.count("cast_small_moco_in1k") == 1 and manager.active() == []
