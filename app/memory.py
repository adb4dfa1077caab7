"""One memory budget for everything visitors' sessions hold (Explore results, comparisons, collections).

A session's gr.State keeps a small `Held` ticket; the results themselves live in one `SessionMemory`
per app, which counts their bytes (numpy arrays and tensors, the shared models excluded) and, beyond its
budget, drops the least recently used. The visitor whose results went is told so at their next click
(`ResultsEvicted`), instead of a silent blank; a state Gradio deletes (time to live, closed tab) frees
its entry through the state's delete callback.
"""
from __future__ import annotations

import dataclasses
import sys
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .notices import Notice

EVICTED_MEMORY = 10_000  # tickets remembered as evicted (for the notice); older ones are forgotten

WHAT = {"explore": ("results of this image", "segment the image again"),
        "compare": ("side-by-side comparison", "press “Compare” again"),
        "collection": ("collection", "segment the collection again")}


class ResultsEvicted(Notice):
    """The visitor's results were dropped to make room for others'."""


@dataclass(frozen=True)
class Held:
    """What a gr.State keeps: a ticket to results that live in the app's SessionMemory."""

    key: str
    kind: str  # explore / compare / collection (what the notice calls them)


def held_bytes(value: Any) -> int:
    """Memory a session's value holds: its arrays, tensors and strings; models (shared by all) are not counted."""
    seen: set[int] = set()
    total = 0
    stack = [value]
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen or isinstance(obj, (nn.Module, type)):
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            total += obj.nbytes if obj.base is None or id(obj.base) not in seen else 0
        elif isinstance(obj, torch.Tensor):
            total += obj.element_size() * obj.nelement()
        elif isinstance(obj, (str, bytes, bytearray)):
            total += len(obj)
        elif isinstance(obj, (int, float, bool, complex)):
            continue
        elif isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            total += sys.getsizeof(obj)
            stack.extend(obj)
        elif hasattr(obj, "__dict__"):  # fields and cached values alike
            stack.extend(vars(obj).values())
        elif dataclasses.is_dataclass(obj):  # slots
            stack.extend(getattr(obj, f.name, None) for f in dataclasses.fields(obj))
    return total


class SessionMemory:
    """Every session's results under one budget in bytes (None: no budget), least recently used evicted first."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._evicted: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(size for _, size in self._items.values())

    def put(self, value: Any, previous: Held | None, kind: str) -> Held | None:
        """Keep `value` (replacing what `previous` held); returns the ticket for the gr.State. Beyond the budget
        the least recently used results of other sessions go; a value larger than the whole budget is refused."""
        if value is None:
            self.drop(previous)
            return None
        size = held_bytes(value)
        if self.max_bytes is not None and size > self.max_bytes:
            raise Notice(f"these results take {size / 1e6:,.0f} MB; this app keeps at most {self.max_bytes / 1e6:,.0f} MB "
                         "of results for all visitors together: try fewer or smaller images")
        key = previous.key if previous is not None else uuid.uuid4().hex
        with self._lock:
            self._items[key] = (value, size)
            self._items.move_to_end(key)
            total = sum(s for _, s in self._items.values())
            while self.max_bytes is not None and total > self.max_bytes and len(self._items) > 1:
                old_key, (_, old_size) = self._items.popitem(last=False)
                total -= old_size
                self._evicted[old_key] = None
                while len(self._evicted) > EVICTED_MEMORY:
                    self._evicted.popitem(last=False)
        return Held(key, kind)

    def get(self, held: Held | None) -> Any:
        """The results behind a ticket (None for none); ResultsEvicted when they were dropped for others'."""
        if held is None:
            return None
        if not isinstance(held, Held):  # a value from before tickets (or a test's own object)
            return held
        with self._lock:
            if held.key in self._items:
                self._items.move_to_end(held.key)
                return self._items[held.key][0]
            evicted = held.key in self._evicted
        if evicted:
            what, redo = WHAT.get(held.kind, ("results", "run it again"))
            limit = f" ({self.max_bytes / 1e9:g} GB for all visitors together)" if self.max_bytes else ""
            raise ResultsEvicted(f"Your {what} were removed from memory to make room for other visitors' results"
                                 f"{limit}: {redo}.")
        return None

    def drop(self, held: Any) -> None:
        """Forget a ticket's results (Gradio deleted the state: its time to live ran out, or the tab closed)."""
        if isinstance(held, Held):
            with self._lock:
                self._items.pop(held.key, None)
