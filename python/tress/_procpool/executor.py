"""``tress.futures.ProcessPoolExecutor``: ``concurrent.futures``' API on the
engine (:mod:`tress._procpool.engine`)."""

import functools
import multiprocessing as mp
import os
import threading
import time
import weakref
from concurrent.futures import _base
from concurrent.futures import process as _std
from concurrent.futures.process import BrokenProcessPool

from tress import _progress
from tress._compat import check_chunksize, cpu_count
from tress._future import ProcessFuture
from tress._procpool import calls
from tress._procpool.engine import Engine, Job, Policy

__all__ = ["ProcessPoolExecutor"]


def _policy(workers, start_method):
    # as the stdlib's: max_workers + 1 calls in the call queue (the rest can
    # still be cancelled); spawn and forkserver workers start on demand
    return Policy(pool_api=False, window=workers + 1, on_demand=start_method != "fork")


def ordered_results(fs, timeout, end_time):
    """The results of ``fs`` in order, as ``Executor.map``'s iterator: each
    waited for until ``end_time`` (no limit if ``timeout`` is None); the
    futures not reached are cancelled when the iteration stops early."""
    try:
        fs.reverse()
        while fs:
            if timeout is None:
                yield _base._result_or_cancel(fs.pop())
            else:
                yield _base._result_or_cancel(fs.pop(), end_time - time.monotonic())
    finally:
        for future in fs:
            future.cancel()


def _each(chunks):
    """The items of each chunk, popped: nothing yielded stays referenced."""
    for chunk in chunks:
        chunk.reverse()
        while chunk:
            yield chunk.pop()
        del chunk


def _advance(bar, n, future):
    if not future.cancelled():
        bar.update(n)


class _CallQueue:
    """What the stdlib's ``_call_queue`` offers that code and CPython's
    tests use (the task ring itself has no feeder thread)."""

    def __init__(self, engine):
        self._engine = engine

    def close(self):
        """Nothing to close: the ring goes with the pool."""

    def join_thread(self):
        """Nothing to join (no feeder thread)."""

    def qsize(self):
        tasks = self._engine.tasks
        return 0 if tasks is None else tasks.qsize()

    def empty(self):
        tasks = self._engine.tasks
        return tasks is None or tasks.empty()


