"""The `cast` command line: help without PyTorch, one error policy, arguments checked before any work,
messages in command-line terms, the bundled model by name, and `cast train` leaving no empty bar, no resume
state after success, and one summary under torchrun."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import constants as hf_constants

from cast.cli import build_parser, main
from cast.cli.common import SUPERPIXEL_METHODS

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "gradio", "cv2", "timm")
HELP_COMMANDS = [[], ["list"], ["download"], ["convert"], ["segment"], ["search"], ["evaluate"], ["evaluate", "mask"],
                 ["evaluate", "voc"], ["evaluate", "partimagenet"], ["train"], ["train", "moco"],
                 ["train", "supervised"], ["train", "probe"]]  # fmt: skip


def _imported(argv: list[str], cwd: Path = REPO_ROOT, env: dict | None = None) -> tuple[subprocess.CompletedProcess, set]:
    """Run argv under `python -X importtime`; the process and the top-level modules it imported."""
    run = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=cwd, capture_output=True, text=True,
                         timeout=120, env=env)  # fmt: skip
    modules = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in run.stderr.splitlines() if line.startswith("import time:")}
    return run, modules


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=lambda c: " ".join(c) or "cast")
def test_help_imports_no_torch(command: list[str]) -> None:
    run, modules = _imported(["-m", "cast", *command, "--help"])
    assert run.returncode == 0 and "usage: cast" in run.stdout, run.stderr[-2000:]
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_app_help_imports_neither_torch_nor_gradio() -> None:
    run, modules = _imported(["app.py", "--help"])
    assert run.returncode == 0 and all(f"--{o}" in run.stdout for o in ("host", "port", "model", "model-dir", "share"))
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


@pytest.mark.slow
def test_python_m_cast_train_and_the_modules_import_in_any_order() -> None:
    """No import cycle between cast.cli and cast.train, whichever is imported first; `python -m cast.train` works."""
    for first in ("cast.cli.train", "cast.train", "cast.cli", "cast.train.config"):
        run = subprocess.run([sys.executable, "-c", f"import {first}; import cast.cli.train, cast.train; print('ok')"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert run.stdout.strip() == "ok", (first, run.stderr[-2000:])
    run = subprocess.run([sys.executable, "-m", "cast.train", "moco", "--help"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0 and "--seeds-setting" in run.stdout


def _parsers(parser: argparse.ArgumentParser, path: str = "cast"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_option_has_help_text() -> None:
    missing = [f"{path} {'/'.join(a.option_strings) or a.dest}" for path, parser in _parsers(build_parser())
               for a in parser._actions if not isinstance(a, argparse._SubParsersAction) and not a.help]  # fmt: skip
    assert missing == []


def test_superpixel_methods_are_the_library_s() -> None:
    from cast.superpixels import METHODS

    assert SUPERPIXEL_METHODS == METHODS


@pytest.mark.parametrize(("argv", "message"), [
    (["segment", "{missing}", "--out", "{out}"], "does not exist"),
    (["segment", "{photo}", "--out", "{out}", "--num-superpixels", "0"], "whole number from 64 to 3136, got 0"),
    (["segment", "{photo}", "--out", "{out}", "--batch-size", "0"], "whole number of at least 1, got 0"),
    (["segment", "{photo}", "--out", "{out}", "--batch-size", "two"], "expected a whole number"),
    (["search", "{missing}", "--image", "a.jpg", "--x", "1", "--y", "1"], "does not exist"),
    (["search", "{out}", "--image", "a.jpg", "--x", "1", "--y", "1", "--top-k", "0"], "at least 1"),
    (["evaluate", "mask", "{photo}", "{missing}"], "does not exist"),
    (["evaluate", "voc", "{photo}"], "is not a folder"),
    (["name", "{photo}", "--vocabulary", "coco", "--json", "{missing}/names.json"], "folder"),
    (["name", "{photo}", "--vocabulary", "coco", "--json", "{out}"], "is a folder"),
    (["evaluate", "mask", "{photo}", "{photo}", "--json", "{missing}/scores.json"], "does not exist"),
    (["convert", "{missing}", "{out}/x.safetensors"], "does not exist"),
    (["train", "moco", "--data", "{missing}", "--out", "{out}/m.safetensors"], "does not exist"),
    (["train", "moco", "--data", "{out}", "--out", "{out}/m.safetensors", "--batch-size", "0"], "at least 1"),
    (["train", "moco", "--data", "{out}", "--out", "{out}/m.safetensors", "--steps", "-3"], "at least 1"),
    (["train", "moco", "--data", "{out}", "--out", "{out}/m.safetensors", "--lr", "0"], "above 0"),
    (["train", "supervised", "--data", "{out}", "--out", "{out}/m.safetensors", "--drop-path", "1.5"], "from 0 up to"),
    (["train", "moco", "--data", "{out}", "--out", "{out}/m.safetensors", "--superpixels", "official"], "invalid choice"),
])  # fmt: skip
def test_bad_arguments_fail_while_parsing(argv, message, tmp_path, capsys, monkeypatch) -> None:
    """Exit 2 with argparse's message naming what is allowed, before any model is loaded."""
    import cast.api

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(cast.api, "load_model", no_model)
    monkeypatch.setattr(cast.api, "create_model", no_model)
    photo = tmp_path / "photo.jpg"
    shutil.copy(REPO_ROOT / "assets" / "coffee.jpg", photo)
    (tmp_path / "out").mkdir()
    values = {"missing": str(tmp_path / "no_such_folder"), "out": str(tmp_path / "out"), "photo": str(photo)}
    assert main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert list((tmp_path / "out").iterdir()) == []  # nothing written


