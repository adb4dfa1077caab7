"""`cast-explorer` / `python app.py`: its command line, the start-up line naming the model and the mode, and
models trained from the command line reaching the app through the extra model folders."""
from __future__ import annotations

import shutil

import pytest

from app_server import running_app
from cast.weights.bundled import bundled_checkpoint


def test_unknown_model_and_bad_port_are_refused_before_anything_loads(capsys, monkeypatch) -> None:
    import app.ui
    from app.main import main

    monkeypatch.setattr(app.ui, "build_app", lambda *a, **k: pytest.fail("the app was built"))
    assert main(["--model", "cast_smal"]) == 2
    err = capsys.readouterr().err
    assert "--model cast_smal: not a file, and not a published checkpoint" in err and "cast_explorer_default" in err
    with pytest.raises(SystemExit) as caught:
        main(["--port", "0"])
    assert caught.value.code == 2 and "port number from 1 to 65535" in capsys.readouterr().err


def test_extra_model_folders_reach_the_picker(tmp_path, monkeypatch) -> None:
    """`cast train --out runs/cat.safetensors`, then CAST_MODEL_DIRS=runs: the picker lists it and loads it."""
    from app.config import AppConfig
    from app.ui import build_catalog

    runs, more = tmp_path / "runs", tmp_path / "more"
    runs.mkdir(), more.mkdir()
    shutil.copy(bundled_checkpoint(), runs / "cat.safetensors")
    shutil.copy(bundled_checkpoint(), more / "cat.safetensors")  # the same name later: the first folder wins
    monkeypatch.setenv("CAST_CHECKPOINTS_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("CAST_MODEL_DIRS", f"{runs}:{more}")
    config = AppConfig.from_env()
    assert config.model_dirs == (runs, more)
    catalog = build_catalog(config)
    assert ("local: cat", "file:cat.safetensors") in catalog.choices()
    assert [p for p in catalog.local_checkpoints() if p.name == "cat.safetensors"] == [runs / "cat.safetensors"]
    assert catalog.check_key("file:cat.safetensors") == "file:cat.safetensors"
    assert catalog.resolve_file("cat.safetensors") == runs / "cat.safetensors"


def test_the_bundled_model_named_on_purpose_is_kept(monkeypatch, tmp_path) -> None:
    """--model cast_explorer_default: the bundled model, and no background download replacing it."""
    from app.config import AppConfig
    from app.ui import build_catalog

    monkeypatch.setenv("CAST_DEFAULT_MODEL", "cast_explorer_default")
    monkeypatch.setenv("CAST_CHECKPOINTS_DIR", str(tmp_path / "checkpoints"))
    catalog = build_catalog(AppConfig.from_env())
    started = []
    monkeypatch.setattr(catalog.downloads, "start", lambda name, *a, **k: started.append(name))
    key = catalog.choose_default(background_download=True)
    assert key == catalog.bundled_key() and started == [] and "bundled" in catalog.default_status()


@pytest.mark.slow
def test_startup_line_names_the_model_and_the_mode_and_cli_models_load(tmp_path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copy(bundled_checkpoint(), runs / "my_cli_run.safetensors")
    log = tmp_path / "app.log"
    env = {"CAST_MODEL_DIRS": str(runs), "CAST_JOBS_DIR": str(tmp_path / "jobs"),
           "CAST_CHECKPOINTS_DIR": str(tmp_path / "checkpoints")}  # fmt: skip
    with running_app(log, extra_env=env) as url:
        from gradio_client import Client, handle_file

        client = Client(url, verbose=False, download_files=str(tmp_path / "dl"))
        outputs = client.predict(handle_file(str(bundled_checkpoint().parent / "examples" / "coffee.jpg")),
                                 "file:my_cli_run.safetensors", api_name="/segment")  # fmt: skip
        model_line = next(o for o in outputs if isinstance(o, str) and o.startswith("**Model:**"))
        assert "my_cli_run" in model_line
    text = log.read_text()
    assert f"CAST Explorer on {url} — local mode (no caps)" in text
    # offline, nothing official here: the line says the bundled model and why
    assert "default model: the bundled model; cast_base_moco_in1k is not on this machine (offline)" in text


def test_a_failed_background_download_is_said_on_the_console(caplog) -> None:
    from app.downloads import DownloadManager
    from cast.errors import CheckpointError

    def fetch(name, **kwargs):
        raise CheckpointError(f"The pretrained model {name} could not be downloaded (connection refused).")

    manager = DownloadManager(fetch=fetch)
    with caplog.at_level("INFO", logger="app.downloads"):
        manager.start("cast_base_moco_in1k")
        assert manager.wait("cast_base_moco_in1k", timeout=30).status == "failed"
    assert "download of cast_base_moco_in1k failed: The pretrained model" in caplog.text
