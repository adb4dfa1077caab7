"""One error policy for the UI: errors become a notice that names files, never server paths; outputs stay."""
from __future__ import annotations

import functools
import logging
import re
from typing import Any, Callable

import gradio as gr

from cast.errors import CastError

log = logging.getLogger(__name__)
# an absolute POSIX path of at least two parts, not inside a URL or a fraction ("1/4", "https://host/x")
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@+~=-]+/)+[\w.@+~=-]+")


def redact_paths(text: str) -> str:
    """Every absolute server path in a message shown as its file name: visitors never see the host's layout."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(0).rsplit("/", 1)[-1], text)


class Notice(Exception):
    """A message for the user; the session is left as it was."""


def keeps_session(n_outputs: int) -> Callable:
    """Decorator: on an error, show it as a notice (the last output) and leave every other output unchanged."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except (CastError, Notice) as err:
                message = redact_paths(str(err))
                gr.Warning(message)
                return (*([gr.skip()] * (n_outputs - 1)), f"⚠️ {message}")
            except Exception as err:  # never a traceback in the UI; the user's results stay
                log.exception("unexpected error in %s", fn.__name__)
                message = redact_paths(str(err))
                gr.Warning(f"Unexpected error: {message}")
                return (*([gr.skip()] * (n_outputs - 1)), f"⚠️ Unexpected error ({type(err).__name__}): {message}")

        return inner

    return wrap
