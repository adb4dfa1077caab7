"""Run by FiftyOne's own Python (a separate environment: FiftyOne pins packages that clash with ours):
import every level of a collection's FiftyOne layout with FiftyOne's ImageSegmentationDirectoryImporter
and print, per level, the images imported and whether each mask equals the exported label PNG.

    CAST_FIFTYONE_PYTHON tests/fiftyone_check.py COLLECTION/fiftyone NUM_LEVELS
"""
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import fiftyone.utils.data as fou

root, levels = Path(sys.argv[1]), int(sys.argv[2])
report = {}
for level in range(levels):
    labels = root / f"labels_level{level}"
    importer = fou.ImageSegmentationDirectoryImporter(data_path=str(root / "data"), labels_path=str(labels),
                                                      load_masks=True)
    rows = {}
    with importer:
        for image_path, _, label in importer:
            stem = Path(image_path).stem
            ours = np.asarray(Image.open(labels / f"{stem}.png"))
            rows[stem] = {"equal": bool(label is not None and np.array_equal(label.mask, ours)),
                          "segments": int(len(np.unique(label.mask))) if label is not None else 0}
    report[level] = rows
print(json.dumps(report))
