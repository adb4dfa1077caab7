"""Approximate ground-truth masks for the four example images in assets/ (how: assets/ground_truth/README.md).

Run:  python scripts/make_ground_truth.py                      (writes assets/ground_truth/*.png)
      python scripts/make_ground_truth.py --overlays /tmp/gt   (also writes overlays to check them by eye)

Every mask comes from fixed inputs written below, chosen by looking at the images: OpenCV GrabCut
(`cv2.grabCut`, GC_INIT_WITH_MASK) started from a rectangle, with optional polygons that are surely
foreground or surely background inside it, and plain polygons / ellipses for parts with clear outlines.
GrabCut runs a fixed number of iterations after `cv2.setRNGSeed(0)`, so the output is deterministic.

Outputs, at the image's original resolution, as palette PNGs (palette = the VOC colours; the index is
the label, which is what `cast.datasets.load_label_mask` reads):
- `<stem>_object.png`: 0 background, 1 object.
- `<stem>_parts.png`: 0..P-1 in the order of the image's PARTS list, 255 on a thin band along every
  border between two parts (the outline is uncertain there by a pixel or two).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cast.render import voc_palette  # noqa: E402

IGNORE = 255
BORDER_BAND_PX = 2  # pixels this close to another part's pixels are marked IGNORE in the parts masks
GRABCUT_ITERATIONS = 10
RNG_SEED = 0

Point = tuple[int, int]
Polygon = tuple[Point, ...]


@dataclass(frozen=True)
class GrabCut:
    """GrabCut inside `rect` (x0, y0, x1, y1, end-exclusive); outside it is sure background.

    sure_fg / sure_bg: polygons (x, y) forced to foreground / background, drawn after the rectangle.
    only_within: when given, every pixel outside all of these polygons is sure background too.
    """

    rect: tuple[int, int, int, int]
    sure_fg: tuple[Polygon, ...] = ()
    sure_bg: tuple[Polygon, ...] = ()
    only_within: tuple[Polygon, ...] = ()


@dataclass(frozen=True)
class Shapes:
    """Filled polygons and ellipses; ellipse = (cx, cy, half-width, half-height, angle in degrees)."""

    polygons: tuple[Polygon, ...] = ()
    ellipses: tuple[tuple[int, int, int, int, int], ...] = ()


@dataclass(frozen=True)
class Part:
    """One part label. `where` restricts it to the object ("object"), to outside it ("background") or not."""

    name: str
    region: GrabCut | Shapes | None  # None: every pixel that `where` allows (use first, as a base)
    where: str = "any"


@dataclass(frozen=True)
class ImageTruth:
    stem: str
    subject: str
    object: GrabCut
    object_cut: Shapes = Shapes()  # manual corrections after GrabCut: first removed from the object,
    object_fix: Shapes = Shapes()  # then added to it
    parts: tuple[Part, ...] = field(default_factory=tuple)  # part 0 is the base everything else covers


def _poly(*points: Point) -> Polygon:
    return tuple(points)


def _ellipse(cx: int, cy: int, half_width: int, half_height: int, angle: int = 0) -> Polygon:
    """An ellipse as a polygon (every 5 degrees), for GrabCut hints."""
    points = cv2.ellipse2Poly((cx, cy), (half_width, half_height), angle, 0, 360, 5)
    return tuple((int(x), int(y)) for x, y in points)


def _scaled(polygon: Polygon, factor: float) -> Polygon:
    """The polygon shrunk (< 1) or grown (> 1) about its vertex mean: a band around a traced outline."""
    points = np.asarray(polygon, np.float64)
    centre = points.mean(axis=0)
    return tuple((int(round(x)), int(round(y))) for x, y in centre + factor * (points - centre))


# ------------------------------------------------------------------------------ the four images
ASTRONAUT_HELMET = (390, 470, 112, 127, 0)  # the held helmet's outline is close to this ellipse
ASTRONAUT_LATCH = _poly((490, 450), (512, 450), (512, 512), (490, 512))  # its neck ring, lower right
ASTRONAUT_NECK_RING = _poly(  # the suit's neck ring and the collar inside it, up to the chin
    (115, 197), (126, 170), (145, 158), (170, 152), (188, 152), (188, 183), (254, 183), (262, 175), (285, 185),
    (300, 205), (302, 240), (285, 258), (250, 265), (200, 258), (160, 245), (125, 225))
COFFEE_SAUCER = _poly(  # the saucer's outer edge, traced on a 10 px grid
    (160, 80), (120, 100), (90, 140), (80, 175), (76, 200), (80, 300), (110, 350), (160, 377), (250, 388),
    (380, 382), (440, 360), (480, 315), (481, 225), (475, 190), (455, 150), (420, 110))
COFFEE_CUP_RIM = _poly((172, 112), (190, 50), (240, 20), (290, 12), (340, 20), (392, 50), (412, 112))
COFFEE_SPOON_TIP = _poly((400, 60), (418, 56), (430, 68), (420, 112), (402, 112), (396, 78))
COFFEE_SPOON_HANDLE = _poly((403, 66), (416, 62), (425, 70), (418, 100), (414, 132), (406, 132), (406, 100), (400, 78))
TRUTHS: tuple[ImageTruth, ...] = (
    ImageTruth(
        stem="astronaut",
        subject="astronaut (person and the helmet she holds) against flag, shuttle model and backdrop",
        object=GrabCut(
            rect=(18, 8, 512, 512),
            sure_fg=(
                _poly((190, 60), (260, 60), (260, 140), (190, 140)),  # face
                _poly((60, 320), (350, 320), (350, 500), (60, 500)),  # suit
            ),
            sure_bg=(
                _poly((360, 0), (512, 0), (512, 330), (380, 330), (360, 300)),  # shuttle model, backdrop
                _poly((0, 0), (140, 0), (140, 40), (100, 200), (60, 260), (0, 300)),  # flag, backdrop
            ),
        ),
        # the black stand right of the helmet looks like the black visor: cut it, then add the helmet shape;
        # the suit's grey neck ring looks like the backdrop: add it (with the collar inside it)
        object_cut=Shapes(polygons=(_poly((372, 268), (512, 268), (512, 512), (372, 512)),)),
        object_fix=Shapes(polygons=(ASTRONAUT_LATCH, ASTRONAUT_NECK_RING), ellipses=(ASTRONAUT_HELMET,)),
        parts=(
            Part("backdrop", None),
            Part("flag", GrabCut(rect=(0, 0, 100, 512), sure_fg=(_poly((0, 0), (40, 0), (40, 250), (0, 250)),)), "background"),
            Part("shuttle model", Shapes(polygons=(_poly(
                (410, 0), (422, 0), (432, 8), (438, 25), (440, 40), (446, 38), (452, 45), (452, 205), (456, 222),
                (452, 232), (445, 234), (448, 280), (385, 280), (375, 235), (356, 228), (355, 220), (378, 195),
                (382, 60), (386, 45), (393, 35), (396, 15)),)), "background"),
            Part("suit", None, "object"),
            Part("helmet", Shapes(polygons=(ASTRONAUT_LATCH,), ellipses=(ASTRONAUT_HELMET,)), "object"),
            Part("hair", GrabCut(rect=(145, 8, 300, 140), sure_fg=(_poly((170, 30), (270, 30), (270, 50), (170, 50)),),
                                 sure_bg=(_poly((195, 88), (255, 88), (255, 140), (195, 140)),)), "object"),
            Part("face and neck", Shapes(polygons=(_poly(
                (190, 86), (226, 79), (260, 86), (264, 103), (266, 120), (262, 138), (255, 160), (254, 183),
                (187, 183), (187, 156), (182, 137), (180, 114), (185, 92)),)), "object"),
        ),
    ),
    ImageTruth(
        stem="chelsea_cat",
        subject="cat's head filling the frame against a blurred room",
        object=GrabCut(
            rect=(0, 0, 451, 300),
            sure_fg=(_poly((60, 40), (330, 40), (330, 290), (60, 290)),),
            sure_bg=(_poly((415, 0), (451, 0), (451, 300), (415, 300)), _poly((0, 0), (18, 0), (18, 70), (0, 70))),
        ),
        parts=(
            Part("background", None),
            Part("fur", None, "object"),
            Part("eye, image left", GrabCut(rect=(126, 80, 214, 152), sure_fg=(_poly((150, 100), (190, 100), (190, 130), (150, 130)),)), "object"),
            Part("eye, image right", GrabCut(rect=(288, 102, 352, 170), sure_fg=(_poly((305, 122), (335, 122), (335, 150), (305, 150)),)), "object"),
            Part("nose", GrabCut(rect=(228, 218, 298, 272), sure_fg=(_poly((248, 234), (280, 234), (280, 248), (248, 248)),)), "object"),
        ),
    ),
    ImageTruth(
        stem="coffee",
        subject="espresso cup with coffee and a spoon on a saucer, on a wooden table",
        # GrabCut decides only a band around the traced saucer outline (its shadow on the table is as
        # dark as its rim), plus the cup's top and the spoon's tip, which stick out of the saucer
        object=GrabCut(
            rect=(60, 10, 495, 400),
            sure_fg=(_scaled(COFFEE_SAUCER, 0.94),),
            only_within=(_scaled(COFFEE_SAUCER, 1.015), COFFEE_CUP_RIM, COFFEE_SPOON_TIP),
        ),
        object_fix=Shapes(polygons=(COFFEE_SPOON_HANDLE,)),  # GrabCut gives the metal tip to the table
        parts=(
            Part("table", None),
            Part("saucer", None, "object"),
            Part("cup", Shapes(
                polygons=(
                    _poly((173, 110), (178, 150), (190, 185), (205, 215), (225, 240), (256, 258), (300, 264),
                          (345, 255), (375, 235), (392, 205), (402, 170), (408, 110)),  # body below the rim
                    _poly((210, 235), (252, 238), (256, 269), (248, 304), (218, 308), (198, 292), (198, 265)),  # handle
                ),
                ellipses=((290, 112, 118, 96, 0),),  # rim
            ), "object"),
            Part("spoon", Shapes(
                polygons=(
                    COFFEE_SPOON_HANDLE,  # its end, above the saucer behind the cup
                    _poly((376, 238), (380, 215), (385, 203), (392, 203), (392, 225), (390, 242)),
                ),
                ellipses=((366, 281, 40, 41, 0),),  # bowl
            ), "object"),
            Part("coffee", GrabCut(rect=(192, 86, 382, 200), sure_fg=(_ellipse(286, 142, 60, 30),),
                                   only_within=(_ellipse(286, 142, 92, 53),)), "object"),
        ),
    ),
    ImageTruth(
        stem="rocket",
        subject="Falcon 9 on the pad at dusk, between four lattice lightning towers",
        object=GrabCut(rect=(305, 120, 343, 406), sure_fg=(_poly((318, 140), (328, 140), (328, 395), (318, 395)),)),
        parts=(
            Part("sky", None),
            # the cloud bank on the horizon, the ground with its lights, the launch mount and the pad: traced
            # on a brightened copy (GrabCut put the horizon 15 px too high where the sky is darkest)
            Part("ground and horizon", Shapes(polygons=(_poly(
                (0, 372), (170, 368), (290, 370), (290, 355), (356, 355), (356, 368), (430, 366), (480, 356),
                (570, 352), (640, 352), (640, 427), (0, 427)),)), "background"),
            # lattice towers: their outline (envelope), as an annotator would draw a polygon round them
            Part("towers", Shapes(polygons=(
                _poly((43, 0), (90, 0), (86, 200), (82, 427), (0, 427), (0, 330), (20, 200)),
                _poly((198, 121), (203, 121), (204, 160), (206, 188), (218, 427), (170, 427), (189, 188), (196, 160)),
                _poly((443, 122), (450, 122), (451, 160), (461, 188), (478, 427), (422, 427), (439, 188), (442, 160)),
                _poly((565, 0), (618, 0), (628, 200), (640, 330), (640, 427), (575, 427), (570, 200)),
            )), "background"),
            Part("rocket", None, "object"),
        ),
    ),
)  # fmt: skip


# ------------------------------------------------------------------------------------- building
def _fill(shape: tuple[int, int], shapes: Shapes) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for polygon in shapes.polygons:  # one by one: fillPoly with several polygons would XOR their overlaps
        cv2.fillPoly(mask, [np.asarray(polygon, np.int32)], 1)
    for cx, cy, ax, ay, angle in shapes.ellipses:
        cv2.ellipse(mask, (cx, cy), (ax, ay), angle, 0, 360, 1, thickness=-1)
    return mask.astype(bool)


def grabcut(image_bgr: np.ndarray, spec: GrabCut) -> np.ndarray:
    """(H, W) bool foreground of GrabCut started from the rectangle and the sure polygons."""
    height, width = image_bgr.shape[:2]
    mask = np.full((height, width), cv2.GC_BGD, np.uint8)
    x0, y0, x1, y1 = spec.rect
    mask[max(0, y0):min(height, y1), max(0, x0):min(width, x1)] = cv2.GC_PR_FGD
    if spec.only_within:
        allowed = _fill((height, width), Shapes(polygons=spec.only_within))
        mask[~allowed] = cv2.GC_BGD
    for polygon in spec.sure_bg:
        cv2.fillPoly(mask, [np.asarray(polygon, np.int32)], cv2.GC_BGD)
    for polygon in spec.sure_fg:
        cv2.fillPoly(mask, [np.asarray(polygon, np.int32)], cv2.GC_FGD)
    cv2.setRNGSeed(RNG_SEED)
    background_model = np.zeros((1, 65), np.float64)
    foreground_model = np.zeros((1, 65), np.float64)
    cv2.grabCut(image_bgr, mask, None, background_model, foreground_model, GRABCUT_ITERATIONS,
                cv2.GC_INIT_WITH_MASK)  # fmt: skip
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def _region(image_bgr: np.ndarray, region: GrabCut | Shapes | None) -> np.ndarray:
    if region is None:
        return np.ones(image_bgr.shape[:2], bool)
    if isinstance(region, GrabCut):
        return grabcut(image_bgr, region)
    return _fill(image_bgr.shape[:2], region)


def object_mask(image_bgr: np.ndarray, truth: ImageTruth) -> np.ndarray:
    """(H, W) bool object mask: GrabCut, then the manual cuts and additions, holes filled."""
    shape = image_bgr.shape[:2]
    mask = (grabcut(image_bgr, truth.object) & ~_fill(shape, truth.object_cut)) | _fill(shape, truth.object_fix)
    return _largest_component(mask)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest connected region and fill its holes (GrabCut leaves specks and pinholes)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask
    keep = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    _, outside = cv2.connectedComponents((~keep).astype(np.uint8), connectivity=4)
    touches_frame = np.unique(np.concatenate([outside[0], outside[-1], outside[:, 0], outside[:, -1]]))
    holes = ~keep & ~np.isin(outside, touches_frame)
    return keep | holes


def parts_mask(image_bgr: np.ndarray, truth: ImageTruth, obj: np.ndarray) -> np.ndarray:
    """(H, W) uint8 part ids in PARTS order, later parts covering earlier ones, IGNORE along borders."""
    labels = np.zeros(obj.shape, np.uint8)
    for index, part in enumerate(truth.parts):
        region = _region(image_bgr, part.region)
        if part.where == "object":
            region &= obj
        elif part.where == "background":
            region &= ~obj
        labels[region] = index
    return _mark_borders(labels, BORDER_BAND_PX)


def _mark_borders(labels: np.ndarray, band: int) -> np.ndarray:
    """IGNORE on pixels within `band` px of a pixel with another label."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    covered = np.zeros(labels.shape, np.uint8)
    for value in np.unique(labels):
        covered += cv2.dilate((labels == value).astype(np.uint8), kernel)
    out = labels.copy()
    out[covered > 1] = IGNORE
    return out


