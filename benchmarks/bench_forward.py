"""CAST-S forward vs timm's ViT-S/8 at 224², batch 1 and 8, on 2 CPU threads (same run).

Also prints the official implementation's figure from ../shared/data/parity/timings.json when present,
and the achieved fraction of this machine's fp32 matmul peak (measured here on a large matmul).
Run: python benchmarks/bench_forward.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import timm
import torch
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import median_ms, table  # noqa: E402

from cast.image import InputConfig, prepare_input, to_tensor  # noqa: E402
from cast.model import build_model  # noqa: E402
from cast.superpixels import SuperpixelConfig, compute_superpixels  # noqa: E402

CAST_S_MACS = 3.14e9  # forward_features MACs at 224 (spec §2.1, measured with PyTorch's FLOP counter)


def matmul_peak_gflops() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    ms = median_ms(lambda: a @ b, repeats=5)
    return 2 * 2048**3 / (ms / 1000) / 1e9


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    pixels = prepare_input(data.astronaut(), InputConfig()).pixels
    image = to_tensor(pixels)
    labels = torch.from_numpy(compute_superpixels(pixels, SuperpixelConfig()))[None]
    cast_s = build_model("cast_small")
    vit = timm.create_model("vit_small_patch8_224", pretrained=False).eval()
    peak = matmul_peak_gflops()
    rows = []
    with torch.inference_mode():
        for batch in (1, 8):
            x, y = image.expand(batch, -1, -1, -1).contiguous(), labels.expand(batch, -1, -1).contiguous()
            reps = 10 if batch == 1 else 3
            ours = median_ms(lambda: cast_s(x, y), repeats=reps)
            theirs = median_ms(lambda: vit(x), repeats=reps)
            gflops = 2 * CAST_S_MACS * batch / (ours / 1000) / 1e9
            rows.append([batch, f"{ours:.1f}", f"{theirs:.1f}", f"{theirs / ours:.1f}×", f"{gflops:.0f} ({gflops / peak:.0%})"])
    print(f"Forward pass at 224², fp32, {torch.get_num_threads()} threads, median ms; fp32 matmul peak here {peak:.0f} GFLOP/s\n")
    print(table(["batch", "CAST-S (ours)", "timm ViT-S/8", "speed-up", "CAST-S GFLOP/s (of peak)"], rows))
    ref = Path(__file__).resolve().parents[2] / "shared" / "data" / "parity" / "timings.json"
    if ref.is_file():
        official = json.loads(ref.read_text())["cast_small_forward_s"]
        print(f"\nOfficial implementation, CAST-S batch 1 (reference machine, timings.json): "
              f"{1000 * official['median']:.1f}–{1000 * official['median_rep2']:.1f} ms; ours above: {rows[0][1]} ms")
    print(f"(superpixel ids: {int(labels.max()) + 1}; images {np.prod(image.shape[2:])} px)")


if __name__ == "__main__":
    main()
