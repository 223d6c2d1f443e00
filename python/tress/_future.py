"""The futures of tress's executors (a leaf module: the thread pool and the
process pools both import it, it imports neither).

:class:`Future` is a ``concurrent.futures.Future`` whose methods are native
(``FutureCore``, crates/tress-python/src/futures.rs); :class:`ProcessFuture`
is the process pools' (its ``result()`` and ``exception()`` may read the
pool's results themselves while they wait).
"""

from concurrent import futures as _std

from tress._tress import FutureCore as _FutureCore

__all__ = ["Future", "ProcessFuture"]


class Future(_FutureCore, _std.Future):
    """A ``concurrent.futures.Future`` whose methods are native.

    ``isinstance(f, concurrent.futures.Future)`` holds, and the stdlib's
    ``wait``, ``as_completed`` and asyncio's ``wrap_future`` use it as they
    use their own: its private attributes (``_state``, ``_condition``,
    ``_waiters``, ...) follow the stdlib's protocol."""

    __init__ = _FutureCore.__init__


Future.__module__ = "tress.futures"


class ProcessFuture(Future):
    """A future of a process pool: while it waits, ``result()`` and
    ``exception()`` first let the pool's engine read results in this thread
    (``Engine.help``: a round trip then wakes nobody)."""

    _tress_pool = None

    def result(self, timeout=None):
        pool = self._tress_pool
        if pool is not None and not self.done():
            timeout = pool.help(self, timeout)
        return Future.result(self, timeout)

    def exception(self, timeout=None):
        pool = self._tress_pool
        if pool is not None and not self.done():
            timeout = pool.help(self, timeout)
        return Future.exception(self, timeout)


ProcessFuture.__module__ = "tress.futures"
