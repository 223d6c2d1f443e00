"""The process pools' engine: workers, the task table, the backlog, the
manager thread, and the pool's life as one state.

Read in order:

1. :class:`Policy` — what a face (``ProcessPoolExecutor``, ``Pool``) asks
   of the engine, instead of a flag.
2. :class:`Job` — one call to run and where its outcome goes (a future, or
   the ``Pool``'s ``deliver`` function).
3. :class:`Engine` — submitting (``submit``, ``submit_lazy``) puts jobs on
   the backlog, a ``deque`` in the parent's memory, and ``feed`` moves them
   to the task ring while the policy's window and the ring have room,
   without ever waiting: a caller never waits for room, and neither does
   the manager thread. ``manage`` is the manager thread's loop: ``settle``
   each message from the workers (:mod:`tress._procpool.wire`), ``feed``,
   ``watch`` the workers (a dead worker fails exactly the task the task
   table says it ran, and is replaced). ``help`` lets a caller waiting in
   ``result()`` read results itself. ``stop``, ``terminate`` and
   ``break_pool`` end the pool, each from one :class:`State` to the next.
"""

import collections
import enum
import itertools
import os
import pickle
import threading
import time
import weakref
from concurrent.futures import process as _std
from concurrent.futures.process import BrokenProcessPool
from queue import Empty, Full

from tress._future import ProcessFuture
from tress._procpool import calls, wire, worker
from tress._tress import ShmQueue, TaskTable

__all__ = ["Engine", "Job", "Policy", "State", "WorkerDied"]

TASKS_CAPACITY = 1 << 20
"""Bytes of the task ring. A call of any size goes through (a large one out
of band, by the ring itself); a small ring is quick to make (its pages are
reserved when it is made)."""
RESULTS_CAPACITY = 1 << 20
"""Bytes of the result ring (results of any size go through)."""
POLL_US = 200
"""Microseconds the parent's reader of results polls before it sleeps
(see :meth:`Engine.help`)."""
HELP_WAIT = 0.0003
"""Seconds a caller waiting in ``result()`` reads the result ring itself
before it leaves the results to the manager."""
CALLER_FEED = 8
"""Jobs beyond its own a submitting thread feeds to the ring at most (the
rest is the manager's, fed as results come): a submission of a long
backlog returns at once, whatever room the ring has."""
MANAGER_FEED = 512
"""Jobs the manager feeds between two looks at the results."""
WATCH_INTERVAL = 0.02
"""Seconds between the manager's looks at the workers when no result
comes: how soon a dead worker's task fails, and how soon the backlog is fed
when only the ring's room (not a result) held it back."""
WATCH_IDLE = 1.0
"""The same while nothing is pending or backlogged: no task can be lost,
so an idle pool's manager wakes once a second, not fifty times (a worker
that dies meanwhile is replaced within it)."""
STOP_GRACE = 5.0
"""Seconds a worker terminated because its pool could not start (its
manager thread did not) is given to exit before it is killed."""


class WorkerDied(BrokenProcessPool):
    """The worker process running this task died (killed, crashed, or
    exited). Only this task failed; the pool started a replacement."""


WorkerDied.__module__ = "tress.futures"


def describe_exit(code):
    if code is None:
        return "is gone"
    if code < 0:
        try:
            import signal

            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


class Policy:
    """What a face asks of the engine.

    ``pool_api``: errors as ``multiprocessing.Pool`` sends them
    (``MaybeEncodingError``, its ``ExceptionWithTraceback``), and the pool
    terminated, not drained, when the interpreter exits.
    ``window``: at most this many tasks in the ring or running at once (the
    rest wait in the backlog, where they can still be cancelled); None: as
    many as the ring holds. ``on_demand``: workers started as submissions
    need them (else all at ``start``)."""

    __slots__ = ("pool_api", "window", "on_demand")

    def __init__(self, pool_api, window, on_demand):
        self.pool_api = pool_api
        self.window = window
        self.on_demand = on_demand


