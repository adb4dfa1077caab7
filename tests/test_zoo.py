"""The model zoo: registry, loading from a local Hugging Face cache, converting once, and falling back.

No test touches the network: sockets are refused for every test (and counted), and HF_HUB_OFFLINE
is on unless a test turns it off to prove that a refused download falls back cleanly. The download
path runs the real `hf_hub_download` against a cache folder built by the test
(models--twke--CAST/snapshots/<commit>/<filename> + refs/main), holding an official-layout MoCo
checkpoint of the tiny CAST, registered through the `zoo=` parameter (a cast_small MoCo file would
be ~770 MB).
"""
from __future__ import annotations

import socket
import time
from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest
import torch
from safetensors.torch import load_file

from cast import zoo as zoo_module
from cast.checkpoints import load_checkpoint
from cast.ckpt_format import CheckpointMetadata, Provenance, save_cast_checkpoint
from cast.errors import CheckpointError
from cast.model import get_config
from cast.zoo import BUNDLED_CHECKPOINT, DEFAULT, DEFAULT_BUNDLED, ZOO, ZooEntry, ZooFallbackWarning, load_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TINY_ENTRY = ZooEntry(
    name="cast_tiny_moco_test", repo_id="twke/CAST", filename="snapshots/moco/test/cast_tiny/checkpoint_0099.pth.tar",
    variant="cast_tiny", training="MoCo-v3", data="none (test fixture)", reported="n/a",
)  # fmt: skip
TEST_ZOO = {**ZOO, TINY_ENTRY.name: TINY_ENTRY}


