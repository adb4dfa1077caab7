"""Collections: batched segmentation equal to one at a time, segment search, stability, statistics; the saved
folder format (reopens with the same results, resumes after a real kill, refuses other models and settings,
damaged or foreign folders), the collection export (checked with FiftyOne's own importers), the CLI over
folders (and torchrun shards), and the app's saved collections, /collection and /search. Real photos
throughout: the example assets, which the bundled model never saw in training, and held-out scikit-image
photographs.
"""
from __future__ import annotations

import copy
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

import cast
from cast.collection import (
    CollectionError,
    Perturbation,
    build_collection,
    collection_figures,
    collection_scores,
    open_collection,
    segment_collection,
    stability_scores,
)
from cast.collection.browse import gallery_page, thumbnail
from cast.collection.search import SegmentIndex
from cast.collection.stability import best_match_iou, perturbed_hierarchy
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


def test_search_ranks_other_images_segments_after_the_query(collection) -> None:
    index = collection.index
    item = collection.items[1]
    for level in (1, 2, 3, 4):
        segment = int(item.hierarchy.segment_ids(level)[0])
        per_image = max(len(o.hierarchy.segment_ids(level)) for o in collection.items)
        hits = index.search(item.index, level, segment, top_k=per_image + 6)  # deep enough to pass one image
        assert (hits[0].image_index, hits[0].segment, hits[0].level) == (item.index, segment, level)
        assert abs(hits[0].similarity - 1.0) < 1e-5
        assert all(h.image_index != item.index for h in hits[1:])  # by default: the other images' segments
        assert all(a.similarity >= b.similarity - 1e-6 for a, b in zip(hits[1:], hits[2:]))
        assert len({h.image_index for h in hits[1:]}) > 1  # matches come from several images
        own = index.search(item.index, level, segment, top_k=per_image + 6, include_query_image=True)
        assert own[0] == hits[0] and any(h.image_index == item.index for h in own[1:])
    # against a brute-force cosine over every present segment of level 2, with and without per-image centring
    segment = int(item.hierarchy.segment_ids(2)[3])
    for centre in (False, True):
        means = {o.index: o.embeddings[2][o.hierarchy.segment_ids(2)].mean(0) for o in collection.items}
        shift = lambda o: means[o.index] if centre else 0.0  # noqa: E731
        query = item.embeddings[2][segment] - shift(item)
        brute = []
        for other in collection.items:
            for seg in other.hierarchy.segment_ids(2):
                vec = other.embeddings[2][seg] - shift(other)
                brute.append((float(vec @ query / np.linalg.norm(vec) / np.linalg.norm(query)), other.index, int(seg)))
        brute.sort(reverse=True)
        hits = index.search(item.index, 2, segment, top_k=6, include_query_image=True, centre=centre)
        assert [(h.image_index, h.segment) for h in hits[1:]] == [(i, s) for _, i, s in brute[1:6]], centre
        np.testing.assert_allclose([h.similarity for h in hits[1:]], [b[0] for b in brute[1:6]], atol=1e-5)
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


def test_stability_runs_keep_the_segmenters_provenance_and_settings(model, photos) -> None:
    segmenter = cast.Segmenter(model, SuperpixelConfig.slic(150), max_output_pixels=128 * 128)
    rgb = cast.load_image(photos[0])
    plain = segmenter.run(rgb)
    more = perturbed_hierarchy(segmenter, rgb, Perturbation("superpixels", 16))
    assert more.provenance.checkpoint == plain.provenance.checkpoint and more.provenance.checkpoint != "not recorded"
    assert more.provenance.grouping.method == "slic" and more.provenance.grouping.settings["num_superpixels"] == 166
    assert more.shape == plain.shape  # the same output resolution


def test_statistics_and_ground_truth(collection) -> None:
    figures = collection_figures(collection)
    assert set(figures) == {"areas", "confidence", "stability"}
    assert len(figures["areas"].data) == 5 and len(figures["confidence"].data) == 4
    areas = collection.segment_table(2)["area"]  # quartiles computed here, not millions of points sent
    assert figures["areas"].data[2]["median"][0] == pytest.approx(np.median(areas))
    assert figures["areas"].data[2]["q3"][0] == pytest.approx(np.percentile(areas, 75))
    masks = {p.name.replace("_object", ""): p for p in (REPO_ROOT / "assets" / "ground_truth").glob("*_object.png")}
    per_image, mean, best = collection_scores(collection, masks)
    assert set(per_image) == {p.name for p in ASSETS if Path(p).stem in {Path(m).stem for m in masks}}
    assert len(mean) == 5 and best.level in range(5)
    with pytest.raises(CastError, match="no ground-truth mask matches"):
        collection_scores(collection, {"other.png": next(iter(masks.values()))})


