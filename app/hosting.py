"""What a hosted app adds to Gradio's own server: a budget for Gradio's folder of uploads and outputs.

Gradio writes every upload into its cache folder (GRADIO_TEMP_DIR) before any of our code sees it, and
keeps it until `delete_cache` finds it old. `UploadBudget` runs before each upload: expired entries go,
then the oldest until the new upload (its Content-Length, at most `max_file_size`) fits the budget in
bytes and in files; an upload larger than the whole budget is refused with 413.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
from gradio.utils import get_upload_folder
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse

from .config import AppConfig
from .scratch import Scratch, ScratchFullError


class UploadBudget:
    """ASGI middleware: make room in Gradio's upload folder before each upload request."""

    def __init__(self, app: Any, cache: Scratch) -> None:
        self.app, self.cache = app, cache

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("method") == "POST" and scope.get("path", "").endswith("/upload"):
            headers = dict(scope.get("headers") or [])
            try:
                length = int(headers.get(b"content-length", b"0"))
            except ValueError:
                length = 0
            try:
                await anyio.to_thread.run_sync(self.cache.make_room, length, 1)
            except ScratchFullError as err:
                await PlainTextResponse(str(err), status_code=413)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def server_options(config: AppConfig) -> dict[str, Any]:
    """Keyword arguments of `Blocks.launch` for this mode: the upload size limit and, hosted, the upload budget."""
    if not config.hosted:
        return {"max_file_size": None}
    cache = config.upload_cache(Path(get_upload_folder()))
    cache = Scratch(cache.root, cache.ttl_s, cache.max_bytes, cache.max_files, keep_before=time.time())
    return {"max_file_size": f"{config.limits.max_upload_mb:g}mb",
            "app_kwargs": {"middleware": [Middleware(UploadBudget, cache=cache)]}}
