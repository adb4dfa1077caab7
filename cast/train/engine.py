"""The one training loop of every job: devices, DDP, resume states, logs, cancellation, the result file.

`train(config)` runs a job to the end (or until `should_stop()` says so) and writes the result in our
safetensors format with provenance. Next to `output` (say `run/model.safetensors`) it keeps
- `run/model.train-state.pt`: model, optimizer, step and RNG states, written with `torch.save` but
  holding only tensors and built-in containers, so it reloads with `torch.load(weights_only=True)`;
  the learning-rate and momentum schedules are pure functions of the step, so the step is their state;
- `run/model.log.jsonl`: one JSON object per logged step (appended to when resuming).

Under `torchrun` (RANK / WORLD_SIZE / MASTER_ADDR set) it joins the process group (nccl on CUDA, gloo on
CPU), shards the data with DistributedSampler and wraps the optimised module in DistributedDataParallel;
`batch_size` is the global batch. Only rank 0 writes files.
"""
from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from cast.datasets import DatasetReport
from cast.errors import DatasetError, TrainingError
from cast.model import set_linear_kernel
from cast.weights.format import CheckpointMetadata, Provenance

from .common import STATE_FORMAT, run_files
from .config import DEFAULT_EPOCHS, TrainConfig
from .moco import MocoJob
from .supervised import LinearProbeJob, SupervisedJob
from .views import collate_samples, worker_init

STATE_VERSION = 1
JOBS = {"moco": MocoJob, "supervised": SupervisedJob, "probe": LinearProbeJob}
# A resume must see the same data stream and model; these may change (others are allowed and recorded).
_RESUME_MUST_MATCH = ("data", "checkpoint", "variant", "batch_size", "image_size", "superpixels", "seed")
_RESUME_FREE = {"kind", "output", "steps", "epochs", "resume", "num_workers", "log_every", "save_every", "device"}


@dataclass
class TrainResult:
    """What a run did. `losses` / `log` cover this run only (a resumed run starts at `start_step`)."""

    output_path: Path | None  # None when cancelled (the resume state is kept)
    steps: int  # total steps done, including those before a resume
    final_loss: float | None
    losses: list[float]
    report: DatasetReport
    cancelled: bool = False
    start_step: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    deviations: list[str] = field(default_factory=list)
    state_path: Path | None = None
    log_path: Path | None = None


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def select_device(name: str) -> torch.device:
    """"auto": the process's CUDA device (LOCAL_RANK under torchrun) when available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group torchrun describes in the environment; single process otherwise."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ or "MASTER_ADDR" not in os.environ:
        return DistContext()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), owns_group=True)


def build_job(config: TrainConfig, world_size: int = 1, device: str = "cpu") -> Any:
    """The job object of a config, with its model initialised from `config.seed` (same on every rank)."""
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    return JOBS[config.kind](config, world_size=world_size, device=device)


class _SkipSampler(Sampler):
    """Yields what `inner` yields, minus the first `skip` indices (to resume inside an epoch)."""

    def __init__(self, inner: Sampler) -> None:
        self.inner, self.skip = inner, 0

    def __iter__(self):
        return itertools.islice(iter(self.inner), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.skip)


def train(
    config: TrainConfig,
    progress_callback: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Run one job (moco / supervised / probe, picked by the config type); see the module docstring."""
    device = select_device(config.device)
    ctx = init_distributed(device)
    try:
        return _Run(config, device, ctx).run(progress_callback, should_stop)
    finally:
        if ctx.owns_group:
            dist.destroy_process_group()


