"""Scenario ``procpool``: process pools, ``ProcessPoolExecutor`` and ``Pool``.

Every pool has :data:`WORKERS` (2) worker processes started with the
``fork`` method (:data:`START_METHOD`, Linux's default).  The cases:

* ``map``: one ``sum(map(abs, range(k)))`` per batch, ``k = n * MAP_UNIT``
  tiny tasks, with each implementation's *default* arguments: chunksize 1
  for the stdlib's executor (and loky's), automatic chunking for tress's
  executor (``chunksize=None``: about four chunks per worker), for
  ``multiprocessing.Pool.map`` (the same rule) and for mpire.  The issue's
  "map of 100k tiny tasks": the batch size is calibrated by time (the
  stdlib's executor moves a few thousand tasks/s, so 100k would take
  half a minute), so each implementation's map grows to whatever length fills a
  batch (:data:`MAP_UNIT` items at least); DESIGN.md's target: tress at
  least 100x the stdlib's executor;
* ``map-vs-pool``: the same measurement again, with the target versus
  ``multiprocessing.Pool.map`` (at least as fast; a case has one target, so
  the figure is taken twice, as ``64B-vs-faster-fifo`` repeats ``64B`` in
  the ``ipc`` scenario);
* ``map-tuned``: the same map with an explicit chunksize for every
  implementation, :func:`tuned_chunksize`: :data:`TUNED_CHUNKSIZE` (1000)
  items, fewer in a map too short to give each worker
  :data:`TUNED_CHUNKS_PER_WORKER` chunks of that size (1000 was the best
  common size of a 100k-item map: larger chunks speed the stdlib's pools
  up a little more but slow tress's down); what a user who tunes gets (no
  target);
* ``cpu``: :data:`CPU_TASKS` (200) tasks of pure-Python CPU work, each
  :data:`CPU_SPIN` iterations of a loop (:func:`spin`, about 10 ms on the
  project's machines), as one ``map(spin, ..., chunksize=1)`` per iteration
  (every task its own message, the pool balancing them over its workers),
  in tasks/s.  Its yardstick is the ``ideal`` reference: the same 200 tasks
  run one after the other in this process, its time divided by
  :data:`WORKERS` (perfect scaling on two cores), measured in the same
  trials, interleaved with the pools.  ``tress / ideal`` is thus tress's
  *scaling efficiency*, serial time / (parallel time * workers), and the
  target ``>=1/1.05x ideal`` is "at least 95% efficiency" (any
  implementation's efficiency is its figure divided by ideal's).  Beside
  it, the second reference ``processes``: the machine's ceiling for CPU
  scaling without any pool, the same ``n * CPU_TASKS`` tasks split
  statically over :data:`WORKERS` children made with :func:`os.fork` (each
  runs its share, writes its sum to a pipe and leaves with
  :func:`os._exit`), timed from before the first fork to the last child's
  result (:func:`_processes`; the results wait ``4 * HANDOFF_TIMEOUT`` per
  iteration, the children are killed with SIGKILL on a timeout or an error,
  and every child is reaped with a bounded wait, outside the timed span).
  ``processes / ideal`` is the efficiency the machine itself allows in
  that run (two cores of a shared VM often give less than 2x), so
  ``tress / processes`` is the *pool efficiency relative to the machine's
  ceiling*: what the pool loses, apart from what the machine does; the
  target stays versus ``ideal``.  The slowest case: an iteration takes a
  second per pool and for processes, two for ideal, about 25 s in all
  with ``--quick``; pinned to one CPU (``--cpus 0``) the efficiency is
  about 50% by construction (and processes / ideal too);
* ``round-trip``: ``submit(abs, -i).result(timeout)`` (``apply_async(abs,
  (-i,)).get(timeout)`` for the ``Pool`` APIs) one after the other, a round trip
  through a worker process each, loop unrolled ten times, in round
  trips/s (the latency of one is the inverse); target: tress at least 10x
  the stdlib's executor;
* ``backlog``: queue :data:`BACKLOG` (100k) tiny calls without waiting
  for them, in a pool whose workers are warm: ``submit(abs, x)`` for each
  (the executors) or one ``map_async(abs, items, chunksize=1)`` (the
  ``Pool`` APIs; mpire's ``apply_async`` for each), timed until the
  submitting call returns, in calls/s (the issue's "time for map_async of
  100k tiny tasks to return" is its inverse times 100k).  A pool that
  waited for room in its queue would take as long as running the calls;
  the work is not waited for: the pool of a batch is made (and warmed up)
  before and stopped after the timed span (the executors'
  ``shutdown(cancel_futures=True)``, the pools' ``terminate``), a batch's
  iterations queueing into the same pool, one after the other; no target;
* ``start``: create a pool and get the result of its first task
  (``abs(-7)``), in starts/s (1 / the time from the constructor call to
  the first result).  Each iteration creates a pool and shuts it down; the
  shutdown (which waits for the workers to exit) is outside the timed
  region, the runner adds up only the constructor-to-first-result spans;
  target: tress no slower than the stdlib's executor.

Implementations: ``stdlib`` = ``concurrent.futures.ProcessPoolExecutor``
(the baseline of the ratios), ``tress`` =
``tress.futures.ProcessPoolExecutor`` (the implementation the targets are
about), ``mp.Pool`` = ``multiprocessing.Pool`` (its
``map_async(...).get(timeout)``, i.e. ``map``, and ``apply_async``),
``tress.Pool`` = ``tress.pool.Pool(processes=WORKERS, context=...)``,
tress's drop-in ``multiprocessing.Pool``, used exactly as ``mp.Pool`` is
(its ratio is versus the stdlib's executor, as every column's; versus
``multiprocessing.Pool`` it is ``tress.Pool/stdlib`` divided by
``mp.Pool/stdlib``), and the peers ``loky`` =
``loky.ProcessPoolExecutor`` (given the fork context; loky warns that it
prefers its own start method, the warning is silenced) and ``mpire`` =
``mpire.WorkerPool(keep_alive=True)`` (its workers stay up between maps),
each skipped with the reason when it cannot be imported.  The references
``ideal`` and ``processes`` are measured in ``cpu`` only.

Pools.  Except in ``start``, each case's set-up creates one pool per
implementation, outside the timed region, and warms it up (a small map
with chunksize 1, so every worker has started and taken a task); the
pool is shut down after the last trial.  A shutdown waits in a helper
thread for at most ``4 * HANDOFF_TIMEOUT``; a pool that does not stop in
time (or whose workers are still alive after it says it stopped) has its
worker processes terminated (SIGTERM), then killed (SIGKILL), each waited
for at most :data:`tress.bench.threads.HANDOFF_TIMEOUT`, and fails the case
(unless a batch failed already: that error is the case's); the same
happens in ``start`` to each pool it makes.  The workers are known as the
child processes that appeared while the pool was made and warmed up.

Every result is checked (the sum of a map's results or of the round
trips', the value of each CPU task, the first result of a new pool) and
every wait is bounded: a single result waits
:data:`~tress.bench.threads.HANDOFF_TIMEOUT` seconds, a whole map ``4 *
HANDOFF_TIMEOUT`` (the executors' ``map(timeout=...)``, the ``Pool``'s
``get(timeout)``; mpire's ``map`` takes no timeout, so it runs in a helper
thread waited for that long, the thread's start-up inside the timed
region, a fraction of a percent of a batch).
"""

