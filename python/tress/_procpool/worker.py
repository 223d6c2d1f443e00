"""A process pool's worker process: its initializer, then tasks until told
to stop (the messages are :mod:`tress._procpool.wire`'s)."""

import os
import pickle
import signal
from queue import Empty

from concurrent.futures import _base
from concurrent.futures import process as _std
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import pool as _mp_pool

from tress._procpool import wire

__all__ = ["run"]

PARENT_CHECK = 1.0
"""Seconds between a waiting worker's looks at its parent."""
POLL_US = 200
"""Microseconds a worker waiting for a task polls the ring before it
sleeps (adaptive: less where it does not pay). A caller's loop of submit ->
result turns around within it, so neither side sleeps and is woken."""


def _encode_error(error):
    """The pickled exception; one that cannot be pickled becomes a
    ``PicklingError`` naming why (the task still fails, with its text)."""
    try:
        return pickle.dumps(error, 5)
    except Exception as exc:
        text = f"the task's exception could not be sent back: {exc!r}"
        return pickle.dumps(pickle.PicklingError(text), 5)


def _encode_result(result, pool_api, wrap):
    """``(kind, body)`` of a task's return value. A value that cannot be
    pickled becomes the task's error: the pickling error for the executor
    (as the stdlib's; a ``SystemExit`` raised by the pickling too),
    ``MaybeEncodingError`` for the ``Pool`` (as multiprocessing's)."""
    try:
        return wire.RESULT, pickle.dumps(result, 5)
    except BaseException as exc:
        if pool_api and not isinstance(exc, Exception):
            raise
        if pool_api:
            error = _mp_pool.MaybeEncodingError(exc, result)
        else:
            error = wrap(exc, exc.__traceback__)
    return wire.ERROR, _encode_error(error)


def _alive(pid):
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")


def _end_forked_copy(code):
    """The caller is a copy of this worker made by ``os.fork()`` in a task
    (or the initializer) that returned or raised in the child. It is no
    worker: it must not send the task's outcome (the worker does), clear
    the worker's row of the task table, or take tasks (it would eat a stop
    message meant for a worker, and the pool's shutdown would wait for that
    worker forever). It exits at once, as a process that ends its program:
    its own output flushed, no exit hook of the worker's run."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - closed or gone: nothing to flush
            pass
    os._exit(code)


def _exit_code(exc):
    """The exit status of an interpreter ending on ``exc`` (None: a return)."""
    if exc is None:
        return 0
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
    return 1


def run(tasks, results, table, index, parent, initializer, initargs, max_tasks, pool_api):
    """The worker's life. ``tasks``/``results``: the pool's rings;
    ``table``: the pool's task table, whose row ``index`` says which task
    this worker runs (recorded as the task message leaves the ring, see
    ``ShmQueue.get_task``); ``parent``: the pool's process (a worker whose
    parent is gone exits, as multiprocessing's do when their pipe closes);
    ``pool_api``: errors as ``multiprocessing.Pool`` sends them (else as
    ``ProcessPoolExecutor``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides (Ctrl-C)
    tasks.set_poll_limit(POLL_US)
    pid = os.getpid()
    wrap = _mp_pool.ExceptionWithTraceback if pool_api else _std._ExceptionWithTraceback
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:
            if os.getpid() != pid:
                _end_forked_copy(_exit_code(exc))
            _base.LOGGER.critical("Exception in initializer:", exc_info=True)
            results.put(wire.reply(wire.BROKEN, index, pid))
            return
        if os.getpid() != pid:
            _end_forked_copy(0)
    done = 0
    while True:
        try:
            message = tasks.get_task(table, index, True, PARENT_CHECK)
        except Empty:
            if not _alive(parent):
                return  # orphaned: nobody will read what it does
            continue
        if not message:
            return  # wire.STOP
        task, call = wire.read_task(message)
        try:
            try:
                fn, args, kwargs = pickle.loads(call)
            except BaseException as exc:
                if pool_api:
                    raise
                # the stdlib's call queue fails the task this way
                error = BrokenProcessPool(
                    f"the call of task {task} could not be unpickled in the worker: {exc!r}")
                raise error from exc
            finally:
                del call, message
            try:
                result = fn(*args, **kwargs)
            finally:
                del fn, args, kwargs  # freed now, not when the next task comes
        except BaseException as exc:
            if os.getpid() != pid:  # a task's fork, raising in the child
                _end_forked_copy(_exit_code(exc))
            kind, body = wire.ERROR, _encode_error(wrap(exc, exc.__traceback__))
            del exc
        else:
            if os.getpid() != pid:  # a task's fork, returning in the child
                _end_forked_copy(0)
            kind, body = _encode_result(result, pool_api, wrap)
            del result
        # the result first: a worker that dies between the two leaves its task
        # in the table, and the parent, which drains the results before it
        # fails a dead worker's task, finds the task settled
        try:
            results.put(wire.reply(kind, task, pid, body))
        except Exception as exc:  # no memory for it: the task fails, with why
            del body
            error = RuntimeError(f"the outcome of task {task} could not be sent back: {exc!r}")
            results.put(wire.reply(wire.ERROR, task, pid, _encode_error(error)))
        table.end(index)
        del body
        done += 1
        if max_tasks is not None and done >= max_tasks:
            results.put(wire.reply(wire.RETIRED, index, pid))
            return
