"""Argument edge cases found in review, checked against the stdlib in the
same test: the exception type (and the result) must match."""

import sys
import threading

import pytest


def outcome(fn):
    try:
        return ("ok", fn())
    except Exception as e:  # noqa: BLE001 - the type is what we compare
        return ("raised", type(e))


@pytest.mark.parametrize("blocking", [None, "x", "", 0.0, 0.5, 2**70, 0, 1, True, False, []])
@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_lock_blocking_parses_as_the_running_stdlib(mod, kind, blocking):
    """3.11 parses ``blocking`` as a C int (a float, None, a str are
    TypeErrors); 3.12 on, any object by its truth value."""
    expected = outcome(lambda: getattr(threading, kind)().acquire(blocking))
    assert outcome(lambda: getattr(mod, kind)().acquire(blocking)) == expected


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_float_blocking_on_a_held_lock(mod, kind):
    """On 3.11 ``acquire(0.5)`` raises TypeError instead of blocking; from
    3.12 on a float is a truth value: ``acquire(0.0)`` does not block."""
    lock = getattr(mod, kind)()
    held, done = threading.Event(), threading.Event()

    def hold():  # alive until the end: a new thread cannot reuse its ident
        lock.acquire()
        held.set()
        done.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    blocking, expected = (0.0, ("ok", False)) if sys.version_info >= (3, 12) else (
        0.5, ("raised", TypeError))
    result = []
    t = threading.Thread(target=lambda: result.append(outcome(lambda: lock.acquire(blocking))),
                         daemon=True)
    t.start()
    t.join(5)
    done.set()
    holder.join(5)
    assert not t.is_alive(), f"acquire({blocking}) blocked"
    assert result == [expected]


def test_semaphore_acquire_none_is_non_blocking(mod):
    sem = mod.Semaphore(0)
    assert sem.acquire(None) is False


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.acquire(timout=1),
        lambda c: c.acquire(True, blocking=False),
        lambda c: c.acquire(True, 1, 2),
    ],
)
def test_condition_acquire_rejects_bad_arguments(mod, call):
    for lock in (mod.Lock(), mod.RLock()):
        cond = mod.Condition(lock)
        with pytest.raises(TypeError):
            call(cond)


def test_rlock_restored_with_count_zero_cannot_be_released(mod):
    lock = mod.RLock()
    lock._acquire_restore((0, threading.get_ident()))
    assert lock._is_owned() is False
    with pytest.raises(RuntimeError):
        lock.release()


@pytest.mark.parametrize("n", [1.0, 1.5, 2**70, 0, -3, True])
def test_condition_notify_takes_any_number(mod, n):
    cond = mod.Condition()
    with cond:
        cond.notify(n)  # nobody waits: must simply not raise


def test_condition_notify_float_counts_like_the_stdlib_loop(mod):
    cond = mod.Condition()
    woke = []
    started = threading.Semaphore(0)

    def waiter():
        with cond:
            started.release()
            if cond.wait(timeout=10):
                woke.append(1)

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in threads:
        assert started.acquire(timeout=10)
    with cond:
        cond.notify(1.5)  # the stdlib loop notifies twice (1.5, then 0.5)
    gate = threading.Event()
    for _ in range(1000):
        if len(woke) >= 2:
            break
        gate.wait(0.01)
    assert len(woke) == 2
    with cond:
        cond.notify_all()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    assert len(woke) == 3


def test_barrier_timeout_is_only_looked_at_by_a_waiting_thread(mod):
    # The last thread to arrive never waits, so its timeout is not examined.
    assert mod.Barrier(1).wait(timeout="x") == 0
    barrier = mod.Barrier(2)
    with pytest.raises(TypeError):
        barrier.wait(timeout="x")  # has to wait: the timeout is examined
    assert not barrier.broken and barrier.n_waiting == 0
