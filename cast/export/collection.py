"""The files of a saved collection (layout: cast.collection.format): what one image adds, the merged COCO
JSON and FiftyOne README, and a ZIP of the whole folder.

COCO annotation ids: image_id * 100000 + level * 10000 + segment (image ids are unique in a collection and
fixed when the image is committed, so runs and processes never clash); `parent_id` is the annotation id of
the segment's parent at the next level (None at the coarsest). Masks describe the exported canvas (the part
of the image the model saw), stored as fiftyone/data/<stem>.png.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..hierarchy import Hierarchy, node_id
from PIL import Image

from ..render.overlays import fill_view
from .coco_rle import label_map_rles
from .one_image import _rgb_png, export_hierarchy, label_png

COLLECTION_DIR = "collection"
THUMB_SIDE = 192
_MAX_SEGMENTS = 10_000


def export_stems(names: Sequence[str | Path], taken: Sequence[str] = ()) -> list[str]:
    """A distinct, plain folder name per image: its file stem, with -2, -3, ... when stems repeat (case-blind);
    never one of `taken` (stems already in the collection) nor the collection's own folder name."""
    used, stems = {COLLECTION_DIR, *(t.casefold() for t in taken)}, []
    for name in names:
        base = Path(str(name).replace("\\", "/")).stem or "image"  # a Windows path sent from a browser
        stem, n = base, 1
        while stem.casefold() in used:
            n += 1
            stem = f"{base}-{n}"
        used.add(stem.casefold())
        stems.append(stem)
    return stems


def annotation_id(image_id: int, level: int, segment: int) -> int:
    """The COCO annotation id of a segment (see the module docstring)."""
    if segment >= _MAX_SEGMENTS:
        raise ValueError(f"segment id {segment} does not fit the annotation-id scheme (< {_MAX_SEGMENTS})")
    return image_id * 100_000 + level * _MAX_SEGMENTS + segment


def coco_annotations(hierarchy: Hierarchy, image_id: int) -> Iterator[dict[str, Any]]:
    """One COCO annotation per present segment of every level, with level, parent and probabilities."""
    for level in range(hierarchy.num_levels):
        rles = label_map_rles(hierarchy.labels(level))
        for record in hierarchy.records(level):
            parent = None if record.parent is None else annotation_id(image_id, level + 1, record.parent)
            x, y, w, h = record.bbox
            yield {
                "id": annotation_id(image_id, level, record.segment), "image_id": image_id, "category_id": level + 1,
                "segmentation": rles[record.segment], "area": record.area, "bbox": [x, y, w, h], "iscrowd": 0,
                "node_id": node_id(level, record.segment), "level": level, "segment": record.segment,
                "parent_id": parent, "parent_confidence": record.parent_confidence, "stability": record.stability,
            }  # fmt: skip


def write_image_files(out_dir: Path, stem: str, image_id: int, hierarchy: Hierarchy, rows: dict[str, np.ndarray], *,
                      full: bool, extra_provenance: dict[str, Any] | None = None) -> None:
    """Everything one image adds to a collection folder; written before the image is committed.

    `rows`: the staged arrays (segment table and embeddings per level) for `collection/images/<stem>.npz`.
    `full`: the image's own complete export, its COCO annotations and FiftyOne files; else hierarchy.json only."""
    out_dir = Path(out_dir)
    images = out_dir / COLLECTION_DIR / "images"
    images.mkdir(parents=True, exist_ok=True)
    if full:
        export_hierarchy(hierarchy, out_dir, stem=stem, extra_provenance=extra_provenance)
        with (images / f"{stem}.coco.jsonl").open("w") as handle:
            for annotation in coco_annotations(hierarchy, image_id):
                handle.write(json.dumps(annotation) + "\n")
        fiftyone = out_dir / COLLECTION_DIR / "fiftyone"
        if hierarchy.image is not None:
            (fiftyone / "data").mkdir(parents=True, exist_ok=True)
            (fiftyone / "data" / f"{stem}.png").write_bytes(_rgb_png(hierarchy.image))
        for level in range(hierarchy.num_levels):
            folder = fiftyone / f"labels_level{level}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{stem}.png").write_bytes(label_png(hierarchy.labels(level), offset=1, allow_8bit=True))
    else:
        (out_dir / stem).mkdir(parents=True, exist_ok=True)
        (out_dir / stem / "hierarchy.json").write_text(hierarchy.to_json(), encoding="utf-8")
    if hierarchy.image is not None:
        (images / f"{stem}.png").write_bytes(_rgb_png(hierarchy.image))
        write_thumbnails(out_dir / COLLECTION_DIR / "thumbs", stem, hierarchy)
    np.savez(images / f"{stem}.npz", **rows)


