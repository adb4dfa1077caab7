"""Exports of a real hierarchy: every file, lossless round trips, COCO RLE, ZIP, and the batch CLI."""
from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from skimage import data

from cast.export import (
    FORMAT_VERSION,
    METADATA_COLUMNS,
    ExportManifest,
    coco_rle_to_mask,
    export_hierarchy,
    export_zip,
    label_map_rles,
    mask_to_coco_rle,
)
from cast.hierarchy import ROOT_ID, Hierarchy, node_id
from cast.segmenter import Segmenter

STEM = "chelsea"


@pytest.fixture(scope="module")
def hierarchy(reference_hierarchy: Hierarchy) -> Hierarchy:
    return reference_hierarchy


@pytest.fixture(scope="module")
def exported(hierarchy: Hierarchy, tmp_path_factory: pytest.TempPathFactory) -> ExportManifest:
    return export_hierarchy(hierarchy, tmp_path_factory.mktemp("export"), stem=STEM,
                            extra_provenance={"checkpoint": "tiny_cast.safetensors"})


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.array(img)


# ---------------------------------------------------------------- COCO RLE
def reference_rle(mask: np.ndarray) -> list[int]:
    """Plain-Python COCO RLE: walk the pixels column by column, counting runs of 0 then 1 then 0 ..."""
    counts, current, run = [], False, 0
    for value in mask.T.ravel().tolist():
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return counts


