"""Drop-in replacements for ``multiprocessing.Pool`` and
``multiprocessing.pool.ThreadPool``.

    from tress.pool import Pool, ThreadPool
    with Pool(4) as pool:
        print(pool.map(abs, range(-5, 0)))
    with ThreadPool(8) as pool:
        print(pool.map(str.upper, ["a", "b"]))

``apply``, ``apply_async`` (with ``callback`` / ``error_callback``), ``map``,
``map_async``, ``imap``, ``imap_unordered``, ``starmap``, ``starmap_async``
(with ``chunksize``), ``close``, ``terminate``, ``join`` and the context
manager (which terminates on exit) behave as CPython 3.11's, with the same
exceptions (``ValueError: Pool not running`` after ``close``,
``multiprocessing.TimeoutError`` from ``get(timeout)``). Results are
``AsyncResult``-like objects with ``get``, ``wait``, ``ready`` and
``successful``. ``map``, ``starmap``, ``imap`` and ``imap_unordered`` also
take ``progress=True``: a progress bar through tqdm when it is installed, a
one-line counter on stderr otherwise. ``Pool.imap``/``imap_unordered``
without a ``chunksize`` send the items in chunks tuned to the input's length
and the worker count (about four per worker, when the input has a length;
the stdlib sends one item per task), each item still yielding its value or
raising its own exception; a worker that dies fails the items of its chunk
(``chunksize=1`` isolates every item).

Both keep the stdlib's structure minus its task- and result-handler
threads. ``ThreadPool`` runs on the native core of
``tress.futures.ThreadPoolExecutor`` (its queue and worker loop), its workers
delivering results straight to their result objects (tress ``Event``s), so
a callback runs on the worker that finished the job. ``Pool`` runs its jobs on
the engine of ``tress.futures.ProcessPoolExecutor`` (shared-memory queues, a
manager thread that runs the callbacks one at a time, a dead worker failing
its task alone: see :class:`Pool`).
"""

import collections
import multiprocessing
import threading
import types
import warnings
import weakref
from itertools import islice
from multiprocessing import TimeoutError

from tress import _progress
from tress._compat import cpu_count
from tress._future import Future as _Future
from tress._procpool import engine as _engine
from tress._procpool.calls import auto_chunksize, each_outcome, map_chunk, starmap_chunk
from tress._tress import Condition as _Condition
from tress._tress import Event as _Event
from tress._tress import Lock as _Lock
from tress._tress import SimpleQueue as _SimpleQueue
from tress._tress import ThreadPoolCore as _ThreadPoolCore

__all__ = ["Pool", "ThreadPool", "AsyncResult", "ApplyResult", "MapResult", "IMapIterator",
           "IMapUnorderedIterator"]

INIT, RUN, CLOSE, TERMINATE = "INIT", "RUN", "CLOSE", "TERMINATE"


def _work(core, initializer, initargs):
    """A worker thread: the initializer, then the native worker loop
    (``ThreadPoolCore.work``) until a stop."""
    if initializer is not None:
        initializer(*initargs)
    core.work()


_END = object()  # the end of a ThreadPool's sources: its workers stop after them


def _feed_sources(sources, core, box, busy):
    """A ``ThreadPool``'s task-handler thread (the stdlib's structure): puts
    the jobs of each source (an iterator of ``_put_job``'s arguments, and
    its ``abandon``) on the workers' queue, and stops putting once the pool
    is terminated; at the end, the workers' stop, after every job given
    before. ``busy[0]``: sources given and not yet put (under ``busy[1]``)."""
    while True:
        source = sources.get()
        if source is _END:
            if box[0] != TERMINATE:
                core.stop_workers()
            return
        jobs, abandon = source
        try:
            for job in jobs:
                if box[0] == TERMINATE:
                    break
                _put_delivery(core, *job[:4])
                del job  # the job's arguments are the worker's now
        except Exception as exc:  # the input failed: so does its result
            abandon(exc)
        finally:
            with busy[1]:
                busy[0] -= 1
        del jobs, abandon, source


def _put_delivery(core, deliver, func, args, kwds):
    if type(args) is tuple and (not kwds or type(kwds) is dict):
        core.put(deliver, func, args, kwds or None)
    else:  # bad arguments fail in the worker, as the stdlib's (by get())
        core.put(deliver, _call, (func, args, kwds))


def _ignore(error):
    pass


