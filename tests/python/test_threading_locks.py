"""Lock and RLock behaviour: release rules, RLock ownership across threads,
the private protocol Condition relies on, _at_fork_reinit."""

import sys
import threading

import pytest


def run_in_thread(fn, join_all):
    """Run fn() in a threading.Thread; return its result or re-raise."""
    out = {}

    def body():
        try:
            out["result"] = fn()
        except BaseException as exc:  # noqa: BLE001
            out["error"] = exc

    t = threading.Thread(target=body)
    t.start()
    join_all([t])
    if "error" in out:
        raise out["error"]
    return out["result"]


def test_lock_released_by_other_thread(mod, join_all):
    lock = mod.Lock()
    lock.acquire()
    run_in_thread(lock.release, join_all)
    assert not lock.locked()
    assert lock.acquire(False) is True
    lock.release()


def test_lock_not_reentrant(mod):
    lock = mod.Lock()
    assert lock.acquire() is True
    assert lock.acquire(False) is False
    assert lock.locked()
    lock.release()
    assert not lock.locked()


def test_rlock_recursion(mod):
    lock = mod.RLock()
    for depth in range(1, 4):
        assert lock.acquire() is True
        assert lock._recursion_count() == depth
    assert lock.acquire(False) is True  # the owner never blocks
    assert lock._recursion_count() == 4
    for depth in range(3, -1, -1):
        lock.release()
        assert lock._recursion_count() == depth
    assert not lock._is_owned()
    with pytest.raises(RuntimeError, match="cannot release un-acquired lock"):
        lock.release()


def test_rlock_ownership_across_threads(mod, join_all):
    lock = mod.RLock()
    taken = threading.Event()
    go_release_one = threading.Event()
    released_one = threading.Event()
    go_release_all = threading.Event()
    owner_ident = []

    def owner():
        owner_ident.append(threading.get_ident())
        lock.acquire()
        lock.acquire()
        taken.set()
        assert go_release_one.wait(30)
        lock.release()  # still held once
        released_one.set()
        assert go_release_all.wait(30)
        lock.release()

    t = threading.Thread(target=owner)
    t.start()
    try:
        assert taken.wait(10)
        # not the owner: cannot release, does not own, cannot take it
        with pytest.raises(RuntimeError, match="cannot release un-acquired lock"):
            lock.release()
        assert lock._is_owned() is False
        assert lock._recursion_count() == 0  # counts only the caller's holds
        assert lock.acquire(False) is False
        assert f"owner={owner_ident[0]} count=2 " in repr(lock)
        go_release_one.set()
        assert released_one.wait(10)
        assert f"owner={owner_ident[0]} count=1 " in repr(lock)
        assert lock.acquire(False) is False  # one level is still held
        assert lock.acquire(timeout=0.01) is False
    finally:
        go_release_one.set()
        go_release_all.set()
        join_all([t])
    assert lock.acquire(False) is True
    assert lock._is_owned()
    lock.release()


def test_rlock_release_save_restore(mod, join_all):
    lock = mod.RLock()
    lock.acquire()
    lock.acquire()
    lock.acquire()
    state = lock._release_save()
    assert tuple(state)[0] == 3
    assert tuple(state)[1] == threading.get_ident()
    assert not lock._is_owned()
    # fully released: another thread can take and drop it
    assert run_in_thread(lambda: lock.acquire(False) and (lock.release() or True), join_all)
    lock._acquire_restore(state)
    assert lock._is_owned()
    assert lock._recursion_count() == 3
    for _ in range(3):
        lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_at_fork_reinit(mod, kind, join_all):
    # unlocked
    lock = getattr(mod, kind)()
    lock._at_fork_reinit()
    assert lock.acquire(False) is True
    lock.release()
    # locked by this thread: reset to unlocked
    lock.acquire()
    lock._at_fork_reinit()
    assert run_in_thread(lambda: lock.acquire(False), join_all) is True
    if kind == "Lock":
        lock.release()
    else:
        lock._at_fork_reinit()  # the other thread's hold
    assert lock.acquire(False) is True
    lock.release()


def test_rlock_at_fork_reinit_forgets_other_owner(mod, join_all):
    lock = mod.RLock()
    run_in_thread(lambda: lock.acquire(), join_all)  # a thread that is gone
    assert lock.acquire(False) is False
    lock._at_fork_reinit()
    assert not lock._is_owned()
    assert lock.acquire(False) is True
    assert lock._recursion_count() == 1
    lock.release()
    assert repr(lock).startswith("<unlocked ")


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_locks_from_many_threads_handoff(mod, kind, join_all):
    # a token handed round a ring of threads through per-thread locks
    n, rounds = 4, 50
    locks = [mod.Lock() for _ in range(n)]
    for lk in locks:
        lk.acquire()
    trace = []
    guard = getattr(mod, kind)()

    def member(i):
        for r in range(rounds):
            assert locks[i].acquire(timeout=30), f"member {i} starved in round {r}"
            with guard:
                trace.append(i)
            locks[(i + 1) % n].release()

    threads = [threading.Thread(target=member, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    locks[0].release()
    join_all(threads)
    assert trace == list(range(n)) * rounds


def test_acquire_returns_bool(mod):
    for lock in (mod.Lock(), mod.RLock()):
        r = lock.acquire()
        assert r is True
        lock.release()
        r = lock.acquire(blocking=False)
        assert r is True
        lock.release()


def test_lock_refcount_stable(mod):
    if not hasattr(sys, "getrefcount"):
        pytest.skip("no sys.getrefcount")
    lock = mod.Lock()
    before = sys.getrefcount(lock)
    for _ in range(1000):
        with lock:
            pass
        lock.acquire(timeout=1)
        lock.release()
    assert sys.getrefcount(lock) == before
