"""Command-line start-up: `cast --help`, `cast segment --help`, `cast-explorer --help` and a refused argument,
against the obvious alternative, importing the library (and so PyTorch) before parsing, as `cast` did before.
Wall time of a fresh `python` process, median of 5 after one warm-up run (files in the page cache).

Run: python benchmarks/bench_cli.py
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import table  # noqa: E402

EAGER = "import cast.api, cast.segmenter, cast.train; from cast.cli import main; main({argv!r})"
CASES = [
    ("cast --help", ["-m", "cast", "--help"], ["--help"]),
    ("cast segment --help", ["-m", "cast", "segment", "--help"], ["segment", "--help"]),
    ("cast segment missing/ --out x (refused)", ["-m", "cast", "segment", "missing/", "--out", "x"],
     ["segment", "missing/", "--out", "x"]),
]  # fmt: skip


def seconds(argv: list[str], repeats: int = 5) -> float:
    def once() -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, check=False)
        return time.perf_counter() - start

    once()
    return statistics.median(once() for _ in range(repeats))


def main() -> None:
    rows = []
    for label, lazy, argv in CASES:
        ours, eager = seconds(lazy), seconds(["-c", EAGER.format(argv=argv)])
        rows.append([label, f"{ours:.2f}", f"{eager:.2f}", f"{eager / ours:.0f}x"])
    app = seconds(["app.py", "--help"])
    app_eager = seconds(["-c", "import gradio, torch, app.ui; from app.main import main; main(['--help'])"])
    rows.append(["cast-explorer --help", f"{app:.2f}", f"{app_eager:.2f}", f"{app_eager / app:.0f}x"])
    print(table(["command", "lazy imports (s)", "library imported first (s)", "speed-up"], rows))


if __name__ == "__main__":
    main()