@settings(max_examples=200, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_rle_matches_reference_and_round_trips(mask: np.ndarray) -> None:
    rle = mask_to_coco_rle(mask)
    assert rle["size"] == list(mask.shape)
    assert rle["counts"] == reference_rle(mask)
    assert np.array_equal(coco_rle_to_mask(rle), mask)


def test_rle_of_a_label_map_matches_per_mask_encoding(hierarchy: Hierarchy) -> None:
    big = hierarchy.resized(1000, 1000)  # a 1-megapixel map
    for level in (0, 4):
        labels = big.labels(level)
        rles = label_map_rles(labels)
        assert sorted(rles) == big.segment_ids(level).tolist()
        for seg, rle in rles.items():
            assert rle == mask_to_coco_rle(labels == seg)


def test_rle_edge_cases() -> None:
    full, empty = np.ones((3, 4), bool), np.zeros((3, 4), bool)
    assert mask_to_coco_rle(full)["counts"] == [0, 12]
    assert mask_to_coco_rle(empty)["counts"] == [12]
    tall = np.array([[1], [0], [1]], bool)
    assert mask_to_coco_rle(tall)["counts"] == [0, 1, 1, 1]
    # column-major: the first column is scanned top to bottom before the second
    corner = np.array([[0, 1], [0, 0]], bool)
    assert mask_to_coco_rle(corner)["counts"] == [2, 1, 1]
    with pytest.raises(ValueError):
        coco_rle_to_mask({"size": [2, 2], "counts": [1, 1]})


def test_rle_agrees_with_pycocotools(hierarchy: Hierarchy) -> None:
    mask_api = pytest.importorskip("pycocotools.mask", reason="pycocotools not installed; only its comparison is skipped")
    for level in range(hierarchy.num_levels):
        for seg in hierarchy.segment_ids(level)[:10].tolist():
            mask = hierarchy.mask(level, seg)
            rle = mask_to_coco_rle(mask)
            compressed = mask_api.frPyObjects(rle, *rle["size"])
            assert np.array_equal(mask_api.decode(compressed).astype(bool), mask)
            ours = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
            assert ours["counts"] == compressed["counts"]
            assert int(mask_api.area(compressed)) == int(mask.sum())


# ---------------------------------------------------------------- the export folder
def test_every_file_is_written(exported: ExportManifest, hierarchy: Hierarchy) -> None:
    levels = range(hierarchy.num_levels)
    expected = {
        *(f"labels/level{l}.png" for l in levels),
        *(f"overlays/level{l}.png" for l in levels),
        "overlays/grid.png", "overlays/boundary_map.png",
        "segments.json", "metadata.csv", "tree.json", "hierarchy.json", "provenance.json", "hierarchy.npz",
        f"fiftyone/data/{STEM}.png", *(f"fiftyone/labels_level{l}/{STEM}.png" for l in levels), "fiftyone/README.md",
    }
    assert set(exported.files) == expected
    on_disk = {p.relative_to(exported.root).as_posix() for p in exported.root.rglob("*") if p.is_file()}
    assert on_disk == expected
    assert exported.root.name == STEM
    for rel in exported.files:
        assert (exported.root / rel).stat().st_size > 0, rel


def test_label_pngs_are_16_bit_and_lossless(exported: ExportManifest, hierarchy: Hierarchy) -> None:
    for level in range(hierarchy.num_levels):
        with Image.open(exported.root / f"labels/level{level}.png") as img:
            assert img.mode == "I;16"
            ids = np.array(img)
        assert np.array_equal(ids, hierarchy.labels(level))


def test_fiftyone_layout(exported: ExportManifest, hierarchy: Hierarchy) -> None:
    fo_dir = exported.root / "fiftyone"
    assert np.array_equal(read_png(fo_dir / "data" / f"{STEM}.png"), hierarchy.image)
    for level in range(hierarchy.num_levels):
        mask = read_png(fo_dir / f"labels_level{level}" / f"{STEM}.png")
        assert mask.ndim == 2 and mask.min() >= 1  # 0 is FiftyOne's background
        assert np.array_equal(mask.astype(np.int64) - 1, hierarchy.labels(level))
    readme = (fo_dir / "README.md").read_text()
    assert "fo.types.ImageSegmentationDirectory" in readme and "merge_dir" in readme and 'label_field="level_0"' in readme


def test_overlays_show_the_segments(exported: ExportManifest, hierarchy: Hierarchy) -> None:
    for level in range(hierarchy.num_levels):
        overlay = read_png(exported.root / f"overlays/level{level}.png")
        assert overlay.shape == hierarchy.image.shape
        assert not np.array_equal(overlay, hierarchy.image)
    assert read_png(exported.root / "overlays/boundary_map.png").shape[:2] == hierarchy.shape


def test_segment_records(exported: ExportManifest, hierarchy: Hierarchy) -> None:
    records = json.loads((exported.root / "segments.json").read_text())
    by_id = {r["id"]: r for r in records}
    assert len(by_id) == len(records)
    for level in range(hierarchy.num_levels):
        present = hierarchy.segment_ids(level).tolist()
        assert sorted(r["segment"] for r in records if r["level"] == level) == present
        for seg in present:
            r = by_id[node_id(level, seg)]
            mask = coco_rle_to_mask(r["segmentation"])
            assert np.array_equal(mask, hierarchy.mask(level, seg))
            rows, cols = np.nonzero(mask)
            assert r["area"] == mask.sum()
            assert r["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]
            assert len(r["mean_color"]) == 3
            parent = hierarchy.parent_of(level, seg)
            if parent is None:
                assert r["parent"] is None and r["parent_confidence"] is None
            else:
                assert r["parent"] == node_id(level + 1, parent)
                assert node_id(level, seg) in by_id[r["parent"]]["children"]  # the parent lists it back
                assert r["parent_confidence"] == pytest.approx(hierarchy.parent_confidence(level, seg))
                assert r["runner_up_parent"] != r["parent"]
                assert 0 <= r["runner_up_confidence"] <= r["parent_confidence"] <= 1
            assert r["children"] == [node_id(level - 1, c) for c in hierarchy.children_of(level, seg)]
            for child in r["children"]:
                assert by_id[child]["parent"] == r["id"]


def test_metadata_csv(exported: ExportManifest) -> None:
    records = json.loads((exported.root / "segments.json").read_text())
    with (exported.root / "metadata.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == METADATA_COLUMNS
    assert len(rows) == len(records)
    for row, r in zip(rows, records):
        assert row["id"] == r["id"] and int(row["area"]) == r["area"] and int(row["num_children"]) == len(r["children"])
        assert [int(row[k]) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")] == r["bbox"]
        assert row["parent"] == (r["parent"] or "")


def test_tree_json(exported: ExportManifest, hierarchy: Hierarchy) -> None:
    tree = json.loads((exported.root / "tree.json").read_text())
    coarsest = hierarchy.num_levels - 1
    assert tree["id"] == ROOT_ID
    assert sorted(child["id"] for child in tree["children"]) == [node_id(coarsest, s) for s in hierarchy.segment_ids(coarsest)]

    def leaves(node: dict) -> int:
        return sum(leaves(c) for c in node["children"]) if node.get("children") else 1

    assert leaves(tree) == len(hierarchy.segment_ids(0))  # every superpixel hangs under the root


def test_hierarchy_json_and_npz_are_lossless(exported: ExportManifest, hierarchy: Hierarchy) -> None:
    reloaded = Hierarchy.from_json((exported.root / "hierarchy.json").read_text())
    npz = np.load(exported.root / "hierarchy.npz")
    assert np.array_equal(npz["superpixels"], hierarchy.superpixels)
    for level in range(hierarchy.num_levels):
        assert np.array_equal(reloaded.labels(level), hierarchy.labels(level))
        assert np.array_equal(npz[f"labels_level{level}"], hierarchy.labels(level))
    for level in range(hierarchy.num_levels - 1):
        assert np.array_equal(npz[f"parents_level{level}"], hierarchy.parents[level])
        assert np.array_equal(npz[f"parent_prob_level{level}"], hierarchy.parent_prob[level])


def test_provenance(exported: ExportManifest, hierarchy: Hierarchy) -> None:
    prov = json.loads((exported.root / "provenance.json").read_text())
    assert prov["model_variant"] == "cast_tiny" and prov["checkpoint"] == "tiny_cast.safetensors"
    assert prov["image_size"] == {"height": 224, "width": 224}
    assert prov["num_levels"] == hierarchy.num_levels
    assert prov["level_names"] == [hierarchy.level_name(l) for l in range(hierarchy.num_levels)]
    assert prov["format"] == FORMAT_VERSION and prov["exported_at"]


def test_export_is_deterministic(exported: ExportManifest, hierarchy: Hierarchy, tmp_path: Path) -> None:
    again = export_hierarchy(hierarchy, tmp_path, stem=STEM, extra_provenance={"checkpoint": "tiny_cast.safetensors"})
    assert again.files == exported.files
    for rel in exported.files:
        if rel not in ("provenance.json", "hierarchy.npz"):  # export date; zip entry timestamps
            assert (again.root / rel).read_bytes() == (exported.root / rel).read_bytes(), rel


def test_zip_holds_the_same_files(exported: ExportManifest, hierarchy: Hierarchy, tmp_path: Path) -> None:
    path = export_zip(hierarchy, tmp_path / "out.zip", stem=STEM, extra_provenance={"checkpoint": "tiny_cast.safetensors"})
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == sorted(f"{STEM}/{rel}" for rel in exported.files)
        for rel in exported.files:
            if rel not in ("provenance.json", "hierarchy.npz"):  # export date; zip entry timestamps
                assert archive.read(f"{STEM}/{rel}") == (exported.root / rel).read_bytes(), rel
        with Image.open(io.BytesIO(archive.read(f"{STEM}/labels/level2.png"))) as img:
            assert np.array_equal(np.array(img), hierarchy.labels(2))


def test_export_without_image(hierarchy: Hierarchy, tmp_path: Path) -> None:
    bare = Hierarchy.from_json(hierarchy.to_json())
    manifest = export_hierarchy(bare, tmp_path, stem="bare")
    assert not any(f.startswith("overlays/level") or f.startswith("fiftyone/data") for f in manifest.files)
    assert "overlays/boundary_map.png" in manifest.files
    records = json.loads((manifest.root / "segments.json").read_text())
    assert all(r["mean_color"] is None for r in records)


def test_bad_stem_is_refused(hierarchy: Hierarchy, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="stem"):
        export_hierarchy(hierarchy, tmp_path, stem="../escape")


# ---------------------------------------------------------------- with the model: Segmenter and CLI
def test_export_of_a_segmenter_hierarchy(tiny_segmenter: Segmenter, tmp_path: Path) -> None:
    h = tiny_segmenter.run(data.chelsea())
    assert h.num_levels == 5
    manifest = export_hierarchy(h, tmp_path, stem="chelsea")
    records = json.loads((manifest.root / "segments.json").read_text())
    assert len(records) == sum(len(h.segment_ids(l)) for l in range(h.num_levels))
    for r in records[:: max(1, len(records) // 20)]:
        assert np.array_equal(coco_rle_to_mask(r["segmentation"]), h.mask(r["level"], r["segment"]))
    prov = json.loads((manifest.root / "provenance.json").read_text())
    assert prov["superpixels"]["method"] == "seeds" and prov["image_size"]["height"] == h.shape[0]
