"""Build the folder of real photographs that the shipped CAST is pre-trained on (MoCo-v3, CPU).

Run:  python scripts/fetch_training_photos.py            (writes data/photos/ and data/photos/MANIFEST.csv)
      python scripts/fetch_training_photos.py --out DIR --cache DIR

Every photograph comes from a package that this environment can install, and its author and licence are
read from that package, never guessed:

- Debian packages of desktop wallpapers (`apt-get download`, unpacked with `dpkg-deb -x`, nothing
  installed): author and licence from the package's DEP-5 `/usr/share/doc/<pkg>/copyright` (the last
  `Files:` stanza matching the file wins, as DEP-5 says); Plasma's authors from each `metadata.json`.
- scikit-image's bundled sample data (`skimage.data`): licence as stated in each function's docstring.
- scikit-learn's two sample images, read from its wheel (`pip download --no-deps`, not installed), with
  the wheel's `sklearn/datasets/images/README.txt` as the licence notice.

Only PHOTOGRAPHS are kept. The lists below were made by looking at contact sheets of every image in these
packages; renders, vector art, gradients, paintings and textures were left out (checkpoints/DATA.md lists
what was rejected and why). Files whose licence the package does not state are left out too.

The four example images in assets/ (skimage astronaut, chelsea, coffee, rocket) are the evaluation set,
so they are not in the lists, and every candidate is also compared with them (a 32 x 32 thumbnail
correlation) and refused if it looks like one of them.

Each photograph is written as RGB JPEG (quality 92), at most 640 px on its long side. The script is
idempotent: downloads are cached, outputs are rewritten byte-for-byte the same, and files that an earlier
manifest listed but the current lists no longer name are removed (nothing else in the folder is touched).
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import json
import re
import subprocess
import sys
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
MAX_SIDE = 640
JPEG_QUALITY = 92
MANIFEST_FIELDS = ("file", "source", "version", "original_path", "author", "licence", "notes")
EVALUATION_IMAGES = ("astronaut.jpg", "chelsea_cat.jpg", "coffee.jpg", "rocket.jpg")  # under assets/
SAME_IMAGE_CORRELATION = 0.9  # 32x32 grey thumbnails this correlated are treated as the same photo
SPDX_NAMES = {"CC0": "CC0-1.0"}  # licence short names as some copyright files spell them -> SPDX

# Debian bookworm versions the lists were made from; another version is used (and recorded) if these
# are no longer in the archive, and the script stops if a listed file is missing from it.
DEBIAN_PACKAGES: dict[str, str] = {
    "lomiri-wallpapers-16.04": "20.04.0-2",
    "lomiri-wallpapers-20.04": "20.04.0-2",
    "mate-backgrounds": "1.26.0-1",
    "plasma-workspace-wallpapers": "4:5.27.5-2",
    "libjxl-testdata": "0.0~git20230110.d6168ff-1",
}

# (package, path inside the package, short name for our file, note)
_BG = "usr/share/backgrounds"
_KDE = "usr/share/wallpapers"
_JXL = "usr/share/libjxl-testdata/external/wesaturate/500px"
DEBIAN_PHOTOS: list[tuple[str, str, str, str]] = [
    ("lomiri-wallpapers-16.04", f"{_BG}/Bridge_by_Sander_Klootwijk.jpg", "bridge", "wires over a beach"),
    ("lomiri-wallpapers-16.04", f"{_BG}/Dragonfly_by_Bolly.jpg", "dragonfly", "dragonfly in foliage"),
    ("lomiri-wallpapers-16.04", f"{_BG}/Picture_0B_by_freespace.jpg", "fig_bowl", "fig in a red bowl"),
    ("lomiri-wallpapers-16.04", f"{_BG}/Picture_1A_by_freespace.jpg", "brushes", "paint brushes"),
    ("lomiri-wallpapers-16.04", f"{_BG}/Wine_by_Jakkub_Mede.jpg", "wine", "room with a drum and a table"),
    ("lomiri-wallpapers-16.04", f"{_BG}/aitzgorri_by_Aitzol_Berasategi.jpg", "aitzgorri", "mountain landscape"),
    ("lomiri-wallpapers-16.04", f"{_BG}/free_by_Peter_Nerlich.jpg", "free", "toy bird under lamps"),
    ("lomiri-wallpapers-16.04", f"{_BG}/friends_by_Aitzol_Berasategi.jpg", "friends", "two dogs at a window"),
    ("lomiri-wallpapers-16.04", f"{_BG}/greentock_by_Peter_Nerlich.jpg", "greentock", "wall clock close-up"),
    ("lomiri-wallpapers-16.04", f"{_BG}/life_by_Aitzol_Berasategi.jpg", "life", "stream in a forest"),
    ("lomiri-wallpapers-16.04", f"{_BG}/picosdeeuropa_by_Aitzol_Berasategi.jpg", "picosdeeuropa", "mountains"),
    ("lomiri-wallpapers-16.04", f"{_BG}/seeding_by_Clements_Engelhardt.jpg", "seeding", "dandelions"),
    ("lomiri-wallpapers-16.04", f"{_BG}/sunset_by_Aitzol_Berasategi.jpg", "sunset", "sunset over hills"),
    ("lomiri-wallpapers-20.04", f"{_BG}/Kleiber_by_Lukas_Baubkus.jpg", "kleiber", "nuthatch on a tree trunk"),
    ("mate-backgrounds", f"{_BG}/mate/nature/Aqua.jpg", "aqua", "water drop splash"),
    ("mate-backgrounds", f"{_BG}/mate/nature/Blinds.jpg", "blinds", "leaf close-up"),
    ("mate-backgrounds", f"{_BG}/mate/nature/Dune.jpg", "dune", "grass on a dune, sea"),
    ("mate-backgrounds", f"{_BG}/mate/nature/FreshFlower.jpg", "freshflower", "orange flower close-up"),
    ("mate-backgrounds", f"{_BG}/mate/nature/GreenMeadow.jpg", "greenmeadow", "grass blades"),
    ("mate-backgrounds", f"{_BG}/mate/nature/RainDrops.jpg", "raindrops", "leaves with drops"),
    ("mate-backgrounds", f"{_BG}/mate/nature/Storm.jpg", "storm", "storm clouds over a road"),
    ("mate-backgrounds", f"{_BG}/mate/nature/TwoWings.jpg", "twowings", "seeds in front of flowers"),
    ("mate-backgrounds", f"{_BG}/mate/nature/Wood.jpg", "wood", "wooden plank close-up"),
    ("plasma-workspace-wallpapers", f"{_KDE}/BytheWater/contents/images/2560x1600.jpg", "bythewater", "jetty by a lake"),
    ("plasma-workspace-wallpapers", f"{_KDE}/ColdRipple/contents/images/2560x1600.jpg", "coldripple", "jetty in fog, greyscale"),
    ("plasma-workspace-wallpapers", f"{_KDE}/ColorfulCups/contents/images/2560x1600.jpg", "colorfulcups", "plastic cups"),
    ("plasma-workspace-wallpapers", f"{_KDE}/DarkestHour/contents/images/2560x1600.jpg", "darkesthour", "lake at dusk"),
    ("plasma-workspace-wallpapers", f"{_KDE}/EveningGlow/contents/images/2560x1600.jpg", "eveningglow", "rowing boats at sunset"),
    ("plasma-workspace-wallpapers", f"{_KDE}/FallenLeaf/contents/images/2560x1600.jpg", "fallenleaf", "autumn leaf on the ground"),
    ("plasma-workspace-wallpapers", f"{_KDE}/Grey/contents/images/2560x1600.jpg", "grey", "building facade, greyscale"),
    ("plasma-workspace-wallpapers", f"{_KDE}/Kite/contents/images/2560x1600.jpg", "kite", "kite in a blue sky"),
    ("plasma-workspace-wallpapers", f"{_KDE}/OneStandsOut/contents/images/2560x1600.jpg", "onestandsout", "moss from above"),
    ("plasma-workspace-wallpapers", f"{_KDE}/Path/contents/images/2560x1600.jpg", "path", "path through a forest"),
    ("plasma-workspace-wallpapers", f"{_KDE}/summer_1am/contents/images/2560x1600.jpg", "summer_1am", "lake at night"),
    ("libjxl-testdata", f"{_JXL}/cvo9xd_keong_macan_srgb8.png", "keong_macan", "rocky shore; 500 px crop by libjxl"),
    ("libjxl-testdata", f"{_JXL}/tmshre_riaphotographs_srgb8.png", "riaphotographs", "tulips; 500 px crop by libjxl"),
    ("libjxl-testdata", f"{_JXL}/u76c0g_bliznaca_srgb8.png", "bliznaca", "blossoming branch; 500 px crop by libjxl"),
]

# skimage.data function -> (author / origin, licence, note); all from the docstrings of scikit-image 0.26.
# Not used: astronaut, chelsea, coffee, rocket (our evaluation images); stereo_motorcycle (Middlebury,
# no licence in the docstring); moon (no licence stated); brick / grass / gravel (greyscale textures);
# cell (a phase image, not a photograph).
SKIMAGE_PHOTOS: dict[str, tuple[str, str, str]] = {
    "hubble_deep_field": ("NASA (HubbleSite)", "public domain", "Hubble eXtreme Deep Field"),
    "immunohistochemistry": ("Center for Microscopy And Molecular Imaging (CMMI)", "no known copyright restrictions",
                             "microscopy, IHC staining"),
    "retina": ("Mikael Häggström (Wikimedia Commons)", "CC0-1.0", "fundus photograph"),
    "camera": ("Lav Varshney", "CC0-1.0", "greyscale original, stored as RGB"),
    "coins": ("Brooklyn Museum Collection", "no known copyright restrictions", "greyscale original, stored as RGB"),
}  # fmt: skip

SKLEARN_VERSION = "1.9.1"
# The README names danielbuechele for both images, but flower.jpg's source link is vultilion's photostream.
SKLEARN_PHOTOS: dict[str, tuple[str, str]] = {
    "china.jpg": ("danielbuechele (Flickr)", "Summer Palace, Beijing"),
    "flower.jpg": ("vultilion (Flickr; the README's attribution line says danielbuechele)", "flower close-up"),
}


@dataclass(frozen=True)
class Photo:
    """One photograph to write: how to load it, and its manifest row (without the output file name)."""

    name: str  # output file stem
    load: Callable[[], Image.Image]
    source: str
    version: str
    original_path: str
    author: str
    licence: str
    notes: str


class FetchError(RuntimeError):
    """A source could not be obtained or does not contain what the lists expect."""


# ------------------------------------------------------------------------------------- Debian
def debian_package(package: str, version: str, cache: Path) -> tuple[Path, str]:
    """(unpacked root, version) of a Debian package, downloaded once with `apt-get download`."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        for spec in (f"{package}={version}", package):
            result = subprocess.run(["apt-get", "download", spec], cwd=debs, capture_output=True, text=True)
            if result.returncode == 0:
                break
            print(f"  apt-get download {spec} failed: {result.stderr.strip().splitlines()[-1:]}")
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            raise FetchError(f"cannot download the Debian package {package}; run `apt-get update` first "
                             "(as root) and check that the package exists in this release")
    deb = found[-1]
    real_version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True,
                                  check=True).stdout.strip()  # fmt: skip
    root = cache / "unpacked" / package
    marker = root / ".unpacked-from"
    if not marker.is_file() or marker.read_text() != deb.name:
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        marker.write_text(deb.name)
    if real_version != version:
        print(f"  note: {package} is version {real_version}, the lists were made from {version}")
    return root, real_version


