"""Training jobs (cast.train) on real images, small: MoCo-v3, supervised fine-tune, linear probe, resume,
cancellation, uploaded ZIPs, and DDP over two gloo processes on the CPU.

The data are scikit-image photos (and crops / flips of them) written to a temporary folder, plus one corrupt
file and one 8x8 image that must be skipped and reported. Models are cast_tiny at 224 px.
"""
from __future__ import annotations

import json
import os
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image
from safetensors.torch import load_file
from skimage import data as skdata

from cast.errors import CheckpointError
from cast.image import InputConfig, load_image, prepare_input, to_tensor
from cast.model import build_model
from cast.segmenter import Segmenter
from cast.superpixels import SuperpixelConfig, compute_superpixels
from cast.train import (
    DatasetError,
    LinearProbeConfig,
    MocoConfig,
    SupervisedConfig,
    TrainingError,
    build_job,
    config_from_dict,
    train,
)  # fmt: skip
from cast.train.common import load_base
from cast.train.moco import MocoV3, build_moco, contrastive_loss
from cast.datasets import prepare_data_root, scan_class_folders
from cast.train.views import fixed_batch
from cast.weights import load_checkpoint
from cast.weights.format import CheckpointMetadata, save_cast_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.training]


# ------------------------------------------------------------------------------------------ data
def _photos() -> dict[str, np.ndarray]:
    a, c, co = skdata.astronaut(), skdata.chelsea(), skdata.coffee()
    return {
        "astronaut": a, "chelsea": c, "coffee": co, "rocket": skdata.rocket(), "ihc": skdata.immunohistochemistry(),
        "astronaut_crop_flip": a[:300, ::-1], "chelsea_flip": c[:, ::-1], "coffee_crop": co[50:350, 100:500],
    }  # fmt: skip


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(pixels)).save(path)


def _add_bad_files(folder: Path) -> None:
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG" * 8)
    _save(folder / "tiny.png", np.full((8, 8, 3), 127, np.uint8))


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("unlabelled")
    for i, (name, pixels) in enumerate(_photos().items()):
        _save(root / ("nested" if i % 3 == 0 else "") / f"{name}.{'png' if i % 2 else 'jpg'}", pixels)
    _add_bad_files(root)
    return root


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    photos = _photos()
    classes = {"space": ["astronaut", "astronaut_crop_flip", "rocket", "coffee_crop"],
               "other": ["chelsea", "chelsea_flip", "coffee", "ihc"]}  # fmt: skip
    for cls, names in classes.items():
        for name in names:
            _save(root / cls / f"{name}.png", photos[name])
    _add_bad_files(root / "other")
    return root


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory, labelled) -> Path:
    """A random cast_tiny whose stem BatchNorm statistics were measured on the photos, as a trained
    checkpoint's are (with the init's 0 / 1, frozen statistics leave almost no image signal in out4)."""
    torch.manual_seed(123)
    model = build_model("cast_tiny", num_classes=0)
    images, superpixels = [], []
    for path in sorted(p for p in labelled.glob("*/*.png") if p.name != "tiny.png"):
        pixels = prepare_input(load_image(path), InputConfig()).pixels
        images.append(to_tensor(pixels))
        superpixels.append(torch.from_numpy(compute_superpixels(pixels, SuperpixelConfig.official()))[None])
    norms = [m for m in model.patch_embed.proj if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in norms:
        bn.momentum = None  # cumulative average over the calibration batch
    with torch.no_grad():
        model.train()(torch.cat(images), torch.cat(superpixels))
    for bn in norms:
        bn.momentum = 0.1
    path = tmp_path_factory.mktemp("base") / "cast_tiny_random.safetensors"
    save_cast_checkpoint(path, model.eval(), metadata=CheckpointMetadata(trained=False))
    return path


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(path)).items() if not k.startswith("extras.")}


def _assert_bad_files_reported(report) -> None:
    skipped = dict((Path(p).name, reason) for p, reason in report.skipped)
    assert "8x8" in skipped["tiny.png"] and "cannot be read" in skipped["corrupt.jpg"]
    assert report.num_used == 8 and not any(Path(p).name in ("tiny.png", "corrupt.jpg") for p in report.used)


