"""The paper's PartImageNet protocol with CLIP names (spec §11.5), end to end through `cast evaluate`.

The test writes a small PartImageNet-format folder (COCO JSON with polygons; the official 11 objects and 40
parts, whose names carry the object), runs the CLI for the tiny CAST and the tiny ViT baseline side by
side with the tiny CLIP of the naming reference folder, and checks the printed and written mIoU against
torchmetrics' JaccardIndex computed here on the same named maps, with the ground truth built the
notebook's way (pycocotools `annToMask`, nearest Resize(224) + CenterCrop(224))."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reference import naming_dir, parity_dir, tiny_model, tiny_vit_config, vit_baseline_dir
from skimage import data
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from cast.cli import main
from cast.datasets import read_part_annotations
from cast.image import InputConfig, load_image
from cast.naming import SegmentNamer, frame_image, load_clip, partimagenet
from cast.segmenter import Segmenter
from cast.weights import convert_checkpoint
from cast.weights.format import CheckpointMetadata, save_cast_checkpoint
from cast.weights.vit import load_vit_checkpoint

torchmetrics = pytest.importorskip("torchmetrics")
coco_api = pytest.importorskip("pycocotools.coco")

# (image, [(part name, polygon)]): rough outlines, enough for classes to be present in the ground truth
IMAGES = {
    "n02123045_chelsea.JPEG": (data.chelsea, [("Quadruped Head", [150, 20, 300, 20, 300, 160, 150, 160]),
                                              ("Quadruped Body", [0, 160, 451, 160, 451, 300, 0, 300])]),
    "n09999999_astronaut.JPEG": (data.astronaut, [("Biped Head", [160, 30, 320, 30, 320, 220, 160, 220]),
                                                  ("Biped Body", [60, 220, 460, 220, 460, 512, 60, 512]),
                                                  ("Biped Hand", [300, 330, 400, 330, 400, 420, 300, 420])]),
    "n03000000_coffee.JPEG": (data.coffee, [("Bottle Body", [100, 120, 420, 120, 420, 380, 100, 380])]),
}  # fmt: skip


def write_partimagenet(root: Path) -> Path:
    vocab = partimagenet()
    categories = [{"id": i, "name": part, "supercategory": part.split(" ")[0]} for i, part in enumerate(vocab.part_classes)]
    ids = {c["name"]: c["id"] for c in categories}
    images, annotations = [], []
    for image_id, (name, (make, parts)) in enumerate(IMAGES.items(), start=1):
        rgb = make()
        Image.fromarray(rgb).save(root / name, format="JPEG", quality=95)
        images.append({"id": image_id, "file_name": name, "height": rgb.shape[0], "width": rgb.shape[1]})
        for part, polygon in parts:
            xs, ys = polygon[0::2], polygon[1::2]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": ids[part],
                                "segmentation": [[float(v) for v in polygon]], "iscrowd": 0,
                                "area": float((max(xs) - min(xs)) * (max(ys) - min(ys))),
                                "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]})  # fmt: skip
    path = root / "val.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def notebook_ground_truth(coco, image_id: int, objects: list[str], parts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """`PartImageNetWithMask.__getitem__`'s seg_c / seg_f, written as the notebook does."""
    info = coco.imgs[image_id]
    seg_c = np.ones([info["height"], info["width"]]) * len(objects)
    seg_f = np.ones([info["height"], info["width"]]) * len(parts)
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
        cat = coco.cats[ann["category_id"]]
        m = coco.annToMask(ann)
        seg_c[m > 0] = objects.index(cat["supercategory"])
        seg_f[m > 0] = parts.index(cat["name"])
    seg_transform = T.Compose([T.Resize(224, interpolation=InterpolationMode.NEAREST), T.CenterCrop([224, 224])])
    return (seg_transform(torch.from_numpy(seg_c).float()[None])[0].long(),
            seg_transform(torch.from_numpy(seg_f).float()[None])[0].long())  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("partimagenet_clip")
    return root, write_partimagenet(root)


def test_part_prompts_do_not_repeat_the_object(dataset) -> None:
    _, path = dataset
    ann = read_part_annotations(path)
    vocab = ann.vocabulary
    assert vocab.objects == partimagenet().objects and vocab.part_classes == partimagenet().part_classes
    assert "Quadruped Head" in ann.part_classes and not any("Quadruped Quadruped" in c for c in ann.part_classes)


def test_cli_reports_clip_miou_for_cast_and_vit_side_by_side(dataset, tmp_path: Path, capsys) -> None:
    root, path = dataset
    clip_folder = naming_dir() / "clip_tiny"
    cast_file = tmp_path / "cast_tiny.safetensors"
    convert_checkpoint(parity_dir() / "tiny_cast.safetensors", cast_file)
    vit = load_vit_checkpoint(vit_baseline_dir() / "tiny_vit_conv_moco.safetensors", tiny_vit_config(vit_baseline_dir()))
    vit_file = save_cast_checkpoint(tmp_path / "vit_tiny.safetensors", vit, metadata=CheckpointMetadata(trained=True))
    out = tmp_path / "scores.json"
    assert main(["evaluate", "partimagenet", str(root), str(path), "--model", str(cast_file),
                 "--clip", f"local-dir:{clip_folder}", "--compare-vit", str(vit_file), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    written = json.loads(out.read_text())
    assert set(written) == {"CAST", "ViT baseline"}

    # the same named maps, scored here with torchmetrics against the notebook's ground truth
    clip = load_clip(f"local-dir:{clip_folder}")
    namer = SegmentNamer(clip)
    coco = coco_api.COCO(str(path))
    objects = list(dict.fromkeys(c["supercategory"] for c in coco.cats.values()))
    parts = [c["name"] for c in coco.cats.values()]
    vocab = read_part_annotations(path).vocabulary
    for title, model in (("CAST", tiny_model(parity_dir())), ("ViT baseline", vit)):
        segmenter = Segmenter(model, input_config=InputConfig(224, "center_crop"))
        jaccard_c = torchmetrics.JaccardIndex(task="multiclass", num_classes=len(objects) + 1)
        jaccard_f = torchmetrics.JaccardIndex(task="multiclass", num_classes=len(parts) + 1)
        accs_c, accs_f = [], []
        for image_id in sorted(coco.imgs):
            file = root / coco.imgs[image_id]["file_name"]
            hierarchy = segmenter.run(file).resized(224, 224)
            maps = [torch.from_numpy(hierarchy.labels(level).astype(np.int64)) for level in (4, 3)]
            named = namer.name_maps(frame_image(clip, load_image(file)), maps[0], vocab, maps[1])
            seg_c, seg_f = notebook_ground_truth(coco, image_id, objects, parts)
            accs_c.append(jaccard_c(torch.from_numpy(named.object_classes), seg_c).item())
            accs_f.append(jaccard_f(torch.from_numpy(named.part_classes), seg_f).item())
        result = written[title]
        assert result["num_images"] == len(IMAGES) and result["clip_model"] == f"local-dir:{clip_folder}"
        assert abs(result["object_class_miou"] - np.mean(accs_c)) <= 1e-6
        assert abs(result["part_class_miou"] - np.mean(accs_f)) <= 1e-6
        row = next(line for line in printed.splitlines() if line.startswith(f"| {title} ("))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[4] == f"{100 * np.mean(accs_c):.2f}" and cells[5] == f"{100 * np.mean(accs_f):.2f}"
    cast_line = re.search(r"object class mIoU \(CLIP-named, §11.5\): ([\d.]+)", printed)
    assert cast_line and cast_line[1] == f"{100 * written['CAST']['object_class_miou']:.2f}"
