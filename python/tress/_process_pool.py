"""The process pools' engine and ``tress.futures.ProcessPoolExecutor``:
worker processes on tress's shared-memory queues that may die without
breaking the pool.

Tasks go to the workers through one ``tress.multiprocessing`` queue (each
message: the task's number, then the pickled call), results come back
through another; a manager thread in the parent reads the results, sets the
futures, and watches the workers. Each worker writes the number of the task
it runs (and when it started it) into a shared array, so when a worker dies
(SIGKILL, a crash, ``os._exit``) the manager fails exactly that task, with
:class:`WorkerDied` (a ``BrokenProcessPool``, so stdlib-style handlers
catch it), and starts a replacement; every other task completes. A task
that is still in the queue when its worker dies is not lost: the queue
delivers a message whose reader died to another reader. The engine
(:class:`_Pool`) serves both ``ProcessPoolExecutor`` (here) and
``tress.pool.Pool``.

Beyond the stdlib, opt in: ``task_timeout`` (seconds) fails a task that runs
longer with ``TimeoutError`` and replaces its worker; ``map(...,
progress=True)`` shows a progress bar (tqdm's when installed, else a
one-line counter). ``map`` chunks by default (``chunksize=None``: about
four chunks per worker, as ``multiprocessing.Pool`` does); an explicit
``chunksize`` wins. Lambdas, closures and functions of an interactive
``__main__`` are sent with cloudpickle when it is installed; without it
their pickling error says so.

What differs from the stdlib's, on purpose: a dead worker fails its task,
not the pool (the stdlib breaks the whole pool and fails every pending
future); futures stay PENDING until their result is in (there is no call
queue of "running" items), so ``cancel()`` succeeds on a task whose worker
may already have started it, and its result is then dropped; leaving a
``with`` block by ``KeyboardInterrupt``, or an interpreter that exits on an
uncaught one, stops the workers at once instead of waiting for the queued
tasks. Workers ignore SIGINT (a Ctrl-C at the terminal reaches the whole
process group; the parent decides what stops).
"""

import functools
import itertools
import mmap
import multiprocessing as mp
import os
import pickle
import signal
import struct
import sys
import threading
import time
import weakref
from concurrent.futures import _base
from concurrent.futures import process as _std
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import context as _context
from multiprocessing import pool as _mp_pool
from multiprocessing import reduction as _reduction
from queue import Empty, Full

from tress import _progress
from tress import multiprocessing as _tmp
from tress._tress import ShmQueue as _ShmQueue

__all__ = ["ProcessPoolExecutor", "WorkerDied"]

TASKS_CAPACITY = 1 << 20
"""Bytes of the shared ring tasks go through. A larger call goes out of
band (see :data:`SPILL_TASK`): the ring's size bounds nothing, and a small
ring is quick to make (its pages are reserved when it is made)."""
RESULTS_CAPACITY = 1 << 20
"""Bytes of the shared ring results come back through. A larger result
comes back in pieces (see :func:`_send`)."""
SPILL_TASK = TASKS_CAPACITY // 8
"""A pickled call larger than this (bytes) is not put in the task ring: the
parent writes it into an anonymous memory file of its own, and the ring
carries the file's number; the worker opens it through
``/proc/<parent>/fd/<n>`` (a parent's file is its children's to read), and
the parent closes it when the task is settled."""
POLL_US = 200
"""Microseconds a worker waiting for a task, and the parent waiting for a
result, poll the ring before they sleep (adaptive: less where it does not
pay). A caller's loop of submit -> result turns around within it, so
neither side sleeps and is woken in a round trip."""
HELP_WAIT = 0.0003
"""Seconds a caller waiting in ``result()`` reads the result ring itself
(see ``_Pool.help``) before it leaves the results to the manager."""
WATCH_INTERVAL = 0.02
"""Seconds between the manager's looks at the workers when no result
comes: how soon a dead worker's task fails."""

_STOP = b""
_ID = 8  # bytes of a task number in a task message
_SPILLED = 1 << 63  # set in a task number: the call is in a memory file
_SPILL_REF = struct.Struct("<iiq")  # parent pid, its descriptor, the call's size

