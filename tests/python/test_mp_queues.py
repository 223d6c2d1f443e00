"""tress.multiprocessing's queues versus the stdlib's, across processes and faults.

* Contract (the ``impl`` fixture: the stdlib ``multiprocessing`` queues,
  made from a context, and ``tress.multiprocessing``'s): the same scenario
  must give the same results and exceptions on both -- round trips of
  assorted objects (in one process and through a child), ``queue.Empty``
  and ``queue.Full`` (non-blocking and after a timeout), ``qsize`` /
  ``empty`` / ``full``, ``ValueError`` once closed, ``join_thread`` before
  ``close``, ``task_done`` too often, ``join`` released by a child's
  ``task_done`` calls, ``SimpleQueue``, pickling outside a process start.
  The cross-process cases run under every start method (``ctx``: fork,
  spawn, forkserver); the child gets the queues as ``Process`` arguments.
  The stdlib's ``Queue`` hands data over through a feeder thread, so only
  what both guarantee is asserted there (e.g. ``empty()`` becomes False
  *eventually* after a put); where tress is stricter by design (the module
  docstring lists how) a tress-only test asserts it.
* tress-only: ``put`` is done when it returns (no feeder thread); the ring
  is an anonymous memfd; an item that cannot be pickled raises in ``put``
  and one that cannot be unpickled raises in ``get``, the queue intact
  either way; a message over ``capacity`` goes through (out of band; more
  in test_mp_large_messages.py); 16 MiB ``bytes`` and ``bytearray`` to a
  child and back; out-of-band
  (protocol 5) buffers; ``put_many`` / ``get_many``.
* Stress: 4 producer and 4 consumer processes move 200k numbered messages
  of 64 B to 1 MiB (raw bytes and pickled tuples); every one arrives exactly
  once, whole, and in its producer's order within each consumer.
* Faults (SIGKILL): producers killed mid-stream (what the consumer gets is
  whole and gap-free up to the kill, and it keeps getting); a consumer
  killed at an arbitrary point mid-stream (nothing fully put is lost: every
  get is reported as it starts and as it ends, so the accounting is exact
  up to the one message a get that was cut short may have taken out); a
  consumer killed while it unpickles its message (exact: the message is
  delivered again); the queue works both ways afterwards, and nothing new
  appears under ``/dev/shm``.
* Ctrl-C: ``get`` / ``put`` blocked on the main thread of a child
  interpreter raise ``KeyboardInterrupt`` promptly, and the queue works
  afterwards.

Regressions of bugs these tests found: a reader killed between taking its
message and freeing its slot (white box: the test holds the ring's lock
through its header) must not leave the count one too high; ``get_many``
returns the items it took before one that fails to unpickle (whose error
the next get raises); ``SimpleQueue.close()`` closes; Ctrl-C handled on another thread still ends
a wait.

Every wait is bounded: gets and joins have timeouts, child processes are
reaped with a deadline and killed on overrun (``reap`` and the ``children``
fixture), and checks that something has *not* happened yet are short
bounded waits that a correct implementation never ends early.
"""

import array
import dataclasses
import datetime
import decimal
import fractions
import json
import mmap
import multiprocessing
import os
import pickle
import queue
import random
import re
import signal
import subprocess
import sys
import struct
import threading
import time
import zlib

import pytest
from _pool_workers import reap, wait_for

try:
    import tress.multiprocessing as TMP

    TMP_SKIP_REASON = None
except Exception as exc:  # noqa: BLE001 - ImportError, or a broken build
    TMP = None
    TMP_SKIP_REASON = (
        f"tress.multiprocessing is not importable ({type(exc).__name__}: {exc}); "
        "build and install it with "
        "`pip install --no-build-isolation --force-reinstall --no-deps .`"
    )

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="Linux start methods needed")

START_METHODS = ["fork", "spawn", "forkserver"]
GET = 10.0  # seconds: bound on every get/join wait in the parent
CHILD_GET = 30.0  # seconds: bound on a child's own waits (it is reaped before)
REAP = 30.0  # seconds: bound on reaping children (spawn start-up included)
NOT_YET = 0.05  # seconds: bounded check that a wait has NOT returned
MiB = 1 << 20


# --------------------------------------------------------------------------
# fixtures and helpers


class Impl:
    """Queue factories of one implementation; what was made is closed (and
    the stdlib's feeder threads joined) at teardown."""

    def __init__(self, name):
        self.name = name
        self.made = []

    @property
    def is_tress(self):
        return self.name == "tress"

    def _ctx(self, ctx):
        return ctx if ctx is not None else multiprocessing.get_context("fork")

    def Queue(self, maxsize=0, ctx=None):
        ctx = self._ctx(ctx)
        q = TMP.Queue(maxsize, ctx=ctx) if self.is_tress else ctx.Queue(maxsize)
        self.made.append(q)
        return q

    def JoinableQueue(self, maxsize=0, ctx=None):
        ctx = self._ctx(ctx)
        q = TMP.JoinableQueue(maxsize, ctx=ctx) if self.is_tress else ctx.JoinableQueue(maxsize)
        self.made.append(q)
        return q

    def SimpleQueue(self, ctx=None):
        ctx = self._ctx(ctx)
        q = TMP.SimpleQueue(ctx=ctx) if self.is_tress else ctx.SimpleQueue()
        self.made.append(q)
        return q

    def cleanup(self):
        for q in self.made:
            q.close()
            if hasattr(q, "join_thread"):
                q.join_thread()  # the stdlib's feeder thread, if it started


@pytest.fixture(params=["multiprocessing", "tress"])
def impl(request):
    """The queues under test: the stdlib's (from a context) or tress's."""
    if request.param == "tress" and TMP is None:
        pytest.skip(TMP_SKIP_REASON)
    im = Impl(request.param)
    yield im
    im.cleanup()


@pytest.fixture
def tm():
    """``tress.multiprocessing`` only (what the stdlib does not do)."""
    if TMP is None:
        pytest.skip(TMP_SKIP_REASON)
    return TMP


@pytest.fixture(params=START_METHODS)
def ctx(request):
    """A multiprocessing context for each start method."""
    return multiprocessing.get_context(request.param)


@pytest.fixture
def fork_ctx():
    return multiprocessing.get_context("fork")


def simple_get(sq, timeout=GET):
    """``SimpleQueue.get`` has no timeout: wait (bounded) until an item is
    there first, so the get cannot block."""
    wait_for(lambda: not sq.empty(), timeout, "an item in the SimpleQueue")
    return sq.get()


def shm_entries():
    """Names under /dev/shm, but the stdlib multiprocessing's semaphores
    (``sem.mp-*``): the tests that look at /dev/shm make none, and other
    suites running on the machine at the same time do."""
    try:
        return {n for n in os.listdir("/dev/shm") if not n.startswith("sem.mp-")}
    except FileNotFoundError:
        return set()


def closed_message(q):
    return f"Queue {q!r} is closed"


# --------------------------------------------------------------------------
# objects that cross the queues


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


class Tagged(bytes):
    """A bytes subclass: pickled with its type (not sent as raw bytes)."""


OBJECTS = [
    None,
    True,
    0,
    -1,
    2**100,
    3.5,
    float("inf"),
    1 + 2j,
    "",
    "h\u00e9llo \u2713",
    b"",
    b"\x00\xff" * 100,
    bytearray(b"abc"),
    (1, (2, 3)),
    [1, [2, [3]]],
    {"a": 1, "b": [1, 2]},
    {1, 2, 3},
    frozenset({"x"}),
    range(3, 10, 2),
    decimal.Decimal("1.10"),
    fractions.Fraction(3, 7),
    datetime.datetime(2024, 2, 29, 12, 0),
    Point(1, 2),
    Tagged(b"tagged"),
    Point,  # a class, by reference
    queue.Empty,
    ValueError("boom", 3),
    b"x" * MiB,
    list(range(10_000)),
]


# what a stdlib SimpleQueue's pipe holds without a reader (its put writes
# before it returns, so a single process can only queue up to the pipe size)
SMALL_OBJECTS = [o for o in OBJECTS if len(pickle.dumps(o)) < 1000]


def assert_same_objects(got, expected):
    assert len(got) == len(expected), f"{len(got)} items, expected {len(expected)}"
    for g, e in zip(got, expected):
        assert type(g) is type(e), f"{g!r:.60} is a {type(g)}, expected {type(e)}"
        if isinstance(e, BaseException):
            assert g.args == e.args
        elif isinstance(e, type):
            assert g is e
        else:
            assert g == e, f"{g!r:.60} != {e!r:.60}"


class Unpicklable:
    """Its pickling raises (in whoever pickles it)."""

    def __reduce__(self):
        raise RuntimeError("this object refuses to be pickled")