from __future__ import annotations

import importlib
import itertools
import math
import os
import select
import signal
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter
from types import SimpleNamespace
from typing import Any

from tress.bench import threads
from tress.bench.model import (
    PEER,
    STDLIB,
    TRESS,
    Case,
    Implementation,
    Runner,
    Scenario,
    Setup,
    Target,
)
from tress.bench.threads import HandoffError

WORKERS = 2
"""Worker processes of every pool."""

START_METHOD = "fork"
"""How every pool starts its workers (see the module docs)."""

MAP_UNIT = 1000
"""Items of ``map`` per iteration (one map of ``n * MAP_UNIT`` items)."""

TUNED_CHUNKSIZE = 1000
"""Items per chunk of ``map-tuned`` (at most)."""

TUNED_CHUNKS_PER_WORKER = 4
"""Chunks per worker of ``map-tuned`` at least (a shorter map gets smaller ones)."""

CPU_TASKS = 200
"""Tasks per iteration of ``cpu``."""

CPU_SPIN = 100_000
"""Loop iterations of one ``cpu`` task (about 10 ms of CPython 3.11)."""

CPU_RESULT = (CPU_SPIN - 1) * CPU_SPIN * (2 * CPU_SPIN - 1) // 6
"""What :func:`spin` returns: the sum of the squares below ``CPU_SPIN``."""

