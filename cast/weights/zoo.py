"""Every published CAST checkpoint (spec §5, Hub repo `twke/CAST`): names, files, what they were trained on.

This is a registry only; fetching and converting a file is `cast.weights.hub`. Sizes are estimates from
parameter counts (4 bytes per stored tensor element + 8 per trainable one for the AdamW moments);
the real files were never downloadable here.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

HUB_REPO = "twke/CAST"
CAST_LICENCE = "MIT (twke18/CAST README and LICENSE); the Hub repo twke/CAST states no licence we could check"
# The checkpoint the official hierarchy and PartImageNet notebooks visualise comes first (issue: default model).
DEFAULT_PREFERENCE = (
    "cast_base_moco_in1k", "cast_small_moco_in1k", "cast_small_deep_moco_in1k", "cast_base_deep_moco_in1k",
    "cast_small_deit_in1k", "cast_small_deep_deit_in1k", "cast_small_moco_coco", "cast_small_moco_coco_ep150",
)  # fmt: skip


@dataclass(frozen=True)
class ZooEntry:
    """One published checkpoint file.

    `architecture` is a CAST config name (cast.model) or a ViT-baseline name (cast.model.vit);
    `kind` says which: "cast" or "vit". `expected_size` is in bytes, an estimate (see the module doc).
    """

    name: str
    filename: str
    architecture: str | None
    training: str  # "MoCo-v3" / "DeiT"
    data: str  # "ImageNet-1K" / "COCO train2017"
    reported: str  # the result the official README reports for it
    kind: str = "cast"
    repo_id: str = HUB_REPO
    licence: str = CAST_LICENCE
    expected_size: int = 0
    loadable: bool = True
    reason: str = ""  # why it cannot be loaded, when loadable is False
    notes: str = ""

    @property
    def url_id(self) -> str:
        """`hf://twke/CAST/<filename>`: how provenance records name the file."""
        return f"hf://{self.repo_id}/{self.filename}"

    def describe(self) -> str:
        """One line: name, training, data, reported result."""
        return f"{self.name}: {self.training} on {self.data} ({self.reported})"


_MB = 1_000_000
_ENTRIES = (
    ZooEntry("vit_small_moco_in1k", "snapshots/moco/imagenet1k/vit_small/checkpoint_0099.pth.tar",
             "vit_conv_small", "MoCo-v3", "ImageNet-1K", "linear probe 67.9 % (README)", kind="vit",
             expected_size=660 * _MB, notes="ViT baseline of the paper's comparison (patch 16, depth 11); 100 epochs"),
    ZooEntry("cast_small_moco_in1k", "snapshots/moco/imagenet1k/cast_small/checkpoint_0099.pth.tar",
             "cast_small", "MoCo-v3", "ImageNet-1K", "linear probe 68.1 % (README)", expected_size=767 * _MB,
             notes="100 epochs; no classifier (embeddings and hierarchies only)"),
    ZooEntry("cast_small_deep_moco_in1k", "snapshots/moco/imagenet1k/cast_small_deep/checkpoint_0099.pth.tar",
             "cast_small_deep", "MoCo-v3", "ImageNet-1K", "linear probe 69.1 % (README)", expected_size=880 * _MB,
             notes="100 epochs; no classifier"),
    ZooEntry("vit_base_moco_in1k", "snapshots/moco/imagenet1k/vit_base/checkpoint_0099.pth.tar",
             "vit_conv_base", "MoCo-v3", "ImageNet-1K", "linear probe 72.5 % (README)", kind="vit",
             expected_size=1600 * _MB, notes="ViT baseline of the paper's comparison (patch 16, depth 11); 100 epochs"),
    ZooEntry("cast_base_moco_in1k", "snapshots/moco/imagenet1k/cast_base/checkpoint_0099.pth.tar",
             "cast_base", "MoCo-v3", "ImageNet-1K", "linear probe 72.4 % (README)", expected_size=2076 * _MB,
             notes="100 epochs; no classifier; the model of the official hierarchy and PartImageNet notebooks"),
    ZooEntry("cast_base_deep_moco_in1k", "snapshots/moco/imagenet1k/cast_base_deep/checkpoint_0099.pth.tar",
             "cast_base_deep", "MoCo-v3", "ImageNet-1K", "no result reported in the README", expected_size=2600 * _MB,
             notes="100 epochs; no classifier"),
    ZooEntry("cast_small_moco_coco_ep150", "snapshots/moco/coco/cast_small/checkpoint_0149.pth.tar",
             "cast_seg_small_pretrain", "MoCo-v3", "COCO train2017", "VOC unsupervised mIoU 38.4 (README)",
             expected_size=791 * _MB, notes="epoch 150 of 400; cast_seg.py layout (per-stage block numbering)"),
    ZooEntry("cast_small_moco_coco", "snapshots/moco/coco/cast_small/checkpoint_0399.pth.tar",
             "cast_seg_small_pretrain", "MoCo-v3", "COCO train2017",
             "VOC mIoU 67.6 after fine-tuning (README; the fine-tuned weights are not published)",
             expected_size=791 * _MB, notes="final epoch 400; cast_seg.py layout"),
    ZooEntry("cast_small_deit_in1k", "snapshots/deit/imagenet1k/cast_small/best_checkpoint.pth",
             "cast_small_deit", "DeiT", "ImageNet-1K",
             "ImageNet-1K top-1 80.4 %; ADE20K 43.1 / Pascal Context 49.1 mIoU after Segmenter fine-tuning (README)",
             expected_size=439 * _MB, notes="1000-class classifier (ImageNet top-5 available); DeiT SEEDS setting"),
    ZooEntry("cast_small_deep_deit_in1k", "snapshots/deit/imagenet1k/cast_small_deep/best_checkpoint.pth",
             "cast_small_deep_deit", "DeiT", "ImageNet-1K", "no result reported in the README",
             expected_size=549 * _MB, notes="1000-class classifier (ImageNet top-5 available); DeiT SEEDS setting"),
    ZooEntry("cast_snapshots_zip", "snapshots.zip", None, "MoCo-v3 / DeiT", "various",
             "archive of most trained weights (contents not listed anywhere we could read)", kind="archive",
             loadable=False, reason="a zip archive, not a checkpoint: extract it and load a file by path"),
)  # fmt: skip
ZOO: Mapping[str, ZooEntry] = MappingProxyType({e.name: e for e in _ENTRIES})


def zoo_entry(name: str) -> ZooEntry:
    """The entry of a published checkpoint; a CheckpointError listing the names when unknown."""
    from ..errors import CheckpointError

    if name not in ZOO:
        raise CheckpointError(f"unknown pretrained model {name!r}; published: {', '.join(list_pretrained())}")
    return ZOO[name]


def list_pretrained(pattern: str | None = None, *, kind: str | None = None) -> list[str]:
    """Names of the loadable published checkpoints, sorted; `pattern` is a shell glob (`cast_small*`)."""
    names = [e.name for e in ZOO.values() if e.loadable and (kind is None or e.kind == kind)]
    return sorted(n for n in names if pattern is None or fnmatch.fnmatch(n, pattern))