CLOUDPICKLE_HINT = (
    "lambdas, closures and functions defined in an interactive __main__ can be "
    "sent to worker processes when cloudpickle is installed: pip install cloudpickle "
    "(or tress[cloudpickle])"
)


class WorkerDied(BrokenProcessPool):
    """The worker process running this task died (killed, crashed, or
    exited). Only this task failed; the pool started a replacement."""


def _describe_exit(code):
    if code is None:
        return "is gone"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


class _Slots:
    """Per worker: the number of the task it runs (0: none) and when it
    started it. Shared memory of our own (one anonymous memory file, mapped:
    a ``RawArray`` would set up multiprocessing's whole shared heap at the
    pool's start), handed to spawn and forkserver children by descriptor."""

    def __init__(self, n):
        self._n = n
        self._fd = os.memfd_create("tress-pool-slots", os.MFD_CLOEXEC)
        self._closer = weakref.finalize(self, os.close, self._fd)
        os.ftruncate(self._fd, 16 * n)
        self._attach()

    def close(self):
        """Lets go of the descriptor (the mapping stays): no worker will be
        started any more."""
        self._closer()

    def _attach(self):
        self._map = mmap.mmap(self._fd, 16 * self._n)
        view = memoryview(self._map)
        self.running = view[:8 * self._n].cast("q")
        self.started = view[8 * self._n:].cast("d")

    def __getstate__(self):
        _context.assert_spawning(self)
        return (_reduction.DupFd(self._fd), self._n)

    def __setstate__(self, state):
        fd, self._n = state
        self._fd = fd.detach()
        self._attach()
        os.close(self._fd)  # a worker passes it on to nobody


# --------------------------------------------------------------------------
# pickling a call


def _cloudpickle():
    try:
        import cloudpickle
    except ImportError:
        return None
    return cloudpickle


def _main_reimportable():
    """Whether spawn and forkserver children can import ``__main__`` again
    (a script or ``-m`` module can; ``python -c``, a REPL, a notebook cannot)."""
    main = sys.modules.get("__main__")
    return bool(getattr(main, "__file__", None) or getattr(main, "__spec__", None))


def _with_hint(exc):
    """``exc`` with :data:`CLOUDPICKLE_HINT` added to its message (same type
    when it takes a message alone, else ``PicklingError``)."""
    text = f"{exc}; {CLOUDPICKLE_HINT}"
    try:
        hinted = type(exc)(text)
    except Exception:
        hinted = pickle.PicklingError(text)
    hinted.__cause__ = exc
    return hinted


def _needs_cloudpickle(exc):
    text = str(exc)
    return any(s in text for s in ("<lambda>", "<locals>", "local object", "attribute lookup"))


def dumps_call(call, fn, start_method):
    """The pickled ``call`` (``(fn, args, kwargs)``). ``fn`` from a
    ``__main__`` that children cannot import again goes by value
    (cloudpickle) under spawn and forkserver; what plain pickle refuses goes
    through cloudpickle when it is installed; otherwise the pickling error,
    with the fix named when cloudpickle is what would send it."""
    by_value = (start_method != "fork" and getattr(fn, "__module__", None) == "__main__"
                and not _main_reimportable())
    if not by_value:
        try:
            return pickle.dumps(call, 5)
        except Exception as exc:
            error = exc
    else:
        error = pickle.PicklingError(
            f"{fn!r} is defined in __main__, which {start_method} worker processes "
            "cannot import")
    cloudpickle = _cloudpickle()
    if cloudpickle is None:
        if by_value or _needs_cloudpickle(error):
            raise _with_hint(error)
        raise error
    try:
        return cloudpickle.dumps(call, 5)
    except Exception:
        raise error from None


# --------------------------------------------------------------------------
# the worker


def _map_chunk(fn, chunk):
    """One chunk of a ``map`` over one iterable (its items, not 1-tuples)."""
    return list(map(fn, chunk))


def _starmap_chunk(fn, chunk):
    """One chunk of a ``map`` over several iterables (argument tuples)."""
    return list(itertools.starmap(fn, chunk))