class BadState:
    """Pickles fine; its __setstate__ raises when it is unpickled."""

    def __init__(self, tag):
        self.tag = tag

    def __getstate__(self):
        return {"tag": self.tag}

    def __setstate__(self, state):
        raise LookupError(f"cannot restore {state['tag']}")


def _explode(tag):
    raise ArithmeticError(f"reconstructor of {tag} failed")


class BadReconstructor:
    """Pickles fine; its reconstructor raises when it is unpickled."""

    def __init__(self, tag):
        self.tag = tag

    def __reduce__(self):
        return (_explode, (self.tag,))


class Blob:
    """Pickled with its buffers out of band under protocol 5 (as numpy
    arrays are): the framed message format of tress.multiprocessing."""

    def __init__(self, *parts):
        self.parts = [bytes(p) for p in parts]

    def __reduce_ex__(self, protocol):
        if protocol >= 5:
            return (Blob, tuple(pickle.PickleBuffer(p) for p in self.parts))
        return (Blob, tuple(self.parts))

    def __eq__(self, other):
        return isinstance(other, Blob) and self.parts == other.parts


# --------------------------------------------------------------------------
# children (module level, so that spawn and forkserver children find them)


def _child_echo(q_in, q_out, n):
    for _ in range(n):
        q_out.put(q_in.get(timeout=CHILD_GET))


def _child_simple_echo(sq_in, sq_out, n):
    for _ in range(n):
        sq_out.put(sq_in.get())


def _child_work(jq, results, n):
    for _ in range(n):
        item = jq.get(timeout=CHILD_GET)
        results.put(item * 2)  # the result is out before the task is done
        jq.task_done()


def _child_get_one(q, results):
    results.put(("got", q.get(timeout=CHILD_GET)))


def _child_put_many(q, n):
    assert q.put_many(range(n)) == n


# ==========================================================================
# 1. contract: the same scenario on the stdlib and on tress


def test_round_trip_assorted_objects(impl):
    q = impl.Queue()
    for obj in OBJECTS:
        q.put(obj)
    assert_same_objects([q.get(timeout=GET) for _ in OBJECTS], OBJECTS)
    with pytest.raises(queue.Empty):
        q.get(timeout=NOT_YET)


def test_round_trip_through_a_child(impl, ctx, children):
    q_in, q_out = impl.Queue(ctx=ctx), impl.Queue(ctx=ctx)
    p = children(ctx, _child_echo, q_in, q_out, len(OBJECTS))
    for obj in OBJECTS:
        q_in.put(obj)
    got = [q_out.get(timeout=REAP) for _ in OBJECTS]
    reap([p])
    assert_same_objects(got, OBJECTS)


def test_get_on_an_empty_queue_raises_empty(impl):
    q = impl.Queue()
    with pytest.raises(queue.Empty):
        q.get(block=False)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(False, 5.0)  # block=False ignores the timeout
    q.put("x")
    assert q.get(timeout=GET) == "x"
    with pytest.raises(queue.Empty):
        q.get_nowait()


@pytest.mark.parametrize("timeout", [0.05, 0.2])
def test_get_timeout_raises_empty_after_about_the_timeout(impl, timeout):
    q = impl.Queue()
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=timeout)
    elapsed = time.monotonic() - t0
    assert timeout * 0.9 <= elapsed < timeout + 1.0, elapsed


def test_bounded_queue_raises_full(impl):
    q = impl.Queue(maxsize=2)
    q.put("a")
    q.put_nowait("b")
    with pytest.raises(queue.Full):
        q.put_nowait("c")
    with pytest.raises(queue.Full):
        q.put("c", block=False)
    t0 = time.monotonic()
    with pytest.raises(queue.Full):
        q.put("c", timeout=0.05)
    elapsed = time.monotonic() - t0
    assert 0.045 <= elapsed < 1.05, elapsed
    assert q.qsize() == 2
    assert q.full()
    assert q.get(timeout=GET) == "a"
    assert not q.full()
    q.put_nowait("d")  # the room made by the get
    assert [q.get(timeout=GET), q.get(timeout=GET)] == ["b", "d"]
    assert q.qsize() == 0


def test_bounded_put_waits_for_a_get_in_a_child(impl, ctx, children):
    q, results = impl.Queue(maxsize=1, ctx=ctx), impl.Queue(ctx=ctx)
    q.put("first")
    with pytest.raises(queue.Full):
        q.put("second", timeout=NOT_YET)
    p = children(ctx, _child_get_one, q, results)
    q.put("second", timeout=REAP)  # returns once the child took "first"
    assert results.get(timeout=GET) == ("got", "first")
    reap([p])
    assert q.get(timeout=GET) == "second"


def test_qsize_empty_full(impl):
    q = impl.Queue()
    assert (q.qsize(), q.empty(), q.full()) == (0, True, False)
    for i in range(3):
        q.put(i)
    assert q.qsize() == 3  # counted at put by both
    wait_for(lambda: not q.empty(), message="empty() to turn False")
    assert not q.full()  # no maxsize
    assert [q.get(timeout=GET) for _ in range(3)] == [0, 1, 2]
    assert (q.qsize(), q.empty()) == (0, True)

    b = impl.Queue(maxsize=1)
    assert not b.full()
    b.put("x")
    assert b.full() and b.qsize() == 1
    assert b.get(timeout=GET) == "x"
    assert not b.full()


def test_closed_queue_raises_value_error(impl):
    q = impl.Queue()
    q.put(1)
    assert q.get(timeout=GET) == 1
    q.close()
    for call in (lambda: q.put(2), lambda: q.put_nowait(2), q.get, q.get_nowait,
                 lambda: q.get(timeout=0.01)):
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == closed_message(q)
    q.close()  # twice is fine
    q.join_thread()  # closed: nothing to complain about


@pytest.mark.parametrize("kind", ["Queue", "JoinableQueue"])
def test_empty_on_a_closed_queue_depends_on_its_use(impl, kind):
    """A queue never put to answers ``empty()`` once closed; one this
    process put to has its end closed (the stdlib's ``OSError``; 3.13's
    ``test_closed_queue_empty_exceptions``)."""
    unused = getattr(impl, kind)()
    unused.close()
    unused.join_thread()
    assert unused.empty() is True
    used = getattr(impl, kind)()
    used.put("x")
    assert used.get(timeout=GET) == "x"
    used.close()
    used.join_thread()
    with pytest.raises(OSError, match="is closed"):
        used.empty()


def test_only_a_put_counts_as_use_of_a_queue(tm):
    """Waiting for the feeder (``join_thread``'s flush) is not a use: the
    queue, closed, still answers ``empty()``."""
    q = tm.Queue()
    assert q._ring.flush(GET) is True
    assert q._ring.fed is False
    q.close()
    q.join_thread()
    assert q.empty() is True


def test_join_thread_without_close_is_an_assertion_error(impl):
    q = impl.Queue()
    q.put("x")
    with pytest.raises(AssertionError) as info:
        q.join_thread()
    assert str(info.value) == f"Queue {q!r} not closed"
    assert q.get(timeout=GET) == "x"
    q.cancel_join_thread()  # allowed at any time, on both


def test_task_done_too_many_times_raises_value_error(impl):
    jq = impl.JoinableQueue()
    with pytest.raises(ValueError, match=r"^task_done\(\) called too many times$"):
        jq.task_done()
    jq.put("a")
    jq.put("b")
    assert jq.get(timeout=GET) == "a"
    jq.task_done()
    assert jq.get(timeout=GET) == "b"
    jq.task_done()
    with pytest.raises(ValueError, match=r"^task_done\(\) called too many times$"):
        jq.task_done()


def test_join_returns_at_once_without_tasks(impl):
    jq = impl.JoinableQueue()
    done = threading.Event()
    t = threading.Thread(target=lambda: (jq.join(), done.set()))
    t.start()
    t.join(GET)
    assert done.is_set() and not t.is_alive()


def test_join_returns_after_a_child_marks_every_task_done(impl, ctx, children):
    n = 20
    jq, results = impl.JoinableQueue(ctx=ctx), impl.Queue(ctx=ctx)
    for i in range(n):
        jq.put(i)
    joined = threading.Event()
    joiner = threading.Thread(target=lambda: (jq.join(), joined.set()), name="joiner")
    joiner.start()
    try:
        joiner.join(NOT_YET)
        assert joiner.is_alive() and not joined.is_set(), "join() returned with tasks pending"
        p = children(ctx, _child_work, jq, results, n)
        joiner.join(REAP)
        assert joined.is_set(), "join() did not return after every task_done"
    finally:
        if joiner.is_alive():  # unblock it so that it can be reported, not leaked
            for _ in range(n):
                try:
                    jq.task_done()
                except ValueError:
                    break
            joiner.join(GET)
    got = sorted(results.get(timeout=GET) for _ in range(n))
    assert got == [2 * i for i in range(n)]
    reap([p])
    with pytest.raises(ValueError):
        jq.task_done()  # every task is already done