def parse_dep5(text: str) -> list[dict[str, str]]:
    """The paragraphs of a DEP-5 copyright file as field -> value (continuation lines joined by newlines)."""
    paragraphs, current, key = [], {}, None
    for line in text.splitlines():
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key is not None:
            current[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            current[key] = value.strip()
    if current:
        paragraphs.append(current)
    return paragraphs


def _matches(pattern: str, installed: str) -> bool:
    """Does a DEP-5 `Files:` pattern (a path in the upstream tree) name this installed file?

    Upstream paths differ from installed ones only by a leading directory, so any trailing part of the
    installed path may match; a pattern's literal file name also matches when only its folder differs
    (lomiri ships `16.04/x.jpg` as `/usr/share/backgrounds/x.jpg`).
    """
    parts = installed.split("/")
    if any(fnmatch.fnmatchcase("/".join(parts[i:]), pattern) for i in range(len(parts))):
        return True
    base = pattern.rsplit("/", 1)[-1]
    return not any(c in base for c in "*?[") and base == parts[-1]


def debian_licence(copyright_text: str, installed: str) -> tuple[str, str]:
    """(author, licence) of an installed file from its package's DEP-5 copyright (last match wins)."""
    chosen = None
    for paragraph in parse_dep5(copyright_text):
        patterns = paragraph.get("Files", "").split()
        if any(_matches(p, installed) for p in patterns if not p.startswith("debian/")):
            chosen = paragraph
    if chosen is None:
        raise FetchError(f"{installed}: no Files stanza of the package's copyright names it")
    licence = chosen.get("License", "").splitlines()[0].strip()
    return _author(chosen.get("Copyright", "")), SPDX_NAMES.get(licence, licence)


def _author(copyright_field: str) -> str:
    """'2018, Jane Doe <jd@x.org>' -> 'Jane Doe' (years, e-mail addresses and stray punctuation dropped)."""
    names = []
    for line in copyright_field.splitlines():
        line = re.sub(r"<[^>]*>", "", line)
        line = re.sub(r"\b\d{4}(\s*-\s*\d{4})?\b", "", line)
        line = line.strip(" ,.;´'\t")
        if len(line) > 1 and line[0] == line[-1] == '"':  # a quoted pseudonym: "Bolly"
            line = line[1:-1]
        if line:
            names.append(line)
    return "; ".join(names)


def debian_photos(cache: Path) -> list[Photo]:
    photos = []
    for package, wanted_version in DEBIAN_PACKAGES.items():
        root, version = debian_package(package, wanted_version, cache)
        copyright_text = (root / "usr/share/doc" / package / "copyright").read_text(encoding="utf-8")
        for pkg, installed, name, note in DEBIAN_PHOTOS:
            if pkg != package:
                continue
            path = root / installed
            if not path.is_file():
                raise FetchError(f"{package} {version} has no {installed}; update the list in {Path(__file__).name}")
            author, licence = debian_licence(copyright_text, installed)
            notes = note
            if package == "libjxl-testdata" and author.lower() == "none":  # "Copyright: none" (CC0)
                author = f"wesaturate.com user {name} (from the file name)"
            metadata = path.parents[2] / "metadata.json" if package == "plasma-workspace-wallpapers" else None
            if metadata is not None and metadata.is_file():  # Plasma names the photographer per wallpaper
                plugin = json.loads(metadata.read_text(encoding="utf-8"))["KPlugin"]
                photographers = [a["Name"] for a in plugin.get("Authors", []) if a.get("Name")]
                notes += f"; debian/copyright: {author}; metadata.json licence: {plugin.get('License', '?')}"
                author = "; ".join(photographers) or author
            photos.append(Photo(f"{_slug(package)}__{name}", lambda p=path: Image.open(p), f"debian:{package}",
                                version, "/" + installed, author, licence, notes))  # fmt: skip
    return photos


# ------------------------------------------------------------------------------- Python libraries
def skimage_photos() -> list[Photo]:
    import skimage
    from skimage import data

    photos = []
    for function, (author, licence, note) in SKIMAGE_PHOTOS.items():
        loader = getattr(data, function)
        photos.append(Photo(f"skimage__{function}", lambda f=loader: Image.fromarray(f()), "scikit-image",
                            skimage.__version__, f"skimage.data.{function}()", author, licence, note))  # fmt: skip
    return photos


def sklearn_photos(cache: Path) -> list[Photo]:
    """The two sample images from the scikit-learn wheel (downloaded with pip, never installed)."""
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob(f"scikit_learn-{SKLEARN_VERSION}-*.whl"))
    if not found:
        # the images are the same in every platform's wheel: ask for one that exists for any interpreter
        cmd = [sys.executable, "-m", "pip", "download", f"scikit-learn=={SKLEARN_VERSION}", "--no-deps",
               "--only-binary=:all:", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
               "--dest", str(wheels), "--quiet"]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(wheels.glob(f"scikit_learn-{SKLEARN_VERSION}-*.whl"))
        if result.returncode or not found:
            raise FetchError(f"pip download scikit-learn=={SKLEARN_VERSION} failed: {result.stderr.strip()[-400:]}")
    wheel = found[-1]
    with zipfile.ZipFile(wheel) as archive:
        readme = archive.read("sklearn/datasets/images/README.txt").decode("utf-8")
    licence = "CC-BY-2.0" if "creativecommons.org/licenses/by/2.0" in readme else "see sklearn/datasets/images/README.txt"

    def load(member: str) -> Image.Image:
        with zipfile.ZipFile(wheel) as archive:
            return Image.open(io.BytesIO(archive.read(member)))

    return [
        Photo(f"sklearn__{Path(name).stem}", lambda m=f"sklearn/datasets/images/{name}": load(m), "scikit-learn",
              SKLEARN_VERSION, f"sklearn/datasets/images/{name}", author, licence,
              f"{note}; retrieved by Robert Layton (README.txt)")
        for name, (author, note) in SKLEARN_PHOTOS.items()
    ]  # fmt: skip