# ------------------------------------------------------------------------------------------ MoCo
def test_moco_short_run_lowers_fixed_batch_loss_and_result_segments(tmp_path, unlabelled, base_checkpoint, astronaut):
    # lr raised from the recipe's 2.3e-6 (1.5e-4 x 4/256) so that 10 steps show learning; dropout off because
    # the graph pooling's p = 0.1 makes cast_tiny's contrastive loss too noisy to compare after 10 steps.
    config = MocoConfig(data=str(unlabelled), output=str(tmp_path / "moco.safetensors"), checkpoint=str(base_checkpoint),
                        steps=16, batch_size=4, lr=3e-4, mlp_dim=512, disable_dropout=True, save_every=0)  # fmt: skip
    job = build_job(config)
    # fixed batches: all 8 images with the augmentations of epochs 0-2 (seeded per sample), averaged
    batches = [fixed_batch(job.dataset, range(8), epoch=e) for e in range(3)]
    batch = batches[0]
    assert batch["images1"].shape == (8, 3, 224, 224) and batch["superpixels2"].shape == (8, 224, 224)
    assert batch["superpixels1"].dtype == torch.int64 and not torch.equal(batch["images1"], batch["images2"])
    assert torch.equal(fixed_batch(job.dataset, range(8))["images2"], batch["images2"])
    before = np.mean([job.evaluate(b) for b in batches])

    result = train(config)
    print("moco losses", [round(x, 4) for x in result.losses])
    assert result.steps == 16 and len(result.losses) == 16 and not result.cancelled
    _assert_bad_files_reported(result.report)

    again = build_job(config.with_(checkpoint=str(result.output_path)))
    assert again.notes == []  # projector, predictor and momentum encoder all came back
    after = np.mean([again.evaluate(b) for b in batches])
    print(f"moco fixed-batch loss {before:.4f} -> {after:.4f}")
    assert after < before - 0.02

    loaded = load_checkpoint(result.output_path)
    assert loaded.trained and not loaded.has_classifier
    # the model file holds what inference needs (the backbone); the MoCo heads live in the resume state
    assert loaded.extras == {} and not any(k.startswith("extras.") for k in load_file(str(result.output_path)))
    backbone_bytes = sum(v.numel() * v.element_size() for v in loaded.model.state_dict().values())
    assert result.output_path.stat().st_size < 1.1 * backbone_bytes
    state = torch.load(result.state_path, map_location="cpu", weights_only=True)
    assert any(k.startswith("projector.") for k in state["module"]) and any(k.startswith("predictor.") for k in state["module"])
    prov = loaded.metadata.provenance
    assert prov.steps == 16 and prov.recipe.startswith("MoCo-v3") and "8 images" in prov.data
    assert prov.parent_checkpoint == str(base_checkpoint) and '"kind": "moco"' in prov.notes
    assert "single process: keys from the local batch, not gathered from all GPUs" in prov.deviations
    assert "stem BatchNorm frozen (eval mode, batch 4; official: SyncBatchNorm over 256 images)" in prov.deviations
    assert "momentum encoder initialised as a copy of the base encoder (the checkpoint has none)" in prov.deviations
    assert "MoCo projector newly initialised: the base checkpoint has none" in prov.deviations
    assert any("learning rate 0.0003" in d for d in prov.deviations)
    assert loaded.metadata.superpixels == SuperpixelConfig.official()
    hierarchy = Segmenter(loaded.model).run(astronaut)
    assert hierarchy.num_levels == 5