@pytest.fixture(autouse=True)
def no_network(monkeypatch) -> list[tuple]:
    """Refuse (and record) every connection attempt; start offline."""
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
def online(monkeypatch) -> None:
    """Downloads allowed (but every socket is still refused); huggingface_hub's retry waits skipped."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)


@pytest.fixture(scope="module")
def tiny_state(parity_path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(parity_path / "tiny_cast.safetensors"))


def _row(gen: torch.Generator, *shape: int) -> torch.Tensor:
    """One random row repeated by a stride-0 view: the official shape, tiny on disk."""
    return torch.randn(shape[-1], generator=gen).expand(*shape)


def _batchnorm(gen: torch.Generator, prefix: str, n: int, affine: bool = True) -> dict[str, torch.Tensor]:
    out = {f"{prefix}.running_mean": _row(gen, n), f"{prefix}.running_var": _row(gen, n).abs() + 0.5,
           f"{prefix}.num_batches_tracked": torch.tensor(7)}  # fmt: skip
    if affine:
        out.update({f"{prefix}.weight": _row(gen, n), f"{prefix}.bias": _row(gen, n)})
    return out


def _projector(width: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """MoCo-v3 projector (spec §5.1): Linear-BN-ReLU x2, Linear-BN(affine=False); no Linear bias."""
    out = {"0.weight": _row(gen, 4096, width), "3.weight": _row(gen, 4096, 4096), "6.weight": _row(gen, 256, 4096)}
    out.update(_batchnorm(gen, "1", 4096) | _batchnorm(gen, "4", 4096) | _batchnorm(gen, "7", 256, affine=False))
    return out


def _predictor(gen: torch.Generator) -> dict[str, torch.Tensor]:
    """MoCo-v3 predictor (spec §5.1): 10 tensors."""
    out = {"0.weight": _row(gen, 4096, 256), "3.weight": _row(gen, 256, 4096)}
    out.update(_batchnorm(gen, "1", 4096) | _batchnorm(gen, "4", 256, affine=False))
    return out


def tiny_moco_checkpoint(tiny_state: dict[str, torch.Tensor]) -> dict:
    """The official MoCo layout around the tiny CAST: online + momentum encoders, projector, predictor."""
    gen = torch.Generator().manual_seed(0)
    backbone = {k: v for k, v in tiny_state.items() if not k.startswith("head.")}
    state = {f"module.base_encoder.{k}": v for k, v in backbone.items()}
    state.update({f"module.base_encoder.head.{k}": v for k, v in _projector(96, gen).items()})
    state.update({f"module.momentum_encoder.{k}": (v + 0.1 if v.is_floating_point() else v) for k, v in backbone.items()})
    state.update({f"module.momentum_encoder.head.{k}": v for k, v in _projector(96, gen).items()})
    state.update({f"module.predictor.{k}": v for k, v in _predictor(gen).items()})
    return {"epoch": 100, "arch": "cast_tiny", "state_dict": state, "optimizer": {"state": {}, "param_groups": []},
            "scaler": {"scale": 65536.0}}  # fmt: skip


def populate_hf_cache(cache: Path, entry: ZooEntry, checkpoint: dict) -> Path:
    """The huggingface_hub cache layout: models--{org}--{name}/snapshots/<commit>/<file> + refs/main."""
    repo = cache / f"models--{entry.repo_id.replace('/', '--')}"
    target = repo / "snapshots" / COMMIT / entry.filename
    target.parent.mkdir(parents=True)
    torch.save(checkpoint, target)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)  # no newline: huggingface_hub reads it verbatim
    return target


@pytest.fixture
def hf_cache(tmp_path: Path, tiny_state) -> Path:
    cache = tmp_path / "hf-cache"
    populate_hf_cache(cache, TINY_ENTRY, tiny_moco_checkpoint(tiny_state))
    return cache


@pytest.fixture
def bundled(tmp_path: Path, tiny_state) -> Path:
    """A stand-in for checkpoints/cast_explorer_default.safetensors: the tiny model in our format, untrained."""
    from cast.model import build_model

    model = build_model("cast_tiny")
    model.load_state_dict({k: v for k, v in tiny_state.items() if not k.startswith("blocks") or k.startswith("blocks.")})
    meta = CheckpointMetadata(trained=False, provenance=Provenance(data="none", notes="test stand-in"))
    return save_cast_checkpoint(tmp_path / "bundled.safetensors", model, metadata=meta)


def _embedding(model, parity_path: Path) -> torch.Tensor:
    inputs = load_file(str(parity_path / "parity_astronaut.safetensors"))
    with torch.no_grad():
        return model(inputs["image"], inputs["superpixel"]).embedding


# ---------------------------------------------------------------------------------- registry
def test_registry_lists_every_published_file():
    expected = {
        "vit_small_moco_in1k": (None, "snapshots/moco/imagenet1k/vit_small/checkpoint_0099.pth.tar"),
        "cast_small_moco_in1k": ("cast_small", "snapshots/moco/imagenet1k/cast_small/checkpoint_0099.pth.tar"),
        "cast_small_deep_moco_in1k": ("cast_small_deep", "snapshots/moco/imagenet1k/cast_small_deep/checkpoint_0099.pth.tar"),
        "vit_base_moco_in1k": (None, "snapshots/moco/imagenet1k/vit_base/checkpoint_0099.pth.tar"),
        "cast_base_moco_in1k": ("cast_base", "snapshots/moco/imagenet1k/cast_base/checkpoint_0099.pth.tar"),
        "cast_small_moco_coco_ep150": ("cast_seg_small_pretrain", "snapshots/moco/coco/cast_small/checkpoint_0149.pth.tar"),
        "cast_small_moco_coco": ("cast_seg_small_pretrain", "snapshots/moco/coco/cast_small/checkpoint_0399.pth.tar"),
        "cast_small_deit_in1k": ("cast_small_deit", "snapshots/deit/imagenet1k/cast_small/best_checkpoint.pth"),
        "cast_snapshots_zip": (None, "snapshots.zip"),
    }
    assert {name: (e.variant, e.filename) for name, e in ZOO.items()} == expected
    for entry in ZOO.values():
        assert entry.repo_id == "twke/CAST" and entry.licence and entry.reported and entry.size_is_estimate
        assert entry.loadable == (entry.variant is not None)
        if entry.loadable:
            get_config(entry.variant)  # a registered variant
        else:
            assert entry.reason
    assert DEFAULT in ZOO and ZOO[DEFAULT].loadable
    assert DEFAULT_BUNDLED == BUNDLED_CHECKPOINT == zoo_module.REPO_ROOT / "checkpoints" / "cast_explorer_default.safetensors"
    with pytest.raises(TypeError):
        ZOO["x"] = ZOO[DEFAULT]  # read-only registry


def test_vit_baselines_are_listed_but_not_loadable(tmp_path, no_network):
    with pytest.raises(CheckpointError, match="not a CAST model"):
        load_model("vit_small_moco_in1k", cache_dir=tmp_path, converted_dir=tmp_path)
    assert no_network == []


# ----------------------------------------------------------------------- download path (cache)
def test_zoo_entry_loads_from_local_hf_cache_and_converts_once(
    tmp_path, hf_cache, tiny_state, parity_path, monkeypatch, no_network
):
    converted_dir = tmp_path / "converted"
    first = load_model(TINY_ENTRY.name, cache_dir=hf_cache, converted_dir=converted_dir, zoo=TEST_ZOO, bundled=None)
    assert first.layout == "moco" and first.config.name == "cast_tiny" and not first.has_classifier
    assert first.notice is None and "base_encoder" in first.report and "Converted once" in first.report
    assert set(first.extras) == {"projector", "predictor"}
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, tiny_state[key]), key  # the online encoder, not the momentum one
    converted = converted_dir / f"{TINY_ENTRY.name}.safetensors"
    assert converted.is_file()
    reference = load_checkpoint(parity_path / "tiny_cast.safetensors").model
    torch.testing.assert_close(_embedding(first.model, parity_path), _embedding(reference, parity_path), rtol=0, atol=0)

    def must_not_download(*args, **kwargs):
        raise AssertionError("the converted copy must be used without calling hf_hub_download")

    monkeypatch.setattr(zoo_module, "hf_hub_download", must_not_download)
    second = load_model(TINY_ENTRY.name, cache_dir=hf_cache, converted_dir=converted_dir, zoo=TEST_ZOO, bundled=None)
    assert second.layout == "ours" and second.source == converted and not second.has_classifier
    parent = second.metadata.provenance.parent_checkpoint
    assert parent == f"hf://twke/CAST/{TINY_ENTRY.filename}@{COMMIT}"
    assert second.metadata.trained and second.metadata.provenance.epoch == 100
    torch.testing.assert_close(_embedding(second.model, parity_path), _embedding(first.model, parity_path), rtol=0, atol=0)
    assert no_network == []


def test_cached_file_is_used_without_network_even_when_online(tmp_path, hf_cache, online, no_network):
    loaded = load_model(TINY_ENTRY.name, offline=None, cache_dir=hf_cache, converted_dir=tmp_path, zoo=TEST_ZOO, bundled=None)
    assert loaded.layout == "moco" and loaded.notice is None
    assert no_network == []  # the local cache answered first: not even a HEAD request


def test_stale_or_damaged_converted_copy_is_replaced(tmp_path, hf_cache, bundled):
    converted_dir = tmp_path / "converted"
    converted_dir.mkdir()
    target = converted_dir / f"{TINY_ENTRY.name}.safetensors"
    target.write_bytes(b"\x00" * 100)
    with pytest.warns(ZooFallbackWarning, match="ignoring the damaged converted copy"):
        loaded = load_model(TINY_ENTRY.name, cache_dir=hf_cache, converted_dir=converted_dir, zoo=TEST_ZOO)
    assert loaded.layout == "moco" and load_checkpoint(target).layout == "ours"
    target.write_bytes(bundled.read_bytes())  # a valid file of ours, but made from something else
    assert load_model(TINY_ENTRY.name, cache_dir=hf_cache, converted_dir=converted_dir, zoo=TEST_ZOO).layout == "moco"


# -------------------------------------------------------------------------------- fallback
def test_offline_with_empty_cache_falls_back_to_bundled(tmp_path, bundled, no_network):
    with pytest.warns(ZooFallbackWarning) as caught:
        loaded = load_model("cast_small_moco_in1k", cache_dir=tmp_path / "empty", converted_dir=tmp_path, bundled=bundled)
    assert loaded.layout == "ours" and loaded.source == bundled and not loaded.trained
    expected = (
        "Could not download cast_small_moco_in1k from the Hugging Face Hub (offline: HF_HUB_OFFLINE=1, and the file "
        f"is not in the local Hugging Face cache); using the bundled checkpoint {bundled} (an UNTRAINED placeholder: "
        "its hierarchies reflect no learning) instead. To get the official weights, run once with network access: "
        "python -m cast download cast_small_moco_in1k"
    )
    assert loaded.notice == expected and "\n" not in loaded.notice
    assert str(caught[0].message) == expected
    assert no_network == []


def test_offline_argument_wins_over_environment(tmp_path, bundled, online, no_network):
    with pytest.warns(ZooFallbackWarning, match=r"\(offline=True, and the file is not in the local"):
        load_model(DEFAULT, offline=True, cache_dir=tmp_path / "empty", converted_dir=tmp_path, bundled=bundled)
    assert no_network == []


def test_network_failure_falls_back_to_bundled(tmp_path, bundled, online, no_network):
    with pytest.warns(ZooFallbackWarning) as caught:
        loaded = load_model(DEFAULT, cache_dir=tmp_path / "empty", converted_dir=tmp_path, bundled=bundled)
    assert no_network, "an online load should have tried to connect (and been refused)"
    assert loaded.source == bundled
    assert loaded.notice.startswith(f"Could not download {DEFAULT} from the Hugging Face Hub (no network connection: ")
    assert "python -m cast download" in str(caught[0].message)


def test_missing_bundled_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"the bundled checkpoint .*missing\.safetensors is missing too"):
        load_model(DEFAULT, cache_dir=tmp_path, converted_dir=tmp_path, bundled=tmp_path / "missing.safetensors")


# ------------------------------------------------------------------------------- paths, names
def test_paths_load_directly_and_unknown_names_are_errors(tmp_path, bundled):
    assert load_model(bundled).layout == "ours"
    assert load_model(str(bundled)).source == bundled
    with pytest.raises(CheckpointError, match="unknown model 'cast_huge'"):
        load_model("cast_huge")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope.safetensors")


def test_cli_download(tmp_path, hf_cache, capsys):
    from cast.__main__ import main

    assert main(["download"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in ZOO) and "not loadable" in listing
    args = ["--cache-dir", str(tmp_path / "empty"), "--converted-dir", str(tmp_path)]
    assert main(["download", DEFAULT, *args]) == 2
    assert "Could not download cast_small_moco_in1k" in capsys.readouterr().err
    out = zoo_module.download(TINY_ENTRY.name, cache_dir=hf_cache, converted_dir=tmp_path / "conv", zoo=TEST_ZOO)
    assert out == tmp_path / "conv" / f"{TINY_ENTRY.name}.safetensors" and load_checkpoint(out).layout == "ours"
