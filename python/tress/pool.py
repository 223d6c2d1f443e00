"""Drop-in replacement for ``multiprocessing.pool.ThreadPool``.

    from tress.pool import ThreadPool
    with ThreadPool(8) as pool:
        print(pool.map(str.upper, ["a", "b"]))

``apply``, ``apply_async`` (with ``callback`` / ``error_callback``), ``map``,
``map_async``, ``imap``, ``imap_unordered``, ``starmap``, ``starmap_async``
(with ``chunksize``), ``close``, ``terminate``, ``join`` and the context
manager (which terminates on exit) behave as CPython 3.11's, with the same
exceptions (``ValueError: Pool not running`` after ``close``,
``multiprocessing.TimeoutError`` from ``get(timeout)``). Results are
``AsyncResult``-like objects with ``get``, ``wait``, ``ready`` and
``successful``.

This first version keeps the stdlib's structure minus its task- and
result-handler threads: workers take jobs from a tress ``SimpleQueue`` and
deliver results straight to their result objects (tress ``Event``s), so a
callback runs on the worker that finished the job rather than on a single
handler thread.
"""

import collections
import os
import threading
import types
import weakref
from itertools import islice
from itertools import starmap as _starmap
from multiprocessing import TimeoutError

from tress._tress import Condition as _Condition
from tress._tress import Event as _Event
from tress._tress import Lock as _Lock
from tress._tress import SimpleQueue as _SimpleQueue

__all__ = ["ThreadPool", "AsyncResult", "ApplyResult", "MapResult", "IMapIterator"]

RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"


def _work(jobs, box, initializer, initargs):
    """A worker thread: run jobs until a stop (``None``) or termination."""
    if initializer is not None:
        initializer(*initargs)
    while True:
        job = jobs.get()
        if job is None or box[0] == TERMINATE:
            jobs.put(None)  # pass the stop on
            return
        deliver, func, args = job
        del job
        try:
            value = (True, func(*args))
        except Exception as exc:
            value = (False, exc)
        deliver(*value)
        del deliver, func, args, value


def _stop_workers(jobs, box):
    box[0] = TERMINATE
    jobs.put(None)


def _reraise(exc):
    raise exc


def _call_chunk(func, chunk, star):
    if star:
        return list(_starmap(func, chunk))
    return list(map(func, chunk))


def _chunks(iterable, size):
    it = iter(iterable)
    while chunk := tuple(islice(it, size)):
        yield chunk


