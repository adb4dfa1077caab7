"""Fine-tuning jobs through the on-disk queue: real (tiny) training processes, cancel, resume, crashes."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from app.jobs import Job, JobQueue




@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.jpg")
    return folder


def config(photos: Path, out: Path, steps: int, **extra) -> dict:
    return {"data": str(photos), "output": str(out), "variant": "cast_tiny", "steps": steps, "batch_size": 2,
            "save_every": 1, "mlp_dim": 256, "lr": 3e-4, **extra}


def wait_for_steps(queue: JobQueue, job_id: str, steps: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while len(queue.progress(job_id)) < steps:
        queue.poll()
        assert time.monotonic() < deadline, queue.log_tail(job_id)
        time.sleep(0.3)


@pytest.mark.slow
@pytest.mark.training
def test_job_runs_to_a_checkpoint_that_joins_the_model_picker(photos: Path, tmp_path: Path) -> None:
    from app.models import ModelCatalog

    queue = JobQueue(tmp_path / "jobs")
    job = queue.submit("moco", config(photos, tmp_path / "ckpts" / "mine.safetensors", steps=3))
    done = queue.wait(job.id, timeout=300)
    assert done.state == "done", (done.error, queue.log_tail(job.id))
    assert [row["step"] for row in queue.progress(job.id)] == [1, 2, 3]
    assert {"loss", "images_per_s", "eta_s", "epoch"} <= set(queue.progress(job.id)[-1])
    keys = [key for _, key in ModelCatalog(tmp_path / "ckpts").choices()]
    assert "file:mine.safetensors" in keys  # by name: no server path in a picker
    # the state survives a restart: a new queue on the same folder sees the finished job
    assert JobQueue(tmp_path / "jobs").get(job.id).state == "done"


@pytest.mark.slow
@pytest.mark.training
def test_cancel_then_resume_continues_from_the_saved_step(photos: Path, tmp_path: Path) -> None:
    queue = JobQueue(tmp_path / "jobs")
    job = queue.submit("moco", config(photos, tmp_path / "out.safetensors", steps=6))
    wait_for_steps(queue, job.id, 2)
    queue.cancel(job.id)
    stopped = queue.wait(job.id, timeout=120)
    assert stopped.state == "cancelled"
    done_steps = len(queue.progress(job.id))
    assert done_steps < 6
    resumed = queue.wait(queue.resume(job.id).id, timeout=300)
    assert resumed.state == "done", resumed.error
    steps = [row["step"] for row in queue.progress(job.id)]
    assert steps[done_steps] == done_steps + 1  # continued, not restarted from step 1
    assert steps[-1] == 6


@pytest.mark.slow
@pytest.mark.training
def test_crashed_jobs_are_reported_and_the_queue_goes_on(photos: Path, tmp_path: Path) -> None:
    queue = JobQueue(tmp_path / "jobs")
    empty = tmp_path / "no_images"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    bad = queue.submit("moco", config(empty, tmp_path / "bad.safetensors", steps=2))
    slow = queue.submit("moco", config(photos, tmp_path / "killed.safetensors", steps=50))
    good = queue.submit("moco", config(photos, tmp_path / "good.safetensors", steps=2))
    failed = queue.wait(bad.id, timeout=120)
    assert failed.state == "failed" and failed.error
    assert "image" in failed.error.lower()
    # the out-of-memory killer sends SIGKILL: simulate it on a running job
    wait_for_steps(queue, slow.id, 1)
    os.kill(queue.get(slow.id).pid, signal.SIGKILL)
    killed = queue.wait(slow.id, timeout=60)
    assert killed.state == "failed" and "signal 9" in killed.error
    assert queue.wait(good.id, timeout=300).state == "done"


def test_interrupted_running_job_is_failed_after_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "jobs"
    stale = Job(id="20260101-000000-abcdef", kind="moco", config={}, state="running", pid=2**22 + 12345)
    (root / stale.id).mkdir(parents=True)
    (root / stale.id / "job.json").write_text(json.dumps(stale.__dict__))
    job = JobQueue(root).get(stale.id)
    assert job.state == "failed" and "resume" in job.error
    with pytest.raises(ValueError, match="unknown job kind"):
        JobQueue(root).submit("gan", {})


def test_the_training_package_knows_no_visitors() -> None:
    """The job service (owners, caps, quotas) is the app's; cast.train only trains (issue 21)."""
    import importlib.util

    import cast.train

    assert importlib.util.find_spec("cast.train.jobs") is None
    for source in Path(cast.train.__file__).parent.glob("*.py"):
        text = source.read_text()
        assert "owner" not in text and "JobQueue" not in text and "from app" not in text, source.name
