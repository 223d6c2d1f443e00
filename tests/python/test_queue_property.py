"""Property test: tress.queue and the stdlib ``queue`` driven with the same
random sequence of single-thread operations give the same results and the
same exceptions (type and message), operation by operation.

One example = one queue kind (Queue, LifoQueue, PriorityQueue with a
maxsize among 0, negatives and small bounds, or SimpleQueue) and up to 40
operations: put/put_nowait/get/get_nowait with ``block`` true or false and
timeouts that are absent, zero, tiny, or invalid (negative), qsize, empty,
full, task_done, unfinished_tasks and assignments to ``maxsize``.

A call that would block forever on the stdlib (a put into a full queue or a
get from an empty one, with no timeout) is not generated as such: it becomes
the same call with a tiny timeout.  Should tress block where the stdlib did
not, a fuse (a timer thread) unblocks it after a few seconds and the example
fails instead of hanging.

``TRESS_QUEUE_PROPERTY_TARGET=queue`` drives two stdlib queues instead, to
tell a harness problem from a tress bug.

Hypothesis keeps no example database here (``database=None``): the run
writes nothing into the working tree.
"""

import importlib
import os
import queue
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TARGET = os.environ.get("TRESS_QUEUE_PROPERTY_TARGET", "tress.queue")


def _import_tress_queue():
    try:
        return importlib.import_module(TARGET), None
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken build
        return None, f"{type(exc).__name__}: {exc}"


TRESS_QUEUE, TRESS_QUEUE_IMPORT_ERROR = _import_tress_queue()
pytestmark = pytest.mark.skipif(
    TRESS_QUEUE is None,
    reason=(
        f"{TARGET} is not importable ({TRESS_QUEUE_IMPORT_ERROR}); build and install it "
        "with `pip install --no-build-isolation --force-reinstall --no-deps .`"
    ),
)

FUSE = 5.0  # seconds before an unexpectedly blocked tress call is unblocked
TINY = [0.0005, 0.001]
BAD_TIMEOUTS = [-1, -0.5, -1e-10, -1e-3]

items = st.integers(min_value=-3, max_value=12)
blocks = st.sampled_from([True, False, 1, 0])
timeouts = st.sampled_from([None, 0, 0.0] + TINY + BAD_TIMEOUTS)

queue_ops = st.one_of(
    st.tuples(st.just("put"), items, blocks, timeouts),
    st.tuples(st.just("put_nowait"), items),
    st.tuples(st.just("get"), blocks, timeouts),
    st.tuples(st.just("get_nowait")),
    st.tuples(st.just("qsize")),
    st.tuples(st.just("empty")),
    st.tuples(st.just("full")),
    st.tuples(st.just("task_done")),
    st.tuples(st.just("unfinished_tasks")),
    st.tuples(st.just("set_maxsize"), st.integers(min_value=-2, max_value=4)),
)
simple_ops = st.one_of(
    st.tuples(st.just("put"), items, blocks, timeouts),
    st.tuples(st.just("put_nowait"), items),
    st.tuples(st.just("get"), blocks, timeouts),
    st.tuples(st.just("get_nowait")),
    st.tuples(st.just("qsize")),
    st.tuples(st.just("empty")),
)


@st.composite
def scenarios(draw):
    kind = draw(st.sampled_from(["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue"]))
    if kind == "SimpleQueue":
        return kind, None, draw(st.lists(simple_ops, max_size=40))
    maxsize = draw(st.sampled_from([0, -1, -3, 1, 2, 3, 5]))
    return kind, maxsize, draw(st.lists(queue_ops, max_size=40))


def would_block_forever(ref, kind, op):
    """Would ``op`` wait with no timeout on the stdlib queue ``ref``?"""
    name = op[0]
    if name == "put":
        _, _, block, timeout = op
        return (
            kind != "SimpleQueue" and block and timeout is None and 0 < ref.maxsize <= ref.qsize()
        )
    if name == "get":
        _, block, timeout = op
        return block and timeout is None and ref.qsize() == 0
    return False


def apply(q, op):
    name = op[0]
    if name == "put":
        return q.put(op[1], op[2], op[3])
    if name == "put_nowait":
        return q.put_nowait(op[1])
    if name == "get":
        return q.get(op[1], op[2])
    if name == "get_nowait":
        return q.get_nowait()
    if name == "unfinished_tasks":
        return q.unfinished_tasks
    if name == "set_maxsize":
        q.maxsize = op[1]
        return q.maxsize
    return getattr(q, name)()


def outcome(q, op):
    try:
        return ("ok", apply(q, op))
    except Exception as exc:  # noqa: BLE001 - compared with the stdlib's
        return ("raised", type(exc), str(exc))


def fused_outcome(q, op):
    """outcome(q, op), with a fuse that unblocks q if op blocks too long."""
    fired = []

    def unblock():
        fired.append(True)
        if op[0] == "get":
            q.put(None, timeout=1)
        else:
            q.get(timeout=1)

    fuse = threading.Timer(FUSE, unblock)
    fuse.daemon = True
    fuse.start()
    try:
        return outcome(q, op), fired
    finally:
        fuse.cancel()
        fuse.join(FUSE + 5)


@settings(
    max_examples=250,
    deadline=None,  # tiny timeouts make durations noisy; the size of an example is bounded instead
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenarios())
def test_same_results_as_stdlib(scenario):
    kind, maxsize, ops = scenario
    args = () if maxsize is None else (maxsize,)
    ref = getattr(queue, kind)(*args)
    tq = getattr(TRESS_QUEUE, kind)(*args)
    history = []
    for i, op in enumerate(ops):
        if would_block_forever(ref, kind, op):
            op = op[:-1] + (TINY[0],)
        expected = outcome(ref, op)
        got, fired = fused_outcome(tq, op)
        history.append((op, expected))
        assert not fired, (
            f"{kind}({maxsize}): op #{i} {op!r} blocked on tress for {FUSE} s; "
            f"the stdlib gave {expected!r}\nhistory: {history}"
        )
        assert got == expected, (
            f"{kind}({maxsize}): op #{i} {op!r}: tress {got!r} != stdlib {expected!r}\n"
            f"history: {history}"
        )
    # the final contents agree too, in order
    left_ref, left_tq = [], []
    for q, left in ((ref, left_ref), (tq, left_tq)):
        while True:
            try:
                left.append(q.get_nowait())
            except queue.Empty:
                break
    assert left_tq == left_ref, f"{kind}({maxsize}) contents: tress {left_tq} != stdlib {left_ref}"
