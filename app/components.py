"""Gradio components of our own: an image box that hands over the uploaded file exactly as it arrived."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr


@dataclass(frozen=True)
class UploadedFile:
    """A file as the user sent it: where the server keeps it, and its name as the user knows it."""

    path: Path
    name: str


class OriginalImage(gr.Image):
    """gr.Image (drop, paste, examples, API uploads) whose callbacks get the ORIGINAL bytes, never re-encoded.

    gr.Image decodes and re-encodes uploads as 8-bit images before a callback sees them, which breaks
    16-bit PNGs, float TIFFs and friends and hides the file name. Here the upload goes to cast.image's own
    loader untouched (`UploadedFile`); the browser side is the ordinary image box.
    """

    @classmethod
    def get_block_name(cls) -> str:
        return "image"  # the browser renders the built-in image box

    def preprocess(self, payload: Any) -> UploadedFile | None:
        if payload is None or not getattr(payload, "path", None):
            return None
        path = Path(payload.path)
        return UploadedFile(path, getattr(payload, "orig_name", None) or path.name)
