"""One error policy for the UI: domain errors become a notice, every output stays as it was."""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable

import gradio as gr

from cast.errors import CastError

log = logging.getLogger(__name__)


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
                gr.Warning(str(err))
                return (*([gr.skip()] * (n_outputs - 1)), f"⚠️ {err}")
            except Exception as err:  # never a traceback in the UI; the user's results stay
                log.exception("unexpected error in %s", fn.__name__)
                gr.Warning(f"Unexpected error: {err}")
                return (*([gr.skip()] * (n_outputs - 1)), f"⚠️ Unexpected error ({type(err).__name__}): {err}")

        return inner

    return wrap
