"""The package stands alone: installed with pip into a clean folder, imported from elsewhere, its data
files (the bundled checkpoint, ImageNet class names) found; torch.hub entry points; the console scripts."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_torch_hub_entry_points() -> None:
    model = torch.hub.load(str(REPO_ROOT), "cast_tiny", source="local")
    assert model.config.name == "cast_tiny" and not model.training
    pretrained = torch.hub.load(str(REPO_ROOT), "cast_base_moco_in1k", source="local", pretrained=False)
    assert pretrained.config.name == "cast_base" and pretrained.pretrained_cfg.trained is False  # the architecture


@pytest.mark.slow
def test_pip_install_into_a_clean_folder_and_import_from_elsewhere(tmp_path: Path) -> None:
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                              str(REPO_ROOT)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    assert (target / "cast" / "data" / "cast_explorer_default.safetensors").stat().st_size > 1_000_000  # a file, not a link
    assert not (target / "cast" / "data" / "cast_explorer_default.safetensors").is_symlink()
    code = """
import cast
from cast.weights.bundled import bundled_checkpoint
from cast.weights import imagenet_class_names
from skimage import data
assert cast.__file__.startswith(TARGET), cast.__file__
assert "cast_small" in cast.list_models() and "cast_base_moco_in1k" in cast.list_models(pretrained=True)
h = cast.Segmenter(cast.create_model("cast_small")).run(data.astronaut())
assert h.num_levels == 5 and len(h.segment_ids(4)) <= 8
assert cast.load_model(bundled_checkpoint()).config.name == "cast_tiny" and len(imagenet_class_names()) == 1000
# the bundled model by name, everywhere a name is taken
assert "cast_explorer_default" in cast.list_models(pretrained=True)
bundled = cast.load_model("cast_explorer_default")
assert bundled.config.name == "cast_tiny" and bundled.pretrained_cfg.zoo_name == "cast_explorer_default"
assert cast.create_model("cast_explorer_default", pretrained=True).pretrained_cfg.trained is True
assert cast.create_model("cast_explorer_default").pretrained_cfg.trained is False  # the architecture, as for zoo names
# the example photographs ship with the package (files, not links) and segment from here
photos = cast.example_images()
assert [p.name for p in photos] == ["astronaut.jpg", "chelsea_cat.jpg", "coffee.jpg", "rocket.jpg"], photos
assert all(p.is_file() and not p.is_symlink() and str(p).startswith(TARGET) for p in photos)
h = cast.Segmenter(bundled).run(cast.example_image("chelsea_cat"))
assert h.num_levels == 5 and h.provenance.checkpoint == "cast_explorer_default"
try:
    cast.create_model("cast_small_moco_in1k", pretrained=True)
except cast.CheckpointError as err:
    assert "cast_small_moco_in1k" in str(err) and "cast download" in str(err)
else:
    raise AssertionError("offline, the official weights cannot be had: an error was expected")
print("ok")
""".replace("TARGET", repr(str(target)))
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
    cli = subprocess.run([sys.executable, "-m", "cast", "list", "cast_small*"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 0 and "cast_small_deep" in cli.stdout.split()

    # the console scripts pip wrote (target/bin), run from here
    def script(name: str, *args: str, importtime: bool = False) -> subprocess.CompletedProcess:
        flags = ["-X", "importtime"] if importtime else []
        return subprocess.run([sys.executable, *flags, str(target / "bin" / name), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    def imported(run: subprocess.CompletedProcess) -> set[str]:
        return {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in run.stderr.splitlines()
                if line.startswith("import time:")}  # fmt: skip

    app_help = script("cast-explorer", "--help", importtime=True)
    assert app_help.returncode == 0, app_help.stderr[-2000:]
    assert all(f"--{option}" in app_help.stdout for option in ("host", "port", "model", "model-dir", "share"))
    assert not imported(app_help) & {"torch", "gradio"}  # --help answers at once, no server
    cast_help = script("cast", "--help", importtime=True)
    assert cast_help.returncode == 0 and "segment" in cast_help.stdout and "torch" not in imported(cast_help)
    assert "cast" in imported(cast_help)  # the timing above is of our module, imported from the install
    missing = script("cast", "segment", str(tmp_path / "no_such_folder"), "--out", str(tmp_path / "out"), importtime=True)
    assert missing.returncode == 2 and "no_such_folder does not exist" in missing.stderr
    assert "torch" not in imported(missing) and not (tmp_path / "out").exists()  # failed before loading any model
    listing = script("cast", "list", "--pretrained")
    assert listing.returncode == 0 and "cast_explorer_default" in listing.stdout and "bundled" in listing.stdout
