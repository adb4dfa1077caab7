"""The process that runs one queued job: `python -m cast.train.job_worker JOB_DIR` (started by the app's job queue,
app/jobs/queue.py; it trains one job and knows nothing of who asked for it)."""
from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import torch


def config_for(kind: str, data: dict[str, Any]) -> Any:
    """The config dataclass of a job kind, from its JSON form (the same configs as Python and CLI)."""
    from cast.train.config import LinearProbeConfig, MocoConfig, SupervisedConfig

    classes = {"moco": MocoConfig, "supervised": SupervisedConfig, "probe": LinearProbeConfig}
    return classes[kind].from_dict(data)


def _lower_priority() -> None:
    """Run below the app's CPU priority (CAST_JOB_NICE), so a click never waits for a training step.

    The worker runs in its own session, and Linux's autogroup scheduling shares the CPU between sessions
    before nice values count, so the session's own nice value is set too (/proc/self/autogroup)."""
    try:
        nice = int(os.environ.get("CAST_JOB_NICE", "10"))
        os.nice(nice)
    except (OSError, ValueError, AttributeError):  # not permitted / not POSIX: run at normal priority
        return
    try:
        Path("/proc/self/autogroup").write_text(str(nice))
    except OSError:  # no autogroup scheduling here: the nice value above is enough
        pass


def run(folder: Path) -> int:
    """Train, streaming progress to progress.jsonl; leave result.json or error.json behind."""
    from cast.train.engine import train

    job = json.loads((folder / "job.json").read_text())
    progress = open(folder / "progress.jsonl", "a")

    def on_progress(info: dict[str, Any]) -> None:
        progress.write(json.dumps(info) + "\n")
        progress.flush()
        print(f"step {info.get('step')}/{info.get('total_steps')}  loss {info.get('loss', float('nan')):.4f}  "
              f"{info.get('images_per_s', 0):.1f} img/s  ETA {info.get('eta_s', 0):.0f} s", flush=True)

    try:
        _lower_priority()
        torch.set_num_threads(max(1, torch.get_num_threads()))
        names = {k: Path(str(job["config"].get(k) or "")).name for k in ("data", "output")}  # names, never server paths
        print(f"{job['kind']} job {job['id']}: {names['data']} -> {names['output']}", flush=True)
        result = train(config_for(job["kind"], job["config"]), progress_callback=on_progress,
                       should_stop=lambda: (folder / "cancel").exists())
        cancelled = bool(getattr(result, "cancelled", False))
        print(f"{'cancelled' if cancelled else 'finished'} after {result.steps} steps", flush=True)
        output = str(result.output_path) if result.output_path is not None else None
        (folder / "result.json").write_text(json.dumps({"output": output, "cancelled": cancelled,
                                                        "steps": result.steps, "final_loss": result.final_loss}))
        return 0
    except BaseException as err:  # reported to the queue as a failed job, with its error
        (folder / "error.json").write_text(json.dumps({"error": f"{type(err).__name__}: {err}",
                                                       "traceback": traceback.format_exc()}))
        traceback.print_exc()
        return 1
    finally:
        progress.close()


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
