"""Which files a collection run takes: files as given, folders searched recursively for image files.

A file with an image suffix is always taken, even if it will not decode, so that its failure is reported
(index.csv, the failure count) rather than silently skipped; other files are listed as skipped."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..datasets import IMAGE_SUFFIXES
from .format import CollectionError


@dataclass(frozen=True)
class InputFiles:
    """Image files in run order, the name each is known by in the collection, and what was passed over."""

    paths: list[Path]
    names: list[str]  # relative to the folder it was found in (a/img.jpg), or the file name
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def list_inputs(inputs: Sequence[str | Path]) -> InputFiles:
    """Files and folders -> image files (folders recursively, sorted; hidden files left out).

    A path that does not exist is an error at once, before any model is loaded."""
    missing = [str(p) for p in inputs if not Path(p).exists()]
    if missing:
        raise CollectionError(f"{', '.join(missing)}: no such file or folder")
    paths: list[Path] = []
    names: list[str] = []
    skipped: list[tuple[Path, str]] = []
    for item in map(Path, inputs):
        if not item.is_dir():
            paths.append(item)
            names.append(item.name)
            continue
        for dirpath, dirnames, filenames in os.walk(item):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                path = Path(dirpath) / filename
                if filename.startswith("."):
                    continue
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    skipped.append((path, f"not an image file type ({path.suffix or 'no extension'})"))
                    continue
                paths.append(path)
                names.append(path.relative_to(item).as_posix())
    if not paths:
        raise CollectionError(f"no images found in {', '.join(map(str, inputs))} (looked for "
                              f"{', '.join(sorted(IMAGE_SUFFIXES))})")
    return InputFiles(paths, names, skipped)
