"""Who is asking: a browser's own token (kept in its localStorage), else the Gradio session of an API client."""
from __future__ import annotations

import uuid
import zipfile
from pathlib import Path

import gradio as gr

from cast.datasets import IMAGE_SUFFIXES
from cast.errors import CastError


def owner_of(token: str | None, request: gr.Request | None) -> str | None:
    """The owner id of a request: the browser token, else the API client's session hash."""
    if token:
        return str(token)
    return getattr(request, "session_hash", None)


def new_token(token: str | None) -> str:
    """Keep a browser's token, or give it one (on its first page load)."""
    return token or uuid.uuid4().hex


def check_upload_size(path: str | Path | None, cap_mb: float | None, what: str, name: str | None = None) -> None:
    """Refuse an upload over the cap with a message naming the file (not its server path)."""
    if path is None or cap_mb is None:
        return
    size = Path(path).stat().st_size
    if size > cap_mb * 1e6:
        shown = name or Path(path).name
        raise CastError(f"{shown} is {size / 1e6:.1f} MB; this app accepts {what} of at most {cap_mb:g} MB")


def check_zip(path: str | Path, max_images: int | None, max_expanded_mb: float | None, name: str | None = None) -> int:
    """Image count and expanded size of an uploaded ZIP from its directory (nothing extracted); returns the count."""
    path = Path(path)
    shown = name or path.name
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, OSError) as err:
        raise CastError(f"{shown} is not a readable ZIP file ({err})") from err
    images = sum(Path(m.filename).suffix.lower() in IMAGE_SUFFIXES for m in members)
    expanded = sum(m.file_size for m in members)
    if max_images is not None and images > max_images:
        raise CastError(f"{shown} holds {images} images; this app accepts at most {max_images} per ZIP")
    if max_expanded_mb is not None and expanded > max_expanded_mb * 1e6:
        raise CastError(f"{shown} expands to {expanded / 1e6:,.0f} MB; this app accepts at most {max_expanded_mb:,.0f} MB")
    return images
