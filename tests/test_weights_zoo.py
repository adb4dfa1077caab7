"""The model zoo and the public API: registry, list/create, local cache first, no silent substitution, default order.

No test touches the network: sockets are refused for every test (and counted) and HF_HUB_OFFLINE is
on. Downloads themselves are tested against a local Hub server in test_weights_hub.py. The local Hugging Face
cache is built by the tests (models--twke--CAST/snapshots/<commit>/<filename> + refs/main), holding an
official-layout MoCo checkpoint of the tiny CAST under a test ZooEntry.
"""
from __future__ import annotations

import socket
from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest
import torch

import cast
from cast.errors import CheckpointError
from cast.model import get_config
from cast.weights import load_checkpoint
from cast.weights import hub
from cast.weights.defaults import DEFAULT_MODEL_ENV, choose_default_model
from cast.weights.format import CheckpointMetadata, Provenance, save_cast_checkpoint
from cast.weights.zoo import DEFAULT_PREFERENCE, ZOO, ZooEntry, list_pretrained
from official_layouts import tiny_moco_checkpoint
from reference import first_single_fixture, tiny_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TINY_ENTRY = ZooEntry(
    name="cast_tiny_moco_test", filename="snapshots/moco/test/cast_tiny/checkpoint_0099.pth.tar",
    architecture="cast_tiny", training="MoCo-v3", data="none (test fixture)", reported="n/a",
)  # fmt: skip


@pytest.fixture(autouse=True)
def no_network(monkeypatch) -> list[tuple]:
    """Refuse (and record) every connection attempt; offline."""
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access is disabled in the tests")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    return attempts


@pytest.fixture
def isolated_caches(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """Empty HF cache and converted-copy folders for functions that use the default locations."""
    hf_cache, ours = tmp_path / "hf", tmp_path / "cast_cache"
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setenv("CAST_EXPLORER_CACHE", str(ours))
    monkeypatch.delenv(DEFAULT_MODEL_ENV, raising=False)
    return hf_cache, ours / "converted"


def populate_hf_cache(cache: Path, entry: ZooEntry, checkpoint: dict) -> Path:
    """The huggingface_hub cache layout: models--{org}--{name}/snapshots/<commit>/<file> + refs/main."""
    repo = cache / f"models--{entry.repo_id.replace('/', '--')}"
    target = repo / "snapshots" / COMMIT / entry.filename
    target.parent.mkdir(parents=True)
    torch.save(checkpoint, target)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)  # no newline: huggingface_hub reads it verbatim
    return target


@pytest.fixture
def hf_cache(tmp_path: Path) -> Path:
    cache = tmp_path / "hf-cache"
    populate_hf_cache(cache, TINY_ENTRY, tiny_moco_checkpoint())
    return cache


def _embedding(model) -> torch.Tensor:
    inputs = first_single_fixture()
    with torch.no_grad():
        return model(inputs["image"], inputs["superpixel"]).embedding


def fake_converted(folder: Path, entry: ZooEntry) -> Path:
    """A converted copy in our format whose provenance names the entry's file (the tiny weights inside)."""
    meta = CheckpointMetadata(trained=True, provenance=Provenance(data=entry.data, parent_checkpoint=f"{entry.url_id}@{COMMIT}"))
    return save_cast_checkpoint(hub.converted_path(entry, folder), tiny_model(), metadata=meta)


