"""Checkpoints in the official layouts (spec §5), filled with random values, for loader, zoo and app tests.

Built from the manifests of the reference folders (exact keys, shapes, dtypes and nesting). Tensors the
loaders must skip, and whole backbones where the values do not matter, can be stride-0 views of one
random row each: torch.save stores only that row, so a full-size cast_small file stays a few MB.
"""
from __future__ import annotations

import argparse
import re
from collections import OrderedDict

import torch

from reference import official_tiny_state

STAGE_KEY = re.compile(r"blocks(\d)\.(\d+)\.(.+)")


def _tensor(spec: dict, gen: torch.Generator, key: str, dense: bool, half: bool = False) -> torch.Tensor:
    shape, dtype = spec["shape"], getattr(torch, spec["dtype"])
    if half and dtype.is_floating_point and dense and shape:
        dtype = torch.float16  # half the bytes on disk; loaders cast to the model's float32
    if not dtype.is_floating_point:
        return torch.randint(0, 1000, shape, generator=gen, dtype=dtype)
    if not shape:
        return torch.rand((), generator=gen)
    if dense:
        value = torch.randn(shape, generator=gen) * 0.02
    else:  # one random row, repeated by a stride-0 view: tiny on disk, distinct per tensor
        value = (torch.randn(shape[-1], generator=gen) * 0.02).expand(shape)
    if key.endswith("running_var"):
        value = value.abs() + 0.5
    return value.to(dtype)


def fake_state(spec: dict[str, dict], seed: int, dense_prefixes: tuple[str, ...] = ("",), half: bool = False) -> OrderedDict:
    """Random tensors for a manifest state dict; cast.py duplicates blocksK.j ARE their blocks.j tensor."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, entry in spec.items():
        prefix, _, local = key.rpartition("blocks")
        m = STAGE_KEY.fullmatch("blocks" + local) if local else None
        if m and f"{prefix}blocks.{m.group(2)}.{m.group(3)}" in spec:
            continue  # filled from the twin below
        out[key] = _tensor(entry, gen, key, dense=key.startswith(dense_prefixes), half=half)
    ordered = OrderedDict()
    for key in spec:
        if key not in out:
            prefix, _, local = key.rpartition("blocks")
            m = STAGE_KEY.fullmatch("blocks" + local)
            out[key] = out[f"{prefix}blocks.{m.group(2)}.{m.group(3)}"]
        ordered[key] = out[key]
    return ordered


def _optimizer(manifest: dict) -> dict:
    opt = manifest["optimizer"]
    groups = []
    for group in opt.get("param_groups") or [{"lr": 1e-3}] * opt.get("n_param_groups", 1):
        group = dict(group)
        n = opt.get("num_params_in_group") or 10
        group["params"] = list(range(n))
        groups.append(group)
    entries = opt.get("state_entries") or 10
    state = {i: {"exp_avg": torch.zeros(1), "exp_avg_sq": torch.zeros(1), "step": torch.tensor(1000.0)} for i in range(entries)}
    return {"state": state, "param_groups": groups}


def moco_checkpoint(manifest: dict, seed: int = 0, dense: bool = True, half: bool = False) -> dict:
    """The official MoCo training-checkpoint layout (spec §5.1), filled with random values.

    `dense`: the online encoder gets full random tensors (else stride-0 rows: a degenerate model that only
    tests loading); `half`: those are stored as float16, half the bytes."""
    dense_prefixes = ("module.base_encoder.",) if dense else ("no-dense",)
    sd = fake_state(manifest["state_dict"], seed, dense_prefixes, half=half)
    example = manifest["top_level_example_values"]
    scaler = dict(zip(manifest["scaler"]["keys"], (65536.0, 2.0, 0.5, 2000, 0)))
    return {"epoch": example["epoch"], "arch": example["arch"], "state_dict": sd,
            "optimizer": _optimizer(manifest), "scaler": scaler}  # fmt: skip


def deit_checkpoint(manifest: dict, seed: int = 0) -> dict:
    """The official DeiT best_checkpoint.pth layout (spec §5.2), args as an argparse.Namespace."""
    args = argparse.Namespace(**{name: None for name in manifest["args_fields"]})
    args.model, args.nb_classes, args.num_superpixels, args.epochs = "cast_small", 1000, 196, 300
    return {
        "model": fake_state(manifest["model"], seed),
        "optimizer": _optimizer(manifest),
        "lr_scheduler": {k: None for k in manifest["lr_scheduler_keys"]},
        "epoch": 299,
        "model_ema": fake_state(manifest["model"], seed + 1, dense_prefixes=("no-dense",)),
        "scaler": {},
        "args": args,
    }


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
    """MoCo-v3 projector: Linear-BN-ReLU x2, Linear-BN(affine=False); no Linear bias."""
    out = {"0.weight": _row(gen, 4096, width), "3.weight": _row(gen, 4096, 4096), "6.weight": _row(gen, 256, 4096)}
    out.update(_batchnorm(gen, "1", 4096) | _batchnorm(gen, "4", 4096) | _batchnorm(gen, "7", 256, affine=False))
    return out


def _predictor(gen: torch.Generator) -> dict[str, torch.Tensor]:
    """MoCo-v3 predictor: Linear-BN-ReLU, Linear-BN(affine=False)."""
    out = {"0.weight": _row(gen, 4096, 256), "3.weight": _row(gen, 256, 4096)}
    out.update(_batchnorm(gen, "1", 4096) | _batchnorm(gen, "4", 256, affine=False))
    return out


def tiny_moco_checkpoint() -> dict:
    """The official MoCo layout around the tiny CAST: online + momentum encoders, projector, predictor."""
    gen = torch.Generator().manual_seed(0)
    backbone = {k: v for k, v in official_tiny_state().items() if not k.startswith("head.")}
    state = {f"module.base_encoder.{k}": v for k, v in backbone.items()}
    state.update({f"module.base_encoder.head.{k}": v for k, v in _projector(96, gen).items()})
    state.update({f"module.momentum_encoder.{k}": (v + 0.1 if v.is_floating_point() else v) for k, v in backbone.items()})
    state.update({f"module.momentum_encoder.head.{k}": v for k, v in _projector(96, gen).items()})
    state.update({f"module.predictor.{k}": v for k, v in _predictor(gen).items()})
    return {"epoch": 100, "arch": "cast_tiny", "state_dict": state, "optimizer": {"state": {}, "param_groups": []},
            "scaler": {"scale": 65536.0}}  # fmt: skip
