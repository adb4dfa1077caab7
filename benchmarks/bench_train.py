"""MoCo-v3 training throughput and peak memory: CAST tiny / CAST-S vs timm's ViT-S/8, same recipe, same run.

Each model runs in its own process (so its peak memory is its own): a fixed batch of two augmented views
(real photos, SEEDS superpixels), then timed MoCo steps (forward, backward, AdamW, momentum update).
Data loading is excluded; it is the same for every model. CPU, 2 threads (and CUDA when present).
Run: python benchmarks/bench_train.py [--batch 8] [--steps 3]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import table  # noqa: E402

MODELS = ("cast_tiny", "cast_small", "vit_small_patch8_224")


class VitEncoder(torch.nn.Module):
    """timm's ViT behind the Cast interface (superpixels ignored), so MocoV3 runs it unchanged."""

    def __init__(self) -> None:
        super().__init__()
        import timm

        self.vit = timm.create_model("vit_small_patch8_224", pretrained=False, num_classes=0)
        self.config = SimpleNamespace(embed_dim=self.vit.num_features)
        self.head = None  # MocoV3 checks that the encoder has no classifier

    def forward(self, images: torch.Tensor, superpixels: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(embedding=self.vit(images))


def views(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    from skimage import data

    from cast.image import InputConfig, prepare_input, to_tensor
    from cast.superpixels import SuperpixelConfig, compute_superpixels

    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    pixels = [prepare_input(sources[i % 4][:, ::(1 if i < 4 else -1)].copy(), InputConfig()).pixels for i in range(batch)]
    images = torch.cat([to_tensor(p) for p in pixels])
    labels = torch.from_numpy(np.stack([compute_superpixels(p, SuperpixelConfig.official()) for p in pixels]))
    return images, labels


def run_one(name: str, batch: int, steps: int, device: str) -> dict:
    from cast.model import build_model
    from cast.train.moco import MocoV3

    torch.manual_seed(0)
    encoder = VitEncoder() if name.startswith("vit") else build_model(name, num_classes=0)
    model = MocoV3(encoder).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1.5e-4 * batch / 256, weight_decay=0.1)
    images, labels = views(batch)
    x1, y1 = images.to(device), labels.to(device)
    x2, y2 = torch.flip(x1, dims=[3]), torch.flip(y1, dims=[2])
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)

    def step() -> None:
        with autocast:
            loss = model(x1, y1, x2, y2, momentum=0.99)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"model": name, "device": device, "step_s": median, "images_per_s": batch / median, "peak_mib": peak,
            "params_m": sum(p.numel() for p in encoder.parameters()) / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.one:
        print(json.dumps(run_one(args.one, args.batch, args.steps, args.device)))
        return
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for name in MODELS:
            out = subprocess.run([sys.executable, __file__, "--one", name, "--batch", str(args.batch), "--steps",
                                  str(args.steps), "--device", device], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append([r["model"], r["device"], f"{r['params_m']:.1f}", f"{r['step_s']:.2f}", f"{r['images_per_s']:.2f}",
                         f"{r['peak_mib']:.0f}"])
    print(f"MoCo-v3 training step (2 views, base + momentum encoders, projector 4096, predictor), batch {args.batch}, "
          f"median of {args.steps} steps, {torch.get_num_threads()} CPU threads\n")
    print(table(["backbone", "device", "backbone params (M)", "s / step", "images / s", "peak memory (MiB)"], rows))


if __name__ == "__main__":
    main()
