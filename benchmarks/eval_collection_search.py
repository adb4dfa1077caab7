"""Does cross-image segment search find the same kind of part in other photos, or mostly the query's own photo?

Collection: the four example photos (assets/, with approximate object masks in assets/ground_truth/) and
five held-out scikit-image photographs, segmented with the bundled model. For every segment of levels 1-3:

* own share: of the top k segments ranked over the whole collection (the query's own image included), the
  fraction from the query's image (k = the segments an image has at that level, at most 30);
* object agreement: for queries in an image with a mask, of the top 10 segments of *other* masked images,
  the fraction on the same side of the object/background line as the query (majority of pixels).

Compared: plain cosine and per-image centring (subtract each image's mean segment embedding).
Run: python benchmarks/eval_collection_search.py
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import table  # noqa: E402

import cast  # noqa: E402
from cast.collection import open_collection, segment_collection  # noqa: E402
from cast.datasets import load_label_mask  # noqa: E402
from cast.evaluation import align_ground_truth  # noqa: E402
from cast.weights.bundled import bundled_checkpoint  # noqa: E402

HELD_OUT = ("camera", "hubble_deep_field", "immunohistochemistry", "retina", "coins")


def object_side(collection, masks: dict[int, np.ndarray], index: int, level: int, segment: int) -> int:
    labels = collection.hierarchy(index).labels(level)
    return int(np.round(masks[index][labels == segment].mean()))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = sorted((ROOT / "assets").glob("*.jpg"))
        for name in HELD_OUT:
            image = getattr(data, name)()
            image = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
            Image.fromarray(image).save(Path(tmp) / f"{name}.png")
            paths.append(Path(tmp) / f"{name}.png")
        segmenter = cast.Segmenter(cast.load_model(bundled_checkpoint()), max_output_pixels=256 * 256)
        segment_collection(segmenter, paths, Path(tmp) / "coll", exports="compact")
        c = open_collection(Path(tmp) / "coll")
        masks = {}
        for i, name in enumerate(c.names()):
            gt = ROOT / "assets" / "ground_truth" / f"{Path(name).stem}_object.png"
            if gt.is_file():
                masks[i] = align_ground_truth(load_label_mask(gt), c.hierarchy(i)) > 0
        sides = {(j, level): {int(s): object_side(c, masks, j, level, int(s)) for s in c.hierarchy(j).segment_ids(level)}
                 for j in masks for level in (1, 2, 3)}
        rows = []
        for level in (1, 2, 3):
            for centre in (False, True):
                own_share, agreement, chance = [], [], []
                for i in range(len(c)):
                    ids = c.hierarchy(i).segment_ids(level)
                    k = min(30, len(ids))
                    for segment in ids:
                        hits = c.search(i, level, segment=int(segment), top_k=k + 1, include_query_image=True,
                                        centre=centre)[1:]
                        own_share.append(np.mean([h.image_index == i for h in hits]))
                        if i in masks:
                            side = object_side(c, masks, i, level, int(segment))
                            others = [h for h in c.search(i, level, segment=int(segment), top_k=200, centre=centre)[1:]
                                      if h.image_index in masks][:10]
                            agreement.append(np.mean([object_side(c, masks, h.image_index, level, h.segment) == side
                                                      for h in others]))
                            chance.append(np.mean([sides[(j, level)][s] == side for j in masks if j != i
                                                   for s in sides[(j, level)]]))
                rows.append([level, "per-image centring" if centre else "plain cosine", f"{np.mean(own_share):.2f}",
                             f"{np.mean(agreement):.2f}", f"{np.mean(chance):.2f}"])
        print(f"## Cross-image search on {len(c)} photos (4 example photos with object masks + "
              f"{len(HELD_OUT)} held-out), bundled model\n")
        print(table(["level", "embedding", "own share of the top k (whole collection)",
                     "object agreement, top 10 of other masked images", "agreement by chance"], rows))
        print("\nOwn share 1.00 = every one of the top k comes from the query's own photo; 'by chance' = the "
              "agreement of a random pick among the other masked images' segments.")


if __name__ == "__main__":
    main()
