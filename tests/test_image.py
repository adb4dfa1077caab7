"""cast.image: loading every kind of input, clear errors for bad ones, and the official input pipeline."""
from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reference import load_reference, single_image_fixtures
from skimage import data

from cast.errors import InvalidImageError
from cast.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MIN_SIDE,
    InputConfig,
    load_image,
    prepare_input,
    to_tensor,
)

PARITY_IMAGES = ("astronaut", "chelsea", "coffee")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose pixel data is junk: decoding it would fail."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    junk = zlib.compress(b"\0" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", junk) + chunk(b"IEND", b"")


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


# ---------------------------------------------------------------------------------------------
# Bad inputs: each gives InvalidImageError whose message names the problem (and the file)
# ---------------------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(InvalidImageError, match="does not exist") as err:
        load_image(path)
    assert str(path) in str(err.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="directory"):
        load_image(str(tmp_path))


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(InvalidImageError, match="empty") as err:
        load_image(path)
    assert "empty.png" in str(err.value)


def test_non_image_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n" * 20)
    with pytest.raises(InvalidImageError, match="not an image") as err:
        load_image(path)
    assert "notes.jpg" in str(err.value)


def test_truncated_png(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InvalidImageError, match="truncated") as err:
        load_image(path)
    assert "cut.png" in str(err.value)


def test_one_pixel_image(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (1, 1), "red"), tmp_path / "dot.png")
    with pytest.raises(InvalidImageError, match=f"1x1 pixels; CAST needs at least {MIN_SIDE}x{MIN_SIDE}"):
        load_image(path)


def test_thin_array_rejected() -> None:
    with pytest.raises(InvalidImageError, match="300x20 pixels"):
        load_image(np.zeros((20, 300, 3), np.uint8))


@pytest.mark.parametrize(("width", "height", "message"), [
    (30000, 30000, "too large"),  # beyond Pillow's decompression-bomb limit
    (12000, 9000, "12000x9000 pixels"),  # beyond our MAX_PIXELS, below Pillow's hard limit
])
def test_huge_image_rejected_from_header(tmp_path: Path, width: int, height: int, message: str) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(png_header_only(width, height))  # junk pixel data: decoding would raise "truncated"
    start = time.perf_counter()
    with pytest.raises(InvalidImageError, match=message) as err:
        load_image(path)
    assert "megapixels" in str(err.value) and "huge.png" in str(err.value)
    assert time.perf_counter() - start < 5  # generous: only fails if pixels were decoded


@pytest.mark.parametrize("array", [
    np.zeros((1, 64, 64, 3), np.uint8),
    np.zeros((64, 64, 5), np.uint8),
    np.zeros((64,), np.uint8),
], ids=["4d", "5-channels", "1d"])
def test_bad_array_shapes(array: np.ndarray) -> None:
    with pytest.raises(InvalidImageError, match="shape"):
        load_image(array)


@pytest.mark.parametrize(("array", "message"), [
    (np.full((64, 64, 3), 2.0, np.float32), r"expected the range \[0, 1\]"),
    (np.full((64, 64, 3), np.nan), "NaN"),
    (np.full((64, 64), -5, np.int32), "integer pixel values"),
    (np.zeros((64, 64, 3), np.complex64), "dtype"),
])
def test_bad_array_values(array: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidImageError, match=message):
        load_image(array)


def test_unsupported_source_type() -> None:
    with pytest.raises(InvalidImageError, match="list"):
        load_image([[0, 1], [2, 3]])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Good inputs of every kind become (H, W, 3) uint8 RGB
# ---------------------------------------------------------------------------------------------


def assert_rgb(rgb: np.ndarray, shape: tuple[int, int]) -> None:
    assert rgb.dtype == np.uint8 and rgb.shape == (*shape, 3) and rgb.flags.c_contiguous


