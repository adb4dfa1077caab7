"""`cast name` and `cast segment --name`: names printed per segment, and names in every export."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image
from reference import naming_dir, parity_dir
from skimage import data

from cast.cli import main
from cast.hierarchy import Hierarchy
from cast.naming import partimagenet
from cast.weights import convert_checkpoint


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("naming_cli")
    convert_checkpoint(parity_dir() / "tiny_cast.safetensors", root / "tiny.safetensors")
    Image.fromarray(data.chelsea()).save(root / "chelsea.png")
    Image.fromarray(data.astronaut()).save(root / "astronaut.png")
    return {"model": root / "tiny.safetensors", "chelsea": root / "chelsea.png", "astronaut": root / "astronaut.png"}


@pytest.fixture(autouse=True)
def tiny_clip(monkeypatch) -> None:
    monkeypatch.setenv("CAST_CLIP_MODEL", f"local-dir:{naming_dir() / 'clip_tiny'}")


def test_cast_name_prints_every_segment(files, tmp_path: Path, capsys) -> None:
    out = tmp_path / "names.json"
    assert main(["name", str(files["chelsea"]), "--vocabulary", "partimagenet", "--levels", "4,3",
                 "--model", str(files["model"]), "--json", str(out)]) == 0  # fmt: skip
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| 4 ") or line.startswith("| 3 ")]
    written = json.loads(out.read_text())
    assert len(rows) == len(written["records"]) and written["object_level"] == 4 and written["part_levels"] == [3]
    vocab = partimagenet()
    for level, segment, area, name, score, _ in ([c.strip() for c in row] for row in rows):
        allowed = vocab.object_classes if level == "4" else vocab.part_classes + ("Background",)
        assert name in allowed and 0 < float(score) <= 1 and int(area) > 0
    assert {int(r[0]) for r in rows} == {3, 4}


def test_cast_name_refuses_bad_input(files, capsys) -> None:
    assert main(["name", str(files["chelsea"]), "--vocabulary", "cat: ", "--model", str(files["model"])]) == 2
    assert "no part names" in capsys.readouterr().err
    assert main(["name", str(files["chelsea"]), "--vocabulary", "coco", "--model", str(files["model"]),
                 "--clip", "ViT-B-16:openai"]) == 2  # offline, not cached: says why, never another model
    assert "ViT-B-16:openai" in capsys.readouterr().err
    assert main(["name", str(files["chelsea"]), "--vocabulary", "coco", "--levels", "4,x"]) == 2  # argparse refuses
    assert "levels must be integers" in capsys.readouterr().err
    assert main(["name", "missing.png", "--vocabulary", "coco"]) == 2


def test_cast_segment_name_adds_names_to_every_export(files, tmp_path: Path) -> None:
    out = tmp_path / "out"
    vocab_text = "cat: head, ear, eye; person: face, hair, suit; flag"
    assert main(["segment", str(files["chelsea"]), str(files["astronaut"]), "--out", str(out), "--model",
                 str(files["model"]), "--name", vocab_text, "--zip"]) == 0  # fmt: skip
    objects = {"cat", "person", "flag", "Background"}
    parts = {"cat head", "cat ear", "cat eye", "person face", "person hair", "person suit", "flag", "Background"}
    for stem in ("chelsea", "astronaut"):
        folder = out / stem
        hierarchy = Hierarchy.from_json((folder / "hierarchy.json").read_text())
        top = hierarchy.num_levels - 1
        with (folder / "metadata.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        named = [r for r in rows if r["name"]]
        assert {int(r["level"]) for r in named} == {top, top - 1}
        assert len(named) == len(hierarchy.segment_ids(top)) + len(hierarchy.segment_ids(top - 1))
        assert {r["name"] for r in named if int(r["level"]) == top} <= objects
        assert {r["name"] for r in named if int(r["level"]) == top - 1} <= parts
        coco = json.loads((folder / "names_coco.json").read_text())
        categories = {c["id"]: c for c in coco["categories"]}
        assert [c["name"] for c in coco["categories"]][:3] == ["cat", "person", "flag"]
        assert categories[4] == {"id": 4, "name": "cat head", "supercategory": "cat"}
        assert len(coco["annotations"]) == len(named)
        for a in coco["annotations"]:
            assert categories[a["category_id"]]["name"] == a["name"] and 0 < a["score"] <= 1
        tree = json.loads((folder / "tree.json").read_text())
        coarse_nodes = tree["children"]
        assert all(node["name"] in objects for node in coarse_nodes)
        segments = json.loads((folder / "segments.json").read_text())
        assert sum(1 for s in segments if s["name"]) == len(named)
    collection = json.loads((out / "collection" / "segments_coco.json").read_text())
    assert sum(1 for a in collection["annotations"] if a.get("name")) == sum(
        len(json.loads((out / s / "names_coco.json").read_text())["annotations"]) for s in ("chelsea", "astronaut"))
    import zipfile

    with zipfile.ZipFile(out / "chelsea.zip") as archive:
        assert "chelsea/names_coco.json" in archive.namelist()