def _stop_thread_pool(core, sources):
    core.shutdown(True)
    sources.put(_END)


def _call(func, args, kwds):
    return func(*args, **kwds)


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
        self._bar = None  # map(progress=True)'s display
        self._pending = -(-length // chunksize) if chunksize > 0 else 0
        self._lock = _Lock()
        self._abandoned = False
        if self._pending == 0:
            self._event.set()  # an empty map: ready, no callback
            self._pool = None

    def _set_chunk(self, index, success, value):
        with self._lock:
            if self._abandoned:
                return
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

    def _abandon(self, error):
        """Chunks of it will never run (the pool was terminated or broke):
        it fails now with ``error``, whatever its other chunks do."""
        with self._lock:
            if self._abandoned or not self._pending:
                return
            self._abandoned = True
        ApplyResult._set(self, False, error)


class IMapIterator:
    """The iterator of ``imap``: results in order, each ``next(timeout)``
    waiting at most ``timeout`` seconds (``multiprocessing.TimeoutError``)."""

    def __init__(self, pool):
        self._pool = pool
        self._cond = _Condition(_Lock())
        self._items = collections.deque()
        self._unsorted = {}
        self._index = 0  # next result index to publish
        self._bar = None  # progress=True: closes the display
        self._length = None  # known once every job is submitted

    def __iter__(self):
        return self

    def _show(self, bar):
        """``progress=True``: ``bar`` counts the results as they come and is
        closed at the end of the iteration (or when it is dropped)."""
        self._bar = weakref.finalize(self, bar.close)

    def next(self, timeout=None):
        with self._cond:
            if not self._items and self._index != self._length:
                self._cond.wait_for(lambda: self._items or self._index == self._length, timeout)
            if not self._items:
                if self._index == self._length:
                    self._pool = None
                    if self._bar is not None:
                        self._bar()
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


class _Flattened:
    """``imap``'s iterator when the results come in chunks: their items in
    turn, ``next(timeout)`` as :class:`IMapIterator`'s. Chunks asked for
    (``chunksize`` > 1): a failed chunk's exception ends the iteration, as
    the stdlib's generator does. Chunks chosen by the pool (``each``): the
    chunks hold each item's outcome, and an item's exception is raised in
    its turn, the iteration going on as with one item per task."""

    def __init__(self, chunks, each=False):
        self._chunks = chunks
        self._each = each
        self._items = collections.deque()
        self._over = False

    def __iter__(self):
        return self

    def next(self, timeout=None):
        while not self._items:
            if self._over:
                raise StopIteration
            try:
                chunk = self._chunks.next(timeout)
            except TimeoutError:
                raise
            except BaseException:
                self._over = not self._each
                raise
            self._items.extend(chunk)
        item = self._items.popleft()
        if not self._each:
            return item
        ok, value = item
        if ok:
            return value
        raise value

    __next__ = next


class IMapUnorderedIterator(IMapIterator):
    """The iterator of ``imap_unordered``: results as they come."""

    def _set(self, i, obj):
        with self._cond:
            self._items.append(obj)
            self._index += 1
            self._cond.notify()


class _PoolBase:
    """What ``ThreadPool`` and ``Pool`` share: the API, the state, the
    chunking and the feeding of ``imap``. A subclass runs jobs:
    ``_put_job(deliver, func, args, kwds, what)`` has ``func(*args,
    **kwds)`` run and its outcome given to ``deliver(success, value)``;
    ``_end_jobs()`` lets the workers exit once the jobs put so far are done;
    ``_size`` is the worker count."""

    def __repr__(self):
        cls = type(self)
        return f"<{cls.__module__}.{cls.__qualname__} state={self._state} pool_size={self._size}>"

    def __del__(self, _warn=warnings.warn):
        # as the stdlib's: a pool dropped while running warns (each pool's
        # finalizer stops its workers)
        if getattr(self, "_box", [None])[0] == RUN:
            _warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning, source=self)

    def __reduce__(self):
        raise NotImplementedError(
            "pool objects cannot be passed between processes or pickled"
        )

    @property
    def _state(self):
        return self._box[0]

    @_state.setter
    def _state(self, state):
        # the stdlib's _state is a plain attribute, which CPython's
        # test_resource_warning sets back to RUN after join() to check the
        # warning of __del__
        self._box[0] = state

    def _check_running(self):
        if self._state != RUN:
            raise ValueError("Pool not running")

    def apply(self, func, args=(), kwds={}):
        """``func(*args, **kwds)`` in a worker; its result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        """``func(*args, **kwds)`` in a worker; an :class:`ApplyResult`."""
        self._check_running()
        result = ApplyResult(self, callback, error_callback)
        self._put_job(result._set, func, args, kwds, func)
        return result

    def map(self, func, iterable, chunksize=None, progress=False):
        """``list(map(func, iterable))`` in chunks on the workers
        (``chunksize=None``: about four chunks per worker). ``progress=True``:
        a progress bar (tqdm's, or a one-line counter on stderr)."""
        return self._wait_map(self._map_async(func, iterable, False, chunksize, progress=progress))

    def starmap(self, func, iterable, chunksize=None, progress=False):
        """``map`` with each item unpacked as the arguments of ``func``."""
        return self._wait_map(self._map_async(func, iterable, True, chunksize, progress=progress))

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        """``map`` without waiting: a :class:`MapResult`."""
        return self._map_async(func, iterable, False, chunksize, callback, error_callback)

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        """``starmap`` without waiting: a :class:`MapResult`."""
        return self._map_async(func, iterable, True, chunksize, callback, error_callback)

    def _put_jobs(self, jobs, abandon):
        """Puts each job of ``jobs`` (``_put_job``'s arguments);
        ``abandon(error)`` fails those that will never run at once."""
        for job in jobs:
            self._put_job(*job)

    @staticmethod
    def _wait_map(result):
        try:
            return result.get()
        finally:
            if result._bar is not None:
                result._bar.close()

    def _map_async(self, func, iterable, star, chunksize=None, callback=None,
                   error_callback=None, progress=False):
        self._check_running()
        if not hasattr(iterable, "__len__"):
            iterable = list(iterable)
        if chunksize is None:
            chunksize = auto_chunksize(len(iterable), self._size)
        if len(iterable) == 0:
            chunksize = 0
        result = MapResult(self, chunksize, len(iterable), callback, error_callback)
        result._bar = _progress.make(len(iterable)) if progress else None
        if chunksize:
            run = starmap_chunk if star else map_chunk
            self._put_jobs(
                ((_deliver_chunk(result, index, result._bar, len(chunk)), run, (func, chunk), {},
                  func) for index, chunk in enumerate(_chunks(iterable, chunksize))),
                result._abandon)
        return result

    def imap(self, func, iterable, chunksize=None, progress=False):
        """The results of ``func`` over ``iterable``, in order, as they come
        (the input read by a feeder thread, in chunks of ``chunksize``;
        None: see ``_imap_chunksize``)."""
        return self._imap(IMapIterator, func, iterable, chunksize, progress)

    def imap_unordered(self, func, iterable, chunksize=None, progress=False):
        """``imap`` in the order the results come."""
        return self._imap(IMapUnorderedIterator, func, iterable, chunksize, progress)

    def _imap_chunksize(self, iterable):
        """``imap``'s chunk size when none is given: 1, the stdlib's."""
        return 1

    def _imap(self, kind, func, iterable, chunksize, progress=False):
        self._check_running()
        # Chunks the caller did not ask for must not change what it sees:
        # each item yields its value or raises its own exception.
        each = chunksize is None
        if each:
            chunksize = self._imap_chunksize(iterable)
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        result = kind(self)
        bar = _progress.make(_progress.length(iterable)) if progress else None
        # The input is read by a feeder thread, as by the stdlib's task
        # handler: the call returns at once, results come while the input is
        # still produced, and an error from the input comes out of next().
        with self._feed_lock:
            self._feeding += 1
        feeder = threading.Thread(
            target=_feed,
            args=(self, result, func, iterable, chunksize, bar, each),
            name=f"{type(self).__name__}Feeder",
            daemon=True,
        )
        feeder.start()
        if bar is not None:
            result._show(bar)
        if chunksize == 1:
            return result
        return _Flattened(result, each)

    def close(self):
        """No more work: the workers exit once the work given is done."""
        # decided under the lock (exactly one of close and the last feeder
        # ends the jobs), done outside it: ending may wait for room
        with self._feed_lock:
            end = self._box[0] == RUN and not self._feeding
            if self._box[0] == RUN:
                self._box[0] = CLOSE
        if end:
            self._end_jobs()

    def _feeder_done(self):
        with self._feed_lock:
            self._feeding -= 1
            end = not self._feeding and self._box[0] == CLOSE
        if end:
            self._end_jobs()

    def _check_joinable(self):
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state not in (CLOSE, TERMINATE):
            raise ValueError("In unknown state")

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc):
        self.terminate()


