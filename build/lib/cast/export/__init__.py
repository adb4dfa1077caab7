"""Exports researchers can use elsewhere: label PNGs, COCO RLE records, CSV, tree JSON, npz, FiftyOne, ZIP."""
from .coco_rle import coco_rle_to_mask, label_map_rles, mask_to_coco_rle
from .one_image import (
    FORMAT_VERSION,
    METADATA_COLUMNS,
    ExportManifest,
    export_files,
    export_hierarchy,
    export_provenance,
    export_zip,
    label_png,
    metadata_csv,
    segment_records,
)

__all__ = [
    "FORMAT_VERSION", "METADATA_COLUMNS", "ExportManifest", "coco_rle_to_mask", "export_files", "export_hierarchy",
    "export_provenance", "export_zip", "label_map_rles", "label_png", "mask_to_coco_rle", "metadata_csv",
    "segment_records",
]  # fmt: skip