def test_moco_continues_an_official_layout_checkpoint(tmp_path, unlabelled):
    """base_encoder (+ head = projector), momentum_encoder and predictor of an official file all load."""
    torch.manual_seed(0)
    source = MocoV3(build_model("cast_tiny", num_classes=0), mlp_dim=64, out_dim=32)
    for p in source.momentum_parameters():
        p.data.add_(torch.randn_like(p))  # make the momentum twin differ from the online encoder
    state = {}
    for prefix, module in (("module.base_encoder.", source.base_encoder), ("module.momentum_encoder.", source.momentum_encoder),
                           ("module.base_encoder.head.", source.projector), ("module.momentum_encoder.head.", source.momentum_projector),
                           ("module.predictor.", source.predictor)):  # fmt: skip
        state.update({prefix + k: v.clone() for k, v in module.state_dict().items()})
    path = tmp_path / "checkpoint_0099.pth.tar"
    torch.save({"epoch": 100, "arch": "cast_tiny", "state_dict": state, "optimizer": {}}, path)

    config = MocoConfig(data=str(unlabelled), output=str(tmp_path / "x.safetensors"), checkpoint=str(path), mlp_dim=64, out_dim=32)
    moco, notes = build_moco(config, load_base(config))
    assert notes == []
    for mine, theirs in ((moco.base_encoder, source.base_encoder), (moco.momentum_encoder, source.momentum_encoder),
                         (moco.projector, source.projector), (moco.predictor, source.predictor),
                         (moco.momentum_projector, source.momentum_projector)):  # fmt: skip
        for (name, a), b in zip(mine.state_dict().items(), theirs.state_dict().values()):
            assert torch.equal(a, b), name
    with pytest.raises(CheckpointError, match="mlp_dim"):
        build_moco(config.with_(mlp_dim=128), load_base(config))


# ------------------------------------------------------------------------------------ supervised
def test_supervised_short_run_lowers_fixed_batch_loss(tmp_path, labelled, base_checkpoint):
    config = SupervisedConfig(data=str(labelled), output=str(tmp_path / "sup.safetensors"), checkpoint=str(base_checkpoint),
                              steps=8, batch_size=4, lr=3e-4, save_every=0)  # fmt: skip
    job = build_job(config)
    batch = fixed_batch(job.dataset, range(8))
    assert batch["images"].shape == (8, 3, 224, 224) and batch["labels"].tolist().count(0) == 4
    before = job.evaluate(batch)
    result = train(config)
    print("supervised losses", [round(x, 4) for x in result.losses])
    _assert_bad_files_reported(result.report)
    assert result.report.class_names == ["other", "space"]

    again = build_job(config.with_(checkpoint=str(result.output_path)))
    assert "kept the base checkpoint's classifier head (same classes)" in again.notes
    after = again.evaluate(batch)
    print(f"supervised fixed-batch loss {before:.4f} -> {after:.4f}")
    assert after < before

    loaded = load_checkpoint(result.output_path)
    assert loaded.has_classifier and loaded.class_names == ["other", "space"] and loaded.config.num_classes == 2
    prov = loaded.metadata.provenance
    assert prov.parent_checkpoint == str(base_checkpoint) and prov.steps == 8
    assert any(d.startswith("augmentation reduced to RandomResizedCrop + flip") for d in prov.deviations)
    assert any(d.startswith("stem BatchNorm frozen (eval mode, batch 4") for d in prov.deviations)
    assert "the base checkpoint is an UNTRAINED placeholder" in prov.deviations
    assert loaded.metadata.superpixels == SuperpixelConfig.deit()
    frozen = [k for k in _tensors(base_checkpoint) if k.startswith("pool4.")]
    assert frozen and all(torch.equal(_tensors(base_checkpoint)[k], _tensors(result.output_path)[k]) for k in frozen)


def test_linear_probe_with_cached_features(tmp_path, labelled, base_checkpoint):
    config = LinearProbeConfig(data=str(labelled), output=str(tmp_path / "probe.safetensors"),
                               checkpoint=str(base_checkpoint), epochs=3, batch_size=4, cache_features=True)  # fmt: skip
    result = train(config)
    print("probe losses", [round(x, 4) for x in result.losses])
    assert result.steps == 6 and result.log[-1]["lr"] < result.log[0]["lr"]  # cosine per epoch
    loaded = load_checkpoint(result.output_path)
    assert loaded.has_classifier and loaded.class_names == ["other", "space"]
    assert any(d.startswith("features cached once") for d in loaded.metadata.provenance.deviations)
    base, out = _tensors(base_checkpoint), _tensors(result.output_path)
    assert all(torch.equal(base[k], out[k]) for k in base)  # the backbone is frozen
    assert out["head.weight"].abs().max() > 0