UNROLL = 10
"""Round trips per loop iteration in ``round-trip``."""

BACKLOG = 100_000
"""Calls queued per iteration of ``backlog``."""

WARM_TASKS = 8 * WORKERS
"""Tasks of the warm-up map (chunksize 1) run when a pool is made."""


def spin(n: int) -> int:
    """The CPU task: a pure-Python loop of ``n`` iterations."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def tuned_chunksize(k: int) -> int:
    """The explicit chunksize of ``map-tuned`` for a map of ``k`` items."""
    return max(1, min(TUNED_CHUNKSIZE, math.ceil(k / (WORKERS * TUNED_CHUNKS_PER_WORKER))))


# --------------------------------------------------------------------------
# implementations: a factory of pools behind one small interface


@dataclass
class _Pool:
    """One pool of an implementation, as the cases use it.

    ``map(fn, items, chunksize)`` returns the results in order (``chunksize
    None``: the implementation's default), waiting at most ``4 *
    HANDOFF_TIMEOUT`` in all; ``call(fn, arg)`` is one task's round trip,
    its result waited for at most ``HANDOFF_TIMEOUT``; ``close()`` shuts
    the pool down and waits for its workers (bounded by :func:`_close`).
    """

    name: str
    map: Callable[[Callable[[Any], Any], Iterable[Any], int | None], Iterable[Any]]
    call: Callable[[Callable[[Any], Any], Any], Any]
    close: Callable[[], None]
    #: ``queue(fn, items)``: every call queued, none waited for (``backlog``)
    queue: Callable[[Callable[[Any], Any], Iterable[Any]], Any]
    #: stops the pool at once, dropping what is queued (``backlog``)
    abort: Callable[[], None]
    #: the worker processes, for :func:`_kill` (set once the pool has started)
    processes: list[Any] = field(default_factory=list)
    #: a timed batch failed (the case's error is that one, not the shutdown's)
    failed: bool = False


def _context() -> Any:
    import multiprocessing  # here: importing the scenario stays light

    return multiprocessing.get_context(START_METHOD)


def _children() -> set[Any]:
    """This process's live child processes (``multiprocessing``'s)."""
    import multiprocessing

    return set(multiprocessing.active_children())


def _executor_pool(name: str, ex: Any) -> _Pool:
    """A ``concurrent.futures``-style executor as a :class:`_Pool`."""
    t = threads.HANDOFF_TIMEOUT
    submit, executor_map = ex.submit, ex.map

    def map_(fn: Callable[[Any], Any], items: Iterable[Any], chunksize: int | None) -> Any:
        if chunksize is None:
            return executor_map(fn, items, timeout=4 * t)
        return executor_map(fn, items, timeout=4 * t, chunksize=chunksize)

    def call(fn: Callable[[Any], Any], arg: Any) -> Any:
        return submit(fn, arg).result(t)

    def queue(fn: Callable[[Any], Any], items: Iterable[Any]) -> Any:
        return [submit(fn, x) for x in items]

    def abort() -> None:
        ex.shutdown(wait=True, cancel_futures=True)

    return _Pool(name, map_, call, ex.shutdown, queue, abort)


def _mp_pool(name: str, pool: Any) -> _Pool:
    """A ``multiprocessing.Pool`` as a :class:`_Pool`."""
    t = threads.HANDOFF_TIMEOUT
    map_async, apply_async = pool.map_async, pool.apply_async

    def map_(fn: Callable[[Any], Any], items: Iterable[Any], chunksize: int | None) -> Any:
        return map_async(fn, items, chunksize).get(4 * t)  # None: its own chunking

    def call(fn: Callable[[Any], Any], arg: Any) -> Any:
        return apply_async(fn, (arg,)).get(t)

    def close() -> None:
        pool.close()
        pool.join()

    def queue(fn: Callable[[Any], Any], items: Iterable[Any]) -> Any:
        return map_async(fn, items, 1)

    def abort() -> None:
        pool.terminate()
        pool.join()

    return _Pool(name, map_, call, close, queue, abort)


def _mpire_pool(name: str, pool: Any) -> _Pool:
    """An ``mpire.WorkerPool`` as a :class:`_Pool` (its map, bounded from outside)."""
    t = threads.HANDOFF_TIMEOUT
    mpire_map, apply_async = pool.map, pool.apply_async

    def map_(fn: Callable[[Any], Any], items: Iterable[Any], chunksize: int | None) -> Any:
        if chunksize is None:
            return threads.bounded(lambda: mpire_map(fn, items), "mpire map", 4 * t)
        return threads.bounded(lambda: mpire_map(fn, items, chunk_size=chunksize), "mpire map", 4 * t)

    def call(fn: Callable[[Any], Any], arg: Any) -> Any:
        return apply_async(fn, args=(arg,)).get(t)

    def close() -> None:
        pool.stop_and_join(keep_alive=False)

    def queue(fn: Callable[[Any], Any], items: Iterable[Any]) -> Any:
        return [apply_async(fn, args=(x,)) for x in items]

    return _Pool(name, map_, call, close, queue, pool.terminate)


def _load_futures(module: str) -> Callable[[], SimpleNamespace]:
    """A loader of ``module.ProcessPoolExecutor`` (the stdlib's or tress's)."""

    def load() -> SimpleNamespace:
        cls = importlib.import_module(module).ProcessPoolExecutor

        def make() -> _Pool:
            ex = cls(max_workers=WORKERS, mp_context=_context())
            return _executor_pool(module, ex)

        return SimpleNamespace(__name__=module, make=make)

    return load


def _load_mp_pool() -> SimpleNamespace:
    def make() -> _Pool:
        return _mp_pool("multiprocessing.Pool", _context().Pool(WORKERS))

    return SimpleNamespace(__name__="multiprocessing", make=make)


def _load_tress_pool() -> SimpleNamespace:
    """``tress.pool.Pool``, adapted as ``multiprocessing.Pool`` is (:func:`_mp_pool`)."""
    cls = importlib.import_module("tress.pool").Pool

    def make() -> _Pool:
        return _mp_pool("tress.pool.Pool", cls(processes=WORKERS, context=_context()))

    return SimpleNamespace(__name__="tress.pool", make=make)


def _load_loky() -> SimpleNamespace:
    try:
        loky = importlib.import_module("loky")
        backend = importlib.import_module("loky.backend.context")
    except ImportError as exc:
        raise ImportError("loky is not installed (pip install loky)") from exc
    with warnings.catch_warnings():
        # "fork start method should not be used with loky": asked for here,
        # so that every pool of the scenario starts its workers the same way
        warnings.simplefilter("ignore", UserWarning)
        context = backend.get_context(START_METHOD)

    def make() -> _Pool:
        ex = loky.ProcessPoolExecutor(max_workers=WORKERS, context=context)
        return _executor_pool("loky", ex)

    return SimpleNamespace(__name__="loky", make=make)


def _load_mpire() -> SimpleNamespace:
    try:
        mpire = importlib.import_module("mpire")
    except ImportError as exc:
        raise ImportError("mpire is not installed (pip install mpire)") from exc

    def make() -> _Pool:
        pool = mpire.WorkerPool(n_jobs=WORKERS, start_method=START_METHOD, keep_alive=True)
        return _mpire_pool("mpire", pool)

    return SimpleNamespace(__name__="mpire", make=make)


MP_POOL = "mp.Pool"
TRESS_POOL = "tress.Pool"
LOKY = "loky"
MPIRE = "mpire"
IDEAL = "ideal"
"""The reference of ``cpu``: the serial time in this process / WORKERS."""
PROCESSES = "processes"
"""The other reference of ``cpu``: the tasks split over WORKERS forked
processes, no pool (the machine's ceiling)."""


def _load_ideal() -> SimpleNamespace:
    return SimpleNamespace(__name__=IDEAL)


def _load_processes() -> SimpleNamespace:
    return SimpleNamespace(__name__=PROCESSES)


# --------------------------------------------------------------------------
# bounded waits, start and shutdown


def _alive(process: Any) -> bool:
    try:
        return process.exitcode is None
    except ValueError:  # closed (by its pool) after it was joined
        return False


def _kill(processes: list[Any]) -> str:
    """Terminate, then kill, the live ``processes``; what was done, in words."""
    limit = threads.HANDOFF_TIMEOUT
    alive = [p for p in processes if _alive(p)]
    if not alive:
        return "no worker process was left"
    for p in alive:
        p.terminate()
    for p in alive:
        p.join(limit)
    stubborn = [p for p in alive if _alive(p)]
    for p in stubborn:
        p.kill()
    for p in stubborn:
        p.join(limit)
    text = f"{len(alive)} worker process(es) terminated"
    if stubborn:
        text += f", {len(stubborn)} of them killed"
        left = sum(_alive(p) for p in stubborn)
        if left:
            text += f", {left} still alive"
    return text


def _close(pool: _Pool) -> None:
    """Shut ``pool`` down, bounded (see the module docs); raise
    :class:`HandoffError` if it does not stop cleanly, unless a batch failed
    already (its workers are then stopped all the same)."""
    limit = 4 * threads.HANDOFF_TIMEOUT
    try:
        threads.bounded(pool.close, f"{pool.name} shutdown", limit)
    except BaseException as exc:
        what = _kill(pool.processes)
        if not pool.failed:
            raise HandoffError(f"{pool.name}: shutdown failed ({what})") from exc
        return
    if any(_alive(p) for p in pool.processes):
        what = _kill(pool.processes)
        if not pool.failed:
            raise HandoffError(f"{pool.name}: workers still alive after the shutdown ({what})")


@contextmanager
def _forking() -> Iterator[None]:
    """Warnings silenced while a pool forks: Python 3.12+ warns about fork()
    in a process with threads (the benchmark's and the pools' own)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _abandon(pool: _Pool | None, before: set[Any]) -> None:
    """After a pool's set-up failed: shut it down (bounded, failures not
    raised), or stop the children that appeared since ``before``."""
    if pool is None:
        _kill(list(_children() - before))
        return
    pool.failed = True
    pool.processes = list(_children() - before)
    _close(pool)


def _open(impl: Any) -> _Pool:
    """A new pool of ``impl``, warmed up (every worker started and has run a
    task); its worker processes recorded for :func:`_kill`."""
    before = _children()
    pool = None
    try:
        with _forking():
            pool = impl.make()
            got = sum(pool.map(abs, range(-WARM_TASKS + 1, 1), 1))
        if got != WARM_TASKS * (WARM_TASKS - 1) // 2:
            raise RuntimeError(f"warm-up map: wrong sum {got}")
    except BaseException:
        _abandon(pool, before)
        raise
    pool.processes = list(_children() - before)
    return pool


@contextmanager
def _opened(impl: Any) -> Iterator[_Pool]:
    """:func:`_open`, then :func:`_close` after the last trial (or an error)."""
    pool = _open(impl)
    try:
        yield pool
    finally:
        _close(pool)


def _checked(pool: _Pool, body: Callable[[int], float]) -> Runner:
    """``body`` as the runner, marking ``pool`` failed when a batch raises."""

    def run(n: int) -> float:
        try:
            return body(n)
        except BaseException:
            pool.failed = True
            raise

    return run


# --------------------------------------------------------------------------
# cases


def _map(tuned: bool) -> Setup:
    """Set-up of ``map`` (default chunking) or ``map-tuned``."""

    def setup(impl: Any) -> Any:
        @contextmanager
        def made() -> Iterator[Runner]:
            with _opened(impl) as pool:
                map_ = pool.map

                def body(n: int) -> float:
                    k = n * MAP_UNIT
                    items = range(-k + 1, 1)  # abs() of these sums to k*(k-1)/2
                    chunksize = tuned_chunksize(k) if tuned else None
                    start = perf_counter()
                    total = sum(map_(abs, items, chunksize))
                    elapsed = perf_counter() - start
                    if total != k * (k - 1) // 2:
                        raise RuntimeError(f"map: results lost or duplicated (sum {total})")
                    return elapsed

                yield _checked(pool, body)

        return made()

    return setup


def _serial(n: int) -> float:
    """The ``ideal`` runner: ``n * CPU_TASKS`` tasks here, time / WORKERS."""
    total = 0
    start = perf_counter()
    for _ in itertools.repeat(None, n * CPU_TASKS):
        total += spin(CPU_SPIN)
    elapsed = perf_counter() - start
    if total != n * CPU_TASKS * CPU_RESULT:
        raise RuntimeError(f"cpu: serial tasks returned a wrong sum {total}")
    return elapsed / WORKERS


def _share(tasks: int, worker: int) -> int:
    """Tasks of ``worker`` when ``tasks`` are split statically over WORKERS."""
    return tasks // WORKERS + (worker < tasks % WORKERS)


def _spin_child(share: int, write: int, inherited: list[int]) -> None:
    """A ``processes`` child: run ``share`` tasks, write their sum (one line)
    to the pipe ``write``, and exit with :func:`os._exit` (0 if it was
    written, 1 otherwise: nothing of the parent's runs in the child)."""
    code = 1
    try:
        for fd in inherited:  # the read ends: its own and the earlier children's
            os.close(fd)
        total = 0
        for _ in itertools.repeat(None, share):
            total += spin(CPU_SPIN)
        os.write(write, b"%d\n" % total)  # a few bytes: one atomic write
        code = 0
    finally:
        os._exit(code)


def _results(reads: list[int], deadline: float) -> list[int]:
    """Each child's sum, read from its pipe (``reads``) until its line is
    complete, waiting until ``deadline`` (``time.monotonic``) at most."""
    lines = dict.fromkeys(reads, b"")
    pending = set(reads)
    poller = select.poll()
    for fd in reads:
        poller.register(fd, select.POLLIN)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"cpu: {len(pending)} of {len(reads)} processes gave no "
                               "result in time")
        for fd, _ in poller.poll(max(1, math.ceil(left * 1000))):
            chunk = os.read(fd, 64)
            if not chunk:
                raise RuntimeError("cpu: a process exited without its result "
                                   f"(got {lines[fd]!r})")
            lines[fd] += chunk
            if lines[fd].endswith(b"\n"):
                pending.discard(fd)
                poller.unregister(fd)
    return [int(lines[fd]) for fd in reads]