class ThreadPool(_PoolBase):
    """A pool of worker threads (``processes`` of them, default the CPUs as
    the running version's stdlib counts them: ``os.process_cpu_count()``
    from 3.13 on, ``os.cpu_count()`` before) with the API of
    ``multiprocessing.pool.ThreadPool``.

    It runs on the native core of ``tress.futures.ThreadPoolExecutor``
    (``ThreadPoolCore``: its queue and worker loop, a worker keeping the
    GIL from one job to the next while there is work), without futures:
    a worker delivers each outcome straight to its result object, so a
    callback runs on the worker that finished the job. A job that raises
    any exception (``SystemExit`` too) delivers it as its outcome."""

    def __init__(self, processes=None, initializer=None, initargs=()):
        if processes is None:
            processes = cpu_count() or 1
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._processes = processes
        self._core = _ThreadPoolCore(_Future, None, processes)
        self._box = [RUN]
        # imap feeders still putting jobs: the stop of `close` must come
        # after their last job, so the last feeder to finish puts it.
        self._feeding = 0
        self._feed_lock = _Lock()
        self._callback_lock = _Lock()
        self._pool = []
        for i in range(processes):
            t = threading.Thread(
                target=_work,
                args=(self._core, initializer, initargs),
                name=f"ThreadPoolWorker-{i + 1}",
                daemon=True,
            )
            t.start()
            self._pool.append(t)
        # map_async's chunks are put by a task-handler thread, as the
        # stdlib's are: the call returns at once and terminate() stops the
        # putting (close's stop goes the same way, after them)
        self._sources = _SimpleQueue()
        self._busy = [0, _Lock()]  # sources the handler has not put yet, its lock
        self._handler = threading.Thread(
            target=_feed_sources, args=(self._sources, self._core, self._box, self._busy),
            name="ThreadPoolTaskHandler", daemon=True)
        self._handler.start()
        # a pool nobody refers to any more is terminated (as the stdlib's)
        weakref.finalize(self, _stop_thread_pool, self._core, self._sources)

    @property
    def _size(self):
        return len(self._pool)

    def _put_job(self, deliver, func, args, kwds, what=None):
        if self._busy[0]:  # after the handler's: in submission order
            self._put_jobs(iter([(deliver, func, args, kwds, what)]), _ignore)
        else:
            _put_delivery(self._core, deliver, func, args, kwds)

    def _put_jobs(self, jobs, abandon):
        """``map_async``'s chunks, put by the task-handler thread."""
        with self._busy[1]:
            self._busy[0] += 1
        self._sources.put((jobs, abandon))

    def _end_jobs(self):
        self._sources.put(_END)

    def terminate(self):
        """Stop now: the queued work is dropped, the workers exit after the
        jobs they run."""
        self._box[0] = TERMINATE
        _stop_thread_pool(self._core, self._sources)

    def join(self):
        """Wait for the workers to exit (after ``close`` or ``terminate``)."""
        self._check_joinable()
        self._handler.join()
        for t in self._pool:
            t.join()


