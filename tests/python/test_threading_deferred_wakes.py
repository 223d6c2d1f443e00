"""A tress Condition over a tress Lock/RLock wakes its notified waiters when
the lock is released (whichever way it is released), not while the notifier
still holds it. These tests pin that no waiter is ever left asleep."""

import threading

import pytest

tt = pytest.importorskip("tress.threading", reason="tress extension not built")

TIMEOUT = 10.0


def start_waiters(cond, n, woke):
    ready = threading.Semaphore(0)

    def waiter():
        with cond:
            ready.release()
            if cond.wait(timeout=TIMEOUT):
                woke.append(threading.get_ident())

    threads = [threading.Thread(target=waiter) for _ in range(n)]
    for t in threads:
        t.start()
    for _ in range(n):
        assert ready.acquire(timeout=TIMEOUT)
    # Every waiter is inside wait() once it can no longer hold the lock.
    return threads


def join_all(threads):
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive()


@pytest.mark.parametrize("locktype", ["Lock", "RLock"])
def test_released_through_the_lock_object(locktype):
    lock = getattr(tt, locktype)()
    cond = tt.Condition(lock)
    woke = []
    threads = start_waiters(cond, 3, woke)
    with lock:  # released by the lock's own __exit__, not the condition's
        cond.notify(2)
    # Two waiters return notified (each within TIMEOUT, or wait() says False).
    deadline = threading.Event()
    for _ in range(int(TIMEOUT / 0.01)):
        if len(woke) == 2:
            break
        deadline.wait(0.01)
    assert len(woke) == 2
    with lock:
        cond.notify()
    join_all(threads)
    assert len(woke) == 3


def test_rlock_wakes_only_once_fully_released():
    lock = tt.RLock()
    cond = tt.Condition(lock)
    woke = []
    threads = start_waiters(cond, 1, woke)
    lock.acquire()
    lock.acquire()
    cond.notify()
    lock.release()
    assert not woke  # still held: the waiter cannot have returned
    lock.release()
    join_all(threads)
    assert len(woke) == 1


def test_lock_released_by_another_thread_after_notify():
    lock = tt.Lock()
    cond = tt.Condition(lock)
    woke = []
    threads = start_waiters(cond, 2, woke)
    lock.acquire()
    cond.notify_all()
    releaser = threading.Thread(target=lock.release)  # a Lock has no owner
    releaser.start()
    releaser.join(TIMEOUT)
    join_all(threads)
    assert len(woke) == 2


def test_notify_all_then_release_wakes_every_waiter():
    cond = tt.Condition(tt.Lock())
    woke = []
    threads = start_waiters(cond, 5, woke)
    cond.acquire()
    cond.notify_all()
    cond.release()
    join_all(threads)
    assert len(woke) == 5