def _reap(pids: list[int], kill: bool) -> list[int]:
    """Wait for the children ``pids`` (after SIGKILL if ``kill``), each for at
    most ``HANDOFF_TIMEOUT`` in all; their exit codes (None: reaped by
    someone else); :class:`HandoffError` if one is still running."""
    if kill:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    codes: dict[int, int | None] = {}
    deadline = time.monotonic() + threads.HANDOFF_TIMEOUT
    while True:
        for pid in pids:
            if pid in codes:
                continue
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped already (a waitpid(-1) elsewhere)
                codes[pid] = None
                continue
            if done:
                codes[pid] = os.waitstatus_to_exitcode(status)
        if len(codes) == len(pids):
            return [codes[pid] for pid in pids]
        if time.monotonic() >= deadline:
            raise HandoffError(f"cpu: {len(pids) - len(codes)} forked process(es) still "
                               f"running {threads.HANDOFF_TIMEOUT:g} s after "
                               + ("SIGKILL" if kill else "their result"))
        time.sleep(0.001)


def _processes(n: int) -> float:
    """The ``processes`` runner: ``n * CPU_TASKS`` tasks split statically over
    WORKERS children made with :func:`os.fork`, no pool; timed from before
    the first fork to the last child's result.  The results wait ``4 *
    HANDOFF_TIMEOUT`` per iteration (a pool's bound for one map of the
    tasks); on a timeout or an error the children are killed (SIGKILL) and
    reaped, each wait bounded."""
    tasks = n * CPU_TASKS
    pids: list[int] = []
    reads: list[int] = []
    writes: list[int] = []
    ok = False
    try:
        with _forking():
            start = perf_counter()
            for worker in range(WORKERS):
                read, write = os.pipe()
                reads.append(read)
                writes.append(write)
                pid = os.fork()
                if pid == 0:  # the child: never returns
                    _spin_child(_share(tasks, worker), write, reads)
                pids.append(pid)
                os.close(writes.pop())  # EOF on its read end once the child is gone
            sums = _results(reads, time.monotonic() + n * 4 * threads.HANDOFF_TIMEOUT)
            elapsed = perf_counter() - start
        ok = True
    finally:
        for fd in reads + writes:
            os.close(fd)
        codes = _reap(pids, kill=not ok)  # outside the timed span
    failed = [code for code in codes if code not in (0, None)]
    if failed:
        raise RuntimeError(f"cpu: forked process(es) exited with {failed}")
    if sum(sums) != tasks * CPU_RESULT:
        raise RuntimeError(f"cpu: forked processes returned a wrong sum {sum(sums)}")
    return elapsed


