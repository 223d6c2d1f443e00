"""The child-process side of test_mp_context.py.

In a module of its own, importable by name (``tests/python`` is on
``sys.path`` under pytest, and spawn/forkserver children receive the
parent's ``sys.path``), so the targets pickle by reference under every start
method and a spawned child does not import the test module (nor pytest).

Every child wait is bounded by ``CHILD`` seconds (the parent reaps its
children well before, or kills them).
"""

import multiprocessing

import tress.multiprocessing as tmp

CHILD = 30.0  # seconds: bound on a child's own waits


def square(x):
    return x * x


def start_method(_=None):
    """The start method this process was started with (its Process class's)."""
    return multiprocessing.current_process()._start_method


def report(out):
    """How this child was started, and what both modules say the global
    start method is."""
    me = multiprocessing.current_process()
    out.put({
        "start_method": me._start_method,
        "process_class": type(me).__name__,
        "name": me.name,
        "std_global": multiprocessing.get_start_method(allow_none=True),
        "tress_global": tmp.get_start_method(allow_none=True),
    })


def echo(q, out):
    """Take one item from ``q``, send it back on ``out`` with the types."""
    item = q.get(timeout=CHILD)
    out.put((item, type(q).__module__, type(out).__module__))


def wait_event(ev, lock, out):
    """Wait for the parent's event; then its lock, held until it lets go."""
    out.put(("event", ev.wait(timeout=CHILD)))
    out.put(("lock held", lock.acquire(timeout=0.05)))
    got = lock.acquire(timeout=CHILD)
    out.put(("lock free", got))
    if got:
        lock.release()


def exercise(p, out):
    """Use every primitive of ``p`` (made by the parent from one context),
    reporting each step on ``out``; the parent drives the other side (see
    test_mp_context.test_primitives_across_a_child)."""
    # Queue / JoinableQueue / SimpleQueue
    out.put(("queue", p["queue"].get(timeout=CHILD)))
    for _ in range(2):
        out.put(("joinable", p["joinable"].get(timeout=CHILD)))
        p["joinable"].task_done()
    out.put(("simple", p["simple"].get()))  # the parent put it before the start
    # Lock, held by the parent: not ours until it lets go (then set `go`)
    out.put(("lock-held", p["lock"].acquire(timeout=0.05)))
    out.put(("go", p["go"].wait(timeout=CHILD)))
    got = p["lock"].acquire(timeout=CHILD)
    out.put(("lock-free", got))
    if got:
        p["lock"].release()
    # RLock: recursive here
    with p["rlock"]:
        out.put(("rlock", p["rlock"].acquire(timeout=CHILD)))
        p["rlock"].release()
    # Semaphore: the parent acquires what we release
    p["sem"].release()
    p["sem"].release()
    # BoundedSemaphore: one over its bound raises
    bounded = p["bsem"]
    out.put(("bsem-acquire", bounded.acquire(timeout=CHILD)))
    bounded.release()
    try:
        bounded.release()
    except ValueError as exc:
        out.put(("bsem-over", str(exc)))
    else:
        out.put(("bsem-over", None))
    # Condition: wait (holding it when we say so), notified by the parent
    with p["cond"]:
        p["ready"].set()
        out.put(("cond", p["cond"].wait(timeout=CHILD)))
    # Barrier of two: the parent is the other party
    out.put(("barrier", p["barrier"].wait(timeout=CHILD)))
    out.put(("done", None))


def add_under_lock(value, n):
    for _ in range(n):
        with value.get_lock():
            value.value += 1


_TAGS = []


def init_tag(tag):
    """A Pool initializer: remember ``tag`` in this worker."""
    _TAGS.append(tag)


def tags(_=None):
    return list(_TAGS)
