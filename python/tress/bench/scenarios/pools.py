"""Scenario ``pools``: thread pools, ``ThreadPoolExecutor`` and ``ThreadPool``.

Executor cases (``concurrent.futures`` against ``tress.futures``), each on
an executor with the stdlib's default worker count unless said otherwise:

* ``submit``: the issue's "submit+result of no-op tasks": submit ``k = n *
  SUBMIT_UNIT`` no-op tasks (``echo(i)``, returning its argument, so the
  results are checked), then ``result(timeout)`` of each, in order
  (the usual pattern: a batch of work handed to the pool, then collected);
* ``submit-seq``: ``ex.submit(noop).result(timeout)`` one after the other
  (a round trip through a worker each: two thread wake-ups, the floor on
  these VMs; reported without a target), loop unrolled ten times, methods
  bound to locals beforehand;
* ``map``: one ``sum(ex.map(abs, range(k), timeout=...))`` per batch, with
  ``k = n * MAP_UNIT`` (the batch size is calibrated by time, so the map
  grows to whatever length fills a batch);
* ``as-completed``: submit ``k = n * AS_COMPLETED_UNIT`` no-op tasks, then
  iterate ``as_completed`` over the ``k`` futures (both timed, the usual
  pattern);
* ``io-bound``: the seed's IO-bound program: :data:`IO_TASKS` tasks each
  ``time.sleep(IO_SLEEP)`` on an executor of :data:`IO_WORKERS` workers,
  then every result.  Its yardstick is the ``ideal`` reference: a run that
  takes exactly ``IO_TASKS * IO_SLEEP / IO_WORKERS`` seconds (0.1 s),
  computed rather than measured; the target ``>=1/1.05x ideal`` is "at
  least 95% of the ideal throughput", i.e. wall time at most 0.105 s.
  Beside it, the second reference ``threads``: the machine's ceiling for
  this case without any pool, the same ``n * IO_TASKS`` sleeps split
  statically over :data:`IO_WORKERS` plain :class:`threading.Thread`
  objects (each runs its share, 20 ``time.sleep(IO_SLEEP)`` one after the
  other, and counts them), started beforehand (as the pools' workers are:
  starting 100 threads takes 50-80 ms on these VMs, which would swamp the
  0.1 s) and released together by one :class:`threading.Event`, timed from
  the release to the last ``join`` (:func:`_threads`; the joins wait ``4 *
  HANDOFF_TIMEOUT`` per iteration in all, the case fails if a thread is
  still alive then, and the count of completed sleeps is checked).
  ``threads / ideal`` is the efficiency the machine itself allows in that
  run (``time.sleep`` oversleeps, and 100 threads waking together queue
  for the GIL), so ``tress / threads`` is the *pool efficiency relative to
  the machine's ceiling*: what the pool loses, apart from what the machine
  does; the target stays versus ``ideal``.  (The split is static, so the
  slowest thread's oversleeps set its time; a pool, balancing its tasks
  over its workers, can match it or beat it a little: tress was within a
  few percent of ``threads`` either way, about 0.9 of ideal.)  The
  references ``ideal`` and ``threads`` are measured in ``io-bound`` only.

``ThreadPool`` cases (``multiprocessing.pool.ThreadPool`` against
``tress.pool.ThreadPool``, default ``processes``): ``pool-map``
(``map_async(abs, range(k)).get(timeout)``, i.e. ``map`` with its default
chunking) and ``pool-imap-unordered`` (``imap_unordered(abs, range(k))``,
chunksize 1, each ``next`` with a timeout).  Where ``tress.pool`` cannot be
imported (a broken build), tress is *skipped* in these two cases.

Executors and pools are created in the set-up, outside the timed region
(warmed up so their workers exist), and shut down after the last trial;
that shutdown waits in a helper thread with a deadline, so a pool that never
stops fails the case instead of hanging.  Every wait has a timeout
(:data:`tress.bench.threads.HANDOFF_TIMEOUT`), and every result is checked.
"""