# ------------------------------------------------------------------------------------- writing
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _thumbnail(image: Image.Image) -> np.ndarray:
    grey = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float64).ravel()
    grey -= grey.mean()
    return grey / (np.linalg.norm(grey) + 1e-9)


def resized_rgb(image: Image.Image) -> Image.Image:
    """Upright RGB copy, at most MAX_SIDE px on the long side (never enlarged)."""
    image = ImageOps.exif_transpose(image).convert("RGB")
    scale = MAX_SIDE / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def _previous_files(manifest: Path) -> set[str]:
    if not manifest.is_file():
        return set()
    with manifest.open(newline="", encoding="utf-8") as handle:
        return {row["file"] for row in csv.DictReader(handle) if row.get("file")}


def build(out: Path, cache: Path) -> list[dict[str, str]]:
    """Write every photograph and MANIFEST.csv into `out`; returns the manifest rows."""
    photos = debian_photos(cache) + skimage_photos() + sklearn_photos(cache)
    names = [p.name for p in photos]
    if len(set(names)) != len(names):
        raise FetchError(f"duplicate output names: {sorted(n for n, c in Counter(names).items() if c > 1)}")
    evaluation = {name: _thumbnail(Image.open(REPO / "assets" / name)) for name in EVALUATION_IMAGES}
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "MANIFEST.csv"
    stale = _previous_files(manifest)
    rows = []
    for photo in photos:
        image = resized_rgb(photo.load())
        thumb = _thumbnail(image)
        twin = next((n for n, t in evaluation.items() if float(thumb @ t) > SAME_IMAGE_CORRELATION), None)
        if twin is not None:
            raise FetchError(f"{photo.original_path} looks like the evaluation image assets/{twin}; remove it")
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
        target = out / f"{photo.name}.jpg"
        if not target.is_file() or target.read_bytes() != buffer.getvalue():
            target.write_bytes(buffer.getvalue())
        stale.discard(target.name)
        rows.append({"file": target.name, "source": photo.source, "version": photo.version,
                     "original_path": photo.original_path, "author": photo.author, "licence": photo.licence,
                     "notes": f"{photo.notes}; {image.width}x{image.height}"})  # fmt: skip
    for name in sorted(stale):  # listed by an earlier run, no longer wanted
        (out / name).unlink(missing_ok=True)
        print(f"  removed {name} (no longer in the lists)")
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def summary(rows: list[dict[str, str]], out: Path) -> str:
    by_source = Counter(r["source"] for r in rows)
    by_licence = Counter(r["licence"] for r in rows)
    lines = [f"{len(rows)} photographs in {out} (manifest: {out / 'MANIFEST.csv'})", "", "by source:"]
    lines += [f"  {count:3d}  {source}" for source, count in by_source.most_common()]
    lines += ["", "by licence:"]
    lines += [f"  {count:3d}  {licence}" for licence, count in by_licence.most_common()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "data" / "photos", help="output folder (default data/photos)")
    parser.add_argument("--cache", type=Path, default=REPO / "data" / "cache" / "photo_sources",
                        help="where downloaded packages are kept between runs (default data/cache/photo_sources)")
    args = parser.parse_args(argv)
    try:
        rows = build(args.out, args.cache)
    except FetchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(summary(rows, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
