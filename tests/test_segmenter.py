"""cast.Segmenter: the one entry point, its settings, its copies, and the typed provenance it records."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from skimage import data

import cast
from cast.hierarchy import SegmentationProvenance
from cast.model import build_vit
from cast.pipeline import CastKind, VitKind


def test_settings_come_from_the_weights_then_the_caller(tiny_segmenter: cast.Segmenter) -> None:
    model = tiny_segmenter.model
    assert isinstance(tiny_segmenter.kind, CastKind) and not tiny_segmenter.is_vit
    assert tiny_segmenter.superpixel_config == cast.SuperpixelConfig.official()  # nothing recorded: official SEEDS
    slic = cast.Segmenter(model, "slic", num_superpixels=150)
    assert slic.superpixel_config == cast.SuperpixelConfig.slic(num_superpixels=150)
    deit = cast.SuperpixelConfig.deit()
    model.pretrained_cfg = cast.PretrainedCfg("cast_tiny", trained=True, superpixels=deit)
    try:
        assert cast.Segmenter(model).superpixel_config == deit  # the setting recorded with the weights
        assert cast.Segmenter(model, num_superpixels=100).superpixel_config == deit.__class__(
            **{**deit.to_dict(), "num_superpixels": 100})
    finally:
        del model.pretrained_cfg
    for bad in ({"superpixels": "watershed"}, {"num_superpixels": 0}, {"max_output_pixels": 0}):
        with pytest.raises(cast.ConfigError):
            cast.Segmenter(model, **bad)


def test_replace_keeps_every_other_setting(tiny_segmenter: cast.Segmenter) -> None:
    base = cast.Segmenter(tiny_segmenter.model, "slic", cast.InputConfig(size=256, mode="full_frame"),
                          num_superpixels=150, max_output_pixels=12345, kmeans_seed=7)
    copy = base.replace(num_superpixels=120)
    assert copy.superpixel_config == cast.SuperpixelConfig.slic(num_superpixels=120)
    assert (copy.input_config, copy.max_output_pixels, copy.kmeans_seed, copy.device) == (
        base.input_config, 12345, 7, base.device)
    assert base.superpixel_config.num_superpixels == 150  # the original is unchanged
    with pytest.raises(cast.ConfigError, match="no setting"):
        base.replace(superpixel_count=3)


def test_the_vit_baseline_refuses_superpixels_instead_of_ignoring_them() -> None:
    vit = build_vit("vit_conv_small", depth=1)
    segmenter = cast.Segmenter(vit, kmeans_seed=3)
    assert isinstance(segmenter.kind, VitKind) and segmenter.superpixel_config is None
    for bad in ({"superpixels": "slic"}, {"superpixels": cast.SuperpixelConfig()}, {"num_superpixels": 100}):
        with pytest.raises(cast.ConfigError, match="no superpixels"):
            cast.Segmenter(vit, **bad)
        with pytest.raises(cast.ConfigError, match="no superpixels"):
            segmenter.replace(**bad)
    hierarchy = segmenter.replace(max_output_pixels=10_000).run(data.coffee())
    assert hierarchy.provenance.grouping.settings == {"kmeans_seed": 3} and hierarchy.provenance.is_vit
    assert hierarchy.shape[0] * hierarchy.shape[1] <= 10_000


def test_provenance_is_typed_and_round_trips(tiny_segmenter: cast.Segmenter) -> None:
    result = tiny_segmenter.run_detailed(data.chelsea(), name="chelsea.png")
    prov = result.hierarchy.provenance
    assert isinstance(prov, SegmentationProvenance)
    assert prov.model_variant == "cast_tiny" and prov.checkpoint == "not recorded" and prov.trained is None
    assert prov.source_name == "chelsea.png" and prov.input.original_hw == (300, 451)
    assert prov.input.parity_with_official is cast.InputConfig().is_parity is True
    assert prov.grouping.method == "seeds" and prov.grouping.count == int(result.superpixels.max()) + 1
    assert SegmentationProvenance.from_dict(json.loads(json.dumps(prov.to_dict()))) == prov
    not_parity = tiny_segmenter.replace(input_config=cast.InputConfig(size=256)).run(data.chelsea()).provenance
    assert not_parity.input.parity_with_official is cast.InputConfig(size=256).is_parity is False
    with pytest.raises(cast.HierarchyError, match="incomplete provenance"):
        SegmentationProvenance.from_dict({"model_variant": "x"})


def test_rerun_keeps_pixels_superpixels_and_a_missing_image(tiny_segmenter: cast.Segmenter) -> None:
    first = tiny_segmenter.run_detailed(data.astronaut())
    again = tiny_segmenter.rerun(first)
    assert np.array_equal(again.hierarchy.labels(3), first.hierarchy.labels(3))
    assert again.hierarchy.provenance == first.hierarchy.provenance
    bare = dataclasses.replace(first, hierarchy=dataclasses.replace(first.hierarchy, image=None))
    rerun = tiny_segmenter.rerun(bare)
    assert rerun.hierarchy.image is None and rerun.hierarchy.shape == first.hierarchy.shape
    assert np.array_equal(rerun.hierarchy.labels(2), first.hierarchy.labels(2))


def test_library_errors_are_cast_errors(reference_hierarchy: cast.Hierarchy) -> None:
    h = reference_hierarchy
    for call in (lambda: h.labels(9), lambda: h.segment(1, 10_000), lambda: h.parent_of(1, -1),
                 lambda: h.segment_at(1, 10_000, 0), lambda: h.segment_at_original(1, -5, 0)):
        with pytest.raises(cast.OutOfRangeError):
            call()
    with pytest.raises(cast.HierarchyError):
        cast.Hierarchy.from_json("{not json")
    with pytest.raises(cast.CheckpointError, match="unknown model 'cast_giant'"):
        cast.create_model("cast_giant")
    with pytest.raises(cast.ConfigError):
        cast.InputConfig(mode="stretch")


def test_bad_settings_are_config_errors(tiny_segmenter: cast.Segmenter) -> None:
    model = tiny_segmenter.model
    for bad in ({"device": "bogus"}, {"input_config": "x"}, {"kmeans_seed": "x"}):
        with pytest.raises(cast.ConfigError):
            cast.Segmenter(model, **bad)
    for bad in (None, 123):
        with pytest.raises(cast.CheckpointError, match="file path or a model name"):
            cast.load_model(bad)
