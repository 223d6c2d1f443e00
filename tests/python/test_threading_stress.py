"""Stress with exact counts: mutual exclusion, producer/consumer hand-off,
barrier rounds.  Every thread is a threading.Thread; every wait is bounded,
so a bug fails the test instead of hanging it."""

import collections
import threading
import time

import pytest

THREADS = 8
N = 3000  # increments per thread
JOIN = 60.0


def hammer(guard_enter, guard_exit, join_all, threads=THREADS, n=N):
    """``threads`` threads each do ``n`` read-modify-write increments of a
    shared counter between guard_enter() and guard_exit()."""
    counter = [0]
    inside = [0]
    overlaps = [0]
    start = threading.Event()

    def worker():
        assert start.wait(30)
        for _ in range(n):
            guard_enter()
            try:
                inside[0] += 1
                if inside[0] != 1:
                    overlaps[0] += 1
                value = counter[0]
                # widen the race window: a switch here loses an update
                # unless the guard excludes the other threads
                if value % 31 == 0:
                    time.sleep(0)  # releases the GIL
                counter[0] = value + 1
                inside[0] -= 1
            finally:
                guard_exit()

    ts = [threading.Thread(target=worker, name=f"hammer-{i}") for i in range(threads)]
    for t in ts:
        t.start()
    start.set()
    join_all(ts, JOIN)
    assert overlaps[0] == 0, f"{overlaps[0]} times two threads were inside together"
    assert counter[0] == threads * n
    return counter[0]


def test_lock_counter(mod, join_all):
    lock = mod.Lock()
    hammer(lock.acquire, lock.release, join_all)
    assert not lock.locked()


def test_lock_counter_timed_and_try(mod, join_all):
    # mix blocking, timed and non-blocking acquires on the same lock
    lock = mod.Lock()
    ident_mod = {}

    def enter():
        k = ident_mod.setdefault(threading.get_ident(), len(ident_mod) % 3)
        if k == 0:
            assert lock.acquire()
        elif k == 1:
            while not lock.acquire(timeout=0.001):
                pass
        else:
            while not lock.acquire(False):
                time.sleep(0)

    hammer(enter, lock.release, join_all, n=1000)


def test_rlock_counter(mod, join_all):
    lock = mod.RLock()

    def enter():
        lock.acquire()
        lock.acquire()  # recursive

    def leave():
        lock.release()
        lock.release()

    hammer(enter, leave, join_all)
    assert not lock._is_owned()


@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore"])
def test_semaphore_one_counter(mod, kind, join_all):
    sem = getattr(mod, kind)(1)
    hammer(sem.acquire, sem.release, join_all)
    assert sem.acquire(False) is True
    assert sem.acquire(False) is False


def test_condition_counter(mod, join_all):
    cond = mod.Condition()
    hammer(cond.acquire, cond.release, join_all)


def test_condition_over_lock_counter(mod, join_all):
    cond = mod.Condition(mod.Lock())

    def enter():
        cond.acquire()

    hammer(enter, cond.release, join_all, n=2000)


def test_semaphore_bounds_concurrency(mod, join_all):
    limit = 3
    sem = mod.BoundedSemaphore(limit)
    guard = mod.Lock()
    now = [0]
    peak = [0]

    def enter():
        assert sem.acquire(timeout=30)
        with guard:
            now[0] += 1
            peak[0] = max(peak[0], now[0])

    def leave():
        with guard:
            now[0] -= 1
        sem.release()

    def worker():
        for _ in range(500):
            enter()
            time.sleep(0)  # let others run while holding a slot
            leave()

    ts = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in ts:
        t.start()
    join_all(ts, JOIN)
    assert 1 <= peak[0] <= limit
    assert now[0] == 0
    assert [sem.acquire(False) for _ in range(limit + 1)] == [True] * limit + [False]


