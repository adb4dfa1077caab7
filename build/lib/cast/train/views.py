"""Training samples: the recipes' augmentations and superpixels per view, over scanned image folders.

The folders themselves (ZIPs, scanning, the report of skipped files) are `cast.datasets.image_folders`.
- `ImageDataset`: one sample per image; a file that fails to decode later is replaced by another and
  reported in the batch (`load_failures`), so it works inside DataLoader workers.
- Transforms end with superpixels computed on the final uint8 crop, as the official pipeline does:
  floats in [0, 1] x 255, truncated (spec §1.2), then ToTensor + Normalize.

Augmentations draw from torch's RNG seeded per (seed, epoch, index), so a sample is the same whatever
process or worker loads it: runs resume and shard over DDP reproducibly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from cast.errors import CastError, DatasetError
from cast.image import IMAGENET_MEAN, IMAGENET_STD, load_image
from cast.superpixels import SuperpixelConfig, compute_superpixels


# --------------------------------------------------------------------------------- transforms
class GaussianBlur:
    """MoCo-v3's PIL Gaussian blur, sigma ~ U[0.1, 2] (drawn from torch's RNG)."""

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0)) -> None:
        self.sigma = sigma

    def __call__(self, img: Image.Image) -> Image.Image:
        sigma = float(torch.empty(1).uniform_(*self.sigma))
        return img.filter(ImageFilter.GaussianBlur(radius=sigma))


def moco_view_transform(size: int, second_view: bool) -> T.Compose:
    """One of MoCo-v3's asymmetric BYOL views (spec §6.1): blur p = 1.0 / 0.1, solarize only in view 2."""
    ops: list[Any] = [
        T.RandomResizedCrop(size, scale=(0.08, 1.0), interpolation=T.InterpolationMode.BILINEAR),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([GaussianBlur()], p=0.1 if second_view else 1.0),
    ]
    if second_view:
        ops.append(T.RandomSolarize(threshold=128, p=0.2))
    ops.append(T.RandomHorizontalFlip())
    return T.Compose(ops)


def train_crop_transform(size: int, bicubic: bool = False) -> T.Compose:
    """RandomResizedCrop + flip (linear probe: bilinear; DeiT: bicubic)."""
    mode = T.InterpolationMode.BICUBIC if bicubic else T.InterpolationMode.BILINEAR
    return T.Compose([T.RandomResizedCrop(size, interpolation=mode), T.RandomHorizontalFlip()])


def eval_crop_transform(size: int) -> T.Compose:
    """Resize(256) + CenterCrop(224), scaled to `size` (linear-probe evaluation, spec §1.1)."""
    return T.Compose([T.Resize(size * 256 // 224), T.CenterCrop(size)])


def finish_view(img: Image.Image, superpixels: SuperpixelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented PIL crop -> (normalised (3, H, W) float, superpixels (H, W) int64), spec §1.2."""
    pixels01 = TF.to_tensor(img.convert("RGB"))
    rgb8 = (pixels01 * 255).to(torch.uint8).permute(1, 2, 0).numpy()  # a truncating cast, as official
    labels = compute_superpixels(np.ascontiguousarray(rgb8), superpixels)
    image = TF.normalize(pixels01, IMAGENET_MEAN, IMAGENET_STD)
    return image, torch.from_numpy(labels)


class TwoViews:
    """MoCo sample: two augmented views, each with its own superpixels."""

    def __init__(self, size: int, superpixels: SuperpixelConfig) -> None:
        self.views = (moco_view_transform(size, False), moco_view_transform(size, True))
        self.superpixels = superpixels

    def __call__(self, img: Image.Image) -> dict[str, torch.Tensor]:
        out = {}
        for i, view in enumerate(self.views, start=1):
            out[f"images{i}"], out[f"superpixels{i}"] = finish_view(view(img), self.superpixels)
        return out


class OneView:
    """Labelled sample: one crop (train or eval transform) with its superpixels."""

    def __init__(self, crop: Callable[[Image.Image], Image.Image], superpixels: SuperpixelConfig) -> None:
        self.crop = crop
        self.superpixels = superpixels

    def __call__(self, img: Image.Image) -> dict[str, torch.Tensor]:
        images, superpixels = finish_view(self.crop(img), self.superpixels)
        return {"images": images, "superpixels": superpixels}


# ------------------------------------------------------------------------------------ datasets
def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample's augmentation, independent of worker and process."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint64)[0] >> 1)


class ImageDataset(Dataset):
    """Scanned image files (and labels) through a transform; unreadable files are replaced, not fatal."""

    def __init__(self, files: Sequence[Path], transform: Callable[[Image.Image], dict], *, root: Path,
                 labels: Sequence[int] | None = None, seed: int = 0) -> None:  # fmt: skip
        self.files = list(files)
        self.labels = list(labels) if labels is not None else None
        self.transform = transform
        self.root = root
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Call before each epoch (before the DataLoader iterator is created)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        failures: list[tuple[str, str]] = []
        for attempt in range(len(self.files)):
            i = (index + attempt) % len(self.files)
            try:
                rgb = load_image(self.files[i])
            except (CastError, OSError) as err:
                failures.append((str(self.files[i].relative_to(self.root)), str(err)))
                continue
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seed(self.seed, self.epoch, index))
                sample = self.transform(Image.fromarray(rgb))
            sample["index"] = i
            if self.labels is not None:
                sample["labels"] = self.labels[i]
            sample["load_failures"] = failures
            return sample
        raise DatasetError(f"none of the {len(self.files)} images under {self.root} could be decoded")


def collate_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors ((B, 3, H, W) images, (B, H, W) int64 superpixels), labels to (B,), failures joined."""
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key == "load_failures":
            batch[key] = [f for v in values for f in v]
        elif isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        else:
            batch[key] = torch.tensor(values, dtype=torch.int64)
    return batch


def fixed_batch(dataset: ImageDataset, indices: Sequence[int], epoch: int = 0) -> dict[str, Any]:
    """The same batch every time (augmentations seeded per sample): for before/after comparisons."""
    previous = dataset.epoch
    dataset.set_epoch(epoch)
    try:
        return collate_samples([dataset[i] for i in indices])
    finally:
        dataset.set_epoch(previous)


def worker_init(_: int) -> None:
    """DataLoader workers: one thread each, so SEEDS in workers does not oversubscribe the CPU."""
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
