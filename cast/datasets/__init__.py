"""Data on disk in its own formats: image folders and ZIPs, ground-truth masks, Pascal VOC, PartImageNet."""
from .image_folders import (
    IMAGE_SUFFIXES,
    DatasetReport,
    ZipContents,
    ZipLimits,
    inspect_zip,
    prepare_data_root,
    scan_class_folders,
    scan_images,
)
from .masks import load_label_mask, mask_size, segmentation_mask, smallest_label_dtype
from .partimagenet import PartAnnotations, read_part_annotations
from .voc import VOC_IGNORE, voc_root, voc_samples

__all__ = [
    "IMAGE_SUFFIXES", "VOC_IGNORE", "DatasetReport", "PartAnnotations", "ZipContents", "ZipLimits", "inspect_zip",
    "load_label_mask", "mask_size", "prepare_data_root",
    "read_part_annotations", "scan_class_folders", "scan_images", "segmentation_mask", "smallest_label_dtype", "voc_root", "voc_samples",
]  # fmt: skip