def test_simple_queue_put_get_empty_close(impl):
    sq = impl.SimpleQueue()
    assert sq.empty()
    for obj in SMALL_OBJECTS:
        sq.put(obj)
    assert not sq.empty()  # SimpleQueue.put writes before it returns, on both
    assert_same_objects([simple_get(sq) for _ in SMALL_OBJECTS], SMALL_OBJECTS)
    assert sq.empty()
    sq.close()
    sq.close()  # twice is fine


def test_simple_queue_through_a_child(impl, ctx, children):
    n = 50
    sq_in, sq_out = impl.SimpleQueue(ctx=ctx), impl.SimpleQueue(ctx=ctx)
    p = children(ctx, _child_simple_echo, sq_in, sq_out, n)
    for i in range(n):
        sq_in.put((i, "x" * i))
    got = [simple_get(sq_out, REAP) for _ in range(n)]
    reap([p])
    assert got == [(i, "x" * i) for i in range(n)]
    assert sq_out.empty()


@pytest.mark.parametrize("kind", ["Queue", "JoinableQueue", "SimpleQueue"])
def test_pickling_a_queue_outside_process_start_raises_runtime_error(impl, kind):
    q = getattr(impl, kind)()
    with pytest.raises(RuntimeError) as info:
        pickle.dumps(q)
    assert str(info.value) == (
        f"{kind} objects should only be shared between processes through inheritance"
    )


# ==========================================================================
# 2. tress only: stricter by design, and its additions


def test_tress_put_is_done_when_it_returns(tm):
    """No feeder thread: the item is ready as put returns, in every process."""
    q = tm.Queue()
    q.put("x")
    assert (q.qsize(), q.empty()) == (1, False)
    assert q.get_nowait() == "x"
    assert (q.qsize(), q.empty()) == (0, True)
    q.close()
    q.join_thread()  # nothing to wait for
    q.cancel_join_thread()


def test_tress_capacity(tm):
    assert tm.Queue().capacity == tm.DEFAULT_CAPACITY
    assert tm.Queue(capacity=1 << 16).capacity == 1 << 16
    assert tm.Queue(capacity=1000).capacity == 1008  # rounded up to 16


def test_tress_queue_memory_is_an_anonymous_memfd(tm, fork_ctx, children):
    """Nothing named in /dev/shm: the ring is a memfd, in this process and
    in a child that got the queue."""
    before = shm_entries()
    queues = [tm.Queue(), tm.JoinableQueue(), tm.SimpleQueue()]
    for q in queues:
        target = os.readlink(f"/proc/self/fd/{q._ring.fileno()}")
        assert target.startswith("/memfd:tress-"), target
    q, back = queues[0], tm.Queue()
    p = children(fork_ctx, _child_echo, q, back, 1)
    q.put("x")
    assert back.get(timeout=REAP) == "x"
    reap([p])
    assert shm_entries() - before == set()


@pytest.mark.parametrize("bad", [lambda: 0, Unpicklable()], ids=["lambda", "reduce-raises"])
def test_unpicklable_item_raises_in_put_and_the_queue_stays_usable(tm, bad):
    with pytest.raises(Exception) as ref:
        pickle.dumps(bad, 5)
    q = tm.Queue(maxsize=3)
    q.put("before")
    with pytest.raises(type(ref.value)) as info:
        q.put(bad)
    assert str(info.value) == str(ref.value)
    with pytest.raises(type(ref.value)):
        q.put_nowait(bad)
    with pytest.raises(type(ref.value)):
        q.put_many(["a", bad, "b"])  # all pickled first: none is put
    assert q.qsize() == 1
    q.put("after")
    assert q.qsize() == 2
    assert [q.get(timeout=GET), q.get(timeout=GET)] == ["before", "after"]
    with pytest.raises(queue.Empty):
        q.get_nowait()
    assert q.put_many(["x", "y", "z"], block=False) == 3  # the bound is intact


@pytest.mark.parametrize("bad", [BadState("s"), BadReconstructor("r")],
                         ids=["setstate-raises", "reconstructor-raises"])
def test_item_that_fails_to_unpickle_raises_in_get_and_the_next_comes(tm, bad):
    with pytest.raises(Exception) as ref:
        pickle.loads(pickle.dumps(bad, 5))
    q = tm.Queue()
    q.put("first")
    q.put(bad)
    q.put("next")
    assert q.get(timeout=GET) == "first"
    with pytest.raises(type(ref.value)) as info:
        q.get(timeout=GET)
    assert str(info.value) == str(ref.value)
    assert q.qsize() == 1
    assert q.get(timeout=GET) == "next"
    with pytest.raises(queue.Empty):
        q.get_nowait()
    q.put(bad)
    with pytest.raises(type(ref.value)):
        q.get_many(5)
    q.put("last")
    assert q.get(timeout=GET) == "last"


def _sizes_in(exc):
    return {int(n) for n in re.findall(r"\d+", str(exc))}


def test_message_over_capacity_goes_through(tm):
    """No size limit but memory: a message larger than the ring goes out of
    band (a put that used to raise ValueError naming the sizes)."""
    q = tm.Queue(capacity=4096)
    text = "x" * 5000  # a pickled item: its message is the pickle
    raw = b"x" * 5000  # bytes travel unpickled, behind a small tag
    q.put("before")
    q.put(text)
    q.put_nowait(text)
    q.put(text, timeout=0.01)
    assert q.put_many([text, "a"]) == 2
    q.put(raw)
    assert q.qsize() == 7
    assert [q.get(timeout=GET) for _ in range(7)] == ["before", text, text, text, text, "a", raw]
    q.put("after")
    assert q.get(timeout=GET) == "after"
    assert q.qsize() == 0


@pytest.mark.parametrize("case", ["max-message", "40-of-64-MiB"])
def test_a_message_that_fits_goes_into_an_empty_queue(tm, case):
    """Whatever the ring's write position, an empty queue takes any message
    up to ``capacity - 16`` bytes (regression: it once counted the padding
    to the ring's end as used, and refused messages over half the capacity
    -- Full, or a put that never returned)."""
    if case == "max-message":
        q, first, second = tm.Queue(capacity=4096), "x", b"y" * (4096 - 16 - 1)
    else:
        q, first, second = tm.Queue(capacity=64 * MiB), b"a" * (30 * MiB), b"b" * (40 * MiB)
    q.put(second, timeout=GET)  # fits, at the ring's start
    assert q.get(timeout=GET) == second
    q.put(first)
    assert q.get(timeout=GET) == first
    assert q.qsize() == 0
    try:
        q.put(second, timeout=1.0)
    except queue.Full:
        raise AssertionError(
            f"an empty queue of capacity {q.capacity} refused a message of "
            f"{len(second) + 1} bytes"
        ) from None
    assert q.get(timeout=GET) == second


def test_put_many_with_an_item_over_capacity_puts_all(tm):
    q = tm.Queue(capacity=4096)
    assert q.put_many(["a", "x" * 5000, "b"]) == 3
    assert q.get_many(3, timeout=GET) == ["a", "x" * 5000, "b"]


@pytest.mark.timeout(60)
def test_16_mib_payloads_cross_to_a_child_and_back(tm, ctx, children):
    rng = random.Random(16)
    payloads = [rng.randbytes(16 * MiB), bytearray(rng.randbytes(16 * MiB))]
    q_in, q_out = tm.Queue(capacity=64 * MiB), tm.Queue(capacity=64 * MiB)
    p = children(ctx, _child_echo, q_in, q_out, len(payloads))
    for obj in payloads:
        q_in.put(obj, timeout=REAP)
    got = [q_out.get(timeout=REAP) for _ in payloads]
    reap([p])
    for g, e in zip(got, payloads):
        assert type(g) is type(e)
        assert len(g) == len(e) and g == e
    q = tm.Queue()  # the default 8 MiB ring takes it too (out of band)
    q.put(payloads[0])
    assert q.get(timeout=GET) == payloads[0]


def test_out_of_band_buffers_round_trip(tm, fork_ctx, children):
    blobs = [Blob(), Blob(b"a"), Blob(b"x" * 100_000, b"", b"yz" * 3000), Blob(bytes(range(256)))]
    q = tm.Queue()
    for b in blobs:
        q.put(b)
    assert [q.get(timeout=GET) for _ in blobs] == blobs
    q_out = tm.Queue()
    p = children(fork_ctx, _child_echo, q, q_out, len(blobs))
    q.put_many(blobs)
    assert [q_out.get(timeout=REAP) for _ in blobs] == blobs
    reap([p])