from __future__ import annotations

import importlib
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter
from types import SimpleNamespace
from typing import Any

from tress.bench import threads
from tress.bench.model import (
    STDLIB,
    TRESS,
    Case,
    Implementation,
    Runner,
    Scenario,
    Target,
    Unsupported,
)

UNROLL = 10
"""``submit(...).result()`` calls per loop iteration in ``submit``."""

SUBMIT_UNIT = 100
"""Tasks per iteration of ``submit`` (one batch of ``n * SUBMIT_UNIT``)."""

MAP_UNIT = 100
"""Items of ``map`` per iteration (one ``map`` call of ``n * MAP_UNIT``)."""

AS_COMPLETED_UNIT = 100
"""Futures per iteration of ``as-completed``."""

POOL_UNIT = 100
"""Items per iteration of the ``ThreadPool`` cases."""

IO_TASKS = 2000
IO_SLEEP = 0.005
IO_WORKERS = 100
IDEAL_SECONDS = IO_TASKS * IO_SLEEP / IO_WORKERS
"""Wall time of the IO-bound case with perfect scheduling: 0.1 s."""


def noop() -> None:
    return None


def echo(x: int) -> int:
    """The no-op task whose result can be checked."""
    return x


# --------------------------------------------------------------------------
# implementations: the executor's module and the ThreadPool class


def _load(futures_module: str, pool_module: str) -> SimpleNamespace:
    """The executor module (required) and ``ThreadPool`` (None if absent)."""
    futures = importlib.import_module(futures_module)
    try:
        pool_class = importlib.import_module(pool_module).ThreadPool
        pool_problem = None
    except (ImportError, AttributeError) as exc:
        pool_class = None
        pool_problem = f"{pool_module}.ThreadPool is not available ({type(exc).__name__}: {exc})"
    return SimpleNamespace(
        __name__=futures_module,
        futures=futures,
        ThreadPool=pool_class,
        pool_problem=pool_problem,
    )


def _implementation(name: str, futures_module: str, pool_module: str) -> Implementation:
    return Implementation(
        name=name,
        kind=name,
        load=lambda: _load(futures_module, pool_module),
        source=f"{futures_module} + {pool_module}",
    )


IDEAL = "ideal"
"""The reference of ``io-bound``: the ideal wall time, not a pool."""


def _load_ideal() -> SimpleNamespace:
    return SimpleNamespace(__name__=IDEAL)


THREADS = "threads"
"""The other reference of ``io-bound``: plain threads, no pool."""


def _load_threads() -> SimpleNamespace:
    return SimpleNamespace(__name__=THREADS)


# --------------------------------------------------------------------------
# bounded shutdown


@contextmanager
def _executor(impl: Any, workers: int | None, warm: int) -> Iterator[Any]:
    """A new executor of ``impl``, ``warm`` tasks run first, shut down after."""
    ex = impl.futures.ThreadPoolExecutor(max_workers=workers)
    try:
        gate = threading.Event()
        timeout = threads.HANDOFF_TIMEOUT
        # tasks that block until all are submitted make the pool start
        # every worker (an idle worker would take the next one otherwise)
        fs = [ex.submit(gate.wait, timeout) for _ in range(warm)]
        gate.set()
        for f in fs:
            f.result(timeout)
        yield ex
    finally:
        threads.bounded(ex.shutdown, "executor shutdown", 4 * threads.HANDOFF_TIMEOUT)


# --------------------------------------------------------------------------
# executor cases


def _submit_batch(impl: Any) -> Any:
    @contextmanager
    def made() -> Iterator[Runner]:
        with _executor(impl, None, 1) as ex:
            submit = ex.submit

            def run(n: int) -> float:
                t = threads.HANDOFF_TIMEOUT
                k = n * SUBMIT_UNIT
                total = 0
                start = perf_counter()
                fs = [submit(echo, i) for i in range(k)]
                for f in fs:
                    total += f.result(t)
                elapsed = perf_counter() - start
                if total != k * (k - 1) // 2:
                    raise RuntimeError(f"submit: results lost or wrong (sum {total})")
                return elapsed

            yield run

    return made()