# ---------------------------------------------------------------- the saved folder format
@pytest.fixture(scope="module")
def saved(model, photos, tmp_path_factory) -> Path:
    """The same images as `collection`, segmented into a folder (the library's one writer)."""
    out = tmp_path_factory.mktemp("saved") / "coll"
    segmenter = cast.Segmenter(model, max_output_pixels=256 * 256)
    report = segment_collection(segmenter, photos, out, batch_size=4, stability=True, exports="compact")
    assert len(report.ok) == len(photos) and not report.failed
    return out


def test_a_reopened_collection_gives_the_in_memory_results(saved, collection, photos) -> None:
    reopened = open_collection(saved)
    assert len(reopened) == len(collection) and reopened.names() == collection.names()
    for image_index, level, x, y in [(0, 2, 200, 150), (1, 3, 150, 120), (4, 1, 60, 60), (6, 4, 100, 100)]:
        for options in ({}, {"include_query_image": True}, {"centre": True}):
            a = reopened.search(image_index, level, x=x, y=y, top_k=15, **options)
            b = collection.search(image_index, level, x=x, y=y, top_k=15, **options)
            assert [h.to_dict() for h in a] == [h.to_dict() for h in b], (image_index, level, options)
            assert a[0].image_index == image_index and a[0].similarity == pytest.approx(1.0, abs=1e-5)
    for index in (0, 5):
        h, original = reopened.hierarchy(index), collection.items[index].hierarchy
        for level in range(original.num_levels):
            assert np.array_equal(h.labels(level), original.labels(level))
        np.testing.assert_allclose(h.stability[2], original.stability[2])
        assert np.array_equal(h.image, original.image)  # the picture it describes, saved losslessly
    mine, theirs = collection_figures(reopened), collection_figures(collection)
    assert set(mine) == set(theirs) == {"areas", "confidence", "stability"}
    for name in mine:
        assert len(mine[name].data) == len(theirs[name].data)
        for a, b in zip(mine[name].data, theirs[name].data):
            for key in ("q1", "median", "q3", "lowerfence", "upperfence", "mean"):
                np.testing.assert_allclose(a[key], b[key], rtol=1e-6)
    stats = reopened.statistics()
    assert stats["images"] == len(photos) and stats["levels"][4]["segments_per_image"] <= 8
    assert reopened.segment_table(2)["image"].max() == len(photos) - 1
    # the per-segment numbers and embeddings are memory-mapped, not read whole
    assert isinstance(reopened.index.matrix(2).vectors, np.memmap)


def test_large_levels_search_through_faiss_with_the_exact_results(model, photos, tmp_path, monkeypatch) -> None:
    """FAISS (the optional extra for very large levels) proposes candidates that are rescored exactly; with every
    inverted list probed, the ranking is the exact one."""
    from cast.collection import ann

    monkeypatch.setattr(ann, "ANN_MIN_BYTES", 0)  # every level counts as large
    segmenter = cast.Segmenter(model, max_output_pixels=128 * 128)
    out = tmp_path / "coll"
    segment_collection(segmenter, photos, out, exports="compact")
    assert sorted(p.name for p in (out / "collection").glob("*.faiss")) == [f"level{lv}.faiss" for lv in range(5)]
    fast = open_collection(out)
    assert fast.index.matrix(2).ann is not None
    monkeypatch.setattr(ann, "load_index", lambda path: None)  # as without FAISS installed: exact search
    exact = open_collection(out)
    assert exact.index.matrix(2).ann is None
    for level, options in [(1, {}), (2, {}), (3, {"include_query_image": True}), (2, {"centre": True})]:
        a = fast.search(2, level, x=200, y=150, top_k=10, **options)
        b = exact.search(2, level, x=200, y=150, top_k=10, **options)
        assert [(h.image_index, h.segment) for h in a] == [(h.image_index, h.segment) for h in b], (level, options)
        np.testing.assert_allclose([h.similarity for h in a], [h.similarity for h in b], atol=1e-5)


