"""A saved collection, opened lazily: the manifest and image list at once, everything else on first use.

    collection = cast.open_collection("audit/")
    len(collection), collection.names()[:3], collection.hierarchy(0)
    collection.search(image_index=0, level=2, x=120, y=80, top_k=10)   # the same records as the app's /search

Segment embeddings and per-segment numbers are memory-mapped (np.load(mmap_mode="r")): opening 10,000
images reads two small files; a search reads one level's matrix (benchmarks/bench_collection.py).
"""
from __future__ import annotations

import functools
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from ..hierarchy import Hierarchy
from . import ann
from .build import query_segment
from .format import DATA_DIR, CollectionError, ItemRecord, Manifest, read_manifest
from .search import LevelMatrix, SearchHit, SegmentIndex
from .tables import per_image_means

HIERARCHY_CACHE = 64  # hierarchies kept decoded per open collection (a gallery page and a few searches)


class Collection:
    """A collection folder (cast.collection.format), read lazily and never written."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.manifest: Manifest = read_manifest(self.folder)
        if not self.manifest.complete:
            raise CollectionError(f"{self.folder} is incomplete: a `cast segment` run into it stopped before it "
                                  "finished (or is still running). Run the same command again to finish it.")
        items = self.folder / DATA_DIR / "items.jsonl"
        try:
            self.items: list[ItemRecord] = [ItemRecord.from_json(line) for line in
                                            items.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CollectionError(f"{items} is damaged or missing ({err}): run `cast segment` into the folder "
                                  "again to rebuild it") from err
        if len(self.items) != self.manifest.images:
            raise CollectionError(f"{self.folder} is damaged: collection.json lists {self.manifest.images} images, "
                                  f"items.jsonl {len(self.items)}. Run `cast segment` into it again to rebuild it")
        self._names = [item.name for item in self.items]
        self._levels: dict[int, tuple[np.ndarray, LevelMatrix | None]] = {}
        self._hierarchy = functools.lru_cache(HIERARCHY_CACHE)(self._load_hierarchy)
        self._image_values: dict[tuple[int, str], np.ndarray] = {}

    # ---------------------------------------------------------------- what it holds
    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"Collection({str(self.folder)!r}, {len(self)} images, {self.settings.describe()})"

    @property
    def settings(self):
        return self.manifest.settings

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def num_levels(self) -> int:
        return len(self.manifest.level_names)

    @property
    def level_names(self) -> list[str]:
        return list(self.manifest.level_names)

    def names(self) -> list[str]:
        return list(self._names)

    def item(self, index: int) -> ItemRecord:
        if not 0 <= int(index) < len(self.items):
            raise CollectionError(f"image index {index} is outside this collection (0..{len(self.items) - 1})")
        return self.items[int(index)]

    def find(self, name: str) -> int:
        """The index of an image by its name (a/img.jpg), file name (img.jpg) or stem, if that is unambiguous."""
        exact = [i for i, n in enumerate(self._names) if n == name]
        if len(exact) == 1:
            return exact[0]
        loose = exact or [i for i, item in enumerate(self.items)
                          if name in (PurePosixPath(item.name).name, item.stem, PurePosixPath(item.name).stem)]
        if not loose:
            raise CollectionError(f"no image {name!r} in the collection {self.folder}")
        if len(loose) > 1:
            listed = ", ".join(self._names[i] for i in loose[:5])
            raise CollectionError(f"{name!r} is ambiguous in {self.folder}: {listed}. Give the name as listed")
        return loose[0]

    def source(self, index: int) -> Path | None:
        """The original file, if it is still where it was segmented from."""
        text = self.item(index).source
        return Path(text) if text and Path(text).is_file() else None

    def hierarchy(self, index: int) -> Hierarchy:
        """The saved hierarchy of image `index`, with the picture it describes (no recomputation)."""
        self.item(index)  # checks the range
        return self._hierarchy(int(index))

    def _load_hierarchy(self, index: int) -> Hierarchy:
        item = self.items[index]
        path = self.folder / item.stem / "hierarchy.json"
        picture = self.folder / DATA_DIR / "images" / f"{item.stem}.png"
        try:
            image = None
            if picture.is_file():  # written by the collection itself: an 8-bit RGB PNG, no EXIF to honour
                with Image.open(picture) as png:
                    image = np.asarray(png.convert("RGB"))
            return Hierarchy.from_json(path.read_text(encoding="utf-8"), image=image)
        except (OSError, ValueError) as err:
            raise CollectionError(f"{item.name}: its saved hierarchy {path} cannot be read ({err})") from err

    # ---------------------------------------------------------------- per-segment numbers and search
    def segment_table(self, level: int) -> np.ndarray:
        """Every present segment of `level` (format.ROW_DTYPE: image, segment, area, confidence, stability,
        norms), grouped by image; memory-mapped."""
        return self._level(level)[0]

    @property
    def index(self) -> SegmentIndex:
        return SegmentIndex({lv: m for lv in range(self.num_levels) if (m := self._level(lv)[1]) is not None},
                            self._names)

    def search(self, image_index: int, level: int, x: float | None = None, y: float | None = None, *,
               segment: int | None = None, top_k: int = 10, include_query_image: bool = False,
               centre: bool = False) -> list[SearchHit]:
        """The segment of `level` under (x, y) of image `image_index` (pixels of its original image), or
        `segment`, first (similarity 1), then the most similar segments of that level across the collection:
        of the other images unless `include_query_image`; `centre` subtracts each image's mean embedding first."""
        if segment is None:
            segment = query_segment(self.hierarchy(image_index), self.item(image_index).name, level, x, y)
        return SegmentIndex({level: self._matrix(level)}, self._names).search(
            int(image_index), int(level), int(segment), top_k, include_query_image=include_query_image, centre=centre)

    def similarities(self, image_index: int, level: int, segment: int, centre: bool = False) -> np.ndarray:
        """Similarity of every segment of image `image_index` to one of them (NaN where absent): a heat map."""
        return SegmentIndex({level: self._matrix(level)}, self._names).similarities(image_index, level, segment, centre)

    def image_values(self, level: int, key: str) -> np.ndarray:
        """(n_images,) one number per image at `level`: "segments" (count), or the mean "stability",
        "confidence" or "area" of its segments (NaN where not measured). For sorting and filtering."""
        cache_key = (int(level), key)
        if cache_key not in self._image_values:
            table = self.segment_table(level)
            if key == "segments":
                values = np.bincount(table["image"], minlength=len(self)).astype(np.float64)
            elif key in ("stability", "confidence", "area"):
                values = per_image_means(table, key, len(self))
            else:
                raise ValueError(f"unknown per-image value {key!r}")
            self._image_values[cache_key] = values
        return self._image_values[cache_key]

    def statistics(self) -> dict[str, Any]:
        """Per level: images, segments, mean segments per image, mean area, confidence and stability."""
        levels = []
        for level in range(self.num_levels):
            table = self.segment_table(level)
            mean = lambda column: float(np.nanmean(table[column])) if np.isfinite(table[column]).any() else None  # noqa: E731
            levels.append({"level": level, "name": self.manifest.level_names[level], "segments": int(len(table)),
                           "segments_per_image": len(table) / max(1, len(self)), "mean_area": mean("area"),
                           "mean_confidence": mean("confidence"), "mean_stability": mean("stability")})
        return {"images": len(self), "failed": self.manifest.failed, "settings": self.settings.describe(),
                "levels": levels}

    def _matrix(self, level: int) -> LevelMatrix:
        matrix = self._level(level)[1]
        if matrix is None:
            raise CollectionError(f"level {level} of {self.folder} has no segment embeddings (the ViT baseline "
                                  "has none): search needs a CAST model")
        return matrix

    def _level(self, level: int) -> tuple[np.ndarray, LevelMatrix | None]:
        if level not in self._levels:
            if not 0 <= level < self.num_levels:
                raise CollectionError(f"level {level} is outside 0..{self.num_levels - 1}")
            self._levels[level] = self._open_level(level)
        return self._levels[level]

    def _open_level(self, level: int) -> tuple[np.ndarray, LevelMatrix | None]:
        data = self.folder / DATA_DIR
        try:
            rows = np.load(data / f"level{level}.segments.npy", mmap_mode="r")
            matrix = None
            if self.manifest.embedding_dim:
                vectors = np.load(data / f"level{level}.embeddings.npy", mmap_mode="r")
                means = np.load(data / f"level{level}.means.npy", mmap_mode="r")
                if vectors.shape != (len(rows), self.manifest.embedding_dim) or means.shape[0] != len(self):
                    raise ValueError(f"{len(rows)} segments but embeddings {vectors.shape}, means {means.shape}")
                index = data / f"level{level}.faiss"
                # the small per-row columns in memory (16 bytes a row), contiguous for binary search; vectors mapped
                column = lambda name: np.ascontiguousarray(rows[name])  # noqa: E731
                matrix = LevelMatrix(vectors, column("image"), column("segment"), column("norm"), means,
                                     column("centred_norm"), ann.load_index(index) if index.is_file() else None)
        except (OSError, ValueError) as err:
            raise CollectionError(f"{self.folder} is damaged at level {level} ({err}): run `cast segment` into it "
                                  "again to rebuild it") from err
        if len(rows) and int(rows["image"][-1]) >= len(self):
            raise CollectionError(f"{self.folder} is damaged at level {level}: segments of images it does not list")
        return rows, matrix


def open_collection(path: str | Path) -> Collection:
    """Open a saved collection folder (the --out of `cast segment`, or one the app saved)."""
    return Collection(path)


def is_collection(path: str | Path) -> bool:
    """Whether a folder holds a collection manifest (it may still be incomplete or damaged)."""
    from .format import MANIFEST

    return (Path(path) / MANIFEST).is_file()
