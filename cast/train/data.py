"""Training data: image folders or uploaded ZIPs, the recipes' augmentations, superpixels per view.

- `prepare_data_root(path)`: a folder as is, or a ZIP extracted safely (no absolute or `..` members, no
  links, capped uncompressed size) into a cache folder.
- `scan_images` / `scan_class_folders`: usable files (PIL header check, >= 32 px), the rest listed with
  a reason in a `DatasetReport`; nothing is fatal but an empty result.
- `ImageDataset`: one sample per image; a file that fails to decode later is replaced by another and
  reported in the batch (`load_failures`), so it works inside DataLoader workers.
- Transforms end with superpixels computed on the final uint8 crop, as the official pipeline does:
  floats in [0, 1] x 255, truncated (spec §1.2), then ToTensor + Normalize.

Augmentations draw from torch's RNG seeded per (seed, epoch, index), so a sample is the same whatever
process or worker loads it: runs resume and shard over DDP reproducibly.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from cast.errors import CastError
from cast.image import IMAGENET_MEAN, IMAGENET_STD, MIN_SIDE, load_image
from cast.superpixels import SuperpixelConfig, compute_superpixels

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MAX_ZIP_MEMBERS = 200_000
_COPY_CHUNK = 1 << 20


class DatasetError(CastError, ValueError):
    """The training data cannot be used (no images, unsafe archive, too few classes, ...)."""


@dataclass
class DatasetReport:
    """Which files a job uses and which it skipped, with reasons (paths relative to the data root)."""

    root: str
    used: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # found at scan time
    failed_at_load: list[tuple[str, str]] = field(default_factory=list)  # decoded fine in the scan, not later
    class_names: list[str] | None = None

    @property
    def num_used(self) -> int:
        return len(self.used)

    def record_failure(self, path: str, reason: str) -> None:
        if all(p != path for p, _ in self.failed_at_load):
            self.failed_at_load.append((path, reason))

    def summary(self) -> str:
        """One or two lines for a log or a UI notice."""
        classes = f" in {len(self.class_names)} classes" if self.class_names else ""
        text = f"{self.num_used} images{classes} from {self.root}"
        problems = self.skipped + self.failed_at_load
        if problems:
            shown = "; ".join(f"{p}: {r}" for p, r in problems[:3])
            text += f"; skipped {len(problems)} ({shown}{'; ...' if len(problems) > 3 else ''})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "used": list(self.used), "skipped": [list(s) for s in self.skipped],
                "failed_at_load": [list(s) for s in self.failed_at_load], "class_names": self.class_names}  # fmt: skip


# ----------------------------------------------------------------------------------- data roots
def default_extract_dir() -> Path:
    return Path(os.environ.get("CAST_EXPLORER_CACHE", Path.home() / ".cache" / "cast_explorer")) / "datasets"


def prepare_data_root(path: str | Path, *, extract_dir: str | Path | None = None, max_bytes: int = 8 * 1024**3) -> Path:
    """A folder of images as is, or a ZIP extracted safely (once, keyed by its content) into `extract_dir`."""
    path = Path(path)
    if path.is_dir():
        return path
    if not path.is_file():
        raise DatasetError(f"training data {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise DatasetError(f"training data {path} is neither a folder nor a ZIP archive")
    return extract_zip(path, Path(extract_dir) if extract_dir is not None else default_extract_dir(), max_bytes)


def extract_zip(archive: Path, extract_dir: Path, max_bytes: int) -> Path:
    """Extract `archive` under `extract_dir/<sha256 prefix>`; refuse unsafe or oversized archives."""
    digest = hashlib.sha256()
    with archive.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_COPY_CHUNK), b""):
            digest.update(chunk)
    target = extract_dir / digest.hexdigest()[:16]
    if (target / ".complete").exists():
        return target
    with zipfile.ZipFile(archive) as zf:
        members = _checked_members(zf, archive, max_bytes)
        extract_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=extract_dir))
        try:
            written = 0
            for info, rel in members:
                dest = staging.joinpath(*rel.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, dest.open("wb") as out:
                    for chunk in iter(lambda: src.read(_COPY_CHUNK), b""):
                        written += len(chunk)
                        if written > max_bytes:  # the headers lied about the sizes
                            raise DatasetError(f"{archive.name} expands to more than {max_bytes:,} bytes; refusing it")
                        out.write(chunk)
            (staging / ".complete").touch()
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def _checked_members(zf: zipfile.ZipFile, archive: Path, max_bytes: int) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """The archive's files as safe relative paths; any unsafe member rejects the whole archive."""
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise DatasetError(f"{archive.name} has {len(infos):,} entries; at most {MAX_ZIP_MEMBERS:,} are accepted")
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise DatasetError(f"{archive.name} expands to {total:,} bytes, over the {max_bytes:,}-byte limit")
    members = []
    for info in infos:
        name = info.filename.replace("\\", "/")
        rel = PurePosixPath(name)
        unsafe = name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in rel.parts
        if unsafe:
            raise DatasetError(f"{archive.name} contains the unsafe path {info.filename!r} (absolute or '..'); refusing it")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DatasetError(f"{archive.name} contains a symbolic link ({info.filename!r}); refusing it")
        if info.is_dir() or not rel.parts:
            continue
        members.append((info, rel))
    return members


