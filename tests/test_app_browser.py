"""Real-browser test: Chromium (Debian's, driven by Playwright) uses the app like a person would.

Screenshots land in test-output/browser/ — look at them.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from app_server import REPO_ROOT, running_app

CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO_ROOT / "test-output" / "browser"
ASSET = REPO_ROOT / "assets" / "chelsea_cat.jpg"
CLICK_LEVEL = 2


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with running_app(SHOTS / "app.log") as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url: str):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: apt-get install -y chromium (scripts/test.sh does this)")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update"],
        )
        pg = browser.new_page(viewport={"width": 1600, "height": 1300})
        pg.goto(app_url)
        pg.wait_for_selector("#segment", timeout=60_000)
        yield pg
        browser.close()


def expected_segment(fx: float, fy: float, level: int) -> tuple[str, str]:
    """What the library says is under the click point: (segment id, parent id)."""
    from app.config import AppConfig
    from app.models import ModelCatalog
    from app.session import ExplorerSession
    from cast.hierarchy import node_id
    from cast.segmenter import Segmenter

    catalog = ModelCatalog(AppConfig().checkpoints_dir)
    handle = catalog.load(catalog.default_key())
    result = Segmenter(handle.model).run_detailed(str(ASSET))
    session = ExplorerSession.create(result, "", "")
    h, w = session.display.shape
    seg = session.display.segment_at(level, int(fx * w), int(fy * h))
    return node_id(level, seg), node_id(level + 1, session.display.parent_of(level, seg))


def interior_point(level: int) -> tuple[float, float]:
    """A click point (fractions of width/height) deep inside one segment, so a pixel of rounding is harmless."""
    from app.config import AppConfig
    from app.models import ModelCatalog
    from app.session import ExplorerSession
    from cast.segmenter import Segmenter
    from scipy import ndimage

    catalog = ModelCatalog(AppConfig().checkpoints_dir)
    handle = catalog.load(catalog.default_key())
    session = ExplorerSession.create(Segmenter(handle.model).run_detailed(str(ASSET)), "", "")
    labels = session.display.labels(level)
    best = None
    for seg in np.unique(labels):
        dist = ndimage.distance_transform_edt(labels == seg)
        y, x = np.unravel_index(dist.argmax(), dist.shape)
        if best is None or dist[y, x] > best[0]:
            best = (dist[y, x], x, y)
    _, x, y = best
    return (x + 0.5) / labels.shape[1], (y + 0.5) / labels.shape[0]


def image_point_to_page(page: Page, selector: str, fx: float, fy: float) -> tuple[float, float]:
    """Page coordinates of a point given as fractions of the image, honouring object-fit: contain."""
    return page.eval_on_selector(
        selector,
        """(img, [fx, fy]) => {
            const r = img.getBoundingClientRect();
            const scale = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
            const w = img.naturalWidth * scale, h = img.naturalHeight * scale;
            const left = r.left + (r.width - w) / 2, top = r.top + (r.height - h) / 2;
            return [left + fx * w, top + fy * h];
        }""",
        [fx, fy],
    )


def set_slider(page: Page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_upload_segment_slide_click(page: Page) -> None:
    start = time.perf_counter()
    page.locator("#image_in input[type=file]").set_input_files(str(ASSET))
    page.wait_for_timeout(500)
    page.click("#segment")
    picture = page.locator("#picture img")
    expect(picture).to_be_visible(timeout=60_000)
    expect(page.locator("#timings")).to_contain_text("forward", timeout=60_000)
    shown_ms = (time.perf_counter() - start) * 1000
    print(f"upload → first view shown in the browser: {shown_ms:.0f} ms")
    expect(page.locator("#status")).to_contain_text("Superpixels")
    expect(page.locator("#status")).to_contain_text("SEEDS")
    page.screenshot(path=str(SHOTS / "1_segmented.png"), full_page=True)

    set_slider(page, "level", CLICK_LEVEL)
    expect(page.locator("#level_name")).to_contain_text("32 segments", timeout=20_000)
    page.screenshot(path=str(SHOTS / "2_level2.png"), full_page=True)

    fx, fy = interior_point(CLICK_LEVEL)
    want_seg, want_parent = expected_segment(fx, fy, CLICK_LEVEL)
    picture.scroll_into_view_if_needed()
    x, y = image_point_to_page(page, "#picture img", fx, fy)
    page.mouse.click(x, y)
    panel = page.locator("#panel")
    expect(panel).to_contain_text(f"Segment {want_seg}", timeout=20_000)
    expect(panel).to_contain_text(f"parent: {want_parent}")
    tree = page.locator("#tree")
    expect(tree).to_contain_text(want_seg, timeout=20_000)
    expect(tree).to_contain_text(want_parent)
    page.screenshot(path=str(SHOTS / "3_clicked.png"), full_page=True)


def test_bad_upload_keeps_previous_results(page: Page, tmp_path: Path) -> None:
    panel_before = page.locator("#panel").inner_text()
    broken = tmp_path / "not_an_image.png"
    broken.write_bytes(b"this is not a PNG at all")
    page.locator("#file_in input[type=file]").set_input_files(str(broken))
    page.wait_for_timeout(500)
    page.click("#segment")
    expect(page.locator("#notice")).to_contain_text(re.compile("not an image|cannot|unreadable|not a", re.I), timeout=30_000)
    assert page.locator("#panel").inner_text() == panel_before
    expect(page.locator("#picture img")).to_be_visible()
    page.screenshot(path=str(SHOTS / "4_bad_input.png"), full_page=True)