class ApplyResult:
    """The result of ``apply_async``: ``get``, ``wait``, ``ready``, ``successful``."""

    def __init__(self, pool, callback=None, error_callback=None):
        self._pool = pool
        self._event = _Event()
        self._callback = callback
        self._error_callback = error_callback
        self._success = None
        self._value = None

    def ready(self):
        return self._event.is_set()

    def successful(self):
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._success

    def wait(self, timeout=None):
        self._event.wait(timeout)

    def get(self, timeout=None):
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError
        if self._success:
            return self._value
        raise self._value

    def _set(self, success, value):
        self._success, self._value = success, value
        try:
            callback = self._callback if success else self._error_callback
            if callback:
                # One callback at a time per pool, as the stdlib's single
                # result-handler thread runs them.
                with self._pool._callback_lock:
                    callback(value)
        finally:
            self._event.set()
            self._pool = None

    __class_getitem__ = classmethod(types.GenericAlias)


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The result of ``map_async``/``starmap_async``: the list of results
    once every chunk is done, or the first failed chunk's exception (also
    only once every chunk is done, as the stdlib's)."""

    def __init__(self, pool, chunksize, length, callback, error_callback):
        super().__init__(pool, callback, error_callback)
        self._success = True
        self._value = [None] * length
        self._chunksize = chunksize
        self._pending = -(-length // chunksize) if chunksize > 0 else 0
        self._lock = _Lock()
        if self._pending == 0:
            self._event.set()  # an empty map: ready, no callback
            self._pool = None

    def _set_chunk(self, index, success, value):
        with self._lock:
            self._pending -= 1
            if success and self._success:
                start = index * self._chunksize
                self._value[start : start + len(value)] = value
            elif not success and self._success:
                self._success = False
                self._value = value  # only the first exception is kept
            if self._pending:
                return
        ApplyResult._set(self, self._success, self._value)


class IMapIterator:
    """The iterator of ``imap``: results in order, each ``next(timeout)``
    waiting at most ``timeout`` seconds (``multiprocessing.TimeoutError``)."""

    def __init__(self, pool):
        self._pool = pool
        self._cond = _Condition(_Lock())
        self._items = collections.deque()
        self._unsorted = {}
        self._index = 0  # next result index to publish
        self._length = None  # known once every job is submitted

    def __iter__(self):
        return self

    def next(self, timeout=None):
        with self._cond:
            if not self._items and self._index != self._length:
                self._cond.wait_for(lambda: self._items or self._index == self._length, timeout)
            if not self._items:
                if self._index == self._length:
                    self._pool = None
                    raise StopIteration from None
                raise TimeoutError from None
            success, value = self._items.popleft()
        if success:
            return value
        raise value

    __next__ = next

    def _set(self, i, obj):
        with self._cond:
            if self._index == i:
                self._items.append(obj)
                self._index += 1
                while self._index in self._unsorted:
                    self._items.append(self._unsorted.pop(self._index))
                    self._index += 1
                self._cond.notify()
            else:
                self._unsorted[i] = obj
            if self._index == self._length:
                self._cond.notify()

    def _set_length(self, length):
        with self._cond:
            self._length = length
            if self._index == self._length:
                self._cond.notify()


class IMapUnorderedIterator(IMapIterator):
    """The iterator of ``imap_unordered``: results as they come."""

    def _set(self, i, obj):
        with self._cond:
            self._items.append(obj)
            self._index += 1
            self._cond.notify()


class ThreadPool:
    """A pool of worker threads (``processes`` of them, default
    ``os.cpu_count()``) with the API of ``multiprocessing.pool.ThreadPool``."""

    def __init__(self, processes=None, initializer=None, initargs=()):
        if processes is None:
            processes = os.cpu_count() or 1
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._processes = processes
        self._jobs = _SimpleQueue()
        # Shared with the workers, which must not keep the pool alive: a
        # pool nobody refers to any more is terminated (as the stdlib's).
        self._box = [RUN]
        # imap feeders still putting jobs: the stop sentinel of `close` must
        # come after their last job, so the last feeder to finish puts it.
        self._feeding = 0
        self._feed_lock = _Lock()
        self._callback_lock = _Lock()
        self._pool = []
        for i in range(processes):
            t = threading.Thread(
                target=_work,
                args=(self._jobs, self._box, initializer, initargs),
                name=f"ThreadPoolWorker-{i + 1}",
                daemon=True,
            )
            t.start()
            self._pool.append(t)
        weakref.finalize(self, _stop_workers, self._jobs, self._box)

    @property
    def _state(self):
        return self._box[0]

    def __repr__(self):
        cls = type(self)
        return f"<{cls.__module__}.{cls.__qualname__} state={self._state} pool_size={len(self._pool)}>"

    def __reduce__(self):
        raise NotImplementedError(
            "pool objects cannot be passed between processes or pickled"
        )

    def _check_running(self):
        if self._state != RUN:
            raise ValueError("Pool not running")

    def apply(self, func, args=(), kwds={}):
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        self._check_running()
        result = ApplyResult(self, callback, error_callback)
        self._jobs.put((result._set, lambda: func(*args, **kwds), ()))
        return result

    def map(self, func, iterable, chunksize=None):
        return self._map_async(func, iterable, False, chunksize).get()

    def starmap(self, func, iterable, chunksize=None):
        return self._map_async(func, iterable, True, chunksize).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_async(func, iterable, False, chunksize, callback, error_callback)

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_async(func, iterable, True, chunksize, callback, error_callback)

    def _map_async(self, func, iterable, star, chunksize=None, callback=None, error_callback=None):
        self._check_running()
        if not hasattr(iterable, "__len__"):
            iterable = list(iterable)
        if chunksize is None:
            chunksize, extra = divmod(len(iterable), len(self._pool) * 4)
            if extra:
                chunksize += 1
        if len(iterable) == 0:
            chunksize = 0
        result = MapResult(self, chunksize, len(iterable), callback, error_callback)
        if chunksize:
            for index, chunk in enumerate(_chunks(iterable, chunksize)):
                deliver = _deliver_chunk(result, index)
                self._jobs.put((deliver, _call_chunk, (func, chunk, star)))
        return result

    def imap(self, func, iterable, chunksize=1):
        return self._imap(IMapIterator, func, iterable, chunksize)

    def imap_unordered(self, func, iterable, chunksize=1):
        return self._imap(IMapUnorderedIterator, func, iterable, chunksize)

    def _imap(self, kind, func, iterable, chunksize):
        self._check_running()
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        result = kind(self)
        # The input is read by a feeder thread, as by the stdlib's task
        # handler: the call returns at once, results come while the input is
        # still produced, and an error from the input comes out of next().
        with self._feed_lock:
            self._feeding += 1
        feeder = threading.Thread(
            target=_feed,
            args=(self, result, func, iterable, chunksize),
            name="ThreadPoolFeeder",
            daemon=True,
        )
        feeder.start()
        if chunksize == 1:
            return result
        return (item for chunk in result for item in chunk)

    def close(self):
        with self._feed_lock:
            if self._box[0] == RUN:
                self._box[0] = CLOSE
                if not self._feeding:
                    self._jobs.put(None)

    def _feeder_done(self):
        with self._feed_lock:
            self._feeding -= 1
            if not self._feeding and self._box[0] == CLOSE:
                self._jobs.put(None)

    def terminate(self):
        self._box[0] = TERMINATE
        self._jobs.put(None)

    def join(self):
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state not in (CLOSE, TERMINATE):
            raise ValueError("In unknown state")
        for t in self._pool:
            t.join()

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc):
        self.terminate()


def _feed(pool, result, func, iterable, chunksize):
    jobs, box = pool._jobs, pool._box
    count = 0
    try:
        for chunk in _chunks(iterable, chunksize):
            if box[0] == TERMINATE:
                break
            deliver = _deliver_item(result, count)
            if chunksize == 1:
                jobs.put((deliver, func, chunk))
            else:
                jobs.put((deliver, _call_chunk, (func, chunk, False)))
            count += 1
    except Exception as exc:
        jobs.put((_deliver_item(result, count), _reraise, (exc,)))
        count += 1
    finally:
        result._set_length(count)
        pool._feeder_done()
        del pool


def _deliver_chunk(result, index):
    return lambda success, value: result._set_chunk(index, success, value)


def _deliver_item(result, index):
    return lambda success, value: result._set(index, (success, value))