def _submit_result(impl: Any) -> Any:
    @contextmanager
    def made() -> Iterator[Runner]:
        with _executor(impl, None, 1) as ex:
            submit = ex.submit

            def run(n: int) -> float:
                t = threads.HANDOFF_TIMEOUT
                loop = itertools.repeat(None, n)
                last = 0
                start = perf_counter()
                for _ in loop:
                    submit(noop).result(t)
                    submit(noop).result(t)
                    submit(noop).result(t)
                    submit(noop).result(t)
                    submit(noop).result(t)
                    submit(noop).result(t)
                    submit(noop).result(t)
                    submit(noop).result(t)
                    submit(noop).result(t)
                    last = submit(abs, -7).result(t)
                elapsed = perf_counter() - start
                if n and last != 7:
                    raise RuntimeError(f"submit(abs, -7).result() returned {last!r}")
                return elapsed

            yield run

    return made()


def _map(impl: Any) -> Any:
    @contextmanager
    def made() -> Iterator[Runner]:
        with _executor(impl, None, 1) as ex:
            map_ = ex.map

            def run(n: int) -> float:
                k = n * MAP_UNIT
                items = range(-k + 1, 1)  # abs() of these sums to k*(k-1)/2
                start = perf_counter()
                total = sum(map_(abs, items, timeout=threads.HANDOFF_TIMEOUT))
                elapsed = perf_counter() - start
                if total != k * (k - 1) // 2:
                    raise RuntimeError(f"map: results lost or duplicated (sum {total})")
                return elapsed

            yield run

    return made()


def _as_completed(impl: Any) -> Any:
    @contextmanager
    def made() -> Iterator[Runner]:
        with _executor(impl, None, 1) as ex:
            submit = ex.submit
            as_completed = getattr(impl.futures, "as_completed", None)
            if as_completed is None:
                raise Unsupported(f"{impl.__name__} has no as_completed")

            def run(n: int) -> float:
                k = n * AS_COMPLETED_UNIT
                count = 0
                start = perf_counter()
                fs = [submit(noop) for _ in itertools.repeat(None, k)]
                for f in as_completed(fs, timeout=threads.HANDOFF_TIMEOUT):
                    f.result(0)
                    count += 1
                elapsed = perf_counter() - start
                if count != k:
                    raise RuntimeError(f"as_completed yielded {count} of {k} futures")
                return elapsed

            yield run

    return made()


def _io_share(tasks: int, worker: int) -> int:
    """Sleeps of ``worker`` when ``tasks`` are split statically over IO_WORKERS."""
    return tasks // IO_WORKERS + (worker < tasks % IO_WORKERS)


def _threads(n: int) -> float:
    """The ``threads`` runner: per iteration, :data:`IO_WORKERS` plain
    threads (daemons), each running its share of the :data:`IO_TASKS`
    ``time.sleep(IO_SLEEP)`` calls one after the other, no pool.  They are
    started first (not timed, as a pool's workers are started in its
    set-up) and wait on one gate; timed from opening the gate to the last
    ``join``.  A thread gives up (sleeping nothing) if the gate stays shut
    ``HANDOFF_TIMEOUT``; the joins wait ``4 * HANDOFF_TIMEOUT`` per
    iteration in all (a thread still alive then fails the case, left
    behind); the completed sleeps are counted and checked."""
    elapsed = 0.0
    done = 0
    for _ in itertools.repeat(None, n):
        counts = [0] * IO_WORKERS
        gate = threading.Event()

        def work(worker: int, share: int, counts: list[int] = counts,
                 gate: threading.Event = gate, sleep: Any = time.sleep) -> None:
            if not gate.wait(threads.HANDOFF_TIMEOUT):
                return  # never released: the count check fails the case
            for _ in itertools.repeat(None, share):
                sleep(IO_SLEEP)
                counts[worker] += 1

        workers = [
            threading.Thread(target=work, args=(w, _io_share(IO_TASKS, w)),
                             name=f"bench-io-{w}", daemon=True)
            for w in range(IO_WORKERS)
        ]
        for thread in workers:
            thread.start()
        start = perf_counter()
        gate.set()
        deadline = time.monotonic() + 4 * threads.HANDOFF_TIMEOUT
        for thread in workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        elapsed += perf_counter() - start
        alive = sum(thread.is_alive() for thread in workers)
        if alive:
            raise threads.HandoffError(
                f"io-bound: {alive} of {IO_WORKERS} threads still running "
                f"{4 * threads.HANDOFF_TIMEOUT:g} s after the start (left behind)")
        done += sum(counts)
    if done != n * IO_TASKS:
        raise RuntimeError(f"io-bound: {done} of {n * IO_TASKS} sleeps done by the threads")
    return elapsed