def _cpu(impl: Any) -> Any:
    if impl.__name__ == IDEAL:
        return _serial
    if impl.__name__ == PROCESSES:
        return _processes

    @contextmanager
    def made() -> Iterator[Runner]:
        with _opened(impl) as pool:
            map_ = pool.map
            tasks = [CPU_SPIN] * CPU_TASKS

            def body(n: int) -> float:
                wrong = 0
                start = perf_counter()
                for _ in itertools.repeat(None, n):
                    for result in map_(spin, tasks, 1):
                        wrong += result != CPU_RESULT
                elapsed = perf_counter() - start
                if wrong:
                    raise RuntimeError(f"cpu: {wrong} of {n * CPU_TASKS} tasks returned "
                                       "a wrong value")
                return elapsed

            yield _checked(pool, body)

    return made()


def _round_trip(impl: Any) -> Any:
    @contextmanager
    def made() -> Iterator[Runner]:
        with _opened(impl) as pool:
            call = pool.call

            def body(n: int) -> float:
                loop = itertools.repeat(None, n)
                total = 0
                start = perf_counter()
                for _ in loop:
                    total += (call(abs, -1) + call(abs, -2) + call(abs, -3)
                              + call(abs, -4) + call(abs, -5) + call(abs, -6)
                              + call(abs, -7) + call(abs, -8) + call(abs, -9)
                              + call(abs, -10))
                elapsed = perf_counter() - start
                if total != 55 * n:
                    raise RuntimeError(f"round trip: results lost or wrong (sum {total}, "
                                       f"expected {55 * n})")
                return elapsed

            yield _checked(pool, body)

    return made()


