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
