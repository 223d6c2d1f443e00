"""Scenario ``queues``: the four ``queue`` classes, alone and between threads.

Every class is measured in the same set of cases where its API allows
(``SimpleQueue`` has no ``maxsize`` and no ``task_done``/``join``):

* ``<class>-putget``: one thread doing ``put(item); get(False)`` pairs in a
  loop unrolled ten times, methods bound to locals beforehand (as in the
  ``primitives`` scenario);
* ``<class>-1p1c``: one producer thread putting ``n`` distinct ints, one
  consumer thread getting them;
* ``<class>-4p4c``: four producers and four consumers, ``n`` items in all;
* ``<class>-bounded``: ``1p1c`` through a queue of ``maxsize`` 100, so the
  producer keeps hitting the bound (back-pressure);
* ``<class>-join``: the ``put`` + ``task_done`` + ``join`` cycle: a worker
  thread doing ``get(); task_done()``, the timed thread putting
  :data:`JOIN_BATCH` items and then calling ``join()``, over and over.

``queue-vs-simple`` repeats ``queue-putget`` with the stdlib's C
``queue.SimpleQueue`` measured beside it (the ``SimpleQueue`` reference
implementation, measured only in that case): DESIGN.md wants tress's full
``Queue`` within 1.3x of it.

Thread cases start their threads outside the timed region: the threads meet
at a start barrier, each one times its own work, and a batch's time runs
from the first thread's start to the last one's end.  Every item is checked
for delivery (the consumers' sum of the items equals the producers'), and
every blocking call has a timeout
(:data:`tress.bench.threads.HANDOFF_TIMEOUT`): ``get`` and bounded ``put``
time out into a :class:`~tress.bench.threads.HandoffError`.  ``join()``
has no timeout in the API, so it runs in a worker thread and the calling
thread waits for that with a deadline; a ``join`` that never returns fails
the case and leaves its (daemon) thread behind.

Implementations: ``stdlib`` = :mod:`queue`, ``tress`` = :mod:`tress.queue`
(imported only when the scenario runs; reported as skipped if it cannot be
imported).  No peer is measured: faster-fifo and janus are queues between
processes and between asyncio and threads, not drop-ins for ``queue``.
"""

from __future__ import annotations

import importlib
import itertools
import threading
import time
from collections.abc import Callable
from time import perf_counter
from types import ModuleType, SimpleNamespace
from typing import Any

from tress.bench import threads
from tress.bench.model import (
    STDLIB,
    TRESS,
    Case,
    Implementation,
    Runner,
    Scenario,
    Setup,
    Target,
    Unsupported,
    module_implementation,
)
from tress.bench.threads import HandoffError, stuck

UNROLL = 10
"""``put``+``get`` pairs per loop iteration in the single-thread cases."""

WORKERS = 4
"""Producers, and consumers, in the ``4p4c`` cases."""

MAXSIZE = 100
"""``maxsize`` of the queue in the ``bounded`` cases."""

JOIN_BATCH = 100
"""Items put between two ``join()`` calls in the ``join`` cases."""


def _new(mod: Any, cls: str, *args: Any) -> Any:
    """``mod.<cls>(*args)``, or :class:`Unsupported` if ``mod`` lacks it."""
    factory = getattr(mod, cls, None)
    if factory is None:
        raise Unsupported(f"{getattr(mod, '__name__', mod)} has no {cls}")
    return factory(*args)


# --------------------------------------------------------------------------
# one thread


def _put_get(cls: str) -> Setup:
    """Set-up for ``put(item); get(False)`` pairs on a new ``mod.<cls>()``.

    ``get(False)`` rather than ``get()``: the item is there, so both take
    the same path, and a lost item raises ``Empty`` instead of hanging.
    """

    def setup(mod: ModuleType) -> Runner:
        q = _new(mod, cls)
        put, get, empty = q.put, q.get, mod.Empty
        item = 12345

        def run(n: int) -> float:
            loop = itertools.repeat(None, n)
            last = None
            try:
                start = perf_counter()
                for _ in loop:
                    put(item); get(False)  # noqa: E702
                    put(item); get(False)  # noqa: E702
                    put(item); get(False)  # noqa: E702
                    put(item); get(False)  # noqa: E702
                    put(item); get(False)  # noqa: E702
                    put(item); get(False)  # noqa: E702
                    put(item); get(False)  # noqa: E702
                    put(item); get(False)  # noqa: E702
                    put(item); get(False)  # noqa: E702
                    put(item); last = get(False)  # noqa: E702
                elapsed = perf_counter() - start
            except empty:
                raise RuntimeError(f"{cls}: get(False) right after put raised Empty") from None
            if last is not item or q.qsize() != 0:
                raise RuntimeError(f"{cls}: get returned {last!r}, qsize {q.qsize()}")
            return elapsed

        return run

    return setup


