"""Pictures and figures of a Hierarchy: overlays and boundary maps (NumPy), Plotly tree figures."""
from .figures import FigureData, figure_data, highlighted_nodes, partition_figure, tree_figure, tree_layout, with_names
from .named import named_view
from .overlays import (
    PALETTE,
    VIEWS,
    Selection,
    blend,
    boundary_mask,
    boundary_strength,
    fill_view,
    render,
    segment_colors,
    segment_crop,
    stability_view,
    value_view,
    voc_palette,
)

__all__ = [
    "FigureData", "PALETTE", "VIEWS", "Selection", "blend", "figure_data", "boundary_mask", "boundary_strength", "fill_view",
    "highlighted_nodes", "partition_figure", "render", "segment_colors", "segment_crop", "stability_view", "tree_figure", "tree_layout", "value_view", "named_view", "with_names",
    "voc_palette",
]  # fmt: skip
