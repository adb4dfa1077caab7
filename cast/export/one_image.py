"""Export one image's Hierarchy as files researchers can use elsewhere (CONVENTIONS: "Exports").

Layout under `<out_dir>/<stem>/` (the same paths inside the ZIP of :func:`export_zip`):

    labels/level{l}.png          lossless segment ids, 16-bit grayscale
    overlays/level{l}.png        coloured segments over the image (only with an image)
    overlays/grid.png            every level side by side (only with an image)
    overlays/boundary_map.png    UCM-style boundary map
    segments.json                one record per segment of every level, COCO RLE masks (SAM-style)
    metadata.csv                 one row per segment
    tree.json                    networkx tree data under the "image" root
    hierarchy.json               Hierarchy.to_json(), reloadable with Hierarchy.from_json
    provenance.json              model, checkpoint, superpixels, input, export date, format
    hierarchy.npz                superpixels, label maps and parent arrays as numpy arrays
    fiftyone/                    an ImageSegmentationDirectory layout, one label folder per level
"""
from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from ..hierarchy import Hierarchy
from ..render import overlays as render
from .coco_rle import label_map_rles

FORMAT_VERSION = "cast-explorer-export/1"

METADATA_COLUMNS = (
    "id", "level", "segment", "parent", "num_children", "area", "bbox_x", "bbox_y", "bbox_w", "bbox_h",
    "confidence", "runner_up", "runner_up_confidence", "stability",
)


@dataclass(frozen=True)
class ExportManifest:
    """Where an export went: its root folder and the files written, relative to it (POSIX paths)."""

    root: Path
    files: tuple[str, ...]


# ---------------------------------------------------------------- records
def segment_records(hierarchy: Hierarchy) -> list[dict[str, Any]]:
    """One SAM-style record per present segment of every level (fine to coarse), with COCO RLE."""
    records = []
    for level in range(hierarchy.num_levels):
        rles = label_map_rles(hierarchy.labels(level))
        records += [{**r.to_dict(), "segmentation": rles[r.segment]} for r in hierarchy.records(level)]
    return records


def metadata_csv(records: list[dict[str, Any]]) -> str:
    """metadata.csv text: one row per segment record (METADATA_COLUMNS)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(METADATA_COLUMNS)
    empty = lambda v: "" if v is None else v  # noqa: E731  (CSV has no null)
    for r in records:
        writer.writerow([
            r["id"], r["level"], r["segment"], empty(r["parent"]), len(r["children"]), r["area"], *r["bbox"],
            empty(r["parent_confidence"]), empty(r["runner_up_parent"]), empty(r["runner_up_confidence"]),
            empty(r.get("stability")),
        ])
    return buffer.getvalue()


def export_provenance(hierarchy: Hierarchy, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The hierarchy's provenance plus `extra`, image size, levels, export date and format version."""
    height, width = hierarchy.shape
    return {
        **(hierarchy.provenance.to_dict() if hierarchy.provenance is not None else {}),
        **(extra or {}),
        "image_size": {"height": int(height), "width": int(width)},
        "num_levels": hierarchy.num_levels,
        "level_names": [hierarchy.level_name(level) for level in range(hierarchy.num_levels)],
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "format": FORMAT_VERSION,
    }


# ---------------------------------------------------------------- encoders
def _png(array: np.ndarray, compress_level: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def _rgb_png(rgb: np.ndarray) -> bytes:
    # zlib level 1: about 4x faster than the default on photos, for files ~15% larger
    return _png(rgb, compress_level=1)


def label_png(labels: np.ndarray, *, offset: int = 0, allow_8bit: bool = False) -> bytes:
    """Lossless PNG of an (H, W) id map (+ offset): 16-bit grayscale ("I;16"), or 8-bit if allowed and it fits."""
    values = labels.astype(np.int64) + offset
    if values.min(initial=0) < 0 or values.max(initial=0) > np.iinfo(np.uint16).max:
        raise ValueError("segment ids must lie in 0..65535 to be stored as a 16-bit PNG")
    dtype = np.uint8 if allow_8bit and values.max(initial=0) <= np.iinfo(np.uint8).max else np.uint16
    return _png(values.astype(dtype))


def _npz(hierarchy: Hierarchy) -> bytes:
    arrays = {"superpixels": hierarchy.superpixels}
    for level in range(hierarchy.num_levels):
        arrays[f"labels_level{level}"] = hierarchy.labels(level)
    for level in range(hierarchy.num_levels - 1):
        arrays[f"parents_level{level}"] = hierarchy.parents[level]
        arrays[f"parent_prob_level{level}"] = hierarchy.parent_prob[level]
        arrays[f"runner_up_level{level}"] = hierarchy.runner_up[level]
        arrays[f"runner_up_prob_level{level}"] = hierarchy.runner_up_prob[level]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=1) + "\n").encode("utf-8")