class State(enum.Enum):
    """The pool's life: RUNNING, then STOPPING (no new work; the queued
    work runs, then the workers exit), or BROKEN (an initializer failed:
    every pending task fails) or TERMINATED (queued work dropped, workers
    killed). The manager thread exits once the workers are gone."""

    RUNNING = "running"
    STOPPING = "stopping"
    BROKEN = "broken"
    TERMINATED = "terminated"


class Job:
    """One call and where its outcome goes: ``future`` (a
    :class:`ProcessFuture`), or ``deliver(success, value)`` (the ``Pool``'s
    results, called on the thread that settles the task). ``call`` is the
    pickled ``(fn, args, kwargs)`` once pickled."""

    __slots__ = ("fn", "args", "kwargs", "user_fn", "call", "future", "deliver")

    def __init__(self, fn, args, kwargs, user_fn=None, future=None, deliver=None):
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.user_fn = fn if user_fn is None else user_fn
        self.call = None
        self.future = future
        self.deliver = deliver

    def pickle(self, start_method):
        """Pickles the call (once); its arguments are then let go of."""
        if self.call is None:
            self.call = calls.dumps_call((self.fn, self.args, self.kwargs), self.user_fn,
                                         start_method)
            self.args = self.kwargs = None
        return self.call

    def set_result(self, value):
        if self.future is not None:
            self.future.set_result(value)
        else:
            self.deliver(True, value)

    def set_exception(self, error):
        if self.future is not None:
            if not self.future.done():
                self.future.set_exception(error)
        else:
            self.deliver(False, error)

    def drop(self, error):
        """The job will not run: its future cancelled (or, if already
        running, failed with ``error``), or ``error`` delivered."""
        if self.future is not None:
            if not self.future.cancel() and not self.future.done():
                self.future.set_exception(error)
        else:
            self.deliver(False, error)

    def what(self):
        return calls.describe(self.user_fn)


class _Lazy:
    """A backlog entry that makes its jobs as they are fed (``Pool.map_async``
    of a long input: the call returns at once, as the stdlib's);
    ``abandon(error)`` fails at once the jobs it has not made."""

    __slots__ = ("jobs", "abandon")

    def __init__(self, jobs, abandon):
        self.jobs = jobs
        self.abandon = abandon


_STOP = object()  # a backlog entry: one worker's stop message