# ---------------------------------------------------------------------------------- registry
def test_registry_lists_every_published_file():
    expected = {
        "vit_small_moco_in1k": ("vit_conv_small", "snapshots/moco/imagenet1k/vit_small/checkpoint_0099.pth.tar"),
        "cast_small_moco_in1k": ("cast_small", "snapshots/moco/imagenet1k/cast_small/checkpoint_0099.pth.tar"),
        "cast_small_deep_moco_in1k": ("cast_small_deep", "snapshots/moco/imagenet1k/cast_small_deep/checkpoint_0099.pth.tar"),
        "vit_base_moco_in1k": ("vit_conv_base", "snapshots/moco/imagenet1k/vit_base/checkpoint_0099.pth.tar"),
        "cast_base_moco_in1k": ("cast_base", "snapshots/moco/imagenet1k/cast_base/checkpoint_0099.pth.tar"),
        "cast_base_deep_moco_in1k": ("cast_base_deep", "snapshots/moco/imagenet1k/cast_base_deep/checkpoint_0099.pth.tar"),
        "cast_small_moco_coco_ep150": ("cast_seg_small_pretrain", "snapshots/moco/coco/cast_small/checkpoint_0149.pth.tar"),
        "cast_small_moco_coco": ("cast_seg_small_pretrain", "snapshots/moco/coco/cast_small/checkpoint_0399.pth.tar"),
        "cast_small_deit_in1k": ("cast_small_deit", "snapshots/deit/imagenet1k/cast_small/best_checkpoint.pth"),
        "cast_small_deep_deit_in1k": ("cast_small_deep_deit", "snapshots/deit/imagenet1k/cast_small_deep/best_checkpoint.pth"),
        "cast_snapshots_zip": (None, "snapshots.zip"),
    }
    assert {name: (e.architecture, e.filename) for name, e in ZOO.items()} == expected
    for entry in ZOO.values():
        assert entry.repo_id == "twke/CAST" and entry.licence and entry.reported
        assert entry.loadable == (entry.architecture is not None)
        if entry.kind == "cast":
            get_config(entry.architecture)  # a registered variant
        elif entry.kind == "vit":
            assert entry.architecture in cast.list_models("vit_*")
        else:
            assert entry.reason
    assert set(DEFAULT_PREFERENCE) <= set(ZOO) and DEFAULT_PREFERENCE[0] == "cast_base_moco_in1k"
    with pytest.raises(TypeError):
        ZOO["x"] = ZOO["cast_base_moco_in1k"]  # read-only registry


def test_list_models_in_the_timm_style():
    archs = cast.list_models()
    assert {"cast_small", "cast_small_deep", "cast_base", "cast_base_deep", "cast_tiny", "vit_conv_small"} <= set(archs)
    assert cast.list_models("cast_small*") == ["cast_small", "cast_small_deep", "cast_small_deep_deit", "cast_small_deit"]
    published = cast.list_models(pretrained=True)
    assert published == sorted([*list_pretrained(), "cast_explorer_default"]) and "cast_snapshots_zip" not in published
    assert cast.list_models("vit_*", pretrained=True) == ["vit_base_moco_in1k", "vit_small_moco_in1k"]


def test_create_model_architectures_and_errors(no_network):
    model = cast.create_model("cast_tiny")
    assert isinstance(model, torch.nn.Module) and not model.training and model.config.name == "cast_tiny"
    assert model.pretrained_cfg.trained is False and model.pretrained_cfg.checkpoint == "none (random init)"
    vit = cast.create_model("vit_conv_small")
    assert vit.config.depth == 11 and vit.pos_embed.shape == (1, 197, 384)
    with pytest.raises(CheckpointError, match="unknown model 'cast_huge'.*Architectures: .*cast_small"):
        cast.create_model("cast_huge")
    with pytest.raises(CheckpointError, match="no published weights exist for the architecture 'cast_tiny'"):
        cast.create_model("cast_tiny", pretrained=True)
    assert cast.default_pretrained_for("cast_small") == "cast_small_moco_in1k"
    assert cast.default_pretrained_for("cast_base") == "cast_base_moco_in1k"
    assert no_network == []


@pytest.mark.parametrize("name", ["cast_small_moco_in1k", "cast_base_moco_in1k", "vit_small_moco_in1k"])
def test_missing_pretrained_weights_raise_naming_the_model(name, isolated_caches, no_network):
    """Offline with empty caches: an error that names the model and how to get it; never another model."""
    with pytest.raises(CheckpointError) as info:
        cast.create_model(name, pretrained=True)
    message = str(info.value)
    assert name in message and f"cast download {name}" in message and "HF_HUB_OFFLINE" in message
    with pytest.raises(CheckpointError, match=name):
        cast.load_model(name)
    assert no_network == []


# ----------------------------------------------------------------------- the local cache path
def test_zoo_entry_loads_from_local_hf_cache_and_converts_once(tmp_path, hf_cache, monkeypatch, no_network):
    converted_dir = tmp_path / "converted"
    assert hub.local_status(TINY_ENTRY, cache_dir=hf_cache, converted_dir=converted_dir) == "cached"
    first = hub.load_pretrained(TINY_ENTRY, cache_dir=hf_cache, converted_dir=converted_dir)
    assert first.layout == "ours" and first.config.name == "cast_tiny" and not first.has_classifier
    reference = tiny_model()
    for key, value in first.model.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(value, reference.state_dict()[key]), key  # the online encoder, not the momentum one
    torch.testing.assert_close(_embedding(first.model), _embedding(reference), rtol=0, atol=0)
    converted = converted_dir / f"{TINY_ENTRY.name}.safetensors"
    assert first.source == converted and "converted once" in first.report
    assert first.metadata.provenance.parent_checkpoint == f"hf://twke/CAST/{TINY_ENTRY.filename}@{COMMIT}"
    assert first.metadata.provenance.epoch == 100 and first.superpixels == cast.SuperpixelConfig.official()
    assert hub.local_status(TINY_ENTRY, cache_dir=hf_cache, converted_dir=converted_dir) == "converted"

    def must_not_download(*args, **kwargs):
        raise AssertionError("the converted copy must be used without calling hf_hub_download")

    monkeypatch.setattr(hub, "hf_hub_download", must_not_download)
    second = hub.load_pretrained(TINY_ENTRY, cache_dir=hf_cache, converted_dir=converted_dir)
    torch.testing.assert_close(_embedding(second.model), _embedding(first.model), rtol=0, atol=0)
    assert no_network == []


