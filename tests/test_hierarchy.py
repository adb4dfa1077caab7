"""The Hierarchy on real images: tree invariants (property-based), lookups, networkx, JSON."""
from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skimage import data

from cast.hierarchy import ROOT_ID, Hierarchy, node_id, parse_node_id
from cast.image import InputConfig
from cast.segmenter import Segmenter
from cast.superpixels import SuperpixelConfig

REAL_IMAGES = {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee(),
               "rocket": data.rocket(), "cat": data.cat()}


@pytest.fixture(scope="module")
def segmenter(tiny_segmenter: Segmenter) -> Segmenter:
    return tiny_segmenter


@pytest.fixture(scope="module")
def astronaut_hierarchy(segmenter: Segmenter) -> Hierarchy:
    return segmenter.run(REAL_IMAGES["astronaut"])


def check_tree(h: Hierarchy) -> None:
    h.check_invariants()
    for level in range(h.num_levels - 1):
        fine, coarse = h.labels(level), h.labels(level + 1)
        # every segment at a finer level lies inside exactly one segment of the coarser level
        pairs = np.unique(np.stack([fine.ravel(), coarse.ravel()]), axis=1)
        assert len(np.unique(pairs[0])) == pairs.shape[1]
    # each superpixel has exactly one ancestor per level
    for sp in h.segment_ids(0)[:20]:
        assert [lv for lv, _ in h.ancestors(0, int(sp))] == list(range(1, h.num_levels))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(sorted(REAL_IMAGES)),
    top=st.floats(0.0, 0.3),
    left=st.floats(0.0, 0.3),
    keep=st.floats(0.5, 1.0),
    mode=st.sampled_from(["center_crop", "full_frame"]),
    method=st.sampled_from(["seeds", "slic"]),
)
def test_tree_invariant_on_real_image_crops(segmenter: Segmenter, name, top, left, keep, mode, method) -> None:
    img = REAL_IMAGES[name]
    h, w = img.shape[:2]
    y0, x0 = int(top * h), int(left * w)
    crop = img[y0 : y0 + max(64, int(keep * h)), x0 : x0 + max(64, int(keep * w))]
    seg = Segmenter(segmenter.model, SuperpixelConfig(method=method), InputConfig(mode=mode))
    result = seg.run_detailed(np.ascontiguousarray(crop))
    hierarchy = result.hierarchy
    assert hierarchy.shape == hierarchy.image.shape[:2]
    # Recompute every level from the model's own logits, pixel by pixel, without the Hierarchy's parent
    # arrays: a pixel's level-l segment is the argmax row of its level-(l-1) segment (spec §4; superpixel
    # ids beyond the last token take row S-1). The Hierarchy must agree, and so nest segments as a tree.
    labels = hierarchy.superpixels
    for level, logits in enumerate(result.output.logits, start=1):
        rows = logits[0].numpy()
        labels = rows.argmax(axis=1)[np.minimum(labels, rows.shape[0] - 1)]
        assert np.array_equal(hierarchy.labels(level), labels), f"level {level} is not the argmax composition"
    check_tree(hierarchy)


def test_level_sizes_on_a_real_image(astronaut_hierarchy: Hierarchy) -> None:
    h = astronaut_hierarchy
    assert [len(h.segment_ids(level)) for level in range(1, 5)] == [64, 32, 16, 8]
    assert h.level_name(0) == "superpixels (196)"
    assert h.level_name(2) == "32 segments"


def test_labels_at_the_images_own_resolution(segmenter: Segmenter) -> None:
    img = REAL_IMAGES["chelsea"]  # 300 x 451
    full = Segmenter(segmenter.model, input_config=InputConfig(mode="full_frame")).run(img)
    assert full.shape == img.shape[:2]
    crop = segmenter.run(img)  # centre crop of the shorter side
    assert crop.shape[0] == 300 and abs(crop.shape[1] - 300) <= 1  # crop box rounds to whole pixels
    assert crop.provenance.input.parity_with_official is True


