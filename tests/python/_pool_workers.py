"""What the pool tests share: the functions they send to worker processes,
and the tests' own helpers.

The worker functions live in a small module of their own, importable by
name (``tests/python`` is on ``sys.path`` under pytest, and spawn/forkserver
children receive the parent's ``sys.path``), so that they pickle by
reference under every start method and a spawned child does not have to
import a test module (and pytest with it): this module imports pytest only
when a helper fails a test.

Nothing here may sleep-and-hope: a task that has to be held while the test
checks something waits for a file the test creates (``hold``), with a
deadline, and says that it started by creating a file of its own.

The sections after the workers' are the tests' own side, which the
thread-pool contract uses too: which processes and /dev/shm names there are
(``child_pids``, ``new_children``, ``leftovers`` ...); calls and waits
bounded so that a hang fails the test instead of the session (``bounded``,
``raised``, ``drain``, ``wait_for``, ``reap``); held tasks seen from the test
(``Gate``, ``Gates``); a callback that records its calls (``Recorder``); a
pool factory that stops every pool at teardown (``Pools``); the environment
of a child interpreter that imports this module (``child_env``).
"""

import glob
import multiprocessing
import os
import signal
import threading
import time

DEADLINE = 60.0  # a held task gives up (and fails) after this long
TIMEOUT = 30.0  # the tests' default bound on a wait that is expected to succeed
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


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


_taken = [0]


def taken_in_order(x):
    """``(x, n)``: this worker's ``n``-th task (from 0), to check the order
    in which tasks reach a single worker."""
    n = _taken[0]
    _taken[0] += 1
    return x, n


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


# -- tasks that fork


_forked = [False]  # this process is a copy forked by a task (or initializer)


def _forked_child(directory, name):
    """In a process forked by a task: leave its identity (pid, start time)
    in ``directory/name``."""
    _forked[0] = True
    ident = identity_of(os.getpid())
    with open(os.path.join(directory, name + ".tmp"), "w") as f:
        f.write(f"{ident[0]} {ident[1]}")
    os.rename(os.path.join(directory, name + ".tmp"), os.path.join(directory, name))


def fork_in_task(x, directory, how):
    """``("parent", x)``; forks first, and the child, after leaving its
    identity in ``directory``, returns ``("child", x)`` (``how`` 'return')
    or raises (``how`` 'raise') from the task: a copy of the worker
    ending the task in its place. In such a copy (if one went on taking
    tasks) it returns ``("copy", x)`` and forks no more: a regression fails
    the test instead of forking without end."""
    if _forked[0]:
        return "copy", x
    if os.fork() == 0:
        _forked_child(directory, f"forked-{x}")
        if how == "raise":
            raise CustomError(f"raised in the child of task {x}")
        return "child", x
    return "parent", x


def fork_in_initializer(directory):
    """An initializer that forks; the child returns from it too."""
    if not _forked[0] and os.fork() == 0:
        _forked_child(directory, f"forked-init-{os.getppid()}")


def forked_identities(directory):
    """The identities ``_forked_child`` left in ``directory``."""
    out = []
    for path in glob.glob(os.path.join(directory, "forked-*")):
        if path.endswith(".tmp"):
            continue
        pid, start = read(path).split()
        out.append((int(pid), int(start)))
    return out


# -- a worker stopped at the end of its claim


def arm_stop_after_claim(token):
    """Initializer: the first worker to create ``token`` (exclusively; it
    writes its pid there) stops itself (SIGSTOP) at the end of its next
    claim of a task, the task recorded in the table and the call not yet
    back in Python (``TaskTable._test_stop_after_claim``). The other
    workers, and every later one, run normally."""
    try:
        fd = os.open(token, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    from tress._tress import TaskTable

    TaskTable._test_stop_after_claim()
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)


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


def _stat_fields(pid):
    """The fields of ``/proc/<pid>/stat`` after the command name (the
    state first), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def identity_of(pid):
    """(pid, start time): survives pid reuse. None if there is no such process."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return pid, int(fields[19])  # field 22 of stat: starttime


def state_of(ident):
    """The one-letter state of the process ``ident`` (from identity_of), or
    None if it is gone (or its pid now belongs to another process)."""
    pid, start = ident
    fields = _stat_fields(pid)
    if fields is None or int(fields[19]) != start:
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


def new_children(before):
    """Children of this process that are not in ``before`` (a child_pids()
    set) and are not multiprocessing's helpers."""
    return child_pids() - before - helper_pids()


def leftovers(children, shm=None, timeout=10.0):
    """What a test left behind, after waiting up to ``timeout`` s for it to
    go: a message naming the new children of this process (running or
    zombie; ``children`` is a child_pids() set from before the test) and,
    if ``shm`` (a shm_names() set) is given, the new names in /dev/shm;
    '' if there are none."""
    deadline = time.monotonic() + timeout
    while True:
        left = new_children(children)
        new_shm = set() if shm is None else shm_names() - shm
        if not left and not new_shm:
            return ""
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    problems = []
    if left:
        states = {pid: state_of(identity_of(pid) or (pid, 0)) for pid in left}
        problems.append(f"child processes left behind (pid: state): {states}")
    if new_shm:
        problems.append(f"new in /dev/shm: {sorted(new_shm)}")
    return "; ".join(problems)


