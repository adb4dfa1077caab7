"""The example photographs shipped with the package: the README's and the app's (`assets/` in a checkout).

    import cast
    hierarchy = cast.Segmenter(model).run(cast.example_image("chelsea_cat"))

Installed packages carry them as package data (`cast/data/examples/`, links to `assets/` in the
repository), so they are found from any working directory. Licences: `cast/data/examples/LICENSES.md`.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import CastError

EXAMPLE_SUFFIX = ".jpg"


def examples_dir() -> Path:
    """The folder of the example photographs."""
    return Path(str(resources.files("cast").joinpath("data", "examples")))


def example_images() -> list[Path]:
    """Every example photograph, sorted by name (astronaut, chelsea_cat, coffee, rocket)."""
    folder = examples_dir()
    return sorted(folder.glob(f"*{EXAMPLE_SUFFIX}")) if folder.is_dir() else []


def example_image(name: str) -> Path:
    """One example photograph by name, with or without `.jpg` (e.g. "chelsea_cat")."""
    path = examples_dir() / (name if name.endswith(EXAMPLE_SUFFIX) else name + EXAMPLE_SUFFIX)
    if not path.is_file():
        known = ", ".join(p.stem for p in example_images()) or "none: this installation has no example photographs"
        raise CastError(f"no example photograph {name!r}; the examples are: {known}")
    return path
