"""Real-browser test: Chromium (Debian's, driven by Playwright) uses the app like a person would.

Screenshots land in test-output/browser/ — look at them.
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from app_server import REPO_ROOT, running_app
from playwright.sync_api import Page, expect, sync_playwright

from cast.hierarchy import Hierarchy
from cast.weights.vit import convert_vit_checkpoint
from reference import tiny_vit_config, vit_baseline_dir

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO_ROOT / "test-output" / "browser"
ASSET = REPO_ROOT / "assets" / "chelsea_cat.jpg"
CLICK_LEVEL = 2


@pytest.fixture(scope="module")
def app_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints (a copy of the shipped ones) and jobs folders of the app under test, outside the repo."""
    root = tmp_path_factory.mktemp("app")
    ckpts = root / "checkpoints"
    ckpts.mkdir()
    for f in (REPO_ROOT / "checkpoints").glob("*.safetensors"):
        shutil.copy(f, ckpts / f.name)
    # the paper's ViT baseline for the side-by-side test: the tiny official MoCo ViT, converted to our format
    convert_vit_checkpoint(vit_baseline_dir() / "tiny_vit_conv_moco.safetensors", ckpts / "vit_conv_tiny_test.safetensors",
                           architecture=tiny_vit_config())
    return {"checkpoints": ckpts, "jobs": root / "jobs"}


@pytest.fixture(scope="module")
def app_url(app_dirs: dict[str, Path]):
    SHOTS.mkdir(parents=True, exist_ok=True)
    env = {"CAST_CHECKPOINTS_DIR": str(app_dirs["checkpoints"]), "CAST_JOBS_DIR": str(app_dirs["jobs"])}
    with running_app(SHOTS / "app.log", extra_env=env) as url:
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


def library_display() -> Hierarchy:
    """The hierarchy the app shows for ASSET with its default model, as the library computes it."""
    from app.models import ModelCatalog
    from app.session import ExplorerSession
    from cast.segmenter import Segmenter

    catalog = ModelCatalog(REPO_ROOT / "checkpoints")
    handle = catalog.load(catalog.default_key())
    return ExplorerSession.create(Segmenter(handle.model).run_detailed(str(ASSET)), "").display


def expected_segment(display: Hierarchy, fx: float, fy: float, level: int) -> tuple[str, str]:
    """What the library says is under the click point: (segment id, parent id)."""
    from cast.hierarchy import node_id

    h, w = display.shape
    seg = display.segment_at(level, int(fx * w), int(fy * h))
    return node_id(level, seg), node_id(level + 1, display.parent_of(level, seg))


def interior_point(display: Hierarchy, level: int) -> tuple[float, float]:
    """A click point (fractions of width/height) deep inside one segment, so a pixel of rounding is harmless."""
    from scipy import ndimage

    labels = display.labels(level)
    best = None
    for seg in np.unique(labels):
        dist = ndimage.distance_transform_edt(np.pad(labels == seg, 1))[1:-1, 1:-1]  # the image edge is a boundary
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
    page.locator("#image_in input[type=file]").set_input_files(str(ASSET))  # segments at once, no button
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

    display = library_display()
    fx, fy = interior_point(display, CLICK_LEVEL)
    want_seg, want_parent = expected_segment(display, fx, fy, CLICK_LEVEL)
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


def test_cast_vs_vit_side_by_side(page: Page) -> None:
    """The paper's comparison on the same crop: CAST left, the ViT baseline's k-means hierarchy right, both clickable."""
    page.get_by_text("Side by side: CAST vs the ViT baseline").click()
    page.locator("#compare_model input").click()
    page.get_by_role("option", name=re.compile("vit_conv_tiny_test")).click()
    page.click("#compare")
    right = page.locator("#compare_b img")
    expect(right).to_be_visible(timeout=60_000)
    info = page.locator("#compare_info")
    expect(info).to_contain_text("ViT baseline", timeout=20_000)
    right.scroll_into_view_if_needed()
    x, y = image_point_to_page(page, "#compare_b img", 0.5, 0.5)
    page.mouse.click(x, y)
    expect(info).to_contain_text(re.compile(r"Right: L2:s\d\d"), timeout=20_000)
    expect(info).to_contain_text("n/a (hard k-means assignment)")
    expect(page.locator("#compare_a img")).to_be_visible()
    page.locator("#compare_a").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "8_cast_vs_vit.png"), full_page=True)