def child_env():
    """The environment of a child interpreter that imports this module (its
    directory first on PYTHONPATH), with the faulthandler on."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [TESTS_DIR, env.get("PYTHONPATH", "")] if p)
    env["PYTHONFAULTHANDLER"] = "1"
    return env


# --------------------------------------------------------------------------
# the tests' own side: bounded calls and waits


def _fail(message):
    """``pytest.fail(message)``; pytest is imported here, not with the module
    (worker processes and child interpreters import it too)."""
    import pytest

    pytest.fail(message)


def bounded(fn, *args, timeout=TIMEOUT, **kwargs):
    """``fn(*args, **kwargs)`` in a helper thread: its result, or its exception
    re-raised here (the same object); fail if it has not returned in time."""
    box = {}

    def run():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    t = threading.Thread(target=run, name="bounded-call", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        _fail(f"{getattr(fn, '__qualname__', fn)!r} did not return within {timeout} s")
    if "error" in box:
        raise box.pop("error")
    return box["value"]


def raised(fn, *args, **kwargs):
    """The exception ``fn(*args, **kwargs)`` raises (bounded); fail if none."""
    try:
        value = bounded(fn, *args, **kwargs)
    except Exception as exc:  # noqa: BLE001
        return exc
    _fail(f"{getattr(fn, '__qualname__', fn)!r} returned {value!r}, expected an exception")


def assert_exc(exc, exc_type, message):
    assert type(exc) is exc_type, f"raised {exc!r}, expected {exc_type.__name__}({message!r})"
    assert str(exc) == message, f"message {str(exc)!r}, expected {message!r}"


def assert_timeout_error(exc):
    # multiprocessing.TimeoutError, raised bare: empty message, no args
    assert type(exc) is multiprocessing.TimeoutError, f"raised {exc!r}"
    assert exc.args == () and str(exc) == ""


def described(exc):
    """('raise', type, message): how ``drain`` records a failed item by default."""
    return ("raise", type(exc), str(exc))


def drain(it, timeout=TIMEOUT, failure=described):
    """Items of a result iterator, each ``next`` bounded; stops at
    StopIteration. An exception from ``next`` is recorded as
    ``failure(exc)`` and iteration goes on (the chunksize=1 iterators keep
    going after a failed item)."""
    out = []
    while True:
        try:
            out.append(bounded(next, it, timeout=timeout))
        except StopIteration:
            return out
        except Exception as exc:  # noqa: BLE001
            out.append(failure(exc))


def reap(procs, timeout=TIMEOUT, expect=0):
    """Join ``procs`` within one deadline, kill any still alive, and assert
    none overran and every exit code is ``expect`` (None: any); the codes."""
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    overrun = [p for p in procs if p.is_alive()]
    for p in overrun:
        p.kill()
        p.join(5)
    if overrun:
        _fail(f"children still alive after {timeout} s (killed): {overrun}")
    codes = [p.exitcode for p in procs]
    if expect is not None and codes != [expect] * len(procs):
        _fail(f"exit codes {codes}, expected {expect}")
    return codes


def read(path):
    """The text of ``path``, stripped ('' if there is no such file yet: the
    file is created, then written)."""
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def wait_for(predicate, timeout=TIMEOUT, message="condition"):
    """Poll ``predicate`` until it is true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            _fail(f"timed out after {timeout} s waiting for {message}")
        time.sleep(0.002)


# --------------------------------------------------------------------------
# the tests' own side: held tasks, callbacks, pools


class Gate:
    """One held task (``hold``) seen from the test: it creates ``started``
    (with its worker's pid) when it runs and returns once ``go`` exists."""

    def __init__(self, directory, name, timeout=TIMEOUT):
        self.started = os.path.join(directory, f"{name}.started")
        self.go = os.path.join(directory, f"{name}.go")
        self.timeout = timeout

    def args(self, value):
        return (value, self.started, self.go)

    def wait_started(self, timeout=None):
        """Wait until the task runs (up to ``timeout`` s, by default the
        gate's); its worker's pid."""
        if timeout is None:
            timeout = self.timeout
        wait_for(lambda: read(self.started) != "", timeout,
                 f"{self.started} (the held task to start) and the pid in it")
        return int(read(self.started))

    def release(self):
        with open(self.go, "w"):
            pass


class Gates:
    """Factory for the gates of one test (files in ``directory``), each
    waiting up to ``timeout`` s for its task to start."""

    def __init__(self, directory, timeout=TIMEOUT):
        self.directory = directory
        self.timeout = timeout
        self.all = []

    def __call__(self):
        gate = Gate(self.directory, f"gate{len(self.all)}", self.timeout)
        self.all.append(gate)
        return gate

    def release_all(self):
        for gate in self.all:
            gate.release()


class Recorder:
    """A callback that records (value, thread ident) and sets an Event."""

    def __init__(self):
        self.calls = []
        self.called = threading.Event()

    def __call__(self, value):
        self.calls.append((value, threading.get_ident()))
        self.called.set()

    @property
    def values(self):
        return [v for v, _ in self.calls]


def gen(items):
    yield from items


def failing_gen(items, exc):
    yield from items
    raise exc


def stop(pool):
    """Terminate and join ``pool`` (a multiprocessing-style pool), bounded."""
    bounded(pool.terminate)
    bounded(pool.join)


class Pools:
    """Factory for fresh pools of ``cls``; ``cleanup()`` (at teardown) stops
    every pool made (``stop``), so nothing is left running, and forgets it."""

    def __init__(self, cls):
        self.cls = cls
        self.made = []

    def __call__(self, *args, **kwargs):
        pool = self.cls(*args, **kwargs)
        self.made.append(pool)
        return pool

    def stop(self, pool):
        stop(pool)

    def cleanup(self):
        for pool in self.made:
            self.stop(pool)
        # pytest holds the fixture's value until the end of the teardown:
        # the pools must not live on through it
        self.made.clear()