# --------------------------------------------------------------------------------------- scans
def _is_hidden(rel: Path) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in rel.parts)


def _check_file(path: Path) -> str | None:
    """None if PIL reads the header and the image is at least MIN_SIDE px; else the reason."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Exception as err:  # Pillow raises many types on corrupt or hostile files
        return f"cannot be read as an image ({type(err).__name__}: {str(err)[:120]})"
    if min(width, height) < MIN_SIDE:
        return f"{width}x{height} pixels; at least {MIN_SIDE}x{MIN_SIDE} needed"
    return None


def _scan(root: Path, folder: Path, report: DatasetReport) -> list[Path]:
    usable = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root)
            if _is_hidden(rel):
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                report.skipped.append((str(rel), f"not an image file type ({path.suffix or 'no extension'})"))
                continue
            reason = _check_file(path)
            if reason is None:
                usable.append(path)
                report.used.append(str(rel))
            else:
                report.skipped.append((str(rel), reason))
    return usable


def scan_images(root: str | Path) -> tuple[list[Path], DatasetReport]:
    """Every usable image under `root`, recursively (unlabelled data, e.g. for MoCo)."""
    root = Path(root)
    report = DatasetReport(root=str(root))
    files = _scan(root, root, report)
    if not files:
        raise DatasetError(f"no usable images under {root} ({len(report.skipped)} files skipped)")
    return files, report


def scan_class_folders(root: str | Path) -> tuple[list[Path], list[int], DatasetReport]:
    """Folder-per-class layout: `root/<class>/**/image`. A single wrapper folder is looked through."""
    root = Path(root)
    subdirs = _visible_subdirs(root)
    if len(subdirs) == 1 and not _has_images(root) and _visible_subdirs(subdirs[0]):
        root = subdirs[0]  # e.g. a ZIP holding "mydata/cats/...", "mydata/dogs/..."
        subdirs = _visible_subdirs(root)
    report = DatasetReport(root=str(root), class_names=[])
    for path in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
        report.skipped.append((path.name, "not inside a class folder"))
    files: list[Path] = []
    labels: list[int] = []
    for folder in subdirs:
        found = _scan(root, folder, report)
        if not found:
            continue
        report.class_names.append(folder.name)
        files += found
        labels += [len(report.class_names) - 1] * len(found)
    if len(report.class_names) < 2:
        raise DatasetError(
            f"{root} needs at least 2 class folders with usable images (found {len(report.class_names)}); "
            "put the images of each class in its own subfolder"
        )
    return files, labels, report


def _visible_subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file())


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
