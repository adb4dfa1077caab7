"""The segmentation hierarchy (spec §4): per-level label maps, parents and children, typed segment records."""
from .provenance import Grouping, InputGeometry, SegmentationProvenance
from .records import SegmentRecord, node_id, parse_node_id
from .tree import JSON_FORMAT, ROOT_ID, Hierarchy, LevelStats

__all__ = ["Grouping", "Hierarchy", "InputGeometry", "JSON_FORMAT", "LevelStats", "ROOT_ID", "SegmentRecord",
           "SegmentationProvenance", "node_id", "parse_node_id"]
