"""Every ```python block of README.md runs as written (extracted from the README itself, so they cannot drift),
from an empty folder, offline, with nothing downloaded: what a new user sees after `pip install`; and the
README's endpoint table matches the app's public API.

The one adaptation: the gradio_client block talks to a real app started for the test (tests/app_server.py),
so its address `http://127.0.0.1:7860` is replaced by that app's. Nothing else is changed or skipped.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from app_server import REPO_ROOT, running_app

README = REPO_ROOT / "README.md"
APP_ADDRESS = "http://127.0.0.1:7860"


def python_blocks() -> list[tuple[int, str]]:
    """(line number, code) of every ```python block of the README."""
    text = README.read_text()
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M)]


def _param(line: int, code: str):
    marks = [pytest.mark.slow] if "gradio_client" in code else []  # needs a running app (a server: the slow tier)
    return pytest.param(line, code, id=f"README.md:{line}", marks=marks)


def test_the_readme_has_python_blocks() -> None:
    assert len(python_blocks()) >= 3


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("readme_app") / "app.log"
    with running_app(log) as url:
        yield url


@pytest.mark.parametrize(("line", "code"), [_param(line, code) for line, code in python_blocks()])
def test_readme_python_block_runs(line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  request: pytest.FixtureRequest) -> None:  # fmt: skip
    """Run in a fresh namespace from an empty folder (conftest makes the tests offline with empty caches)."""
    if "gradio_client" in code:
        assert APP_ADDRESS in code, "the client block should name the app's default address"
        code = code.replace(APP_ADDRESS, request.getfixturevalue("app_url"))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code, f"README.md:{line}", "exec"), namespace)


# ------------------------------------------------------------------------------------ the API table
def readme_endpoints() -> dict[str, tuple[list[str], int]]:
    """endpoint -> (parameter names in order, number of returns) from the README's table."""
    rows = {}
    for row in re.findall(r"^\| `(/\w+)` \| (.*?) \| (\d+):", README.read_text(), re.M):
        name, params, returns = row
        cells = [p.strip() for p in re.split(r",\s*(?![^()]*\))", params)]  # commas outside parentheses
        names = [re.match(r"`(\w+)`", c).group(1) for c in cells if c.startswith("`")]
        rows[name] = (names, int(returns))
    return rows


def test_readme_endpoint_table_matches_the_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every public endpoint is named on purpose and documented with its parameters and number of returns; no
    internal event is public (no generated names like /refresh_1)."""
    monkeypatch.setenv("CAST_DEFAULT_MODEL", "cast_explorer_default")
    monkeypatch.setenv("CAST_JOBS_DIR", str(tmp_path / "jobs"))
    monkeypatch.setenv("CAST_CHECKPOINTS_DIR", str(tmp_path / "checkpoints"))
    from app.ui import build_app

    info = build_app(background_download=False).get_api_info()
    app = {name: ([p["parameter_name"] for p in ep["parameters"]], len(ep["returns"]))
           for name, ep in info["named_endpoints"].items()}  # fmt: skip
    assert info["unnamed_endpoints"] == {}
    assert not [n for n in app if re.search(r"_\d+$|lambda", n)], sorted(app)
    assert readme_endpoints() == app