def test_gallery_pages_sort_and_filter_without_opening_images(saved) -> None:
    c = open_collection(saved)
    counts = c.image_values(1, "segments")
    page = gallery_page(c, 1, "segments", descending=True, page_size=3)
    assert page.pages == -(-len(c) // 3) and len(page.indices) == 3
    assert list(page.values) == sorted(counts, reverse=True)[:3]
    last = gallery_page(c, 1, "segments", descending=True, page=99, page_size=3)
    assert last.page == page.pages - 1 and len(last.indices) == len(c) - 3 * (page.pages - 1)
    stability = c.image_values(2, "stability")
    assert np.all((stability > 0) & (stability <= 1))
    cut = float(np.median(stability))
    kept = gallery_page(c, 2, "stability", minimum=cut, page_size=100)
    assert kept.matching == int((stability >= cut).sum()) and np.all(np.diff(kept.values) >= 0)
    scored = gallery_page(c, 2, "ground_truth", descending=True, minimum=0.0, scores={3: 0.2, 1: 0.9})
    assert list(scored.indices) == [1, 3]
    names = gallery_page(c, 2, "name", page_size=100)
    assert [c.names()[i] for i in names.indices] == sorted(c.names())
    assert thumbnail(c, 0, 2).shape[2] == 3 and max(thumbnail(c, 0, 2).shape[:2]) <= 192
    assert thumbnail(c, 0, 2, "stability").shape[2] == 3


def test_resume_skips_done_images_and_appends_new_ones(model, photos, tmp_path) -> None:
    segmenter = cast.Segmenter(model, max_output_pixels=128 * 128)
    out = tmp_path / "coll"
    first = segment_collection(segmenter, photos[:3], out, exports="compact")
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/hierarchy.json")}
    again = segment_collection(segmenter, photos[:5], out, exports="compact")
    assert [name for name, _ in again.skipped] == [p.name for p in photos[:3]]
    assert [r.name for r in again.ok] == [p.name for p in photos[3:5]]
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # finished images are not redone
    c = open_collection(out)
    assert c.names() == [p.name for p in photos[:5]] and len(first.ok) == 3
    assert {h.image_index for h in c.search(0, 2, x=200, y=150, top_k=500)} == {0, 1, 2, 3, 4}  # covers the new ones
    assert sorted(set(c.segment_table(2)["image"].tolist())) == list(range(5))


def test_another_model_or_other_settings_are_refused_and_nothing_is_written(model, photos, tmp_path) -> None:
    out = tmp_path / "coll"
    segment_collection(cast.Segmenter(model, max_output_pixels=128 * 128), photos[:2], out, exports="compact")
    listing = sorted((p, p.stat().st_mtime_ns) for p in out.rglob("*"))
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)  # a fine-tune of the same architecture: other weights
    with pytest.raises(CollectionError, match="never mixes models or settings.*Nothing was written") as err:
        segment_collection(cast.Segmenter(other, max_output_pixels=128 * 128), photos[2:4], out, exports="compact")
    assert "weights" in str(err.value)
    with pytest.raises(CollectionError, match="superpixels"):
        segment_collection(cast.Segmenter(model, SuperpixelConfig.slic(150), max_output_pixels=128 * 128), photos[2:4],
                           out, exports="compact")
    assert sorted((p, p.stat().st_mtime_ns) for p in out.rglob("*")) == listing
    assert len(open_collection(out)) == 2