class ProcessPoolExecutor(_std.ProcessPoolExecutor):
    """``concurrent.futures.ProcessPoolExecutor`` whose workers may die
    without breaking the pool, with an opt-in ``task_timeout``, automatic
    ``map`` chunking and ``map(..., progress=True)`` (see ``tress.futures``).

    Submitting never waits: calls beyond what the workers can take wait in
    the parent's memory (``max_workers + 1`` of them are handed to the
    workers' queue, as by the stdlib; the others can still be cancelled)."""

    def __init__(self, max_workers=None, mp_context=None, initializer=None, initargs=(), *,
                 max_tasks_per_child=None, task_timeout=None):
        if max_workers is None:
            max_workers = cpu_count() or 1
        elif max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if mp_context is None:
            mp_context = mp.get_context("spawn" if max_tasks_per_child is not None else None)
        # as the stdlib's, before the other checks: a context that is not one
        # fails first (with its AttributeError)
        start_method = mp_context.get_start_method(allow_none=False)
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            elif max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
            if start_method == "fork":
                raise ValueError("max_tasks_per_child is incompatible with the 'fork' "
                                 "multiprocessing start method; supply a different "
                                 "mp_context.")
        if task_timeout is not None and not task_timeout > 0:
            raise ValueError("task_timeout must be a positive number of seconds")
        self._max_workers = max_workers
        self._mp_context = mp_context
        self._max_tasks_per_child = max_tasks_per_child
        policy = _policy(max_workers, mp_context.get_start_method())
        self._pool = Engine(mp_context, max_workers, initializer, initargs,
                            max_tasks_per_child, task_timeout, policy)
        self._shutdown_thread = False
        self._shutdown_lock = threading.Lock()
        self._started = False
        weakref.finalize(self, Engine.stop, self._pool)

    @property
    def _broken(self):
        return self._pool.broken

    @property
    def _processes(self):
        """The live workers by pid (the stdlib's private attribute, which
        code and CPython's tests read)."""
        return {p.pid: p for p in self._pool.procs if p is not None}

    @property
    def _executor_manager_thread(self):
        return self._pool.manager

    @property
    def _call_queue(self):
        """The stdlib's private call queue, as far as code reads it: closed
        when the pool has ended; no feeder thread to join."""
        return _CallQueue(self._pool)

    def submit(self, fn, /, *args, **kwargs):
        return self._submit(fn, args, kwargs)

    submit.__doc__ = _base.Executor.submit.__doc__

    def _submit(self, fn, args, kwargs, user_fn=None):
        pool = self._pool
        with self._shutdown_lock:
            if pool.broken:
                raise BrokenProcessPool(pool.broken)
            if self._shutdown_thread:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if _std._global_shutdown:
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
            if not self._started:
                pool.start()
                self._started = True
            if pool.policy.on_demand:
                pool.adjust()  # as the stdlib's, whether the call pickles or not
            future = ProcessFuture()
            future._tress_pool = pool
            job = Job(fn, args, kwargs, user_fn, future=future)
            try:
                # pickled here: an unpicklable call fails its future at once
                job.pickle(pool.start_method)
            except Exception as exc:
                future.set_exception(exc)
                return future
            pool.submit(job)
            return future

    def map(self, fn, *iterables, timeout=None, chunksize=None, progress=False):
        """``map(fn, *iterables)`` on the pool, results in order, each waited
        for until ``timeout`` seconds after the call. With ``chunksize=None``
        the calls go in about four chunks per worker (as
        ``multiprocessing.Pool.map``); an explicit ``chunksize`` wins.
        ``progress=True``: a progress bar (tqdm's, or a one-line counter on
        stderr) advanced as chunks complete."""
        if timeout is not None:
            end_time = timeout + time.monotonic()
        else:
            end_time = None
        if chunksize is not None:
            if chunksize < 1:
                raise ValueError("chunksize must be >= 1.")
            check_chunksize(chunksize)  # the running stdlib's error for a non-integer
        if len(iterables) == 1:
            items, run = list(iterables[0]), calls.map_chunk
        else:
            items, run = list(zip(*iterables)), calls.starmap_chunk
        if chunksize is None:
            chunksize = calls.auto_chunksize(len(items), self._max_workers)
        bar = _progress.make(len(items)) if progress else None
        fs = []
        try:
            for i in range(0, len(items), chunksize):
                chunk = items[i:i + chunksize]
                future = self._submit(run, (fn, chunk), {}, fn)
                if bar is not None:
                    future.add_done_callback(functools.partial(_advance, bar, len(chunk)))
                fs.append(future)
        except BaseException:
            for future in fs:
                future.cancel()
            if bar is not None:
                bar.close()
            raise
        del items
        results = _each(ordered_results(fs, timeout, end_time))
        if bar is None:
            return results
        return _progress.closing(results, bar)

    def shutdown(self, wait=True, *, cancel_futures=False):
        pool = self._pool
        if os.getpid() != pool.pid:
            # A forked child's copy: the workers and queues are the parent's.
            self._shutdown_thread = True
            return
        with self._shutdown_lock:
            self._shutdown_thread = True
            if cancel_futures:
                pool.cancel_backlog()
            if self._started:
                pool.stop()
            else:
                pool.release()  # no worker, no manager: nothing to wait for
        if wait and pool.manager is not None:
            pool.manager.join()
            for p in pool.procs:
                if p is not None:
                    p.join()

    shutdown.__doc__ = _base.Executor.shutdown.__doc__

    def __exit__(self, exc_type, exc_val, exc_tb):
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            # Ctrl-C: nobody waits for the queued tasks.
            with self._shutdown_lock:
                self._shutdown_thread = True
                if self._started:
                    self._pool.terminate()
            self.shutdown(wait=True)
            return False
        return super().__exit__(exc_type, exc_val, exc_tb)
