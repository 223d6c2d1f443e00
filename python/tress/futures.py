"""Drop-in replacement for ``concurrent.futures.ThreadPoolExecutor``.

    from tress import futures
    with futures.ThreadPoolExecutor(max_workers=8) as pool:
        print(list(pool.map(str.upper, ["a", "b"])))

The executor behaves as CPython 3.11's: the same constructor arguments and
errors, lazily started worker threads that are real ``threading.Thread``
objects named ``<prefix>_<n>``, reuse of idle workers, ``shutdown(wait,
cancel_futures=...)``, ``BrokenThreadPool`` when an initializer fails, and
workers joined at interpreter exit. Its futures are instances of
``concurrent.futures.Future``, so ``wait``, ``as_completed``,
``asyncio.wrap_future`` and ``loop.run_in_executor`` take them as they are.

The hot paths are native (``tress._tress``, ``crates/tress-python/src/
futures.rs``): every method of the futures (a subclass of both tress's
``FutureCore`` and ``concurrent.futures.Future``), the work queue with the
stdlib's bookkeeping and the workers' loop (``ThreadPoolCore``: a worker keeps
the GIL from one task to the next while there is work), and a long ``map``
(``ChunkedMap``: chunks of calls run in turn on one worker, every result
published as it comes). This module starts the threads, runs initializers
and keeps the stdlib's interpreter-exit protocol. Everything else of
``concurrent.futures`` is re-exported unchanged.
"""

import functools
import itertools
import math
import os
import threading
import time
import weakref
from concurrent import futures as _std
from concurrent.futures import *  # noqa: F401,F403  (wait, as_completed, ...)
from concurrent.futures import _base
from concurrent.futures.thread import BrokenThreadPool

from tress._compat import cpu_count
from tress._future import Future
from tress._procpool import ProcessPoolExecutor, WorkerDied
from tress._tress import ChunkedMap as _ChunkedMap
from tress._tress import Lock as _Lock
from tress._tress import ThreadPoolCore as _PoolCore
from tress._tress import _pools_exiting

__all__ = list(_std.__all__) + ["BrokenThreadPool", "WorkerDied"]


# Interpreter exit: every pool's queue gets a wake-up and its workers are
# joined, as the stdlib does (threading runs this before joining non-daemon
# threads). `_queues` maps each live worker thread to its pool's queue.
_queues = weakref.WeakKeyDictionary()
_exiting = False
_exit_lock = threading.Lock()


def _at_exit():
    global _exiting
    with _exit_lock:
        _exiting = True
        _pools_exiting()
    pairs = list(_queues.items())
    for _, core in pairs:
        core.stop_workers()
    for thread, _ in pairs:
        thread.join()


threading._register_atexit(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_exit_lock.acquire,
        after_in_child=_exit_lock._at_fork_reinit,
        after_in_parent=_exit_lock.release,
    )
    os.register_at_fork(after_in_child=_queues.clear)


def _work(pool_ref, core, initializer, initargs):
    """A worker thread: the initializer, then the native loop that runs
    calls until the pool stops (shut down, gone, or the interpreter
    exiting)."""
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException:
            _base.LOGGER.critical("Exception in initializer:", exc_info=True)
            pool = pool_ref()
            if pool is not None:
                pool._initializer_failed()
            return
    core.work()


def _spawn(pool_ref, index):
    """Starts worker number ``index`` for the pool, if it is still there."""
    pool = pool_ref()
    if pool is not None:
        pool._start_worker(index)


class ThreadPoolExecutor(_std.ThreadPoolExecutor):
    """An executor running calls in a pool of at most ``max_workers`` threads
    (default ``min(32, cpus + 4)``, the CPUs counted as by the running
    version's stdlib: ``os.process_cpu_count()`` from 3.13 on).

    A subclass of the stdlib's class (``loop.set_default_executor`` and user
    code check ``isinstance``) that overrides all of its behaviour."""

    _pool_numbers = itertools.count().__next__

    def __init__(self, max_workers=None, thread_name_prefix="", initializer=None, initargs=()):
        if max_workers is None:
            max_workers = min(32, (cpu_count() or 1) + 4)
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._max_workers = max_workers
        self._threads = set()
        self._shutdown_lock = _Lock()
        self._thread_name_prefix = thread_name_prefix or (
            f"ThreadPoolExecutor-{self._pool_numbers()}"
        )
        self._initializer = initializer
        self._initargs = initargs
        # The workers and the spawn hook hold the executor weakly; when it
        # is gone its workers are told to stop, as the stdlib does.
        # a float bound is the stdlib's too (it starts threads while fewer
        # than max_workers run): the core counts whole threads
        core = _PoolCore(Future, None, math.ceil(max_workers))
        self._ref = weakref.ref(self, lambda _, core=core: core.stop_workers())
        core.set_spawn(functools.partial(_spawn, self._ref))
        self._core = core

    def submit(self, fn, /, *args, **kwargs):
        return self._core.submit(fn, args, kwargs)

    submit.__doc__ = _std.Executor.submit.__doc__

    @property
    def _shutdown(self):
        return self._core.is_shutdown

    @property
    def _broken(self):
        return self._core.broken or False

    def _adjust_thread_count(self):
        """Nothing to do: ``submit`` starts the workers (natively)."""

    def _start_worker(self, index):
        thread = threading.Thread(
            name=f"{self._thread_name_prefix}_{index}",
            target=_work,
            args=(self._ref, self._core, self._initializer, self._initargs),
        )
        thread.start()
        self._threads.add(thread)
        _queues[thread] = self._core

    def _initializer_failed(self):
        with self._shutdown_lock:
            self._core.break_pool(
                "A thread initializer failed, the thread pool is not usable anymore"
            )

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """Returns an iterator equivalent to ``map(fn, *iterables)``, the calls
        made by the pool: all submitted at once, results yielded in order as
        they are ready, ``timeout`` counted from this call (``TimeoutError``
        when a result is not ready by then), the first exception raised
        where its result would have been, and the calls not yet started
        cancelled when the iterator is closed. ``chunksize`` is ignored, as
        by the stdlib.

        A long map (at least eight calls per worker) makes no future per
        call: one runner task per worker takes the calls in order from a
        shared cursor and publishes each result as its call returns. As
        many calls run at once as with the stdlib, a call that raises does
        not stop the others, and the iterator behaves as the stdlib's
        generator (closing it, or dropping it once started, stops the calls
        not yet started; one never started lets them all run).
        """
        if timeout is not None:
            end_time = timeout + time.monotonic()
        calls = list(zip(*iterables))
        if len(calls) < self._max_workers * 8:
            return super().map(fn, *zip(*calls), timeout=timeout)
        run = _ChunkedMap(fn, calls, self._max_workers)
        del calls
        futures = [self.submit(run.chunk, c) for c in range(run.count)]
        run.set_futures(futures)
        for c, future in enumerate(futures):
            future.add_done_callback(functools.partial(run.chunk_done, c))
        return run.results(None if timeout is None else end_time - time.monotonic())

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._shutdown_lock:
            self._core.shutdown(cancel_futures)
        if wait:
            for thread in self._threads:
                thread.join()

    shutdown.__doc__ = _std.Executor.shutdown.__doc__