# ---------------------------------------------------------------------------- resume and cancel
def test_resume_continues_from_the_saved_step(tmp_path, labelled, base_checkpoint):
    config = SupervisedConfig(data=str(labelled), output=str(tmp_path / "run.safetensors"), checkpoint=str(base_checkpoint),
                              steps=4, batch_size=4, save_every=2)  # fmt: skip
    first = train(config)
    assert first.steps == 4 and first.state_path.exists()
    second = train(config.with_(steps=6, resume=True))
    assert second.start_step == 4 and second.log[0]["step"] == 5 and second.steps == 6 and len(second.losses) == 2
    state = torch.load(second.state_path, weights_only=True)  # tensors and built-ins only
    assert state["step"] == 6
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {6}  # AdamW moments carried over
    steps = [r["step"] for r in map(json.loads, first.log_path.read_text().splitlines()) if "step" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    with pytest.raises(TrainingError, match="batch_size"):  # another data stream: refused, not mixed
        train(config.with_(steps=8, resume=True, batch_size=2))


def test_cancel_keeps_state_and_resume_matches_an_uninterrupted_run(tmp_path, labelled, base_checkpoint):
    common = dict(data=str(labelled), checkpoint=str(base_checkpoint), steps=6, batch_size=2, save_every=0)
    reference = train(SupervisedConfig(output=str(tmp_path / "straight.safetensors"), **common))

    calls = []
    config = SupervisedConfig(output=str(tmp_path / "interrupted.safetensors"), **common)
    cancelled = train(config, progress_callback=calls.append, should_stop=lambda: len(calls) >= 2)
    assert cancelled.cancelled and cancelled.steps == 2 and cancelled.output_path is None
    assert not Path(config.output).exists() and cancelled.state_path.exists()
    assert [c["step"] for c in calls] == [1, 2] and set(calls[0]) >= {"step", "total_steps", "epoch", "loss",
                                                                       "images_per_s", "eta_s", "lr"}  # fmt: skip
    resumed = train(config.with_(resume=True))  # step 2 of 6 is mid-epoch (4 batches of 2 per epoch)
    assert resumed.start_step == 2 and resumed.steps == 6
    assert resumed.losses == pytest.approx(reference.losses[2:], rel=1e-5)
    a, b = _tensors(reference.output_path), _tensors(resumed.output_path)
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


# ------------------------------------------------------------------------------------------ data
def test_zip_upload_is_extracted_and_unsafe_archives_are_refused(tmp_path, labelled):
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(labelled.rglob("*")):
            if path.is_file():
                zf.write(path, f"my photos/{path.relative_to(labelled)}")  # one wrapper folder
    root = prepare_data_root(archive, extract_dir=tmp_path / "cache")
    files, labels, report = scan_class_folders(root)
    assert report.class_names == ["other", "space"] and len(files) == 8 and sorted(set(labels)) == [0, 1]
    assert prepare_data_root(archive, extract_dir=tmp_path / "cache") == root  # extracted once

    for name in ("../escape.png", "/abs/escape.png"):
        bad = tmp_path / "bad.zip"
        with zipfile.ZipFile(bad, "w") as zf:
            zf.writestr(name, b"x")
        with pytest.raises(DatasetError, match="unsafe path"):
            prepare_data_root(bad, extract_dir=tmp_path / "cache")
    assert not (tmp_path / "escape.png").exists()
    with pytest.raises(DatasetError, match="limit"):
        prepare_data_root(archive, extract_dir=tmp_path / "cache2", max_bytes=1000)


def test_configs_round_trip_and_name_their_deviations(tmp_path):
    moco = MocoConfig(data="d", output="o.safetensors", steps=5, batch_size=8)
    assert config_from_dict(json.loads(json.dumps(moco.to_dict()))) == moco
    probe = LinearProbeConfig(data="d", output="o", cache_features=True, superpixels=SuperpixelConfig.deit().to_dict())
    assert config_from_dict(probe.to_dict()) == probe and isinstance(probe.superpixels, SuperpixelConfig)
    assert "batch 8 instead of 256" in moco.deviations()
    assert moco.scaled_lr == pytest.approx(1.5e-4 * 8 / 256)
    assert not any("single process" in d for d in moco.deviations(world_size=2, device="cuda"))
    assert any("superpixels" in d for d in probe.deviations())
    with pytest.raises(ValueError):
        MocoConfig(data="d", output="o", steps=3, epochs=2)


# ------------------------------------------------------------------------------------------- DDP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join_group(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)


def _ddp_train_worker(rank: int, world: int, port: int, config: dict, out_dir: str) -> None:
    _join_group(rank, world, port)
    result = train(config_from_dict(config))
    summary = {"steps": result.steps, "losses": result.losses, "deviations": result.deviations}
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(summary))


