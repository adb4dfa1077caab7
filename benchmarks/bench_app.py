"""Server-side latency of the explorer's interactions, vs recomputing, and at 512² input (2 threads); and the
first image after start-up vs steady state, with the app's whole-path warm-up vs a model-only warm-up.

Run: python benchmarks/bench_app.py
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import median_ms, table  # noqa: E402

from app.models import UNTRAINED_KEY, ModelCatalog  # noqa: E402
from app.session import ExplorerSession  # noqa: E402
from app.jobs import JobLimits, JobQueue  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402
from cast.image import InputConfig  # noqa: E402
from cast.segmenter import Segmenter  # noqa: E402
from cast.superpixels import compute_superpixels  # noqa: E402
from cast.render import partition_figure, tree_figure  # noqa: E402

IMAGE = ROOT / "assets" / "chelsea_cat.jpg"


def click(session: ExplorerSession, x: int, y: int) -> None:
    """What the UI does on a click: select, highlight, panel record, both tree figures serialised to JSON."""
    s = session.select_at(x, y)
    s.picture()
    s.selected_info()
    for figure in s.tree_figures():
        figure.to_json()


def click_rebuilding_figures(session: ExplorerSession, x: int, y: int) -> None:
    """The obvious alternative: the same click, building the figures from the hierarchy each time."""
    s = session.select_at(x, y)
    s.picture()
    s.selected_info()
    sel = (s.selection.level, s.selection.segment)
    tree_figure(s.hierarchy, sel).to_json()
    partition_figure(s.hierarchy, sel).to_json()


def first_image(warm_up: str) -> str:
    """In a fresh process: ms of the first image (decode to first picture + figures) and of the steady state."""
    code = f"""
import time, torch
torch.set_num_threads(2)
from app.models import ModelCatalog, warm_up
from app.session import ExplorerSession
from cast.segmenter import Segmenter
catalog = ModelCatalog({str(ROOT / "checkpoints")!r})
handle = catalog._load_uncached(catalog.bundled_key())
if {warm_up!r} == "whole path":
    warm_up(handle.model)
else:
    with torch.inference_mode():
        handle.model(torch.randn(1, 3, 224, 224), (torch.arange(224)[:, None] // 16 * 14 + torch.arange(224)[None] // 16)[None])
def view():
    t = time.perf_counter()
    s = ExplorerSession.create(Segmenter(handle.model).run_detailed({str(IMAGE)!r}), "")
    s.picture(); [f.to_json() for f in s.tree_figures()]
    return (time.perf_counter() - t) * 1000
first = view(); steady = sorted(view() for _ in range(5))[2]
print(f"{{first:.1f}} {{steady:.1f}}")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.split()


def level_change(session: ExplorerSession, level: int) -> None:
    session.with_view(level=level).picture()


def clicks_while_training(session: ExplorerSession, segmenter: Segmenter, nice: int | None, tmp: Path) -> tuple[float, float]:
    """Median (click, new image) latency in ms while a MoCo job trains CAST-S in its own process (None: no job)."""
    h, w = session.display.shape

    def measure() -> tuple[float, float]:
        return (median_ms(lambda: click(session, w // 2, h // 2), repeats=40),
                median_ms(lambda: segmenter.run_detailed(str(IMAGE)), repeats=10))

    if nice is None:
        return measure()
    photos = tmp / "photos"
    photos.mkdir(exist_ok=True)
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        Image.fromarray(getattr(data, name)()).save(photos / f"{name}.jpg")
    queue = JobQueue(tmp / f"jobs-{nice}", limits=JobLimits(nice=nice))
    job = queue.submit("moco", {"data": str(photos), "output": str(tmp / f"out-{nice}.safetensors"), "steps": 500,
                                "batch_size": 4, "variant": "cast_small", "save_every": 0})
    try:
        while not queue.progress(job.id):  # wait until it really trains
            time.sleep(0.2)
            queue.poll()
        return measure()
    finally:
        queue.cancel(job.id)
        queue.wait(job.id, timeout=120)


def main() -> None:
    torch.set_num_threads(2)
    catalog = ModelCatalog(ROOT / "checkpoints")
    rows = []
    for key, size in [(UNTRAINED_KEY, 224), (UNTRAINED_KEY, 512), (catalog.default_key(), 224)]:
        handle = catalog.load(key)
        name = handle.model.config.name
        segmenter = Segmenter(handle.model, input_config=InputConfig(size=size))
        result = segmenter.run_detailed(str(IMAGE))
        session = ExplorerSession.create(result, "")
        h, w = session.display.shape
        new_image = median_ms(lambda: ExplorerSession.create(segmenter.run_detailed(str(IMAGE)), "").picture(), repeats=5)
        superpixels = compute_superpixels(result.model_input.pixels, segmenter.superpixel_config)
        forward = median_ms(lambda: segmenter.forward(result.model_input.pixels, superpixels), repeats=5)
        clicked = median_ms(lambda: click(session, w // 2, h // 2), repeats=10)
        rebuilt = median_ms(lambda: click_rebuilding_figures(session, w // 2, h // 2), repeats=10)
        level = median_ms(lambda: level_change(session, 3), repeats=10)
        rows.append([name, f"{size}²", f"{clicked:.1f}", f"{rebuilt:.1f}", f"{level:.1f}", f"{forward:.1f}",
                     f"{new_image:.1f}", " · ".join(f"{k} {v:.1f}" for k, v in result.timings_ms.items())])
    print(f"Explorer latency, server side, {IMAGE.name}, median ms, 2 threads (cast_small: random weights, timing only)\n")
    print(table(["model", "model input", "click (highlight + panel + 2 figures as JSON)", "same, figures rebuilt",
                 "level change", "recompute forward only", "new image end to end", "stages of one new image (ms)"], rows))
    print("\nClick latency while a fine-tuning job trains CAST-S in another process (median ms, 2 cores)\n")
    handle = catalog.load(catalog.bundled_key())
    segmenter = Segmenter(handle.model)
    session = ExplorerSession.create(segmenter.run_detailed(str(IMAGE)), "")
    with tempfile.TemporaryDirectory() as tmp:
        busy = [[label, *(f"{v:.1f}" for v in clicks_while_training(session, segmenter, nice, Path(tmp)))]
                for label, nice in (("no job", None), ("job at nice 15 (hosted default)", 15),
                                    ("job at nice 0 (same priority)", 0))]
    print(table(["while", "click ms", "new image ms (bundled model)"], busy))
    print("\nFirst image after start-up vs steady state (bundled model, fresh process each, ms)\n")
    starts = [[mode, *first_image(mode)] for mode in ("whole path", "model only")]
    print(table(["warm-up at start-up", "first image", "steady state"], starts))


if __name__ == "__main__":
    main()