class Engine:
    """The queues, the workers and the manager thread of one pool, shared
    by a face and its manager (which holds no reference to the face, so an
    unreferenced face is collected and stops its pool)."""

    def __init__(self, ctx, workers, initializer, initargs, max_tasks, task_timeout, policy):
        self.ctx = ctx
        self.start_method = ctx.get_start_method()
        self.pid = os.getpid()  # the pool belongs to this process alone
        self.size = workers
        self.initializer = initializer
        self.initargs = initargs
        self.max_tasks = max_tasks
        self.task_timeout = task_timeout
        self.policy = policy
        self.state = State.RUNNING
        self.broken = False  # the reason, once BROKEN
        self.tasks = ShmQueue(TASKS_CAPACITY, 0)
        self.results = ShmQueue(RESULTS_CAPACITY, 0)
        self.results.set_poll_limit(POLL_US)
        # The manager's own handle on the result ring: it does not poll (a
        # caller's result() does; see `help`), it sleeps until woken.
        self.manager_ring = ShmQueue.from_fd(os.dup(self.results.fileno()))
        self.manager_ring.set_polling(False)
        self.table = TaskTable(workers)
        self.procs = [None] * workers
        self.idle = threading.Semaphore(0)  # on_demand: workers without work
        self.pending = {}  # task number -> Job, from the ring until settled
        self.numbers = itertools.count(1)
        self.backlog = collections.deque()  # Jobs, _Lazy sources, _STOP
        self.head = None  # the next Job, taken from a _Lazy, not yet sent
        self.lock = threading.RLock()  # pending, backlog, head, state
        self.manager = None
        # A thread waiting in a future's result() reads the results itself
        # (see `help`). Reentrant: a done callback run by a reading caller
        # may wait on another future of the pool, and must then read in its
        # turn.
        self.read_lock = threading.RLock()
        self.deferred = []  # messages a helper leaves to the manager

    # -- workers

    def start_worker(self, index):
        self.table.take(index)
        p = self.ctx.Process(
            target=worker.run,
            args=(self.tasks, self.results, self.table, index, self.pid, self.initializer,
                  self.initargs, self.max_tasks, self.policy.pool_api),
            name=f"tress-ProcessPool-{index}",
        )
        p.start()
        self.procs[index] = p

    def _replace(self, index, p, restart):
        """Worker ``p`` (at ``index``) is gone: its place is emptied and,
        if ``restart``, filled by a new worker (unless someone did first)."""
        with self.lock:
            if self.procs[index] is not p:
                return
            self.procs[index] = None
            if restart:
                self.start_worker(index)

    def repopulate(self):
        """Starts a worker in every empty place while the pool runs (the
        stdlib's ``Pool._repopulate_pool``; the manager replaces workers
        that go by itself)."""
        with self.lock:
            if self.state is not State.RUNNING or self.policy.on_demand:
                return
            for index, p in enumerate(self.procs):
                if p is None:
                    self.start_worker(index)

    def start(self):
        if not self.policy.on_demand:
            for i in range(self.size):
                self.start_worker(i)
        self.manager = threading.Thread(target=self.manage, name="tress-ProcessPool-manager",
                                        daemon=True)
        try:
            self.manager.start()
        except BaseException:
            # (a thread cannot start, e.g. at interpreter shutdown) the
            # workers just started go too: a retry starts afresh, no
            # orphan is left behind
            self._kill_workers()
            for index, p in enumerate(self.procs):
                if p is not None:
                    p.join(STOP_GRACE)
                    if p.exitcode is None:
                        p.kill()
                        p.join()
                    self.procs[index] = None
                    self.table.take(index)
            self.manager = None
            raise
        _live.add(self)

    def adjust(self):
        """Another worker unless one is idle (``on_demand`` pools)."""
        if self.idle.acquire(blocking=False):
            return
        for i, p in enumerate(self.procs):
            if p is None:
                self.start_worker(i)
                return

    # -- submitting and feeding

    def _check_owner(self):
        if os.getpid() != self.pid:
            raise RuntimeError(
                f"this process pool belongs to process {self.pid}: a forked child "
                f"cannot submit to its copy (make a pool in the child)")

    def submit(self, job):
        """Queues ``job`` and feeds what the ring takes; never waits."""
        self._check_owner()
        with self.lock:
            self.backlog.append(job)
            self.feed(CALLER_FEED)

    def submit_lazy(self, jobs, abandon):
        """Queues the jobs of the iterator ``jobs``, made as they are fed;
        ``abandon(error)``, if the pool ends first, fails the rest at once."""
        self._check_owner()
        with self.lock:
            self.backlog.append(_Lazy(jobs, abandon))
            self.feed(CALLER_FEED)

    def _next(self):
        """The backlog's next entry to send (a Job or _STOP), or None."""
        if self.head is not None:
            return self.head
        while self.backlog:
            entry = self.backlog[0]
            if type(entry) is _Lazy:
                try:
                    job = next(entry.jobs, None)
                except Exception as exc:  # the input failed: so does its result
                    self.backlog.popleft()
                    entry.abandon(exc)
                    continue
                if job is None:
                    self.backlog.popleft()
                    continue
                self.head = job
                return job
            self.head = self.backlog.popleft()
            return self.head
        return None

    def feed(self, limit=None):
        """Moves backlog entries to the task ring, in order, while the
        window and the ring have room (at most ``limit`` jobs, if given).
        Never waits: what the ring does not take now is fed when results
        come (or on the manager's timer). True if it stopped at ``limit``
        (there may be more to feed now)."""
        if self.head is None and not self.backlog:
            return False  # (a submission racing with this look feeds itself)
        if os.getpid() != self.pid:
            return False
        with self.lock:
            if self.state is State.TERMINATED or self.state is State.BROKEN:
                return False
            if self.tasks is None:
                return False  # released: the pool is over
            window = self.policy.window
            while True:
                if limit is not None and limit <= 0:
                    return True
                entry = self._next()
                if entry is None:
                    return False
                if entry is _STOP:
                    try:
                        self.tasks.put([wire.STOP], False)
                    except Full:
                        return False
                    self.head = None
                    continue
                if window is not None and len(self.pending) >= window:
                    return False
                if entry.future is not None and not entry.future.running():
                    if not entry.future.set_running_or_notify_cancel():
                        self.head = None  # cancelled: never sent
                        continue
                try:
                    call = entry.pickle(self.start_method)
                except Exception as exc:
                    self.head = None
                    entry.set_exception(exc)
                    continue
                task = next(self.numbers)
                self.pending[task] = entry
                try:
                    self.tasks.put(wire.task(task, call), False)
                except Full:
                    del self.pending[task]
                    return False
                except BaseException as exc:
                    del self.pending[task]
                    self.head = None
                    entry.set_exception(exc)
                    continue
                self.head = None
                entry.call = None
                if limit is not None:
                    limit -= 1

    def take(self, task):
        """The pending Job of ``task`` (None if gone), taken out."""
        with self.lock:
            return self.pending.pop(task, None)

    def _end_backlog(self, error, cancel):
        """The jobs not yet in the ring will not run: each is cancelled
        (``cancel``, where its future still can be) or fails with
        ``error``, and each lazy source is abandoned with ``error``. The
        workers' stop messages stay queued."""
        with self.lock:
            jobs = []
            if self.head is not None and self.head is not _STOP:
                jobs.append(self.head)
                self.head = None
            lazies = [e for e in self.backlog if type(e) is _Lazy]
            jobs += [e for e in self.backlog if type(e) is Job]
            stops = sum(e is _STOP for e in self.backlog)
            self.backlog.clear()
            self.backlog.extend([_STOP] * stops)
        for job in jobs:
            job.drop(error) if cancel else job.set_exception(error)
        for lazy in lazies:
            lazy.abandon(error)

    def _end_pending(self, error, tasks=None):
        """The jobs in the ring or running (of ``tasks``, default all) fail
        with ``error``."""
        with self.lock:
            if tasks is None:
                jobs = list(self.pending.values())
                self.pending.clear()
            else:
                jobs = [self.pending.pop(t) for t in tasks if t in self.pending]
        for job in jobs:
            job.drop(error)

    def _empty_task_ring(self):
        if self.tasks is None:
            return  # released: the pool is over
        while True:
            try:
                self.tasks.get_many(256, False)
            except Empty:
                return

    def cancel_backlog(self):
        """``shutdown(cancel_futures=True)``: the jobs not yet in the ring
        are cancelled (those in it run, as the stdlib's call queue's)."""
        self._end_backlog(BrokenProcessPool("the pool shut down before this task ran"),
                          cancel=True)

    # -- results

    def settle(self, message):
        """One message from a worker (see :mod:`tress._procpool.wire`)."""
        kind, number, pid, body = wire.read(message)
        if kind == wire.RESULT:
            self._settled(number, body, True)
        elif kind == wire.ERROR:
            self._settled(number, body, False)
        elif kind == wire.BROKEN:
            p = self.procs[number]
            if p is not None and p.pid == pid:
                p.join(5)  # its last words (a logging queue's feeder) are out
            self.break_pool("A child process terminated abruptly, the process pool is not "
                            "usable anymore (its initializer failed)")
        elif kind == wire.RETIRED:
            p = self.procs[number]
            if p is None or p.pid != pid:
                return  # seen gone (and replaced) by `watch` already
            p.join(5)
            # replaced while stopping too: the queued tasks still run
            self._replace(number, p, self.state in (State.RUNNING, State.STOPPING))

    def _settled(self, task, body, ok):
        job = self.take(task)
        if job is None:
            return  # failed when its worker died, or the pool ended
        if self.policy.on_demand:
            self.idle.release()
        try:
            value = pickle.loads(body)
        except BaseException as exc:
            # the task alone fails (the stdlib's result handler does so)
            what = "result" if ok else "exception"
            error = BrokenProcessPool(
                f"the {what} of task {task} ({job.what()}) could not be unpickled: {exc!r}")
            error.__cause__ = exc
            job.set_exception(error)
        else:
            del body
            if ok:
                job.set_result(value)
            else:
                job.set_exception(value)
        self.feed(CALLER_FEED)

    def drain(self):
        ring = self.manager_ring
        while True:
            try:
                messages = ring.get_many(256, False)
            except Empty:
                return
            for m in messages:
                self.settle(m)

    def break_pool(self, why):
        with self.lock:
            if self.state is State.BROKEN:
                return
            self.state = State.BROKEN
            self.broken = why
        error = BrokenProcessPool(why)
        self._end_backlog(error, cancel=False)
        self._empty_task_ring()
        self._end_pending(error)
        self._kill_workers()

    # -- watching the workers

    def _fail(self, index, error):
        task = self.table.take(index)
        if not task:
            return
        job = self.take(task)
        if job is not None:
            job.set_exception(error)

    def watch(self):
        limit = self.task_timeout
        gone = []
        for index, p in enumerate(self.procs):
            if p is None:
                continue
            if p.exitcode is not None:
                gone.append((index, p))
                continue
            if limit is not None:
                elapsed = self.table.elapsed(index)
                if elapsed is not None and elapsed > limit:
                    task = self.table.running(index)
                    p.kill()
                    p.join(5)
                    job = self.pending.get(task)
                    what = job.what() if job is not None else "?"
                    self._fail(index, TimeoutError(
                        f"task {task} ({what}) ran longer than task_timeout={limit:g} s; "
                        f"its worker (pid {p.pid}) was killed and replaced"))
                    self._replace(index, p, self.state is State.RUNNING)
        if not gone:
            return
        # Seen gone: everything they put is in the ring now. Read it first,
        # so a task whose result is in does not fail (a helper reading
        # meanwhile is waited for a moment, not for as long as a done
        # callback it runs may block).
        helpers_off = self.read_lock.acquire(timeout=0.05)
        try:
            self.drain()
            for index, p in gone:
                if self.procs[index] is not p:
                    continue  # retired: replaced by `settle` just now
                task = self.table.running(index)
                if task:
                    job = self.pending.get(task)
                    what = job.what() if job is not None else "?"
                    if self.state is State.TERMINATED:
                        error = BrokenProcessPool(
                            f"task {task} ({what}) was stopped: the pool was terminated")
                    else:
                        error = WorkerDied(
                            f"A process in the process pool was terminated abruptly while "
                            f"running task {task} ({what}): worker pid {p.pid} "
                            f"{describe_exit(p.exitcode)}; the pool replaced it and goes on")
                    self._fail(index, error)
                p.join(0)  # reaped: no zombie
                self._replace(index, p, self.state is State.RUNNING)
        finally:
            if helpers_off:
                self.read_lock.release()
        self.feed()

    # -- a waiting caller reads the results

    def help(self, future, timeout):
        """Called by ``future.result(timeout)``/``exception(timeout)``: while
        results come at once, read and settle them here (one thread at a
        time), saving the manager's hand-over: in a round trip the result is
        taken by this poll (a putter leaves the sleeping manager alone while
        a getter polls), so no thread is woken. When nothing comes within
        the poll, the manager (it sleeps on the ring through its own handle,
        which does not poll) gets the rest. Returns the time left of
        ``timeout``."""
        if os.getpid() != self.pid:
            return timeout  # a forked child's copy: the ring is the parent's
        if timeout is not None and not timeout > 0:
            return timeout  # no wait (0, negative, NaN): the future's own answer
        if not self.read_lock.acquire(False):
            return timeout  # another thread reads: wait on the future
        deadline = None if timeout is None else time.monotonic() + timeout
        results = self.results
        try:
            while results is not None and not future.done():
                wait = HELP_WAIT
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        break
                try:
                    message = results.get(True, wait)
                except Empty:
                    break  # not soon: the manager settles it
                if message[:1] in (wire.RESULT, wire.ERROR):
                    self.settle(message)
                else:  # a worker's own news: the manager's to act on
                    with self.lock:
                        self.deferred.append(message)
        finally:
            self.read_lock.release()
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    # -- the manager thread

    def manage(self):
        results = self.manager_ring
        watched = time.monotonic()
        more = False  # the last feed stopped at its limit
        while True:
            if self.deferred:
                with self.lock:
                    deferred, self.deferred = self.deferred, []
                for message in deferred:
                    self.settle(message)
            if more:
                wait = 0
            elif (self.state is State.RUNNING and not self.pending and not self.backlog
                    and self.head is None):
                wait = WATCH_IDLE  # nothing to lose: a slow look at the workers
            else:
                wait = WATCH_INTERVAL
            try:
                message = results.get(True, wait)
            except Empty:
                message = None
            if message is not None:
                self.settle(message)
                self.drain()
            more = self.feed(MANAGER_FEED)
            if message is not None and time.monotonic() - watched < WATCH_INTERVAL:
                continue  # results keep coming: the workers are watched on a timer
            self.watch()
            watched = time.monotonic()
            if self.state is not State.RUNNING and all(
                    p is None or p.exitcode is not None for p in self.procs):
                self.drain()
                self.watch()
                if all(p is None for p in self.procs):
                    break
        # whatever is still pending now never runs
        error = BrokenProcessPool("the pool shut down before this task ran")
        self._end_backlog(error, cancel=True)
        self._empty_task_ring()
        self._end_pending(error)
        _live.discard(self)
        self.release()

    def release(self):
        """Lets go of the rings and the task table once the pool is over
        (its workers gone, every task settled or failed; the manager's last
        step, or a pool that never started): their descriptors and mappings
        go now, not when the last reference to the pool does (a shut-down
        pool still referenced keeps none). Whatever looks at them later
        finds None and has nothing to do."""
        with self.read_lock, self.lock:
            self.tasks = self.results = self.manager_ring = self.table = None

    # -- stopping

    def stop(self):
        """No more work: each worker exits once the work queued before is
        done (a stop message per worker, after it)."""
        if os.getpid() != self.pid:
            # A forked child's copy (its finalizer or exit hook): the queue
            # and the workers are the parent's, not this process's to stop.
            return
        with self.lock:
            if self.state is not State.RUNNING:
                return
            self.state = State.STOPPING
            self.backlog.extend([_STOP] * self.size)
            self.feed()

    def terminate(self):
        """Queued work dropped (its jobs fail), workers killed at once (the
        tasks they run fail)."""
        if os.getpid() != self.pid:
            return
        with self.lock:
            if self.state in (State.TERMINATED, State.BROKEN):
                return
            self.state = State.TERMINATED
            if self.table is None:
                return  # released: the workers are gone, every task settled
            # the tasks in the ring (not running): taken out, failed below
            running = {self.table.running(i) for i in range(self.size)}
            stranded = [t for t in self.pending if t not in running]
        error = BrokenProcessPool("the pool was terminated before this task ran")
        self._end_backlog(error, cancel=True)
        self._empty_task_ring()
        self._end_pending(error, stranded)
        self._kill_workers()

    def _kill_workers(self):
        for p in self.procs:
            if p is not None and p.exitcode is None:
                p.terminate()


_live = weakref.WeakSet()


def _interrupted():
    """Whether the interpreter is exiting on an uncaught KeyboardInterrupt."""
    import sys

    return isinstance(getattr(sys, "last_value", None), KeyboardInterrupt)


def _at_exit():
    stop_now = _interrupted()
    for engine in list(_live):
        if engine.policy.pool_api or stop_now:
            engine.terminate()
        else:
            engine.stop()
    for engine in list(_live):
        if engine.manager is not None:
            engine.manager.join(30)


threading._register_atexit(_at_exit)