@pytest.mark.parametrize("lock_kind", ["default", "Lock"])
def test_producer_consumer_exactly_once(mod, lock_kind, join_all):
    producers, consumers, per_producer = 4, 4, 2500
    total = producers * per_producer
    cond = mod.Condition(None if lock_kind == "default" else mod.Lock())
    items = collections.deque()
    capacity = 16
    done_producing = [0]
    got = [[] for _ in range(consumers)]

    def producer(p):
        for k in range(per_producer):
            with cond:
                assert cond.wait_for(lambda: len(items) < capacity, 30), "producer starved"
                items.append(p * per_producer + k)
                cond.notify_all()
        with cond:
            done_producing[0] += 1
            cond.notify_all()

    def consumer(c):
        while True:
            with cond:
                assert cond.wait_for(lambda: items or done_producing[0] == producers, 30), (
                    "consumer starved"
                )
                if not items:
                    return
                got[c].append(items.popleft())
                cond.notify_all()

    ts = [threading.Thread(target=producer, args=(p,)) for p in range(producers)]
    ts += [threading.Thread(target=consumer, args=(c,)) for c in range(consumers)]
    for t in ts:
        t.start()
    join_all(ts, JOIN)
    delivered = [x for g in got for x in g]
    assert len(delivered) == total, f"{total - len(delivered)} items lost or duplicated"
    assert sorted(delivered) == list(range(total))
    # per producer, items arrive in the order they were produced (FIFO deque)
    for g in got:
        for p in range(producers):
            mine = [x for x in g if x // per_producer == p]
            assert mine == sorted(mine)


def test_condition_notify_one_handoff(mod, join_all):
    # strict ping-pong with notify() (not notify_all): one waiter each side
    cond = mod.Condition()
    turn = ["ping"]
    log = []
    rounds = 2000

    def player(me, other):
        for _ in range(rounds):
            with cond:
                assert cond.wait_for(lambda: turn[0] == me, 30), f"{me} starved"
                log.append(me)
                turn[0] = other
                cond.notify()

    ts = [
        threading.Thread(target=player, args=("ping", "pong")),
        threading.Thread(target=player, args=("pong", "ping")),
    ]
    for t in ts:
        t.start()
    join_all(ts, JOIN)
    assert log == ["ping", "pong"] * rounds


def test_barrier_rounds(mod, join_all):
    parties, rounds = 4, 300
    actions = [0]
    b = mod.Barrier(parties, action=lambda: actions.__setitem__(0, actions[0] + 1), timeout=30)
    per_round = collections.defaultdict(list)
    lock = threading.Lock()

    def worker():
        for r in range(rounds):
            idx = b.wait()
            with lock:
                per_round[r].append(idx)

    ts = [threading.Thread(target=worker) for _ in range(parties)]
    for t in ts:
        t.start()
    join_all(ts, JOIN)
    assert actions[0] == rounds
    assert len(per_round) == rounds
    for r in range(rounds):
        assert sorted(per_round[r]) == list(range(parties)), (r, per_round[r])
    assert not b.broken and b.n_waiting == 0


def test_event_ping_pong(mod, join_all):
    a, b = mod.Event(), mod.Event()
    rounds = 1000
    count = [0]

    def pong():
        for _ in range(rounds):
            assert a.wait(30)
            a.clear()
            count[0] += 1
            b.set()

    t = threading.Thread(target=pong)
    t.start()
    for i in range(rounds):
        a.set()
        assert b.wait(30), f"no pong in round {i}"
        b.clear()
    join_all([t])
    assert count[0] == rounds


def test_semaphore_release_n_wakes_n(mod, join_all):
    sem = mod.Semaphore(0)
    n = 8
    got = []
    lock = threading.Lock()

    def worker():
        for _ in range(50):
            assert sem.acquire(timeout=30)
            with lock:
                got.append(1)

    ts = [threading.Thread(target=worker) for _ in range(n)]
    for t in ts:
        t.start()
    for _ in range(50):
        sem.release(n)
    join_all(ts, JOIN)
    assert len(got) == n * 50
    assert sem.acquire(False) is False