def test_path_bytes_pil_and_array_agree(tmp_path: Path) -> None:
    chelsea = data.chelsea()
    path = save(Image.fromarray(chelsea), tmp_path / "cat.png")
    for source in (path, str(path), path.read_bytes(), Image.open(path), chelsea):
        rgb = load_image(source)
        assert_rgb(rgb, chelsea.shape[:2])
        np.testing.assert_array_equal(rgb, chelsea)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.fromarray(data.astronaut()).resize((96, 64))  # width 96, height 64
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = save(img, tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert_rgb(load_image(path), (96, 64))


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:32, :, 3] = 255  # top half opaque red-ish, bottom half fully transparent
    path = save(Image.fromarray(rgba, "RGBA"), tmp_path / "alpha.png")
    for source in (path, rgba):
        rgb = load_image(source)
        np.testing.assert_array_equal(rgb[:32], np.broadcast_to([200, 0, 0], (32, 64, 3)))
        np.testing.assert_array_equal(rgb[32:], np.full((32, 64, 3), 255))


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (40, 40), 0)
    img.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    img.paste(1, (0, 0, 20, 40))
    path = save(img, tmp_path / "pal.png", transparency=0)
    rgb = load_image(path)
    np.testing.assert_array_equal(rgb[:, :20], np.broadcast_to([10, 20, 30], (40, 20, 3)))
    np.testing.assert_array_equal(rgb[:, 20:], np.full((40, 20, 3), 255))


def test_grayscale_modes(tmp_path: Path) -> None:
    gray = data.camera()[::4, ::4]  # 128 x 128
    for mode, source in (
        ("L", save(Image.fromarray(gray), tmp_path / "g.png")),
        ("LA", save(Image.fromarray(gray).convert("LA"), tmp_path / "ga.png")),
        ("1", save(Image.fromarray(gray).convert("1"), tmp_path / "bw.png")),
        ("array", gray),
        ("HxWx1", gray[..., None]),
    ):
        rgb = load_image(source)
        assert_rgb(rgb, gray.shape)
        assert (rgb[..., 0] == rgb[..., 2]).all(), mode
        if mode != "1":
            np.testing.assert_array_equal(rgb[..., 1], gray)


def test_sixteen_bit_inputs(tmp_path: Path) -> None:
    gray8 = data.camera()[::4, ::4]
    gray16 = gray8.astype(np.uint16) * 257  # exact 16-bit version of the same picture
    img = Image.fromarray(gray16)
    assert img.mode == "I;16"
    path = save(img, tmp_path / "deep.png")
    for source in (path, gray16, np.stack([gray16] * 3, axis=-1), gray16.astype(np.int32)):
        rgb = load_image(source)
        assert_rgb(rgb, gray8.shape)
        np.testing.assert_array_equal(rgb[..., 0], gray8)


def test_float_and_bool_arrays() -> None:
    astronaut = data.astronaut()
    np.testing.assert_array_equal(load_image(astronaut / 255.0), astronaut)
    np.testing.assert_array_equal(load_image((astronaut / 255.0).astype(np.float32)), astronaut)
    mask = np.zeros((48, 48), bool)
    mask[10:20] = True
    assert set(np.unique(load_image(mask))) == {0, 255}


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = save(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), tmp_path / "cmyk.jpg")
    rgb = load_image(path)
    assert_rgb(rgb, (48, 64))
    assert rgb[..., 0].mean() > 200 and rgb[..., 1:].mean() < 40  # cyan/magenta/yellow inks -> red


def test_returned_array_is_a_copy() -> None:
    astronaut = data.astronaut()
    rgb = load_image(astronaut)
    rgb[:] = 0
    assert astronaut.any()


# ---------------------------------------------------------------------------------------------
# Model input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{"size": 100}, {"size": 32}, {"size": 2048}, {"mode": "stretch"}])
def test_input_config_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        InputConfig(**kwargs)


