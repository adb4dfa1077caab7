"""Hosted mode: visitors cannot harm each other or the host.

The queue's rules are tested directly with a stand-in worker (a script that speaks the worker's file
protocol: progress lines, the cancel file, result.json), so jobs run as long as a test needs at no cost.
The app is tested through its named endpoints with two gradio_client sessions, with real training jobs.
"""
from __future__ import annotations

import io
import json
import os
import stat
import sys
import time
import zipfile
from pathlib import Path

import pytest
from app_server import running_app
from PIL import Image
from skimage import data

from app.config import AppConfig, HostedLimits, hosted_from_env
from app.jobs import JobLimits, JobQueue
from cast.errors import CastError, JobError

FAKE_WORKER = """#!{python}
# Stands in for `python -m cast.train.job_worker FOLDER`: one "step" every 0.1 s until the cancel file appears
# or the configured steps are done; writes result.json like the real worker.
import json, sys, time
from pathlib import Path
folder = Path(sys.argv[-1])
job = json.loads((folder / "job.json").read_text())
steps = int(job["config"].get("steps", 5))
out = Path(job["config"]["output"])
for step in range(1, steps + 1):
    if (folder / "cancel").exists():
        (folder / "result.json").write_text(json.dumps({{"output": None, "cancelled": True, "steps": step - 1}}))
        sys.exit(0)
    with open(folder / "progress.jsonl", "a") as f:
        f.write(json.dumps({{"step": step, "total_steps": steps, "loss": 1.0 / step}}) + "\\n")
    time.sleep(0.1)
out.parent.mkdir(parents=True, exist_ok=True)
out.write_bytes(b"x" * int(job["config"].get("result_bytes", 10)))
(folder / "result.json").write_text(json.dumps({{"output": str(out), "cancelled": False, "steps": steps}}))
"""


