"""Figures built once per input and shared by every session of the server (pure Python, no streamlit).

A page that redraws often (a polling fragment, thirty board pages after one share, a slider going back to a
value someone already looked at) asks for its figure by a key that names every input the figure depends on,
for example ``("board", board_version, group, "trainable", template)``; the figure is built on the first ask and
handed out again afterwards::

    from explorer.views.figcache import cached
    fig = cached(("board", v, group, "trainable", tpl), lambda: FR.board_scatter(rows, "trainable", tpl))

When several sessions miss the same key at once (a share bumps the board's version and every open board
reruns), one of them builds the figure and the others wait for it and get the same object
(:meth:`FigureCache.get`).  The figures handed out are shared: nobody may change them in place
(``explorer.views.figures.for_projector`` copies before restyling; Streamlit only reads a figure).

The cache keeps the ``maxsize`` most recently used figures (least recently used dropped first).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

__all__ = ["FigureCache", "FIGURES", "cached"]


class FigureCache:
    """A thread-safe LRU of built objects with one builder per missing key."""

    def __init__(self, maxsize: int = 64, wait_s: float = 30.0):
        self.maxsize = max(1, int(maxsize))
        self.wait_s = float(wait_s)
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._building: dict[Hashable, threading.Event] = {}
        self.hits = 0
        self.builds = 0

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The object cached under ``key``, else ``build()``'s result (cached).  While another thread builds the
        same key, wait for it (at most ``wait_s``; then build here).  A build that raises caches nothing."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            pending = self._building.get(key)
            mine = pending is None
            if mine:
                pending = self._building[key] = threading.Event()
        if not mine:
            pending.wait(self.wait_s)
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    self.hits += 1
                    return self._items[key]
            return build()  # the other builder failed or is slow: build for this caller alone
        try:
            value = build()
            with self._lock:
                self.builds += 1
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self.maxsize:
                    self._items.popitem(last=False)
            return value
        finally:
            with self._lock:
                self._building.pop(key, None)
            pending.set()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


FIGURES = FigureCache()


def cached(key: Hashable, build: Callable[[], Any]) -> Any:
    """``FIGURES.get(key, build)``: the server-wide figure for ``key``."""
    return FIGURES.get(key, build)
