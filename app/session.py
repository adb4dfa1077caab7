"""Per-user explorer state: one segmented image and how it is being looked at (no global state)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cast.hierarchy import Hierarchy
from cast.render import FigureData, Selection, figure_data, partition_figure, render, tree_figure
from cast.segmenter import Segmenter, SegmentResult

from .notices import Notice

DISPLAY_MAX_SIDE = 768  # the browser shows at most this; clicks are mapped through the same scale


@dataclass(frozen=True)
class ViewSettings:
    """What the user chose to look at; changing it only re-renders."""

    level: int = 1
    view: str = "fill"
    opacity: float = 0.6


@dataclass
class ExplorerSession:
    """One image's results plus the current view and selection, kept in a gr.State per browser tab."""

    result: SegmentResult
    model_summary: str
    display: Hierarchy
    view: ViewSettings = field(default_factory=ViewSettings)
    selection: Selection | None = None
    top_classes: list[tuple[str, float]] = field(default_factory=list)
    render_ms: float = 0.0
    figures: FigureData | None = None  # what the tree figures draw, worked out once per image
    segmenter: Segmenter | None = None  # what produced it (the model is shared, not copied): for stability
    source: Path | None = None  # the uploaded original, for re-runs on exactly the same file
    names: Any = None  # cast.naming.HierarchyNames once "Name the segments" ran on this hierarchy


    @classmethod
    def create(cls, result: SegmentResult, model_summary: str,
               top_classes: list[tuple[str, float]] | None = None) -> "ExplorerSession":
        h = result.hierarchy
        scale = min(1.0, DISPLAY_MAX_SIDE / max(h.shape))
        display = h.resized(max(1, round(h.shape[0] * scale)), max(1, round(h.shape[1] * scale)))
        return cls(result=result, model_summary=model_summary, display=display,
                   top_classes=list(top_classes or []), figures=figure_data(h))

    @property
    def hierarchy(self) -> Hierarchy:
        return self.result.hierarchy

    def with_view(self, **changes: Any) -> "ExplorerSession":
        """Change level / view / opacity; nothing is recomputed, the next picture re-renders."""
        return replace(self, view=replace(self.view, **changes))

    def select_at(self, x: int, y: int, level: int | None = None) -> "ExplorerSession":
        """Select the segment under display pixel (x, y) at the current (or given) level."""
        level = self.view.level if level is None else level
        try:
            seg = self.display.segment_at(level, int(x), int(y))
        except IndexError:  # e.g. a click on the named view's legend, below the picture
            raise Notice("Click a segment inside the picture.") from None
        return replace(self, selection=Selection(level, seg), view=replace(self.view, level=level))

    def clear_selection(self) -> "ExplorerSession":
        return replace(self, selection=None)

    def picture(self) -> np.ndarray:
        """The current view as an RGB image at display resolution (and how long it took)."""
        if self.view.view == "stability" and self.display.stability is None:
            raise Notice("No stability scores yet: press “Measure stability” first.")
        t = time.perf_counter()
        if self.view.view == "named":
            out = self.named_picture()
            self.render_ms = (time.perf_counter() - t) * 1000
            return out
        out = render(self.display, self.view.view, self.view.level, opacity=self.view.opacity, selection=self.selection)
        self.render_ms = (time.perf_counter() - t) * 1000
        return out

    def named_level(self) -> int | None:
        """The level the named view shows: the current one if it was named, else the object level."""
        if self.names is None:
            return None
        return self.view.level if self.view.level in self.names.levels else self.names.object_level

    def named_picture(self) -> np.ndarray:
        """Segments coloured by their CLIP names, names written on them, with a legend (the "named" view)."""
        from cast.render.named import named_view

        level = self.named_level()
        if level is None:
            raise Notice("No names yet: open “Name the segments” and press “Name the segments” first.")
        names = {r.segment: r.name for r in self.names.for_level(level)}
        return named_view(self.display.image, self.display.labels(level), names, opacity=self.view.opacity,
                          background=self.names.vocabulary.background)

    def selected_info(self) -> dict[str, Any] | None:
        """Panel data of the selected segment, statistics at full resolution."""
        if self.selection is None:
            return None
        return self.hierarchy.segment(self.selection.level, self.selection.segment).to_dict()

    def tree_figures(self) -> tuple[Any, Any]:
        """(node-link tree, icicle) with the current selection highlighted; only restyling per click."""
        sel = None if self.selection is None else (self.selection.level, self.selection.segment)
        return tree_figure(self.hierarchy, sel, data=self.figures), partition_figure(self.hierarchy, sel, data=self.figures)

    def timings(self) -> dict[str, float]:
        return {**self.result.timings_ms, "render": self.render_ms}
