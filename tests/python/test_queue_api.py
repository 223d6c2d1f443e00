"""Behaviour and edge cases of tress.queue versus the stdlib ``queue``.

Every test taking ``qmod`` runs on the stdlib ``queue`` module and on
``tress.queue`` (the tress param is skipped, with the import error as the
reason, until the extension module imports).  Error checks run the same
call on the stdlib first, which pins the expectation to CPython 3.11, and
then require exactly the same exception type and message from the module
under test (``type_only`` where the message is an accident of CPython's
implementation, e.g. a comparison error or an argument-count error).

Shutdown (``Queue.shutdown``, ``ShutDown``) is CPython 3.13's API; the
stdlib param of those tests runs only on an interpreter that has it, so on
3.11 they are written against the 3.13 documentation and run on tress only.

Every blocking call is bounded: threads are joined with a deadline, and a
wait that must not return is checked with a short bounded wait that a
correct implementation never ends early.
"""

import copy
import gc
import json
import pickle
import queue
import re
import sys
import threading
import types
import weakref

import pytest

# --------------------------------------------------------------------------
# the module under test


# tests/conftest.py imports it (or records why it cannot) before this module.
TRESS_QUEUE = sys.modules.get("tress.queue")
TRESS_SKIP_REASON = "tress.queue is not importable (see tests/conftest.py)"
STDLIB_HAS_SHUTDOWN = hasattr(queue, "ShutDown")  # CPython >= 3.13

QUEUE_KINDS = ["Queue", "LifoQueue", "PriorityQueue"]
ALL_KINDS = QUEUE_KINDS + ["SimpleQueue"]
TIMEOUT_MSG = "'timeout' must be a non-negative number"
JOIN = 10.0  # seconds: bound on every thread join in this file
NOT_YET = 0.05  # seconds: bounded check that a wait has NOT returned


@pytest.fixture(params=["queue", "tress"])
def sdmod(request):
    """A module with Queue.shutdown: tress.queue, and the stdlib on >= 3.13."""
    if request.param == "queue":
        if not STDLIB_HAS_SHUTDOWN:
            pytest.skip("the stdlib queue has no shutdown() before Python 3.13")
        return queue
    if TRESS_QUEUE is None:
        pytest.skip(TRESS_SKIP_REASON)
    return TRESS_QUEUE


def is_tress(mod):
    return mod is not queue


def _capture(call):
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - we report what was raised
        return exc
    return None


@pytest.fixture
def check_qerror():
    """check_qerror(qmod, call, exc_type, message=None, *, type_only=False).

    ``call(module)`` must raise ``exc_type`` (with ``message``, exact, if
    given) on the stdlib ``queue``, then the same type and -- unless
    ``type_only`` -- the same message on ``qmod``.  Returns the exception.
    """

    def check(mod, call, exc_type, message=None, *, type_only=False):
        ref = _capture(lambda: call(queue))
        assert ref is not None, "stdlib raised nothing: the expectation is wrong"
        assert type(ref) is exc_type, f"stdlib raised {ref!r}, expected {exc_type}"
        if message is not None:
            assert str(ref) == message, f"stdlib message is {str(ref)!r}"
        got = _capture(lambda: call(mod))
        assert got is not None, f"{mod.__name__} raised nothing, stdlib raised {ref!r}"
        assert type(got) is type(ref), f"{mod.__name__} raised {got!r}, stdlib raised {ref!r}"
        if not type_only:
            assert str(got) == str(ref), (
                f"{mod.__name__} message {str(got)!r} != stdlib {str(ref)!r}"
            )
        return got

    return check


_SHUTDOWN_TYPES = tuple(
    m.ShutDown for m in (queue, TRESS_QUEUE) if m is not None and hasattr(m, "ShutDown")
)


def drain(q):
    """Everything left in ``q``, by get_nowait until Empty (or ShutDown)."""
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except (queue.Empty, *_SHUTDOWN_TYPES):
            return out


def expected_order(kind, items):
    if kind == "LifoQueue":
        return list(reversed(items))
    if kind == "PriorityQueue":
        return sorted(items)
    return list(items)


def start(target, *args, name=None):
    """Start a daemon thread running target(*args); returns (thread, out).

    ``out`` receives ("ok", result) or ("raised", exception)."""
    out = []

    def body():
        try:
            out.append(("ok", target(*args)))
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            out.append(("raised", exc))

    t = threading.Thread(
        target=body, name=name or getattr(target, "__name__", "worker"), daemon=True
    )
    t.start()
    return t, out


def wait_in(wait_blocked, thread, fn):
    """Wait until ``thread`` sits on the first line of ``fn`` (a wrapper
    whose first line is the blocking call, e.g. ``return q.get()``): for a
    native queue it is then inside the call or about to enter it with no
    thread switch in between (see conftest.wait_blocked)."""
    wait_blocked(thread, fn.__name__, fn.__code__.co_firstlineno + 1)


# --------------------------------------------------------------------------
# module surface


def test_exception_classes_are_the_stdlib_ones(tq):
    assert tq.Empty is queue.Empty
    assert tq.Full is queue.Full
    assert issubclass(tq.ShutDown, Exception)
    if STDLIB_HAS_SHUTDOWN:
        assert tq.ShutDown is queue.ShutDown


def test_module_names(qmod):
    for name in ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue", "Empty", "Full"]:
        assert hasattr(qmod, name), name
    if hasattr(qmod, "__all__"):
        assert set(queue.__all__) <= set(qmod.__all__)
    if is_tress(qmod):
        assert hasattr(qmod, "ShutDown")
        if hasattr(qmod, "__all__"):
            assert "ShutDown" in qmod.__all__


def test_class_hierarchy(qmod):
    # CPython: LifoQueue and PriorityQueue derive from Queue; SimpleQueue does not
    assert issubclass(qmod.LifoQueue, qmod.Queue)
    assert issubclass(qmod.PriorityQueue, qmod.Queue)
    assert not issubclass(qmod.SimpleQueue, qmod.Queue)
    assert isinstance(qmod.LifoQueue(), qmod.Queue)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_generic_alias(qmod, kind):
    cls = getattr(qmod, kind)
    alias = cls[int]
    assert isinstance(alias, types.GenericAlias)
    assert alias.__origin__ is cls
    assert alias.__args__ == (int,)
    assert isinstance(alias(), cls)  # calling the alias builds an instance


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_weakref(qmod, kind):
    q = getattr(qmod, kind)()
    r = weakref.ref(q)
    assert r() is q
    del q
    gc.collect()
    assert r() is None


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_not_picklable(qmod, kind, check_qerror):
    for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
        check_qerror(
            qmod, lambda m, p=proto: pickle.dumps(getattr(m, kind)(), p), TypeError, type_only=True
        )
    # protocols 0 and 1 go through copyreg; CPython's Queue then fails with
    # PicklingError on its lock
    for proto in (0, 1):
        with pytest.raises((TypeError, pickle.PicklingError)):
            pickle.dumps(getattr(qmod, kind)(), proto)


