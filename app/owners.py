"""Who is asking: a visitor named by a server-signed token (kept in the browser's localStorage), else the Gradio
session of an API client; and from which network address. Plus the upload checks every tab shares.

A token is `<random id>.<HMAC-SHA256 of the id>` under a key that never leaves the server (CAST_VISITOR_KEY,
else a random key kept beside the jobs), checked on every request that acts for a visitor: a client can
make up a session, never another visitor's token.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from cast.datasets import ZipContents, ZipLimits, inspect_zip
from cast.errors import CastError


class VisitorError(CastError):
    """A request names a visitor the server did not issue."""


@dataclass(frozen=True)
class Visitor:
    """The owner id of a request's jobs, models and files, and the network address caps are counted by."""

    owner: str | None
    address: str | None = None


class VisitorKeys:
    """Issues and checks visitor tokens; `behind_proxy`: the address is the first X-Forwarded-For hop (a Space)."""

    def __init__(self, key: bytes, behind_proxy: bool = False) -> None:
        self._key = key
        self.behind_proxy = behind_proxy

    @classmethod
    def load(cls, folder: Path, behind_proxy: bool = False, environ: dict[str, str] | None = None) -> "VisitorKeys":
        """The key from CAST_VISITOR_KEY, else `folder/.visitor-key` (made once, readable by this user only), so
        tokens stay valid across restarts, like the jobs they own; a read-only place: a key for this process."""
        env = os.environ if environ is None else environ
        if env.get("CAST_VISITOR_KEY"):
            return cls(env["CAST_VISITOR_KEY"].encode(), behind_proxy)
        path = Path(folder) / ".visitor-key"
        try:
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_hex(32))
            return cls(path.read_text().strip().encode(), behind_proxy)
        except OSError:
            return cls(secrets.token_bytes(32), behind_proxy)

    def _sign(self, visitor_id: str) -> str:
        return hmac.new(self._key, visitor_id.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, token: str | None = None) -> str:
        """A browser's token: the one it has if this server signed it, else a fresh one (first page load)."""
        if token and self.check(token) is not None:
            return token
        visitor_id = secrets.token_hex(16)
        return f"{visitor_id}.{self._sign(visitor_id)}"

    def check(self, token: str) -> str | None:
        """The visitor id of a token this server signed, else None."""
        visitor_id, _, signature = str(token).partition(".")
        if len(visitor_id) != 32 or not hmac.compare_digest(signature, self._sign(visitor_id)):
            return None
        return visitor_id

    def browser_state_secret(self) -> str:
        """The key Gradio's BrowserState encrypts the token with. Gradio publishes it to the page (/config), so it
        is derived one-way from ours: knowing it forges nothing, and it is stable, so a token outlives a restart."""
        return hmac.new(self._key, b"gradio BrowserState", hashlib.sha256).hexdigest()[:32]

    def visitor(self, token: str | None, request: gr.Request | None) -> Visitor:
        """Who sent `request`: the token's visitor (checked), else the API client's session; and its address.
        VisitorError for a token this server did not sign."""
        if token:
            visitor_id = self.check(token)
            if visitor_id is None:
                raise VisitorError("this visitor token was not issued by this app (forged, or from before a key "
                                   "change): reload the page for a new one, or send no token from a script")
            owner = f"visitor:{visitor_id}"
        else:
            session = getattr(request, "session_hash", None)
            owner = f"session:{session}" if session else None
        return Visitor(owner, self.address(request))

    def owner(self, token: str | None, request: gr.Request | None) -> str | None:
        """The owner id of a request (see `visitor`)."""
        return self.visitor(token, request).owner

    def address(self, request: Any) -> str | None:
        """The visitor's network address: the first X-Forwarded-For hop behind a proxy, else the peer's address."""
        if request is None:
            return None
        if self.behind_proxy:
            headers = getattr(request, "headers", None) or {}
            forwarded = headers.get("x-forwarded-for") or headers.get("X-Forwarded-For")
            if forwarded:
                return forwarded.split(",")[0].strip() or None
        client = getattr(request, "client", None)
        return getattr(client, "host", None)


@dataclass(frozen=True)
class Visitors:
    """What every tab needs to know who asks: the page's token component (an input of each event) and the
    keys that check the token."""

    state: Any  # gr.BrowserState holding this browser's signed token
    keys: VisitorKeys

    def owner(self, token: str | None, request: gr.Request | None) -> str | None:
        return self.keys.owner(token, request)

    def visitor(self, token: str | None, request: gr.Request | None) -> Visitor:
        return self.keys.visitor(token, request)


def check_upload_size(path: str | Path | None, cap_mb: float | None, what: str, name: str | None = None) -> None:
    """Refuse an upload over the cap with a message naming the file (not its server path)."""
    if path is None or cap_mb is None:
        return
    size = Path(path).stat().st_size
    if size > cap_mb * 1e6:
        shown = name or Path(path).name
        raise CastError(f"{shown} is {size / 1e6:.1f} MB; this app accepts {what} of at most {cap_mb:g} MB")


def check_image_pixels(path: str | Path | None, cap_megapixels: float | None, name: str | None = None) -> None:
    """Refuse an image larger than the cap from its header, before any pixel is decoded."""
    if path is None or cap_megapixels is None:
        return
    shown = name or Path(path).name
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Exception:  # not an image: the decoder says so with its own message
        return
    if width * height > cap_megapixels * 1e6:
        raise CastError(f"{shown} is {width}x{height} pixels ({width * height / 1e6:,.0f} megapixels); this app "
                        f"accepts images of at most {cap_megapixels:g} megapixels")


def check_zip(path: str | Path, limits: ZipLimits | None, name: str | None = None) -> ZipContents:
    """Every member of an uploaded ZIP counted and sized and each image's header read (nothing extracted):
    what extracting it would write, or a CastError naming the file (not its server path)."""
    return inspect_zip(path, limits, name=name or Path(path).name)
