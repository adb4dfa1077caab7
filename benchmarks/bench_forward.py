"""CAST-S forward vs timm's ViT-S/16 and ViT-S/8 at 224² on 2 CPU threads, in the same process.

Tables: (1) forward time, batch 1 and 8, with our oneDNN linear kernel and with PyTorch's default
F.linear (the obvious alternative), against stock timm ViT-S/16 and ViT-S/8 (and ViT-S/16 given the
same kernel, for a like-for-like reading); achieved GFLOP/s. (2) Where CAST-S's time goes. (3) Reduced
precision: bf16 autocast time and how much of each level's labelling it keeps (after matching segment
ids between the fp32 and bf16 hierarchies), on the example photos and held-out scikit-image photos.
Run: python benchmarks/bench_forward.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import timm
import torch
from scipy.optimize import linear_sum_assignment
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import median_ms, table  # noqa: E402

from cast.hierarchy import Hierarchy  # noqa: E402
from cast.image import InputConfig, load_image, prepare_input, to_tensor  # noqa: E402
from cast.model import build_model, set_linear_kernel  # noqa: E402
from cast.superpixels import SuperpixelConfig, compute_superpixels  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CAST_S_MACS = 3.14e9  # forward MACs at 224 (spec §2.1, measured with PyTorch's FLOP counter)
VIT_S16_MACS = 4.25e9


def inputs(image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = prepare_input(image, InputConfig()).pixels
    return to_tensor(pixels), torch.from_numpy(compute_superpixels(pixels, SuperpixelConfig()))[None]


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels with the same label after matching b's ids to a's one-to-one (Hungarian)."""
    na, nb = int(a.max()) + 1, int(b.max()) + 1
    overlap = np.bincount(a.ravel() * nb + b.ravel(), minlength=na * nb).reshape(na, nb)
    rows, cols = linear_sum_assignment(-overlap)
    return float(overlap[rows, cols].sum() / a.size)


def speed_table(model, vit16, vit16_fast, vit8, x, y) -> list[list[object]]:
    rows = []
    slow = build_model("cast_small", linear_kernel="default")
    slow.load_state_dict(model.state_dict())
    for batch in (1, 8):
        xb, yb = x.expand(batch, -1, -1, -1).contiguous(), y.expand(batch, -1, -1).contiguous()
        reps = 15 if batch == 1 else 3
        ours = median_ms(lambda: model(xb, yb), repeats=reps)
        plain = median_ms(lambda: slow(xb, yb), repeats=reps)
        v16 = median_ms(lambda: vit16(xb), repeats=reps)
        v16f = median_ms(lambda: vit16_fast(xb), repeats=reps)
        v8 = median_ms(lambda: vit8(xb), repeats=max(2, reps // 3))
        rows.append([batch, f"{ours:.1f}", f"{plain:.1f}", f"{v16:.1f}", f"{ours / v16:.2f}×", f"{v16f:.1f}",
                     f"{ours / v16f:.2f}×", f"{v8:.1f}",
                     f"{2 * CAST_S_MACS * batch / ours / 1e6:.0f}", f"{2 * VIT_S16_MACS * batch / v16 / 1e6:.0f}"])
    return rows


def breakdown(model, x, y) -> list[list[object]]:
    rows = []
    cls, tokens, padding = model.embed_tokens(x, y)
    rows.append(["stem + superpixel tokens", "", f"{median_ms(lambda: model.embed_tokens(x, y), repeats=20):.2f}"])
    for stage, pool in enumerate(model.pools):
        joined = torch.cat([cls, tokens], dim=1)

        def blocks(z=joined, stage=stage):
            for block in model.stage_blocks(stage):
                z = block(z)
            return z

        out = blocks()
        c, t = out[:, :1], out[:, 1:]
        rows.append([f"stage {stage + 1} blocks", joined.shape[1], f"{median_ms(blocks, repeats=20):.2f}"])
        rows.append([f"pool {stage + 1} (FPS inside: {median_ms(lambda: pool.sample_seeds(t, padding), repeats=20):.2f})",
                     t.shape[1], f"{median_ms(lambda: pool(c, t, padding), repeats=20):.2f}"])
        result = pool(c, t, padding)
        cls, tokens = result.cls_token, result.tokens
        padding = torch.zeros(tokens.shape[:2], dtype=torch.bool)
    return rows


def bf16_table(model) -> list[list[object]]:
    images = {p.stem: load_image(p) for p in sorted((ROOT / "assets").glob("*.jpg"))}
    images.update({f"held-out {n}": getattr(data, n)() for n in ("camera", "cat", "hubble_deep_field", "immunohistochemistry")})
    rows = []
    for name, image in images.items():
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        x, y = inputs(image)
        full = model(x, y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(x, y)
            ms = median_ms(lambda: model(x, y), repeats=5)
        sp = y[0].numpy()
        a = Hierarchy.from_logits(sp, [lg[0].float().numpy() for lg in full.logits])
        b = Hierarchy.from_logits(sp, [lg[0].float().numpy() for lg in half.logits])
        rows.append([name, f"{ms:.1f}", *(f"{agreement(a.labels(lv), b.labels(lv)):.1%}" for lv in range(1, 5))])
    return rows


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    x, y = inputs(data.astronaut())
    model = build_model("cast_small")
    vit16 = timm.create_model("vit_small_patch16_224", pretrained=False).eval()
    vit16_fast = set_linear_kernel(timm.create_model("vit_small_patch16_224", pretrained=False).eval(), "onednn")
    vit8 = timm.create_model("vit_small_patch8_224", pretrained=False).eval()
    with torch.inference_mode():
        print(f"## Forward at 224², fp32, {torch.get_num_threads()} threads, median ms\n")
        print(table(["batch", "CAST-S (ours)", "CAST-S, F.linear", "timm ViT-S/16", "ours / ViT-S/16",
                     "ViT-S/16, our linear", "ours / that", "timm ViT-S/8", "CAST-S GFLOP/s", "ViT-S/16 GFLOP/s"],
                    speed_table(model, vit16, vit16_fast, vit8, x, y)))
        print("\n## Where CAST-S's time goes (batch 1, ms)\n")
        print(table(["part", "tokens in", "ms"], breakdown(model, x, y)))
        print("\n## bf16 autocast: time and the share of each level's pixels it labels like fp32 (ids matched)\n")
        print(table(["image", "bf16 ms", "level 1", "level 2", "level 3", "level 4"], bf16_table(model)))
    print(f"\n(superpixel ids on the astronaut: {int(y.max()) + 1}; random weights, seed 0)")


if __name__ == "__main__":
    main()
