"""Folders of images for training and collections: a folder as is, or a ZIP extracted safely.

- `prepare_data_root(path)`: a folder as is, or a ZIP extracted safely (no absolute or `..` members, no
  links, capped uncompressed size and member count) into a cache folder. Only images are extracted: every
  member is counted and sized from the archive's directory, and each image's header is read inside the
  archive, before one byte is written (`inspect_zip`, with the `ZipLimits` a caller sets).
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
from ..image import MAX_PIXELS, MIN_SIDE

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


@dataclass(frozen=True)
class ZipLimits:
    """What an archive may hold, checked on its directory and its images' headers before anything is extracted.

    Members that will not be used (not an image file type, an unreadable or too small or too large image)
    are never extracted; `max_unused_files` / `max_unused_bytes` refuse archives that are mostly such padding."""

    max_total_bytes: int = 8 * 1024**3  # what the extracted images may take together
    max_members: int = MAX_ZIP_MEMBERS  # entries of any kind, folders included
    max_images: int | None = None
    max_image_bytes: int | None = None  # one image member, uncompressed
    max_image_pixels: int = MAX_PIXELS  # one image, from its header
    max_unused_files: int | None = None
    max_unused_bytes: int | None = None


@dataclass(frozen=True)
class ZipContents:
    """The members of an archive worth extracting, and the others with the reason each is left out."""

    images: list[tuple[zipfile.ZipInfo, PurePosixPath]]
    unused: list[tuple[str, str]]  # (member name, why it is not used)
    image_bytes: int
    unused_bytes: int


def prepare_data_root(path: str | Path, *, extract_dir: str | Path | None = None, max_bytes: int = 8 * 1024**3,
                      limits: ZipLimits | None = None) -> Path:
    """A folder of images as is, or a ZIP's images extracted safely (once, keyed by its content) into `extract_dir`."""
    path = Path(path)
    if path.is_dir():
        return path
    if not path.is_file():
        raise DatasetError(f"training data {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise DatasetError(f"training data {path} is neither a folder nor a ZIP archive")
    limits = limits or ZipLimits(max_total_bytes=max_bytes)
    return extract_zip(path, Path(extract_dir) if extract_dir is not None else default_extract_dir(), limits)


def inspect_zip(archive: str | Path, limits: ZipLimits | None = None, *, name: str | None = None) -> ZipContents:
    """Count and size every member, read each image's header inside the archive; DatasetError naming the file
    when the archive is unsafe or over a limit. Nothing is written."""
    archive, limits = Path(archive), limits or ZipLimits()
    shown = name or archive.name
    try:
        entries = _declared_entries(archive)  # before the directory is parsed: a million entries cost memory
        if entries is not None and entries > limits.max_members:
            raise DatasetError(f"{shown} has {entries:,} entries; at most {limits.max_members:,} are accepted")
        with zipfile.ZipFile(archive) as zf:
            return _inspect(zf, shown, limits)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DatasetError(f"{shown} is not a readable ZIP file ({err})") from err


def _declared_entries(archive: Path) -> int | None:
    """The entry count of the archive's end-of-directory record (None if it cannot be read that way)."""
    end_record = getattr(zipfile, "_EndRecData", None)
    if end_record is None:
        return None
    with archive.open("rb") as handle:
        record = end_record(handle)
    return None if not record else int(record[4])  # _ECD_ENTRIES_TOTAL


def _inspect(zf: zipfile.ZipFile, shown: str, limits: ZipLimits) -> ZipContents:
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise DatasetError(f"{shown} has {len(infos):,} entries; at most {limits.max_members:,} are accepted")
    files: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    for info in infos:
        member = info.filename.replace("\\", "/")
        rel = PurePosixPath(member)
        if member.startswith("/") or (len(member) > 1 and member[1] == ":") or ".." in rel.parts:
            raise DatasetError(f"{shown} contains the unsafe path {info.filename!r} (absolute or '..'); refusing it")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DatasetError(f"{shown} contains a symbolic link ({info.filename!r}); refusing it")
        if not info.is_dir() and rel.parts:
            files.append((info, rel))
    candidates, unused, unused_bytes = [], [], 0
    for info, rel in files:
        if rel.suffix.lower() in IMAGE_SUFFIXES and not _is_hidden(Path(*rel.parts)):
            candidates.append((info, rel))
        else:
            unused.append((info.filename, "not an image file type"))
            unused_bytes += info.file_size
    _check_unused(shown, limits, len(unused), unused_bytes)  # cheap: before any header is read
    if limits.max_images is not None and len(candidates) > limits.max_images:
        raise DatasetError(f"{shown} holds {len(candidates):,} images; this app accepts at most {limits.max_images:,} per ZIP")
    declared = sum(i.file_size for i, _ in candidates)
    if declared > limits.max_total_bytes:
        raise DatasetError(f"{shown} expands to {declared:,} bytes, over the {limits.max_total_bytes:,}-byte limit")
    images = []
    for info, rel in candidates:
        reason = _member_reason(zf, info, limits)
        if reason is None:
            images.append((info, rel))
        else:
            unused.append((info.filename, reason))
            unused_bytes += info.file_size
    _check_unused(shown, limits, len(unused), unused_bytes)
    return ZipContents(images, unused, sum(i.file_size for i, _ in images), unused_bytes)


def _check_unused(shown: str, limits: ZipLimits, count: int, size: int) -> None:
    if limits.max_unused_files is not None and count > limits.max_unused_files:
        raise DatasetError(f"{shown} holds {count:,} files that are not usable images; this app accepts at most "
                           f"{limits.max_unused_files:,} (put only the images in the ZIP)")
    if limits.max_unused_bytes is not None and size > limits.max_unused_bytes:
        raise DatasetError(f"{shown} holds {size / 1e6:,.1f} MB that are not usable images; this app accepts at most "
                           f"{limits.max_unused_bytes / 1e6:,.1f} MB (put only the images in the ZIP)")


def _member_reason(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ZipLimits) -> str | None:
    """None for an image member worth extracting (size, header, pixels), else why not (nothing is decoded)."""
    if limits.max_image_bytes is not None and info.file_size > limits.max_image_bytes:
        return f"{info.file_size / 1e6:,.1f} MB; at most {limits.max_image_bytes / 1e6:,.1f} MB per image"
    try:
        with zf.open(info) as stream, Image.open(stream) as img:
            width, height = img.size
    except Exception as err:  # Pillow raises many types on corrupt or hostile headers
        return f"cannot be read as an image ({type(err).__name__})"
    if min(width, height) < MIN_SIDE:
        return f"{width}x{height} pixels; at least {MIN_SIDE}x{MIN_SIDE} needed"
    if width * height > limits.max_image_pixels:
        return f"{width}x{height} pixels; at most {limits.max_image_pixels / 1e6:,.0f} megapixels"
    return None


def extract_zip(archive: Path, extract_dir: Path, limits: ZipLimits | int) -> Path:
    """Extract the usable images of `archive` under `extract_dir/<sha256 prefix>`; refuse unsafe or oversized
    archives (see `inspect_zip`). Sizes are checked again while writing: a directory may lie."""
    limits = ZipLimits(max_total_bytes=limits) if isinstance(limits, int) else limits
    digest = hashlib.sha256()
    with archive.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_COPY_CHUNK), b""):
            digest.update(chunk)
    target = extract_dir / digest.hexdigest()[:16]
    if (target / ".complete").exists():
        return target
    with zipfile.ZipFile(archive) as zf:
        contents = _inspect(zf, archive.name, limits)
        extract_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=extract_dir))
        try:
            written = 0
            for info, rel in contents.images:
                dest = staging.joinpath(*rel.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                member = 0
                with zf.open(info) as src, dest.open("wb") as out:
                    for chunk in iter(lambda: src.read(_COPY_CHUNK), b""):
                        written, member = written + len(chunk), member + len(chunk)
                        if written > limits.max_total_bytes or member > info.file_size:  # the directory lied
                            raise DatasetError(f"{archive.name} expands to more than its directory says; refusing it")
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