def test_segment_on_a_missing_folder_fails_before_loading_a_model(tmp_path) -> None:
    """The whole command, as a user runs it: exit 2 at once, no model line, no progress bar, no output folder."""
    run, modules = _imported(["-m", "cast", "segment", str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    assert run.returncode == 2 and "missing does not exist" in run.stderr
    assert "model:" not in run.stderr and "torch" not in modules and not (tmp_path / "out").exists()


def test_list_without_a_match_is_an_error(capsys) -> None:
    assert main(["list", "nonexistent*"]) == 2
    assert "no architecture matches 'nonexistent*'" in capsys.readouterr().err
    assert main(["list", "--pretrained", "nope*"]) == 2
    assert "no published checkpoint matches 'nope*'" in capsys.readouterr().err


def test_bundled_model_by_name_in_the_cli(capsys) -> None:
    assert main(["list", "--pretrained", "cast_explorer*"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cast_explorer_default") and "[bundled, on this machine]" in out
    assert main(["download", "cast_explorer_default"]) == 0
    assert "nothing to download" in capsys.readouterr().out


def test_model_errors_speak_command_line(tmp_path, capsys) -> None:
    photo = REPO_ROOT / "assets" / "coffee.jpg"
    assert main(["segment", str(photo), "--out", str(tmp_path / "a"), "--model", "cast_small"]) == 2
    err = capsys.readouterr().err
    assert "--model cast_small: 'cast_small' is an architecture" in err and "cast.create_model" not in err
    assert "cast_explorer_default" in err
    assert main(["segment", str(photo), "--out", str(tmp_path / "b"), "--model", "cast_smal"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'cast_smal'" in err and "cast_explorer_default" in err


def test_download_failure_does_not_say_run_the_same_command(tmp_path, capsys, monkeypatch) -> None:
    """Online but the Hub is unreachable (a closed local port): what failed, then what to do."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    code = main(["download", "cast_small_moco_in1k", "--cache-dir", str(tmp_path / "hf"),
                 "--converted-dir", str(tmp_path / "converted")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "cast_small_moco_in1k could not be downloaded" in err, err
    assert "cast download" not in err and "run this command again" in err


# ---------------------------------------------------------------------------------------- cast train
def test_train_superpixel_options_mean_what_they_mean_in_segment(tmp_path) -> None:
    from cast.cli.train import build_parser as train_parser
    from cast.cli.train import config_from_args
    from cast.superpixels import SuperpixelConfig

    def config(*extra: str):
        return config_from_args(train_parser().parse_args(["supervised", "--data", str(tmp_path), "--out", "m.safetensors",
                                                           *extra]))  # fmt: skip

    assert config().superpixels == SuperpixelConfig.deit()  # the recipe's
    assert config("--seeds-setting", "official").superpixels == SuperpixelConfig.official()
    slic = config("--superpixels", "slic", "--num-superpixels", "100").superpixels
    assert (slic.method, slic.num_superpixels, slic.histogram_bins) == ("slic", 100, SuperpixelConfig.deit().histogram_bins)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for path in (REPO_ROOT / "assets").glob("*.jpg"):
        shutil.copy(path, folder / path.name)
    return folder


def test_train_error_before_the_first_step_prints_no_progress_bar(photos, tmp_path, capsys) -> None:
    """4 images, batch 8: a clear error and no empty `moco: 0 step` bar before it."""
    code = main(["train", "moco", "--data", str(photos), "--out", str(tmp_path / "m.safetensors"), "--variant", "cast_tiny",
                 "--steps", "1", "--batch-size", "8", "--mlp-dim", "64"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "fewer than one batch of 8" in err
    assert "moco" not in err.replace("error:", "") and "step/s" not in err and "it/s" not in err


@pytest.mark.slow
@pytest.mark.training
def test_train_removes_the_resume_state_after_success_unless_kept(photos, tmp_path, capsys) -> None:
    common = ["--data", str(photos), "--variant", "cast_tiny", "--steps", "2", "--batch-size", "2", "--mlp-dim", "64",
              "--save-every", "1"]  # fmt: skip
    assert main(["train", "moco", "--out", str(tmp_path / "a.safetensors"), *common]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "a.safetensors").is_file() and (tmp_path / "a.log.jsonl").is_file()
    assert not (tmp_path / "a.train-state.pt").exists() and "removed the resume state" in out
    assert main(["train", "moco", "--out", str(tmp_path / "b.safetensors"), "--keep-state", *common]) == 0
    assert (tmp_path / "b.train-state.pt").is_file() and "resume state kept" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.training
def test_torchrun_prints_the_summary_once(photos, tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "cast.train", "moco",
         "--data", str(photos), "--out", str(tmp_path / "ddp.safetensors"), "--variant", "cast_tiny", "--steps", "1",
         "--batch-size", "4", "--mlp-dim", "64", "--device", "cpu"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("deviations from the official recipe") == 1, run.stdout
    assert run.stdout.count("wrote ") == 1 and not (tmp_path / "ddp.train-state.pt").exists()


def test_a_truncated_image_is_named_once(tmp_path, capsys) -> None:
    cut = tmp_path / "cut.jpg"
    cut.write_bytes((REPO_ROOT / "assets" / "coffee.jpg").read_bytes()[:20000])
    assert main(["segment", str(cut), "--out", str(tmp_path / "out"), "--model", "cast_explorer_default"]) == 1
    failed = [line for line in capsys.readouterr().err.splitlines() if "truncated" in line]
    assert failed and all(line.count("cut.jpg") == 1 for line in failed), failed


def test_training_starts_from_the_bundled_model_by_name(tmp_path) -> None:
    from cast.train import MocoConfig
    from cast.train.common import load_base

    base = load_base(MocoConfig(data=str(tmp_path), output=str(tmp_path / "m.safetensors"), checkpoint="cast_explorer_default"))
    assert base.loaded is not None and base.loaded.trained and base.loaded.config.name == "cast_tiny"
    assert base.description == "cast_explorer_default"