def _backlog(impl: Any) -> Runner:
    def run(n: int) -> float:
        pool = _open(impl)  # made and warmed up outside the timed span
        queued = []
        try:
            queue = pool.queue
            items = range(BACKLOG)
            start = perf_counter()
            for _ in itertools.repeat(None, n):
                queued.append(queue(abs, items))
            elapsed = perf_counter() - start
        except BaseException:
            pool.failed = True
            raise
        finally:
            del queued
            pool.close = pool.abort  # the work is not waited for
            _close(pool)
        return elapsed

    return run


def _start(impl: Any) -> Runner:
    make = impl.make

    def run(n: int) -> float:
        elapsed = 0.0
        for _ in itertools.repeat(None, n):
            before = _children()
            pool = None
            try:
                with _forking():
                    start = perf_counter()
                    pool = make()
                    got = pool.call(abs, -7)
                    elapsed += perf_counter() - start
            except BaseException:
                _abandon(pool, before)
                raise
            pool.processes = list(_children() - before)
            _close(pool)  # outside the timed span
            if got != 7:
                raise RuntimeError(f"start: the first task returned {got!r}")
        return elapsed

    return run


# --------------------------------------------------------------------------
# the scenario

_ITEMS = "items/s"
_TASKS = "tasks/s"
_ROUND_TRIPS = "round trips/s"
_STARTS = "starts/s"
_CALLS = "calls/s"

