"""Checkpoint reading, layout detection, key mapping, strict loading and our own format.

Fake checkpoints are built from the official manifests in the parity folder (exact key names,
shapes, dtypes and nesting; random values). Backbone tensors are dense random; tensors the loader
must skip (momentum encoder, projector, predictor, EMA, optimizer moments) are cheap stride-0 views
of one random row each, which torch.save stores as that row only, so the files stay small.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from official_layouts import deit_checkpoint, fake_state, moco_checkpoint
from reference import first_single_fixture, official_tiny_state, read_manifest
from safetensors.torch import load_file, save_file

from cast.errors import CheckpointError
from cast.model import build_model, get_config
from cast.superpixels import SuperpixelConfig
from cast.weights import (
    LoadedCheckpoint,
    convert_checkpoint,
    detect_layout,
    imagenet_class_names,
    infer_config,
    load_checkpoint,
    read_checkpoint_file,
    to_model_state_dict,
    top_k_classes,
)
from cast.weights.format import (
    METADATA_KEY,
    CheckpointMetadata,
    Provenance,
    save_cast_checkpoint,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def expected_source_key(ours: str, prefix: str, config, seg_layout: bool) -> str:
    """Independent statement of the mapping: where each of our keys comes from in an official file."""
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", ours)
    if m and seg_layout:
        j, offsets = int(m.group(1)), [sum(config.depths[:k]) for k in range(len(config.depths))]
        stage = max(k for k in range(len(offsets)) if offsets[k] <= j)
        return f"{prefix}blocks{stage + 1}.{j - offsets[stage]}.{m.group(2)}"
    return prefix + ours


def assert_weights_from(loaded: LoadedCheckpoint, source: dict, prefix: str = "", seg_layout: bool = False) -> None:
    """Every model tensor equals the file tensor it must come from."""
    for key, value in loaded.model.state_dict().items():
        expected = source[expected_source_key(key, prefix, loaded.config, seg_layout)]
        assert torch.equal(value, expected.to(value.dtype)), key


@pytest.fixture(scope="session")
def manifests(parity_path: Path) -> dict[str, dict]:
    names = ["moco_cast_small", "moco_cast_small_deep", "moco_cast_base", "moco_cast_seg_small_pretrain",
             "deit_cast_small", "moco_cast_small_converted_to_deit", "models"]  # fmt: skip
    return {n: read_manifest(parity_path, n) for n in names}


@pytest.fixture(scope="session")
def tiny_file(parity_path: Path, tmp_path_factory) -> Path:
    """The tiny official CAST in the official cast.py layout (blocks.{j} and their blocks{K}.{j} views)."""
    path = tmp_path_factory.mktemp("official") / "tiny_cast.safetensors"
    save_file(official_tiny_state(parity_path), str(path))
    return path


@pytest.fixture(scope="session")
def astronaut_inputs(parity_path: Path) -> dict[str, torch.Tensor]:
    return first_single_fixture(parity_path)


@pytest.fixture(scope="session")
def tiny(tiny_file: Path) -> LoadedCheckpoint:
    return load_checkpoint(tiny_file)


def _forward(model, inputs):
    with torch.no_grad():
        return model(inputs["image"], inputs["superpixel"])


# ---------------------------------------------------------------------- the official tiny fixture
def test_tiny_fixture_loads_as_plain_and_matches_official_logits(tiny, astronaut_inputs, tiny_file):
    assert tiny.layout == "plain" and tiny.config.name == "cast_tiny" and tiny.config.num_heads == 6
    assert tiny.has_classifier and tiny.missing_keys == []
    assert "duplicate stage-view" in tiny.report and "cast_tiny" in tiny.report
    out = _forward(tiny.model, astronaut_inputs)
    torch.testing.assert_close(out.class_logits, astronaut_inputs["logits"], rtol=0, atol=1e-4)
    assert_weights_from(tiny, load_file(str(tiny_file)))
    assert not tiny.model.training


# ----------------------------------------------------------------------------- official layouts
@pytest.mark.parametrize("name, variant", [("moco_cast_small", "cast_small"), ("moco_cast_small_deep", "cast_small_deep")])
def test_moco_checkpoint_loads_online_encoder_without_classifier(tmp_path, manifests, name, variant):
    ckpt = moco_checkpoint(manifests[name])
    path = tmp_path / "checkpoint_0099.pth.tar"
    torch.save(ckpt, path)
    loaded = load_checkpoint(path)
    assert loaded.layout == "moco" and loaded.config.name == variant
    assert loaded.config.num_classes == 0 and loaded.model.head is None and not loaded.has_classifier
    assert loaded.missing_keys == ["head.weight", "head.bias"]
    assert loaded.epoch == 100 and loaded.arch == variant
    assert "base_encoder" in loaded.report and "not a classifier" in loaded.report and "epoch 100" in loaded.report
    sd = ckpt["state_dict"]
    assert_weights_from(loaded, sd, prefix="module.base_encoder.")
    key = "blocks.4.attn.qkv.weight"  # the online encoder, not its momentum twin
    assert not torch.equal(loaded.model.state_dict()[key], sd[f"module.momentum_encoder.{key}"])
    assert set(loaded.extras) == {"projector", "predictor"}
    assert torch.equal(loaded.extras["projector"]["0.weight"], sd["module.base_encoder.head.0.weight"])
    assert torch.equal(loaded.extras["predictor"]["3.weight"], sd["module.predictor.3.weight"])
    assert len(loaded.extras["projector"]) == sum(k.startswith("module.base_encoder.head.") for k in sd)


def test_moco_checkpoint_forward_runs(tmp_path, manifests, astronaut_inputs):
    path = tmp_path / "moco.pth.tar"
    torch.save(moco_checkpoint(manifests["moco_cast_small"], seed=3), path)
    out = _forward(load_checkpoint(path).model, astronaut_inputs)
    assert out.class_logits is None and torch.isfinite(out.embedding).all()
    assert [l.shape[-1] for l in out.logits] == [64, 32, 16, 8]


def test_moco_cast_base_checkpoint(tmp_path, manifests):
    """cast_base (112M) written to disk once; its tensors are cheap stride-0 views to keep the file small."""
    ckpt = moco_checkpoint(manifests["moco_cast_base"], seed=5, dense=False)
    path = tmp_path / "checkpoint_0099.pth.tar"
    torch.save(ckpt, path)
    loaded = load_checkpoint(path)
    assert loaded.layout == "moco" and loaded.config.name == "cast_base" and loaded.config.embed_dim == 768
    assert not loaded.has_classifier
    assert_weights_from(loaded, ckpt["state_dict"], prefix="module.base_encoder.")


def test_moco_cast_seg_checkpoint_renumbers_stage_blocks(tmp_path, manifests):
    ckpt = moco_checkpoint(manifests["moco_cast_seg_small_pretrain"], seed=7)
    assert not any(k.startswith("module.base_encoder.blocks.") for k in ckpt["state_dict"])
    path = tmp_path / "checkpoint_0149.pth.tar"
    torch.save(ckpt, path)
    loaded = load_checkpoint(path)
    assert loaded.config.name == "cast_seg_small_pretrain" and loaded.config.block_fusion
    assert_weights_from(loaded, ckpt["state_dict"], prefix="module.base_encoder.", seg_layout=True)
    sd = loaded.model.state_dict()
    assert torch.equal(sd["blocks.4.mlp.fc1.weight"], ckpt["state_dict"]["module.base_encoder.blocks2.1.mlp.fc1.weight"])
    assert torch.equal(sd["blocks.10.norm1.bias"], ckpt["state_dict"]["module.base_encoder.blocks4.1.norm1.bias"])
    assert "renumbered" in loaded.report


def test_deit_checkpoint_has_imagenet_classifier(tmp_path, manifests, astronaut_inputs):
    ckpt = deit_checkpoint(manifests["deit_cast_small"])
    path = tmp_path / "best_checkpoint.pth"
    torch.save(ckpt, path)
    assert isinstance(read_checkpoint_file(path)["args"], argparse.Namespace)  # allow-listed, nothing else
    loaded = load_checkpoint(path)
    assert loaded.layout == "deit" and loaded.config.name == "cast_small_deit" and loaded.config.pos_embed == "learned"
    assert loaded.has_classifier and loaded.config.num_classes == 1000 and loaded.missing_keys == []
    assert loaded.epoch == 299 and loaded.arch == "cast_small" and "model_ema" in loaded.report
    assert_weights_from(loaded, ckpt["model"])  # `model`, not `model_ema`
    assert not torch.equal(loaded.model.state_dict()["head.weight"], ckpt["model_ema"]["head.weight"])
    assert loaded.class_names == imagenet_class_names()
    top5 = top_k_classes(_forward(loaded.model, astronaut_inputs).class_logits, k=5, names=loaded.class_names)
    assert len(top5) == 5 and all(name in loaded.class_names for name, _ in top5)
    assert [p for _, p in top5] == sorted((p for _, p in top5), reverse=True)


def test_converted_to_deit_checkpoint(tmp_path, manifests):
    manifest = manifests["moco_cast_small_converted_to_deit"]
    ckpt = {"model": fake_state(manifest["model"], seed=11)}
    path = tmp_path / "converted.pth"
    torch.save(ckpt, path)
    loaded = load_checkpoint(path)
    assert loaded.layout == "converted_deit" and loaded.config.name == "cast_small" and not loaded.has_classifier
    assert loaded.missing_keys == ["head.weight", "head.bias"]
    assert_weights_from(loaded, ckpt["model"])


PLAIN_VARIANTS = [
    ("cast_small", "cast_small", False),
    ("cast_small_deep", "cast_small_deep", False),
    ("cast_seg_small_pretrain", "cast_seg_small_pretrain", True),
    ("cast_seg_small", "cast_seg_small_pretrain", True),  # segmentation stage: same keys, 320/160/80/40 clusters
]


@pytest.mark.parametrize("entry, variant, seg", PLAIN_VARIANTS)
def test_plain_state_dict_of_every_small_variant(tmp_path, manifests, entry, variant, seg):
    sd = fake_state(manifests["models"][entry]["state_dict"], seed=13)
    path = tmp_path / "plain.pth"
    torch.save(sd, path)
    loaded = load_checkpoint(path)
    assert loaded.layout == "plain" and loaded.config.name == variant
    assert loaded.has_classifier and loaded.config.num_classes == 1000
    assert_weights_from(loaded, sd, seg_layout=seg)


def test_segmentation_stage_clusters_are_a_config_choice(tmp_path, manifests):
    sd = fake_state(manifests["models"]["cast_seg_small"]["state_dict"], seed=17)
    path = tmp_path / "seg.safetensors"
    save_file({k: v.contiguous().clone() for k, v in sd.items()}, str(path))
    config = get_config("cast_seg_small_pretrain", num_clusters=(320, 160, 80, 40))
    loaded = load_checkpoint(path, config=config)
    assert loaded.config.num_clusters == (320, 160, 80, 40)
    assert_weights_from(loaded, sd, seg_layout=True)


@pytest.mark.parametrize("entry, variant, like", [
    ("cast_base", "cast_base", "cast_small"),
    ("cast_base_deep", "cast_base_deep", "cast_small_deep"),
    ("cast_seg_base_pretrain", "cast_seg_base_pretrain", "cast_seg_small_pretrain"),
])  # fmt: skip
def test_base_variants_infer_and_map_without_building(manifests, entry, variant, like):
    """Key mapping + variant inference only: the 112-140M models are built once elsewhere (MoCo cast_base)."""
    sd = fake_state(manifests["models"][entry]["state_dict"], seed=19, dense_prefixes=("no-dense",))
    config = infer_config(sd)
    assert config.name == variant and config.num_classes == 1000
    mapped = to_model_state_dict(sd, config)
    ours_small = build_model(like).state_dict()
    assert set(mapped) == set(ours_small)  # names do not depend on the width
    for key, value in mapped.items():
        small = ours_small[key].shape
        assert value.dim() == len(small), key
        assert all(b in (s, 2 * s) for b, s in zip(value.shape, small)), key  # C 384 -> 768 everywhere


def test_module_prefixed_plain_state_dict(tmp_path, tiny_file):
    sd = {f"module.{k}": v for k, v in load_file(str(tiny_file)).items()}
    path = tmp_path / "ddp.pt"
    torch.save({"epoch": 3, "state_dict": sd}, path)
    loaded = load_checkpoint(path)
    assert loaded.layout == "plain" and loaded.config.name == "cast_tiny" and loaded.epoch == 3
    assert_weights_from(loaded, sd, prefix="module.")


def test_detect_layout_names(manifests, tiny_file):
    flat = load_file(str(tiny_file))
    assert detect_layout(flat) == "plain"
    assert detect_layout({"state_dict": {"module.base_encoder.cls_token": torch.zeros(1)}}) == "moco"
    assert detect_layout({"model": {"pos_embed": torch.zeros(1, 785, 8), "cls_token": torch.zeros(1, 1, 8)}}) == "deit"
    assert detect_layout({"model": {"pos_embed": torch.zeros(1, 784, 8), "pe_token": torch.zeros(1, 1, 8)}}) == "converted_deit"
    assert detect_layout({METADATA_KEY: {}, "state_dict": {}}) == "ours"
    with pytest.raises(CheckpointError, match="no known layout"):
        detect_layout({"epoch": 1, "notes": "hello"})


def test_infer_config_of_official_layouts(manifests, tiny_file):
    moco = moco_checkpoint(manifests["moco_cast_small"], dense=False)["state_dict"]
    assert infer_config(moco).name == "cast_small" and infer_config(moco).num_classes == 0
    deit = fake_state(manifests["deit_cast_small"]["model"], 0, dense_prefixes=("no-dense",))
    assert infer_config(deit).name == "cast_small_deit"
    tiny = infer_config(load_file(str(tiny_file)))
    assert (tiny.name, tiny.num_heads, tiny.depths) == ("cast_tiny", 6, (1, 1, 1, 1))


# ------------------------------------------------------------------------------ broken / hostile
class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickle_that_runs_code_is_refused_and_not_executed(tmp_path, writer, tiny, astronaut_inputs):
    before = _forward(tiny.model, astronaut_inputs).class_logits
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pth"
    payload = {"state_dict": {"cls_token": torch.zeros(1)}, "x": _RunsCode(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "not allowed" in message and "NOT executed" in message and str(path) in message
    assert not marker.exists()
    # nothing else breaks: the model loaded before still works, with the same output
    torch.testing.assert_close(_forward(tiny.model, astronaut_inputs).class_logits, before, rtol=0, atol=0)


def test_blocked_global_is_named(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": _RunsCode(tmp_path / "M")}, path)
    with pytest.raises(CheckpointError, match=r"system"):
        read_checkpoint_file(path)


def test_truncated_files(tmp_path, tiny_file):
    pth = tmp_path / "trunc.pth"
    torch.save(load_file(str(tiny_file)), pth)
    pth.write_bytes(pth.read_bytes()[: pth.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(pth)
    st = tmp_path / "trunc.safetensors"
    st.write_bytes(tiny_file.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="beyond the end of the file"):
        load_checkpoint(st)


@pytest.mark.parametrize("content, words", [
    (b"", "empty (0 bytes)"),
    (b"epoch: 100\nthis is a text file, not weights\n", "not a checkpoint: it looks like a text file"),
    (bytes(range(7, 256)) * 4, "not a checkpoint: it looks like unrecognised binary data"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(300), "not a checkpoint: it looks like a JPEG image"),
])  # fmt: skip
def test_not_a_checkpoint(tmp_path, content, words):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(words)):
        load_checkpoint(path)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_absurd_safetensors_header_is_rejected_without_allocating(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [10**12], "data_offsets": [0, 4 * 10**12]}}).encode()
    path = tmp_path / "absurd.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(64))
    with pytest.raises(CheckpointError, match=r"'w' \(shape \[1000000000000\], 4.0 TB\) lies beyond the end"):
        load_checkpoint(path)
    huge = tmp_path / "huge_header.safetensors"
    huge.write_bytes((2**60).to_bytes(8, "little") + b"{}")
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        load_checkpoint(huge)
    bad_json = tmp_path / "bad.safetensors"
    bad_json.write_bytes((5).to_bytes(8, "little") + b"{nope")
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        load_checkpoint(bad_json)


def _tiny_state(tiny_file: Path) -> dict[str, torch.Tensor]:
    return dict(load_file(str(tiny_file)))


def test_wrong_shape_is_reported_by_key(tmp_path, tiny_file):
    sd = _tiny_state(tiny_file)
    sd["pool2.pool_block.fc1.1.weight"] = torch.zeros(100, 96)
    path = tmp_path / "bad_shape.safetensors"
    save_file(sd, str(path))
    words = "1 shape mismatch, e.g. pool2.pool_block.fc1.1.weight: file [100, 96] vs model [384, 96]"
    with pytest.raises(CheckpointError, match=re.escape(words)):
        load_checkpoint(path)


def test_missing_and_unexpected_keys_are_counted(tmp_path, tiny_file):
    sd = _tiny_state(tiny_file)
    for key in [k for k in sd if k.startswith("pool3.pool_block.fc1.")]:
        del sd[key]
    sd["extra.thing"] = torch.zeros(3)
    path = tmp_path / "keys.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "4 keys missing, e.g. pool3.pool_block.fc1.0.weight" in message
    assert "1 unexpected key, e.g. extra.thing" in message


def test_forcing_a_different_variant_is_refused(tiny_file, tmp_path, manifests):
    with pytest.raises(CheckpointError, match=r"does not fit the cast_small model.*looks like a cast_tiny checkpoint"):
        load_checkpoint(tiny_file, config="cast_small")
    sd = fake_state(manifests["models"]["cast_small"]["state_dict"], seed=1, dense_prefixes=("no-dense",))
    path = tmp_path / "small.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"keys missing, e.g. blocks.11.*looks like a cast_small checkpoint"):
        load_checkpoint(path, config="cast_small_deep")


def test_unknown_forced_variant_is_a_checkpoint_error(tiny_file):
    with pytest.raises(CheckpointError, match="unknown CAST variant 'cast_giant'"):
        load_checkpoint(tiny_file, config="cast_giant")


def test_mismatched_duplicate_block_is_refused(tmp_path, tiny_file):
    sd = _tiny_state(tiny_file)
    sd["blocks2.1.attn.qkv.weight"] = sd["blocks2.1.attn.qkv.weight"] + 1e-3
    path = tmp_path / "dup.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointError, match=re.escape(
        "blocks2.1.attn.qkv.weight differs from its twin blocks.1.attn.qkv.weight: the file is inconsistent"
    )):  # fmt: skip
        load_checkpoint(path)


def test_vit_baseline_is_not_cast(tmp_path):
    sd = {"module.base_encoder.cls_token": torch.zeros(1, 1, 384), "module.base_encoder.pos_embed": torch.zeros(1, 196, 384),
          "module.base_encoder.blocks.0.norm1.weight": torch.ones(384)}  # fmt: skip
    path = tmp_path / "vit.pth.tar"
    torch.save({"epoch": 100, "arch": "vit_conv_small", "state_dict": sd}, path)
    with pytest.raises(CheckpointError, match="not a CAST checkpoint: it has no graph-pooling layers"):
        load_checkpoint(path)


# ----------------------------------------------------------------------------------- our format
def _metadata(trained: bool = True) -> CheckpointMetadata:
    return CheckpointMetadata(
        trained=trained,
        superpixels=SuperpixelConfig(num_superpixels=150, histogram_bins=5),
        provenance=Provenance(data="ImageNet-1K (test)", steps=12, parent_checkpoint="tiny_cast.safetensors",
                              recipe="none", deviations=["tiny model"], notes="round-trip test"),  # fmt: skip
        class_names=[f"class {i}" for i in range(1000)],
    )


def test_our_format_round_trip_fp32_is_exact(tmp_path, tiny, astronaut_inputs):
    path = save_cast_checkpoint(tmp_path / "ours.safetensors", tiny.model, metadata=_metadata())
    back = load_checkpoint(path)
    assert back.layout == "ours" and back.config == tiny.config and back.metadata == _metadata()
    assert back.class_names[7] == "class 7" and back.trained
    assert not any(re.match(r"blocks\d", k) for k in load_file(str(path)))  # each block stored once
    a, b = _forward(tiny.model, astronaut_inputs), _forward(back.model, astronaut_inputs)
    assert torch.equal(a.class_logits, b.class_logits) and torch.equal(a.embedding, b.embedding)
    assert all(torch.equal(x, y) for x, y in zip(a.logits, b.logits))


def test_our_format_fp16_within_tolerance_and_untrained_flag(tmp_path, tiny, astronaut_inputs):
    full = save_cast_checkpoint(tmp_path / "fp32.safetensors", tiny.model, metadata=_metadata(False))
    half = save_cast_checkpoint(tmp_path / "fp16.safetensors", tiny.model, metadata=_metadata(False), dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    back = load_checkpoint(half)
    assert not back.trained and "UNTRAINED" in back.report and "UNTRAINED" in back.describe()
    assert next(back.model.parameters()).dtype == torch.float32
    a, b = _forward(tiny.model, astronaut_inputs), _forward(back.model, astronaut_inputs)
    torch.testing.assert_close(b.class_logits, a.class_logits, rtol=0, atol=2e-2)
    torch.testing.assert_close(b.embedding, a.embedding, rtol=0, atol=2e-2)


def test_our_format_keeps_moco_extras(tmp_path, manifests):
    src = tmp_path / "moco.pth.tar"
    ckpt = moco_checkpoint(manifests["moco_cast_small"], seed=23, dense=False)
    torch.save(ckpt, src)
    dst = tmp_path / "ours.safetensors"
    first = convert_checkpoint(src, dst, keep_extras=True)
    back = load_checkpoint(dst)
    assert back.layout == "ours" and back.config == first.config and not back.has_classifier
    assert back.metadata.provenance.epoch == 100 and back.metadata.provenance.parent_checkpoint == str(src)
    assert set(back.extras) == {"projector", "predictor"}
    assert torch.equal(back.extras["projector"]["6.weight"], ckpt["state_dict"]["module.base_encoder.head.6.weight"])
    assert_weights_from(back, ckpt["state_dict"], prefix="module.base_encoder.")


def test_our_format_from_a_newer_version_or_damaged_header(tmp_path, tiny):
    path = save_cast_checkpoint(tmp_path / "ours.safetensors", tiny.model, metadata=_metadata())
    tensors = load_file(str(path))
    header = json.loads(read_safetensors_metadata(path)[METADATA_KEY])
    newer = tmp_path / "newer.safetensors"
    save_file(tensors, str(newer), metadata={METADATA_KEY: json.dumps({**header, "format_version": 99})})
    with pytest.raises(CheckpointError, match="format 99, newer than"):
        load_checkpoint(newer)
    damaged = tmp_path / "damaged.safetensors"
    save_file(tensors, str(damaged), metadata={METADATA_KEY: "{not json"})
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(damaged)
    unknown = tmp_path / "unknown.safetensors"
    save_file(tensors, str(unknown), metadata={METADATA_KEY: json.dumps({**header, "config": {"depth_of_field": 3}})})
    with pytest.raises(CheckpointError, match="incomplete or invalid"):
        load_checkpoint(unknown)


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return handle.metadata()


# ----------------------------------------------------------------------------------------- CLI
def test_cli_convert(tmp_path, tiny_file, capsys):
    from cast.cli import main

    out = tmp_path / "converted.safetensors"
    assert main(["convert", str(tiny_file), str(out), "--dtype", "float16", "--untrained"]) == 0
    assert "wrote" in capsys.readouterr().out
    back = load_checkpoint(out)
    assert back.layout == "ours" and back.config.name == "cast_tiny" and not back.trained
    assert back.metadata.provenance.parent_checkpoint == str(tiny_file)
    bad = tmp_path / "text.pth"
    bad.write_text("hello")
    assert main(["convert", str(bad), str(tmp_path / "x.safetensors")]) == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "x.safetensors").exists()


@pytest.mark.slow
def test_cli_convert_subprocess(tmp_path, tiny_file):
    out = tmp_path / "cli.safetensors"
    result = subprocess.run(
        [sys.executable, "-m", "cast", "convert", str(tiny_file), str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    back = load_checkpoint(out)
    original = load_file(str(tiny_file))
    assert all(torch.equal(v, original[k]) for k, v in back.model.state_dict().items())


# ---------------------------------------------------------------------------------- class names
def test_imagenet_class_names_file():
    names = imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench, Tinca tinca" and names[999].startswith("toilet tissue")
    assert names[134] == names[517] == "crane"  # the bird and the machine, as in every ImageNet list
    timm_info = pytest.importorskip("timm.data").ImageNetInfo("imagenet-1k")
    assert names == timm_info.label_descriptions(detailed=False)


def test_top_k_classes():
    logits = torch.full((1000,), -5.0)
    logits[1], logits[2] = 5.0, 4.0
    top = top_k_classes(logits.unsqueeze(0), k=2)
    assert [n for n, _ in top] == ["goldfish, Carassius auratus", top[1][0]] and top[1][0].startswith("great white shark")
    assert top[0][1] > top[1][1] > 0 and abs(sum(p for _, p in top_k_classes(logits, k=1000)) - 1) < 1e-4
    with pytest.raises(ValueError, match="one image"):
        top_k_classes(torch.zeros(2, 1000))
    with pytest.raises(ValueError, match="class names"):
        top_k_classes(torch.zeros(10))