def test_parent_children_and_lookups(astronaut_hierarchy: Hierarchy) -> None:
    h = astronaut_hierarchy
    seg = h.segment_at(2, 100, 100)
    parent = h.parent_of(2, seg)
    assert seg in h.children_of(3, parent)
    assert h.labels(3)[100, 100] == parent
    kids = h.children_of(2, seg)
    assert np.array_equal(np.isin(h.labels(1), kids), h.mask(2, seg))
    assert h.parent_of(4, 0) is None
    desc = h.descendants(3, parent)
    assert {lv for lv, _ in desc} == {0, 1, 2}
    record = h.segment(2, seg)
    assert record.id == node_id(2, seg) and record.parent == parent and set(record.children) == set(kids)
    assert 0.0 < record.parent_confidence <= 1.0
    assert record.runner_up != record.parent and record.runner_up_confidence <= record.parent_confidence
    info = record.to_dict()  # the JSON form the /select endpoint and segments.json carry
    assert info["id"] == node_id(2, seg) and info["parent"] == node_id(3, parent)
    assert info["runner_up_parent"] == node_id(3, record.runner_up)
    assert info["children"] == [node_id(1, c) for c in record.children]
    x, y, w, hh = record.bbox
    ys, xs = np.nonzero(h.mask(2, seg))
    assert (x, y, w, hh) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert parse_node_id("L2:s07") == (2, 7)


def test_networkx_tree_attributes(astronaut_hierarchy: Hierarchy) -> None:
    h = astronaut_hierarchy
    g = h.graph
    assert nx.is_tree(g) and nx.is_arborescence(g)
    assert g.number_of_nodes() == 1 + sum(len(h.segment_ids(lv)) for lv in range(h.num_levels))
    total = sum(g.nodes[c]["area"] for c in g.successors(ROOT_ID))
    assert total == h.shape[0] * h.shape[1]
    for n, d in g.nodes(data=True):
        if n != ROOT_ID:
            assert {"level", "area", "bbox", "mean_color", "centroid"} <= set(d)
            children = list(g.successors(n))
            if children:
                assert sum(g.nodes[c]["area"] for c in children) == d["area"]
    tree = h.tree_data()
    assert tree["id"] == ROOT_ID and len(tree["children"]) == 8
    json.dumps(tree)


def test_json_round_trip(astronaut_hierarchy: Hierarchy) -> None:
    h = astronaut_hierarchy
    back = Hierarchy.from_json(h.to_json(), image=h.image)
    for level in range(h.num_levels):
        np.testing.assert_array_equal(back.labels(level), h.labels(level))
        np.testing.assert_allclose(back.mean_color(level), h.mean_color(level))
    assert back.provenance == h.provenance and back.provenance is not None
    with pytest.raises(ValueError, match="not a CAST Explorer hierarchy"):
        Hierarchy.from_json(json.dumps({"format": "other"}))


def test_vanished_superpixel_ids_beyond_s_take_token_s_minus_1() -> None:
    """Spec §4: ids >= S (their tokens vanished) take the label of token S-1 (notebook rule)."""
    sp = np.array([[0, 1], [2, 3]])
    logits = [np.array([[5.0, 0.0], [0.0, 5.0]]), np.array([[1.0], [0.0]])]  # S = 2 tokens only
    h = Hierarchy.from_logits(sp, logits)
    assert h.labels(1).tolist() == [[0, 1], [1, 1]]
    h.check_invariants()


def test_other_input_resolutions_run_and_are_labelled(segmenter: Segmenter) -> None:
    h = Segmenter(segmenter.model, input_config=InputConfig(size=320)).run(REAL_IMAGES["coffee"])
    check_tree(h)
    assert h.provenance.input.size == 320
    assert h.provenance.input.parity_with_official is False
    assert [len(h.segment_ids(level)) for level in range(1, 5)] == [64, 32, 16, 8]
