"""Naming in a real browser: Explore → "Name the segments" with the tiny CLIP; names drawn on the picture with a
legend, the click panel names the clicked segment. Screenshots under test-output/naming/."""
from __future__ import annotations

from pathlib import Path

import pytest
from app_server import REPO_ROOT, running_app
from playwright.sync_api import Page, expect, sync_playwright
from reference import naming_dir
from test_app_browser import CHROMIUM, interior_point, library_display

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SHOTS = REPO_ROOT / "test-output" / "naming"
ASSET = REPO_ROOT / "assets" / "chelsea_cat.jpg"


@pytest.fixture(scope="module")
def page():
    SHOTS.mkdir(parents=True, exist_ok=True)
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: apt-get install -y chromium (scripts/test.sh does this)")
    env = {"CAST_CLIP_MODEL": f"local-dir:{naming_dir() / 'clip_tiny'}"}
    with running_app(SHOTS / "app.log", extra_env=env) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update"])  # fmt: skip
        pg = browser.new_page(viewport={"width": 1600, "height": 1400})
        pg.goto(url)
        pg.wait_for_selector("#segment", timeout=60_000)
        yield pg
        browser.close()


def test_name_the_segments_draws_names_and_the_panel_shows_them(page: Page) -> None:
    page.locator("#image_in input[type=file]").set_input_files(str(ASSET))
    expect(page.locator("#timings")).to_contain_text("forward", timeout=60_000)
    page.locator("#naming").get_by_text("Name the segments (zero-shot, CLIP)").click()
    page.locator("#name_segments").click()
    expect(page.locator("#naming_notice")).to_contain_text("Named", timeout=60_000)
    for where in ("#naming_notice", "#naming_about"):  # the CLIP folder by its name, never a server path
        text = page.locator(where).inner_text()
        assert "local-dir:clip_tiny" in text and str(naming_dir()) not in text
    expect(page.locator("#level_name")).to_contain_text("Level 4", timeout=20_000)
    picture = page.locator("#picture img")
    picture.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    picture.screenshot(path=str(SHOTS / "named_picture.png"))
    page.screenshot(path=str(SHOTS / "named_page.png"), full_page=True)

    # click deep inside a level-4 segment: the panel shows its CLIP name, score and runner-ups
    display = library_display()
    fx, fy = interior_point(display, 4)
    h, w = display.shape
    natural = page.eval_on_selector("#picture img", "img => [img.naturalWidth, img.naturalHeight]")
    assert natural[0] == w and natural[1] > h  # the legend is drawn below the picture
    x, y = page.eval_on_selector("#picture img", """(img, [px, py]) => {
        const r = img.getBoundingClientRect();
        const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
        const left = r.left + (r.width - img.naturalWidth * s) / 2, top = r.top + (r.height - img.naturalHeight * s) / 2;
        return [left + px * s, top + py * s]; }""", [fx * w, fy * h])
    page.mouse.click(x, y)
    panel = page.locator("#panel")
    expect(panel).to_contain_text("name (CLIP):", timeout=20_000)
    expect(panel).to_contain_text("runner-ups:")
    page.screenshot(path=str(SHOTS / "named_clicked.png"), full_page=True)