def _io_bound(impl: Any) -> Any:
    if impl.__name__ == IDEAL:
        def ideal(n: int) -> float:
            return n * IDEAL_SECONDS  # by definition, nothing to run

        return ideal
    if impl.__name__ == THREADS:
        return _threads

    @contextmanager
    def made() -> Iterator[Runner]:
        with _executor(impl, IO_WORKERS, IO_WORKERS) as ex:
            submit, sleep = ex.submit, time.sleep

            def run(n: int) -> float:
                t = threads.HANDOFF_TIMEOUT
                done = 0
                start = perf_counter()
                for _ in itertools.repeat(None, n):
                    fs = [submit(sleep, IO_SLEEP) for _ in itertools.repeat(None, IO_TASKS)]
                    for f in fs:
                        f.result(t)
                        done += 1
                elapsed = perf_counter() - start
                if done != n * IO_TASKS:
                    raise RuntimeError(f"io-bound: {done} of {n * IO_TASKS} tasks done")
                return elapsed

            yield run

    return made()


# --------------------------------------------------------------------------
# ThreadPool cases


@contextmanager
def _thread_pool(impl: Any) -> Iterator[Any]:
    """A new ``ThreadPool`` of ``impl`` (default size), terminated after."""
    if impl.ThreadPool is None:
        raise Unsupported(impl.pool_problem)
    pool = impl.ThreadPool()
    try:
        # wait until every worker has taken a task (processes is not public)
        pool.map_async(abs, range(64), 1).get(threads.HANDOFF_TIMEOUT)
        yield pool
    finally:
        def stop() -> None:
            pool.close()
            pool.join()

        threads.bounded(stop, "ThreadPool close+join", 4 * threads.HANDOFF_TIMEOUT)


def _pool_map(impl: Any) -> Any:
    @contextmanager
    def made() -> Iterator[Runner]:
        with _thread_pool(impl) as pool:
            map_async = pool.map_async

            def run(n: int) -> float:
                k = n * POOL_UNIT
                items = range(-k + 1, 1)
                start = perf_counter()
                total = sum(map_async(abs, items).get(threads.HANDOFF_TIMEOUT))
                elapsed = perf_counter() - start
                if total != k * (k - 1) // 2:
                    raise RuntimeError(f"ThreadPool.map: results lost (sum {total})")
                return elapsed

            yield run

    return made()


def _pool_imap_unordered(impl: Any) -> Any:
    @contextmanager
    def made() -> Iterator[Runner]:
        with _thread_pool(impl) as pool:
            imap_unordered = pool.imap_unordered

            def run(n: int) -> float:
                k = n * POOL_UNIT
                t = threads.HANDOFF_TIMEOUT
                total = 0
                start = perf_counter()
                it = imap_unordered(abs, range(-k + 1, 1))
                for _ in itertools.repeat(None, k):
                    total += it.next(t)
                elapsed = perf_counter() - start
                if total != k * (k - 1) // 2:
                    raise RuntimeError(f"ThreadPool.imap_unordered: results lost (sum {total})")
                return elapsed

            yield run

    return made()


