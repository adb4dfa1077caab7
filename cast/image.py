"""Load, validate and prepare images for CAST (spec §1.1).

Every input (path, bytes, PIL image, numpy array) becomes an H x W x 3 uint8 RGB array, or an
`InvalidImageError` that says what is wrong. `prepare_input` then makes the 224 x 224 model input,
either the official `Resize(224)` + `CenterCrop(224)` path or a whole-frame squash (not parity).
"""
from __future__ import annotations

import io
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps

from cast.errors import ConfigError, InvalidImageError

MIN_SIDE = 32
MAX_PIXELS = 100_000_000
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageSource = str | Path | bytes | bytearray | Image.Image | np.ndarray

# Pillow's decoders raise many exception types on corrupt or hostile files.
_DECODE_ERRORS = (OSError, ValueError, EOFError, SyntaxError, IndexError, KeyError, struct.error, zlib.error)
_ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa", "P"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_INPUT_MODES = ("center_crop", "full_frame")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ImageRead:
    """A decoded image and how it was read.

    `rgb` is (h, w, 3) uint8, possibly decoded at a reduced size (`scale` > 1: each side about 1/scale of
    the original, by JPEG DCT scaling or Pillow's reduce); `original_size` is (H, W) of the full image after
    EXIF orientation; `mode` / `format` are the file's own (e.g. "I;16" PNG, "CMYK" JPEG).
    """

    rgb: np.ndarray
    name: str
    original_size: tuple[int, int]
    scale: int = 1
    mode: str = ""
    format: str = ""

    def describe(self) -> str:
        """One line for people: name, size, what was converted."""
        h, w = self.original_size
        notes = []
        if self.mode and self.mode not in ("RGB",):
            notes.append(f"{self.mode} converted to 8-bit RGB")
        if self.scale > 1:
            notes.append(f"decoded at 1/{self.scale} scale")
        extra = f" ({'; '.join(notes)})" if notes else ""
        return f"{self.name}: {self.format or 'array'} {w}×{h}{extra}"


# (width, height) of the full image -> allowed reduction factor (1, 2, 4 or 8)
ReductionPolicy = Callable[[int, int], int]


def load_image(source: ImageSource, *, name: str | None = None) -> np.ndarray:
    """Load `source` as an (H, W, 3) uint8 RGB array, C-contiguous.

    Accepts a path, encoded bytes, a PIL image or a numpy array. EXIF orientation is applied,
    transparency is composited on white, and 16-bit / float data is scaled to 8 bits.
    Raises `InvalidImageError` naming the file (`name`, default: the path) and the problem.
    """
    return read_image(source, name=name).rgb


def read_image(source: ImageSource, *, name: str | None = None, reduction: ReductionPolicy | None = None) -> ImageRead:
    """Like :func:`load_image`, with what was read; `reduction` lets large files decode at a reduced size.

    The policy sees the full (width, height) from the header before any pixel is decoded; JPEGs then
    decode at 1/2, 1/4 or 1/8 scale directly (DCT scaling: a fraction of the time and memory), other
    formats decode fully and are reduced at once.
    """
    if isinstance(source, np.ndarray):
        rgb = _array_to_rgb(source, name=name or "image")
        return ImageRead(rgb, name or "image", rgb.shape[:2], mode=str(source.dtype))
    if isinstance(source, Image.Image):
        rgb = _pil_to_rgb(source, name=name or "image")
        return ImageRead(rgb, name or "image", rgb.shape[:2], mode=source.mode, format=source.format or "")
    if isinstance(source, (bytes, bytearray)):
        label = name or "image data"
        if not source:
            raise InvalidImageError(f"{label}: the file is empty (0 bytes)")
        return _decode(io.BytesIO(bytes(source)), label, reduction)
    if isinstance(source, (str, Path)):
        path = Path(source)
        label = name or str(path)
        if not path.exists():
            raise InvalidImageError(f"{label}: file does not exist")
        if path.is_dir():
            raise InvalidImageError(f"{label}: is a directory, not an image file")
        if path.stat().st_size == 0:
            raise InvalidImageError(f"{label}: the file is empty (0 bytes)")
        with path.open("rb") as handle:
            return _decode(handle, label, reduction)
    raise InvalidImageError(
        f"cannot read an image from a {type(source).__name__}; "
        "pass a file path, bytes, a PIL image or a numpy array"
    )