# --------------------------------------------------------------------------
# several threads


def _run_threads(bodies: list[Callable[[], None]], name: str) -> float:
    """Run each body in its own thread, started together; return the span.

    The threads wait at a start barrier (so thread creation is not timed),
    each times its own body, and the result runs from the earliest start to
    the latest end.  The calling thread only waits, with a deadline of
    ``4 * HANDOFF_TIMEOUT`` (every wait in a body times out before that);
    the first exception of a body is re-raised, and a thread still running
    at the deadline is a :class:`HandoffError` (the daemon thread is left
    behind).
    """
    timeout = threads.HANDOFF_TIMEOUT
    start_line = threading.Barrier(len(bodies), timeout=timeout)
    spans: list[tuple[float, float]] = []
    errors: list[BaseException] = []

    def wrap(body: Callable[[], None]) -> Callable[[], None]:
        def target() -> None:
            try:
                start_line.wait()
                begin = perf_counter()
                body()
                spans.append((begin, perf_counter()))
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)
                start_line.abort()

        return target

    workers = [
        threading.Thread(target=wrap(body), name=f"{name}-{body.__name__}-{i}", daemon=True)
        for i, body in enumerate(bodies)
    ]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 4 * timeout
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    if errors:
        raise errors[0]
    alive = [w.name for w in workers if w.is_alive()]
    if alive:
        raise HandoffError(
            f"{name}: thread(s) {', '.join(alive)} still running "
            f"{4 * timeout:g} s after the start (left behind as daemons)"
        )
    return max(end for _, end in spans) - min(begin for begin, _ in spans)


def _producer(mod: Any, q: Any, items: range, bounded: bool) -> Callable[[], None]:
    """Body: ``put`` each of ``items`` (with a timeout if ``bounded``)."""
    put, full = q.put, mod.Full

    def producer() -> None:
        if not bounded:  # put on an unbounded queue never blocks
            for i in items:
                put(i)
            return
        timeout = threads.HANDOFF_TIMEOUT
        try:
            for i in items:
                put(i, True, timeout)
        except full:
            raise stuck("producer", "room in the queue") from None

    return producer


def _consumer(mod: Any, q: Any, count: int, totals: list[int]) -> Callable[[], None]:
    """Body: ``get`` ``count`` items (with a timeout), add their sum to ``totals``."""
    get, empty = q.get, mod.Empty

    def consumer() -> None:
        timeout = threads.HANDOFF_TIMEOUT
        total = 0
        try:
            for _ in itertools.repeat(None, count):
                total += get(True, timeout)
        except empty:
            raise stuck("consumer", "item") from None
        totals.append(total)

    return consumer


