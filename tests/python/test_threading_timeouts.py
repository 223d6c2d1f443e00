"""Timeouts are honoured: a timed wait that cannot succeed returns its
failure value no earlier than the timeout and well before a second
(wide band: a loaded machine may be slow, it may never be early); a timed
wait that can succeed returns promptly; the object is intact afterwards."""

import threading
import time
from contextlib import contextmanager

import pytest

T = 0.05  # the timeout under test
UPPER = 1.0  # "nothing insane happened"


def timed(call):
    t0 = time.monotonic()
    result = call()
    return result, time.monotonic() - t0


def assert_timed_out(dt, timeout=T):
    assert dt >= timeout, f"returned after {dt:.4f} s, before the {timeout} s timeout"
    assert dt < UPPER, f"returned after {dt:.4f} s for a {timeout} s timeout"


@contextmanager
def held_elsewhere(lock, join_all):
    """Hold ``lock`` in another thread for the duration of the block."""
    acquired = threading.Event()
    done = threading.Event()

    def holder():
        with lock:
            acquired.set()
            done.wait(60)

    t = threading.Thread(target=holder, name="holder")
    t.start()
    try:
        assert acquired.wait(10), "holder thread did not acquire the lock"
        yield
    finally:
        done.set()
        join_all([t])


# --------------------------------------------------------------------------
# locks


def test_lock_acquire_timeout(mod):
    lock = mod.Lock()
    lock.acquire()
    for call in (lambda: lock.acquire(timeout=T), lambda: lock.acquire(True, T)):
        result, dt = timed(call)
        assert result is False
        assert_timed_out(dt)
    # state after a timeout (CPython issue #11618)
    assert lock.locked()
    lock.release()
    assert not lock.locked()
    assert lock.acquire(blocking=False) is True
    lock.release()


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_lock_held_by_other_thread_timeout(mod, kind, join_all):
    lock = getattr(mod, kind)()
    with held_elsewhere(lock, join_all):
        result, dt = timed(lambda: lock.acquire(timeout=T))
        assert result is False
        assert_timed_out(dt)
        result, dt = timed(lambda: lock.acquire(timeout=0))
        assert result is False and dt < UPPER
        assert lock.acquire(False) is False
        if kind == "RLock":
            assert not lock._is_owned()
    assert lock.acquire(timeout=5) is True
    lock.release()


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_timed_acquire_succeeds_on_release(mod, kind, join_all):
    lock = getattr(mod, kind)()
    got = []
    started = threading.Event()

    def waiter():
        started.set()
        got.append(timed(lambda: lock.acquire(timeout=10)))
        lock.release()

    lock.acquire()
    t = threading.Thread(target=waiter)
    t.start()
    assert started.wait(10)
    lock.release()
    join_all([t])
    ((result, dt),) = got
    assert result is True
    assert dt < 5, f"acquire(timeout=10) took {dt:.3f} s after the release"


# --------------------------------------------------------------------------
# semaphores


@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore"])
def test_semaphore_acquire_timeout(mod, kind):
    sem = getattr(mod, kind)(1)
    assert sem.acquire(timeout=T) is True
    result, dt = timed(lambda: sem.acquire(timeout=T))
    assert result is False
    assert_timed_out(dt)
    result, dt = timed(lambda: sem.acquire(True, T))
    assert result is False
    assert_timed_out(dt)
    # the failed acquires took nothing
    sem.release()
    assert sem.acquire(False) is True
    assert sem.acquire(False) is False


def test_semaphore_zero_timeout(mod):
    sem = mod.Semaphore(0)
    result, dt = timed(lambda: sem.acquire(timeout=0))
    assert result is False and dt < UPPER
    result, dt = timed(lambda: sem.acquire(timeout=T))
    assert result is False
    assert_timed_out(dt)
    assert repr(sem).endswith("value=0>")


# --------------------------------------------------------------------------
# Event, Condition, Barrier


def test_event_wait_timeout(mod):
    ev = mod.Event()
    result, dt = timed(lambda: ev.wait(T))
    assert result is False
    assert_timed_out(dt)
    result, dt = timed(lambda: ev.wait(timeout=T))
    assert result is False
    assert_timed_out(dt)
    assert not ev.is_set()
    ev.set()
    result, dt = timed(lambda: ev.wait(T))
    assert result is True and dt < T


@pytest.mark.parametrize("lock", ["default", "Lock", "RLock"])
def test_condition_wait_timeout(mod, lock):
    inner = None if lock == "default" else getattr(mod, lock)()
    cond = mod.Condition(inner)
    with cond:
        result, dt = timed(lambda: cond.wait(T))
        assert result is False
        assert_timed_out(dt)
        # the lock is held again after the timed-out wait
        assert cond._is_owned()
        if lock == "Lock":
            assert inner.locked()
        elif lock == "RLock":
            assert inner._is_owned()
        result, dt = timed(lambda: cond.wait_for(lambda: False, T))
        assert result is False
        assert_timed_out(dt)
        result, dt = timed(lambda: cond.wait_for(lambda: False, timeout=T))
        assert result is False
        assert_timed_out(dt)
    # released by the with block: another thread can take it
    assert cond.acquire(False) is True
    cond.release()


def test_condition_wait_for_timeout_evaluates_predicate(mod):
    cond = mod.Condition()
    calls = []

    def pred():
        calls.append(cond._is_owned())
        return False

    with cond:
        result, dt = timed(lambda: cond.wait_for(pred, T))
    assert result is False
    assert_timed_out(dt)
    assert len(calls) >= 2  # before waiting and after the timeout
    assert all(calls), "the predicate must run with the lock held"


def test_barrier_wait_timeout(mod, check_error):
    b = mod.Barrier(2)
    t0 = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        b.wait(T)
    assert_timed_out(time.monotonic() - t0)
    assert b.broken is True
    assert b.n_waiting == 0
    with pytest.raises(threading.BrokenBarrierError):
        b.wait(T)  # broken: fails at once
    b.reset()
    assert b.broken is False


def test_barrier_default_timeout(mod):
    b = mod.Barrier(2, timeout=T)
    t0 = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        b.wait()
    assert_timed_out(time.monotonic() - t0)
    assert b.broken is True


def test_barrier_explicit_timeout_overrides_default(mod):
    b = mod.Barrier(2, timeout=30)
    t0 = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        b.wait(T)
    assert_timed_out(time.monotonic() - t0)


# --------------------------------------------------------------------------
# a timed wait from threading.Thread threads, many at once


def test_many_timed_waits_in_threads(mod, join_all):
    lock = mod.Lock()
    lock.acquire()
    sem = mod.Semaphore(0)
    ev = mod.Event()
    cond = mod.Condition()
    results = []

    def cond_wait():
        with cond:
            return cond.wait(T)

    calls = [
        lambda: lock.acquire(timeout=T),
        lambda: sem.acquire(timeout=T),
        lambda: ev.wait(T),
        cond_wait,
    ]

    def worker(call):
        results.append(timed(call))

    threads = [threading.Thread(target=worker, args=(c,)) for c in calls * 4]
    for t in threads:
        t.start()
    join_all(threads)
    assert len(results) == len(threads)
    for result, dt in results:
        assert result is False
        assert dt >= T, f"a timed wait returned after {dt:.4f} s"
        assert dt < 5
    lock.release()
