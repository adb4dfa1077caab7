"""Naming in the live app: /name_segments with the tiny CLIP (CAST_CLIP_MODEL=local-dir:...), /search_text over a
collection, and an app with no CLIP weights reachable that still serves and says why naming cannot run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from app_server import running_app
from PIL import Image
from reference import naming_dir
from skimage import data

from cast.naming import partimagenet

pytestmark = [pytest.mark.slow]

SEGMENT_ARGS = (None, None, "seeds", 196, 224, "center_crop", 1, "fill", 0.6)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("naming_app_images")
    paths = []
    for name, img in (("astronaut", data.astronaut()), ("chelsea", data.chelsea())):
        paths.append(folder / f"{name}.png")
        Image.fromarray(img).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    log = tmp_path_factory.mktemp("naming_app") / "app.log"
    with running_app(log, {"CAST_CLIP_MODEL": f"local-dir:{naming_dir() / 'clip_tiny'}"}) as url:
        yield url


def _client(url: str, tmp_path: Path):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=str(tmp_path / "dl"))


def test_name_segments_endpoint(app_url: str, images: list[Path], tmp_path: Path) -> None:
    from gradio_client import handle_file

    client = _client(app_url, tmp_path)
    client.predict(handle_file(str(images[0])), *SEGMENT_ARGS, api_name="/segment")
    records, notice = client.predict("partimagenet", api_name="/name_segments")  # every other parameter defaults
    assert notice == ""
    vocab = partimagenet()
    by_level: dict[int, list[dict]] = {}
    for r in records:
        by_level.setdefault(r["level"], []).append(r)
    assert set(by_level) == {4, 3}  # the coarsest level, then the next finer
    for level, rows in by_level.items():
        info_ids = sorted(r["segment"] for r in rows)
        assert len(info_ids) == len(set(info_ids))  # one record per segment
        allowed = vocab.object_classes if level == 4 else (*vocab.part_classes, "Background")
        assert all(r["name"] in allowed and 0 < r["score"] <= 1 for r in rows)
    # the same segments as the hierarchy's levels: the records of /select name them
    seg = client.predict(4, 100, 100, api_name="/select")
    assert seg["segment"] in [r["segment"] for r in by_level[4]]
    # a typed vocabulary, objects only at level 2
    records, notice = client.predict("cat: head, ear; person; flag", 2, -1, api_name="/name_segments")
    assert notice == "" and {r["level"] for r in records} == {2}
    assert {r["name"] for r in records} <= {"cat", "person", "flag", "Background"}
    assert len(records) == len({r["segment"] for r in records})
    records, notice = client.predict("cat: ", api_name="/name_segments")
    assert "no part names" in notice


def test_search_text_endpoint(app_url: str, images: list[Path], tmp_path: Path) -> None:
    from gradio_client import handle_file

    client = _client(app_url, tmp_path)
    client.predict([handle_file(str(p)) for p in images], None, 8, False, 2, api_name="/collection")
    hits, notice = client.predict("a head", 3, 5, api_name="/search_text")
    assert notice == "" and len(hits) == 5
    assert [h["similarity"] for h in hits] == sorted((h["similarity"] for h in hits), reverse=True)
    assert {h["image"] for h in hits} <= {"astronaut.png", "chelsea.png"} and all(h["level"] == 3 for h in hits)
    assert {"image_index", "image", "segment", "level", "similarity"} <= set(hits[0])


def test_without_clip_weights_the_app_serves_and_naming_says_why(images: list[Path], tmp_path: Path) -> None:
    from gradio_client import handle_file

    # the default OpenAI ViT-B/16, offline with an empty cache: not reachable
    with running_app(tmp_path / "app.log", {"CAST_CLIP_MODEL": "ViT-B-16:openai"}) as url:
        client = _client(url, tmp_path)
        client.predict(handle_file(str(images[1])), *SEGMENT_ARGS, api_name="/segment")
        assert client.predict(2, 50, 50, api_name="/select")["level"] == 2  # segmentation works
        records, notice = client.predict("coco", api_name="/name_segments")
        assert "Naming is unavailable" in notice and "ViT-B-16:openai" in notice and "hf download" in notice
        assert client.predict(2, 50, 50, api_name="/select")["level"] == 2  # still serving the session


def test_name_image_in_one_call(app_url: str, images: list[Path], tmp_path: Path) -> None:
    from gradio_client import handle_file

    records, notice = _client(app_url, tmp_path).predict(handle_file(str(images[1])), "coco", 4, -1, api_name="/name_image")
    assert notice == "" and records and {r["level"] for r in records} == {4}
    assert {r["name"] for r in records} <= {"Background", *__import__("cast.naming").naming.coco().objects}


def test_mcp_schema_lists_segment_name_and_search_tools(tmp_path: Path) -> None:
    import json
    import urllib.request

    env = {"CAST_MCP": "1", "CAST_CLIP_MODEL": f"local-dir:{naming_dir() / 'clip_tiny'}"}
    with running_app(tmp_path / "app.log", env) as url:
        with urllib.request.urlopen(url + "/gradio_api/mcp/schema", timeout=30) as response:
            schema = json.loads(response.read())
    tools = {tool["name"]: tool for tool in schema}
    names = " ".join(tools)
    for wanted in ("segment", "name_segments", "name_image", "search_text"):
        assert any(name.endswith(wanted) for name in tools), (wanted, names)
    name_tool = next(t for n, t in tools.items() if n.endswith("name_image"))
    assert "zero-shot with CLIP" in name_tool["description"]
    assert {"vocabulary", "object_level", "part_level"} <= set(name_tool["inputSchema"]["properties"])
