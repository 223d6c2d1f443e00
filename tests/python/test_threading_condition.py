"""Condition: foreign locks both ways, notify(n) wakes exactly n, wait_for,
recursive locks released fully while waiting."""

import threading
import time

import pytest

QUIET = 0.3  # how long nobody else may wake after notify(n) (negative check)


class UserLock:
    """A lock that is nothing but the documented protocol."""

    def __init__(self):
        self._lock = threading.Lock()
        self.acquires = 0

    def acquire(self, blocking=True, timeout=-1):
        self.acquires += 1
        return self._lock.acquire(blocking, timeout)

    def release(self):
        self._lock.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


LOCKS = {
    "mod.Lock": lambda m: m.Lock(),
    "mod.RLock": lambda m: m.RLock(),
    "stdlib.Lock": lambda m: threading.Lock(),
    "stdlib.RLock": lambda m: threading.RLock(),
    "user": lambda m: UserLock(),
    "default": lambda m: None,
}
CONDITIONS = {
    "mod.Condition": lambda m: m.Condition,
    "stdlib.Condition": lambda m: threading.Condition,
}


def start_waiters(cond, n, join_all, timeout=30.0, predicate=None):
    """Start n threads blocked in cond.wait(); return (threads, woken list).

    Each waiter appends to ``ready`` while holding the lock, and the lock is
    only released inside wait(), so once the caller has taken the lock and
    seen ``len(ready) == n``, every waiter is registered in wait().
    """
    ready, woken = [], []

    def waiter(i):
        with cond:
            ready.append(i)
            if predicate is None:
                r = cond.wait(timeout)
            else:
                r = cond.wait_for(predicate, timeout)
            woken.append((i, r))

    threads = [threading.Thread(target=waiter, args=(i,), name=f"waiter-{i}") for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while True:
        with cond:
            if len(ready) == n:
                break
        assert time.monotonic() < deadline, f"only {len(ready)}/{n} waiters arrived"
        time.sleep(0.001)
    return threads, woken


@pytest.mark.parametrize("cond_kind", list(CONDITIONS))
@pytest.mark.parametrize("lock_kind", list(LOCKS))
def test_handoff_with_any_lock(mod, cond_kind, lock_kind, join_all, wait_until):
    if cond_kind == "stdlib.Condition" and lock_kind in (
        "default",
        "user",
        "stdlib.Lock",
        "stdlib.RLock",
    ):
        if mod is not threading:
            pytest.skip("no tress object involved")
    lock = LOCKS[lock_kind](mod)
    cond = CONDITIONS[cond_kind](mod)(lock)
    state = {"value": 0}
    seen = []

    def consumer():
        with cond:
            for want in range(1, 6):
                assert cond.wait_for(lambda want=want: state["value"] >= want, 30)
                seen.append(state["value"])
                state["ack"] = want
                cond.notify_all()

    t = threading.Thread(target=consumer)
    t.start()
    try:
        for v in range(1, 6):
            with cond:
                state["value"] = v
                cond.notify()
                assert cond.wait_for(lambda v=v: state.get("ack") == v, 30)
    finally:
        join_all([t])
    assert seen == [1, 2, 3, 4, 5]
    if lock_kind == "user":
        assert lock.acquires >= 5  # the Condition really went through our lock
    # the lock is free again
    assert cond.acquire(False) is True
    cond.release()


@pytest.mark.parametrize("lock_kind", ["default", "mod.Lock", "stdlib.Lock", "stdlib.RLock"])
def test_notify_n_wakes_exactly_n(mod, lock_kind, join_all, wait_until):
    cond = mod.Condition(LOCKS[lock_kind](mod))
    n = 6
    threads, woken = start_waiters(cond, n, join_all)
    try:
        expected = 0
        for k in (2, 1, 0, 3):
            with cond:
                cond.notify(k)
            expected += k
            wait_until(
                lambda expected=expected: len(woken) >= expected,
                message=f"{expected} woken waiters",
            )
            time.sleep(QUIET)  # negative check: nobody else may wake up
            assert len(woken) == expected, f"notify({k}) woke {len(woken) - expected + k}"
        with cond:
            cond.notify(100)  # more than there are waiters
    finally:
        with cond:
            cond.notify_all()
        join_all(threads)
    assert sorted(i for i, _ in woken) == list(range(n))
    assert all(r is True for _, r in woken), woken


def test_notify_all_wakes_everyone(mod, join_all):
    cond = mod.Condition()
    threads, woken = start_waiters(cond, 8, join_all)
    with cond:
        cond.notify_all()
    join_all(threads)
    assert sorted(woken) == [(i, True) for i in range(8)]


def test_notify_without_waiters_is_not_remembered(mod, join_all):
    cond = mod.Condition()
    with cond:
        cond.notify()
        cond.notify_all()
        assert cond.wait(0.05) is False  # no stored wakeup


def test_wait_for_rechecks_predicate(mod, join_all, wait_until):
    cond = mod.Condition()
    state = {"n": 0}
    evaluations = []

    def pred():
        evaluations.append(state["n"])
        return state["n"] >= 3

    threads, woken = start_waiters(cond, 1, join_all, predicate=pred)
    try:
        for i in range(1, 4):
            with cond:
                state["n"] = i
                cond.notify()
            if i < 3:
                wait_until(
                    lambda i=i: evaluations and evaluations[-1] == i,
                    message=f"predicate re-evaluated with n={i}",
                )
                assert not woken
    finally:
        join_all(threads)
    assert woken == [(0, True)]
    assert evaluations[0] == 0 and evaluations[-1] == 3


def test_wait_for_returns_truthy_value_after_notify(mod, join_all):
    cond = mod.Condition()
    box = []
    result = []

    def waiter():
        with cond:
            result.append(cond.wait_for(lambda: box and box[0], 30))

    t = threading.Thread(target=waiter)
    t.start()
    try:
        with cond:
            box.append({"payload": 1})
            cond.notify()
    finally:
        join_all([t])
    assert result == [{"payload": 1}]


@pytest.mark.parametrize("lock_kind", ["default", "mod.RLock", "stdlib.RLock"])
def test_wait_releases_recursive_lock_fully(mod, lock_kind, join_all):
    lock = LOCKS[lock_kind](mod)
    cond = mod.Condition(lock)
    notified = []

    def other():
        # can only get here if wait() dropped all three levels
        assert cond.acquire(timeout=30)
        notified.append(True)
        cond.notify()
        cond.release()

    cond.acquire()
    cond.acquire()
    cond.acquire()
    t = threading.Thread(target=other)
    t.start()
    try:
        assert cond.wait(30) is True
        assert notified == [True]
        assert cond._is_owned()
    finally:
        join_all([t])
    cond.release()
    cond.release()
    assert cond._is_owned()  # third level still held: the depth was restored
    cond.release()
    assert not cond._is_owned()
    with pytest.raises(RuntimeError):
        cond.release()


def test_stdlib_condition_over_mod_rlock_recursion(mod, join_all):
    # stdlib Condition drives the lock through _release_save/_acquire_restore
    lock = mod.RLock()
    cond = threading.Condition(lock)
    with cond, cond:
        t = threading.Thread(
            target=lambda: cond.acquire(timeout=30) and (cond.notify(), cond.release())
        )
        t.start()
        assert cond.wait(30) is True
        assert lock._recursion_count() == 2
    join_all([t])
    assert not lock._is_owned()


def test_condition_exports_lock_api(mod):
    cond = mod.Condition()
    assert cond.acquire() is True
    assert cond.acquire(False) is True
    assert cond._is_owned()
    cond.release()
    cond.release()
    assert not cond._is_owned()
    with cond:
        state = cond._release_save()
        assert not cond._is_owned()
        cond._acquire_restore(state)
        assert cond._is_owned()


def test_wait_from_non_owner_thread(mod, join_all):
    cond = mod.Condition()
    errors = []
    held = threading.Event()
    done = threading.Event()

    def holder():
        with cond:
            held.set()
            done.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(10)
        for call in (lambda: cond.wait(0.01), cond.notify, cond.notify_all):
            try:
                call()
            except RuntimeError as exc:
                errors.append(str(exc))
    finally:
        done.set()
        join_all([t])
    assert errors == [
        "cannot wait on un-acquired lock",
        "cannot notify on un-acquired lock",
        "cannot notify on un-acquired lock",
    ]