SCENARIO = Scenario(
    name="procpool",
    description=f"process pools ({WORKERS} workers, fork): ProcessPoolExecutor, "
    "multiprocessing.Pool, tress.pool.Pool, loky and mpire; map of tiny tasks, CPU "
    "tasks, round trips, start to first result",
    implementations=(
        Implementation(STDLIB, STDLIB, _load_futures("concurrent.futures"),
                       source=f"concurrent.futures.ProcessPoolExecutor(max_workers={WORKERS})"),
        Implementation(TRESS, TRESS, _load_futures("tress.futures"),
                       source=f"tress.futures.ProcessPoolExecutor(max_workers={WORKERS})"),
        Implementation(MP_POOL, STDLIB, _load_mp_pool,
                       source=f"multiprocessing.Pool(processes={WORKERS})"),
        Implementation(TRESS_POOL, TRESS, _load_tress_pool,
                       source=f"tress.pool.Pool(processes={WORKERS})"),
        Implementation(LOKY, PEER, _load_loky,
                       source=f"loky.ProcessPoolExecutor(max_workers={WORKERS})"),
        Implementation(MPIRE, PEER, _load_mpire,
                       source=f"mpire.WorkerPool(n_jobs={WORKERS}, keep_alive=True)"),
        Implementation(IDEAL, STDLIB, _load_ideal,
                       source=f"{CPU_TASKS} tasks one after the other in this process, "
                       f"time / {WORKERS}", reference=True),
        Implementation(PROCESSES, STDLIB, _load_processes,
                       source=f"{CPU_TASKS} tasks split statically over {WORKERS} "
                       "os.fork()ed processes, no pool", reference=True),
    ),
    cases=(
        Case("map", "sum(map(abs, range(k))), tiny tasks, default arguments (stdlib "
             "and loky chunksize 1, the others their automatic chunking)",
             _ITEMS, _map(tuned=False), MAP_UNIT, Target(100.0)),
        Case("map-vs-pool", "the same map again (the target versus "
             f"multiprocessing.Pool.map, column {MP_POOL})",
             _ITEMS, _map(tuned=False), MAP_UNIT, Target(1.0, versus=MP_POOL)),
        Case("map-tuned", "the same map, explicit chunksize for every implementation: "
             f"{TUNED_CHUNKSIZE} (k / {WORKERS * TUNED_CHUNKS_PER_WORKER} if smaller; "
             "no target)", _ITEMS, _map(tuned=True), MAP_UNIT),
        Case("cpu", f"{CPU_TASKS} tasks of ~10 ms of pure-Python CPU work on {WORKERS} "
             f"workers, chunksize 1, beside serial time / {WORKERS} (column {IDEAL}) "
             f"and the same tasks on {WORKERS} forked processes without a pool "
             f"(column {PROCESSES})",
             _TASKS, _cpu, CPU_TASKS, Target(0.95, versus=IDEAL), references=(PROCESSES,)),
        Case("round-trip", "submit(abs, x).result(), one after the other (a round trip "
             "through a worker process each)", _ROUND_TRIPS, _round_trip, UNROLL,
             Target(10.0)),
        Case("backlog", f"queue {BACKLOG // 1000}k tiny calls without waiting for them "
             "(submit each; the Pool APIs: map_async, chunksize 1), until the call "
             "returns (no target)", _CALLS, _backlog, BACKLOG),
        Case("start", "create a pool, get its first result (shutdown not timed)",
             _STARTS, _start, 1, Target(1.0)),
    ),
    notes=(
        (
            f"every pool: {WORKERS} workers, start method {START_METHOD}; made and "
            "warmed up in the set-up (start: in the timed region, one per iteration), "
            "shut down after the last trial with bounded waits (workers terminated, "
            f"then killed, if it does not stop); every wait has a timeout "
            f"({threads.HANDOFF_TIMEOUT:g} s, a whole map 4x that)"
        ),
        (
            "map: each implementation's default chunking (stdlib executor and loky: "
            "chunksize 1; tress, multiprocessing.Pool and mpire: about 4 chunks per "
            "worker); the number of items is calibrated by time; map-vs-pool is the "
            f"same measurement with the target versus {MP_POOL}"
        ),
        (
            f"cpu: scaling efficiency = figure / {IDEAL} (serial time / (parallel time "
            f"* {WORKERS} workers)); {IDEAL} runs the same tasks one after the other "
            "in this process, measured in the same trials; the target >=1/1.05x "
            f"{IDEAL} means at least 95% efficiency"
        ),
        (
            f"cpu: {PROCESSES} = the machine's ceiling, the same tasks split statically "
            f"over {WORKERS} os.fork()ed processes without any pool, timed from before "
            f"the forks to the last child's result; {PROCESSES} / {IDEAL} is the "
            "efficiency the machine itself allows in this run (two busy cores of a "
            f"shared VM often give less than {WORKERS}x), tress / {PROCESSES} the pool "
            "efficiency relative to the machine's ceiling (the target stays versus "
            f"{IDEAL})"
        ),
        (
            f"{TRESS_POOL}: tress.pool.Pool, tress's drop-in multiprocessing.Pool, used "
            f"as {MP_POOL} is; the table shows ratios versus stdlib only: its ratio "
            f"versus {MP_POOL} is {TRESS_POOL}/stdlib divided by {MP_POOL}/stdlib"
        ),
        (
            f"backlog: {BACKLOG} calls queued per iteration, a batch's iterations into "
            "one fresh warm pool, stopped at once after the timed span (executors: "
            "shutdown(cancel_futures=True); pools: terminate), the work not waited for"
        ),
        (
            "start: 1 / the time from the pool's constructor to its first result; "
            "the shutdown after it is not timed"
        ),
    ),
)
