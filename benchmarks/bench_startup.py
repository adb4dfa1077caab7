"""App start-up, offline: bundled model only vs an official checkpoint in the Hugging Face cache (first
start converts it once) vs its converted copy (every later start). Time from `python app.py` to the
server answering /config, the default model loaded and warmed up.

Run: python benchmarks/bench_startup.py   (builds a full-size official cast_small MoCo file with random
weights, ~60 MB, in a temporary folder; 2 CPU threads)
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the official-layout builders the tests use
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import table  # noqa: E402
from app_server import free_port  # noqa: E402
from hub_server import COMMIT  # noqa: E402
from official_layouts import moco_checkpoint  # noqa: E402
from reference import parity_dir, read_manifest  # noqa: E402

from cast.weights.zoo import ZOO  # noqa: E402

NAME = "cast_small_moco_in1k"


def start_seconds(env: dict[str, str]) -> tuple[float, str]:
    port = free_port()
    env = {**os.environ, **env, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "2"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                config = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2).read())
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("the app exited")
                time.sleep(0.1)
        elapsed = time.perf_counter() - start
        status = next(c["props"]["value"] for c in config["components"] if c.get("props", {}).get("elem_id") == "status")
        return elapsed, status.removeprefix("**Model:** ").split(" (")[0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        empty = {"HF_HUB_CACHE": str(tmp / "empty"), "CAST_EXPLORER_CACHE": str(tmp / "ours-empty")}
        cached = {"HF_HUB_CACHE": str(tmp / "hf"), "CAST_EXPLORER_CACHE": str(tmp / "ours")}
        target = tmp / "hf" / "models--twke--CAST" / "snapshots" / COMMIT / ZOO[NAME].filename
        target.parent.mkdir(parents=True)
        buffer = io.BytesIO()
        torch.save(moco_checkpoint(read_manifest(parity_dir(), "moco_cast_small"), dense=True, half=True), buffer)
        target.write_bytes(buffer.getvalue())
        (tmp / "hf" / "models--twke--CAST" / "refs").mkdir()
        (tmp / "hf" / "models--twke--CAST" / "refs" / "main").write_text(COMMIT)
        rows = []
        for label, env in (("no official file (bundled model)", empty),
                           (f"{NAME} in the HF cache, first start (converts once)", cached),
                           (f"{NAME} converted, later starts", cached)):
            seconds, model = start_seconds(env)
            rows.append([label, f"{seconds:.1f}", model])
    print(table(["offline start-up", "seconds to serving", "default model"], rows))


if __name__ == "__main__":
    main()