def write_thumbnails(folder: Path, stem: str, hierarchy: Hierarchy, side: int = THUMB_SIDE) -> None:
    """<stem>.level{l}.jpg: each level's segments over the image, the longer side `side` px (the gallery's)."""
    folder.mkdir(parents=True, exist_ok=True)
    scale = min(1.0, side / max(hierarchy.shape))
    small = hierarchy.resized(max(1, round(hierarchy.shape[0] * scale)), max(1, round(hierarchy.shape[1] * scale)))
    for level in range(small.num_levels):
        picture = fill_view(small.image, small.labels(level))
        Image.fromarray(picture).save(folder / f"{stem}.level{level}.jpg", quality=85)


def write_coco(out_dir: Path, items: Sequence[Any], level_names: Sequence[str]) -> Path:
    """collection/segments_coco.json from each image's staged annotations, in index order (streamed)."""
    root = Path(out_dir) / COLLECTION_DIR
    coco = root / "segments_coco.json"
    partial = coco.with_name(f".{coco.name}.{os.getpid()}.partial")
    with partial.open("w") as out:
        images = [{"id": i.image_id, "file_name": f"fiftyone/data/{i.stem}.png", "original_file": i.name,
                   "width": i.width, "height": i.height, "stem": i.stem} for i in items]
        categories = [{"id": lv + 1, "name": f"level {lv}", "supercategory": "segment", "description": name}
                      for lv, name in enumerate(level_names)]
        out.write('{"info": {"description": "CAST Explorer collection: every segment of every level"}, ')
        out.write(f'"images": {json.dumps(images)}, "categories": {json.dumps(categories)}, "annotations": [')
        first = True
        for item in items:
            with (root / "images" / f"{item.stem}.coco.jsonl").open() as handle:
                for line in handle:
                    out.write(("" if first else ",") + line.strip())
                    first = False
        out.write("]}\n")
    os.replace(partial, coco)
    (root / "fiftyone").mkdir(exist_ok=True)
    (root / "fiftyone" / "README.md").write_text(_fiftyone_readme(len(level_names)))
    return coco


def collection_zip(out_dir: Path, archive: Path) -> Path:
    """One ZIP of a saved collection folder, under its folder name: unzipped, it opens and resumes as it was."""
    out_dir, archive = Path(out_dir), Path(archive)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(out_dir.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                zf.write(path, Path(out_dir.name) / path.relative_to(out_dir))
    return archive


def zip_image_exports(out_dir: Path, stems: Sequence[str]) -> list[Path]:
    """One ZIP per image export folder (<stem>.zip beside <stem>/, the same paths as export_zip)."""
    out_dir, written = Path(out_dir), []
    for stem in stems:
        archive = out_dir / f"{stem}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted((out_dir / stem).rglob("*")):
                if path.is_file():
                    zf.write(path, Path(stem) / path.relative_to(out_dir / stem))
        written.append(archive)
    return written


def _fiftyone_readme(levels: int) -> str:
    return f"""# FiftyOne import of the whole collection

`data/` holds every image, `labels_level{{l}}/` their segment masks of level l (value = segment id + 1;
FiftyOne treats 0 as background), in FiftyOne's `ImageSegmentationDirectory` layout.

```python
from pathlib import Path

import fiftyone as fo

root = Path("collection/fiftyone").resolve()
dataset = fo.Dataset.from_dir(dataset_type=fo.types.ImageSegmentationDirectory, data_path=str(root / "data"),
                              labels_path=str(root / "labels_level0"), label_field="level_0")
for level in range(1, {levels}):  # one segmentation field per level, matched by image file
    dataset.merge_dir(dataset_type=fo.types.ImageSegmentationDirectory, data_path=str(root / "data"),
                      labels_path=str(root / f"labels_level{{level}}"), label_field=f"level_{{level}}")
```
"""