def test_simplequeue_not_copyable(qmod, check_qerror):
    check_qerror(qmod, lambda m: copy.copy(m.SimpleQueue()), TypeError, type_only=True)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_repr(qmod, kind):
    q = getattr(qmod, kind)()
    cls = type(q)
    name = re.escape(f"{cls.__module__}.{cls.__qualname__}")
    assert re.fullmatch(rf"<{name} object at 0x[0-9a-fA-F]+>", repr(q)), repr(q)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_items_identity_and_none(qmod, kind):
    q = getattr(qmod, kind)()
    if kind == "PriorityQueue":
        objs = [(1, "a"), (2, "b")]
    else:
        objs = [object(), None, [1], None]
    for o in objs:
        q.put(o)
    got = [q.get_nowait() for _ in objs]
    want = expected_order(kind, objs) if kind != "SimpleQueue" else objs
    assert all(a is b for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_items_released_after_get(qmod, kind):
    class Item:
        def __init__(self, n):
            self.n = n

        def __lt__(self, other):
            return self.n < other.n

    q = getattr(qmod, kind)()
    refs = []
    for i in range(5):
        item = Item(i)
        refs.append(weakref.ref(item))
        q.put(item)
    del item
    for _ in range(5):
        q.get_nowait()
    gc.collect()
    assert [r() for r in refs] == [None] * 5, "the queue kept a reference to a got item"


# --------------------------------------------------------------------------
# Queue / LifoQueue / PriorityQueue: basics


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_order(qmod, kind):
    q = getattr(qmod, kind)()
    items = [5, 1, 4, 2, 3, 2]
    for i in items:
        q.put(i)
    assert [q.get() for _ in items] == expected_order(kind, items)
    assert q.empty()


@pytest.mark.parametrize("kind", QUEUE_KINDS)
@pytest.mark.parametrize("maxsize", [0, -1, -5, 1, 3])
def test_sizes(qmod, kind, maxsize):
    q = getattr(qmod, kind)(maxsize)
    assert q.maxsize == maxsize
    assert (q.qsize(), q.empty(), q.full()) == (0, True, False)
    n = maxsize if maxsize > 0 else 10
    for i in range(n):
        q.put_nowait(i)
        assert q.qsize() == i + 1
        assert q.empty() is False
        assert q.full() is (maxsize > 0 and i + 1 == maxsize)
    if maxsize > 0:
        with pytest.raises(queue.Full):
            q.put_nowait(99)
        with pytest.raises(queue.Full):
            q.put(99, block=False)
        with pytest.raises(queue.Full):
            q.put(99, timeout=0)
        with pytest.raises(queue.Full):
            q.put(99, True, 0.01)
        assert q.qsize() == maxsize
    assert sorted(drain(q)) == list(range(n))
    assert (q.qsize(), q.empty(), q.full()) == (0, True, False)


def test_default_maxsize(qmod):
    for kind in QUEUE_KINDS:
        assert getattr(qmod, kind)().maxsize == 0
        assert getattr(qmod, kind)(maxsize=7).maxsize == 7


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_empty_errors(qmod, kind, check_qerror):
    make = getattr
    check_qerror(qmod, lambda m: make(m, kind)().get_nowait(), queue.Empty, "")
    check_qerror(qmod, lambda m: make(m, kind)().get(block=False), queue.Empty, "")
    check_qerror(qmod, lambda m: make(m, kind)().get(False, 5), queue.Empty, "")
    check_qerror(qmod, lambda m: make(m, kind)().get(timeout=0), queue.Empty, "")
    check_qerror(qmod, lambda m: make(m, kind)().get(timeout=0.01), queue.Empty, "")
    check_qerror(qmod, lambda m: make(m, kind)(1).get(True, 0.01), queue.Empty, "")


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_full_errors(qmod, kind, check_qerror):
    def full(m, kind=kind):
        q = getattr(m, kind)(1)
        q.put(0)
        return q

    check_qerror(qmod, lambda m: full(m).put_nowait(1), queue.Full, "")
    check_qerror(qmod, lambda m: full(m).put(1, block=False), queue.Full, "")
    check_qerror(qmod, lambda m: full(m).put(1, False, 5), queue.Full, "")
    check_qerror(qmod, lambda m: full(m).put(1, timeout=0), queue.Full, "")
    check_qerror(qmod, lambda m: full(m).put(1, timeout=0.01), queue.Full, "")


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_keyword_arguments(qmod, kind):
    q = getattr(qmod, kind)(maxsize=2)
    q.put(item=1, block=True, timeout=1)
    q.put_nowait(item=2)
    assert q.get(block=True, timeout=1) in (1, 2)
    assert q.get(block=False, timeout=None) in (1, 2)


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_arity_errors(qmod, kind, check_qerror):
    make = getattr
    check_qerror(qmod, lambda m: make(m, kind)().put(), TypeError, type_only=True)
    check_qerror(qmod, lambda m: make(m, kind)().put(1, True, None, 4), TypeError, type_only=True)
    check_qerror(qmod, lambda m: make(m, kind)().get(True, None, 3), TypeError, type_only=True)
    check_qerror(qmod, lambda m: make(m, kind)().put_nowait(), TypeError, type_only=True)
    check_qerror(qmod, lambda m: make(m, kind)().get_nowait(1), TypeError, type_only=True)
    check_qerror(qmod, lambda m: make(m, kind)().put(1, blocking=True), TypeError, type_only=True)
    check_qerror(qmod, lambda m: make(m, kind)(1, 2), TypeError, type_only=True)
    check_qerror(qmod, lambda m: make(m, kind)().qsize(1), TypeError, type_only=True)
    check_qerror(qmod, lambda m: make(m, kind)().task_done(1), TypeError, type_only=True)
    check_qerror(qmod, lambda m: make(m, kind)().join(1), TypeError, type_only=True)


# --------------------------------------------------------------------------
# timeout validation (CPython 3.11 queue.py)


@pytest.mark.parametrize("kind", QUEUE_KINDS)
@pytest.mark.parametrize("timeout", [-1, -0.5, -1e-10, -(2**70), float("-inf")])
class TestTimeoutValidation:
    def test_get_validates_even_with_items(self, qmod, kind, timeout, check_qerror):
        # get() checks the timeout whenever block is true, before looking
        # at the queue; the item stays queued
        def call(m):
            q = getattr(m, kind)()
            q.put(1)
            try:
                q.get(timeout=timeout)
            finally:
                assert q.qsize() == 1 and q.get_nowait() == 1

        check_qerror(qmod, call, ValueError, TIMEOUT_MSG)
        check_qerror(qmod, lambda m: getattr(m, kind)().get(True, timeout), ValueError, TIMEOUT_MSG)

    def test_get_nonblocking_ignores_timeout(self, qmod, kind, timeout, check_qerror):
        q = getattr(qmod, kind)()
        q.put(1)
        assert q.get(False, timeout) == 1
        check_qerror(qmod, lambda m: getattr(m, kind)().get(False, timeout), queue.Empty, "")

    def test_put_validates_only_when_bounded(self, qmod, kind, timeout, check_qerror):
        def call(m, maxsize):
            q = getattr(m, kind)(maxsize)
            try:
                q.put(1, timeout=timeout)
            finally:
                assert q.qsize() == 0, "the item was queued although put() raised"
                # nothing counted either
                q.put(2)
                q.get()
                q.task_done()
                assert _capture(q.task_done).__class__ is ValueError

        check_qerror(qmod, lambda m: call(m, 3), ValueError, TIMEOUT_MSG)
        check_qerror(qmod, lambda m: call(m, 1), ValueError, TIMEOUT_MSG)
        # unbounded queues never look at the timeout
        for maxsize in (0, -1):
            q = getattr(qmod, kind)(maxsize)
            q.put(7, timeout=timeout)
            q.put(8, True, timeout)
            assert sorted(drain(q)) == [7, 8]

    def test_put_nonblocking_ignores_timeout(self, qmod, kind, timeout, check_qerror):
        q = getattr(qmod, kind)(2)
        q.put(1, False, timeout)
        q.put(2, block=False, timeout=timeout)
        assert q.qsize() == 2

        def full(m):
            q = getattr(m, kind)(1)
            q.put(0)
            q.put(1, False, timeout)

        check_qerror(qmod, full, queue.Full, "")


@pytest.mark.parametrize("kind", QUEUE_KINDS)
@pytest.mark.parametrize(
    "timeout", [0, 0.0, -0.0, False, 1e100, float("inf"), float("nan"), 2**70, True]
)
def test_timeouts_accepted_when_not_waiting(qmod, kind, timeout):
    # queue.py only compares the timeout with 0; when the call does not
    # have to wait, any number that is not negative is fine
    q = getattr(qmod, kind)(2)
    q.put(1, timeout=timeout)
    q.put(2, True, timeout)
    assert sorted([q.get(timeout=timeout), q.get(True, timeout)]) == [1, 2]


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_timeout_wrong_type(qmod, kind, check_qerror):
    def get(m):
        q = getattr(m, kind)()
        q.put(1)
        try:
            q.get(timeout="1")
        finally:
            assert q.get_nowait() == 1

    check_qerror(qmod, get, TypeError, type_only=True)
    check_qerror(qmod, lambda m: getattr(m, kind)(2).put(1, timeout="1"), TypeError, type_only=True)
    check_qerror(qmod, lambda m: getattr(m, kind)(2).put(1, timeout=[]), TypeError, type_only=True)
    # unbounded put and non-blocking calls do not look at the timeout
    q = getattr(qmod, kind)()
    q.put(1, timeout="1")
    assert q.get(False, "1") == 1


@pytest.mark.parametrize("kind", QUEUE_KINDS)
@pytest.mark.parametrize("block", [None, "", [], 0.0])
def test_false_block_values(qmod, kind, block):
    # queue.py tests ``block`` for truth: any false object means non-blocking
    q = getattr(qmod, kind)(1)
    with pytest.raises(queue.Empty):
        q.get(block)
    with pytest.raises(queue.Empty):
        q.get(block=block, timeout=5)
    q.put(1, block)
    with pytest.raises(queue.Full):
        q.put(2, block, 5)
    assert q.get(block) == 1


@pytest.mark.parametrize("kind", QUEUE_KINDS)
@pytest.mark.parametrize("block", ["x", [0], 2.5, object()])
def test_true_block_values(qmod, kind, block):
    q = getattr(qmod, kind)(1)
    q.put(1, block, 0.01)
    with pytest.raises(queue.Full):
        q.put(2, block, 0.01)
    assert q.get(block, 0.01) == 1
    with pytest.raises(queue.Empty):
        q.get(block, 0.01)


# --------------------------------------------------------------------------
# maxsize


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_maxsize_shrink(qmod, kind):
    q = getattr(qmod, kind)(3)
    for i in (1, 2, 3):
        q.put(i)
    q.maxsize = 2
    assert q.maxsize == 2
    assert q.full() is True
    with pytest.raises(queue.Full):
        q.put_nowait(4)
    with pytest.raises(queue.Full):
        q.put(4, timeout=0.01)
    q.get_nowait()
    assert q.full() is True  # 2 items, maxsize 2
    with pytest.raises(queue.Full):
        q.put_nowait(4)
    q.get_nowait()
    assert q.full() is False
    q.put_nowait(4)
    assert q.qsize() == 2 and q.full()


@pytest.mark.parametrize("kind", QUEUE_KINDS)
@pytest.mark.parametrize("new", [0, -1])
def test_maxsize_unbounded(qmod, kind, new):
    q = getattr(qmod, kind)(1)
    q.put(0)
    with pytest.raises(queue.Full):
        q.put_nowait(1)
    q.maxsize = new
    assert q.maxsize == new
    for i in range(1, 20):
        q.put_nowait(i)
    assert q.full() is False
    assert q.qsize() == 20
    q.maxsize = 5
    assert q.full() is True
    with pytest.raises(queue.Full):
        q.put_nowait(99)
    assert sorted(drain(q)) == list(range(20))


@pytest.mark.parametrize("kind", QUEUE_KINDS)
@pytest.mark.parametrize("new", [2, 0])
def test_maxsize_raised_wakes_blocked_putter(tq, kind, new, wait_blocked, join_all):
    """tress looks again at once when maxsize is raised (CPython's putter
    keeps waiting until the next get; see DIVERGENCES.md)."""
    q = getattr(tq, kind)(1)
    q.put(1)

    def putter():
        return q.put(2, timeout=30)

    t, out = start(putter)
    wait_in(wait_blocked, t, putter)
    q.maxsize = new
    join_all([t], JOIN)
    assert out == [("ok", None)]
    assert sorted(drain(q)) == [1, 2]


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_maxsize_grow_then_put(qmod, kind):
    q = getattr(qmod, kind)(1)
    q.put(0)
    q.maxsize = 3
    q.put_nowait(1)
    q.put_nowait(2)
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    assert sorted(drain(q)) == [0, 1, 2]


# --------------------------------------------------------------------------
# task_done / join / unfinished_tasks


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_task_done_too_many(qmod, kind, check_qerror):
    msg = "task_done() called too many times"
    check_qerror(qmod, lambda m: getattr(m, kind)().task_done(), ValueError, msg)

    def after_one(m):
        q = getattr(m, kind)()
        q.put(1)
        q.get()
        q.task_done()
        q.task_done()

    check_qerror(qmod, after_one, ValueError, msg)
    # the failed call changed nothing: still zero, not minus one
    q = getattr(qmod, kind)()
    with pytest.raises(ValueError):
        q.task_done()
    q.put(1)
    q.task_done()
    with pytest.raises(ValueError):
        q.task_done()


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_task_done_counts_puts_not_gets(qmod, kind):
    # task_done may be called before the item was got (it counts puts)
    q = getattr(qmod, kind)()
    q.put(1)
    q.put(2)
    q.task_done()
    q.task_done()
    with pytest.raises(ValueError):
        q.task_done()
    assert q.qsize() == 2
    q.join()  # returns: no unfinished task


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_unfinished_tasks_attribute(qmod, kind):
    q = getattr(qmod, kind)()
    assert q.unfinished_tasks == 0
    q.put(1)
    q.put(2)
    assert q.unfinished_tasks == 2
    q.get()
    assert q.unfinished_tasks == 2
    q.task_done()
    assert q.unfinished_tasks == 1
    assert q.get_nowait() in (1, 2)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    assert q.unfinished_tasks == 1


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_join_without_tasks_returns(qmod, kind):
    q = getattr(qmod, kind)()
    assert q.join() is None
    q.put(1)
    q.get()
    q.task_done()
    assert q.join() is None


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_join_waits_for_every_task(qmod, kind, wait_blocked, join_all):
    q = getattr(qmod, kind)()
    for i in range(3):
        q.put(i)

    def joiner():
        return q.join()

    joiners = [start(joiner, name=f"joiner-{i}") for i in range(3)]
    for t, _ in joiners:
        wait_in(wait_blocked, t, joiner)
    for _ in range(2):
        q.get()
        q.task_done()
        for t, out in joiners:
            t.join(NOT_YET)
            assert out == [] and t.is_alive(), "join() returned with unfinished tasks"
    q.get()
    q.task_done()
    join_all([t for t, _ in joiners], JOIN)
    assert [out for _, out in joiners] == [[("ok", None)]] * 3


# --------------------------------------------------------------------------
# blocking put/get hand-offs


@pytest.mark.parametrize("kind", QUEUE_KINDS)
@pytest.mark.parametrize("timeout", [None, 30])
def test_blocked_get_receives(qmod, kind, timeout, wait_blocked, join_all):
    q = getattr(qmod, kind)()

    def getter():
        return q.get(timeout=timeout)

    t, out = start(getter)
    wait_in(wait_blocked, t, getter)
    q.put("x")
    join_all([t], JOIN)
    assert out == [("ok", "x")]
    assert q.empty()


@pytest.mark.parametrize("kind", QUEUE_KINDS)
@pytest.mark.parametrize("timeout", [None, 30])
def test_blocked_put_proceeds(qmod, kind, timeout, wait_blocked, join_all):
    q = getattr(qmod, kind)(1)
    q.put(1)

    def putter():
        return q.put(2, timeout=timeout)

    t, out = start(putter)
    wait_in(wait_blocked, t, putter)
    t.join(NOT_YET)
    assert out == [] and t.is_alive(), "put() on a full queue returned"
    assert q.get(timeout=JOIN) == 1
    join_all([t], JOIN)
    assert out == [("ok", None)]
    assert drain(q) == [2]
    assert q.unfinished_tasks == 2


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_many_blocked_getters_each_get_one(qmod, kind, wait_blocked, join_all):
    q = getattr(qmod, kind)()

    def getter():
        return q.get(timeout=30)

    getters = [start(getter, name=f"getter-{i}") for i in range(6)]
    for t, _ in getters:
        wait_in(wait_blocked, t, getter)
    for i in range(6):
        q.put(i)
    join_all([t for t, _ in getters], JOIN)
    got = sorted(v for _, out in getters for kind_, v in out)
    assert got == list(range(6))
    assert q.empty()


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_timed_get_times_out(qmod, kind):
    q = getattr(qmod, kind)()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    q.put(1)
    assert q.get(timeout=0.05) == 1


# --------------------------------------------------------------------------
# subclasses and their hooks


@pytest.mark.parametrize("base", QUEUE_KINDS)
def test_subclass_own_storage(qmod, base):
    """A subclass whose _init builds its own storage; every hook is called,
    and qsize/empty/full/put/get go through them."""
    calls = []

    class Stack(getattr(qmod, base)):
        def _init(self, maxsize):
            calls.append(("_init", maxsize))
            self.store = []

        def _qsize(self):
            calls.append(("_qsize",))
            return len(self.store)

        def _put(self, item):
            calls.append(("_put", item))
            self.store.append(item)

        def _get(self):
            calls.append(("_get",))
            return self.store.pop()

    q = Stack(2)
    assert calls == [("_init", 2)]
    assert q.store == [] and q.maxsize == 2
    assert q.empty() and not q.full()
    assert ("_qsize",) in calls
    calls.clear()
    q.put("a")
    q.put_nowait("b")
    assert ("_put", "a") in calls and ("_put", "b") in calls
    assert q.store == ["a", "b"]
    assert q.qsize() == 2 and q.full()
    with pytest.raises(queue.Full):
        q.put_nowait("c")
    assert q.store == ["a", "b"]
    calls.clear()
    assert q.get() == "b"  # the subclass's order, whatever the base
    assert calls.count(("_get",)) == 1
    assert q.get_nowait() == "a"
    with pytest.raises(queue.Empty):
        q.get_nowait()
    assert q.unfinished_tasks == 2

    # storage pre-filled by _init is visible
    class Prefilled(Stack):
        def _init(self, maxsize):
            self.store = [10, 20, 30]

    p = Prefilled()
    assert p.qsize() == 3
    assert p.get_nowait() == 30


def test_subclass_set_queue_recipe(qmod):
    """The classic recipe: _init replaces self.queue, _qsize is inherited
    (len(self.queue))."""

    class SetQueue(qmod.Queue):
        def _init(self, maxsize):
            self.queue = set()

        def _put(self, item):
            self.queue.add(item)

        def _get(self):
            return self.queue.pop()

    q = SetQueue()
    for i in (1, 2, 2, 3, 1):
        q.put(i)
    assert q.qsize() == 3
    assert q.queue == {1, 2, 3}
    assert sorted(drain(q)) == [1, 2, 3]
    assert q.unfinished_tasks == 5


@pytest.mark.parametrize("base", QUEUE_KINDS)
def test_subclass_calls_base_hooks(qmod, base):
    log = []
    Base = getattr(qmod, base)

    class Logged(Base):
        def __init__(self, maxsize=0, tag="t"):
            self.tag = tag
            super().__init__(maxsize)

        def _put(self, item):
            log.append(("put", self.tag, item))
            Base._put(self, item)

        def _get(self):
            item = Base._get(self)
            log.append(("get", self.tag, item))
            return item

    q = Logged(3, tag="x")
    for i in (3, 1, 2):
        q.put(i)
    got = drain(q)
    assert got == expected_order(base, [3, 1, 2])
    assert log == [("put", "x", 3), ("put", "x", 1), ("put", "x", 2)] + [
        ("get", "x", i) for i in got
    ]


class HookError(Exception):
    pass


def _failing_subclass(qmod, base):
    Base = getattr(qmod, base)

    class Failing(Base):
        fail = frozenset()

        def _put(self, item):
            if "put" in self.fail:
                raise HookError("put")
            return Base._put(self, item)

        def _get(self):
            if "get" in self.fail:
                raise HookError("get")
            return Base._get(self)

        def _qsize(self):
            if "qsize" in self.fail:
                raise HookError("qsize")
            return Base._qsize(self)

    return Failing


@pytest.mark.parametrize("base", QUEUE_KINDS)
def test_hook_errors_propagate_queue_consistent(qmod, base, wait_blocked, join_all):
    q = _failing_subclass(qmod, base)(3)
    q.put(1)
    q.put(2)
    q.fail = {"put"}
    for call in (lambda: q.put(9), lambda: q.put_nowait(9), lambda: q.put(9, timeout=1)):
        with pytest.raises(HookError, match="put"):
            call()
    q.fail = set()
    assert q.qsize() == 2
    assert q.unfinished_tasks == 2  # a failed _put is not counted
    q.fail = {"get"}
    for call in (q.get, q.get_nowait, lambda: q.get(timeout=1)):
        with pytest.raises(HookError, match="get"):
            call()
    q.fail = {"qsize"}
    for call in (q.qsize, q.empty, q.full, lambda: q.put_nowait(9)):
        with pytest.raises(HookError, match="qsize"):
            call()
    q.fail = set()
    assert q.qsize() == 2
    assert sorted(drain(q)) == [1, 2]

    # the queue still works, with threads too
    def getter():
        return q.get(timeout=30)

    t, out = start(getter)
    wait_in(wait_blocked, t, getter)
    q.put(5)
    join_all([t], JOIN)
    assert out == [("ok", 5)]
    for _ in range(3):
        q.task_done()
    with pytest.raises(ValueError):
        q.task_done()
    q.join()


@pytest.mark.parametrize("base", QUEUE_KINDS)
def test_failed_put_wakes_nobody(qmod, base, wait_blocked, join_all):
    """A put whose _put raised must not consume a waiting getter's wakeup
    or deliver anything; the next good put reaches the getter."""
    q = _failing_subclass(qmod, base)()

    def getter():
        return q.get(timeout=30)

    t, out = start(getter)
    wait_in(wait_blocked, t, getter)
    q.fail = {"put"}
    with pytest.raises(HookError):
        q.put("bad")
    q.fail = set()
    t.join(NOT_YET)
    assert out == [], out
    q.put("good")
    join_all([t], JOIN)
    assert out == [("ok", "good")]


def test_init_error_propagates(qmod, check_qerror):
    def make(m):
        class Broken(m.Queue):
            def _init(self, maxsize):
                raise HookError(f"init {maxsize}")

        Broken(4)

    exc = check_qerror(qmod, make, HookError, "init 4")
    assert str(exc) == "init 4"


# --------------------------------------------------------------------------
# PriorityQueue with comparisons that fail


class Touchy:
    """Ordered by ``n``; comparing raises while ``Touchy.armed`` is true."""

    armed = False

    def __init__(self, n):
        self.n = n

    def __lt__(self, other):
        if Touchy.armed:
            raise HookError(f"compare {self.n}")
        return self.n < other.n

    def __repr__(self):
        return f"Touchy({self.n})"


@pytest.fixture
def touchy():
    Touchy.armed = False
    yield Touchy
    Touchy.armed = False


def test_priority_uncomparable_message(qmod, check_qerror):
    def put_two(m):
        q = m.PriorityQueue()
        q.put((1, object()))
        q.put((1, object()))

    check_qerror(
        qmod, put_two, TypeError, "'<' not supported between instances of 'object' and 'object'"
    )

    def mixed(m):
        q = m.PriorityQueue()
        q.put(1)
        q.put("a")

    check_qerror(qmod, mixed, TypeError, type_only=True)


def test_priority_lt_raises_propagates(qmod, touchy):
    """Both implementations: the comparison's exception propagates and the
    queue keeps working afterwards."""
    q = qmod.PriorityQueue()
    for n in (5, 1, 4, 2, 3):
        q.put(touchy(n))
    touchy.armed = True
    with pytest.raises(HookError):
        q.put(touchy(0))
    with pytest.raises(HookError):
        q.get()
    touchy.armed = False
    q.put(touchy(10))
    left = [t.n for t in drain(q)]
    assert len(left) >= 5  # whatever CPython lost or kept, no crash, no hang
    assert 10 in left


def test_priority_failed_put_not_queued(tq, touchy):
    """tress is stricter than CPython (whose heappush leaves the item in the
    list): a put whose comparison raised leaves the item NOT queued, and
    everything else comes out in order."""
    q = tq.PriorityQueue()
    for n in (5, 1, 4, 2, 3, 6, 7):
        q.put(touchy(n))
    for bad in (0, 8, 4):
        touchy.armed = True
        with pytest.raises(HookError):
            q.put(touchy(bad))
        touchy.armed = False
        assert q.qsize() == 7, f"the failed put of {bad} changed qsize"
    assert q.unfinished_tasks == 7
    assert [t.n for t in drain(q)] == [1, 2, 3, 4, 5, 6, 7]


def test_priority_failed_get_loses_nothing(tq, touchy):
    """tress is stricter than CPython (whose heappop has already removed the
    smallest item when a comparison fails): a get whose comparison raised
    returns nothing and loses nothing."""
    q = tq.PriorityQueue()
    for n in (5, 1, 4, 2, 3, 6, 7):
        q.put(touchy(n))
    expected = [1, 2, 3, 4, 5, 6, 7]
    got = []
    while expected[len(got) :]:
        touchy.armed = True
        # the last two items need no comparison to be got
        if q.qsize() >= 3:
            with pytest.raises(HookError):
                q.get()
            with pytest.raises(HookError):
                q.get_nowait()
            assert q.qsize() == len(expected) - len(got), "a failed get removed an item"
        touchy.armed = False
        got.append(q.get_nowait().n)
    assert got == expected
    assert q.empty()


def test_priority_failed_get_frees_no_slot(tq, touchy, wait_blocked, join_all):
    """A full PriorityQueue with a blocked putter: a get whose comparison
    raises frees no slot (the putter stays blocked); the next good get
    returns the smallest item and lets the putter in; nothing is lost."""
    q = tq.PriorityQueue(3)
    for n in (9, 7, 8):
        q.put(touchy(n))

    def putter():
        return q.put(touchy(1), timeout=30)

    t, out = start(putter)
    wait_in(wait_blocked, t, putter)
    touchy.armed = True
    try:
        with pytest.raises(HookError):
            q.get()
        t.join(NOT_YET)
        assert out == [] and t.is_alive(), f"the failed get let the putter in: {out}"
        assert q.qsize() == 3
    finally:
        touchy.armed = False
    assert q.get(timeout=JOIN).n == 7
    join_all([t], JOIN)
    assert out == [("ok", None)]
    assert [x.n for x in drain(q)] == [1, 8, 9]


def test_priority_comparison_reentering_its_queue(tq):
    """CPython deadlocks on the queue's mutex when an item's __lt__ uses its
    own queue; tress raises RuntimeError (see DIVERGENCES.md) and the queue
    is exactly as before."""
    q = tq.PriorityQueue()

    class Reentrant:
        action = None

        def __init__(self, n):
            self.n = n

        def __lt__(self, other):
            if Reentrant.action is not None:
                Reentrant.action()
            return self.n < other.n

    for n in (4, 2, 6):
        q.put(Reentrant(n))
    for action in (lambda: q.put_nowait(Reentrant(0)), q.get_nowait, lambda: q.put(Reentrant(1))):
        Reentrant.action = action
        try:
            with pytest.raises(RuntimeError):
                q.put(Reentrant(3))
            with pytest.raises(RuntimeError):
                q.get()
        finally:
            Reentrant.action = None
        assert q.qsize() == 3
        assert q.unfinished_tasks == 3
    assert [x.n for x in drain(q)] == [2, 4, 6]


# --------------------------------------------------------------------------
# SimpleQueue


def test_simplequeue_basic(qmod):
    q = qmod.SimpleQueue()
    assert (q.qsize(), q.empty()) == (0, True)
    q.put(1)
    q.put_nowait(2)
    q.put(3, block=False)
    q.put(4, True, 5)
    assert (q.qsize(), q.empty()) == (4, False)
    assert [q.get(), q.get_nowait(), q.get(False), q.get(timeout=1)] == [1, 2, 3, 4]
    assert (q.qsize(), q.empty()) == (0, True)


def test_simplequeue_surface(qmod):
    # SimpleQueue has no task tracking and no size limit
    q, ref = qmod.SimpleQueue(), queue.SimpleQueue()
    for name in [
        "put",
        "get",
        "put_nowait",
        "get_nowait",
        "qsize",
        "empty",
        "task_done",
        "join",
        "full",
        "maxsize",
        "unfinished_tasks",
    ]:
        assert hasattr(q, name) == hasattr(ref, name), name


@pytest.mark.parametrize("block", [False, True, 0, None, "x"])
@pytest.mark.parametrize("timeout", [None, -1, -0.5, 0, 1e100, float("nan"), "zz", 2**70])
def test_simplequeue_put_ignores_block_and_timeout(qmod, block, timeout):
    q = qmod.SimpleQueue()
    q.put(1, block, timeout)
    q.put(2, block=block, timeout=timeout)
    q.put(item=3, timeout=timeout, block=block)
    q.put_nowait(item=4)
    assert [q.get_nowait() for _ in range(4)] == [1, 2, 3, 4]


@pytest.mark.parametrize("block", [None, "", [], 0.0, "x", [0], 2.5])
def test_simplequeue_get_block_any_object(qmod, block):
    # _queue.SimpleQueue.get takes ``block`` as a bool (any object's truth)
    q = qmod.SimpleQueue()
    q.put(1)
    assert q.get(block, 0.01) == 1
    with pytest.raises(queue.Empty):
        q.get(block=block, timeout=0.01)


def test_simplequeue_empty_errors(qmod, check_qerror):
    check_qerror(qmod, lambda m: m.SimpleQueue().get_nowait(), queue.Empty, "")
    check_qerror(qmod, lambda m: m.SimpleQueue().get(False), queue.Empty, "")
    check_qerror(qmod, lambda m: m.SimpleQueue().get(block=False, timeout=5), queue.Empty, "")
    check_qerror(qmod, lambda m: m.SimpleQueue().get(timeout=0), queue.Empty, "")
    check_qerror(qmod, lambda m: m.SimpleQueue().get(timeout=0.01), queue.Empty, "")


PYTIME_OVERFLOW = "timestamp too large to convert to C " + (
    "PyTime_t" if sys.version_info >= (3, 13) else "_PyTime_t")  # 3.13 made the type public


@pytest.mark.parametrize(
    "timeout, exc_type, message",
    [
        (-1, ValueError, TIMEOUT_MSG),
        (-0.5, ValueError, TIMEOUT_MSG),
        (-1e-6, ValueError, TIMEOUT_MSG),
        (float("-inf"), OverflowError, "timestamp out of range for platform time_t"),
        (float("inf"), OverflowError, "timestamp out of range for platform time_t"),
        (1e100, OverflowError, "timestamp out of range for platform time_t"),
        (1e10, OverflowError, "timestamp out of range for platform time_t"),
        (2**70, OverflowError, PYTIME_OVERFLOW),
        (-(2**70), OverflowError, PYTIME_OVERFLOW),
        (float("nan"), ValueError, "Invalid value NaN (not a number)"),
        ("1", TypeError, "'str' object cannot be interpreted as an integer"),
        (1j, TypeError, "'complex' object cannot be interpreted as an integer"),
    ],
)
def test_simplequeue_get_timeout_errors(qmod, check_qerror, timeout, exc_type, message):
    """C semantics (_queue.SimpleQueue.get): the timeout is converted and
    checked whenever block is true, even with an item queued, which stays."""

    def call(m):
        q = m.SimpleQueue()
        q.put(1)
        try:
            q.get(timeout=timeout)
        finally:
            assert q.qsize() == 1 and q.get_nowait() == 1

    check_qerror(qmod, call, exc_type, message)
    # not looked at when block is false
    q = qmod.SimpleQueue()
    q.put(2)
    assert q.get(False, timeout) == 2
    with pytest.raises(queue.Empty):
        q.get(block=False, timeout=timeout)


@pytest.mark.parametrize("timeout", [-1e-10, -0.0, 0, 1e-9, False, True, 5, 1e9])
def test_simplequeue_get_timeout_rounding(qmod, timeout):
    # C rounds the timeout up to a whole nanosecond: -1e-10 becomes 0
    q = qmod.SimpleQueue()
    q.put(1)
    assert q.get(timeout=timeout) == 1
    if timeout < 1e-3:
        with pytest.raises(queue.Empty):
            q.get(timeout=timeout)


def test_simplequeue_arity_errors(qmod, check_qerror):
    check_qerror(qmod, lambda m: m.SimpleQueue(1), TypeError, type_only=True)
    check_qerror(qmod, lambda m: m.SimpleQueue().put(), TypeError, type_only=True)
    check_qerror(qmod, lambda m: m.SimpleQueue().put(1, True, None, 4), TypeError, type_only=True)
    check_qerror(qmod, lambda m: m.SimpleQueue().get(True, None, 3), TypeError, type_only=True)
    check_qerror(qmod, lambda m: m.SimpleQueue().put_nowait(), TypeError, type_only=True)


def test_simplequeue_subclass(qmod):
    seen = []

    class Tracking(qmod.SimpleQueue):
        def put(self, item, block=True, timeout=None):
            seen.append(item)
            super().put(item, block, timeout)

    q = Tracking()
    q.put(1)
    q.put(2)
    assert seen == [1, 2]
    assert [q.get(), q.get()] == [1, 2]
    assert isinstance(q, qmod.SimpleQueue)


def test_simplequeue_blocked_getters(qmod, wait_blocked, join_all):
    q = qmod.SimpleQueue()

    def getter():
        return q.get(timeout=30)

    getters = [start(getter, name=f"getter-{i}") for i in range(4)]
    for t, _ in getters:
        wait_in(wait_blocked, t, getter)
    for i in range(4):
        q.put(i)
    join_all([t for t, _ in getters], JOIN)
    assert sorted(v for _, out in getters for _k, v in out) == [0, 1, 2, 3]


def test_simplequeue_reentrant_put_from_del(qmod):
    """bpo-14976 (as CPython's test_reentrancy): __del__ of cyclic garbage
    runs whenever the GC does, e.g. inside put() or get(), and puts into the
    same queue.  With a GC threshold of 1 it runs very often."""
    q = qmod.SimpleQueue()
    counter = iter(range(10**9))
    results = []

    class Circular:
        def __init__(self):
            self.me = self

        def __del__(self):
            q.put(next(counter))

    old = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        n = 3000
        while True:
            o = Circular()
            q.put(next(counter))
            del o
            results.append(q.get(timeout=10))
            if results[-1] >= n:
                break
    finally:
        gc.set_threshold(*old)
    gc.collect()
    results.extend(drain(q))
    assert results[: n + 1] == list(range(n + 1))
    assert results == list(range(len(results)))


SIGNAL_PUT_CHILD = r"""
import faulthandler, importlib, json, os, signal, sys, threading, time
faulthandler.dump_traceback_later(40, exit=True)
M = importlib.import_module(sys.argv[1])
TIMEOUT = None if sys.argv[2] == "none" else float(sys.argv[2])
q = M.SimpleQueue()
main_ident = threading.get_ident()
handled = []

def handler(signum, frame):
    # reentrant: runs on the main thread while it is inside q.get()
    q.put(("from-handler", len(handled)))
    q.put(("second", len(handled)))
    handled.append(in_get())

signal.signal(signal.SIGUSR1, handler)

def in_get():
    f = sys._current_frames().get(main_ident)
    while f is not None:
        if f.f_code.co_name == "blocking":
            return True
        f = f.f_back
    return False

def blocking():
    return q.get() if TIMEOUT is None else q.get(timeout=TIMEOUT)

def sender():
    deadline = time.monotonic() + 10
    while not in_get():
        if time.monotonic() > deadline:
            return
        time.sleep(0.005)
    time.sleep(0.1)   # let it park
    os.kill(os.getpid(), signal.SIGUSR1)

t = threading.Thread(target=sender)
t.start()
res = {}
t0 = time.monotonic()
try:
    res["got"] = list(blocking())
except BaseException as exc:
    res["raised"] = repr(exc)
res["elapsed"] = time.monotonic() - t0
t.join(10)
res["handled"] = handled
res["left"] = [list(x) for x in [q.get_nowait() for _ in range(q.qsize())]]
q.put(1)
res["after"] = q.get(timeout=5)
print(json.dumps(res))
"""


@pytest.mark.parametrize("timeout", ["none", "20"])
def test_simplequeue_put_from_signal_handler(qmod, run_python, timeout):
    """A signal handler puts into the SimpleQueue the main thread is blocked
    on (get): the handler's put must not deadlock, and get returns its item."""
    name = "queue" if qmod is queue else "tress.queue"
    proc = run_python(SIGNAL_PUT_CHILD, name, timeout, timeout=60)
    assert proc.returncode == 0, f"child exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["handled"] == [True], res
    assert res["got"] == ["from-handler", 0], res
    assert res["left"] == [["second", 0]], res
    assert res["after"] == 1, res
    assert res["elapsed"] < 10, res


# --------------------------------------------------------------------------
# shutdown (CPython 3.13 semantics)


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_shutdown_put_raises(sdmod, kind):
    q = getattr(sdmod, kind)(5)
    q.put(1)
    q.shutdown()
    for call in (
        lambda: q.put(2),
        lambda: q.put_nowait(2),
        lambda: q.put(2, block=False),
        lambda: q.put(2, timeout=1),
    ):
        with pytest.raises(sdmod.ShutDown):
            call()
    assert q.qsize() == 1
    assert q.unfinished_tasks == 1


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_shutdown_get_drains_then_raises(sdmod, kind, join_all):
    q = getattr(sdmod, kind)()
    items = [3, 1, 2]
    for i in items:
        q.put(i)
    q.shutdown()
    assert q.qsize() == 3
    got = [q.get(), q.get_nowait(), q.get(timeout=1)]
    assert got == expected_order(kind, items)
    for call in (q.get_nowait, lambda: q.get(False), lambda: q.get(timeout=1)):
        with pytest.raises(sdmod.ShutDown):
            call()
    t, out = start(q.get)  # an unbounded get must raise, not block
    join_all([t], JOIN)
    assert len(out) == 1 and out[0][0] == "raised" and type(out[0][1]) is sdmod.ShutDown
    # non-immediate: the tasks still count until task_done
    assert q.unfinished_tasks == 3
    for _ in range(3):
        q.task_done()
    q.join()


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_shutdown_precedes_timeout_check(sdmod, kind):
    """CPython 3.13's queue.py looks at the shutdown state first: a put on a
    shut-down queue, and a get on a shut-down empty one, raise ShutDown even
    with an invalid timeout; with items left, get validates the timeout."""
    q = getattr(sdmod, kind)(5)
    q.put(1)
    q.shutdown()
    with pytest.raises(sdmod.ShutDown):
        q.put(2, timeout=-1)
    with pytest.raises(ValueError, match=re.escape(TIMEOUT_MSG)):
        q.get(timeout=-1)
    assert q.get_nowait() == 1
    with pytest.raises(sdmod.ShutDown):
        q.get(timeout=-1)


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_shutdown_empty_queue(sdmod, kind):
    q = getattr(sdmod, kind)()
    q.shutdown()
    with pytest.raises(sdmod.ShutDown):
        q.get_nowait()  # ShutDown, not Empty
    with pytest.raises(sdmod.ShutDown):
        q.get(timeout=0)
    q.join()
    q.shutdown()  # twice is fine
    q.shutdown(immediate=True)


@pytest.mark.parametrize("kind", QUEUE_KINDS)
@pytest.mark.parametrize("how", ["keyword", "positional", "later"])
def test_shutdown_immediate(sdmod, kind, how):
    class Item:
        def __init__(self, n):
            self.n = n

        def __lt__(self, other):
            return self.n < other.n

    q = getattr(sdmod, kind)()
    refs = []
    for i in range(5):
        it = Item(i)
        refs.append(weakref.ref(it))
        q.put(it)
    del it
    first = q.get()  # got but not task_done: stays unfinished
    assert q.unfinished_tasks == 5
    if how == "keyword":
        q.shutdown(immediate=True)
    elif how == "positional":
        q.shutdown(True)
    else:
        q.shutdown()
        assert q.qsize() == 4
        q.shutdown(immediate=True)
    assert q.qsize() == 0 and q.empty()
    with pytest.raises(sdmod.ShutDown):
        q.get(timeout=1)
    with pytest.raises(sdmod.ShutDown):
        q.get_nowait()
    with pytest.raises(sdmod.ShutDown):
        q.put(Item(9))
    assert q.unfinished_tasks == 1  # only the task that was got
    gc.collect()
    alive = [r() for r in refs if r() is not None]
    assert alive == [first], "shutdown(immediate=True) kept references to the dropped items"
    q.task_done()
    q.join()
    with pytest.raises(ValueError):
        q.task_done()


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_shutdown_wakes_blocked_getters(sdmod, kind, wait_blocked, join_all):
    q = getattr(sdmod, kind)()

    def getter():
        return q.get()

    def timed_getter():
        return q.get(timeout=60)

    ts = [start(getter, name="getter")] + [start(timed_getter, name="timed_getter")]
    wait_in(wait_blocked, ts[0][0], getter)
    wait_in(wait_blocked, ts[1][0], timed_getter)
    q.shutdown()
    join_all([t for t, _ in ts], JOIN)
    for _, out in ts:
        assert len(out) == 1 and out[0][0] == "raised", out
        assert type(out[0][1]) is sdmod.ShutDown, out


@pytest.mark.parametrize("kind", QUEUE_KINDS)
@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_wakes_blocked_putters(sdmod, kind, immediate, wait_blocked, join_all):
    q = getattr(sdmod, kind)(2)
    q.put(1)
    q.put(2)

    def putter():
        return q.put(3)

    def timed_putter():
        return q.put(4, timeout=60)

    ts = [start(putter, name="putter"), start(timed_putter, name="timed_putter")]
    wait_in(wait_blocked, ts[0][0], putter)
    wait_in(wait_blocked, ts[1][0], timed_putter)
    q.shutdown(immediate=immediate)
    join_all([t for t, _ in ts], JOIN)
    for _, out in ts:
        assert len(out) == 1 and out[0][0] == "raised", out
        assert type(out[0][1]) is sdmod.ShutDown, out
    if immediate:
        assert q.qsize() == 0 and q.unfinished_tasks == 0
    else:
        assert sorted(drain(q)) == [1, 2]  # the blocked puts added nothing
        assert q.unfinished_tasks == 2


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_shutdown_immediate_wakes_joiners(sdmod, kind, wait_blocked, join_all):
    q = getattr(sdmod, kind)()
    for i in range(3):
        q.put(i)

    def joiner():
        return q.join()

    ts = [start(joiner, name=f"joiner-{i}") for i in range(3)]
    for t, _ in ts:
        wait_in(wait_blocked, t, joiner)
    q.shutdown()  # not immediate: joiners keep waiting for the tasks
    for t, out in ts:
        t.join(NOT_YET)
        assert out == [] and t.is_alive(), "join() returned with unfinished tasks"
    q.shutdown(immediate=True)
    join_all([t for t, _ in ts], JOIN)
    assert [out for _, out in ts] == [[("ok", None)]] * 3


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_shutdown_joiners_wake_after_drain(sdmod, kind, wait_blocked, join_all):
    q = getattr(sdmod, kind)()
    for i in range(3):
        q.put(i)

    def joiner():
        return q.join()

    t, out = start(joiner)
    wait_in(wait_blocked, t, joiner)
    q.shutdown()
    while True:
        try:
            q.get_nowait()
        except sdmod.ShutDown:
            break
        q.task_done()
    join_all([t], JOIN)
    assert out == [("ok", None)]


@pytest.mark.parametrize("kind", QUEUE_KINDS)
def test_shutdown_consumers_drain_everything(sdmod, kind, join_all):
    """Producers then shutdown(); consumers loop until ShutDown: every item
    is delivered exactly once."""
    q = getattr(sdmod, kind)(8)
    n_items = 2000
    got = [[] for _ in range(3)]

    def consumer(i):
        while True:
            try:
                item = q.get(timeout=30)
            except sdmod.ShutDown:
                return
            got[i].append(item)
            q.task_done()

    cons = [threading.Thread(target=consumer, args=(i,), daemon=True) for i in range(3)]
    for t in cons:
        t.start()
    for i in range(n_items):
        q.put(i, timeout=30)
    q.shutdown()
    join_all(cons, 30)
    assert sorted(x for g in got for x in g) == list(range(n_items))
    q.join()


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_cycle_through_a_queued_item_is_collected(qmod, kind):
    """An item that refers back to its queue: the garbage collector sees
    the queue's items (tp_traverse) and frees the cycle."""

    class Item:
        pass

    q = getattr(qmod, kind)()
    item = Item()
    item.q = q
    q.put((1, item) if kind == "PriorityQueue" else item)
    ref = weakref.ref(q)
    del q, item
    gc.collect()
    assert ref() is None, "the queue and its item leaked"
