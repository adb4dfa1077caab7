"""Who is asking: a browser's own token (kept in its localStorage), else the Gradio session of an API client."""
from __future__ import annotations

import uuid
from pathlib import Path

import gradio as gr

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
