"""Functions the process-pool tests send to worker processes.

They live in a small module of their own, importable by name
(``tests/python`` is on ``sys.path`` under pytest, and spawn/forkserver
children receive the parent's ``sys.path``), so that they pickle by
reference under every start method and a spawned child does not have to
import a test module (and pytest with it).

Nothing here may sleep-and-hope: a task that has to be held while the test
checks something waits for a file the test creates (``hold``), with a
deadline, and says that it started by creating a file of its own.
"""

import glob
import os
import signal
import threading
import time

DEADLINE = 60.0  # a held task gives up (and fails) after this long


class CustomError(Exception):
    """An exception class of our own: its type must survive the trip back."""


class Unpicklable:
    """A value whose pickling fails, with a repr that does not depend on
    its address (so that a MaybeEncodingError's message is deterministic)."""

    def __init__(self, tag):
        self.tag = tag

    def __repr__(self):
        return f"Unpicklable({self.tag!r})"

    def __reduce__(self):
        raise TypeError(f"Unpicklable({self.tag!r}) refuses to be pickled")


# -- plain functions


def square(x):
    return x * x


def inverse(x):
    return 1 / x


def identity(x):
    return x


def add(a, b):
    return a + b


def keyword_func(a, b=0, *, c=0):
    return (a, b, c)


def pid(_=None):
    return os.getpid()


def fail_at_13(x):
    if x == 13:
        raise ValueError(f"bad {x}")
    return x * 10


def raise_custom(message):
    raise CustomError(message)


def raise_key_error(key):
    raise KeyError(key)


def unpicklable_result(tag):
    return Unpicklable(tag)


def unpicklable_result_at(x, bad):
    return Unpicklable(x) if x == bad else x * x


def make_bytes(n):
    return b"r" * n


def sleep_for(seconds):
    time.sleep(seconds)
    return seconds


def sleep_then_square(x, seconds):
    time.sleep(seconds)
    return x * x


# -- held tasks (sequenced by files, with a deadline)


def touch(path):
    with open(path, "w") as f:
        f.write(str(os.getpid()))


def hold(value, started_path, go_path, deadline=DEADLINE):
    """Create ``started_path`` (containing this worker's pid), wait until
    ``go_path`` exists, return ``value``. Fails after ``deadline`` s."""
    touch(started_path)
    end = time.monotonic() + deadline
    while not os.path.exists(go_path):
        if time.monotonic() > end:
            raise TimeoutError(f"hold({value!r}): {go_path} never appeared")
        time.sleep(0.002)
    return value


def hold_one(args):
    """``hold(*args)``, for map and imap (one argument per item)."""
    return hold(*args)


def fail_or_hold(value, started_path, go_path):
    """``hold``, except that the value "fail" raises at once."""
    if value == "fail":
        raise RuntimeError("failed early")
    return hold(value, started_path, go_path)


def record(value, directory):
    """Leave a trace that this call ran (a file named after the value)."""
    touch(os.path.join(directory, f"ran-{value}"))
    return value


# -- initializers


_STATE = {}


def init_state(tag, number, pids, barrier=None):
    """Initializer: remember (tag, number) (and the barrier ``meet`` waits
    at) in this worker; report our pid on ``pids`` (a multiprocessing queue
    passed through initargs, as the stdlib allows)."""
    _STATE["tag"] = (tag, number)
    _STATE["barrier"] = barrier
    pids.put(os.getpid())


def state(_=None):
    return os.getpid(), _STATE.get("tag")


def meet(_=None):
    """Wait at the barrier the initializer got: that many tasks run at once,
    each in a different worker."""
    _STATE["barrier"].wait(DEADLINE)
    return os.getpid(), _STATE.get("tag")


def init_fail(message):
    raise CustomError(message)


# -- workers that die


def die(how):
    """End this worker process abruptly, ``how`` being 'sigkill', 'exit',
    'segv' or 'sigterm'."""
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
    elif how == "exit":
        os._exit(3)
    elif how == "segv":
        import faulthandler

        faulthandler.disable()  # no dump on the test's stderr
        faulthandler._sigsegv()
    else:
        raise ValueError(how)
    time.sleep(DEADLINE)  # a signal is delivered before this returns
    return "still alive"


def die_on(x, bad, how="sigkill"):
    """``x * 2``, except that the items in ``bad`` kill their worker."""
    if x in bad:
        die(how)
    return x * 2


def die_on_pair(x, y, bad, how="sigkill"):
    if x in bad:
        die(how)
    return x + y


# -- helpers for child scripts


def thread_count():
    return threading.active_count()


# --------------------------------------------------------------------------
# the tests' own side: which processes and shared-memory files there are


def child_pids(pid="self"):
    """Pids of the direct children of ``pid`` (every thread's), from /proc."""
    out = set()
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(path) as f:
                out.update(int(x) for x in f.read().split())
        except OSError:  # the thread or the process is gone
            pass
    return out


def descendants(pid):
    """Pids of every process below ``pid`` (children, their children, ...)."""
    seen, stack = set(), [pid]
    while stack:
        for c in child_pids(stack.pop()):
            if c not in seen:
                seen.add(c)
                stack.append(c)
    return seen


def identity_of(pid):
    """(pid, start time): survives pid reuse. None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return pid, int(fields[19])  # field 22 of stat: starttime


def state_of(ident):
    """The one-letter state of the process ``ident`` (from identity_of), or
    None if it is gone (or its pid now belongs to another process)."""
    pid, start = ident
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if int(fields[19]) != start:
        return None
    return fields[0]


def running(ident):
    """True if the process is still there and not a zombie."""
    return state_of(ident) not in (None, "Z", "X")


def helper_pids():
    """multiprocessing's long-lived helpers (the forkserver, the resource
    tracker): children of the test process that belong to no pool."""
    from multiprocessing import forkserver, resource_tracker

    pids = (getattr(forkserver._forkserver, "_forkserver_pid", None),
            getattr(resource_tracker._resource_tracker, "_pid", None))
    return {pid for pid in pids if pid is not None}


def shm_names():
    """Names in /dev/shm, without multiprocessing's own semaphores."""
    try:
        return {n for n in os.listdir("/dev/shm") if not n.startswith("sem.mp-")}
    except FileNotFoundError:
        return set()
