"""cast.superpixels: bit-exact parity with the official SEEDS, SLIC, validation for the model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from reference import load_reference, single_image_fixtures
from skimage import data

from cast.errors import SuperpixelError
from cast.image import InputConfig, denormalize_to_uint8, load_image, prepare_input
from cast.superpixels import (
    SuperpixelConfig,
    compute_superpixels,
    count_superpixels,
    validate_for_model,
)


def test_parity_folder_has_single_image_fixtures(parity_path: Path) -> None:
    assert single_image_fixtures(parity_path)  # the parametrized tests below run on each of them


@pytest.fixture(scope="module")
def astronaut224() -> np.ndarray:
    return prepare_input(data.astronaut(), InputConfig()).pixels


def assert_consecutive(labels: np.ndarray, shape: tuple[int, ...]) -> None:
    assert labels.dtype == np.int64 and labels.shape == shape
    ids = np.unique(labels)
    np.testing.assert_array_equal(ids, np.arange(ids.size))


# ---------------------------------------------------------------------------------------------
# Parity with the official pipeline (spec §1.2)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", single_image_fixtures(), ids=lambda f: f.name)
def test_seeds_matches_official_labels(fixture) -> None:
    reference = load_reference(fixture.path)
    labels = compute_superpixels(reference["image_uint8"].numpy(), SuperpixelConfig())
    np.testing.assert_array_equal(labels, reference["superpixel"][0].numpy())
    assert count_superpixels(labels) == 196


@pytest.mark.parametrize("fixture", single_image_fixtures(), ids=lambda f: f.name)
def test_seeds_deit_setting_matches_official_labels(fixture) -> None:
    """DeiT rebuilds SEEDS' input from the normalised tensor (x*std+mean, *255, truncate)."""
    reference = load_reference(fixture.path)
    pixels = denormalize_to_uint8(reference["image"])
    labels = compute_superpixels(pixels, SuperpixelConfig.deit())
    np.testing.assert_array_equal(labels, reference["superpixel_deit"][0].numpy())


# ---------------------------------------------------------------------------------------------
# Behaviour
# ---------------------------------------------------------------------------------------------


def test_slic_labels_are_consecutive(astronaut224: np.ndarray) -> None:
    labels = compute_superpixels(astronaut224, SuperpixelConfig.slic())
    assert_consecutive(labels, (224, 224))
    assert 98 <= count_superpixels(labels) <= 250


def test_slic_retries_with_higher_compactness() -> None:
    # A smooth gradient with tiny compactness gives few, wandering segments on the first try.
    ramp = np.linspace(0, 255, 128, dtype=np.uint8)
    image = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[None, ::-1]), axis=-1)
    labels = compute_superpixels(np.ascontiguousarray(image), SuperpixelConfig.slic(compactness=1e-3))
    assert count_superpixels(labels) >= 196 // 2


@pytest.mark.parametrize("config", [SuperpixelConfig(), SuperpixelConfig.deit(), SuperpixelConfig.slic()],
                         ids=["seeds", "seeds-deit", "slic"])
def test_deterministic(astronaut224: np.ndarray, config: SuperpixelConfig) -> None:
    first = compute_superpixels(astronaut224, config)
    np.testing.assert_array_equal(first, compute_superpixels(astronaut224.copy(), config))


def test_seeds_ids_with_gaps_are_relabelled_in_order() -> None:
    # On this ramp raw SEEDS leaves some ids unused (186 distinct ids up to 195).
    ramp = np.repeat(np.linspace(0, 255, 56, dtype=np.uint8)[None, :, None], 56, axis=0).repeat(3, axis=2)
    labels = compute_superpixels(np.ascontiguousarray(ramp), SuperpixelConfig())
    assert_consecutive(labels, (56, 56))
    assert labels[0, 0] == 0 and labels[-1, -1] == labels.max()


def test_non_square_and_large_inputs() -> None:
    labels = compute_superpixels(data.coffee(), SuperpixelConfig())
    assert_consecutive(labels, (400, 600))


@pytest.mark.parametrize("kind", ["rgba", "gray", "sixteen_bit"])
def test_accepts_load_image_output(tmp_path: Path, kind: str) -> None:
    if kind == "rgba":
        rgba = np.dstack([data.astronaut(), np.linspace(0, 255, 512, dtype=np.uint8)[None].repeat(512, 0)])
        img = Image.fromarray(rgba, "RGBA")
    elif kind == "gray":
        img = Image.fromarray(data.camera())
    else:
        img = Image.fromarray(data.camera().astype(np.uint16) * 257)
    path = tmp_path / f"{kind}.png"
    img.save(path)
    rgb = load_image(path)
    assert rgb.shape == (512, 512, 3) and rgb.dtype == np.uint8
    pixels = prepare_input(rgb, InputConfig()).pixels
    labels = compute_superpixels(pixels, SuperpixelConfig())
    assert_consecutive(labels, (224, 224))
    validate_for_model(labels, rgb=pixels)