# --------------------------------------------------------------------------
# the scenario

_TASKS = "tasks/s"
_ITEMS = "items/s"


SCENARIO = Scenario(
    name="pools",
    description="thread pools: ThreadPoolExecutor submit, map, as_completed and "
    "IO-bound sleeps; ThreadPool map and imap_unordered",
    implementations=(
        _implementation(STDLIB, "concurrent.futures", "multiprocessing.pool"),
        _implementation(TRESS, "tress.futures", "tress.pool"),
        Implementation(IDEAL, STDLIB, _load_ideal,
                       source=f"ideal wall time {IDEAL_SECONDS:g} s", reference=True),
        Implementation(THREADS, STDLIB, _load_threads,
                       source=f"{IO_TASKS} sleeps split statically over {IO_WORKERS} "
                       "threading.Thread objects, no pool", reference=True),
    ),
    cases=(
        Case("submit", "ThreadPoolExecutor: submit k no-op tasks, then the "
             "result of each", _TASKS, _submit_batch, SUBMIT_UNIT, Target(10.0)),
        Case("submit-seq", "ThreadPoolExecutor: submit(noop).result(), one after "
             "the other (a round trip each, no target)", _TASKS, _submit_result, UNROLL),
        Case("map", "ThreadPoolExecutor: sum(map(abs, range(k))), tiny tasks, "
             "chunksize 1", _ITEMS, _map, MAP_UNIT, Target(50.0)),
        Case("as-completed", "ThreadPoolExecutor: submit k no-op tasks, iterate "
             "as_completed over the k futures (no target)", _TASKS,
             _as_completed, AS_COMPLETED_UNIT),
        Case("io-bound", f"ThreadPoolExecutor({IO_WORKERS}): {IO_TASKS} tasks each "
             f"sleeping {IO_SLEEP * 1000:g} ms, beside the ideal {IDEAL_SECONDS:g} s "
             f"(column {IDEAL}) and the same sleeps on {IO_WORKERS} plain threads "
             f"without a pool (column {THREADS})", _TASKS, _io_bound, IO_TASKS,
             Target(0.95, versus=IDEAL), references=(THREADS,)),
        Case("pool-map", "ThreadPool: map(abs, range(k)), default chunking",
             _ITEMS, _pool_map, POOL_UNIT, Target(1.0)),
        Case("pool-imap-unordered", "ThreadPool: imap_unordered(abs, range(k)), "
             "chunksize 1", _ITEMS, _pool_imap_unordered, POOL_UNIT, Target(1.0)),
    ),
    notes=(
        (
            "executors and pools are made (and their workers started) in the "
            "set-up, outside the timed region, and shut down after the last "
            f"trial; every wait has a {threads.HANDOFF_TIMEOUT:g} s timeout"
        ),
        (
            f"io-bound: ideal is {IO_TASKS} tasks in {IDEAL_SECONDS:g} s = "
            f"{IO_TASKS / IDEAL_SECONDS:g} tasks/s (computed, not measured); its "
            "target >=1/1.05x ideal means at least 95% of the ideal"
        ),
        (
            f"io-bound: {THREADS} = the machine's ceiling, the same sleeps split "
            f"statically over {IO_WORKERS} plain threading.Thread objects without any "
            f"pool ({IO_TASKS // IO_WORKERS} sleeps each, one after the other), started "
            "beforehand (as the pools' workers are) and released together by one "
            f"Event, timed from the release to the last join; {THREADS} / {IDEAL} is the "
            "efficiency the machine itself allows in this run (time.sleep oversleeps, "
            f"and {IO_WORKERS} threads waking together queue for the GIL), tress / "
            f"{THREADS} the pool efficiency relative to the machine's ceiling (the "
            f"target stays versus {IDEAL})"
        ),
        (
            "pool-*: multiprocessing.pool.ThreadPool vs tress.pool.ThreadPool; "
            "the target is to be at least as fast as the stdlib's"
        ),
    ),
)