def fiftyone_readme(stem: str, num_levels: int, has_image: bool) -> str:
    """How to load the fiftyone/ folder as one FiftyOne dataset with a field per level."""
    missing = "" if has_image else (
        f"\nThis export has no image: put the image into `data/` as `{stem}.<ext>` before importing.\n"
    )
    return f"""# FiftyOne import

`data/` holds the image and `labels_level{{l}}/` the segment masks of level l, in FiftyOne's
`ImageSegmentationDirectory` layout (masks are matched to images by file name).
Mask value = segment id + 1: FiftyOne treats 0 as background, so every segment stays visible.
`../labels/level{{l}}.png` holds the ids themselves.
{missing}
```python
from pathlib import Path

import fiftyone as fo

root = Path("{stem}/fiftyone").resolve()  # this folder
dataset = fo.Dataset.from_dir(
    dataset_type=fo.types.ImageSegmentationDirectory,
    data_path=str(root / "data"),
    labels_path=str(root / "labels_level0"),
    label_field="level_0",
)
for level in range(1, {num_levels}):
    dataset.merge_dir(  # samples are matched by image filepath, so each level becomes a new field
        dataset_type=fo.types.ImageSegmentationDirectory,
        data_path=str(root / "data"),
        labels_path=str(root / f"labels_level{{level}}"),
        label_field=f"level_{{level}}",
    )
session = fo.launch_app(dataset)
```

To collect several exports in one dataset, call `dataset.merge_dir(...)` as above for every level of
each further export folder.
"""


def export_files(
    hierarchy: Hierarchy, *, stem: str, extra_provenance: dict[str, Any] | None = None
) -> Iterator[tuple[str, bytes]]:
    """Yield (relative POSIX path, file bytes) for every file of one export, in a fixed order."""
    levels = range(hierarchy.num_levels)
    for level in levels:
        yield f"labels/level{level}.png", label_png(hierarchy.labels(level))
    if hierarchy.image is not None:
        for level in levels:
            yield f"overlays/level{level}.png", _rgb_png(render.fill_view(hierarchy.image, hierarchy.labels(level)))
        yield "overlays/grid.png", _rgb_png(render.render(hierarchy, "grid", 0))
    yield "overlays/boundary_map.png", _rgb_png(render.render(hierarchy, "boundary_map", 0))
    records = segment_records(hierarchy)
    yield "segments.json", (json.dumps(records) + "\n").encode("utf-8")
    yield "metadata.csv", metadata_csv(records).encode("utf-8")
    yield "tree.json", _json(hierarchy.tree_data())
    yield "hierarchy.json", hierarchy.to_json().encode("utf-8")
    yield "provenance.json", _json(export_provenance(hierarchy, extra_provenance))
    yield "hierarchy.npz", _npz(hierarchy)
    if hierarchy.image is not None:
        yield f"fiftyone/data/{stem}.png", _rgb_png(hierarchy.image)
    for level in levels:
        yield f"fiftyone/labels_level{level}/{stem}.png", label_png(hierarchy.labels(level), offset=1, allow_8bit=True)
    readme = fiftyone_readme(stem, hierarchy.num_levels, hierarchy.image is not None)
    yield "fiftyone/README.md", readme.encode("utf-8")


def _check_stem(stem: str) -> None:
    if not stem or stem in (".", "..") or any(c in stem for c in "/\\"):
        raise ValueError(f"stem must be a plain file name, got {stem!r}")


def export_hierarchy(
    hierarchy: Hierarchy, out_dir: Path, *, stem: str, extra_provenance: dict[str, Any] | None = None
) -> ExportManifest:
    """Write every export file of one hierarchy under `out_dir/stem/`."""
    _check_stem(stem)
    root = Path(out_dir) / stem
    written = []
    for rel, data in export_files(hierarchy, stem=stem, extra_provenance=extra_provenance):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(rel)
    return ExportManifest(root=root, files=tuple(written))


def export_zip(
    hierarchy: Hierarchy, zip_path: Path, *, stem: str, extra_provenance: dict[str, Any] | None = None
) -> Path:
    """Write the same files as :func:`export_hierarchy` into one ZIP, under a `stem/` folder."""
    _check_stem(stem)
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for rel, data in export_files(hierarchy, stem=stem, extra_provenance=extra_provenance):
            archive.writestr(f"{stem}/{rel}", data)
    return zip_path