def save_label_png(path: Path, labels: np.ndarray) -> None:
    """Palette PNG: the pixel index is the label; colours are the VOC palette (255 = light grey-beige)."""
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(voc_palette(256).ravel().tolist())
    image.save(path, optimize=True)


def overlay(image_rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Colour-coded labels blended over the image, with the label outlines in white (for review)."""
    palette = voc_palette(256)
    colours = palette[labels]
    blended = (0.5 * image_rgb + 0.5 * colours).astype(np.uint8)
    edge = np.zeros(labels.shape, bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    blended[edge] = 255
    return blended


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "ground_truth")
    parser.add_argument("--overlays", type=Path, default=None, help="also write <stem>_*_overlay.png here")
    parser.add_argument("--only", nargs="*", default=None, help="stems to build (default: all)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.overlays:
        args.overlays.mkdir(parents=True, exist_ok=True)
    summary = {}
    for truth in TRUTHS:
        if args.only and truth.stem not in args.only:
            continue
        image_rgb = np.asarray(Image.open(REPO / "assets" / f"{truth.stem}.jpg").convert("RGB"))
        image_bgr = np.ascontiguousarray(image_rgb[..., ::-1])
        obj = object_mask(image_bgr, truth)
        save_label_png(args.out / f"{truth.stem}_object.png", obj.astype(np.uint8))
        entry = {"object_fraction": round(float(obj.mean()), 3)}
        if truth.parts:
            parts = parts_mask(image_bgr, truth, obj)
            save_label_png(args.out / f"{truth.stem}_parts.png", parts)
            entry["parts"] = {p.name: round(float((parts == i).mean()), 3) for i, p in enumerate(truth.parts)}
            entry["ignored"] = round(float((parts == IGNORE).mean()), 3)
        if args.overlays:
            Image.fromarray(overlay(image_rgb, obj.astype(np.uint8))).save(args.overlays / f"{truth.stem}_object_overlay.png")
            if truth.parts:
                Image.fromarray(overlay(image_rgb, parts)).save(args.overlays / f"{truth.stem}_parts_overlay.png")
        summary[truth.stem] = entry
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