class Pool(_PoolBase):
    """A pool of worker processes with the API of ``multiprocessing.Pool``
    (``processes`` of them, default the CPUs as for :class:`ThreadPool`; ``context``: a
    multiprocessing context, default the default start method's).

    Tasks and results go through tress's shared-memory queues (the engine of
    ``tress.futures.ProcessPoolExecutor``). Beyond multiprocessing's: a
    worker that dies mid-task fails that task alone with
    ``tress.futures.WorkerDied`` and is replaced (multiprocessing's pool
    waits for it forever); an initializer that fails makes every pending
    and later task fail with ``BrokenProcessPool`` (multiprocessing's keeps
    starting workers that fail); ``task_timeout`` (seconds) fails a longer
    task with ``TimeoutError`` and replaces its worker; ``map``, ``imap``
    and ``imap_unordered`` take ``progress=True``; ``terminate`` fails the
    outstanding results (multiprocessing's leave them waiting forever).
    Callbacks run one at a time on the pool's manager thread, as on
    multiprocessing's result-handler thread."""

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None,
                 context=None, *, task_timeout=None):
        self._box = [INIT]
        ctx = context or multiprocessing.get_context()
        # The stdlib's first use of the context (its queues) comes before the
        # checks of the other arguments: a context that is not one fails
        # first, with its AttributeError.
        ctx.SimpleQueue  # noqa: B018
        if processes is None:
            processes = cpu_count() or 1
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None:
            if not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0:
                raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if task_timeout is not None and not task_timeout > 0:
            raise ValueError("task_timeout must be a positive number of seconds")
        self._ctx = ctx
        self._processes = processes
        self._maxtasksperchild = maxtasksperchild
        self._initializer = initializer
        self._initargs = initargs
        self._feeding = 0
        self._feed_lock = _Lock()
        self._callback_lock = _Lock()
        # results as multiprocessing's; tasks fed as long as the ring has
        # room (there is nothing to cancel); workers all started at once
        policy = _engine.Policy(pool_api=True, window=None, on_demand=False)
        self._engine = _engine.Engine(ctx, processes, initializer, initargs, maxtasksperchild,
                                      task_timeout, policy)
        self._engine.start()
        self._box[0] = RUN
        weakref.finalize(self, self._engine.terminate)

    @property
    def _size(self):
        return self._processes

    def _repopulate_pool(self):
        """Starts a worker in the place of each one gone (the stdlib's
        private method; the pool also replaces them by itself)."""
        self._engine.repopulate()

    @property
    def _pool(self):
        """The live worker processes."""
        return [p for p in self._engine.procs if p is not None]

    def _imap_chunksize(self, iterable):
        """Tuned, when the input has a length: about four chunks per worker,
        as ``map``'s (the stdlib's ``imap`` sends one item per task)."""
        n = _progress.length(iterable)
        if not n:
            return 1
        return auto_chunksize(n, self._size)

    def _put_job(self, deliver, func, args, kwds, what=None):
        self._engine.submit(_engine.Job(func, args, kwds, what, deliver=deliver))

    def _put_jobs(self, jobs, abandon):
        """The jobs of ``jobs`` (``_put_job``'s arguments), made as the
        workers need them: the call returns at once."""
        self._engine.submit_lazy(
            (_engine.Job(func, args, kwds, what, deliver=deliver)
             for deliver, func, args, kwds, what in jobs), abandon)

    def _end_jobs(self):
        self._engine.stop()

    def terminate(self):
        """Stop now: queued tasks are dropped and running ones killed; their
        results fail (``BrokenProcessPool``)."""
        with self._feed_lock:
            if self._box[0] == INIT:
                return
            self._box[0] = TERMINATE
        self._engine.terminate()

    def join(self):
        """Wait for the workers to exit (after ``close`` or ``terminate``)."""
        self._check_joinable()
        engine = self._engine
        if engine.manager is not None:
            engine.manager.join()
        for p in list(engine.procs):
            if p is not None:
                p.join()


