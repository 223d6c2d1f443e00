"""Stress with exact accounting: 8 producer threads and 8 consumer threads
move numbered items through bounded and unbounded queues; every item is
delivered exactly once (checked by sequence numbers), FIFO queues keep each
producer's order as seen by any one consumer, and ``join()`` returns once
every item was marked done.

tress moves ``TRESS_QUEUE_STRESS_N`` items per producer (default 100 000)
through ``Queue``; the other kinds, and the stdlib (which does ~100 k items/s
thread to thread) as the reference, move fewer.  Every blocking call has a
timeout, every join a deadline: a lost item fails the test, it does not hang
it.
"""

import os
import queue
import threading
import time

import pytest


PRODUCERS = 8
CONSUMERS = 8
N_TRESS = int(os.environ.get("TRESS_QUEUE_STRESS_N", "100000"))
N_STDLIB = int(os.environ.get("TRESS_QUEUE_STRESS_N_STDLIB", "4000"))
OP_TIMEOUT = 30.0  # every put/get; far above any legitimate wait
DEADLINE = 60.0  # for all threads of a case together
SENTINEL_PRIORITY = float("inf")


# (kind, maxsize, share of N): maxsize None is SimpleQueue
CASES = [
    ("Queue", 0, 1.0),
    ("Queue", 64, 1.0),
    ("Queue", 1, 0.03),
    ("LifoQueue", 64, 0.25),
    ("PriorityQueue", 64, 0.25),
    ("PriorityQueue", 0, 0.25),
    ("SimpleQueue", None, 0.5),
]


def make_item(kind, producer, seq):
    # a PriorityQueue orders by (seq, producer): always comparable, distinct
    return (seq, producer) if kind == "PriorityQueue" else (producer, seq)


def split_item(kind, item):
    return (item[1], item[0]) if kind == "PriorityQueue" else item


def run_case(qmod, kind, maxsize, n, join_all):
    q = getattr(qmod, kind)() if maxsize is None else getattr(qmod, kind)(maxsize)
    has_join = kind != "SimpleQueue"
    start = threading.Event()
    received = [[] for _ in range(CONSUMERS)]
    errors = []

    def producer(pid):
        try:
            assert start.wait(30)
            # a mix of calls: blocking with a timeout, positional, nowait
            for seq in range(n):
                item = make_item(kind, pid, seq)
                if pid % 3 == 0:
                    q.put(item, timeout=OP_TIMEOUT)
                elif pid % 3 == 1 or (maxsize is not None and maxsize > 0):
                    q.put(item, True, OP_TIMEOUT)
                else:
                    q.put_nowait(item)  # unbounded: never Full
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(("producer", pid, repr(exc)))

    def consumer(cid):
        got = received[cid]
        try:
            assert start.wait(30)
            while True:
                if cid % 2:
                    item = q.get(timeout=OP_TIMEOUT)
                else:
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        item = q.get(True, OP_TIMEOUT)
                if item is None or (kind == "PriorityQueue" and item[0] == SENTINEL_PRIORITY):
                    if has_join:
                        q.task_done()
                    return
                got.append(item)
                if has_join:
                    q.task_done()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(("consumer", cid, repr(exc)))

    producers = [
        threading.Thread(target=producer, args=(i,), name=f"producer-{i}", daemon=True)
        for i in range(PRODUCERS)
    ]
    consumers = [
        threading.Thread(target=consumer, args=(i,), name=f"consumer-{i}", daemon=True)
        for i in range(CONSUMERS)
    ]
    for t in producers + consumers:
        t.start()
    t0 = time.monotonic()
    start.set()
    join_all(producers, DEADLINE)
    assert not errors, errors
    sentinel = (SENTINEL_PRIORITY, -1) if kind == "PriorityQueue" else None
    joined = []
    if has_join:
        # every item produced; join() returns once each was got and marked
        # done (the sentinels go in afterwards, so a LifoQueue cannot hand a
        # sentinel out before the items)
        joiner = threading.Thread(target=lambda: joined.append(q.join()), daemon=True)
        joiner.start()
        join_all([joiner], DEADLINE)
        assert joined == [None]
    for _ in range(CONSUMERS):
        q.put(sentinel, timeout=OP_TIMEOUT)
    join_all(consumers, DEADLINE)
    elapsed = time.monotonic() - t0
    assert not errors, errors
    if has_join:
        q.join()  # the sentinels were marked done too
        with pytest.raises(ValueError):
            q.task_done()
    assert q.qsize() == 0 and q.empty()

    # exactly once, by sequence number
    seen = [bytearray(n) for _ in range(PRODUCERS)]
    total = 0
    for got in received:
        for item in got:
            pid, seq = split_item(kind, item)
            seen[pid][seq] += 1
        total += len(got)
    for pid in range(PRODUCERS):
        missing = seen[pid].count(0)
        dup = sum(1 for c in seen[pid] if c > 1)
        assert missing == 0 and dup == 0, (
            f"producer {pid}: {missing} items never delivered, {dup} delivered more than once"
        )
    assert total == PRODUCERS * n
    if kind in ("Queue", "SimpleQueue"):
        # FIFO: one consumer sees each producer's items in increasing order
        for cid, got in enumerate(received):
            last = [-1] * PRODUCERS
            for pid, seq in got:
                assert seq > last[pid], f"consumer {cid} got {pid}:{seq} after {pid}:{last[pid]}"
                last[pid] = seq
    return elapsed


