"""Export a collection: every image's own exports, one COCO-style JSON with every segment of every level of
every image (parent ids included), a FiftyOne-importable data set with one segmentation field per level,
and CAST's segment embeddings for `cast search`. Written image by image, so memory stays bounded.

Layout under `out_dir/`:

    <stem>/...                         each image's export (cast.export.one_image)
    collection/segments_coco.json      images, annotations (one per segment per level), categories = levels
    collection/items.jsonl             one line per image: index, name, stem, levels (read by `cast search`)
    collection/embeddings/<stem>.npz   ids{l}: present segment ids, level{l}: their (n, C) float16 embeddings
    collection/fiftyone/data/<stem>.png, collection/fiftyone/labels_level{l}/<stem>.png, README.md

COCO annotation ids: image_id * 100000 + level * 10000 + segment (image ids start at 1 and follow the input
order, so shards written by different processes merge without clashes); `parent_id` is the annotation id
of the segment's parent at the next level (None at the coarsest).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..hierarchy import Hierarchy, node_id
from .coco_rle import label_map_rles
from .names import name_fields
from .one_image import _rgb_png, export_hierarchy, label_png

COLLECTION_DIR = "collection"
_MAX_SEGMENTS = 10_000


def export_stems(names: Sequence[str | Path]) -> list[str]:
    """A distinct, plain folder name per image: its file stem, with -2, -3, ... when stems repeat (case-blind);
    never the collection's own folder name."""
    taken, stems = {COLLECTION_DIR}, []
    for name in names:
        base = Path(name).stem.replace("\\", "_") or "image"  # a Windows path sent from a browser
        stem, n = base, 1
        while stem.casefold() in taken:
            n += 1
            stem = f"{base}-{n}"
        taken.add(stem.casefold())
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
                "id": annotation_id(image_id, level, record.segment),
                "image_id": image_id,
                "category_id": level + 1,
                "segmentation": rles[record.segment],
                "area": record.area,
                "bbox": [x, y, w, h],
                "iscrowd": 0,
                "node_id": node_id(level, record.segment),
                "level": level,
                "segment": record.segment,
                "parent_id": parent,
                "parent_confidence": record.parent_confidence,
                "stability": record.stability,
            }


@dataclass
class CollectionWriter:
    """Writes a collection export one image at a time; `close()` merges the parts into the final files.

    `part` names this writer's part files (e.g. the rank under torchrun); one writer per process.
    """

    out_dir: Path
    part: str = "0"
    _items: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.root = self.out_dir / COLLECTION_DIR
        for sub in ("embeddings", "fiftyone/data", "parts"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._annotations = (self.root / "parts" / f"annotations.{self.part}.jsonl").open("w")

    def add(self, position: int, name: str, stem: str, hierarchy: Hierarchy, embeddings: Sequence[np.ndarray] = (),
            extra_provenance: dict[str, Any] | None = None, names: Any = None) -> None:
        """Write one image (its own export, its COCO annotations, embeddings and FiftyOne files); with
        `names` (cast.naming.HierarchyNames) the export and the annotations carry each segment's name."""
        export_hierarchy(hierarchy, self.out_dir, stem=stem, extra_provenance=extra_provenance, names=names)
        image_id = position + 1
        for annotation in coco_annotations(hierarchy, image_id):
            if names is not None:
                annotation.update(name_fields(names, annotation["level"], annotation["segment"]))
            self._annotations.write(json.dumps(annotation) + "\n")
        if embeddings:  # the present segments' rows only, with their ids
            arrays = {}
            for level, vectors in enumerate(embeddings):
                ids = hierarchy.segment_ids(level)
                ids = ids[ids < len(vectors)]
                arrays[f"ids{level}"], arrays[f"level{level}"] = ids.astype(np.int32), vectors[ids].astype(np.float16)
            np.savez_compressed(self.root / "embeddings" / f"{stem}.npz", **arrays)
        if hierarchy.image is not None:
            (self.root / "fiftyone" / "data" / f"{stem}.png").write_bytes(_rgb_png(hierarchy.image))
        for level in range(hierarchy.num_levels):
            folder = self.root / "fiftyone" / f"labels_level{level}"
            folder.mkdir(exist_ok=True)
            (folder / f"{stem}.png").write_bytes(label_png(hierarchy.labels(level), offset=1, allow_8bit=True))
        height, width = hierarchy.shape
        self._items.append({"index": position, "image_id": image_id, "name": name, "stem": stem, "width": width,
                            "height": height, "levels": [hierarchy.level_name(lv) for lv in range(hierarchy.num_levels)],
                            "embeddings": bool(embeddings)})

    def close(self) -> None:
        """Finish this writer's part (the items it wrote)."""
        self._annotations.close()
        with (self.root / "parts" / f"items.{self.part}.jsonl").open("w") as handle:
            for item in self._items:
                handle.write(json.dumps(item) + "\n")


def merge_collection(out_dir: Path, num_levels: int | None = None) -> Path:
    """Merge every writer's parts into items.jsonl and segments_coco.json (streamed), and the FiftyOne README."""
    root = Path(out_dir) / COLLECTION_DIR
    parts = root / "parts"
    items = sorted((json.loads(line) for p in sorted(parts.glob("items.*.jsonl")) for line in p.read_text().splitlines()),
                   key=lambda item: item["index"])
    with (root / "items.jsonl").open("w") as handle:
        for item in items:
            handle.write(json.dumps(item) + "\n")
    levels = num_levels if num_levels is not None else max((len(i["levels"]) for i in items), default=0)
    level_names = items[0]["levels"] if items else [f"level {lv}" for lv in range(levels)]
    coco = root / "segments_coco.json"
    partial = coco.with_name(f".{coco.name}.{os.getpid()}.partial")
    with partial.open("w") as out:
        # the masks describe the exported canvas (the part of the image the model saw), stored in fiftyone/data/
        images = [{"id": i["image_id"], "file_name": f"fiftyone/data/{i['stem']}.png", "original_file": i["name"],
                   "width": i["width"], "height": i["height"], "stem": i["stem"]} for i in items]
        categories = [{"id": lv + 1, "name": f"level {lv}", "supercategory": "segment", "description": level_names[lv]}
                      for lv in range(levels)]
        out.write('{"info": {"description": "CAST Explorer collection: every segment of every level"}, ')
        out.write(f'"images": {json.dumps(images)}, "categories": {json.dumps(categories)}, "annotations": [')
        first = True
        for part in sorted(parts.glob("annotations.*.jsonl")):
            with part.open() as handle:
                for line in handle:
                    out.write(("" if first else ",") + line.strip())
                    first = False
        out.write("]}\n")
    os.replace(partial, coco)
    (root / "fiftyone" / "README.md").write_text(_fiftyone_readme(levels))
    return root


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