def _read_spilled(task, message):
    """The call of a spilled task, from the parent's memory file."""
    pid, fd, size = _SPILL_REF.unpack_from(message, _ID)
    try:
        with open(f"/proc/{pid}/fd/{fd}", "rb") as f, \
                mmap.mmap(f.fileno(), _ID + size, prot=mmap.PROT_READ) as data:
            if int.from_bytes(data[:_ID], "little") != task:
                raise OSError("it holds another task's")
            with memoryview(data) as view:
                return pickle.loads(view[_ID:])
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"the call of task {task} could not be read from the parent's "
                           f"memory file (it was cancelled?): {exc}") from None


def _send(results, task, result, pool_api):
    """Puts a task's result: the message is the task's number then the
    pickled result, raw bytes (every other message is a tuple). The parent
    unpickles it apart, so a result that fails to unpickle fails its task
    only. A result larger than the ring's largest message comes in pieces
    (``("part", task, k, n, data)``, put one after the other by this
    worker; the parent joins them). A result that cannot be pickled becomes
    the task's error: the pickling error for the executor (as the stdlib's,
    a ``SystemExit`` raised by the pickling too), ``MaybeEncodingError``
    for the ``Pool`` (as multiprocessing's)."""
    try:
        blob = pickle.dumps(result, 5)
    except BaseException as exc:
        if pool_api and not isinstance(exc, Exception):
            raise
        if pool_api:
            error = _mp_pool.MaybeEncodingError(exc, result)
        else:
            error = _std._ExceptionWithTraceback(exc, exc.__traceback__)
    else:
        if _ID + len(blob) > results._ring.max_message:
            _send_parts(results, task, blob)
        else:
            results.put(task.to_bytes(_ID, "little") + blob)
        return
    _send_error(results, task, error)