def test_put_many_and_get_many(tm):
    q = tm.Queue()
    assert q.put_many(range(10)) == 10
    assert q.put_many([]) == 0
    assert q.qsize() == 10
    assert q.get_many(4) == [0, 1, 2, 3]
    assert q.get_many(100) == [4, 5, 6, 7, 8, 9]  # fewer were ready
    assert q.get_many(0) == []
    with pytest.raises(queue.Empty):
        q.get_many(3, block=False)
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get_many(3, timeout=0.05)
    assert time.monotonic() - t0 >= 0.045

    b = tm.Queue(maxsize=3)
    assert b.put_many("abcde", block=False) == 3  # stops at the first Full
    with pytest.raises(queue.Full):
        b.put_many(["x"], block=False)  # the first found no room
    t0 = time.monotonic()
    with pytest.raises(queue.Full):
        b.put_many(["x", "y"], timeout=0.05)
    assert time.monotonic() - t0 >= 0.045
    assert b.get_many(5) == ["a", "b", "c"]
    assert b.put_many("xyz", timeout=0.05) == 3
    assert b.get_many(2) == ["x", "y"]
    assert b.get_many(2) == ["z"]
    b.close()
    with pytest.raises(ValueError):
        b.put_many([1])
    with pytest.raises(ValueError):
        b.get_many(1)


def test_get_many_with_an_item_that_fails_to_unpickle_loses_nothing_else(tm):
    q = tm.Queue()
    q.put_many(["a", "b", BadReconstructor("bad"), "c"])
    good, errors = [], 0
    for _ in range(10):  # bounded: at most one error per item
        try:
            good.extend(q.get_many(10, block=False))
        except queue.Empty:
            break
        except ArithmeticError:
            errors += 1
    assert errors == 1
    assert good == ["a", "b", "c"], f"got {good}: the others were lost"


def test_get_many_across_processes_keeps_the_order(tm, fork_ctx, children):
    n = 5000
    q = tm.Queue()
    p = children(fork_ctx, _child_put_many, q, n)
    got = []
    deadline = time.monotonic() + REAP
    while len(got) < n:
        got.extend(q.get_many(1000, timeout=max(0.01, deadline - time.monotonic())))
    reap([p])
    assert got == list(range(n))


def test_simple_queue_used_after_close_raises(tm):
    sq = tm.SimpleQueue()
    sq.close()
    for name, call in (("put", lambda: sq.put(1)), ("get", sq.get), ("empty", sq.empty)):
        try:
            call()
        except (OSError, ValueError):
            continue
        raise AssertionError(f"SimpleQueue.{name}() after close() raised nothing")


# ==========================================================================
# 3. stress: no loss, no duplicate

STRESS_N = 200_000
STRESS_PRODUCERS = 4
STRESS_CONSUMERS = 4
HDR = struct.Struct("<QII")  # seq, body size, crc32 of the body
LARGE = MiB - HDR.size  # body of a 1 MiB message


def _stress_size(seq, rng):
    if seq % 2000 == 1999:
        return LARGE  # 100 messages of 1 MiB
    if seq % 100 == 37:
        return rng.randrange(1024, 64 * 1024)  # 2000 medium ones
    return rng.randrange(64, 512) - HDR.size  # the rest: 64 B .. 512 B


def _message(seq, block, rng):
    """Raw bytes (header + body), or every third one a tuple (pickled)."""
    size = _stress_size(seq, rng)
    off = (seq * 7919) % 4096
    body = block[off:off + size]
    if seq % 3 == 0:
        return (seq, size, zlib.crc32(body), body)
    return HDR.pack(seq, size, zlib.crc32(body)) + body


def _check_message(m):
    """(seq, whole): whether the body is what its header says."""
    if isinstance(m, tuple):
        seq, size, crc, body = m
        return seq, seq % 3 == 0 and len(body) == size and zlib.crc32(body) == crc
    seq, size, crc = HDR.unpack_from(m)
    body = memoryview(m)[HDR.size:]
    return seq, seq % 3 != 0 and len(body) == size and zlib.crc32(body) == crc


def _stress_producer(q, p, nprod, n):
    rng = random.Random(1000 + p)
    block = rng.randbytes(LARGE + 4096)
    for seq in range(p, n, nprod):
        q.put(_message(seq, block, rng), timeout=CHILD_GET)


def _stress_consumer(q, conn):
    seen = array.array("Q")
    bad = []
    while True:
        m = q.get(timeout=CHILD_GET)
        if m is None:
            break
        seq, whole = _check_message(m)
        seen.append(seq)
        if not whole:
            bad.append(seq)
    conn.send_bytes(seen.tobytes())
    conn.send(bad)
    conn.close()


def _recv(conn, timeout=REAP):
    assert conn.poll(timeout), f"nothing received in {timeout} s"
    return conn.recv_bytes()


@pytest.mark.timeout(90)
def test_stress_every_message_exactly_once(tm, fork_ctx, children):
    before = shm_entries()
    t0 = time.monotonic()
    q = tm.Queue(capacity=64 * MiB)
    pipes = [fork_ctx.Pipe(duplex=False) for _ in range(STRESS_CONSUMERS)]
    consumers = [children(fork_ctx, _stress_consumer, q, w) for _, w in pipes]
    for _, w in pipes:
        w.close()
    producers = [children(fork_ctx, _stress_producer, q, p, STRESS_PRODUCERS, STRESS_N)
                 for p in range(STRESS_PRODUCERS)]
    reap(producers, timeout=60)
    for _ in consumers:
        q.put(None)
    reports = []
    for r, _ in pipes:
        seen = array.array("Q")
        seen.frombytes(_recv(r, 60))
        bad = pickle.loads(_recv(r))
        reports.append((seen, bad))
    reap(consumers)
    elapsed = time.monotonic() - t0

    assert all(not bad for _, bad in reports), [bad[:10] for _, bad in reports]
    counts = [len(seen) for seen, _ in reports]
    everything = sorted(s for seen, _ in reports for s in seen)
    assert len(everything) == STRESS_N, f"{len(everything)} delivered, {STRESS_N} put"
    assert everything == list(range(STRESS_N)), "a message was lost or duplicated"
    for seen, _ in reports:  # each producer's messages, in its order, in every consumer
        for p in range(STRESS_PRODUCERS):
            mine = [s for s in seen if s % STRESS_PRODUCERS == p]
            assert mine == sorted(mine), f"producer {p}'s messages out of order"
    assert q.qsize() == 0
    assert shm_entries() - before == set()
    print(f"stress: {STRESS_N} messages in {elapsed:.1f} s, per consumer {counts}")


# ==========================================================================
# 4. faults: processes killed with SIGKILL


def _endless_producer(q, tag, seed):
    """Numbered, checksummed messages, up to 2 MiB, until killed."""
    rng = random.Random(seed)
    block = rng.randbytes(2 * MiB + 4096)
    seq = 0
    while True:
        size = rng.choice([40, 100, 1000, 20_000, 300_000, 2 * MiB - 64])
        off = rng.randrange(4096)
        body = block[off:off + size]
        q.put((tag, seq, zlib.crc32(body), body), timeout=CHILD_GET)
        seq += 1


def _steady_producer(q, ctl, back, tag):
    """Small numbered messages until told to stop; then its last number,
    and one round trip each way through ``q``."""
    seq = 0
    while ctl.empty():
        body = bytes([seq & 255]) * (seq % 300)
        q.put((tag, seq, zlib.crc32(body), body), timeout=CHILD_GET)
        seq += 1
        time.sleep(0.001)  # throttle: leave the victims' large puts room
    assert ctl.get(timeout=CHILD_GET) == "stop"
    q.put(("end", tag, seq))
    assert ctl.get(timeout=CHILD_GET) == "go"
    back.put(("child got", q.get(timeout=CHILD_GET)))
    q.put("pong")
    back.put("done")