def test_foreign_and_damaged_folders_get_a_clear_message(model, photos, tmp_path) -> None:
    segmenter = cast.Segmenter(model, max_output_pixels=128 * 128)
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("precious")
    with pytest.raises(CollectionError, match="not a CAST Explorer collection"):
        segment_collection(segmenter, photos[:1], foreign)
    assert [p.name for p in foreign.iterdir()] == ["chapter1.tex"]
    with pytest.raises(CollectionError, match="not a CAST Explorer collection"):
        open_collection(foreign)
    with pytest.raises(CollectionError, match="does not exist"):
        open_collection(tmp_path / "nowhere")
    out = tmp_path / "coll"
    segment_collection(segmenter, photos[:2], out, exports="compact")
    (out / "collection" / "level2.embeddings.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(CollectionError, match="damaged at level 2"):
        open_collection(out).search(0, 2, x=100, y=100)
    manifest = (out / "collection.json").read_text()
    (out / "collection.json").write_text(manifest[: len(manifest) // 2])
    with pytest.raises(CollectionError, match="damaged"):
        open_collection(out)
    with pytest.raises(CollectionError, match="damaged"):
        segment_collection(segmenter, photos[2:3], out, exports="compact")
    assert (out / "collection.json").read_text() == manifest[: len(manifest) // 2]  # left as it was
    (out / "collection.json").write_text("[1, 2]")  # valid JSON, but not a manifest
    with pytest.raises(CollectionError, match="damaged"):
        open_collection(out)


def test_one_writer_at_a_time_and_a_killed_runs_lock_is_taken_over(model, photos, tmp_path) -> None:
    import socket

    segmenter = cast.Segmenter(model, max_output_pixels=128 * 128)
    out = tmp_path / "coll"
    segment_collection(segmenter, photos[:1], out, exports="compact")
    lock = out / "collection" / ".writing"
    lock.write_text(f"{os.getppid()} {socket.gethostname()}\n")  # a live process is writing
    with pytest.raises(CollectionError, match="another `cast segment`"):
        segment_collection(segmenter, photos[1:2], out, exports="compact")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f"{dead.pid} {socket.gethostname()}\n")  # left behind by a killed run
    assert len(segment_collection(segmenter, photos[1:2], out, exports="compact").ok) == 1
    assert not lock.exists() and len(open_collection(out)) == 2


def _cli(*args: str, env: dict | None = None, torchrun: int = 0) -> subprocess.CompletedProcess:
    command = ([sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={torchrun}", "-m", "cast"]
               if torchrun else [sys.executable, "-m", "cast"])
    return subprocess.run([*command, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def photo_folder(photos, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("in")
    for path in photos:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def exported(photo_folder) -> Path:
    out = photo_folder.parent / "out"
    result = _cli("segment", str(photo_folder), "--out", str(out), "--batch-size", "4", "--model", str(bundled_checkpoint()))
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stderr and "notes.txt" in result.stderr
    return out


@pytest.mark.slow
def test_cli_exports_one_coco_json_and_another_process_searches_it(exported: Path, photos) -> None:
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
    assert (exported / first["stem"] / "segments.json").is_file()  # each image's own export, as before
    assert annotation_id(3, 2, 17) == 320_017
    script = ("import json, sys, cast; c = cast.open_collection(sys.argv[1]); "
              "print(json.dumps([h.to_dict() for h in c.search(c.find(sys.argv[2]), 2, x=200, y=150, top_k=12)]))")
    result = subprocess.run([sys.executable, "-c", script, str(exported), photos[0].name], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert hits[0]["image"] == photos[0].name and hits[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert len(hits) == 12 and len({h["image"] for h in hits}) >= 3  # the query image and several others
    assert [h["similarity"] for h in hits[1:]] == sorted((h["similarity"] for h in hits[1:]), reverse=True)
    result = _cli("search", str(exported), "--image", photos[0].name, "--level", "2", "--x", "200", "--y", "150",
                  "--top-k", "5", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == hits[:5]


@pytest.mark.slow
def test_a_killed_run_resumes_without_redoing_finished_images(photos, tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):  # 4 x 9 distinct files (mirrored, cropped), small, so the kill lands midway
        for path in photos:
            image = np.asarray(Image.open(path).convert("RGB"))
            image = image[:, ::-1] if i % 2 else image
            image = image[: int(image.shape[0] * (1 - 0.1 * (i // 2)))]
            Image.fromarray(np.ascontiguousarray(image)).resize((160, 120)).save(folder / f"{i}_{path.stem}.png")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "cast", "segment", str(folder), "--out", str(out), "--batch-size", "1",
               "--model", str(bundled_checkpoint())]
    proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = out / "collection" / "runs" / "run0001.rank0.jsonl"
    deadline = time.monotonic() + 300
    while not (log.is_file() and log.read_text().count("\n") >= 5):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = [json.loads(line) for line in log.read_text().splitlines() if line.endswith("}")]
    total = 4 * len(photos)
    assert 5 <= len(committed) < total
    with pytest.raises(CollectionError, match="incomplete"):
        open_collection(out)
    finished = {r["stem"]: (out / r["stem"] / "hierarchy.json").stat().st_mtime_ns for r in committed}
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"exported {total - len(committed)} of {total - len(committed)} images" in result.stdout
    assert f"{len(committed)} already in the collection" in result.stdout
    assert {s: (out / s / "hierarchy.json").stat().st_mtime_ns for s in finished} == finished  # not redone
    c = open_collection(out)
    assert len(c) == total and sorted(c.names()) == sorted(p.name for p in folder.iterdir())
    with (out / "index.csv").open(newline="") as handle:
        assert [row["status"] for row in csv.DictReader(handle)] == ["ok"] * total
    # a second model into the same folder is refused, and the folder is left as it was
    manifest = (out / "collection.json").read_text()
    result = _cli("segment", str(folder), "--out", str(out), "--model", str(bundled_checkpoint()),
                  "--num-superpixels", "150")
    assert result.returncode == 2 and "never mixes models or settings" in result.stderr
    assert (out / "collection.json").read_text() == manifest


@pytest.mark.slow
def test_cli_reports_missing_broken_and_ambiguous_inputs(tmp_path) -> None:
    result = _cli("segment", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "nowhere does not exist" in result.stderr
    assert "model:" not in result.stderr  # refused before any model was chosen or loaded
    folder = tmp_path / "in"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    Image.fromarray(data.chelsea()).save(folder / "a" / "img.jpg")
    Image.fromarray(data.astronaut()).save(folder / "b" / "img.jpg")
    (folder / "broken.jpg").write_text("not an image")
    whole = (REPO_ROOT / "assets" / "coffee.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    out = tmp_path / "out"
    result = _cli("segment", str(folder), "--out", str(out), "--model", str(bundled_checkpoint()))
    assert result.returncode == 1
    assert "exported 2 of 4 images" in result.stdout
    failures = [line.strip() for line in result.stderr.splitlines() if line.startswith("  ")]
    assert len(failures) == 2 and all(line.count("truncated.jpg") <= 1 and line.count("broken.jpg") <= 1
                                      for line in failures)
    with (out / "index.csv").open(newline="") as handle:
        rows = {Path(row["image"]).relative_to(folder).as_posix(): row for row in csv.DictReader(handle)}
    assert rows["broken.jpg"]["status"] == "failed" and rows["broken.jpg"]["message"]
    assert rows["truncated.jpg"]["status"] == "failed"
    assert [r["output"] for r in rows.values() if r["status"] == "ok"] == ["img", "img-2"]
    ambiguous = _cli("search", str(out), "--image", "img.jpg", "--x", "300", "--y", "200")
    assert ambiguous.returncode == 2 and "ambiguous" in ambiguous.stderr and "a/img.jpg" in ambiguous.stderr
    chosen = _cli("search", str(out), "--image", "b/img.jpg", "--x", "300", "--y", "200", "--top-k", "3")
    assert chosen.returncode == 0, chosen.stderr
    assert "b/img.jpg" in chosen.stdout.splitlines()[1] and "a/img.jpg" in chosen.stdout


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
def test_torchrun_with_two_processes_equals_one_and_opens_in_the_app(photo_folder, exported, tmp_path) -> None:
    out = tmp_path / "out"
    result = _cli("segment", str(photo_folder), "--out", str(out), "--batch-size", "2",
                  "--model", str(bundled_checkpoint()), torchrun=2, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    logs = sorted(p.name for p in (out / "collection" / "runs").glob("*.jsonl"))
    assert logs == ["run0001.rank0.jsonl", "run0001.rank1.jsonl"]  # each process wrote its share
    assert all((out / "collection" / "runs" / name).read_text().strip() for name in logs)
    assert (out / "collection" / "items.jsonl").read_text() == (exported / "collection" / "items.jsonl").read_text()
    assert (out / "index.csv").read_text() == (exported / "index.csv").read_text()
    for level in range(5):
        for kind in ("segments", "embeddings", "means"):
            a = np.load(out / "collection" / f"level{level}.{kind}.npy")
            b = np.load(exported / "collection" / f"level{level}.{kind}.npy")
            if kind == "segments":
                assert np.array_equal(a[["image", "segment"]], b[["image", "segment"]])
                np.testing.assert_allclose(a["area"], b["area"])
                np.testing.assert_allclose(a["confidence"], b["confidence"], atol=1e-5)
            else:
                np.testing.assert_allclose(a, b, atol=1e-4)
    coco = json.loads((out / "collection" / "segments_coco.json").read_text())
    assert sorted(i["id"] for i in coco["images"]) == sorted(
        i["id"] for i in json.loads((exported / "collection" / "segments_coco.json").read_text())["images"])
    from app.collection_tab import CollectionLibrary, CollectionView, gallery
    from app.scratch import Scratch

    library = CollectionLibrary([out], Scratch(tmp_path / "scratch"), hosted=False)
    view, items, where = gallery(CollectionView("host:0", library.open("host:0", None)))
    assert len(items) == len(open_collection(exported)) and "page 1 of 1" in where


@pytest.mark.slow
def test_the_app_opens_saved_collections_and_answers_search_from_a_fresh_client(exported, photos, tmp_path) -> None:
    from app_server import running_app
    from gradio_client import Client, handle_file

    saved = open_collection(exported)
    expected = saved.search(1, 4, x=150, y=120, top_k=12)
    with running_app(tmp_path / "app.log", args=("--collection", str(exported))) as url:
        client = Client(url, verbose=False, download_files=str(tmp_path / "dl"))
        outputs = client.predict(1, 4, 150, 120, 12, api_name="/search")  # no /collection first
        hits, notice = outputs[-2], outputs[-1]
        assert not notice, notice
        assert hits == [h.to_dict() for h in expected]
        assert hits[0]["image_index"] == 1 and hits[0]["image"] == saved.names()[1] and hits[0]["level"] == 4
        assert all(h["image_index"] != 1 for h in hits[1:]) and len({h["image_index"] for h in hits}) > 2
        outputs = Client(url, verbose=False).predict(1, 4, 150, 120, 12, "", True, True, api_name="/search")
        assert outputs[-2][0] == hits[0] and any(h["image_index"] == 1 for h in outputs[-2][1:])
        # uploads are segmented into a collection of the same format, then searched in that session
        outputs = client.predict([handle_file(str(p)) for p in photos[:4]], api_name="/collection")
        records, notice = outputs[-3], outputs[-1]
        assert not notice, notice
        assert [r["image"] for r in records] == [p.name for p in photos[:4]]
        assert all(r["segments_per_level"][-1] <= 8 for r in records)
        outputs = client.predict(1, 4, 150, 120, 12, api_name="/search")
        hits, notice = outputs[-2], outputs[-1]
        assert not notice, notice
        assert hits[0]["image"] == photos[1].name and {h["image_index"] for h in hits} <= {0, 1, 2, 3}


def test_the_app_lists_the_hosts_collections_and_each_visitors_own(saved, model, photos, tmp_path) -> None:
    from app.collection_tab import CollectionLibrary, collection_paths
    from app.scratch import Scratch

    shelf = tmp_path / "shelf"
    shelf.mkdir()
    (shelf / "notes").mkdir()  # not a collection: not listed
    os.symlink(saved, shelf / "audit")
    assert collection_paths([saved], {"CAST_COLLECTIONS": str(shelf)}) == [saved, shelf / "audit"]
    with pytest.raises(CollectionError, match="not a CAST Explorer collection"):
        collection_paths([shelf / "notes"], {})
    with pytest.raises(CollectionError, match="not a folder"):
        collection_paths([], {"CAST_COLLECTIONS": str(tmp_path / "nowhere")})
    library = CollectionLibrary([saved], Scratch(tmp_path / "scratch"), hosted=True)
    segmenter = cast.Segmenter(model, max_output_pixels=128 * 128)
    for owner, photo in (("alice", photos[0]), ("bob", photos[1])):
        segment_collection(segmenter, [photo], library.new_folder(owner), exports="compact", record_sources=False)
    alice, bob = library.choices("alice"), library.choices("bob")
    assert alice[0] == ("coll (saved)", "host:0") and bob[0] == alice[0] and len(alice) == len(bob) == 2
    assert library.open(alice[1][1], "alice").names() == [photos[0].name]
    assert library.open(alice[1][1], "alice").item(0).source == ""  # no server path kept for uploads
    from app.notices import Notice

    with pytest.raises(Notice, match="not available"):
        library.open(alice[1][1], "bob")  # another visitor's upload
    assert len(library.open("host:0", "bob")) == len(photos)


def test_open_in_explore_shows_the_saved_hierarchy(saved) -> None:
    from app.collection_tab import saved_session

    c = open_collection(saved)
    session = saved_session(c, 3).with_view(level=2)
    assert np.array_equal(session.hierarchy.labels(2), c.hierarchy(3).labels(2))
    assert session.picture().shape[2] == 3 and "saved in collection" in session.model_summary
    assert session.select_at(10, 10).selected_info()["level"] == 2


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
