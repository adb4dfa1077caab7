"""Measuring part discovery: per-level metrics against ground truth, a colour-merging baseline, the paper's protocols."""
from .baselines import colour_baseline_metrics, colour_merging_hierarchy
from .metrics import (
    METRICS,
    LevelScore,
    align_ground_truth,
    average_scores,
    best_level,
    format_scores,
    level_metrics,
    metrics_for_label_maps,
)
from .protocols import (
    DatasetResult,
    PartImageNetResult,
    class_miou,
    evaluate_dataset,
    evaluate_partimagenet,
    evaluate_voc,
)

__all__ = [
    "METRICS", "DatasetResult", "LevelScore", "PartImageNetResult", "align_ground_truth",
    "average_scores", "best_level", "class_miou", "colour_baseline_metrics", "colour_merging_hierarchy",
    "evaluate_dataset", "evaluate_partimagenet", "evaluate_voc", "format_scores", "level_metrics",
    "metrics_for_label_maps",
]  # fmt: skip