def test_cached_file_is_used_without_network_even_when_online(tmp_path, hf_cache, monkeypatch, no_network):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    path = hub.fetch_pretrained(TINY_ENTRY, cache_dir=hf_cache, converted_dir=tmp_path)
    assert load_checkpoint(path).layout == "ours"
    assert no_network == []  # the local cache answered first: not even a HEAD request


def test_stale_or_damaged_converted_copy_is_replaced(tmp_path, hf_cache):
    converted_dir = tmp_path / "converted"
    converted_dir.mkdir()
    target = converted_dir / f"{TINY_ENTRY.name}.safetensors"
    target.write_bytes(b"\x00" * 100)
    with pytest.warns(UserWarning, match="ignoring the damaged converted copy"):
        hub.fetch_pretrained(TINY_ENTRY, cache_dir=hf_cache, converted_dir=converted_dir)
    assert load_checkpoint(target).layout == "ours"
    other = ZooEntry("other", "snapshots/other.pth", "cast_tiny", "MoCo-v3", "none", "n/a")
    fake_converted(converted_dir, other).replace(target)  # a valid file of ours, made from another file
    assert hub.local_status(TINY_ENTRY, cache_dir=tmp_path / "empty", converted_dir=converted_dir) is None
    hub.fetch_pretrained(TINY_ENTRY, cache_dir=hf_cache, converted_dir=converted_dir)
    assert load_checkpoint(target).metadata.provenance.parent_checkpoint.startswith(TINY_ENTRY.url_id)


def test_paths_load_directly_and_unknown_names_are_errors(tmp_path):
    path = fake_converted(tmp_path, TINY_ENTRY)
    model = cast.load_model(path)
    assert model.config.name == "cast_tiny" and model.pretrained_cfg.source == str(path)
    assert cast.load_model(str(path)).pretrained_cfg.layout == "ours"
    with pytest.raises(CheckpointError, match="unknown model 'cast_huge'"):
        cast.load_model("cast_huge")
    with pytest.raises(CheckpointError, match="is an architecture, not a checkpoint"):
        cast.load_model("cast_small")
    with pytest.raises(CheckpointError, match="does not exist"):
        cast.load_model(tmp_path / "nope.safetensors")


# ------------------------------------------------------------------------------ the default order
def test_default_model_order(isolated_caches, monkeypatch, no_network):
    hf_cache, converted = isolated_caches
    bundled = choose_default_model()
    assert bundled.spec.endswith("cast_explorer_default.safetensors") and Path(bundled.spec).is_file()
    assert "bundled" in bundled.reason and not bundled.is_official
    fake_converted(converted, ZOO["cast_small_moco_in1k"])
    assert choose_default_model().spec == "cast_small_moco_in1k"
    populate_hf_cache(hf_cache, ZOO["cast_base_moco_in1k"], {"state_dict": {}})  # only its presence counts here
    chosen = choose_default_model()
    assert chosen.spec == "cast_base_moco_in1k" and chosen.is_official and "already" in chosen.reason
    monkeypatch.setenv(DEFAULT_MODEL_ENV, "cast_small_deit_in1k")
    assert choose_default_model().spec == "cast_small_deit_in1k"
    assert no_network == []


# ----------------------------------------------------------------------------------------- CLI
def test_cli_list_and_download_offline(isolated_caches, capsys, no_network):
    from cast.cli import main

    assert main(["list", "--pretrained"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in list_pretrained()) and "not downloaded" in listing
    assert main(["list", "cast_base*"]) == 0
    assert capsys.readouterr().out.split() == ["cast_base", "cast_base_deep", "cast_base_deit"]
    assert main(["download", "cast_small_moco_in1k"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot download cast_small_moco_in1k: downloads are turned off (offline: HF_HUB_OFFLINE")
    assert "cast download" not in err  # says what to change, not to run the same command again
    assert no_network == []