def _decode(stream: io.IOBase, name: str, reduction: ReductionPolicy | None = None) -> ImageRead:
    """Open and decode an encoded image, checking its size from the header before decoding."""
    try:
        with warnings.catch_warnings():
            # Our own MAX_PIXELS check below, made on the header before any pixel is decoded,
            # is the policy; Pillow's warning threshold (~89 MP) sits below it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                _check_size(img.width, img.height, name)
                mode, fmt = img.mode, img.format or ""
                full = _oriented_size(img)
                factor = reduction(full[1], full[0]) if reduction is not None else 1
                scale = 1
                if factor > 1 and fmt == "JPEG":
                    img.draft("RGB" if img.mode in ("RGB", "YCbCr") else img.mode, (img.width // factor, img.height // factor))
                    scale = max(1, round(_ratio(full, img)))
                img.load()
                loaded = img.size  # (W, H) as decoded; some formats (TIFF) already apply their orientation here
                if factor > 1 and fmt != "JPEG":
                    img = _reducible(img).reduce(factor)
                    scale = factor
                rgb = _pil_to_rgb(img, name=name, check=False, owned=True)
                if fmt != "JPEG":  # the full size, in the orientation of the pixels we return
                    full = _full_size(loaded, rgb.shape[:2])
                return ImageRead(rgb, name, full, scale, mode, fmt)
    except InvalidImageError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow refuses > ~179 MP while opening, before our own check
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(declared.group(1)) / 1e6:,.0f} megapixels" if declared else "far too many pixels"
        raise InvalidImageError(
            f"{name}: image declares {size}, too large to decode safely (a decompression bomb?); "
            f"CAST Explorer accepts at most {MAX_PIXELS / 1e6:.0f} megapixels"
        ) from exc
    except Image.UnidentifiedImageError as exc:
        raise InvalidImageError(f"{name}: not an image file, or a format Pillow cannot read") from exc
    except _DECODE_ERRORS as exc:
        raise InvalidImageError(f"{name}: corrupt or truncated image file ({exc})") from exc


def _oriented_size(img: Image.Image) -> tuple[int, int]:
    """(H, W) of the image after its EXIF orientation is applied."""
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block only means no rotation
        orientation = 1
    w, h = img.size
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def _reducible(img: Image.Image) -> Image.Image:
    """Pillow reduces only some modes: palette and 1-bit images become RGB(A) or L first, 16-bit ones I."""
    if img.mode in ("P", "PA", "1"):
        return img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    if img.mode in _SIXTEEN_BIT_MODES:
        return img.convert("I")
    return img


def _full_size(loaded: tuple[int, int], decoded_hw: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of the full image given the decoder's (W, H) and the returned pixels' (h, w) orientation."""
    width, height = loaded
    h, w = decoded_hw
    swapped = width != height and (w >= h) != (width >= height)
    return (width, height) if swapped else (height, width)


def _ratio(full: tuple[int, int], img: Image.Image) -> float:
    """How much smaller the drafted image is than the full one (the larger side's ratio)."""
    return max(full) / max(img.size)


def _check_size(width: int, height: int, name: str) -> None:
    """Reject images outside [MIN_SIDE, MAX_PIXELS] with a message the user can act on."""
    if width * height > MAX_PIXELS:
        raise InvalidImageError(
            f"{name}: image is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels); "
            f"CAST Explorer accepts at most {MAX_PIXELS / 1e6:.0f} megapixels"
        )
    if min(width, height) < MIN_SIDE:
        raise InvalidImageError(
            f"{name}: image is {width}x{height} pixels; CAST needs at least {MIN_SIDE}x{MIN_SIDE}"
        )


def _pil_to_rgb(img: Image.Image, name: str, check: bool = True, owned: bool = False) -> np.ndarray:
    """Convert a PIL image of any common mode to (H, W, 3) uint8 RGB.

    `check` applies the size limits; `owned` (an image we opened ourselves) lets the EXIF rotation work
    in place instead of on a copy, which matters for very large photos."""
    if check:
        _check_size(img.width, img.height, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if owned:
                ImageOps.exif_transpose(img, in_place=True)
            else:
                img = ImageOps.exif_transpose(img)
        if img.mode in _SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
            values = np.asarray(img)
            if img.mode == "I" and values.size and values.min() >= 0 and values.max() <= 65535:
                values = values.astype(np.uint16)  # Pillow's 32-bit mode holding 16-bit data (PNG, TIFF)
            return _array_to_rgb(values, name=name)
        if img.mode in _ALPHA_MODES or "transparency" in img.info:
            rgba = np.asarray(img.convert("RGBA"))
            return _composite_on_white(rgba[..., :3], rgba[..., 3])
        if img.mode == "RGB":
            return np.array(img, dtype=np.uint8, order="C")  # one copy, not convert() + copy
        # "1", "L", "CMYK", "YCbCr", ... : Pillow's own conversion (no ICC colour management).
        return np.array(img.convert("RGB"), dtype=np.uint8, order="C")
    except (InvalidImageError, Image.DecompressionBombError):
        raise
    except _DECODE_ERRORS as exc:
        raise InvalidImageError(f"{name}: cannot decode image of mode {img.mode!r} as RGB ({exc})") from exc


def _array_to_rgb(array: np.ndarray, name: str) -> np.ndarray:
    """Convert an (H, W), (H, W, 1|2|3|4) array of bool / int / float to (H, W, 3) uint8."""
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise InvalidImageError(
            f"{name}: array of shape {tuple(array.shape)} is not an image; "
            "expected (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4)"
        )
    height, width, channels = array.shape
    _check_size(width, height, name)
    values = _to_uint8(array, name)
    colour = values[..., :-1] if channels in (2, 4) else values
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    if channels in (2, 4):
        return _composite_on_white(colour, values[..., -1])
    return np.array(colour, dtype=np.uint8, order="C")  # always a copy: never alias the caller's array


def _to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    """Scale pixel values to uint8: uint16 by /257, floats in [0, 1] by *255, ints in 0..255 as is."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low >= 0 and high <= 255:
            return array.astype(np.uint8)
        if low >= 0 and high <= 65535:  # 16-bit data in a wider int, e.g. Pillow mode "I"
            return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
        raise InvalidImageError(
            f"{name}: integer pixel values span {low}..{high}; expected 0..255 (8-bit) or 0..65535 (16-bit)"
        )
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InvalidImageError(f"{name}: float image contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        tolerance = 0.5 / 255  # resampling overshoot of half a grey level is clipped, not rejected
        if low < -tolerance or high > 1 + tolerance:
            raise InvalidImageError(
                f"{name}: float pixel values span {low:g}..{high:g}; expected the range [0, 1]"
            )
        return np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    raise InvalidImageError(f"{name}: unsupported array dtype {array.dtype}")


def _composite_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend (H, W, 3) uint8 colours over a white background with (H, W) uint8 alpha."""
    weight = alpha.astype(np.float32)[..., None] / 255.0
    blended = rgb.astype(np.float32) * weight + 255.0 * (1.0 - weight)
    return np.ascontiguousarray(np.round(blended).astype(np.uint8))


# --------------------------------------------------------------------------------------------
# Model input
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputConfig:
    """How an image becomes the square model input.

    `center_crop` is the official parity path (`Resize(size)` + `CenterCrop(size)`, spec §1.1);
    `full_frame` squashes the whole image to size x size and is **not** the official pipeline.
    """

    size: int = 224
    mode: str = "center_crop"

    def __post_init__(self) -> None:
        if self.mode not in _INPUT_MODES:
            raise ConfigError(f"mode must be one of {_INPUT_MODES}, got {self.mode!r}")
        if not 64 <= self.size <= 1024 or self.size % 8:
            raise ConfigError(f"size must be a multiple of 8 in [64, 1024], got {self.size}")

    @property
    def is_parity(self) -> bool:
        """True when this path is the official visualisation pipeline: Resize + CenterCrop at 224 (spec §1.1)."""
        return self.mode == "center_crop" and self.size == 224


@dataclass(frozen=True, eq=False)
class ModelInput:
    """The square crop the model and SEEDS see, and where it came from in the original image.

    `pixels`: (size, size, 3) uint8; `crop_box`: (x0, y0, x1, y1) in original pixel coordinates;
    `original_size`: (H, W) of the original image.
    """

    pixels: np.ndarray
    crop_box: tuple[int, int, int, int]
    original_size: tuple[int, int]


def prepare_input(rgb: np.ndarray, config: InputConfig) -> ModelInput:
    """Resize / crop an (H, W, 3) uint8 image to the model input described by `config`."""
    _require_rgb_uint8(rgb)
    height, width = rgb.shape[:2]
    size = config.size
    img = Image.fromarray(rgb)
    if config.mode == "full_frame":
        pixels = np.array(img.resize((size, size), Image.Resampling.BILINEAR))
        return ModelInput(pixels, (0, 0, width, height), (height, width))

    # torchvision Resize(size) on a PIL image: shorter side -> size, longer side truncated.
    if width <= height:
        new_w, new_h = size, int(size * height / width)
    else:
        new_w, new_h = int(size * width / height), size
    if (new_w, new_h) != (width, height):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    # torchvision CenterCrop offsets.
    top = round((new_h - size) / 2.0)
    left = round((new_w - size) / 2.0)
    pixels = np.array(img.crop((left, top, left + size, top + size)))

    scale_x, scale_y = width / new_w, height / new_h
    crop_box = (
        max(0, round(left * scale_x)),
        max(0, round(top * scale_y)),
        min(width, round((left + size) * scale_x)),
        min(height, round((top + size) * scale_y)),
    )
    return ModelInput(pixels, crop_box, (height, width))


def in_original_coordinates(model_input: ModelInput, original_size: tuple[int, int]) -> ModelInput:
    """The same model input with its crop box and size given for the full image, when it was decoded reduced."""
    height, width = model_input.original_size
    if (height, width) == tuple(original_size):
        return model_input
    sy, sx = original_size[0] / height, original_size[1] / width
    x0, y0, x1, y1 = model_input.crop_box
    box = (round(x0 * sx), round(y0 * sy), min(original_size[1], round(x1 * sx)), min(original_size[0], round(y1 * sy)))
    return ModelInput(model_input.pixels, box, (int(original_size[0]), int(original_size[1])))


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32, as torchvision `ToTensor` + ImageNet `Normalize`."""
    _require_rgb_uint8(pixels)
    x = torch.from_numpy(np.array(pixels, order="C")).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0).contiguous()


def denormalize_to_uint8(image: torch.Tensor) -> np.ndarray:
    """Rebuild the uint8 image the DeiT pipeline feeds to SEEDS from a normalised tensor.

    `image`: (3, H, W) or (1, 3, H, W) float. Computes `x*std + mean` in float64, `*255`, then
    truncates (not rounds); values outside [0, 1] wrap around as in the official uint8 cast (§1.2).
    """
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[0] != 3:
        raise InvalidImageError(f"expected a (3, H, W) or (1, 3, H, W) tensor, got {tuple(image.shape)}")
    hwc = image.detach().cpu().permute(1, 2, 0).numpy()
    restored = (hwc * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)) * 255
    return np.ascontiguousarray(np.trunc(restored).astype(np.int64) % 256).astype(np.uint8)


def _require_rgb_uint8(pixels: np.ndarray) -> None:
    is_rgb = isinstance(pixels, np.ndarray) and pixels.ndim == 3 and pixels.shape[2] == 3
    if not is_rgb or pixels.dtype != np.uint8:
        shape = getattr(pixels, "shape", None)
        dtype = getattr(pixels, "dtype", type(pixels).__name__)
        raise InvalidImageError(
            f"expected an (H, W, 3) uint8 RGB array, got shape {shape} dtype {dtype}; use load_image first"
        )
