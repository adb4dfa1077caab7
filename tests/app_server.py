"""Start the real app in a subprocess on a free loopback port (offline), for browser and client tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(log_path: Path, extra_env: dict[str, str] | None = None, timeout: float = 120.0,
                args: tuple[str, ...] = ()) -> Iterator[str]:
    """Yield the base URL of `python app.py` listening on 127.0.0.1; stop it afterwards (see running_app_process)."""
    with running_app_process(log_path, extra_env, timeout, args) as (url, _):
        yield url


@contextmanager
def running_app_process(log_path: Path, extra_env: dict[str, str] | None = None, timeout: float = 120.0,
                        args: tuple[str, ...] = ()) -> Iterator[tuple[str, subprocess.Popen]]:
    """Yield (base URL, process) of `python app.py` listening on 127.0.0.1; stop it afterwards.

    Offline, with its own empty Hugging Face cache and converted-copy folder next to the log (so what the
    developer has downloaded does not change the default model), unless `extra_env` says otherwise."""
    port = free_port()
    caches = log_path.parent / f"{log_path.stem}-caches"
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(caches / "hf"),
        "CAST_EXPLORER_CACHE": str(caches / "cast_explorer"),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "app.py", *args], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app exited early; log:\n{log_path.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url + "/config", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"app did not start in {timeout}s; log:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