def _send_parts(results, task, data):
    size = results._ring.max_message // 4
    view = memoryview(data)
    n = -(-len(data) // size)
    for k in range(n):
        results.put(("part", task, k, n, bytes(view[k * size:(k + 1) * size])))


def _send_error(results, task, error):
    try:
        results.put(("err", task, error))
    except Exception as exc:  # the exception itself cannot be pickled
        text = f"the task's exception could not be sent back: {exc!r}"
        results.put(("err", task, pickle.PicklingError(text)))


def _worker(tasks, results, slots, index, initializer, initargs, max_tasks, pool_api):
    """A worker process: the initializer, then tasks until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tasks._ring.set_poll_limit(POLL_US)
    running, started = slots.running, slots.started
    wrap = _mp_pool.ExceptionWithTraceback if pool_api else _std._ExceptionWithTraceback
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException:
            _base.LOGGER.critical("Exception in initializer:", exc_info=True)
            results.put(("broken", index, os.getpid()))
            return
    done = 0
    while True:
        message = tasks.get()
        if not message:
            return
        task = int.from_bytes(message[:_ID], "little")
        spilled = task & _SPILLED
        task &= ~_SPILLED
        started[index] = time.monotonic()
        running[index] = task
        try:
            try:
                if spilled:
                    call = _read_spilled(task, message)
                else:
                    call = pickle.loads(memoryview(message)[_ID:])
            except BaseException as exc:
                if pool_api:
                    raise
                # the stdlib's call queue fails the task this way
                error = BrokenProcessPool(
                    f"the call of task {task} could not be unpickled in the worker: {exc!r}")
                raise error from exc
            del message
            fn, args, kwargs = call
            del call
            try:
                result = fn(*args, **kwargs)
            finally:
                del fn, args, kwargs  # freed now, not when the next task comes
        except BaseException as exc:
            _send_error(results, task, wrap(exc, exc.__traceback__))
            del exc
        else:
            _send(results, task, result, pool_api)
            del result
        running[index] = 0
        done += 1
        if max_tasks is not None and done >= max_tasks:
            results.put(("retired", index, os.getpid()))
            return


# --------------------------------------------------------------------------
# the parent's side


class _Pool:
    """The engine: the queues, the workers and the manager thread, shared by
    an executor or a ``Pool`` and its manager (which holds no reference to
    its owner, so an unreferenced owner is collected and stops its pool).

    ``pool_api``: results and errors as ``multiprocessing.Pool``'s, and
    the workers stopped at once (not after the queued tasks) when the
    interpreter exits, as multiprocessing's pools are."""

    def __init__(self, ctx, workers, initializer, initargs, max_tasks, task_timeout,
                 pool_api=False):
        self.ctx = ctx
        self.start_method = ctx.get_start_method()
        self.pid = os.getpid()  # the pool belongs to this process alone
        self.size = workers
        self.initializer = initializer
        self.initargs = initargs
        self.max_tasks = max_tasks
        self.task_timeout = task_timeout
        self.pool_api = pool_api
        self.tasks = _tmp.Queue(capacity=TASKS_CAPACITY)
        self.results = _tmp.Queue(capacity=RESULTS_CAPACITY)
        self.results._ring.set_poll_limit(POLL_US)
        # The manager's own handle on the result ring: it does not poll (a
        # caller's result() does; see `help`), it sleeps until woken.
        self.manager_ring = _ShmQueue.from_fd(os.dup(self.results._ring.fileno()))
        self.manager_ring.set_polling(False)
        self.slots = _Slots(workers)
        self.running = self.slots.running
        self.started = self.slots.started
        self.procs = [None] * workers
        # spawn and forkserver workers start on demand (as the stdlib's
        # executor's: a submit starts one unless one is idle)
        self.dynamic = self.start_method != "fork" and not pool_api
        self.idle = threading.Semaphore(0)
        self.pending = {}  # task number -> (future, what it runs)
        self.spilled = {}  # task number -> the memory file of its call
        self.parts = {}  # task number -> the pieces of its result so far
        self.numbers = itertools.count(1)
        self.lock = threading.Lock()
        self.broken = False
        self.stopping = False
        self.terminated = False
        self.manager = None
        # Tasks submitted by the manager thread itself (a done callback)
        # while the task ring was full: it must not block on a ring that
        # only the results it reads can drain.
        self.overflow = []
        # A thread waiting in a future's result() reads the results itself
        # (see `help`); meanwhile the manager stays off the ring.
        # reentrant: a done callback run by a reading caller may wait on
        # another future of the pool, and must then read in its turn
        self.read_lock = threading.RLock()
        self.deferred = []  # messages a helper leaves to the manager

    # -- workers

    def start_worker(self, index):
        self.running[index] = 0
        p = self.ctx.Process(
            target=_worker,
            args=(self.tasks, self.results, self.slots, index,
                  self.initializer, self.initargs, self.max_tasks, self.pool_api),
            name=f"tress-ProcessPool-{index}",
        )
        p.start()
        self.procs[index] = p

    def start(self):
        if not self.dynamic:
            for i in range(self.size):
                self.start_worker(i)
        self.manager = threading.Thread(target=self.manage, name="tress-ProcessPool-manager",
                                        daemon=True)
        self.manager.start()
        _live_pools.add(self)

    def adjust(self):
        """Another worker unless one is idle (``dynamic`` pools)."""
        if self.idle.acquire(blocking=False):
            return
        for i, p in enumerate(self.procs):
            if p is None:
                self.start_worker(i)
                return

    # -- tasks

    def submit(self, fn, args, kwargs, user_fn=None):
        """A new future for ``fn(*args, **kwargs)`` run by a worker. A call
        that cannot be pickled fails its future (as the stdlib's)."""
        future = _future_class()()
        future._tress_pool = self
        user_fn = fn if user_fn is None else user_fn
        try:
            call = dumps_call((fn, args, kwargs), user_fn, self.start_method)
        except Exception as exc:
            future.set_exception(exc)
            return future
        task = next(self.numbers)
        with self.lock:
            self.pending[task] = (future, _describe(user_fn))
        try:
            if len(call) > SPILL_TASK:
                message = self.spill(task, call)
            else:
                message = task.to_bytes(_ID, "little") + call
            del call
            self.put_task(message)
        except BaseException:
            self.take(task)
            raise
        return future

    def spill(self, task, call):
        """The task message of a large call: the call in a memory file."""
        fd = os.memfd_create("tress-pool-task", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, _ID + len(call))
            with mmap.mmap(fd, _ID + len(call)) as data:
                data[:_ID] = task.to_bytes(_ID, "little")
                data[_ID:] = call
        except BaseException:
            os.close(fd)
            raise
        with self.lock:
            self.spilled[task] = fd
        return ((task | _SPILLED).to_bytes(_ID, "little")
                + _SPILL_REF.pack(self.pid, fd, len(call)))

    def take(self, task):
        """The pending entry of ``task`` (None if gone), taken out with what
        it holds (its memory file, the pieces of its result)."""
        with self.lock:
            entry = self.pending.pop(task, None)
            fd = self.spilled.pop(task, None)
            self.parts.pop(task, None)
        if fd is not None:
            os.close(fd)
        return entry

    def take_all(self):
        with self.lock:
            entries = list(self.pending.values())
            fds = list(self.spilled.values())
            self.pending.clear()
            self.spilled.clear()
            self.parts.clear()
        for fd in fds:
            os.close(fd)
        return entries

    def put_task(self, message):
        if threading.current_thread() is self.manager:
            if not self.overflow:
                try:
                    self.tasks.put(message, False)
                    return
                except Full:
                    pass
            self.overflow.append(message)
            return
        self.tasks.put(message)

    def flush_overflow(self):
        while self.overflow:
            try:
                self.tasks.put(self.overflow[0], False)
            except Full:
                return
            del self.overflow[0]

    # -- results

    def settled(self, task, outcome, ok):
        """A task's result (pickled, ``ok``) or exception is in."""
        entry = self.take(task)
        if entry is None:
            return  # cancelled, or failed when its worker died
        future = entry[0]
        if self.dynamic:
            self.idle.release()
        if future.cancelled():
            return
        if not ok:
            future.set_exception(outcome)
            return
        try:
            value = pickle.loads(outcome)
        except BaseException as exc:
            # the stdlib fails the task so (its result handler unpickles)
            error = BrokenProcessPool(
                f"the result of task {task} ({entry[1]}) could not be unpickled: {exc!r}")
            error.__cause__ = exc
            future.set_exception(error)
        else:
            del outcome
            future.set_result(value)

    def settle(self, message):
        if type(message) is bytes:
            self.settled(int.from_bytes(message[:_ID], "little"), memoryview(message)[_ID:],
                         True)
            return
        kind = message[0]
        if kind == "part":
            # the manager and a helper may each take some of the pieces:
            # numbered, joined in order once all are in
            task, k, n, data = message[1:]
            with self.lock:
                if task not in self.pending:
                    return  # cancelled, or failed when its worker died
                parts = self.parts.setdefault(task, {})
                parts[k] = data
                whole = len(parts) == n
                if whole:
                    del self.parts[task]
            if whole:
                self.settled(task, b"".join(parts[i] for i in range(n)), True)
        elif kind == "err":
            self.settled(message[1], message[2], False)
        elif kind == "broken":
            p = self.procs[message[1]]
            if p is not None and p.pid == message[2]:
                p.join(5)  # its last words (a logging queue's feeder) are out
            self.break_pool("A child process terminated abruptly, the process pool is not "
                            "usable anymore (its initializer failed)")
        elif kind == "retired":
            index, pid = message[1:]
            p = self.procs[index]
            if p is None or p.pid != pid:
                return  # seen gone (and replaced) by `watch` already
            p.join(5)
            self.procs[index] = None
            # replaced while stopping too: the queued tasks still run
            if not self.terminated and not self.broken:
                self.start_worker(index)

    def drain(self):
        ring = self.manager_ring
        while not ring.empty():
            try:
                messages = ring.get_objs(256, False)
            except Empty:
                return
            for m in messages:
                self.settle(m)

    def break_pool(self, why):
        with self.lock:
            if self.broken:
                return
            self.broken = why
        entries = self.take_all()
        for future, _ in entries:
            if not future.done():
                future.set_exception(BrokenProcessPool(why))
        self.stop_workers(terminate=True)

    # -- watching the workers

    def fail(self, index, error):
        task = self.running[index]
        self.running[index] = 0
        if not task:
            return
        entry = self.take(task)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(error)

    def watch(self):
        now = time.monotonic()
        for index, p in enumerate(self.procs):
            if p is None:
                continue
            if p.exitcode is None:
                limit = self.task_timeout
                if (limit is not None and self.running[index]
                        and now - self.started[index] > limit):
                    task = self.running[index]
                    what = self.pending.get(task, (None, "?"))[1]
                    p.kill()
                    p.join(5)
                    self.fail(index, TimeoutError(
                        f"task {task} ({what}) ran longer than task_timeout={limit:g} s; "
                        f"its worker (pid {p.pid}) was killed and replaced"))
                    self.procs[index] = None
                    if not self.stopping:
                        self.start_worker(index)
                continue
            # the worker is gone: its results are in (drained before this)
            if self.running[index]:
                task = self.running[index]
                what = self.pending.get(task, (None, "?"))[1]
                if self.terminated:
                    error = BrokenProcessPool(
                        f"task {task} ({what}) was stopped: the pool was terminated")
                else:
                    error = WorkerDied(
                        f"A process in the process pool was terminated abruptly while "
                        f"running task {task} ({what}): worker pid {p.pid} "
                        f"{_describe_exit(p.exitcode)}; the pool replaced it and goes on")
                self.fail(index, error)
            p.join(0)  # reaped: no zombie
            self.procs[index] = None
            if not self.stopping and not self.broken:
                self.start_worker(index)

    # -- a waiting caller reads the results

    def help(self, future, timeout):
        """Called by ``future.result(timeout)``/``exception(timeout)``: while
        results come at once, read and settle them here (one thread at a
        time), saving the manager's hand-over: in a round trip the result is
        taken by this poll (a putter leaves the sleeping manager alone while
        a getter polls), so no thread is woken. When nothing comes within
        the poll, the manager (never parked: it sleeps on the ring through
        its own handle, which does not poll) gets the rest. Returns the time
        left of ``timeout``."""
        if os.getpid() != self.pid:
            return timeout  # a forked child's copy: the ring is the parent's
        if not self.read_lock.acquire(False):
            return timeout  # another thread reads: wait on the future
        deadline = None if timeout is None else time.monotonic() + timeout
        results = self.results
        try:
            while not future.done():
                wait = HELP_WAIT
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        break
                try:
                    message = results.get(timeout=wait)
                except Empty:
                    break  # not soon: the manager settles it
                self.receive(message)
        finally:
            self.read_lock.release()
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def receive(self, message):
        """A helper's share of a message: results; the rest to the manager."""
        if type(message) is bytes or message[0] in ("err", "part"):
            self.settle(message)
        else:
            with self.lock:
                self.deferred.append(message)

    def manage(self):
        results = self.manager_ring
        watched = time.monotonic()
        while True:
            if self.deferred:
                with self.lock:
                    deferred, self.deferred = self.deferred, []
                for message in deferred:
                    self.settle(message)
            try:
                message = results.get_obj(True, WATCH_INTERVAL)
            except Empty:
                message = None
            if message is not None:
                self.settle(message)
                self.drain()
            if self.overflow:
                self.flush_overflow()
            if message is not None and time.monotonic() - watched < WATCH_INTERVAL:
                continue  # results keep coming: the workers are watched on a timer
            self.watch()
            watched = time.monotonic()
            if self.stopping and all(p is None or p.exitcode is not None for p in self.procs):
                self.drain()
                self.watch()
                break
        # whatever is still pending now never runs
        entries = self.take_all()
        for future, _ in entries:
            if not future.done():
                future.cancel() or future.set_exception(
                    BrokenProcessPool("the pool shut down before this task ran"))
        self.slots.close()
        self.tasks.close()  # as the stdlib's call queue (join_thread() may follow)
        _live_pools.discard(self)

    # -- stopping

    def stop_workers(self, terminate=False):
        """Workers stop after the queued tasks (each takes a stop message
        once the queue is drained of work), or at once (``terminate``:
        SIGTERM)."""
        if os.getpid() != self.pid:
            # A forked child's copy (its finalizer or exit hook): the queue
            # and the workers are the parent's, not this process's to stop.
            return
        if terminate:
            self.stopping = self.terminated = True
            for p in self.procs:
                if p is not None and p.exitcode is None:
                    p.terminate()
            return
        if self.stopping:
            return
        self.stopping = True
        self.drop_cancelled()
        for _ in range(self.size):
            self.tasks.put(_STOP)

    def terminate(self):
        """Queued tasks cancelled, workers stopped at once."""
        if os.getpid() != self.pid:
            return
        self.cancel_queued()
        self.stop_workers(terminate=True)

    def _take_queued(self):
        """The task messages still queued (stop messages left out)."""
        taken = []
        while True:
            try:
                # (the ring's: the queue may be closed)
                messages = self.tasks._ring.get_objs(256, False)
            except Empty:
                return taken
            taken.extend(m for m in messages if m)

    def cancel_queued(self, keep=0):
        """Takes the queued tasks out and cancels their futures."""
        queued = self._take_queued() + self.overflow
        for m in queued[:keep]:
            self.tasks._ring.put_obj(m)
        for m in queued[keep:]:
            task = int.from_bytes(m[:_ID], "little") & ~_SPILLED
            entry = self.take(task)
            if entry is not None:
                entry[0].cancel()
        self.overflow = []

    def drop_cancelled(self):
        """Takes out of the queue the tasks whose futures were cancelled
        (the rest go back, in order): a cancelled task does not run."""
        queued = self._take_queued()
        for m in queued:
            task = int.from_bytes(m[:_ID], "little") & ~_SPILLED
            entry = self.pending.get(task)
            if entry is not None and entry[0].cancelled():
                self.take(task)
                continue
            self.tasks.put(m)


_live_pools = weakref.WeakSet()


_FUTURE = None


def _future_class():
    """The class of a process pool's futures (made on first use: tress.futures
    imports this module)."""
    global _FUTURE
    if _FUTURE is None:
        from tress.futures import Future

        class ProcessFuture(Future):
            """A future of a process pool: ``result()`` and ``exception()``
            read the pool's results themselves while they wait."""

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
        _FUTURE = ProcessFuture
    return _FUTURE


def _describe(fn):
    return getattr(fn, "__qualname__", None) or repr(fn)


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


class ProcessPoolExecutor(_std.ProcessPoolExecutor):
    """``concurrent.futures.ProcessPoolExecutor`` whose workers may die
    without breaking the pool (see the module docs), with an opt-in
    ``task_timeout``, automatic ``map`` chunking and ``map(...,
    progress=True)``."""

    def __init__(self, max_workers=None, mp_context=None, initializer=None, initargs=(), *,
                 max_tasks_per_child=None, task_timeout=None):
        if max_workers is None:
            max_workers = os.cpu_count() or 1
        elif max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if mp_context is None:
            mp_context = mp.get_context("spawn" if max_tasks_per_child is not None else None)
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            elif max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
            if mp_context.get_start_method(allow_none=False) == "fork":
                raise ValueError("max_tasks_per_child is incompatible with the 'fork' "
                                 "multiprocessing start method; supply a different "
                                 "mp_context.")
        if task_timeout is not None and not task_timeout > 0:
            raise ValueError("task_timeout must be a positive number of seconds")
        self._max_workers = max_workers
        self._mp_context = mp_context
        self._max_tasks_per_child = max_tasks_per_child
        self._pool = _Pool(mp_context, max_workers, initializer, initargs,
                           max_tasks_per_child, task_timeout)
        self._shutdown_thread = False
        self._shutdown_lock = threading.Lock()
        self._started = False
        weakref.finalize(self, _Pool.stop_workers, self._pool)

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
        return self._pool.tasks

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
            if pool.dynamic:
                pool.adjust()
            return pool.submit(fn, args, kwargs, user_fn)

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
        if chunksize is not None and chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if len(iterables) == 1:
            items, run = list(iterables[0]), _map_chunk
        else:
            items, run = list(zip(*iterables)), _starmap_chunk
        if chunksize is None:
            chunksize, extra = divmod(len(items), self._max_workers * 4)
            chunksize = max(chunksize + bool(extra), 1)
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
                pool.cancel_queued(keep=pool.size + 1 if self._started else 0)
            if self._started and not pool.stopping:
                pool.stop_workers()
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


def _interrupted():
    """Whether the interpreter is exiting on an uncaught KeyboardInterrupt."""
    return isinstance(getattr(sys, "last_value", None), KeyboardInterrupt)


def _at_exit():
    stop_now = _interrupted()
    for pool in list(_live_pools):
        if pool.pool_api or stop_now:
            pool.terminate()
        elif not pool.stopping:
            pool.stop_workers()
    for pool in list(_live_pools):
        if pool.manager is not None:
            pool.manager.join(30)


threading._register_atexit(_at_exit)
