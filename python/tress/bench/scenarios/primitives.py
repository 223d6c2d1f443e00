"""Scenario ``primitives``: the seven ``threading`` synchronisation types.

Uncontended cases time one thread doing an operation in a loop unrolled
ten times, with every method bound to a local beforehand, so the loop
overhead is small and the same for every implementation.  Handoff cases
time round trips between the calling thread and one partner thread; every
wait has a timeout (:data:`tress.bench.threads.HANDOFF_TIMEOUT`) and the
partner is always joined, so a stuck handoff raises instead of hanging.
One untimed round trip precedes the timed ones (it absorbs the partner
thread's start-up).

Implementations: ``stdlib`` = :mod:`threading`, ``tress`` =
:mod:`tress.threading` (imported only when the scenario runs; reported as
skipped if it cannot be imported).  There are no peers for primitives.
"""

from __future__ import annotations

import collections
import itertools
import threading
from time import perf_counter
from types import ModuleType
from typing import Any

from tress.bench import threads
from tress.bench.model import (
    STDLIB,
    TRESS,
    Case,
    Runner,
    Scenario,
    Setup,
    Target,
    Unsupported,
    module_implementation,
)
from tress.bench.threads import run_with_partner, stuck

UNROLL = 10
"""Operations per loop iteration in the uncontended cases."""


def _new(mod: ModuleType, cls: str, *args: Any) -> Any:
    """``mod.<cls>(*args)``, or :class:`Unsupported` if ``mod`` lacks it."""
    factory = getattr(mod, cls, None)
    if factory is None:
        raise Unsupported(f"{mod.__name__} has no {cls}")
    return factory(*args)


# --------------------------------------------------------------------------
# uncontended: one thread, one object


def _acquire_release(cls: str) -> Setup:
    """Set-up for ``acquire(); release()`` on a new ``mod.<cls>()``."""

    def setup(mod: ModuleType) -> Runner:
        obj = _new(mod, cls)
        acquire, release = obj.acquire, obj.release

        def run(n: int) -> float:
            loop = itertools.repeat(None, n)
            start = perf_counter()
            for _ in loop:
                acquire(); release()  # noqa: E702
                acquire(); release()  # noqa: E702
                acquire(); release()  # noqa: E702
                acquire(); release()  # noqa: E702
                acquire(); release()  # noqa: E702
                acquire(); release()  # noqa: E702
                acquire(); release()  # noqa: E702
                acquire(); release()  # noqa: E702
                acquire(); release()  # noqa: E702
                acquire(); release()  # noqa: E702
            return perf_counter() - start

        return run

    return setup


def _condition_notify(mod: ModuleType) -> Runner:
    """``with c: c.notify()`` -- acquire, notify nobody, release."""
    cond = _new(mod, "Condition")
    notify = cond.notify

    def run(n: int) -> float:
        loop = itertools.repeat(None, n)
        start = perf_counter()
        for _ in loop:
            with cond:
                notify()
            with cond:
                notify()
            with cond:
                notify()
            with cond:
                notify()
            with cond:
                notify()
            with cond:
                notify()
            with cond:
                notify()
            with cond:
                notify()
            with cond:
                notify()
            with cond:
                notify()
        return perf_counter() - start

    return run


def _event_cycle(mod: ModuleType) -> Runner:
    """``set(); is_set(); clear()`` on one Event."""
    event = _new(mod, "Event")
    set_, is_set, clear = event.set, event.is_set, event.clear

    def run(n: int) -> float:
        loop = itertools.repeat(None, n)
        start = perf_counter()
        for _ in loop:
            set_(); is_set(); clear()  # noqa: E702
            set_(); is_set(); clear()  # noqa: E702
            set_(); is_set(); clear()  # noqa: E702
            set_(); is_set(); clear()  # noqa: E702
            set_(); is_set(); clear()  # noqa: E702
            set_(); is_set(); clear()  # noqa: E702
            set_(); is_set(); clear()  # noqa: E702
            set_(); is_set(); clear()  # noqa: E702
            set_(); is_set(); clear()  # noqa: E702
            set_(); is_set(); clear()  # noqa: E702
        return perf_counter() - start

    return run


def _barrier_wait(mod: ModuleType) -> Runner:
    """``wait()`` on a one-party Barrier (it trips immediately)."""
    wait = _new(mod, "Barrier", 1).wait

    def run(n: int) -> float:
        loop = itertools.repeat(None, n)
        start = perf_counter()
        for _ in loop:
            wait(); wait(); wait(); wait(); wait()  # noqa: E702
            wait(); wait(); wait(); wait(); wait()  # noqa: E702
        return perf_counter() - start

    return run


