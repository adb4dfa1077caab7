"""Copy the official reference outputs into tests/data/ in a compact form (run once, from the repo root).

    python scripts/make_test_fixtures.py [--shared ../shared/data] [--out tests/data]

The copies keep the reference format (same file names, keys and shapes; tests/reference.py reads both)
and only shrink what can be shrunk losslessly:
- integer tensors are stored in the narrowest of uint8 / int16 / int32 that holds their values;
- `image` (the normalised model input) is stored as its uint8 pixels: ToTensor + ImageNet Normalize of
  them reproduces the official float tensor bit for bit (checked here), so `image_uint8` is dropped;
- the tiny official CAST stores each transformer block once (the `blocks{K}.{j}` stage views of
  `blocks.{j}` are identical copies; the checkpoint tests build them on the fly);
- the tiny MoCo ViT keeps only `module.base_encoder.*` without the projector head (the momentum
  encoder, projector and predictor are never read; the layout tests build them from the manifests);
- `parity_batch.safetensors` is left out: the batch test builds its batches from the single-image
  fixtures, and `parity_batch_padded` keeps the one behaviour singles cannot show;
- manifests are stored as minified, gzipped JSON;
- segment naming: `image_k` is dropped (ToTensor + OpenAI Normalize of `rgb_k` reproduces it bit for bit,
  checked here); the tiny CLIP, the source images and `manifest.json` are copied as they are.
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from reference import pixels_to_model_input  # noqa: E402

PARITY_FILES = ("parity_astronaut", "parity_chelsea", "parity_coffee", "parity_batch_padded")
PARITY_MANIFESTS = (
    "moco_cast_small", "moco_cast_small_deep", "moco_cast_base", "moco_cast_seg_small_pretrain",
    "deit_cast_small", "moco_cast_small_converted_to_deit", "models",
)  # fmt: skip
VIT_FILES = ("vit_baseline_astronaut", "vit_baseline_chelsea")
VIT_MANIFESTS = ("moco_vit_conv_small", "moco_vit_conv_base")
_STAGE_VIEW = "blocks1. blocks2. blocks3. blocks4.".split()


def narrow(tensor: torch.Tensor) -> torch.Tensor:
    """The same integer values in the narrowest dtype that holds them; other tensors unchanged."""
    if tensor.dtype not in (torch.int64, torch.int32) or tensor.numel() == 0:
        return tensor
    low, high = int(tensor.min()), int(tensor.max())
    for dtype in (torch.uint8, torch.int16, torch.int32):
        info = torch.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return tensor.to(dtype)
    return tensor


def compact_image(image: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (B, 3, H, W) whose normalisation is exactly `image`; raises if not lossless."""
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    pixels = torch.round((image * std + mean) * 255).clamp(0, 255).to(torch.uint8)
    if not torch.equal(pixels_to_model_input(pixels), image):
        raise SystemExit("the stored image is not ToTensor+Normalize of uint8 pixels: cannot compact it")
    return pixels


def compact_fixture(source: Path, target: Path) -> None:
    tensors = load_file(str(source))
    with safe_open(str(source), "pt") as handle:
        metadata = handle.metadata()
    out = {}
    for key, value in tensors.items():
        if key == "image_uint8":
            continue
        out[key] = compact_image(value) if key == "image" else narrow(value)
    if "image_uint8" in tensors and not torch.equal(tensors["image_uint8"], out["image"][0].permute(1, 2, 0)):
        raise SystemExit(f"{source}: image_uint8 differs from the image pixels; keep it")
    save_file({k: v.contiguous() for k, v in out.items()}, str(target), metadata=metadata)


def compact_tiny_cast(source: Path, target: Path) -> None:
    tensors = load_file(str(source))
    kept = {k: v for k, v in tensors.items() if not k.startswith(tuple(_STAGE_VIEW))}
    save_file(kept, str(target))


def compact_tiny_vit(source: Path, target: Path) -> None:
    tensors = load_file(str(source))
    prefix = "module.base_encoder."
    kept = {k: v for k, v in tensors.items() if k.startswith(prefix) and not k.startswith(prefix + "head.")}
    save_file(kept, str(target))


def compact_naming(source: Path, target: Path) -> None:
    """The segment-naming reference folder: narrow integers, `image_k` rebuilt from `rgb_k` by readers."""
    from reference import clip_normalize

    (target / "images").mkdir(parents=True, exist_ok=True)
    (target / "clip_tiny").mkdir(parents=True, exist_ok=True)
    raw = load_file(str(source / "naming_reference.safetensors"))
    out = {}
    for key, value in raw.items():
        if key.startswith("image_") and not key.startswith("image_features"):
            rebuilt = clip_normalize(raw[key.replace("image_", "rgb_")], source / "clip_tiny")
            if not torch.equal(rebuilt, value):
                raise SystemExit(f"{key} is not exactly the normalised rgb pixels; keep it")
            continue
        out[key] = narrow(value)
    save_file({k: v.contiguous() for k, v in out.items()}, str(target / "naming_reference.safetensors"))
    for name in ("manifest.json", "clip_tiny/open_clip_config.json", "clip_tiny/open_clip_model.safetensors"):
        shutil.copy(source / name, target / name)
    for image in (source / "images").iterdir():
        shutil.copy(image, target / "images" / image.name)


def write_manifest(source: Path, target: Path) -> None:
    data = json.loads(source.read_text())
    target.write_bytes(gzip.compress(json.dumps(data, separators=(",", ":")).encode(), mtime=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "data")
    args = parser.parse_args()
    parity_in, vit_in = args.shared / "parity", args.shared / "vit_baseline"
    parity_out, vit_out = args.out / "parity", args.out / "vit_baseline"
    for folder in (parity_out, vit_out):
        folder.mkdir(parents=True, exist_ok=True)
    for name in PARITY_FILES:
        compact_fixture(parity_in / f"{name}.safetensors", parity_out / f"{name}.safetensors")
    for name in VIT_FILES:
        compact_fixture(vit_in / f"{name}.safetensors", vit_out / f"{name}.safetensors")
    compact_tiny_cast(parity_in / "tiny_cast.safetensors", parity_out / "tiny_cast.safetensors")
    compact_tiny_vit(vit_in / "tiny_vit_conv_moco.safetensors", vit_out / "tiny_vit_conv_moco.safetensors")
    for name in PARITY_MANIFESTS:
        write_manifest(parity_in / f"manifest_{name}.json", parity_out / f"manifest_{name}.json.gz")
    for name in VIT_MANIFESTS:
        write_manifest(vit_in / f"manifest_{name}.json", vit_out / f"manifest_{name}.json.gz")
    shutil.copy(parity_in / "tiny_cast_config.json", parity_out / "tiny_cast_config.json")
    shutil.copy(vit_in / "tiny_vit_conv_config.json", vit_out / "tiny_vit_conv_config.json")
    compact_naming(args.shared / "segment_naming", args.out / "segment_naming")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
