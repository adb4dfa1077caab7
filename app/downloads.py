"""Downloads of published checkpoints in background threads, with progress and cancellation, shared by sessions.

One `DownloadManager` per app (made in build_app, passed to whoever needs it; no module state). Each
download runs `cast.weights.hub.fetch_pretrained` in its own thread; the UI polls `state(name)`.
Starting a download that is already running joins it.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

from cast.errors import CastError
from cast.weights.hub import DownloadProgress, fetch_pretrained, local_status
from cast.weights.reading import format_bytes
from cast.weights.zoo import ZOO

log = logging.getLogger(__name__)
ACTIVE = "downloading"
LOCAL_STATUS_TTL_S = 5.0


@dataclass(frozen=True)
class DownloadState:
    """Where one download stands: downloading / ready / failed / cancelled, bytes so far and in all."""

    name: str
    status: str = ACTIVE
    downloaded: int = 0
    total: int | None = None
    error: str = ""
    started: float = 0.0

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    @property
    def fraction(self) -> float | None:
        return None if not self.total else min(1.0, self.downloaded / self.total)

    def describe(self) -> str:
        """One line for the UI: '<name>: 45 % of 2,076 MB', 'ready', or the error."""
        if self.status == ACTIVE:
            size = format_bytes(self.total) if self.total else "size unknown"
            done = f"{self.fraction:.0%} of {size}" if self.fraction is not None else format_bytes(self.downloaded)
            return f"downloading {self.name}: {done}"
        if self.status == "ready":
            return f"{self.name} is ready"
        if self.status == "cancelled":
            return f"download of {self.name} cancelled (it resumes where it stopped next time)"
        return f"download of {self.name} failed: {self.error}"


class DownloadManager:
    """Runs and tracks background downloads; thread-safe."""

    def __init__(self, fetch: Callable[..., object] = fetch_pretrained) -> None:
        self._fetch = fetch
        self._states: dict[str, DownloadState] = {}
        self._cancel: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._local: dict[str, tuple[bool, float]] = {}
        self._waiters: dict[str, set[str | None]] = {}  # who waits for each download (None: the app itself)
        self._lock = threading.Lock()

    def is_local(self, name: str) -> bool:
        """Converted or in the Hugging Face cache already (no network; answers are reused for a few seconds)."""
        now = time.monotonic()
        with self._lock:
            cached = self._local.get(name)
        if cached is not None and now - cached[1] < LOCAL_STATUS_TTL_S:
            return cached[0]
        try:
            local = local_status(name) is not None
        except CastError:
            local = False
        with self._lock:
            self._local[name] = (local, now)
        return local

    def start(self, name: str, waiter: str | None = None) -> DownloadState:
        """Start fetching a zoo entry (or join the running download) for `waiter`; returns its state."""
        if name not in ZOO:
            raise CastError(f"unknown published model {name!r}")
        old = self._threads.get(name)
        if old is not None and self._cancel.get(name) is not None and self._cancel[name].is_set():
            old.join(30)  # a download being cancelled: let it stop, then start afresh
        with self._lock:
            self._waiters.setdefault(name, set()).add(waiter)
            state = self._states.get(name)
            if state is not None and state.active:
                return state
            self._states[name] = DownloadState(name, total=ZOO[name].expected_size or None, started=time.time())
            self._cancel[name] = threading.Event()
            thread = threading.Thread(target=self._run, args=(name,), name=f"download-{name}", daemon=True)
            self._threads[name] = thread
        thread.start()
        return self.state(name)

    def cancel(self, name: str, waiter: str | None = None) -> bool:
        """`waiter` stops waiting; the download stops at its next chunk once nobody waits for it (the app's own
        background download of the default model, waited for by None, only stops for cancel(name)).
        Returns whether the download is stopping."""
        with self._lock:
            waiters = self._waiters.setdefault(name, set())
            if waiter is None:
                waiters.clear()
            else:
                waiters.discard(waiter)
            event = self._cancel.get(name)
            stop = not waiters and event is not None
        if stop:
            event.set()
        return stop

    def state(self, name: str) -> DownloadState | None:
        with self._lock:
            return self._states.get(name)

    def active(self) -> list[DownloadState]:
        with self._lock:
            return [s for s in self._states.values() if s.active]

    def wait(self, name: str, timeout: float | None = None) -> DownloadState | None:
        """Block until the download ends (tests, the CLI); returns its final state."""
        thread = self._threads.get(name)
        if thread is not None:
            thread.join(timeout)
        return self.state(name)

    def _update(self, name: str, **changes: object) -> None:
        with self._lock:
            self._states[name] = replace(self._states[name], **changes)

    def _run(self, name: str) -> None:
        def progress(p: DownloadProgress) -> None:
            self._update(name, downloaded=p.downloaded, total=p.total or self._states[name].total)

        try:
            self._fetch(name, progress=progress, should_stop=self._cancel[name].is_set)
        except CastError as err:
            cancelled = self._cancel[name].is_set()
            self._update(name, status="cancelled" if cancelled else "failed", error=str(err))
            log.warning("download of %s %s: %s", name, "cancelled" if cancelled else "failed", err)
            return
        except Exception as err:  # a bug or an unexpected failure: reported, never kills the app
            self._update(name, status="failed", error=f"{type(err).__name__}: {err}")
            log.warning("download of %s failed: %s: %s", name, type(err).__name__, err)
            return
        with self._lock:
            self._local.pop(name, None)
        self._update(name, status="ready")
        log.info("downloaded %s: new sessions start on it", name)