# --------------------------------------------------------------------------
# two-thread handoffs: n timed round trips after one untimed


def _condition_pingpong(mod: ModuleType) -> Runner:
    """Two threads take turns through one Condition and a shared flag."""
    _new(mod, "Condition")  # fail early (Unsupported) rather than per batch

    def run(n: int) -> float:
        timeout = threads.HANDOFF_TIMEOUT
        cond = mod.Condition()
        wait, notify = cond.wait, cond.notify
        turn = [0]  # 0: the main thread's turn, 1: the partner's

        def partner() -> None:
            with cond:
                for _ in range(n + 1):
                    while turn[0] != 1:
                        if not wait(timeout) and turn[0] != 1:
                            raise stuck("partner", "ping")
                    turn[0] = 0
                    notify()

        def main() -> float:
            with cond:
                # untimed warm-up round trip
                turn[0] = 1
                notify()
                while turn[0] != 0:
                    if not wait(timeout) and turn[0] != 0:
                        raise stuck("main", "first pong")
                loop = itertools.repeat(None, n)
                start = perf_counter()
                for _ in loop:
                    turn[0] = 1
                    notify()
                    while turn[0] != 0:
                        if not wait(timeout) and turn[0] != 0:
                            raise stuck("main", "pong")
                return perf_counter() - start

        return run_with_partner(main, partner, name="bench-condition-pingpong")

    return run


def _event_pingpong(mod: ModuleType) -> Runner:
    """Two threads take turns through two Events (ping and pong)."""
    _new(mod, "Event")

    def run(n: int) -> float:
        timeout = threads.HANDOFF_TIMEOUT
        ping, pong = mod.Event(), mod.Event()
        ping_set, ping_wait, ping_clear = ping.set, ping.wait, ping.clear
        pong_set, pong_wait, pong_clear = pong.set, pong.wait, pong.clear

        def partner() -> None:
            for _ in range(n + 1):
                if not ping_wait(timeout):
                    raise stuck("partner", "ping")
                ping_clear()
                pong_set()

        def main() -> float:
            ping_set()
            if not pong_wait(timeout):
                raise stuck("main", "first pong")
            pong_clear()
            loop = itertools.repeat(None, n)
            start = perf_counter()
            for _ in loop:
                ping_set()
                if not pong_wait(timeout):
                    raise stuck("main", "pong")
                pong_clear()
            return perf_counter() - start

        return run_with_partner(main, partner, name="bench-event-pingpong")

    return run


def _lock_handoff(mod: ModuleType) -> Runner:
    """Two threads pass control with two Locks used as binary signals.

    Both locks start held.  The main thread releases ``a`` and acquires
    ``b``; the partner acquires ``a`` and releases ``b``: one round trip.
    """
    _new(mod, "Lock")

    def run(n: int) -> float:
        timeout = threads.HANDOFF_TIMEOUT
        a, b = mod.Lock(), mod.Lock()
        a.acquire()
        b.acquire()
        a_acquire, a_release = a.acquire, a.release
        b_acquire, b_release = b.acquire, b.release

        def partner() -> None:
            for _ in range(n + 1):
                if not a_acquire(True, timeout):
                    raise stuck("partner", "release of lock a")
                b_release()

        def main() -> float:
            a_release()
            if not b_acquire(True, timeout):
                raise stuck("main", "first release of lock b")
            loop = itertools.repeat(None, n)
            start = perf_counter()
            for _ in loop:
                a_release()
                if not b_acquire(True, timeout):
                    raise stuck("main", "release of lock b")
            return perf_counter() - start

        return run_with_partner(main, partner, name="bench-lock-handoff")

    return run


# --------------------------------------------------------------------------
# many threads: contention and a bounded buffer (no DESIGN.md target)

WORKERS = 4
"""Threads in the contended cases."""


def _run_workers(bodies: list[Any], name: str) -> float:
    """Start one thread per body, time until all finish; bounded joins."""
    errors: list[BaseException] = []

    def wrap(body: Any) -> Any:
        def target() -> None:
            try:
                body()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        return target

    workers = [
        threading.Thread(target=wrap(b), name=f"{name}-{i}", daemon=True)
        for i, b in enumerate(bodies)
    ]
    start = perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join(4 * threads.HANDOFF_TIMEOUT)
    elapsed = perf_counter() - start
    if errors:
        raise errors[0]
    if any(w.is_alive() for w in workers):
        raise stuck(name, "workers to finish")
    return elapsed