@pytest.mark.timeout(60)
def test_producers_killed_mid_stream(tm, fork_ctx, children):
    """Two producers of large and small messages are killed (one early, one
    later) while a third keeps going: the parent keeps receiving, every
    message is whole, each producer's numbers run from 0 without a gap up
    to the kill, and the queue still works both ways."""
    before = shm_entries()
    q = tm.Queue(capacity=8 * MiB)
    ctl, back = tm.Queue(), tm.Queue()
    victims = {
        f"victim{i}": children(fork_ctx, _endless_producer, q, f"victim{i}", i)
        for i in range(2)
    }
    steady = children(fork_ctx, _steady_producer, q, ctl, back, "steady")
    kill_after = {"victim0": 40, "victim1": 150}  # messages received from each
    seqs = {tag: [] for tag in [*victims, "steady"]}
    killed_at = {}
    max_gap_after_kill = 0.0
    end = None
    deadline = time.monotonic() + 40
    last = time.monotonic()
    while end is None:
        assert time.monotonic() < deadline, "the stream did not end in time"
        item = q.get(timeout=GET)
        now = time.monotonic()
        if killed_at:
            max_gap_after_kill = max(max_gap_after_kill, now - last)
        last = now
        if item[0] == "end":
            end = item
            break
        tag, seq, crc, body = item
        assert zlib.crc32(body) == crc, f"{tag} message {seq} is torn"
        seqs[tag].append(seq)
        for vtag, p in victims.items():
            if vtag == tag and vtag not in killed_at and len(seqs[tag]) >= kill_after[tag]:
                os.kill(p.pid, signal.SIGKILL)
                killed_at[vtag] = len(seqs[tag])
        if len(killed_at) == len(victims) and "stopped" not in killed_at:
            # every fully-put victim message is in the queue once they are
            # gone; then the steady producer's end marker comes after them
            reap(list(victims.values()), expect=-signal.SIGKILL)
            ctl.put("stop")
            killed_at["stopped"] = True
    for tag, got in seqs.items():
        assert got == list(range(len(got))), f"{tag}: numbers out of order or with a gap"
    assert end == ("end", "steady", len(seqs["steady"])), "the steady producer lost messages"
    for vtag in victims:
        assert len(seqs[vtag]) >= kill_after[vtag]
    assert max_gap_after_kill < 5.0, f"receiving stalled {max_gap_after_kill:.2f} s after a kill"
    # nothing left to get (qsize may still count what the victims' feeders
    # had kept when they died, as multiprocessing's semaphore stays taken)
    assert q.empty()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    # both ways: parent -> child and child -> parent through the same queue
    q.put("ping")
    ctl.put("go")
    assert back.get(timeout=GET) == ("child got", "ping")
    assert back.get(timeout=GET) == "done"
    assert q.get(timeout=GET) == "pong"
    reap([steady])
    print(f"producers killed after {killed_at}; received {[len(v) for v in seqs.values()]}")
    q.put_many(range(100))
    assert q.get_many(200, timeout=GET) == list(range(100))
    assert shm_entries() - before == set()


CONSUMER_N = 20_000


def _kill_producer(q, n):
    rng = random.Random(n)
    block = rng.randbytes(MiB + 4096)
    for seq in range(n):
        size = MiB if seq % 500 == 499 else rng.choice([30, 200, 2000, 30_000])
        off = rng.randrange(4096)
        body = block[off:off + size]
        q.put((seq, zlib.crc32(body), body), timeout=CHILD_GET)


def _reporting_consumer(q, reports):
    """Reports every get through ``reports`` *before* the next one: ("G", k)
    as it starts its k-th get, ("T", k, seq) once it has the message."""
    k = 0
    while True:
        reports.put(("G", k))
        item = q.get(timeout=CHILD_GET)
        if item is None:
            reports.put(("T", k, None))
            return
        seq, crc, body = item
        reports.put(("T", k, seq if zlib.crc32(body) == crc else ("torn", seq)))
        k += 1


def _drain(q):
    out = []
    while True:
        try:
            out.extend(q.get_many(10_000, block=False))
        except queue.Empty:
            return out


def _taken(reports):
    """The numbers a consumer reported, and whether it died inside a get
    (its last report a G with no T after it)."""
    seqs, open_get = [], False
    for r in reports:
        if r[0] == "G":
            open_get = True
        else:
            open_get = False
            if r[2] is not None:
                seqs.append(r[2])
    return seqs, open_get


def _reports_of(report_queues, collected):
    """Everything reported so far, appended to ``collected`` (one list per
    queue); the numbers delivered (list, with repeats)."""
    delivered = []
    for r, got in zip(report_queues, collected):
        got.extend(_drain(r))
        delivered.extend(_taken(got)[0])
    return delivered


def assert_works_both_ways(tm, q, ctx, children):
    """Parent -> child and child -> parent through ``q`` (empty on entry)."""
    assert q.qsize() == 0
    back = tm.Queue()
    p = children(ctx, _child_echo, q, back, 1)
    q.put("ping")
    assert back.get(timeout=REAP) == "ping"
    reap([p])
    p = children(ctx, _child_put_many, q, 1000)
    got = []
    deadline = time.monotonic() + REAP
    while len(got) < 1000:
        got.extend(q.get_many(1000, timeout=max(0.01, deadline - time.monotonic())))
    reap([p])
    assert got == list(range(1000))
    assert q.qsize() == 0


@pytest.mark.timeout(60)
def test_consumer_killed_mid_stream_loses_nothing(tm, fork_ctx, children):
    """Three consumers take from one producer; one is killed with SIGKILL at
    an arbitrary point mid-stream while the others keep going.

    Accounting: each consumer reports a get as it starts it, ("G", k), and
    the number it took, ("T", k, seq), before it starts the next, through a
    tress queue of its own.  Every number put must then be delivered exactly
    once, to a survivor or reported by the killed one -- except, only if the
    killed one died inside a get (a G without its T), the one message that
    get may have taken out completely, which counts as delivered to it.  A
    message it was still reading (copying, unpickling) when killed must be
    delivered again, to a survivor: before the survivors are stopped, the
    test waits (bounded) until that happened.
    """
    before = shm_entries()
    q = tm.Queue(capacity=32 * MiB)
    reports = [tm.Queue(capacity=16 * MiB) for _ in range(3)]
    consumers = [children(fork_ctx, _reporting_consumer, q, r) for r in reports]
    producer = children(fork_ctx, _kill_producer, q, CONSUMER_N)
    # The victim is the first consumer to take ~300 messages (two reports
    # per get); which one is the scheduler's choice: a consumer asleep while
    # the others keep up may take none at all.
    wait_for(lambda: max(r.qsize() for r in reports) >= 600, GET, "a consumer to take 300 messages")
    v = max(range(3), key=lambda i: reports[i].qsize())
    victim = consumers[v]
    survivors = consumers[:v] + consumers[v + 1:]
    reports = [reports[v]] + reports[:v] + reports[v + 1:]
    os.kill(victim.pid, signal.SIGKILL)
    reap([victim], expect=-signal.SIGKILL)
    mid_stream = producer.is_alive() or q.qsize() > 0
    reap([producer])
    victim_seqs, died_in_get = _taken(_drain(reports[0]))  # it is gone: complete

    collected = [[], []]
    everything = set(range(CONSUMER_N))
    deadline = time.monotonic() + REAP
    grace = None  # how long to wait for the one message a died get may hold
    while True:
        delivered = set(victim_seqs) | set(_reports_of(reports[1:], collected))
        missing = everything - delivered
        if not missing:
            break
        now = time.monotonic()
        assert now < deadline, f"{len(missing)} messages never delivered: {sorted(missing)[:10]}"
        if died_in_get and len(missing) == 1 and q.qsize() == 0:
            grace = grace or now + 2.0  # a redelivery comes within ~20 ms
            if now >= grace:
                break
        time.sleep(0.005)
    for _ in survivors:
        q.put(None)  # after every message: the survivors stop once all are taken
    deadline = time.monotonic() + REAP
    while any(p.is_alive() for p in survivors):
        assert time.monotonic() < deadline, "a survivor did not finish"
        _reports_of(reports[1:], collected)
        survivors[0].join(0.01)
    reap(survivors)
    _reports_of(reports[1:], collected)

    delivered = list(victim_seqs)
    for got in collected:
        seqs, open_get = _taken(got)
        assert not open_get, "a survivor stopped inside a get"
        delivered.extend(seqs)
    torn = [s for s in delivered if isinstance(s, tuple)]
    assert not torn, f"torn messages delivered: {torn[:5]}"
    assert len(delivered) == len(set(delivered)), "a message was delivered twice"
    assert set(delivered) <= everything
    missing = everything - set(delivered)
    if died_in_get:
        assert len(missing) <= 1, f"lost {len(missing)} messages: {sorted(missing)[:10]}"
    else:
        assert not missing, f"lost {len(missing)} messages: {sorted(missing)[:10]}"
    assert len(victim_seqs) >= 300
    assert mid_stream, "the kill came after the stream"
    print(f"victim killed after {len(victim_seqs)} messages, inside a get: {died_in_get}, "
          f"taken out by it unreported: {len(missing)}")
    assert_works_both_ways(tm, q, fork_ctx, children)
    assert shm_entries() - before == set()