class _Run:
    """One call of `train`: the state of the loop, split into readable steps."""

    def __init__(self, config: TrainConfig, device: torch.device, ctx: DistContext) -> None:
        if config.batch_size % ctx.world_size:
            raise TrainingError(f"batch size {config.batch_size} does not split over {ctx.world_size} processes")
        self.config, self.device, self.ctx = config, device, ctx
        self.job = build_job(config, ctx.world_size, str(device))
        self.job.model.to(device)
        set_linear_kernel(self.job.module, "default")  # training runs PyTorch's own linear (cast/model/linear.py)
        if ctx.world_size > 1 and device.type == "cuda" and config.kind != "probe":
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.job.module)  # as official MoCo; in place
        if ctx.world_size > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.model = DistributedDataParallel(self.job.module, device_ids=ids)
        else:
            self.model = self.job.module
        self.local_batch = config.batch_size // ctx.world_size
        self.sampler = DistributedSampler(self.job.dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                          shuffle=True, seed=config.seed, drop_last=True)  # fmt: skip
        self.steps_per_epoch = len(self.sampler) // self.local_batch
        if self.steps_per_epoch == 0:
            raise DatasetError(
                f"{len(self.job.dataset)} usable images are fewer than one batch of {config.batch_size}; "
                "add images or lower the batch size"
            )
        self.total = config.steps or (config.epochs or DEFAULT_EPOCHS) * self.steps_per_epoch
        self.optimizer = self.job.optimizer()
        self.state_path, self.log_path = run_files(config.output)
        self.step = 0
        self.resumed = False
        self.rng_after_step: dict[str, Any] | None = None  # what a resume restores
        if config.resume and self.state_path.exists():
            self._load_state()

    # ----------------------------------------------------------------------------- the loop
    def run(self, progress_callback, should_stop) -> TrainResult:
        config, ctx = self.config, self.ctx
        start_step, losses, records, cancelled = self.step, [], [], False
        log = self._open_log()
        started = time.perf_counter()
        skipper = _SkipSampler(self.sampler)
        loader = DataLoader(self.job.dataset, batch_size=self.local_batch, sampler=skipper, drop_last=True,
                            num_workers=config.num_workers, collate_fn=collate_samples, worker_init_fn=worker_init,
                            pin_memory=self.device.type == "cuda",
                            # its own generator: iterators then draw nothing from the global RNG, so a resumed
                            # run sees the same dropout / drop-path draws as an uninterrupted one
                            generator=torch.Generator().manual_seed(config.seed))  # fmt: skip
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else contextlib.nullcontext())
        try:
            while self.step < self.total and not cancelled:
                epoch = self.step // self.steps_per_epoch
                self.sampler.set_epoch(epoch)
                if hasattr(self.job.dataset, "set_epoch"):
                    self.job.dataset.set_epoch(epoch)
                skipper.skip = (self.step % self.steps_per_epoch) * self.local_batch
                for batch in loader:
                    if self._stop_requested(should_stop):
                        cancelled = True
                        break
                    loss, lr = self._one_step(batch, autocast)
                    losses.append(loss)
                    done = self.step - start_step
                    elapsed = time.perf_counter() - started
                    record = {
                        "step": self.step, "total_steps": self.total, "epoch": self.step / self.steps_per_epoch,
                        "loss": loss, "lr": lr, "images_per_s": done * config.batch_size / max(elapsed, 1e-9),
                        "eta_s": (self.total - self.step) * elapsed / max(done, 1),
                    }  # fmt: skip
                    records.append(record)
                    if ctx.is_main:
                        if self.step % config.log_every == 0 or self.step == self.total:
                            log.write(json.dumps(record) + "\n")
                            log.flush()
                        if progress_callback is not None:
                            progress_callback(dict(record))
                        if config.save_every and self.step % config.save_every == 0:
                            self._save_state(losses)
                    if self.step >= self.total:
                        break
        finally:
            log.close()
        return self._finish(start_step, losses, records, cancelled)

    def _one_step(self, batch: dict[str, Any], autocast) -> tuple[float, float]:
        for path, reason in batch.pop("load_failures", []):
            self.job.report.record_failure(path, reason)
        batch = {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        lr = self.job.lr_at(self.step, self.total, self.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.job.set_train_mode()
        with autocast:
            loss = self.job.loss(self.model, batch, self.step, self.total)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        self.rng_after_step = _rng_state()
        value = loss.detach().float()
        if self.ctx.world_size > 1:
            dist.all_reduce(value)
            value /= self.ctx.world_size
        value = float(value)
        if not math.isfinite(value):
            raise TrainingError(f"the loss became {value} at step {self.step}; lower the learning rate")
        return value, lr

    def _stop_requested(self, should_stop) -> bool:
        flag = bool(should_stop()) if should_stop is not None else False
        if self.ctx.world_size > 1:  # every rank stops at the same step
            t = torch.tensor([int(flag)], device=self.device if self.device.type == "cuda" else "cpu")
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    # ------------------------------------------------------------------------ end of a run
    def _finish(self, start_step: int, losses: list[float], records: list[dict], cancelled: bool) -> TrainResult:
        report = self.job.report
        if self.ctx.world_size > 1:  # failures seen by the other ranks' loaders
            gathered: list[Any] = [None] * self.ctx.world_size
            dist.all_gather_object(gathered, report.failed_at_load)
            for failures in gathered:
                for path, reason in failures:
                    report.record_failure(path, reason)
        deviations = self.deviations()
        output = None if cancelled else Path(self.config.output)
        if self.ctx.is_main:
            self._save_state(losses)
            if output is not None:
                self.job.save(str(output), self._metadata(deviations, start_step))
        if self.ctx.world_size > 1:
            dist.barrier()
        return TrainResult(
            output_path=output, steps=self.step, final_loss=losses[-1] if losses else None, losses=losses,
            report=report, cancelled=cancelled, start_step=start_step, log=records, deviations=deviations,
            state_path=self.state_path, log_path=self.log_path,
        )  # fmt: skip

    def deviations(self) -> list[str]:
        config, report = self.config, self.job.report
        data = f"data: {report.num_used} images from {config.data}"
        data += f" ({len(report.class_names)} classes)" if report.class_names else ""
        return config.deviations(self.ctx.world_size, self.device.type) + [f"{data} instead of ImageNet-1k"] + self.job.notes

    def _metadata(self, deviations: list[str], start_step: int) -> CheckpointMetadata:
        config, report = self.config, self.job.report
        resumed = f" Resumed at step {start_step}." if self.resumed else ""
        skipped = len(report.skipped) + len(report.failed_at_load)
        notes = (
            f"cast.train {config.kind} on {self.ctx.world_size} process(es), {self.device.type}; "
            f"{skipped} data files skipped.{resumed} Config: {json.dumps(config.to_dict(), sort_keys=True)}"
        )
        provenance = Provenance(
            data=f"{config.data} ({report.num_used} images)", steps=self.step, epoch=self.step // self.steps_per_epoch,
            parent_checkpoint=self.job.base.description, date=datetime.date.today().isoformat(),
            recipe=config.recipe, deviations=deviations, notes=notes,
        )  # fmt: skip
        return CheckpointMetadata(trained=True, superpixels=config.superpixels, provenance=provenance,
                                  class_names=report.class_names)  # fmt: skip

    # --------------------------------------------------------------------------------- files
    def _open_log(self):
        if not self.ctx.is_main:
            return open(os.devnull, "w")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("a" if self.resumed else "w")
        event = {"event": "resume" if self.resumed else "start", "from_step": self.step, "total_steps": self.total,
                 "world_size": self.ctx.world_size, "device": str(self.device), "config": self.config.to_dict()}  # fmt: skip
        log.write(json.dumps(event) + "\n")
        return log

    def _save_state(self, losses: list[float]) -> None:
        rng = self.rng_after_step if self.rng_after_step is not None else _rng_state()
        state = {
            "format": STATE_FORMAT, "version": STATE_VERSION, "kind": self.config.kind, "config": self.config.to_dict(),
            "step": self.step, "epoch": self.step // self.steps_per_epoch, "total_steps": self.total,
            "module": self.job.module.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": {"step": self.step, "total_steps": self.total}, "rng": rng, "recent_losses": losses[-1000:],
        }  # fmt: skip
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.partial")
        torch.save(state, partial)
        os.replace(partial, self.state_path)

    def _load_state(self) -> None:
        try:
            state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise TrainingError(f"cannot read the resume state {self.state_path} ({err}); delete it to start over") from err
        if state.get("format") != STATE_FORMAT or state.get("kind") != self.config.kind:
            raise TrainingError(f"{self.state_path} is not a resume state of a {self.config.kind} run")
        saved, now = state.get("config", {}), self.config.to_dict()
        clashes = [k for k in _RESUME_MUST_MATCH if saved.get(k) != now[k]]
        if clashes:
            raise TrainingError(
                f"the resume state {self.state_path} was saved with other {', '.join(clashes)}; use the same "
                "settings, or delete it to start over"
            )
        changed = [k for k in now if k not in _RESUME_FREE and k not in _RESUME_MUST_MATCH and saved.get(k) != now[k]]
        if changed:
            self.job.notes.append(f"resumed at step {state['step']} with changed settings: {', '.join(changed)}")
        try:
            self.job.module.load_state_dict(state["module"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise TrainingError(
                f"the resume state {self.state_path} does not fit this job ({str(err).splitlines()[0]}); "
                "use the same model and settings, or delete it to start over"
            ) from err
        rng = state.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "python" in rng:
            random.setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.step = int(state["step"])
        self.resumed = True


def _rng_state() -> dict[str, Any]:
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng
