"""The GIL is released while a call blocks: with thread A parked in a
blocking call, another Python thread keeps executing bytecode.  (If A kept
the GIL, the whole interpreter would freeze until A's timeout, and the
counter below would not move.)"""

import sys
import threading
import time

import pytest

BLOCK_TIMEOUT = 20.0  # A's bounded wait; the test ends long before
WINDOW = 0.3  # how long we watch the counter while A is blocked


def setups(mod):
    """kind -> (blocking call for A, release action for the main thread)."""
    lock = mod.Lock()
    rlock = mod.RLock()
    sem = mod.Semaphore(0)
    ev = mod.Event()
    cond = mod.Condition()
    flag = []
    barrier = mod.Barrier(2)

    def cond_wait():
        with cond:
            return bool(cond.wait_for(lambda: flag, BLOCK_TIMEOUT))

    def cond_release():
        with cond:
            flag.append(1)
            cond.notify()

    return {
        "Lock": (lambda: lock.acquire(timeout=BLOCK_TIMEOUT), lock.release, lock.acquire),
        "Lock-untimed": (lambda: lock.acquire(), lock.release, lock.acquire),
        "RLock": (lambda: rlock.acquire(timeout=BLOCK_TIMEOUT), rlock.release, rlock.acquire),
        "Semaphore": (lambda: sem.acquire(timeout=BLOCK_TIMEOUT), sem.release, None),
        "Event": (lambda: ev.wait(BLOCK_TIMEOUT), ev.set, None),
        "Condition": (cond_wait, cond_release, None),
        "Barrier": (
            lambda: barrier.wait(BLOCK_TIMEOUT) in (0, 1),
            lambda: barrier.wait(BLOCK_TIMEOUT),
            None,
        ),
    }


@pytest.mark.parametrize(
    "kind", ["Lock", "Lock-untimed", "RLock", "Semaphore", "Event", "Condition", "Barrier"]
)
def test_gil_released_while_blocked(mod, kind, wait_blocked, join_all):
    blocking_call, release, prepare = setups(mod)[kind]
    if prepare is not None:
        prepare()  # the main thread holds the lock A wants

    result = []
    line = []

    def blocker():
        line.append(sys._getframe().f_lineno + 1)
        result.append(blocking_call())

    counter = [0]
    stop = [False]

    def spinner():
        while not stop[0]:
            counter[0] += 1

    a = threading.Thread(target=blocker, name="A-blocked")
    b = threading.Thread(target=spinner, name="B-spinner")
    a.start()
    try:
        deadline = time.monotonic() + 10
        while not line:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        wait_blocked(a, "blocker", line[0])
        b.start()
        t0 = time.monotonic()
        c0 = counter[0]
        time.sleep(WINDOW)
        c1 = counter[0]
        elapsed = time.monotonic() - t0
        assert a.is_alive() and not result, "A was not blocked during the window"
        assert c1 - c0 > 1000, f"B ran only {c1 - c0} iterations while A was blocked"
        assert elapsed < 5, f"the main thread got the GIL back only after {elapsed:.2f} s"
    finally:
        stop[0] = True
        release()
        join_all([a, b])
    assert result == [True]
