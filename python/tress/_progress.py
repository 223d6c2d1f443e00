"""``progress=True`` of the process pools' ``map``, ``imap`` and
``imap_unordered``: a progress bar through tqdm when it can be imported, a
plain one-line counter on stderr otherwise.

A :class:`Progress` counts results as they are delivered (``update(n)``,
callable from any thread) and is closed once, when the last result is in or
the caller stops early.
"""

import sys
import threading
import time

__all__ = ["Progress", "make"]

REDRAW_INTERVAL = 0.1
"""Seconds between two redraws of the plain counter (the last is always drawn)."""


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class Progress:
    """The plain counter: ``\\r<desc>: <done>/<total>`` on one line of
    ``file``, redrawn at most every :data:`REDRAW_INTERVAL` seconds, ended
    with a newline on :meth:`close`."""

    def __init__(self, total=None, desc="tasks", file=None):
        self.total = total
        self.desc = desc
        self.file = sys.stderr if file is None else file
        self.n = 0
        self._lock = threading.Lock()
        self._drawn = 0.0
        self._closed = False
        self._draw()

    def _draw(self):
        total = "?" if self.total is None else self.total
        try:
            self.file.write(f"\r{self.desc}: {self.n}/{total}")
            self.file.flush()
        except (OSError, ValueError):  # stderr closed: progress is best effort
            pass
        self._drawn = time.monotonic()

    def update(self, n=1):
        with self._lock:
            if self._closed:
                return
            self.n += n
            if self.n == self.total or time.monotonic() - self._drawn >= REDRAW_INTERVAL:
                self._draw()

    def close(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._draw()
            try:
                self.file.write("\n")
                self.file.flush()
            except (OSError, ValueError):
                pass


class _Tqdm:
    """tqdm's bar behind the same three calls (tqdm's ``update`` is not
    meant for several threads at once: one lock)."""

    def __init__(self, bar):
        self._bar = bar
        self._lock = threading.Lock()
        self._closed = False

    def update(self, n=1):
        with self._lock:
            if not self._closed:
                self._bar.update(n)

    def close(self):
        with self._lock:
            if not self._closed:
                self._closed = True
                self._bar.close()


def make(total=None, desc="tasks"):
    """The progress display of one ``map``: tqdm's bar when tqdm imports,
    else :class:`Progress`. ``total`` is None when the length is unknown."""
    tqdm = _tqdm()
    if tqdm is None:
        return Progress(total, desc)
    return _Tqdm(tqdm(total=total, desc=desc))


def length(iterable):
    """``len(iterable)`` when it has one, else None (the input is not consumed)."""
    try:
        return len(iterable)
    except TypeError:
        return None


def closing(items, bar):
    """Yields from ``items``, and closes ``bar`` when the iteration ends or
    is abandoned."""
    try:
        yield from items
    finally:
        bar.close()
