"""The segmentation hierarchy (spec §4): per-level label maps, parents and children, typed segment records."""
from .records import SegmentRecord, node_id, parse_node_id
from .tree import JSON_FORMAT, ROOT_ID, Hierarchy, LevelStats

__all__ = ["Hierarchy", "JSON_FORMAT", "LevelStats", "ROOT_ID", "SegmentRecord", "node_id", "parse_node_id"]