def test_collection_search_and_stability(page: Page) -> None:
    """Segment a collection with stability, colour it by stability, click a segment: similar segments rank."""
    page.get_by_role("tab", name="Collection").click()
    photos = sorted(str(p) for p in (REPO_ROOT / "assets").glob("*.jpg"))
    page.locator("#coll_files input[type=file]").set_input_files(photos)
    page.locator("#coll_stability input").check()
    page.click("#coll_run")
    expect(page.locator("#coll_summary")).to_contain_text(f"{len(photos)} images", timeout=180_000)
    page.locator("#coll_gallery img").nth(1).click()  # the cat
    page.locator("#coll_view").get_by_role("radio", name="stability").check()
    page.wait_for_timeout(1500)
    page.locator("#coll_selected").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "9_collection_stability.png"), full_page=True)
    selected = page.locator("#coll_selected img")
    expect(selected).to_be_visible()
    x, y = image_point_to_page(page, "#coll_selected img", 0.45, 0.35)
    page.mouse.click(x, y)
    results = page.locator("#coll_results img")
    expect(results.first).to_be_visible(timeout=30_000)
    assert results.count() >= 4
    expect(page.locator("#coll_heat img")).to_be_visible()
    page.locator("#coll_results").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "10_collection_search.png"), full_page=True)
    page.get_by_role("tab", name="Explore").click()


def test_bad_upload_keeps_previous_results(page: Page, tmp_path: Path) -> None:
    panel_before = page.locator("#panel").inner_text()
    broken = tmp_path / "not_an_image.png"
    broken.write_bytes(b"this is not a PNG at all")
    page.locator("#image_in input[type=file]").set_input_files(str(broken))
    notice = page.locator("#notice")
    expect(notice).to_contain_text(re.compile("not an image|cannot|unreadable|not a", re.I), timeout=30_000)
    expect(notice).to_contain_text("not_an_image.png")  # our message names the file ...
    assert "/tmp" not in notice.inner_text()  # ... and never a server path
    assert page.locator("#panel").inner_text() == panel_before
    expect(page.locator("#picture img")).to_be_visible()
    page.screenshot(path=str(SHOTS / "4_bad_input.png"), full_page=True)


def test_fine_tune_tab_runs_a_job_and_the_model_joins_the_picker(page: Page, tmp_path: Path) -> None:
    from PIL import Image
    from skimage import data

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        Image.fromarray(getattr(data, name)()).save(photos / f"{name}.jpg")
    page.get_by_role("tab", name="Fine-tune").click()
    page.locator("#job_data textarea, #job_data input").first.fill(str(photos))
    page.locator("#job_steps input").fill("2")
    page.locator("#job_batch input").fill("2")
    page.locator("#job_name textarea, #job_name input").first.fill("browser-test")
    page.click("#job_start")
    table = page.locator("#job_table")
    expect(table).to_contain_text("running", timeout=60_000)
    page.screenshot(path=str(SHOTS / "5_job_running.png"), full_page=True)
    expect(table).to_contain_text("done", timeout=240_000)
    expect(page.locator("#job_curve")).to_be_visible()
    page.screenshot(path=str(SHOTS / "6_job_done.png"), full_page=True)
    page.get_by_role("tab", name="Explore").click()
    page.locator("#model input").click()
    expect(page.get_by_role("option", name=re.compile("finetuned-browser-test"))).to_be_visible(timeout=20_000)
    page.screenshot(path=str(SHOTS / "7_picker.png"), full_page=True)