@pytest.mark.parametrize(("image", "message"), [
    (np.zeros((64, 64), np.uint8), "uint8 RGB"),
    (np.zeros((64, 64, 3), np.float32), "uint8 RGB"),
    (np.zeros((64, 64, 4), np.uint8), "uint8 RGB"),
    (np.zeros((8, 64, 3), np.uint8), "at least 16x16"),
    (np.zeros((40, 40, 3), np.uint8), "too many"),  # 196 superpixels in 1600 px: SEEDS would crash
])
def test_rejects_bad_images(image: np.ndarray, message: str) -> None:
    with pytest.raises(SuperpixelError, match=message):
        compute_superpixels(image, SuperpixelConfig())


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"method": "watershed"}, {"num_superpixels": 0}, {"iterations": -1}, {"histogram_bins": 2.5},
    {"prior": 7}, {"compactness": 0.0}, {"double_step": "yes"},
])
def test_config_validation(kwargs: dict) -> None:
    with pytest.raises(SuperpixelError):
        SuperpixelConfig(**kwargs)


def test_config_round_trip_and_description() -> None:
    for config in (SuperpixelConfig(), SuperpixelConfig.deit(), SuperpixelConfig.slic(150, 20.0)):
        assert SuperpixelConfig.from_dict(config.to_dict()) == config
    assert SuperpixelConfig().describe() == (
        "OpenCV SEEDS (196 requested, bins 15, 20 iterations) — official MoCo setting"
    )
    assert "official DeiT setting" in SuperpixelConfig.deit().describe()
    assert "not the training distribution" in SuperpixelConfig(num_superpixels=300).describe()
    assert SuperpixelConfig.slic().describe() == (
        "scikit-image SLIC (196 requested, compactness 10) — not the training distribution"
    )
    with pytest.raises(SuperpixelError, match="unknown"):
        SuperpixelConfig.from_dict({"method": "seeds", "sigma": 1})


# ---------------------------------------------------------------------------------------------
# Validation for the model (spec §1.3-1.4)
# ---------------------------------------------------------------------------------------------


def test_validate_accepts_astronaut(astronaut224: np.ndarray) -> None:
    """A real photo passes for both methods, and the check is the one that refuses too few tokens."""
    for config in (SuperpixelConfig(), SuperpixelConfig.slic()):
        labels = compute_superpixels(astronaut224, config)
        assert validate_for_model(labels, rgb=astronaut224) is None  # accepted: no error
        surviving = len(np.unique(labels[::8, ::8]))
        assert surviving >= 65
        with pytest.raises(SuperpixelError, match=f"only {surviving} distinct superpixels"):
            validate_for_model(labels, rgb=astronaut224, min_tokens=surviving + 1)


def test_validate_rejects_constant_image() -> None:
    grey = np.full((224, 224, 3), 128, np.uint8)
    labels = compute_superpixels(grey, SuperpixelConfig())  # a regular grid: ids alone look fine
    with pytest.raises(SuperpixelError, match="constant"):
        validate_for_model(labels, rgb=grey)


def test_validate_rejects_upscaled_single_pixel() -> None:
    dot = np.array([[[200, 30, 90]]], np.uint8)
    pixels = prepare_input(np.repeat(np.repeat(dot, 32, 0), 32, 1), InputConfig()).pixels
    labels = compute_superpixels(pixels, SuperpixelConfig())
    with pytest.raises(SuperpixelError, match="constant"):
        validate_for_model(labels, rgb=pixels)


def test_validate_rejects_too_few_surviving_tokens(astronaut224: np.ndarray) -> None:
    few = compute_superpixels(astronaut224, SuperpixelConfig(num_superpixels=16))
    message = r"only \d+ distinct superpixels survive on the 28x28 token grid"
    with pytest.raises(SuperpixelError, match=message):
        validate_for_model(few)


def test_validate_uses_top_left_pixel_of_each_patch() -> None:
    labels = np.zeros((224, 224), np.int64)
    labels[::8, ::8] = np.arange(784).reshape(28, 28)  # only the sampled pixels carry distinct ids
    validate_for_model(labels)
    shifted = np.zeros((224, 224), np.int64)
    shifted[1::8, 1::8] = np.arange(784).reshape(28, 28)  # none of them is sampled
    with pytest.raises(SuperpixelError, match="only 1 distinct"):
        validate_for_model(shifted)


# ---------------------------------------------------------------------------------------------
# Property: any small image gives consecutive labels of the right shape
# ---------------------------------------------------------------------------------------------


@st.composite
def small_images(draw: st.DrawFn) -> np.ndarray:
    height = draw(st.integers(32, 96))
    width = draw(st.integers(32, 96))
    return draw(arrays(np.uint8, (height, width, 3), elements=st.integers(0, 255)))


@settings(max_examples=25, deadline=None)
@given(image=small_images(), method=st.sampled_from(["seeds", "slic"]), count=st.sampled_from([16, 64]))
def test_labels_consecutive_for_any_small_image(image: np.ndarray, method: str, count: int) -> None:
    labels = compute_superpixels(image, SuperpixelConfig(method=method, num_superpixels=count))
    assert_consecutive(labels, image.shape[:2])
