"""Folders of images for training and collections: a folder as is, or a ZIP extracted safely.

- `prepare_data_root(path)`: a folder as is, or a ZIP extracted safely (no absolute or `..` members, no
  links, capped uncompressed size and member count) into a cache folder.
- `scan_images` / `scan_class_folders`: usable files (PIL header check, >= 32 px), the rest listed with
  a reason in a `DatasetReport`; nothing is fatal but an empty result.
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
from typing import Any

from PIL import Image

from ..errors import DatasetError
from ..image import MIN_SIDE

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MAX_ZIP_MEMBERS = 200_000
_COPY_CHUNK = 1 << 20


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
            if (target / ".complete").exists():  # another request extracted the same archive meanwhile
                shutil.rmtree(staging, ignore_errors=True)
                return target
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
