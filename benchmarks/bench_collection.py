"""Collections on 2 CPU threads: CAST-S throughput batched vs one image at a time (with peak memory, each in a
fresh process), segment search over 1,000 images' segments in memory, and what stability costs per image.
Saved collections at 10,000 images and search at 1,000,000 segments: benchmarks/bench_collection_scale.py.

Run: python benchmarks/bench_collection.py
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import median_ms, table  # noqa: E402

import cast  # noqa: E402
from cast.collection import MemoryCollection, build_collection, stability_scores  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "hubble_deep_field", "immunohistochemistry", "retina")
CHILD = """
import re, sys, time, torch
from pathlib import Path
torch.set_num_threads(2)
import cast
from cast.collection import build_collection

def peak_mib():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024

files = sorted(Path(sys.argv[1]).glob("*.png"))
segmenter = cast.Segmenter(cast.create_model("cast_small"), max_output_pixels=256 * 256)
build_collection(segmenter, files[:4], batch_size=int(sys.argv[2]))  # warm-up
start = time.perf_counter()
result = build_collection(segmenter, files, batch_size=int(sys.argv[2]))
print(len(result.items) / (time.perf_counter() - start), peak_mib())
"""


def photo_folder(folder: Path, count: int) -> Path:
    """`count` photos: the scikit-image photographs, mirrored and cropped variants (varied token counts)."""
    images = []
    for name in PHOTOS:
        image = getattr(data, name)()
        images.append(np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image)
    for i in range(count):
        image = images[i % len(images)]
        variant = (i // len(images)) % 4
        image = image[:, ::-1] if variant % 2 else image
        image = image[: int(image.shape[0] * 0.85)] if variant >= 2 else image
        Image.fromarray(np.ascontiguousarray(image)).save(folder / f"photo_{i:03d}.png")
    return folder


def throughput(folder: Path, batch_size: int) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(batch_size)], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    images_per_s, mib = out.stdout.split()
    return float(images_per_s), float(mib)


def main() -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = photo_folder(Path(tmp), 48)
        rows = []
        for batch in (1, 8):
            rate, mib = throughput(folder, batch)
            rows.append([f"batch {batch}" + (" (one by one)" if batch == 1 else ""), f"{rate:.1f}", f"{mib:.0f}"])
        print("## Collection throughput, CAST-S (random weights), 48 photos, 2 threads, fresh process per row\n")
        print(table(["forward passes", "images / s", "peak memory MiB"], rows))

        model = cast.create_model("cast_small")
        segmenter = cast.Segmenter(model, max_output_pixels=256 * 256)
        files = sorted(folder.glob("*.png"))[:8]
        real = build_collection(segmenter, files, batch_size=8)
        items = [dataclasses.replace(real.items[i % len(real.items)], index=i, name=f"image_{i:04d}") for i in range(1000)]
        big = MemoryCollection(items)
        start = time.perf_counter()
        index = big.index
        build_ms = (time.perf_counter() - start) * 1000
        segment = int(big.items[3].hierarchy.segment_ids(2)[5])
        search_only = median_ms(lambda: index.search(3, 2, segment, 12), repeats=20)
        centred = median_ms(lambda: index.search(3, 2, segment, 12, centre=True), repeats=20)
        brute = median_ms(lambda: [float(np.dot(it.embeddings[2][s], it.embeddings[2][segment]))
                                   for it in items for s in it.hierarchy.segment_ids(2)], repeats=3)
        print(f"\n## Segment search over 1,000 images (level 2: {index.size(2):,} segments, level 1: {index.size(1):,})\n")
        print(table(["step", "ms"], [["build the index (once per collection)", f"{build_ms:.0f}"],
                                     ["rank (one matrix product)", f"{search_only:.2f}"],
                                     ["rank with per-image centring", f"{centred:.2f}"],
                                     ["obvious alternative: a Python loop of dot products", f"{brute:.0f}"]]))

        plain = median_ms(lambda: segmenter.run(files[0]), repeats=5)
        stab = median_ms(lambda: stability_scores(segmenter, files[0], segmenter.run(files[0])), repeats=3)
        print("\n## Stability cost per image (CAST-S, 256² label maps)\n")
        print(table(["", "ms"], [["segmentation alone", f"{plain:.0f}"],
                                 ["segmentation + stability (5 perturbed runs + matching)", f"{stab:.0f}"]]))


if __name__ == "__main__":
    main()