def _transfer(cls: str, pairs: int, maxsize: int = 0) -> Setup:
    """Set-up for ``pairs`` producers and ``pairs`` consumers moving ``n``
    items (``max(1, n // pairs)`` per producer) through one ``mod.<cls>``."""

    def setup(mod: ModuleType) -> Runner:
        args = (maxsize,) if maxsize else ()
        _new(mod, cls, *args)  # fail early (Unsupported) rather than per batch

        def run(n: int) -> float:
            q = _new(mod, cls, *args)
            per = max(1, n // pairs)
            totals: list[int] = []
            bodies = [
                _producer(mod, q, range(p * per, (p + 1) * per), bool(maxsize))
                for p in range(pairs)
            ] + [_consumer(mod, q, per, totals) for _ in range(pairs)]
            elapsed = _run_threads(bodies, f"bench-{cls}-{pairs}p{pairs}c")
            expected = pairs * per
            if sum(totals) != expected * (expected - 1) // 2 or q.qsize() != 0:
                raise RuntimeError(f"{cls}: items lost or duplicated")
            return elapsed * n / expected

        return run

    return setup


def _join_cycle(cls: str) -> Setup:
    """Set-up for ``n`` cycles of ``JOIN_BATCH`` puts and one ``join()``,
    with one worker thread doing ``get(); task_done()``."""

    def setup(mod: ModuleType) -> Runner:
        probe = _new(mod, cls)
        if not hasattr(probe, "join") or not hasattr(probe, "task_done"):
            raise Unsupported(f"{cls} has no task_done/join")

        def run(n: int) -> float:
            q = _new(mod, cls)
            put, join = q.put, q.join
            get, task_done, empty = q.get, q.task_done, mod.Empty
            batch = range(JOIN_BATCH)
            done = [0]

            def producer() -> None:
                for _ in itertools.repeat(None, n):
                    for i in batch:
                        put(i)
                    join()  # bounded by _run_threads' deadline

            def worker() -> None:
                timeout = threads.HANDOFF_TIMEOUT
                count = 0
                try:
                    for _ in itertools.repeat(None, n * JOIN_BATCH):
                        count += get(True, timeout)
                        task_done()
                except empty:
                    raise stuck("worker", "item") from None
                done[0] = count

            elapsed = _run_threads([producer, worker], f"bench-{cls}-join")
            if done[0] != n * sum(batch) or q.qsize() != 0:
                raise RuntimeError(f"{cls}: items lost or duplicated")
            return elapsed

        return run

    return setup


# --------------------------------------------------------------------------
# the scenario

SIMPLE_QUEUE = "SimpleQueue"
"""The reference implementation: the stdlib's C ``queue.SimpleQueue``."""


def _load_simple_queue() -> SimpleNamespace:
    """The stdlib's ``SimpleQueue`` standing in for ``Queue``."""
    queue = importlib.import_module("queue")
    return SimpleNamespace(
        __name__="queue.SimpleQueue",
        Queue=queue.SimpleQueue,
        Empty=queue.Empty,
        Full=queue.Full,
    )


_QUEUE_TARGETS = {
    "putget": Target(20.0),
    "1p1c": Target(30.0),
    "4p4c": Target(30.0),
    "bounded": Target(30.0),
    "join": Target(10.0),
}
"""DESIGN.md's targets for Queue, LifoQueue and PriorityQueue (the stdlib's
three are all Python-level, so all three get the same)."""

#: tress's Queue within 1.3x of the stdlib's C SimpleQueue, single thread
_VERSUS_SIMPLE = Target(1 / 1.3, versus=SIMPLE_QUEUE)

_PAIRS = "put+get/s"
_ITEMS = "items/s"


def _class_cases(prefix: str, cls: str) -> tuple[Case, ...]:
    """The five cases of a class with the full Queue API."""
    t = _QUEUE_TARGETS
    return (
        Case(f"{prefix}-putget", f"{cls} put+get pairs, one thread", _PAIRS,
             _put_get(cls), UNROLL, t["putget"]),
        Case(f"{prefix}-1p1c", f"{cls}: 1 producer thread, 1 consumer thread",
             _ITEMS, _transfer(cls, 1), 1, t["1p1c"]),
        Case(f"{prefix}-4p4c", f"{cls}: {WORKERS} producer threads, "
             f"{WORKERS} consumer threads", _ITEMS,
             _transfer(cls, WORKERS), 1, t["4p4c"]),
        Case(f"{prefix}-bounded", f"{cls}(maxsize={MAXSIZE}): 1 producer, "
             "1 consumer (back-pressure)", _ITEMS,
             _transfer(cls, 1, MAXSIZE), 1, t["bounded"]),
        Case(f"{prefix}-join", f"{cls}: {JOIN_BATCH} puts then join(), a worker "
             "thread doing get+task_done", _ITEMS,
             _join_cycle(cls), JOIN_BATCH, t["join"]),
    )


_queue_cases = _class_cases("queue", "Queue")

SCENARIO = Scenario(
    name="queues",
    description="queue.Queue, LifoQueue, PriorityQueue and SimpleQueue: one "
    "thread, producers and consumers, back-pressure, task_done/join",
    implementations=(
        module_implementation(STDLIB, STDLIB, "queue"),
        module_implementation(TRESS, TRESS, "tress.queue"),
        Implementation(SIMPLE_QUEUE, STDLIB, _load_simple_queue,
                       source="queue.SimpleQueue", reference=True),
    ),
    cases=(
        _queue_cases[0],
        Case("queue-vs-simple", "Queue put+get pairs, one thread, beside the "
             "stdlib's C SimpleQueue (column SimpleQueue)", _PAIRS,
             _put_get("Queue"), UNROLL, _VERSUS_SIMPLE),
        *_queue_cases[1:],
        *_class_cases("lifo", "LifoQueue"),
        *_class_cases("priority", "PriorityQueue"),
        Case("simple-putget", "SimpleQueue put+get pairs, one thread (no target)",
             _PAIRS, _put_get("SimpleQueue"), UNROLL),
        Case("simple-1p1c", "SimpleQueue: 1 producer thread, 1 consumer thread "
             "(no target)", _ITEMS, _transfer("SimpleQueue", 1)),
        Case("simple-4p4c", f"SimpleQueue: {WORKERS} producer threads, "
             f"{WORKERS} consumer threads (no target)", _ITEMS,
             _transfer("SimpleQueue", WORKERS)),
    ),
    notes=(
        (
            "thread cases: threads start together at a barrier, outside the "
            "timed region; every item is checked for delivery; every wait has a "
            f"{threads.HANDOFF_TIMEOUT:g} s timeout"
        ),
        (
            "SimpleQueue is the stdlib's C queue.SimpleQueue, measured only in "
            "queue-vs-simple, where tress's Queue should be within 1.3x of it"
        ),
        (
            "simple-* cases compare with the stdlib's C SimpleQueue: DESIGN.md "
            "sets no target for them"
        ),
    ),
)