def _poisoned(seq, mark):
    """A poison's reconstructor: SIGKILLs the first process to unpickle a
    poison, while it does (the message still claimed in the ring) -- the
    process that creates ``mark`` -- and returns an ordinary message
    anywhere else."""
    try:
        os.close(os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        body = b"poison"
        return (seq, zlib.crc32(body), body)
    os.kill(os.getpid(), signal.SIGKILL)


class Poison:
    def __init__(self, seq, mark):
        self.seq, self.mark = seq, mark

    def __reduce__(self):
        return (_poisoned, (self.seq, self.mark))


def _poison_producer(q, n, mark):
    rng = random.Random(n)
    for seq in range(n):
        if seq % 50 == 25:
            q.put(Poison(seq, mark), timeout=CHILD_GET)
        else:
            body = rng.randbytes(rng.choice([30, 300, 3000]))
            q.put((seq, zlib.crc32(body), body), timeout=CHILD_GET)


@pytest.mark.timeout(60)
def test_consumer_killed_while_unpickling_its_message_loses_nothing(tm, fork_ctx, children, tmp_path):
    """Deterministic counterpart of the test above: a consumer is SIGKILLed
    inside ``get`` while it unpickles a message (poison items, every 50th:
    the first consumer to unpickle one kills its own process from the
    poison's reconstructor; which consumer is the scheduler's choice).
    tress unpickles in place, with the message still claimed in the ring,
    so the message is delivered again, to a survivor: the accounting is
    exact -- every number put is delivered exactly once, to a survivor or
    reported by the victim.
    """
    n = 5000
    before = shm_entries()
    q = tm.Queue()
    reports = [tm.Queue(capacity=16 * MiB) for _ in range(3)]
    consumers = [children(fork_ctx, _reporting_consumer, q, r) for r in reports]
    producer = children(fork_ctx, _poison_producer, q, n, str(tmp_path / "victim"))
    reap([producer])
    wait_for(lambda: not all(p.is_alive() for p in consumers), REAP, "a consumer to take a poison")
    v = next(i for i, p in enumerate(consumers) if not p.is_alive())
    victim = consumers[v]
    survivors = consumers[:v] + consumers[v + 1:]
    reports = [reports[v]] + reports[:v] + reports[v + 1:]
    victim.join(REAP)
    assert victim.exitcode == -signal.SIGKILL, "the first consumer to stop did not die of a poison"
    victim_seqs, died_in_get = _taken(_drain(reports[0]))
    assert died_in_get, "the victim died outside a get"
    collected = [[], []]
    everything = set(range(n))
    deadline = time.monotonic() + REAP
    while everything - (set(victim_seqs) | set(_reports_of(reports[1:], collected))):
        assert time.monotonic() < deadline, "the poison the victim died on was not redelivered"
        time.sleep(0.005)
    for _ in survivors:
        q.put(None)
    deadline = time.monotonic() + REAP
    while any(p.is_alive() for p in survivors):
        assert time.monotonic() < deadline, "a survivor did not finish"
        _reports_of(reports[1:], collected)
        survivors[0].join(0.01)
    reap(survivors)
    delivered = list(victim_seqs) + _reports_of(reports[1:], collected)
    assert not any(_taken(got)[1] for got in collected), "a survivor stopped inside a get"
    assert not [s for s in delivered if isinstance(s, tuple)], "torn messages delivered"
    assert len(delivered) == len(set(delivered)), "a message was delivered twice"
    assert sorted(delivered) == list(range(n)), "delivered != put"
    assert_works_both_ways(tm, q, fork_ctx, children)
    assert shm_entries() - before == set()


# -- white box: a consumer killed between freeing its slot and retaking the lock
#
# ByteQueue's header (crates/tress/src/ipc/ring.rs, `struct Header`): the
# offsets of the fields this test reads or writes.
H_MAGIC, H_CAPACITY, H_MAX_MESSAGES, H_MESSAGES, H_READY = 0, 8, 16, 40, 48
H_LOCK, H_LOCK_WAITERS, H_GETTERS = 64, 68, 76
RING_MAGIC = 0x7472_6573_735F_7131  # "tress_q1"


def _header(q):
    fd = q._ring.fileno()
    m = mmap.mmap(fd, os.fstat(fd).st_size)
    if struct.unpack_from("<Q", m, H_MAGIC)[0] != RING_MAGIC or struct.unpack_from(
        "<Q", m, H_CAPACITY
    )[0] != q.capacity:
        m.close()
        pytest.fail("the ring's header layout changed: update this test's offsets")
    return m


def _u32(m, off):
    return struct.unpack_from("<I", m, off)[0]


def _u64(m, off):
    return struct.unpack_from("<Q", m, off)[0]


@pytest.mark.parametrize("bound", ["maxsize", "bytes"])
@pytest.mark.timeout(60)
def test_consumer_killed_waiting_for_the_lock_after_reading(tm, fork_ctx, children, bound):
    """The consumer has read its message and freed the slot, and waits for
    the ring's lock to do its bookkeeping -- the lock held by a live process
    (here the test, which writes its own pid into the lock word, as
    contention from another process would); it is killed there.  Either
    outcome is fine for the message (delivered to the dead consumer, or
    delivered again), but the queue must be intact: empty, it takes
    ``maxsize`` items again and a message of under half its capacity."""
    q = tm.Queue(maxsize=1 if bound == "maxsize" else 0, capacity=64 * MiB)
    m = _header(q)
    results = tm.Queue()
    try:
        p = children(fork_ctx, _child_get_one, q, results)
        wait_for(lambda: _u32(m, H_GETTERS) >= 1, REAP, "the consumer to wait in get")
        q.put(b"r" * (40 * MiB))
        # claimed: it is copying the message out (40 MiB) without the lock
        wait_for(lambda: q.qsize() == 0, GET, "the consumer to claim the message")
        wait_for(lambda: _u32(m, H_LOCK) == 0, GET, "the lock to be free")
        struct.pack_into("<I", m, H_LOCK, os.getpid())  # a live process holds it
        try:
            wait_for(lambda: _u32(m, H_LOCK_WAITERS) >= 1 or not p.is_alive(), GET,
                     "the consumer to wait for the lock")
            if not p.is_alive():
                pytest.fail("the consumer finished before the lock was held: no repro")
            os.kill(p.pid, signal.SIGKILL)
            reap([p], expect=-signal.SIGKILL)
        finally:
            struct.pack_into("<I", m, H_LOCK, 0)
        assert results.qsize() == 0  # its get never returned
        try:
            assert q.get(timeout=0.5) == b"r" * (40 * MiB)  # delivered again: fine
        except queue.Empty:
            pass  # counted as delivered to the dead consumer: fine
        if bound == "maxsize":
            try:
                q.put_nowait("probe")
            except queue.Full:
                raise AssertionError(
                    f"an empty Queue(maxsize=1) is full after the kill "
                    f"(ring messages={_u64(m, H_MESSAGES)}, ready={_u64(m, H_READY)})"
                ) from None
            assert q.get(timeout=GET) == "probe"
        else:
            probe = b"s" * (30 * MiB)
            try:
                q.put(probe, timeout=1.0)
            except queue.Full:
                raise AssertionError(
                    "an empty 64 MiB queue refuses a 30 MiB message after the kill"
                ) from None
            assert q.get(timeout=GET) == probe
    finally:
        m.close()


# ==========================================================================
# 5. Ctrl-C


CTRL_C_CHILD = r"""
import faulthandler, importlib, json, os, signal, sys, threading, time
faulthandler.dump_traceback_later(45, exit=True)  # bounded, whatever happens
name = sys.argv[1]
M = importlib.import_module(name)
if name == "multiprocessing":
    ctx = M.get_context("fork")
    q, full = ctx.Queue(), ctx.Queue(1)
    where = os.path.join("multiprocessing", "")
else:
    q, full = M.Queue(), M.Queue(1)
    where = M.__file__
main = threading.main_thread()
done = threading.Event()

def in_call(fn):
    frame = sys._current_frames().get(main.ident)
    while frame is not None:
        if frame.f_code.co_name == fn and where in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False

def interrupt(fn, sent):
    deadline = time.monotonic() + 10
    while not in_call(fn) and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(0.05)
    # SIGINT again every 0.5 s until the call is interrupted (at most 10 s):
    # a test that hung on one missed signal would tell nothing more; how
    # many it took is reported (one must do: see the test of a signal
    # handled on another thread below)
    while not done.is_set() and len(sent) < 20:
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)
        done.wait(0.5)

def blocked(fn, call):
    sent = []
    done.clear()
    t = threading.Thread(target=interrupt, args=(fn, sent), daemon=True)
    t.start()
    try:
        call()
        out = "returned"
    except KeyboardInterrupt:
        out = "interrupted"
    got = time.monotonic()
    done.set()
    t.join(10)
    return {"out": out, "signals": len(sent),
            "latency": got - sent[-1] if sent else None}

res = {"get": blocked("get", q.get)}
q.put("after")
res["get_after"] = q.get(timeout=10)
full.put("first")
res["put"] = blocked("put", lambda: full.put("second"))
res["full_after"] = [full.get(timeout=10)]
full.put_nowait("again")
res["full_after"].append(full.get(timeout=10))
res["empty"] = [q.empty(), full.empty()]
for x in (q, full):
    x.close()
    x.join_thread()
print(json.dumps(res))
"""


@pytest.mark.parametrize("modname", ["multiprocessing", "tress.multiprocessing"])
def test_ctrl_c_interrupts_get_and_put_on_the_main_thread(modname, run_python):
    """SIGINT (``os.kill`` from a thread, as Ctrl-C sends it to the process)
    while the main thread is blocked in ``get()`` on an empty queue and in
    ``put()`` on a full one: ``KeyboardInterrupt`` within a second, nothing
    put or lost by the interrupted calls, the queues usable afterwards."""
    if modname != "multiprocessing" and TMP is None:
        pytest.skip(TMP_SKIP_REASON)
    proc = run_python(CTRL_C_CHILD, modname, timeout=60)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    for op in ("get", "put"):
        assert res[op]["out"] == "interrupted", res
        assert res[op]["latency"] is not None and res[op]["latency"] < 1.0, res
    assert res["get_after"] == "after"
    assert res["full_after"] == ["first", "again"], "the interrupted put went through"
    assert res["empty"] == [True, True]
    print(f"{modname}: SIGINTs needed: get {res['get']['signals']}, put {res['put']['signals']}")


OTHER_THREAD_SIGINT_CHILD = r"""
import faulthandler, importlib, json, queue, signal, sys, threading, time
faulthandler.dump_traceback_later(45, exit=True)
M = importlib.import_module(sys.argv[1])
main = threading.main_thread()

def in_call():
    frame = sys._current_frames().get(main.ident)
    while frame is not None:
        if frame.f_code.co_name == "<lambda>":
            return True
        frame = frame.f_back
    return False

def sender(sent):
    deadline = time.monotonic() + 10
    while not in_call() and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(0.05)
    sent.append(time.monotonic())
    # handled by this thread (the C handler runs here), as a process-wide
    # Ctrl-C can be: the main thread's wait is not cut short by EINTR
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)

def blocked(call):
    sent = []
    t = threading.Thread(target=sender, args=(sent,))
    t.start()
    out = ""
    try:
        try:
            call()
            out = "returned"
        except (queue.Empty, queue.Full):
            out = "timed out, then "
        for _ in range(1000):  # a pending handler runs here at the latest
            pass
    except KeyboardInterrupt:
        out += "interrupted"
    latency = time.monotonic() - sent[0]
    t.join(10)
    return {"out": out, "latency": latency}

q, full = M.Queue(), M.Queue(1)
full.put(1)
res = {"get": blocked(lambda: q.get(timeout=2)),
       "put": blocked(lambda: full.put(2, timeout=2))}
print(json.dumps(res))
"""


@pytest.mark.parametrize("modname", [
    "tress.queue",
    "tress.multiprocessing",
])
def test_ctrl_c_handled_on_another_thread_still_interrupts_the_wait(modname, run_python):
    """tress's waits promise (crates/tress-python/src/wait.rs) that the main
    thread runs the signal handlers at least every 50 ms while it waits,
    for signals delivered to another thread; tress.queue keeps it (the
    control case).  The stdlib's waits do not (they rely on EINTR), so this
    is tress's own contract, not the stdlib's."""
    if modname == "tress.multiprocessing" and TMP is None:
        pytest.skip(TMP_SKIP_REASON)
    proc = run_python(OTHER_THREAD_SIGINT_CHILD, modname, timeout=60)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    for op in ("get", "put"):
        assert res[op]["out"] == "interrupted", res
        assert res[op]["latency"] < 1.0, res


# --- objects handed to a Pool's initializer ----------------------------------

_POOL_STATE = {}


def _pool_init(q, lock, event, sem):
    _POOL_STATE.update(q=q, lock=lock, event=event, sem=sem)


def _pool_task(i):
    s = _POOL_STATE
    assert s["event"].wait(REAP)
    with s["lock"]:
        with s["sem"]:
            s["q"].put((os.getpid(), i))
    return i


def test_objects_reach_a_pool_initializer(tm, ctx):
    """Every start method: a queue, a lock, an event and a semaphore given
    as a Pool initializer's arguments reattach in the workers."""
    q, lock, event, sem = tm.Queue(), tm.Lock(), tm.Event(), tm.BoundedSemaphore(2)
    event.set()
    with ctx.Pool(2, initializer=_pool_init, initargs=(q, lock, event, sem)) as pool:
        assert pool.map_async(_pool_task, range(8)).get(REAP) == list(range(8))
        got = sorted(i for _, i in (q.get(timeout=REAP) for _ in range(8)))
    assert got == list(range(8))
    assert q.empty() and sem.get_value() == 2 and lock.acquire(timeout=0)


class _BadBool:
    def __bool__(self):
        raise ZeroDivisionError("no truth value")


TRUTHY_FLAGS = sys.version_info >= (3, 12)
"""Whether the stdlib's C ``SemLock.acquire`` takes ``block`` by its truth
value (3.12 on) or as an integer (3.11)."""


@pytest.mark.parametrize("module", ["multiprocessing", "tress"])
def test_block_takes_the_stdlibs_truth_values(module):
    """``block`` as multiprocessing takes it (``q.get(1, 5)``,
    ``lock.acquire(0)``): ``get`` by any object's truth value (the stdlib's
    only without a timeout; tress's always); ``put`` and the locks'
    ``acquire`` (the C ``SemLock.acquire``'s ``block``) on 3.11 by an
    integer's, anything else a TypeError, and from 3.12 on by any object's
    truth value; an object without a truth value raises its error."""
    mp = multiprocessing if module == "multiprocessing" else TMP
    for cls in (mp.Queue, mp.JoinableQueue):
        q = cls()
        q.put("a", 1)
        q.put("b", 1, 5)
        q.put("c", 0)  # does not wait (there is room anyway)
        assert [q.get(1, GET), q.get("yes"), q.get(True, GET)] == ["a", "b", "c"]
        with pytest.raises(queue.Empty):
            q.get(0)
        with pytest.raises(queue.Empty):
            q.get(0, 0.01)  # false: at once, whatever the timeout
        with pytest.raises(ZeroDivisionError):
            q.get(_BadBool())
        for flag in (1.5, None, "yes"):
            if TRUTHY_FLAGS:
                q.put(flag, flag)
            else:
                with pytest.raises(TypeError):
                    q.put("d", flag)
        if TRUTHY_FLAGS:
            assert [q.get(True, GET) for _ in range(3)] == [1.5, None, "yes"]
            with pytest.raises(ZeroDivisionError):
                q.put("d", _BadBool())
        assert q.empty()
        q.close()
    lock = mp.Lock()
    assert lock.acquire(0) is True and lock.acquire(0) is False
    lock.release()
    assert lock.acquire(1, 1) is True
    lock.release()
    rlock = mp.RLock()
    assert rlock.acquire(0) and rlock.acquire(0)
    rlock.release()
    rlock.release()
    sem = mp.Semaphore(1)
    assert sem.acquire(1) is True and sem.acquire(0) is False
    sem.release()
    bsem = mp.BoundedSemaphore(1)
    assert bsem.acquire(True) is True and bsem.acquire(False) is False
    bsem.release()
    if TRUTHY_FLAGS:
        assert lock.acquire(1.5) is True and lock.acquire(None) is False
        lock.release()
    else:
        for bad in (1.5, None):
            with pytest.raises(TypeError):
                lock.acquire(bad)


# -- puts that never wait for room (issue 13, items 4 and 10)


def _module(name):
    if name == "tress" and TMP is None:
        pytest.skip(TMP_SKIP_REASON)
    return multiprocessing if name == "multiprocessing" else TMP


def _sum_worker(q, results):
    """Takes numbers until None; reports how many and their sum."""
    n = total = 0
    while (item := q.get(timeout=GET)) is not None:
        n += 1
        total += item[0]
    results.put((n, total))


FILL_N = 200_000


@pytest.mark.timeout(120)
@pytest.mark.parametrize("module", ["multiprocessing", "tress"])
def test_an_unbounded_queue_is_filled_before_any_reader(module, children):
    """Fill the queue, then start the workers: 200,000 items of ~100 bytes
    (20 MB, more than the ring holds) are put with no reader, and no put
    waits; then two workers take them all, each exactly once."""
    mp = _module(module)
    ctx = mp.get_context("fork")
    q, results = ctx.Queue(), ctx.Queue()
    pad = b"x" * 80
    start = time.monotonic()
    for i in range(FILL_N):
        q.put((i, pad))
        assert time.monotonic() - start < 60, f"put {i} waited for room"
    for _ in range(2):
        q.put(None)
    assert q.qsize() == FILL_N + 2
    workers = [children(ctx, _sum_worker, q, results) for _ in range(2)]
    got = [results.get(timeout=60) for _ in workers]
    assert sum(n for n, _ in got) == FILL_N
    assert sum(t for _, t in got) == FILL_N * (FILL_N - 1) // 2
    reap(workers, expect=0)
    q.close()
    q.join_thread()


def _put_range_and_exit(q, n, pad):
    for i in range(n):
        q.put((i, pad))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("module", ["multiprocessing", "tress"])
def test_a_child_exits_only_once_what_it_put_is_in_the_queue(module, children):
    """A child puts far more than the ring holds and returns at once: its
    exit waits until its feeder has put everything (multiprocessing's
    join of the feeder thread), so the parent, reading only afterwards,
    gets every item in order."""
    mp = _module(module)
    ctx = mp.get_context("fork")
    q = ctx.Queue() if module == "multiprocessing" else ctx.Queue(capacity=64 * 1024)
    n = 20_000
    p = children(ctx, _put_range_and_exit, q, n, b"y" * 100)
    got = [q.get(timeout=GET)[0] for _ in range(n)]
    assert got == list(range(n))
    reap([p], expect=0)
    assert q.empty()


_REENTRANT = {}


def _put_back_while_unpickled(tag):
    """Unpickling this puts into the queue being read from (which is full)."""
    _REENTRANT["q"].put(("back", tag), timeout=GET)
    return ("first", tag)


class _PutsWhenUnpickled:
    def __init__(self, tag):
        self.tag = tag

    def __reduce__(self):
        return (_put_back_while_unpickled, (self.tag,))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("module", ["multiprocessing", "tress"])
@pytest.mark.parametrize("full", ["bound", "bytes"])
def test_a_get_whose_unpickling_puts_into_the_same_full_queue(module, full):
    """A get whose unpickling puts into the very queue it reads, which is
    full (its bound in items, or the bytes of its ring): the get's item
    has left the queue before the unpickling runs, so the put goes in and
    both items come out, in order."""
    mp = _module(module)
    if full == "bound":
        q = mp.Queue(1)
        q.put(_PutsWhenUnpickled(0))
        items = 1
    else:
        q = mp.Queue() if module == "multiprocessing" else mp.Queue(capacity=4096)
        q.put(_PutsWhenUnpickled(0))
        filler = b"z" * 1000
        items = 1
        while items < 100:  # more than the ring's bytes
            q.put(filler)
            items += 1
    _REENTRANT["q"] = q
    try:
        assert q.get(timeout=GET) == ("first", 0)
        rest = [q.get(timeout=GET) for _ in range(items)]
        assert rest[-1] == ("back", 0)
        assert rest[:-1] == [b"z" * 1000] * (items - 1)
        with pytest.raises(queue.Empty):
            q.get(timeout=0.05)
    finally:
        _REENTRANT.clear()
        q.close()
        q.join_thread()


@pytest.mark.timeout(60)
def test_cancel_join_thread_lets_a_child_exit_with_items_kept(tm, children):
    """A child that cancelled the join exits at once, though what its feeder
    kept was never put (lost, as multiprocessing's); a child that did not
    would wait: its exit flushes."""
    ctx = multiprocessing.get_context("fork")
    q = tm.Queue(capacity=4096)
    p = children(ctx, _put_then_cancel, q)
    reap([p], expect=0)
    got = []
    while True:
        try:
            got.append(q.get(timeout=0.2))
        except queue.Empty:
            break
    assert 0 < len(got) < 1000
    assert got == list(range(len(got)))


def _put_then_cancel(q):
    q.cancel_join_thread()
    for i in range(1000):
        q.put(i)


# -- waits: a stopped peer, and no wake-ups while blocked (items 7 and 9)


def _stop_holding_the_lock(q):
    q._ring._stop_holding_lock()


def _state(pid):
    """The process's state letter in /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.timeout(60)
def test_a_peer_stopped_inside_the_queues_lock(tm, children):
    """A peer frozen (SIGSTOP) while it holds the queue's internal lock:
    the other side's get timeout and put timeout are honoured, and so is
    Ctrl-C; once the peer is killed the queue goes on with what it held."""
    ctx = multiprocessing.get_context("fork")
    q = tm.Queue(2)
    q.put("before")
    p = children(ctx, _stop_holding_the_lock, q)
    wait_for(lambda: _state(p.pid) == "T", REAP, "the peer to stop")
    start = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    assert time.monotonic() - start < 3
    q.put("kept")  # the ring is out of reach: kept by the feeder
    start = time.monotonic()
    with pytest.raises(queue.Full):
        q.put("over the bound", timeout=0.2)
    assert time.monotonic() - start < 3
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            q.get()
    finally:
        timer.cancel()
    assert time.monotonic() - start < 3
    os.kill(p.pid, signal.SIGKILL)
    reap([p], expect=-signal.SIGKILL)
    assert [q.get(timeout=GET), q.get(timeout=GET)] == ["before", "kept"]
    assert q.qsize() == 0


def _voluntary_switches(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches line")


def _block_in(q, what):
    if what == "get":
        q.get()
    elif what == "put":
        q.put(b"x" * 3000)  # a SimpleQueue whose ring is full
    else:
        q.join()


def _fill_simple(q):
    while True:
        try:
            q._ring.put([b"x" * 3000], False)
        except queue.Full:
            return


@pytest.mark.timeout(60)
@pytest.mark.parametrize("what", ["get", "put", "join"])
def test_a_blocked_call_sleeps_until_woken(tm, what, children):
    """A get on an empty queue, a put on a full ring and a join with a task
    outstanding sleep until woken, as the stdlib's: over two seconds their
    process's main thread wakes at most once (not 50 to 70 times a
    second); then each returns as soon as the other side acts."""
    ctx = multiprocessing.get_context("fork")
    if what == "get":
        q = tm.Queue()
    elif what == "put":
        q = tm.SimpleQueue(capacity=16 * 1024)
        _fill_simple(q)
    else:
        q = tm.JoinableQueue()
        q.put("task")
    p = children(ctx, _block_in, q, what)
    wait_for(lambda: _state(p.pid) == "S", REAP, "the child to block")
    time.sleep(0.2)  # past the start-up and the first poll
    before = _voluntary_switches(p.pid)
    time.sleep(2.0)  # the measurement window
    woke = _voluntary_switches(p.pid) - before
    assert woke <= 1, f"a blocked {what} woke {woke} times in 2 s"
    if what == "get":
        q.put("go")
    elif what == "put":
        q._ring.get(True, GET)  # room for the child's put
    else:
        q.get(timeout=GET)
        q.task_done()
    reap([p], expect=0)


# -- memory: reserved as used, and checked before use (items 8 and 11)


def _allocated(fd):
    return os.fstat(fd).st_blocks * 512


@pytest.mark.timeout(60)
def test_idle_queues_hold_little_memory(tm):
    """A queue reserves its ring's pages as it is first used: 500 idle
    queues hold well under 100 KiB each (the ring is 8 MiB), and one that
    carried 100 MB one item at a time still holds its first pages only."""
    queues = [tm.Queue() for _ in range(500)]
    sizes = [_allocated(q._ring.fileno()) for q in queues]
    assert max(sizes) < 100 * 1024, max(sizes)
    q = queues[0]
    item = b"m" * 100_000
    for _ in range(1000):
        q.put(item)
        assert q.get(timeout=GET) == item
    assert _allocated(q._ring.fileno()) < 400 * 1024
    for q in queues:
        q.close()


@pytest.mark.timeout(60)
def test_a_corrupt_message_length_is_an_error_and_the_queue_goes_on(tm):
    """A peer that scribbles over a message's length in the shared memory
    makes that get raise an OSError (not read past the ring or crash the
    reader); the queue goes on."""
    q = tm.Queue()
    q.put("hello")
    with mmap.mmap(q._ring.fileno(), 4096 + 64) as m:
        m[4096 + 8:4096 + 16] = (1 << 40).to_bytes(8, "little")
    with pytest.raises(OSError, match="corrupt"):
        q.get(timeout=GET)
    q.put("after")
    assert q.get(timeout=GET) == "after"
    assert q.qsize() == 0
    q.close()


@pytest.mark.timeout(60)
def test_a_process_that_dropped_its_queue_exits_without_waiting_for_readers(tm):
    """A program that fills a queue nobody reads, then drops it, exits at
    once: its exit waits for the feeders of live queues only (nothing can
    ever read a queue no process holds)."""
    code = (
        "import tress.multiprocessing as tm\n"
        "q = tm.Queue(capacity=4096)\n"
        "for i in range(1000):\n"
        "    q.put(i)\n"
        "assert q._ring.kept > 0\n"
        "del q\n"
        "print('done')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done"