def _feed(pool, result, func, iterable, chunksize, bar, each=False):
    box = pool._box
    count = 0
    try:
        for chunk in _chunks(iterable, chunksize):
            if box[0] == TERMINATE:
                break
            deliver = _deliver_item(result, count, bar, len(chunk))
            if chunksize == 1:
                pool._put_job(deliver, func, chunk, {}, func)
            elif each:
                pool._put_job(_each_outcome(deliver, len(chunk)), each_outcome, (func, chunk), {},
                              func)
            else:
                pool._put_job(deliver, map_chunk, (func, chunk), {}, func)
            count += 1
    except Exception as exc:
        # an error of the input: delivered as the next item's outcome
        result._set(count, (False, exc))
        count += 1
    finally:
        result._set_length(count)
        pool._feeder_done()
        del pool


def _each_outcome(deliver, size):
    """A chunk of :func:`_call_each` that failed as a whole (its worker
    died, it could not be sent): the failure is every item's outcome."""

    def each(success, value):
        deliver(True, value if success else [(False, value)] * size)

    return each


def _deliver_chunk(result, index, bar=None, size=0):
    if bar is None:
        return lambda success, value: result._set_chunk(index, success, value)

    def deliver(success, value):
        bar.update(size)
        result._set_chunk(index, success, value)

    return deliver


def _deliver_item(result, index, bar=None, size=0):
    if bar is None:
        return lambda success, value: result._set(index, (success, value))

    def deliver(success, value):
        bar.update(size)
        result._set(index, (success, value))

    return deliver
