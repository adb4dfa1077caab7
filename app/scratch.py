"""Short-lived files of requests (extracted ZIPs, exports), each in its own folder, removed once they are old.

Nothing a visitor uploads or asks for stays on disk for ever: every folder made here is deleted when it is
older than the time to live, checked whenever a new one is made.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Scratch:
    """A root folder for per-request folders and how long they live."""

    root: Path
    ttl_s: float = 2 * 3600

    def new(self, prefix: str) -> Path:
        """A fresh folder (older ones are removed first)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.sweep()
        return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.root))

    def sweep(self) -> None:
        """Delete every folder older than the time to live."""
        now = time.time()
        for child in self.root.iterdir() if self.root.is_dir() else []:
            try:
                if now - child.stat().st_mtime > self.ttl_s:
                    shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
            except OSError:
                continue
