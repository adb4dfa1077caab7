"""Fine-tuning jobs: a persistent on-disk queue, each job in its own process (issue: training jobs).

Layout, one folder per job under the jobs root:
    job.json        id, kind, config, state, times, error, output   (rewritten atomically)
    progress.jsonl  one line per logged step: step, total_steps, epoch, loss, images_per_s, eta_s, lr
    log.txt         the worker's stdout/stderr
    cancel          present when the user asked to cancel (the worker stops at the next step)
States: queued -> running -> done | failed | cancelled. A job found "running" after an app restart whose
process is gone is marked failed ("interrupted") and can be resumed from its last saved checkpoint.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

STATES = ("queued", "running", "done", "failed", "cancelled")
KINDS = ("moco", "supervised", "probe")


@dataclass(frozen=True)
class Job:
    """What is known about one job (the content of job.json)."""

    id: str
    kind: str
    config: dict[str, Any]
    state: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    pid: int | None = None
    error: str | None = None
    output: str | None = None
    resumes: int = 0

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie child of ours counts as finished
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


class JobQueue:
    """One queue, one job running at a time; state lives on disk, so it survives a restart."""

    def __init__(self, root: Path, python: str = sys.executable) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.python = python
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen] = {}
        self._exit_codes: dict[str, int] = {}
        self._recover()

    # ------------------------------------------------------------------ reading
    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def get(self, job_id: str) -> Job:
        data = json.loads((self.job_dir(job_id) / "job.json").read_text())
        return Job(**data)

    def jobs(self) -> list[Job]:
        """All jobs, newest first."""
        found = [self.get(p.name) for p in self.root.iterdir() if (p / "job.json").is_file()]
        return sorted(found, key=lambda j: j.created, reverse=True)

    def progress(self, job_id: str) -> list[dict[str, Any]]:
        """Every logged step of a job so far (for the live loss curve)."""
        path = self.job_dir(job_id) / "progress.jsonl"
        if not path.is_file():
            return []
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line being written right now
                continue
        return rows

    def log_tail(self, job_id: str, lines: int = 40) -> str:
        path = self.job_dir(job_id) / "log.txt"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""

    # ------------------------------------------------------------------ changing
    def submit(self, kind: str, config: dict[str, Any]) -> Job:
        """Queue a job; it starts when no other job is running."""
        if kind not in KINDS:
            raise ValueError(f"unknown job kind {kind!r}; choose one of {', '.join(KINDS)}")
        job = Job(id=time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6], kind=kind, config=dict(config))
        self.job_dir(job.id).mkdir(parents=True)
        self._save(job)
        self.poll()
        return self.get(job.id)

    def cancel(self, job_id: str) -> Job:
        """Ask a job to stop: a queued job is cancelled at once, a running one at its next step."""
        job = self.get(job_id)
        if job.state == "queued":
            job = replace(job, state="cancelled", finished=time.time())
            self._save(job)
        elif job.state == "running":
            (self.job_dir(job_id) / "cancel").touch()
        return self.get(job_id)

    def resume(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again; it continues from its last saved checkpoint."""
        job = self.get(job_id)
        if job.active:
            return job
        (self.job_dir(job_id) / "cancel").unlink(missing_ok=True)
        job = replace(job, state="queued", error=None, finished=None, pid=None, resumes=job.resumes + 1,
                      config={**job.config, "resume": True})
        self._save(job)
        self.poll()
        return self.get(job_id)

    def poll(self) -> list[Job]:
        """Reap finished processes and start the next queued job. Cheap; call it on every UI refresh."""
        with self._lock:
            jobs = [self._finish(j) if j.state == "running" and not self._running(j) else j for j in self.jobs()]
            if not any(j.state == "running" for j in jobs):
                queued = sorted((j for j in jobs if j.state == "queued"), key=lambda j: j.created)
                if queued:
                    started = self._start(queued[0])
                    jobs = [started if j.id == started.id else j for j in jobs]
            return jobs

    def wait(self, job_id: str, timeout: float = 600.0, interval: float = 0.5) -> Job:
        """Block until a job leaves queued/running (for scripts and tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            job = self.get(job_id)
            if not job.active:
                return job
            time.sleep(interval)
        raise TimeoutError(f"job {job_id} still {self.get(job_id).state} after {timeout:.0f}s")

    # ------------------------------------------------------------------ internals
    def _save(self, job: Job) -> None:
        _write_json(self.job_dir(job.id) / "job.json", asdict(job))

    def _running(self, job: Job) -> bool:
        proc = self._procs.get(job.id)
        if proc is not None:
            code = proc.poll()
            if code is not None:
                self._exit_codes[job.id] = code
            return code is None
        return _alive(job.pid)

    def _start(self, job: Job) -> Job:
        folder = self.job_dir(job.id)
        (folder / "cancel").unlink(missing_ok=True)
        log = open(folder / "log.txt", "a")
        package_parent = str(Path(__file__).resolve().parents[2])  # where `cast` is importable from
        path = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
        proc = subprocess.Popen([self.python, "-m", "cast.train.job_worker", str(folder)], stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        self._procs[job.id] = proc
        job = replace(job, state="running", started=time.time(), pid=proc.pid)
        self._save(job)
        return job

    def _finish(self, job: Job) -> Job:
        """Read what the worker left behind (result.json / error.json) and set the final state."""
        self._procs.pop(job.id, None)
        folder = self.job_dir(job.id)
        result, error = folder / "result.json", folder / "error.json"
        if result.is_file():
            data = json.loads(result.read_text())
            state = "cancelled" if data.get("cancelled") else "done"
            job = replace(job, state=state, output=data.get("output"), error=None)
        elif error.is_file():
            job = replace(job, state="failed", error=json.loads(error.read_text()).get("error", "unknown error"))
        else:
            job = replace(job, state="failed", error=self._death_notice(job))
        result.unlink(missing_ok=True)
        error.unlink(missing_ok=True)
        job = replace(job, finished=time.time(), pid=None)
        self._save(job)
        return job

    def _death_notice(self, job: Job) -> str:
        """Why a worker left no result: killed by a signal (SIGKILL is what the out-of-memory killer sends)."""
        code = self._exit_codes.pop(job.id, None)
        why = "the training process ended unexpectedly"
        if code is not None and code < 0:
            why += f" (killed by signal {-code}{': out of memory?' if -code == 9 else ''})"
        elif code is not None:
            why += f" (exit code {code})"
        return why + "; resume continues from the last saved checkpoint"

    def _recover(self) -> None:
        """After a restart: running jobs whose process is gone are failed (and resumable)."""
        for job in self.jobs():
            if job.state == "running" and not _alive(job.pid):
                self._finish(job)
