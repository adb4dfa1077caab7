"""Scripting the live app with gradio_client: the README example, and 8 sessions at once."""
from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest
from app_server import REPO_ROOT, running_app
from PIL import Image
from skimage import data

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("app") / "app.log"
    with running_app(log) as url:
        yield url


def readme_example() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"## Scripting.*?```python\n(.*?)```", text, re.S)
    assert match, "README has no '## Scripting' section with a python example"
    return match.group(1)


def test_readme_gradio_client_example_runs(app_url: str, capsys: pytest.CaptureFixture) -> None:
    code = readme_example().replace("http://127.0.0.1:7860", app_url)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    segment = namespace["segment"]
    assert re.fullmatch(r"L2:s\d\d", segment["id"])
    assert segment["parent"].startswith("L3:s")
    assert segment["area"] > 0


def expected_info(path: Path, level: int, x: int, y: int) -> dict:
    from app.config import AppConfig
    from app.models import ModelCatalog
    from app.session import ExplorerSession
    from cast.segmenter import Segmenter

    catalog = ModelCatalog(AppConfig().checkpoints_dir)
    handle = catalog.load(catalog.default_key())
    session = ExplorerSession.create(Segmenter(handle.model).run_detailed(str(path)), "").select_at(x, y, level)
    return session.selected_info()


def test_eight_concurrent_sessions_get_their_own_results(app_url: str, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    images = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.immunohistochemistry(),
              data.astronaut()[::-1], data.chelsea()[:, ::-1], data.coffee()[50:350, 100:500]]
    paths = []
    for i, img in enumerate(images):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.ascontiguousarray(img)).save(path)
        paths.append(path)
    results: dict[int, dict] = {}
    errors: list[BaseException] = []

    def one_session(i: int) -> None:
        try:
            client = Client(app_url, verbose=False, download_files=str(tmp_path / f"dl{i}"))
            client.predict(handle_file(str(paths[i])), None, None, "seeds", 196, 224, "center_crop", 1, "fill", 0.6,
                           api_name="/segment")
            results[i] = client.predict(1, 40, 60, api_name="/select")
        except BaseException as err:  # noqa: BLE001 - collected and reported below
            errors.append(err)

    threads = [threading.Thread(target=one_session, args=(i,)) for i in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert len(results) == len(paths)
    for i, path in enumerate(paths):
        want = expected_info(path, 1, 40, 60)
        got = results[i]
        assert (got["id"], got["area"], got["bbox"], got["parent"]) == (want["id"], want["area"], want["bbox"], want["parent"]), i


def test_bad_inputs_give_notices_and_keep_results(app_url: str, tmp_path: Path) -> None:
    """A 1x1 image, a broken checkpoint and a non-image each give a clear notice; the session survives."""
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False, download_files=str(tmp_path / "dl"))
    good = tmp_path / "good.png"
    Image.fromarray(data.coffee()).save(good)
    args = ("seeds", 196, 224, "center_crop", 1, "fill", 0.6)
    client.predict(handle_file(str(good)), None, None, *args, api_name="/segment")
    before = client.predict(1, 100, 100, api_name="/select")

    tiny = tmp_path / "one_pixel.png"
    Image.new("RGB", (1, 1), (200, 10, 10)).save(tiny)
    out = client.predict(handle_file(str(tiny)), None, None, *args, api_name="/segment")
    assert "1x1" in out[-1] and "one_pixel.png" in out[-1] and "/tmp" not in out[-1]  # our message, no server path

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    out = client.predict(handle_file(str(good)), None, handle_file(str(broken)), *args, api_name="/segment")
    assert "broken.safetensors" in out[-1]

    assert client.predict(1, 100, 100, api_name="/select") == before  # previous results intact

    zip_path, notice = client.predict(api_name="/export")
    import zipfile

    names = zipfile.ZipFile(zip_path).namelist()
    assert any(n.endswith("segments.json") for n in names) and any(n.endswith("tree.json") for n in names)


