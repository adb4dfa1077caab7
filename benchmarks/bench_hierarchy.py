"""Building the Hierarchy from model outputs, vs the obvious alternative (a per-segment Python loop).

Run: python benchmarks/bench_hierarchy.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import median_ms, table  # noqa: E402

from cast.hierarchy import Hierarchy  # noqa: E402
from cast.image import InputConfig, prepare_input, to_tensor  # noqa: E402
from cast.model import build_model  # noqa: E402
from cast.superpixels import SuperpixelConfig, compute_superpixels  # noqa: E402


def naive_stats(superpixels: np.ndarray, logits: list[np.ndarray]) -> list[dict]:
    """The obvious way: compose labels per level, then one mask per segment for area and bbox."""
    out, chain = [], np.arange(superpixels.max() + 1)
    for lg in logits:
        pad = superpixels.max() + 1 - lg.shape[0] if len(out) == 0 else 0
        parent = np.concatenate([lg.argmax(1), np.repeat(lg[-1:].argmax(1), pad)]) if pad > 0 else lg.argmax(1)
        chain = parent[chain]
        labels = chain[superpixels]
        level = {}
        for seg in np.unique(labels):
            ys, xs = np.nonzero(labels == seg)
            level[int(seg)] = (len(xs), xs.min(), ys.min(), xs.max(), ys.max())
        out.append(level)
    return out


def full_build(sp: np.ndarray, logits: list[np.ndarray], image: np.ndarray) -> Hierarchy:
    h = Hierarchy.from_logits(sp, logits, image=image)
    h.labels(h.num_levels - 1)
    h.stats(0)
    return h


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = build_model("cast_small")
    rows = []
    for size in (224, 512):
        src = data.astronaut()
        pixels = prepare_input(src, InputConfig()).pixels
        sp = compute_superpixels(pixels, SuperpixelConfig())
        with torch.inference_mode():
            out = model(to_tensor(pixels), torch.from_numpy(sp)[None])
        logits = [lg[0].numpy() for lg in out.logits]
        canvas = np.ascontiguousarray(src[:size, :size]) if size != 224 else pixels
        sp_full = sp if size == 224 else cv2.resize(sp.astype(np.int32), (size, size), interpolation=cv2.INTER_NEAREST)
        ours = median_ms(lambda: full_build(sp_full, logits, canvas), repeats=20)
        graph = median_ms(lambda: full_build(sp_full, logits, canvas).graph, repeats=10)
        naive = median_ms(lambda: naive_stats(sp_full, logits), repeats=5)
        rows.append([f"{size}²", f"{ours:.2f}", f"{graph:.2f}", f"{naive:.1f}", f"{naive / ours:.0f}×"])
    print("Hierarchy from CAST-S logits (labels of every level + area/bbox/centroid/mean colour), 2 threads, median ms\n")
    print(table(["label maps", "Hierarchy (ours)", "…plus networkx graph", "per-segment mask loop", "speed-up"], rows))


if __name__ == "__main__":
    main()