@pytest.fixture
def fake_python(tmp_path: Path) -> str:
    script = tmp_path / "fake-python"
    script.write_text(FAKE_WORKER.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def queue(tmp_path: Path, fake_python: str, **limits) -> JobQueue:
    return JobQueue(tmp_path / "jobs", python=fake_python, limits=JobLimits(private=True, **limits))


def cfg(tmp_path: Path, steps: int = 5, **extra) -> dict:
    return {"data": "photos.zip", "output": str(tmp_path / "out" / f"{time.time_ns()}.safetensors"), "steps": steps,
            "batch_size": 4, **extra}


def wait_state(q: JobQueue, job_id: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while q._read(job_id).state != state:
        assert time.monotonic() < deadline, f"job {job_id} never became {state} (is {q._read(job_id).state})"
        q.poll()
        time.sleep(0.05)


# ------------------------------------------------------------------------------------ the queue's rules
def test_jobs_belong_to_their_owner(tmp_path: Path, fake_python: str) -> None:
    q = queue(tmp_path, fake_python)
    job = q.submit("moco", cfg(tmp_path, steps=200), owner="A")
    wait_state(q, job.id, "running")
    for action in (q.cancel, q.resume, q.get):
        with pytest.raises(JobError, match="no job .* of this session"):
            action(job.id, "B")
    assert q.jobs("B") == [] and [j.id for j in q.jobs("A")] == [job.id]
    time.sleep(0.3)
    assert q._read(job.id).state == "running" and not (q.job_dir(job.id) / "cancel").exists()  # nothing changed
    q.cancel(job.id, "A")
    wait_state(q, job.id, "cancelled")
    with pytest.raises(JobError, match="no job"):
        q.get("../etc", "A")


def test_caps_on_steps_batch_and_model_size(tmp_path: Path, fake_python: str) -> None:
    q = queue(tmp_path, fake_python, max_steps=50, max_batch_size=8, max_model_params=30_000_000)
    with pytest.raises(JobError, match="at most 50 steps"):
        q.submit("moco", cfg(tmp_path, steps=51), owner="A")
    with pytest.raises(JobError, match="at most 8"):
        q.submit("moco", {**cfg(tmp_path), "batch_size": 9}, owner="A")
    with pytest.raises(JobError, match="at most 30 M"):
        q.submit("moco", cfg(tmp_path), owner="A", model_params=112_000_000)
    assert q.jobs("A") == []  # nothing was queued
    q.submit("moco", cfg(tmp_path, steps=50), owner="A", model_params=28_000_000)


def test_jobs_per_owner_and_in_total_with_queue_positions(tmp_path: Path, fake_python: str) -> None:
    q = queue(tmp_path, fake_python, max_running=1, max_queued=2, max_active_per_owner=1)
    first = q.submit("moco", cfg(tmp_path, steps=200), owner="A")
    with pytest.raises(JobError, match="already has 1 job"):
        q.submit("moco", cfg(tmp_path), owner="A")
    second = q.submit("moco", cfg(tmp_path), owner="B")
    third = q.submit("moco", cfg(tmp_path), owner="C")
    assert (q.queue_position(first.id), q.queue_position(second.id), q.queue_position(third.id)) == (None, 1, 2)
    with pytest.raises(JobError, match="queue is full"):
        q.submit("moco", cfg(tmp_path), owner="D")
    q.cancel(first.id, "A")
    wait_state(q, second.id, "running")
    assert q.queue_position(third.id) == 1


def test_results_are_kept_per_visitor_and_a_full_disk_refuses_new_jobs(tmp_path: Path, fake_python: str) -> None:
    """Beyond its quota a visitor loses its own oldest results, never another's; a full disk refuses new jobs."""
    q = queue(tmp_path, fake_python, max_results_bytes=60_000, result_ttl_s=3600, max_results_per_owner=2,
              max_results_per_address=3)

    def run(owner: str, address: str) -> str:
        job = q.submit("moco", cfg(tmp_path, steps=1, result_bytes=10_000), owner=owner, address=address)
        wait_state(q, job.id, "done")
        (q.job_dir(job.id) / "model.safetensors").write_bytes(b"x" * 10_000)  # inside the folder, as when hosted
        return job.id

    victim = run("V", "10.0.0.1")
    burst = [run(f"A{i // 2}", "10.0.0.66") for i in range(5)]  # two fresh sessions a time from one address
    q.poll()
    remaining = {p.name for p in (tmp_path / "jobs").iterdir()}
    assert victim in remaining  # the other visitor's burst never touches it
    assert set(burst[-3:]) <= remaining and not set(burst[:2]) & remaining  # the burst's own oldest went
    for _ in range(2):  # a third address fills the disk: it is refused, nobody's results are deleted
        run("C", "10.0.0.99")
    with pytest.raises(JobError, match="disk for fine-tuning is full"):
        q.submit("moco", cfg(tmp_path, steps=1), owner="D", address="10.0.0.100")
    assert victim in {p.name for p in (tmp_path / "jobs").iterdir()}
    expired = JobQueue(tmp_path / "jobs", python=fake_python, limits=JobLimits(private=True, result_ttl_s=0))
    expired.poll()
    assert not any((tmp_path / "jobs").iterdir())


def test_a_job_that_succeeded_leaves_no_resume_state(tmp_path: Path, fake_python: str) -> None:
    q = queue(tmp_path, fake_python)
    out = tmp_path / "jobs-out" / "mine.safetensors"
    out.parent.mkdir()
    state = out.with_name("mine.train-state.pt")
    state.write_bytes(b"state")  # what the real worker saves at its checkpoints
    job = q.submit("moco", cfg(tmp_path, steps=2, output=str(out)), owner="A")
    (q.job_dir(job.id) / "data").mkdir()
    wait_state(q, job.id, "done")
    assert out.is_file() and not state.exists() and not (q.job_dir(job.id) / "data").exists()
    with pytest.raises(JobError, match="nothing to resume"):
        q.resume(job.id, "A")


def test_caps_per_address_and_a_fair_share_of_the_queue(tmp_path: Path, fake_python: str) -> None:
    q = queue(tmp_path, fake_python, max_running=1, max_queued=4, max_active_per_owner=1, max_active_per_address=3,
              max_queue_share=0.5)
    q.submit("moco", cfg(tmp_path, steps=200), owner="A1", address="10.0.0.1")  # runs
    q.submit("moco", cfg(tmp_path, steps=200), owner="A2", address="10.0.0.1")  # waits
    q.submit("moco", cfg(tmp_path, steps=200), owner="A3", address="10.0.0.1")  # waits: 2 of 4 places
    with pytest.raises(JobError, match="address already has 3 job"):
        q.submit("moco", cfg(tmp_path), owner="A4", address="10.0.0.1")
    q.submit("moco", cfg(tmp_path), owner="B1", address="10.0.0.2")
    with pytest.raises(JobError, match="fair share"):
        JobQueue(tmp_path / "jobs", python=fake_python, limits=JobLimits(
            private=True, max_queued=4, max_queue_share=0.25)).submit("moco", cfg(tmp_path), owner="B2", address="10.0.0.2")
    for job in q.jobs("A1") + q.jobs("A2") + q.jobs("A3") + q.jobs("B1"):
        q.cancel(job.id, job.owner)


def test_workers_run_at_a_lower_priority(tmp_path: Path) -> None:
    assert JobQueue(tmp_path / "jobs", limits=JobLimits(nice=15)).worker_env() == {"CAST_JOB_NICE": "15"}
    assert HostedLimits().job_limits().nice == 15 and JobLimits().nice == 10


# ------------------------------------------------------------------------------------ the settings
def test_hosted_switch_and_settings(tmp_path: Path) -> None:
    assert hosted_from_env({"SPACE_ID": "someone/space"}) and hosted_from_env({"CAST_HOSTED": "1"})
    assert not hosted_from_env({}) and not hosted_from_env({"SPACE_ID": "x", "CAST_HOSTED": "0"})
    config_file = tmp_path / "hosted.json"
    config_file.write_text(json.dumps({"max_image_mb": 5, "max_job_steps": 40}))
    limits = HostedLimits.from_env({"CAST_HOSTED_CONFIG": str(config_file), "CAST_MAX_JOB_STEPS": "30"})
    assert (limits.max_image_mb, limits.max_job_steps, limits.max_zip_mb) == (5.0, 30, HostedLimits.max_zip_mb)
    assert limits.job_limits().max_steps == 30 and limits.job_limits().private
    with pytest.raises(CastError, match="unknown hosted-mode settings: max_gpus"):
        config_file.write_text(json.dumps({"max_gpus": 2}))
        HostedLimits.from_env({"CAST_HOSTED_CONFIG": str(config_file)})
    with pytest.raises(CastError, match="non-negative"):
        HostedLimits.from_env({"CAST_MAX_IMAGE_MB": "lots"})
    assert not AppConfig().job_limits().private and AppConfig(hosted=True).job_limits().private


# ------------------------------------------------------------------------------------ through the app
def _zip_of_photos(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("astronaut", "chelsea", "coffee", "rocket"):
            buffer = io.BytesIO()
            Image.fromarray(getattr(data, name)()).save(buffer, format="JPEG")
            archive.writestr(f"{name}.jpg", buffer.getvalue())
    return path


@pytest.mark.slow
def test_two_visitors_of_a_hosted_app(tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    env = {"CAST_HOSTED": "1", "CAST_MAX_IMAGE_MB": "0.2", "CAST_MAX_JOB_STEPS": "400", "CAST_MAX_ZIP_IMAGES": "10",
           "CAST_JOBS_DIR": str(tmp_path / "jobs"), "CAST_CHECKPOINTS_DIR": str(tmp_path / "checkpoints")}
    photos = _zip_of_photos(tmp_path / "photos.zip")
    with running_app(tmp_path / "app.log", extra_env=env) as url:
        a = Client(url, verbose=False, download_files=str(tmp_path / "a"))
        b = Client(url, verbose=False, download_files=str(tmp_path / "b"))
        api = json.dumps(a.view_api(print_info=False, return_format="dict"))
        assert str(tmp_path) not in api and "/work/" not in api and os.path.expanduser("~") not in api  # no server paths

        # A starts a job on an uploaded ZIP; B can neither see nor cancel it
        job_id, message = a.predict("moco", "", handle_file(str(photos)), "default", 400, 2, "visitor-a",
                                    api_name="/start_job")
        assert job_id and "Started job" in message, message
        deadline = time.monotonic() + 60
        while a.predict(api_name="/jobs")[0]["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert b.predict(api_name="/jobs") == []
        _, refused = b.predict(job_id, api_name="/cancel_job")
        assert "of this session" in refused and "no job" in refused
        assert a.predict(api_name="/jobs")[0]["state"] == "running"  # A's job kept running

        # B may not train on a server folder, nor upload more than the caps
        _, folder = b.predict("moco", "/usr/share", None, "default", 10, 2, "sneaky", api_name="/start_job")
        assert "uploaded images only" in folder and b.predict(api_name="/jobs") == []
        big = tmp_path / "big.png"
        Image.fromarray(data.astronaut()).save(big)  # ~0.6 MB PNG, over the 0.2 MB cap
        notice = b.predict(handle_file(str(big)), api_name="/segment")[-1]
        assert "big.png" in notice and "at most 0.2 MB" in notice and str(tmp_path) not in notice

        # A cancels its own job
        _, cancelled = a.predict(job_id, api_name="/cancel_job")
        assert "Job" in cancelled
        deadline = time.monotonic() + 60
        while a.predict(api_name="/jobs")[0]["state"] != "cancelled":
            assert time.monotonic() < deadline
            time.sleep(0.5)


def test_model_keys_from_a_request_cannot_name_server_files(tmp_path: Path) -> None:
    """A client may send any string as the model: only the app's own choices are accepted."""
    from app.models import ModelCatalog

    catalog = ModelCatalog(tmp_path)
    for key in ("upload:abc:/etc/passwd", "path:/etc/passwd", "file:../../etc/passwd", "file:/etc/passwd",
                "zoo:not_a_model", "zoo:cast_snapshots_zip", "/etc/passwd"):
        with pytest.raises(CastError):
            catalog.check_key(key)
    assert catalog.check_key("default") == "default" and catalog.check_key("zoo:cast_small_moco_in1k")
    assert catalog.check_key(catalog.bundled_key()) == catalog.bundled_key()


# ------------------------------------------------------------------------------------ abuse, piece by piece
def test_visitor_tokens_are_signed_by_the_server_and_checked(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from app.owners import VisitorError, VisitorKeys

    keys = VisitorKeys.load(tmp_path / "jobs")
    assert (tmp_path / "jobs" / ".visitor-key").stat().st_mode & 0o077 == 0  # readable by the app's user only
    token = keys.issue()
    request = SimpleNamespace(session_hash="abc", headers={"x-forwarded-for": "203.0.113.7, 10.0.0.1"},
                              client=SimpleNamespace(host="10.0.0.1"))
    assert keys.issue(token) == token and keys.owner(token, request) == f"visitor:{token.split('.')[0]}"
    assert VisitorKeys.load(tmp_path / "jobs").owner(token, request) == keys.owner(token, request)  # after a restart
    visitor_id, signature = token.split(".")
    for forged in ("forged", visitor_id, f"{'0' * 32}.{signature}", f"{visitor_id}.{'0' * 32}", token + "0"):
        with pytest.raises(VisitorError, match="not issued by this app"):
            keys.owner(forged, request)
        assert keys.issue(forged) != forged  # a browser holding one gets a fresh token
    assert keys.owner(None, request) == "session:abc"
    assert keys.address(request) == "10.0.0.1"  # the peer, unless behind a proxy
    assert VisitorKeys.load(tmp_path / "jobs", behind_proxy=True).address(request) == "203.0.113.7"
    assert keys.browser_state_secret() not in (keys._key.decode(), token)  # what Gradio publishes is not the key
    assert AppConfig(jobs_dir=tmp_path / "jobs").visitor_keys().owner(token, request) == keys.owner(token, request)


def test_masks_are_checked_from_their_header_and_held_small(tmp_path: Path) -> None:
    import numpy as np

    from cast.datasets import load_label_mask
    from cast.errors import DatasetError

    bomb = tmp_path / "bomb.png"
    Image.new("RGB", (6000, 5000), (128, 0, 0)).save(bomb)
    with pytest.raises(DatasetError, match="6000x5000 pixels but the image is 451x300"):
        load_label_mask(bomb, expected_size=(451, 300))
    with pytest.raises(DatasetError, match="at most 20 megapixels"):
        load_label_mask(bomb, max_pixels=20_000_000)
    voc = load_label_mask(bomb, expected_size=(6000, 5000))
    assert voc.dtype == np.uint8 and voc.shape == (5000, 6000) and set(np.unique(voc)) == {1}  # VOC colour 1
    many = tmp_path / "many.png"
    Image.fromarray((np.arange(300 * 400).reshape(300, 400) % 1000).astype(np.uint16)).save(many)
    assert load_label_mask(many).dtype == np.uint16
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(photo)
    with pytest.raises(DatasetError, match="not a label mask"):
        load_label_mask(photo)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def test_zips_are_counted_sized_and_header_checked_before_extraction(tmp_path: Path) -> None:
    from cast.datasets import inspect_zip, prepare_data_root
    from cast.errors import DatasetError

    limits = HostedLimits(max_zip_unused_files=5, max_zip_unused_mb=1).zip_limits()
    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, format="JPEG")
    photo = buffer.getvalue()
    cases = {
        "padded": ({"a.jpg": photo, "padding.bin": bytes(50_000_000)}, "MB that are not usable images"),
        "fake image": ({"a.jpg": photo, "zeros.jpg": bytes(50_000_000)}, "MB that are not usable images"),
        "many entries": ({"a.jpg": photo, **{f"n/{i}.txt": b"" for i in range(300)}}, "entries"),
        "some notes": ({"a.jpg": photo, **{f"n/{i}.txt": b"" for i in range(20)}}, "files that are not usable"),
    }
    for name, (members, message) in cases.items():
        archive = _zip(tmp_path / f"{name}.zip", members)
        with pytest.raises(DatasetError, match=message):
            inspect_zip(archive, limits)
        with pytest.raises(DatasetError):
            prepare_data_root(archive, extract_dir=tmp_path / "x", limits=limits)
    assert not any((tmp_path / "x").rglob("*.*")) if (tmp_path / "x").exists() else True  # nothing written
    mixed = _zip(tmp_path / "mixed.zip", {"a.jpg": photo, "sub/b.jpg": photo, "README.txt": b"hi", "tiny.png": _png(8),
                                          "huge.png": _png_header(50_000, 50_000)})  # a pixel bomb by its header
    contents = inspect_zip(mixed, limits)
    assert [r.as_posix() for _, r in contents.images] == ["a.jpg", "sub/b.jpg"]
    assert {n for n, _ in contents.unused} == {"README.txt", "tiny.png", "huge.png"}
    root = prepare_data_root(mixed, extract_dir=tmp_path / "y", limits=limits)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        ".complete", "a.jpg", "sub/b.jpg"]  # only what will be used


def _png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """The first bytes of a PNG that claims to be width x height (enough for a header check)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_scratch_keeps_a_budget_in_bytes_and_files(tmp_path: Path) -> None:
    from app.scratch import Scratch, ScratchFullError

    scratch = Scratch(tmp_path / "scratch", ttl_s=3600, max_bytes=10_000, max_files=10)
    first = scratch.new("a", reserve_bytes=6_000, reserve_files=2)
    (first / "x").write_bytes(b"x" * 6_000)
    second = scratch.new("b", reserve_bytes=3_000, reserve_files=2)
    assert first.is_dir() and second.is_dir()
    os.utime(first, (time.time() - 10, time.time() - 10))  # first is the older one
    third = scratch.new("c", reserve_bytes=5_000)  # does not fit beside both: the oldest goes
    assert not first.exists() and second.is_dir() and third.is_dir()
    for i in range(8):
        (third / f"f{i}").touch()
    os.utime(second, (time.time() - 5, time.time() - 5))
    scratch.new("d", reserve_files=3)  # 2 + 9 files + 3 > 10: by files, the oldest goes
    assert not second.exists()
    with pytest.raises(ScratchFullError, match="scratch space"):
        scratch.new("e", reserve_bytes=20_000)
    expired = Scratch(tmp_path / "scratch", ttl_s=0)
    time.sleep(0.01)
    expired.sweep()
    assert [p.name for p in (tmp_path / "scratch").iterdir()] == [".lock"]


def test_session_results_share_one_memory_budget(tmp_path: Path) -> None:
    import numpy as np

    from app.memory import ResultsEvicted, SessionMemory, held_bytes

    memory = SessionMemory(max_bytes=25_000_000)
    first = memory.put({"labels": np.zeros((1000, 1000), np.int64)}, None, "explore")  # 8 MB
    second = memory.put({"labels": np.zeros((1000, 1000), np.int64)}, None, "collection")
    memory.get(first)  # used since: the second is now the least recently used
    third = memory.put({"labels": np.zeros((1000, 1000), np.int64)}, None, "compare")
    assert memory.used_bytes <= 25_000_000 and memory.get(third) is not None
    fourth = memory.put({"labels": np.zeros((1000, 1000), np.int64)}, None, "explore")
    with pytest.raises(ResultsEvicted, match="Your collection were removed|collection"):
        memory.get(second)
    assert memory.get(first) is not None and memory.get(fourth) is not None
    assert memory.put({"labels": np.ones((1000, 1000), np.int64)}, first, "explore") == first  # replaced in place
    memory.drop(first)
    assert memory.get(first) is None  # Gradio deleted the state: gone without a notice
    with pytest.raises(Exception, match="at most 25 MB"):
        memory.put(np.zeros(4_000_000, np.int64), None, "explore")
    assert held_bytes({"a": np.zeros(10, np.uint8), "b": [np.zeros(5, np.int64)]}) >= 50


def test_gradio_upload_folder_keeps_its_budget(tmp_path: Path) -> None:
    """Before each upload the oldest of Gradio's cached files go until it fits; a too large one is refused."""
    import asyncio

    from app.hosting import UploadBudget, server_options
    from app.scratch import Scratch

    cache = tmp_path / "gradio"
    for i in range(5):
        folder = cache / f"upload{i}"
        folder.mkdir(parents=True)
        (folder / "photo.jpg").write_bytes(b"x" * 1000)
        os.utime(folder, (time.time() - 100 + i, time.time() - 100 + i))
    passed, answers = [], []

    async def downstream(scope, receive, send):
        passed.append(scope["path"])

    async def send(message):
        answers.append(message)

    budget = UploadBudget(downstream, Scratch(cache, ttl_s=3600, max_bytes=4000, max_files=100))

    def post(length: int) -> None:
        scope = {"type": "http", "method": "POST", "path": "/gradio_api/upload",
                 "headers": [(b"content-length", str(length).encode())]}
        asyncio.run(budget(scope, None, send))

    post(1500)  # 5000 + 1500 > 4000: the three oldest go
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == ["upload3", "upload4"]
    assert passed == ["/gradio_api/upload"]
    post(10_000)
    assert answers[0]["status"] == 413 and passed == ["/gradio_api/upload"]  # refused, never reached Gradio
    options = server_options(AppConfig(hosted=True))
    assert options["max_file_size"] == "300mb" and options["app_kwargs"]["middleware"]
    assert server_options(AppConfig()) == {"max_file_size": None}


@pytest.mark.slow
def test_a_model_file_that_vanishes_under_the_running_app_is_noticed(tmp_path: Path, monkeypatch) -> None:
    """The cached default model's files disappear: requests keep working (the model in memory, else the bundled
    one with a notice), and the file is fetched again in the background."""
    import shutil

    from huggingface_hub import constants as hf_constants
    from test_app_defaults import fill_hf_cache

    from app.downloads import DownloadManager
    from app.explore_tab import ensure_model
    from app.models import ModelCatalog

    name = "cast_small_moco_in1k"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CAST_EXPLORER_CACHE", str(tmp_path / "ours"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("CAST_DEFAULT_MODEL", raising=False)
    fill_hf_cache(tmp_path / "hf", name)
    fetched = []

    def fetch(wanted, progress=None, should_stop=None):
        fetched.append(wanted)
        raise CastError(f"{wanted} cannot be fetched offline")

    catalog = ModelCatalog(tmp_path / "checkpoints", cache_size=1, downloads=DownloadManager(fetch))
    assert catalog.choose_default(background_download=False) == f"zoo:{name}"
    from app.explore_tab import DEFAULT_KEY

    assert name in ensure_model(catalog, DEFAULT_KEY).summary
    shutil.rmtree(tmp_path / "hf")
    shutil.rmtree(tmp_path / "ours")
    time.sleep(5.5)  # the download manager's answer about local files is reused for 5 s
    kept = ensure_model(catalog, DEFAULT_KEY)  # still in memory: served, and fetched again in the background
    assert name in kept.summary and not kept.notice
    catalog.load(catalog.bundled_key())  # the official model leaves the cache (size 1)
    fallback = ensure_model(catalog, DEFAULT_KEY)
    assert "bundled" in fallback.summary and "Showing the bundled model instead" in fallback.notice
    assert ensure_model(catalog, DEFAULT_KEY).notice  # and again: no request fails for it
    assert fetched and set(fetched) == {name}
