"""The app's fine-tuning queue: persistent on disk, each job in its own `cast.train.job_worker` process.

Layout, one folder per job under the jobs root:
    job.json        id, kind, config, state, times, error, output   (rewritten atomically)
    progress.jsonl  one line per logged step: step, total_steps, epoch, loss, images_per_s, eta_s, lr
    log.txt         the worker's stdout/stderr
    cancel          present when the user asked to cancel (the worker stops at the next step)
States: queued -> running -> done | failed | cancelled. A job found "running" after an app restart whose
process is gone is marked failed ("interrupted") and can be resumed from its last saved checkpoint.

`JobLimits` makes the queue safe to share with strangers (a hosted app): every job has an owner and only
that owner may see, cancel or resume it; jobs per owner, per network address, per address as a share of
the waiting places and in total, steps, batch size and model size are capped. Finished jobs are kept until
they expire, whatever others do: beyond its quota a visitor's (owner's or address's) own oldest results
go, and when the results' disk budget is full new jobs are refused rather than others' models deleted. A
job that succeeded keeps its model only (no resume state, no extracted data). Workers run at a lower CPU
priority than the app (`nice`).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cast
from cast.errors import JobError
from cast.train.common import run_files

STATES = ("queued", "running", "done", "failed", "cancelled")
KINDS = ("moco", "supervised", "probe")


@dataclass(frozen=True)
class JobLimits:
    """What one queue allows. The defaults are a private machine's: no caps, anyone sees every job."""

    private: bool = False  # jobs are visible to, and changeable by, their owner only
    max_running: int = 1  # jobs training at the same time
    max_queued: int | None = None  # waiting jobs, all owners together
    max_active_per_owner: int | None = None  # queued + running jobs of one owner
    max_active_per_address: int | None = None  # queued + running jobs of one network address (any owners)
    max_queue_share: float | None = None  # of the waiting places (max_queued), what one address may hold
    max_steps: int | None = None
    max_batch_size: int | None = None
    max_model_params: int | None = None
    result_ttl_s: float | None = None  # finished jobs (and their models) are deleted after this long
    max_results_bytes: int | None = None  # all jobs' folders; when full, new jobs are refused (nothing is evicted)
    max_results_per_owner: int | None = None  # finished jobs of one owner; beyond it, that owner's oldest go
    max_results_per_address: int | None = None  # the same per network address
    nice: int = 10  # CPU priority of the workers (higher = lower priority), so the explorer stays responsive


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
    owner: str | None = None  # the session that started it (hosted apps show and change a job for its owner only)
    address: str | None = None  # the network address it came from (caps and quotas per address)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


