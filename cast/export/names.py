"""Segment names in exports (spec §11): COCO categories from the vocabulary, and a name per record.

`names_coco(hierarchy, names)` is a COCO result file of the named segments: `categories` from the
vocabulary (objects, their parts with the object as supercategory, and the background), and one
annotation per named segment with its category, score, level and RLE mask. The other helpers add
`name` / `name_score` to the records of segments.json, metadata.csv and tree.json.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..hierarchy import Hierarchy
from ..hierarchy.records import node_id
from .coco_rle import label_map_rles

if TYPE_CHECKING:
    from ..naming import HierarchyNames, Vocabulary

NAME_COLUMNS = ("name", "name_score", "name_kind")


def vocabulary_categories(vocabulary: "Vocabulary") -> list[dict[str, Any]]:
    """COCO categories: objects (ids 1..n), then their parts (supercategory = the object), then background."""
    categories = [{"id": i + 1, "name": o, "supercategory": "object"} for i, o in enumerate(vocabulary.objects)]
    for obj, parts in zip(vocabulary.objects, vocabulary.parts):
        for part in parts:
            categories.append({"id": len(categories) + 1, "name": part, "supercategory": obj})
    categories.append({"id": len(categories) + 1, "name": vocabulary.background, "supercategory": "background"})
    return categories


def category_ids(vocabulary: "Vocabulary") -> dict[tuple[str, str], int]:
    """(kind, name) -> COCO category id; the background is one category for objects and parts."""
    ids: dict[tuple[str, str], int] = {}
    for c in vocabulary_categories(vocabulary):
        kind = "part" if c["supercategory"] not in ("object", "background") else "object"
        ids[(kind, c["name"])] = c["id"]
        if c["supercategory"] == "background":
            ids[("part", c["name"])] = c["id"]
    for obj in vocabulary.objects:  # a part level named without parts uses the objects
        ids.setdefault(("part", obj), ids[("object", obj)])
    return ids


def names_coco(hierarchy: Hierarchy, names: "HierarchyNames", *, file_name: str = "image.png") -> dict[str, Any]:
    """A COCO result file of the named segments of one hierarchy (see the module docstring)."""
    height, width = hierarchy.shape
    ids = category_ids(names.vocabulary)
    annotations = []
    for level in names.levels:
        rles = label_map_rles(hierarchy.labels(level))
        for record in hierarchy.records(level):
            named = names.name_of(level, record.segment)
            if named is None:
                continue
            annotations.append({
                "id": len(annotations) + 1, "image_id": 1, "category_id": ids[(named.kind, named.name)],
                "segmentation": rles[record.segment], "area": record.area, "bbox": list(record.bbox), "iscrowd": 0,
                "score": round(named.score, 6), "level": level, "segment": record.segment, "segment_id": record.id,
                "name": named.name, "kind": named.kind,
            })  # fmt: skip
    return {
        "info": {"description": "CAST segments named zero-shot by CLIP (spec §11)", "clip_model": names.clip_model,
                 "vocabulary": names.vocabulary.describe(), "object_level": names.object_level,
                 "part_levels": list(names.part_levels)},
        "images": [{"id": 1, "file_name": file_name, "width": width, "height": height}],
        "categories": vocabulary_categories(names.vocabulary),
        "annotations": annotations,
    }  # fmt: skip


def name_fields(names: "HierarchyNames | None", level: int, segment: int) -> dict[str, Any]:
    """{"name", "name_score", "name_kind"} of one segment (None values where it was not named)."""
    named = None if names is None else names.name_of(level, segment)
    if named is None:
        return dict.fromkeys(NAME_COLUMNS)
    return {"name": named.name, "name_score": round(named.score, 6), "name_kind": named.kind}


def named_tree(tree: dict[str, Any], names: "HierarchyNames") -> dict[str, Any]:
    """networkx tree data with `name` / `name_score` on every named node (in place; returned)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        level, segment = node.get("level"), node.get("segment")
        if level is not None and segment is not None and node.get("id") == node_id(level, segment):
            named = names.name_of(level, segment)
            if named is not None:
                node["name"], node["name_score"] = named.name, round(named.score, 6)
        stack.extend(node.get("children", []))
    return tree