@pytest.mark.parametrize("name", PARITY_IMAGES)
@pytest.mark.parametrize("size", [224, 320])
def test_center_crop_geometry(name: str, size: int) -> None:
    rgb = getattr(data, name)()
    height, width = rgb.shape[:2]
    out = prepare_input(rgb, InputConfig(size=size))
    assert out.pixels.shape == (size, size, 3) and out.pixels.dtype == np.uint8
    assert out.original_size == (height, width)
    x0, y0, x1, y1 = out.crop_box
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    # the crop is the largest centred square
    assert abs((x1 - x0) - (y1 - y0)) <= 1 and min(x1 - x0, y1 - y0) >= min(height, width) - 1
    assert abs((x0 + x1) / 2 - width / 2) <= 1 and abs((y0 + y1) / 2 - height / 2) <= 1


def test_center_crop_of_portrait_image() -> None:
    portrait = np.ascontiguousarray(data.coffee().transpose(1, 0, 2))  # 600 x 400
    out = prepare_input(portrait, InputConfig())
    assert out.crop_box == (0, 100, 400, 500)


def test_full_frame_covers_whole_image() -> None:
    coffee = data.coffee()
    out = prepare_input(coffee, InputConfig(mode="full_frame"))
    assert out.pixels.shape == (224, 224, 3)
    assert out.crop_box == (0, 0, 600, 400) and out.original_size == (400, 600)
    assert not InputConfig(mode="full_frame").is_parity and InputConfig().is_parity


def test_to_tensor_normalises() -> None:
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[..., 1] = 255
    x = to_tensor(pixels)
    assert x.shape == (1, 3, 64, 64) and x.dtype == torch.float32
    expected = [(0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], (1 - IMAGENET_MEAN[1]) / IMAGENET_STD[1]]
    assert torch.allclose(x[0, :2, 0, 0], torch.tensor(expected), atol=1e-6)
    with pytest.raises(InvalidImageError, match="uint8"):
        to_tensor(pixels.astype(np.float32))


@pytest.mark.parametrize("fixture", single_image_fixtures(), ids=lambda f: f.name)
def test_parity_with_official_input_pipeline(fixture) -> None:
    """Resize(224) + CenterCrop(224) + ToTensor + Normalize, as the official notebooks (spec §1.1).

    The crop is checked where the original is a scikit-image sample named like the fixture
    (parity_astronaut -> data.astronaut()); the normalisation on every fixture."""
    reference = load_reference(fixture.path)
    expected = reference["image_uint8"].numpy()
    torch.testing.assert_close(to_tensor(expected), reference["image"], atol=1e-6, rtol=0)
    name = fixture.name.removeprefix("parity_")
    if not hasattr(data, name):
        return
    out = prepare_input(getattr(data, name)(), InputConfig())
    diff = np.abs(out.pixels.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1, f"{name}: max diff {diff.max()}"
    np.testing.assert_array_equal(out.pixels, expected)  # bit-exact with the Pillow in our venv
    torch.testing.assert_close(to_tensor(expected), reference["image"], atol=1e-6, rtol=0)


def test_rotated_tiff_and_jpeg_report_the_oriented_full_size() -> None:
    """An 800 x 400 (W x H) file rotated by EXIF is 400 wide, 800 high, whichever format applies the rotation."""
    import io

    from cast.image import read_image

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 800, 3), dtype=np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6
    for fmt in ("TIFF", "JPEG"):
        buffer = io.BytesIO()
        img.save(buffer, format=fmt, exif=exif.tobytes())
        read = read_image(buffer.getvalue())
        assert read.rgb.shape[:2] == (800, 400) and read.original_size == (800, 400), fmt


@pytest.mark.parametrize("mode", ["P", "1", "I;16"])
def test_reduced_decoding_of_palette_bilevel_and_16_bit_images(mode: str) -> None:
    import io

    from cast.image import read_image

    base = Image.fromarray(data.astronaut()).resize((1800, 1800))
    grey16 = np.asarray(base.convert("L")).astype(np.uint16) * 257
    img = Image.fromarray(grey16) if mode == "I;16" else base.convert(mode)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    read = read_image(buffer.getvalue(), reduction=lambda w, h: 2)
    assert read.scale == 2 and read.rgb.shape == (900, 900, 3) and read.original_size == (1800, 1800)
    assert read.rgb.std() > 10  # an image, not a failure