@pytest.mark.parametrize("kind, maxsize, share", CASES, ids=[f"{k}-{m}" for k, m, _ in CASES])
def test_producers_consumers(qmod, kind, maxsize, share, join_all):
    base = N_STDLIB if qmod is queue else N_TRESS
    n = max(100, int(base * share))
    elapsed = run_case(qmod, kind, maxsize, n, join_all)
    print(
        f"\n[stress] {qmod.__name__:11s} {kind}({maxsize}) {PRODUCERS}x{n} items: "
        f"{elapsed:.2f}s, {PRODUCERS * n / elapsed:,.0f} items/s"
    )


class SlowKey:
    """A PriorityQueue item compared in Python code that gives up the GIL
    now and then: other threads run put/get while a comparison is under way
    (the classic trap for a native queue that holds an internal lock while
    it calls __lt__)."""

    __slots__ = ("producer", "seq")

    def __init__(self, seq, producer):
        self.seq = seq
        self.producer = producer

    def __lt__(self, other):
        if (self.seq ^ other.seq) & 7 == 0:
            time.sleep(0)  # releases the GIL
        return (self.seq, self.producer) < (other.seq, other.producer)


@pytest.mark.parametrize("maxsize", [0, 16])
def test_priority_python_comparisons_release_gil(qmod, maxsize, join_all):
    n = 1000 if qmod is queue else 2000
    q = qmod.PriorityQueue(maxsize)
    workers = 4
    got = [[] for _ in range(workers)]
    errors = []
    stop_seq = 10**9  # sorts after every real item

    def producer(pid):
        try:
            for seq in range(n):
                q.put(SlowKey(seq, pid), timeout=OP_TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    def consumer(cid):
        try:
            while True:
                item = q.get(timeout=OP_TIMEOUT)
                q.task_done()
                if item.seq == stop_seq:
                    return
                got[cid].append((item.producer, item.seq))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    producers = [threading.Thread(target=producer, args=(i,), daemon=True) for i in range(workers)]
    consumers = [threading.Thread(target=consumer, args=(i,), daemon=True) for i in range(workers)]
    for t in producers + consumers:
        t.start()
    join_all(producers, DEADLINE)
    joined = []
    joiner = threading.Thread(target=lambda: joined.append(q.join()), daemon=True)
    joiner.start()
    join_all([joiner], DEADLINE)
    for i in range(workers):
        q.put(SlowKey(stop_seq, i), timeout=OP_TIMEOUT)
    join_all(consumers, DEADLINE)
    assert not errors, errors
    assert joined == [None]
    delivered = sorted(x for g in got for x in g)
    assert delivered == sorted((p, s) for p in range(workers) for s in range(n))
    assert q.empty()
