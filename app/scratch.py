"""Short-lived files of requests (extracted ZIPs, exports), each in its own folder, within a disk budget.

Nothing a visitor uploads or asks for stays on disk for ever, nor fills it: every folder made here is
deleted when it is older than the time to live, and before a new one is made the oldest folders go until
the new one's reservation fits the budget in bytes and in files. The same rules keep Gradio's own folder
of uploads and outputs in check (`make_room` before each upload; see app/hosting.py).
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cast.errors import CastError

RESERVATION = ".reserved"  # in a folder: the bytes and files promised to it when it was made


class ScratchFullError(CastError):
    """A request needs more scratch space than the app's whole budget."""


@dataclass(frozen=True)
class Usage:
    """What one folder (or file) of the root takes: the larger of what it holds and what was reserved for it."""

    path: Path
    bytes: int
    files: int
    mtime: float


@dataclass(frozen=True)
class Scratch:
    """A root folder for per-request folders: how long they live, and what they may take together."""

    root: Path
    ttl_s: float = 2 * 3600
    max_bytes: int | None = None
    max_files: int | None = None
    keep_before: float = 0.0  # entries older than this (e.g. made at the app's start-up: examples) are never removed

    def new(self, prefix: str, *, reserve_bytes: int = 0, reserve_files: int = 1) -> Path:
        """A fresh folder with room for `reserve_bytes` in `reserve_files` files (expired and, beyond the
        budget, the oldest folders are removed first); ScratchFullError if it could never fit."""
        with self._locked():
            self._make_room(reserve_bytes, reserve_files)
            folder = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.root))
            (folder / RESERVATION).write_text(json.dumps({"bytes": int(reserve_bytes), "files": int(reserve_files)}))
        return folder

    def make_room(self, reserve_bytes: int = 0, reserve_files: int = 1) -> None:
        """Delete expired entries, then the oldest until `reserve_bytes` / `reserve_files` more would fit."""
        with self._locked():
            self._make_room(reserve_bytes, reserve_files)

    def sweep(self) -> None:
        """Delete every folder older than the time to live."""
        self.make_room(0, 0)

    def usage(self) -> tuple[int, int]:
        """(bytes, files) under the root, reservations included."""
        entries = self._entries()
        return sum(e.bytes for e in entries), sum(e.files for e in entries)

    # ------------------------------------------------------------------ internals
    def _make_room(self, reserve_bytes: int, reserve_files: int) -> None:
        if self.max_bytes is not None and reserve_bytes > self.max_bytes:
            raise ScratchFullError(f"this request needs {reserve_bytes / 1e6:,.0f} MB of scratch space; this app has "
                                   f"{self.max_bytes / 1e6:,.0f} MB for all visitors together")
        if self.max_files is not None and reserve_files > self.max_files:
            raise ScratchFullError(f"this request needs {reserve_files:,} scratch files; this app allows "
                                   f"{self.max_files:,} for all visitors together")
        now = time.time()
        kept = []
        entries = sorted(self._entries(), key=lambda e: e.mtime)  # oldest first
        protected = [e for e in entries if e.mtime < self.keep_before]
        for entry in (e for e in entries if e.mtime >= self.keep_before):
            if now - entry.mtime > self.ttl_s:
                _remove(entry.path)
            else:
                kept.append(entry)
        total_bytes = sum(e.bytes for e in kept + protected)
        total_files = sum(e.files for e in kept + protected)
        for entry in kept:
            over_bytes = self.max_bytes is not None and total_bytes + reserve_bytes > self.max_bytes
            over_files = self.max_files is not None and total_files + reserve_files > self.max_files
            if not (over_bytes or over_files):
                break
            _remove(entry.path)
            total_bytes, total_files = total_bytes - entry.bytes, total_files - entry.files

    def _entries(self) -> list[Usage]:
        entries = []
        for child in self.root.iterdir() if self.root.is_dir() else []:
            if child.name.startswith(".lock"):
                continue
            try:
                entries.append(_usage(child))
            except OSError:  # removed meanwhile
                continue
        return entries

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One budget decision at a time, across threads and processes."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _usage(path: Path) -> Usage:
    info = path.lstat()
    if not path.is_dir() or path.is_symlink():
        return Usage(path, info.st_size, 1, info.st_mtime)
    size = files = 0
    reserved = {"bytes": 0, "files": 0}
    for folder, _, names in os.walk(path):
        for name in names:
            full = os.path.join(folder, name)
            if name == RESERVATION and folder == str(path):
                try:
                    reserved = json.loads(Path(full).read_text())
                except (OSError, ValueError):
                    pass
                continue
            try:
                size += os.lstat(full).st_size
                files += 1
            except OSError:
                continue
    return Usage(path, max(size, int(reserved.get("bytes", 0))), max(files, int(reserved.get("files", 0))), info.st_mtime)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