def _ddp_gather_worker(rank: int, world: int, port: int, q: torch.Tensor, k: torch.Tensor, out_dir: str) -> None:
    import torch.distributed as dist

    _join_group(rank, world, port)
    dist.init_process_group("gloo")
    n = q.shape[0] // world
    local_q = q[rank * n : (rank + 1) * n].clone().requires_grad_(True)
    loss = contrastive_loss(local_q, k[rank * n : (rank + 1) * n], 0.2)
    loss.backward()
    torch.save({"loss": loss.detach(), "grad": local_q.grad}, Path(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_ddp_two_gloo_processes_match_one_process(tmp_path, labelled, base_checkpoint):
    """Supervised, global batch 4: 2 x 2 on two processes == 4 on one (BN frozen, dropout and drop-path 0)."""
    common = dict(data=str(labelled), checkpoint=str(base_checkpoint), steps=2, batch_size=4, save_every=0,
                  drop_path_rate=0.0, disable_dropout=True, device="cpu")  # fmt: skip
    single = train(SupervisedConfig(output=str(tmp_path / "single.safetensors"), **common))
    config = SupervisedConfig(output=str(tmp_path / "ddp.safetensors"), **common)
    mp.spawn(_ddp_train_worker, args=(2, _free_port(), config.to_dict(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["losses"] == ranks[1]["losses"] == pytest.approx(single.losses, rel=1e-5)
    a, b = _tensors(single.output_path), _tensors(Path(config.output))
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    print(f"DDP vs single process: largest parameter difference {worst:.2e}")
    assert worst < 1e-5, worst
    assert any(d.startswith("BatchNorm statistics per process") for d in ranks[0]["deviations"])


def test_ddp_moco_gathers_keys_across_processes(tmp_path, unlabelled):
    """The loss with keys gathered over 2 ranks equals one process on the whole batch; a MoCo run works."""
    torch.manual_seed(0)
    q, k = torch.randn(6, 16), torch.randn(6, 16)
    mp.spawn(_ddp_gather_worker, args=(2, _free_port(), q, k, str(tmp_path)), nprocs=2, join=True)
    parts = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    whole_q = q.clone().requires_grad_(True)
    whole = contrastive_loss(whole_q, k, 0.2)
    whole.backward()
    assert float(sum(p["loss"] for p in parts) / 2) == pytest.approx(float(whole.detach()), rel=1e-6)
    # DDP averages gradients over the 2 ranks: each rank's gradient / 2 is the one-process gradient
    assert torch.allclose(torch.cat([p["grad"] for p in parts]) / 2, whole_q.grad, atol=1e-7)

    config = MocoConfig(data=str(unlabelled), output=str(tmp_path / "moco_ddp.safetensors"), variant="cast_tiny", steps=2,
                        batch_size=4, mlp_dim=256, save_every=0, device="cpu")  # fmt: skip
    mp.spawn(_ddp_train_worker, args=(2, _free_port(), config.to_dict(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 2 and ranks[0]["losses"] == ranks[1]["losses"]
    prov = load_checkpoint(config.output).metadata.provenance
    assert not any("single process" in d for d in prov.deviations)
    assert any(d.startswith("BatchNorm statistics per process") for d in prov.deviations)
    assert "stem BatchNorm statistics over batches of 2 (official: SyncBatchNorm over 256 images)" in prov.deviations
    assert "trained from scratch (cast_tiny)" in prov.deviations and "2 process(es)" in prov.notes