def test_ground_truth_mask_scores_every_level(app_url: str, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False, download_files=str(tmp_path / "dl"))
    img = data.coffee()
    Image.fromarray(img).save(tmp_path / "coffee.png")
    mask = (img.mean(axis=2) > 120).astype(np.uint8)  # bright cup/saucer vs dark table: an honest rough mask
    Image.fromarray(mask * 255).save(tmp_path / "mask.png")
    client.predict(handle_file(str(tmp_path / "coffee.png")), api_name="/segment")  # every other input has a default
    table, notice = client.predict(handle_file(str(tmp_path / "mask.png")), api_name="/score_ground_truth")
    assert not notice, notice
    assert "best level" in table and "this model" in table and "| 4 |" in table


def test_side_by_side_comparison_reuses_the_same_superpixels(app_url: str, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False, download_files=str(tmp_path / "dl"))
    client.predict(handle_file(str(REPO_ROOT / "assets" / "rocket.jpg")), None, None, "seeds", 196, 224,
                   "center_crop", 0, "boundaries", 0.6, api_name="/segment")
    left, right, info, notice = client.predict("untrained:cast_small", api_name="/compare")
    assert not notice, notice
    # level 0 is the superpixels, shared by both sides: the pictures are identical
    assert np.array_equal(np.asarray(Image.open(left)), np.asarray(Image.open(right)))
    assert "Right:" in info


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A valid-looking PNG that declares width x height (a decompression bomb): header, a tiny IDAT, end."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_every_upload_is_read_from_its_original_bytes(app_url: str, tmp_path: Path) -> None:
    """Through /segment: 16-bit, float, CMYK, palette, RGBA, GIF, WebP, EXIF-rotated files segment from their own
    bytes; a bomb, a text file and an empty file get our message naming the file, no server path, and the
    previous results stay."""
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False, download_files=str(tmp_path / "dl"))
    camera = data.camera()  # 512 x 512 grey
    good = {
        "grey16.png": Image.fromarray(camera.astype(np.uint16) * 257),  # Pillow writes uint16 as a 16-bit PNG
        "float.tiff": Image.fromarray(camera.astype(np.float32) / 255.0, mode="F"),
        "cmyk.jpg": Image.fromarray(data.astronaut()).convert("CMYK"),
        "palette.png": Image.fromarray(data.coffee()).convert("P", palette=Image.Palette.ADAPTIVE),
        "rgba.png": Image.fromarray(np.dstack([data.chelsea(), np.full(data.chelsea().shape[:2], 200, np.uint8)])),
        "frames.gif": Image.fromarray(data.rocket()).convert("P"),
        "photo.webp": Image.fromarray(data.coffee()),
    }
    for name, img in good.items():
        img.save(tmp_path / name)
    rotated = Image.fromarray(data.rocket())  # 427 x 640, stored landscape with "rotate 90" in EXIF
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    good["rotated.jpg"] = rotated
    for name in good:
        out = client.predict(handle_file(str(tmp_path / name)), api_name="/segment")
        assert not out[-1], f"{name}: {out[-1]}"
        status = next(o for o in out if isinstance(o, str) and o.startswith("**Model:**"))
        assert f"**Image:** {name}" in status, status
    grey16 = client.predict(handle_file(str(tmp_path / "grey16.png")), api_name="/segment")
    assert "I;16" in next(o for o in grey16 if isinstance(o, str) and o.startswith("**Model:**"))
    before = client.predict(1, 100, 100, api_name="/select")

    _png_header_only(tmp_path / "bomb.png", 40000, 40000)
    (tmp_path / "notes.png").write_text("this is a text file, not a PNG")
    (tmp_path / "empty.jpg").write_bytes(b"")
    expected = {"bomb.png": "1,600 megapixels", "notes.png": "not an image file", "empty.jpg": "empty (0 bytes)"}
    for name, words in expected.items():
        notice = client.predict(handle_file(str(tmp_path / name)), api_name="/segment")[-1]
        assert name in notice and words in notice, notice
        assert "/tmp" not in notice and "gradio" not in notice.lower(), notice  # no server path
    assert client.predict(1, 100, 100, api_name="/select") == before  # previous results intact