def _folder_bytes(folder: Path) -> int:
    """Bytes under a folder; files that vanish meanwhile (a worker extracting or renaming) count as nothing."""
    total = 0
    for parent, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(parent, name)).st_size
            except OSError:
                continue
    return total


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

    def __init__(self, root: Path, python: str = sys.executable, limits: JobLimits | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.limits = limits or JobLimits()
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen] = {}
        self._exit_codes: dict[str, int] = {}
        self._recover()

    # ------------------------------------------------------------------ reading
    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """A job by id; with private limits, only its owner gets it (anyone else: JobError, nothing told)."""
        path = self.job_dir(str(job_id)) / "job.json"
        if not job_id or "/" in str(job_id) or not path.is_file():
            raise JobError(f"there is no job {job_id!r} of this session" if self.limits.private
                           else f"there is no job {job_id!r}")
        job = Job(**json.loads(path.read_text()))
        if self.limits.private and job.owner != owner:  # the same answer whether or not the job exists
            raise JobError(f"there is no job {job_id!r} of this session: only the session that started a job can "
                           "see, cancel or resume it")
        return job

    def jobs(self, owner: str | None = None) -> list[Job]:
        """All jobs, newest first; with private limits, the owner's only."""
        found = [self._read(p.name) for p in self.root.iterdir() if (p / "job.json").is_file()]
        if self.limits.private:
            found = [j for j in found if j.owner == owner]
        return sorted(found, key=lambda j: j.created, reverse=True)

    def queue_position(self, job_id: str) -> int | None:
        """1 for the next job to start, 2 after it, ...; None for a job that is not waiting."""
        queued = sorted((j for j in self._all() if j.state == "queued"), key=lambda j: j.created)
        ids = [j.id for j in queued]
        return ids.index(job_id) + 1 if job_id in ids else None

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
    def new_job_id(self) -> str:
        """A fresh id (also the name of the job's folder)."""
        return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]

    def submit(self, kind: str, config: dict[str, Any], owner: str | None = None, *, address: str | None = None,
               job_id: str | None = None, model_params: int | None = None) -> Job:
        """Queue a job (it starts when a running slot is free); JobError when the limits refuse it."""
        if kind not in KINDS:
            raise JobError(f"unknown job kind {kind!r}; choose one of {', '.join(KINDS)}")
        with self._lock:  # the caps are checked and the job saved as one step
            self.check_request(config, owner, model_params, address=address)
            job = Job(id=job_id or self.new_job_id(), kind=kind, config=dict(config), owner=owner, address=address)
            self.job_dir(job.id).mkdir(parents=True, exist_ok=True)
            self._save(job)
        self.poll()
        return self._read(job.id)

    def cancel(self, job_id: str, owner: str | None = None) -> Job:
        """Ask a job to stop: a queued job is cancelled at once, a running one at its next step."""
        with self._lock:  # never between poll() starting a queued job and saving it as running
            job = self.get(job_id, owner)
            if job.state == "queued":
                job = replace(job, state="cancelled", finished=time.time())
                self._save(job)
            elif job.state == "running":
                (self.job_dir(job_id) / "cancel").touch()
        return self._read(job_id)

    def resume(self, job_id: str, owner: str | None = None) -> Job:
        """Queue a failed or cancelled job again; it continues from its last saved checkpoint."""
        with self._lock:
            job = self.get(job_id, owner)
            if job.active:
                return job
            if job.state == "done":
                raise JobError(f"job {job_id} is done: there is nothing to resume")
            self._check_active(owner, job.address)
            (self.job_dir(job_id) / "cancel").unlink(missing_ok=True)
            job = replace(job, state="queued", error=None, finished=None, pid=None, resumes=job.resumes + 1,
                          config={**job.config, "resume": True})
            self._save(job)
        self.poll()
        return self._read(job_id)

    def poll(self, owner: str | None = None) -> list[Job]:
        """Reap finished processes, start queued jobs while slots are free, apply the retention rules.
        Cheap; call it on every UI refresh. Returns the jobs `owner` may see, newest first."""
        with self._lock:
            jobs = [self._finish(j) if j.state == "running" and not self._running(j) else j for j in self._all()]
            running = sum(j.state == "running" for j in jobs)
            for job in sorted((j for j in jobs if j.state == "queued"), key=lambda j: j.created):
                if running >= self.limits.max_running:
                    break
                started = self._start(job)
                jobs = [started if j.id == started.id else j for j in jobs]
                running += 1
            self._apply_retention(jobs)
        return self.jobs(owner)

    def wait(self, job_id: str, timeout: float = 600.0, interval: float = 0.5) -> Job:
        """Block until a job leaves queued/running (for scripts and tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            job = self._read(job_id)
            if not job.active:
                return job
            time.sleep(interval)
        raise TimeoutError(f"job {job_id} still {self._read(job_id).state} after {timeout:.0f}s")

    # ------------------------------------------------------------------ internals
    def _read(self, job_id: str) -> Job:
        return Job(**json.loads((self.job_dir(job_id) / "job.json").read_text()))

    def _all(self) -> list[Job]:
        return [self._read(p.name) for p in self.root.iterdir() if (p / "job.json").is_file()]

    def _check_active(self, owner: str | None, address: str | None = None) -> None:
        limits, everything = self.limits, self._all()
        jobs = [j for j in everything if j.active]
        mine = [j for j in jobs if j.owner == owner]
        if limits.max_active_per_owner is not None and len(mine) >= limits.max_active_per_owner:
            raise JobError(f"this session already has {len(mine)} job(s) queued or running (the limit is "
                           f"{limits.max_active_per_owner}): wait for one to finish, or cancel it")
        from_address = [j for j in jobs if address is not None and j.address == address]
        if limits.max_active_per_address is not None and len(from_address) >= limits.max_active_per_address:
            raise JobError(f"your network address already has {len(from_address)} job(s) queued or running (the "
                           f"limit is {limits.max_active_per_address}, whatever the session): wait for one to finish")
        queued = [j for j in jobs if j.state == "queued"]
        if limits.max_queued is not None and len(queued) >= limits.max_queued:
            raise JobError(f"the queue is full ({len(queued)} jobs waiting); try again later")
        if limits.max_queue_share is not None and limits.max_queued is not None and address is not None:
            share = max(1, int(limits.max_queue_share * limits.max_queued))
            waiting = sum(j.address == address for j in queued)
            if waiting >= share:
                raise JobError(f"your network address already holds {waiting} of the {limits.max_queued} waiting "
                               "places, its fair share: wait for one of its jobs to start")
        if limits.max_results_bytes is not None:
            used = sum(_folder_bytes(self.job_dir(j.id)) for j in everything)
            if used >= limits.max_results_bytes:
                raise JobError(f"this app's disk for fine-tuning is full ({used / 1e9:.2f} of "
                               f"{limits.max_results_bytes / 1e9:.2f} GB): results expire after a while; try again later")

    def check_request(self, config: dict[str, Any], owner: str | None, model_params: int | None = None, *,
                      address: str | None = None) -> None:
        """JobError if the limits refuse this request (steps, batch, model size, jobs per owner, per address,
        queued, the results' disk)."""
        limits = self.limits
        self._check_active(owner, address)
        steps, batch = config.get("steps"), config.get("batch_size")
        if limits.max_steps is not None and (steps is None or int(steps) > limits.max_steps):
            raise JobError(f"{steps} steps asked; this app allows at most {limits.max_steps} steps per job")
        if limits.max_batch_size is not None and batch is not None and int(batch) > limits.max_batch_size:
            raise JobError(f"batch size {batch} asked; this app allows at most {limits.max_batch_size}")
        if limits.max_model_params is not None and model_params is not None and model_params > limits.max_model_params:
            raise JobError(f"the model has {model_params / 1e6:.1f} M parameters; this app trains models of at most "
                           f"{limits.max_model_params / 1e6:.0f} M")

    def _apply_retention(self, jobs: list[Job]) -> None:
        """Delete finished jobs that expired; beyond a visitor's quota, that visitor's own oldest (models too).
        Nobody's results are deleted to make room for somebody else's."""
        limits = self.limits
        finished = sorted((j for j in jobs if not j.active), key=lambda j: j.finished or j.created, reverse=True)
        now = time.time()
        per_owner: dict[str | None, int] = {}
        per_address: dict[str | None, int] = {}
        for job in finished:  # newest first: a visitor keeps its most recent results
            expired = limits.result_ttl_s is not None and now - (job.finished or job.created) > limits.result_ttl_s
            owner_n = per_owner[job.owner] = per_owner.get(job.owner, 0) + 1
            address_n = per_address[job.address] = per_address.get(job.address, 0) + (job.address is not None)
            over = ((limits.max_results_per_owner is not None and job.owner is not None
                     and owner_n > limits.max_results_per_owner)
                    or (limits.max_results_per_address is not None and address_n > limits.max_results_per_address))
            if expired or over:
                shutil.rmtree(self.job_dir(job.id), ignore_errors=True)

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
        package_parent = str(Path(cast.__file__).resolve().parents[1])  # where `cast` is importable from
        path = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **self.worker_env()}
        proc = subprocess.Popen([self.python, "-m", "cast.train.job_worker", str(folder)], stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        self._procs[job.id] = proc
        job = replace(job, state="running", started=time.time(), pid=proc.pid)
        self._save(job)
        return job

    def worker_env(self) -> dict[str, str]:
        """Environment of the worker processes (their CPU priority)."""
        return {"CAST_JOB_NICE": str(self.limits.nice)}

    def _finish(self, job: Job) -> Job:
        """Read what the worker left behind (result.json / error.json) and set the final state."""
        self._procs.pop(job.id, None)
        folder = self.job_dir(job.id)
        result, error = folder / "result.json", folder / "error.json"
        if result.is_file():
            data = json.loads(result.read_text())
            state = "cancelled" if data.get("cancelled") else "done"
            job = replace(job, state=state, output=data.get("output"), error=None)
            if state == "done":
                self._drop_resume_files(job)
        elif error.is_file():
            job = replace(job, state="failed", error=json.loads(error.read_text()).get("error", "unknown error"))
        else:
            job = replace(job, state="failed", error=self._death_notice(job))
        result.unlink(missing_ok=True)
        error.unlink(missing_ok=True)
        job = replace(job, finished=time.time(), pid=None)
        self._save(job)
        return job

    def _drop_resume_files(self, job: Job) -> None:
        """A job that succeeded cannot be resumed: its resume state and extracted data go (the model stays)."""
        if job.output:
            run_files(job.output)[0].unlink(missing_ok=True)
        shutil.rmtree(self.job_dir(job.id) / "data", ignore_errors=True)

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
        for job in self._all():
            if job.state == "running" and not _alive(job.pid):
                self._finish(job)
