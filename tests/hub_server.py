"""A Hugging Face Hub stand-in on 127.0.0.1 for the download tests.

It answers HEAD and GET at `/{repo_id}/resolve/{revision}/{filename}` with the headers
`huggingface_hub.hf_hub_download` needs (X-Repo-Commit, ETag, Content-Length, Accept-Ranges;
206 + Content-Range for a Range request), records every request, and injects faults per file:
`truncate_first=N` cuts the first GET (or the first `truncate_gets`) off after N bytes of body,
`status=404` answers like the Hub for a missing entry (X-Error-Code: EntryNotFound). Unknown files
are 404 too. `with HubServer() as hub:` starts it on a free port; leaving the block shuts it down.
"""
from __future__ import annotations

import hashlib
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class ServedFile:
    content: bytes
    status: int = 200
    truncate_first: int | None = None
    truncate_gets: int = 1  # how many GETs truncate_first cuts off
    gets: int = 0  # GET requests answered so far


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None  # the Range header, verbatim


class HubServer:
    """A threaded HTTP server for one or more repos; use it as a context manager."""

    def __init__(self, commit: str = COMMIT) -> None:
        self.commit = commit
        self.files: dict[tuple[str, str], ServedFile] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, repo_id: str, filename: str, content: bytes, *, status: int = 200,
            truncate_first: int | None = None, truncate_gets: int = 1) -> ServedFile:
        """Serve `content` as `filename` of `repo_id` (replacing what was served there before)."""
        served = ServedFile(content, status, truncate_first, truncate_gets)
        with self._lock:
            self.files[(repo_id, filename)] = served
        return served

    def gets(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == "GET"]

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _lookup(self, method: str, path: str, range_header: str | None) -> ServedFile | None:
        with self._lock:
            self.requests.append(Request(method, path, range_header))
            repo_id, sep, rest = unquote(path.split("?", 1)[0]).lstrip("/").partition("/resolve/")
            served = self.files.get((repo_id, rest.partition("/")[2])) if sep else None
            if served is not None and method == "GET":
                served.gets += 1
            return served


def _make_handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:  # noqa: N802 (http.server naming)
            self._answer(body=False)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            range_header = self.headers.get("Range")
            served = hub._lookup(self.command, self.path, range_header)
            if served is None or served.status != 200:
                self.send_response(404 if served is None else served.status)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Error-Message", "Entry not found")
                self.send_header("X-Repo-Commit", hub.commit)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                return
            data, total = served.content, len(served.content)
            match = _RANGE.match(range_header or "")
            start, end = (int(match[1]), int(match[2] or total - 1)) if match else (0, total - 1)
            self.send_response(206 if match else 200)
            if match:
                self.send_header("Content-Range", f"bytes {start}-{end}/{total}")
            self.send_header("Content-Length", str(end + 1 - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", hub.commit)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            if not body:
                return
            payload = data[start : end + 1]
            self.close_connection = True
            try:
                if served.truncate_first is not None and served.gets <= served.truncate_gets:
                    self.wfile.write(payload[: served.truncate_first])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)  # mid-body: the client sees a broken transfer
                else:
                    self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client hung up (a cancelled download)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
            pass  # quiet: the request log is `hub.requests`

    return Handler
