"""Rendering and tree figures: the pictures and the highlighted path agree with the Hierarchy."""
from __future__ import annotations

import numpy as np
import pytest

from cast.hierarchy import Hierarchy, node_id
from cast.render import (
    PALETTE,
    VIEWS,
    Selection,
    boundary_mask,
    boundary_strength,
    highlighted_nodes,
    partition_figure,
    render,
    segment_colors,
    tree_figure,
)


@pytest.fixture(scope="module")
def hierarchy(reference_hierarchy: Hierarchy) -> Hierarchy:
    return reference_hierarchy


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_renders_an_rgb_image(hierarchy: Hierarchy, view: str) -> None:
    if view == "stability":  # a view of measured scores: here a ramp over the segment ids stands in for them
        with pytest.raises(ValueError, match="no stability scores"):
            render(hierarchy, view, 2)
        hierarchy = hierarchy.with_stability([np.linspace(0, 1, n) for n in hierarchy.sizes])
    out = render(hierarchy, view, 2)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    if view != "grid":
        assert out.shape[:2] == hierarchy.shape
    assert out.std() > 5  # not blank


def test_fill_colours_are_stable_per_segment_id(hierarchy: Hierarchy) -> None:
    labels = hierarchy.labels(3)
    out = render(hierarchy, "fill", 3, opacity=1.0)
    interior = ~boundary_mask(labels)
    np.testing.assert_array_equal(out[interior], segment_colors(labels)[interior])
    assert len({tuple(c) for c in PALETTE[1:65]}) == 64  # 64 distinct colours for 64 segments


def test_boundaries_follow_the_level(hierarchy: Hierarchy) -> None:
    coarse, fine = boundary_mask(hierarchy.labels(4)), boundary_mask(hierarchy.labels(1))
    assert coarse.sum() < fine.sum()
    assert not (coarse & ~fine).any()  # nested: a coarse boundary is a fine boundary


def test_boundary_strength_is_coarsest_separating_level(hierarchy: Hierarchy) -> None:
    strength = boundary_strength(hierarchy) * hierarchy.num_levels
    coarse = boundary_mask(hierarchy.labels(4))
    only_superpixel = boundary_mask(hierarchy.labels(0)) & ~boundary_mask(hierarchy.labels(1))
    assert np.all(strength[coarse] == hierarchy.num_levels)
    assert np.all(strength[only_superpixel] == 1)
    assert np.all(strength[~boundary_mask(hierarchy.labels(0))] == 0)


def test_highlight_marks_the_selected_segment(hierarchy: Hierarchy) -> None:
    level, seg = 2, hierarchy.segment_at(2, 120, 110)
    out = render(hierarchy, "fill", level, selection=Selection(level, seg), opacity=1.0)
    inside = hierarchy.mask(level, seg) & ~boundary_mask(hierarchy.labels(level - 1), thickness=3)
    inside &= ~boundary_mask(hierarchy.mask(level, seg).view(np.uint8), thickness=9)
    colour = PALETTE[seg + 1]
    assert np.all(out[inside] == colour)
    outside = ~hierarchy.mask(level + 1, hierarchy.parent_of(level, seg))
    plain = outside & ~boundary_mask(hierarchy.labels(level + 1), thickness=15)
    assert out[plain].mean() < hierarchy.image[plain].mean() * 0.5  # dimmed


def test_confidence_view_colours_by_parent_probability(hierarchy: Hierarchy) -> None:
    out = render(hierarchy, "confidence", 1, opacity=1.0).astype(int)
    labels = hierarchy.labels(1)
    interior = ~boundary_mask(labels, thickness=3)
    probs = hierarchy.parent_prob[1][labels]
    low, high = np.quantile(probs[interior], [0.25, 0.75])
    assert high - low > 0.05, "the fixture's parent probabilities must vary for this test to mean anything"
    sure, unsure = interior & (probs >= high), interior & (probs <= low)
    assert sure.sum() > 100 and unsure.sum() > 100
    assert out[sure][:, 1].mean() > out[unsure][:, 1].mean() + 10  # greener when confident


def test_tree_figures_highlight_the_path(hierarchy: Hierarchy) -> None:
    level, seg = 1, hierarchy.segment_at(1, 100, 100)
    path, below = highlighted_nodes(hierarchy, level, seg)
    expected = ["image"] + [node_id(lv, s) for lv, s in reversed(hierarchy.ancestors(level, seg))] + [node_id(level, seg)]
    assert path == expected
    assert set(below) == {node_id(lv, s) for lv, s in hierarchy.descendants(level, seg)}
    tree = tree_figure(hierarchy, (level, seg))
    assert node_id(level, seg) in tree.layout.title.text
    assert node_id(level + 1, hierarchy.parent_of(level, seg)) in tree.layout.title.text
    icicle = partition_figure(hierarchy, (level, seg))
    trace = icicle.data[0]
    ids = list(trace.ids)
    parents = list(trace.parents)
    values = dict(zip(ids, trace.values))
    for child, parent in zip(ids, parents):  # branchvalues="total": children sum to parents
        if parent:
            kids = [c for c, p in zip(ids, parents) if p == parent]
            assert sum(values[k] for k in kids) == values[parent]
    faded = {i for i, c in zip(ids, trace.marker.colors) if c.startswith("rgba(200")}
    assert not faded & set(path) and faded


def test_resized_hierarchy_keeps_ids(hierarchy: Hierarchy) -> None:
    small = hierarchy.resized(112, 112)
    assert small.shape == (112, 112)
    assert small.labels(3)[50, 60] == hierarchy.labels(3)[100, 120]
    small.check_invariants()