def _lock_contended(mod: ModuleType) -> Runner:
    """``WORKERS`` threads each doing ``with lock: count += 1``."""
    _new(mod, "Lock")

    def run(n: int) -> float:
        lock = mod.Lock()
        count = [0]
        per = max(1, n // WORKERS)

        def body() -> None:
            for _ in itertools.repeat(None, per):
                with lock:
                    count[0] += 1

        elapsed = _run_workers([body] * WORKERS, "bench-lock-contended")
        if count[0] != per * WORKERS:
            raise RuntimeError(f"lost increments: {count[0]} != {per * WORKERS}")
        return elapsed * n / (per * WORKERS)

    return run


def _condition_buffer(mod: ModuleType) -> Runner:
    """Two producers and two consumers through a 16-slot buffer guarded by
    one Lock with two Conditions (the shape of ``queue.Queue``)."""
    _new(mod, "Condition")

    def run(n: int) -> float:
        timeout = threads.HANDOFF_TIMEOUT
        lock = mod.Lock()
        not_empty, not_full = mod.Condition(lock), mod.Condition(lock)
        buf: collections.deque[int] = collections.deque()
        got: list[int] = []
        per = max(1, n // 2)

        def producer(base: int) -> None:
            for i in range(per):
                with not_full:
                    while len(buf) >= 16:
                        if not not_full.wait(timeout):
                            raise stuck("producer", "room in the buffer")
                    buf.append(base + i)
                    not_empty.notify()

        def consumer() -> None:
            for _ in range(per):
                with not_empty:
                    while not buf:
                        if not not_empty.wait(timeout):
                            raise stuck("consumer", "an item")
                    got.append(buf.popleft())
                    not_full.notify()

        bodies = [lambda: producer(0), lambda: producer(per), consumer, consumer]
        elapsed = _run_workers(bodies, "bench-condition-buffer")
        if sorted(got) != list(range(2 * per)):
            raise RuntimeError("items lost or duplicated")
        return elapsed * n / (2 * per)

    return run


# --------------------------------------------------------------------------
# the scenario

_LOCKS = Target(1.2)
_PYTHON_PRIMITIVES = Target(10.0)
_CONDITION = Target(5.0)
_HANDOFF = Target(1.8)

_OPS = "ops/s"
_ROUND_TRIPS = "round trips/s"

SCENARIO = Scenario(
    name="primitives",
    description="threading synchronisation primitives: uncontended "
    "operations and two-thread handoffs",
    implementations=(
        module_implementation(STDLIB, STDLIB, "threading"),
        module_implementation(TRESS, TRESS, "tress.threading"),
    ),
    cases=(
        Case("lock", "Lock acquire+release", _OPS,
             _acquire_release("Lock"), UNROLL, _LOCKS),
        Case("rlock", "RLock acquire+release", _OPS,
             _acquire_release("RLock"), UNROLL, _LOCKS),
        Case("condition", "Condition `with c: c.notify()` "
             "(acquire+notify+release, nobody waiting)", _OPS,
             _condition_notify, UNROLL, _CONDITION),
        Case("semaphore", "Semaphore acquire+release", _OPS,
             _acquire_release("Semaphore"), UNROLL, _PYTHON_PRIMITIVES),
        Case("bounded-semaphore", "BoundedSemaphore acquire+release", _OPS,
             _acquire_release("BoundedSemaphore"), UNROLL, _PYTHON_PRIMITIVES),
        Case("event", "Event set+is_set+clear", _OPS,
             _event_cycle, UNROLL, _PYTHON_PRIMITIVES),
        Case("barrier", "Barrier(1).wait()", _OPS,
             _barrier_wait, UNROLL, _PYTHON_PRIMITIVES),
        Case("condition-pingpong", "two threads alternating through one "
             "Condition (wait/notify on a shared flag)", _ROUND_TRIPS,
             _condition_pingpong, 1, _HANDOFF),
        Case("event-pingpong", "two threads alternating through two Events "
             "(set/wait/clear)", _ROUND_TRIPS,
             _event_pingpong, 1, _HANDOFF),
        Case("lock-handoff", "two threads passing control with two Locks "
             "(release one, acquire the other)", _ROUND_TRIPS,
             _lock_handoff, 1, _HANDOFF),
        Case("lock-contended", f"{WORKERS} threads each doing `with lock: "
             "count += 1` (no target)", _OPS, _lock_contended),
        Case("condition-buffer", "2 producers and 2 consumers through a "
             "16-slot buffer with two Conditions over one Lock (no target)",
             "items/s", _condition_buffer),
    ),
)
