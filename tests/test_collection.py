"""Collections: batched segmentation equal to one at a time, segment search, stability, statistics, the
collection export (checked with FiftyOne's own importers), the CLI over folders (and torchrun shards),
and the app's /collection and /search endpoints. Real photos throughout: the example assets, which the
bundled model never saw in training, and held-out scikit-image photographs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

import cast
from cast.collection import (
    Perturbation,
    build_collection,
    collection_figures,
    collection_scores,
    stability_scores,
)
from cast.collection.search import SegmentIndex
from cast.collection.stability import best_match_iou
from cast.errors import CastError
from cast.export.collection import annotation_id
from cast.superpixels import SuperpixelConfig
from cast.weights.bundled import bundled_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS = sorted((REPO_ROOT / "assets").glob("*.jpg"))
HELD_OUT = ("camera", "hubble_deep_field", "immunohistochemistry", "retina", "coins")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """The example photos and held-out scikit-image photographs, as files."""
    folder = tmp_path_factory.mktemp("photos")
    paths = list(ASSETS)
    for name in HELD_OUT:
        image = getattr(data, name)()
        image = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
        Image.fromarray(image).save(folder / f"{name}.png")
        paths.append(folder / f"{name}.png")
    return paths


@pytest.fixture(scope="module")
def model():
    return cast.load_model(bundled_checkpoint())


@pytest.fixture(scope="module")
def collection(model, photos):
    segmenter = cast.Segmenter(model, max_output_pixels=256 * 256)
    return build_collection(segmenter, photos, batch_size=4,
                            stability=lambda source, h: stability_scores(segmenter, source, h))


def test_batches_equal_one_image_at_a_time(model, photos) -> None:
    """Mixed token counts (SLIC varies them): batched results equal single-image runs exactly."""
    segmenter = cast.Segmenter(model, SuperpixelConfig.slic(180), max_output_pixels=256 * 256)
    counts = {segmenter.prepare(p).token_count for p in photos}
    assert len(counts) > 1, "the test needs images of different token counts"
    batched = dict(segmenter.run_many(photos, batch_size=4))
    for position, path in enumerate(photos):
        alone = segmenter.run_detailed(path)
        together = batched[position]
        for level in range(alone.hierarchy.num_levels):
            assert np.array_equal(alone.hierarchy.labels(level), together.hierarchy.labels(level)), (path.name, level)
        np.testing.assert_allclose(together.output.centroids[1].numpy(), alone.output.centroids[1].numpy(), atol=1e-5)


def test_unreadable_images_are_listed_not_fatal(model, photos, tmp_path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    result = build_collection(cast.Segmenter(model, max_output_pixels=128 * 128), [photos[0], broken, photos[1]])
    assert [item.name for item in result.items] == [photos[0].name, photos[1].name]
    assert result.failures[0][0] == "broken.jpg" and "not an image" in result.failures[0][1]


def test_search_ranks_segments_of_several_images_with_the_query_on_top(collection) -> None:
    index = collection.index
    item = collection.items[1]
    for level in (1, 2, 3, 4):
        segment = int(item.hierarchy.segment_ids(level)[0])
        own = len(item.hierarchy.segment_ids(level))
        hits = index.search(item.index, level, segment, top_k=own + 10)  # deep enough to reach other images
        assert (hits[0].image_index, hits[0].segment, hits[0].level) == (item.index, segment, level)
        assert abs(hits[0].similarity - 1.0) < 1e-5
        assert all(a.similarity >= b.similarity - 1e-6 for a, b in zip(hits[1:], hits[2:]))
        assert len({h.image_index for h in hits}) > 1  # matches come from several images
    # against a brute-force cosine over every present segment of level 2
    segment = int(item.hierarchy.segment_ids(2)[3])
    query = item.embeddings[2][segment] / np.linalg.norm(item.embeddings[2][segment])
    brute = []
    for other in collection.items:
        for seg in other.hierarchy.segment_ids(2):
            vec = other.embeddings[2][seg]
            brute.append((float(vec @ query / np.linalg.norm(vec)), other.index, int(seg)))
    brute.sort(reverse=True)
    hits = index.search(item.index, 2, segment, top_k=5)
    assert [(h.image_index, h.segment) for h in hits[1:]] == [(i, s) for _, i, s in brute[1:5]]
    with pytest.raises(CastError, match="not present"):
        index.search(item.index, 2, 999)


def test_index_from_arrays_matches_the_collection(collection) -> None:
    per_image = [[(item.hierarchy.segment_ids(lv), item.embeddings[lv][item.hierarchy.segment_ids(lv)])
                  for lv in range(len(item.embeddings))] for item in collection.items]
    rebuilt = SegmentIndex.from_arrays(collection.names(), per_image)
    a = collection.index.search(0, 3, int(collection.items[0].hierarchy.segment_ids(3)[1]), 8)
    b = rebuilt.search(0, 3, int(collection.items[0].hierarchy.segment_ids(3)[1]), 8)
    assert [h.to_dict() for h in a] == [h.to_dict() for h in b]


def test_stability_scores(collection, model, photos) -> None:
    h = collection.items[0].hierarchy
    assert h.stability is not None and [len(s) for s in h.stability] == list(h.sizes)
    present = h.stats(2).area > 0
    scores = h.stability[2][present]
    assert np.all((scores >= 0) & (scores <= 1)) and 0 < scores.mean() < 1
    assert h.segment(2, int(np.flatnonzero(present)[0])).stability == pytest.approx(h.stability[2][present][0])
    segmenter = cast.Segmenter(model, max_output_pixels=256 * 256)
    unchanged = stability_scores(segmenter, photos[0], segmenter.run(photos[0]), [Perturbation("noise", 0.0)])
    for level, values in enumerate(unchanged):
        assert np.allclose(values[np.isfinite(values)], 1.0), level  # a change of nothing keeps every segment
    labels = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    assert best_match_iou(labels, np.array([[0, 0, 0, 1], [0, 0, 0, 1]]), 2).tolist() == [2 / 3, 0.5]
    restored = cast.Hierarchy.from_json(h.to_json())
    np.testing.assert_allclose(restored.stability[2][present], h.stability[2][present])


def test_statistics_and_ground_truth(collection) -> None:
    figures = collection_figures(collection)
    assert set(figures) == {"areas", "confidence", "stability"}
    assert len(figures["areas"].data) == 5 and len(figures["confidence"].data) == 4
    masks = {p.name.replace("_object", ""): p for p in (REPO_ROOT / "assets" / "ground_truth").glob("*_object.png")}
    per_image, mean, best = collection_scores(collection, masks)
    assert set(per_image) == {p.name for p in ASSETS if Path(p).stem in {Path(m).stem for m in masks}}
    assert len(mean) == 5 and best.level in range(5)
    with pytest.raises(CastError, match="no ground-truth mask matches"):
        collection_scores(collection, {"other.png": next(iter(masks.values()))})


def _cli(*args: str, env: dict | None = None, torchrun: int = 0) -> subprocess.CompletedProcess:
    command = ([sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={torchrun}", "-m", "cast"]
               if torchrun else [sys.executable, "-m", "cast"])
    return subprocess.run([*command, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def exported(photos, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("in")
    for path in photos:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path_factory.mktemp("out")
    result = _cli("segment", str(folder), "--out", str(out), "--batch-size", "4", "--model", str(bundled_checkpoint()))
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.slow
def test_cli_exports_one_coco_json_and_search_works(exported: Path, photos) -> None:
    coco = json.loads((exported / "collection" / "segments_coco.json").read_text())
    assert len(coco["images"]) == len(photos) and [c["id"] for c in coco["categories"]] == [1, 2, 3, 4, 5]
    ids = {a["id"] for a in coco["annotations"]}
    assert len(ids) == len(coco["annotations"])
    for annotation in coco["annotations"]:
        assert annotation["parent_id"] is None or annotation["parent_id"] in ids
        if annotation["level"] < 4:
            assert annotation["parent_id"] // 10_000 % 10 == annotation["level"] + 1
    first = coco["images"][0]
    per_level = [sum(1 for a in coco["annotations"] if a["image_id"] == first["id"] and a["level"] == lv) for lv in range(5)]
    hierarchy = cast.Hierarchy.from_json((exported / first["stem"] / "hierarchy.json").read_text())
    assert per_level == [len(hierarchy.segment_ids(lv)) for lv in range(5)]
    assert annotation_id(3, 2, 17) == 320_017
    result = _cli("search", str(exported), "--image", photos[0].name, "--level", "2", "--x", "200", "--y", "150",
                  "--top-k", "5", "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert hits[0]["image"] == photos[0].name and hits[0]["similarity"] == pytest.approx(1.0, abs=1e-3)
    assert len(hits) == 5


@pytest.mark.slow
def test_collection_export_imports_with_fiftyone(exported: Path) -> None:
    """FiftyOne's own ImageSegmentationDirectoryImporter reads every level (FiftyOne runs in its own environment:
    its pinned packages clash with ours; scripts/test.sh provides it as CAST_FIFTYONE_PYTHON)."""
    python = os.environ.get("CAST_FIFTYONE_PYTHON")
    if not python:
        pytest.skip("FiftyOne is not available: run the suite with scripts/test.sh, which installs it aside")
    result = subprocess.run([python, str(REPO_ROOT / "tests" / "fiftyone_check.py"),
                             str(exported / "collection" / "fiftyone"), "5"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    items = [json.loads(line) for line in (exported / "collection" / "items.jsonl").read_text().splitlines()]
    for level in range(5):
        rows = report[str(level)]
        assert set(rows) == {item["stem"] for item in items}
        assert all(row["equal"] for row in rows.values()), level
    stem = items[0]["stem"]
    hierarchy = cast.Hierarchy.from_json((exported / stem / "hierarchy.json").read_text())
    assert [report[str(lv)][stem]["segments"] for lv in range(5)] == [len(hierarchy.segment_ids(lv)) for lv in range(5)]


@pytest.mark.slow
def test_cli_shards_across_processes_under_torchrun(photos, tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for path in photos:
        (folder / path.name).write_bytes(path.read_bytes())
    result = _cli("segment", str(folder), "--out", str(tmp_path / "out"), "--batch-size", "2",
                  "--model", str(bundled_checkpoint()), torchrun=2, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    index = (tmp_path / "out" / "index.csv").read_text().splitlines()
    assert len(index) == 1 + len(photos) and all(line.endswith(",") for line in index[1:])  # every image ok, in order
    parts = sorted(p.name for p in (tmp_path / "out" / "collection" / "parts").glob("items.*.jsonl"))
    assert parts == ["items.rank0.jsonl", "items.rank1.jsonl"]  # each process wrote its share
    coco = json.loads((tmp_path / "out" / "collection" / "segments_coco.json").read_text())
    assert sorted(i["id"] for i in coco["images"]) == list(range(1, len(photos) + 1))


@pytest.mark.slow
def test_collection_and_search_endpoints(photos, tmp_path) -> None:
    from app_server import running_app
    from gradio_client import Client, handle_file

    with running_app(tmp_path / "app.log") as url:
        client = Client(url, verbose=False, download_files=str(tmp_path / "dl"))
        outputs = client.predict([handle_file(str(p)) for p in photos], api_name="/collection")
        records, notice = outputs[-2], outputs[-1]
        assert not notice, notice
        assert [r["image"] for r in records] == [p.name for p in photos]
        assert all(r["segments_per_level"][-1] <= 8 for r in records)
        outputs = client.predict(1, 4, 150, 120, 12, api_name="/search")  # level 4: at most 8 segments an image
        hits, notice = outputs[-2], outputs[-1]
        assert not notice, notice
        assert len(hits) == 12
        assert hits[0]["image_index"] == 1 and hits[0]["image"] == photos[1].name and hits[0]["level"] == 4
        assert hits[0]["similarity"] == pytest.approx(1.0, abs=1e-4)
        assert len({h["image_index"] for h in hits}) > 1
        assert [h["similarity"] for h in hits] == sorted((h["similarity"] for h in hits), reverse=True)


def test_one_bad_image_in_a_batch_fails_alone(model, photos) -> None:
    """A constant image passes the reading but not the model's checks: its batch-mates still segment."""
    flat = np.full((300, 300, 3), 128, np.uint8)
    segmenter = cast.Segmenter(model, max_output_pixels=128 * 128)
    results = dict(segmenter.run_many([photos[0], flat, photos[1]], batch_size=4))
    assert isinstance(results[1], CastError) and "constant" in str(results[1])
    assert results[0].hierarchy.num_levels == 5 and results[2].hierarchy.num_levels == 5


def test_export_stems_are_distinct_and_never_the_collection_folder() -> None:
    from cast.export.collection import export_stems

    stems = export_stems(["x.jpg", "x-2.jpg", "b/x.jpg", "collection.jpg", "X.png"])
    assert len({s.casefold() for s in stems}) == 5 and "collection" not in stems


def test_scratch_folders_expire(tmp_path) -> None:
    import time as _time

    from app.scratch import Scratch

    scratch = Scratch(tmp_path / "scratch", ttl_s=60)
    old = scratch.new("export")
    past = _time.time() - 120
    os.utime(old, (past, past))
    fresh = scratch.new("export")
    assert not old.exists() and fresh.exists()
