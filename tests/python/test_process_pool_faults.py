"""Faults, and what the process pools do beyond the stdlib's, for both
``tress.pool.Pool`` and ``tress.futures.ProcessPoolExecutor`` (the ``api``
fixture drives either through one small adapter):

* a worker that dies mid-task (SIGKILL, ``os._exit``, a segfault, a kill
  from outside) fails that task alone with ``tress.futures.WorkerDied`` (a
  ``BrokenProcessPool``) whose message names the task and how the worker
  died; the pool replaces the worker and every other task completes
  (1,000 tasks of which exactly 10 kill their worker);
* ``task_timeout=`` fails an over-long task with ``TimeoutError`` and
  replaces its worker; it counts from the task's start, not its submission;
* an unpicklable argument or result fails that task only, repeatedly, and
  the pool goes on;
* lambdas, closures and functions of ``__main__`` (under spawn) work when
  cloudpickle is installed; with cloudpickle hidden (``sys.modules
  ['cloudpickle'] = None`` in the parent, which does the pickling) a lambda
  fails with a pickling error that names cloudpickle;
* ``progress=True``: tqdm's bar when tqdm imports (hidden the same way for
  the plain counter), the final count on stderr, nothing without it;
* Ctrl-C: a child interpreter runs a long map and gets SIGINT (to itself,
  or to its process group as a terminal sends it): KeyboardInterrupt comes
  promptly, the program ends within a bound, and none of its workers is
  left running -- inside a ``with`` block and at top level.

After every test (autouse ``no_leftovers``): no child process of the test
process and no new name in /dev/shm; ``test_no_memory_file_left_open``
checks that a finished pool keeps no tress memory file open.
Every wait is bounded; tasks that must be running while something is done
to them say so with a file (``_pool_workers.hold``).
"""

import contextlib
import functools
import gc
import multiprocessing
import multiprocessing.pool as std_pool
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool

import _pool_workers as w
import pytest
from _pool_workers import read, wait_for

try:
    from tress.futures import ProcessPoolExecutor, WorkerDied
    from tress.pool import Pool as TressPool
except Exception as exc:  # noqa: BLE001 - ImportError, or a broken build
    TressPool = ProcessPoolExecutor = WorkerDied = None
    IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

try:
    import cloudpickle  # noqa: F401
except ImportError:
    HAVE_CLOUDPICKLE = False
else:
    HAVE_CLOUDPICKLE = True

try:
    import tqdm
except ImportError:
    HAVE_TQDM = False
else:
    HAVE_TQDM = True

TIMEOUT = 60.0  # bound on every wait that is expected to succeed
LOCK_ERROR = "cannot pickle '_thread.lock' object"

LAMBDA = lambda x: x + 1


def make_adder(k):
    def add_k(x):
        return x + k

    return add_k


def need_tress():
    if TressPool is None:
        pytest.skip(f"tress.pool.Pool / tress.futures.WorkerDied are not importable ({IMPORT_ERROR})")


# --------------------------------------------------------------------------
# one adapter for both APIs


class Handle:
    def __init__(self, result):
        self._result = result

    def result(self, timeout=TIMEOUT):
        return self._result.get(timeout)

    def done(self):
        return self._result.ready()


class PoolApi:
    """tress.pool.Pool behind submit / map / imap / close."""

    name = "Pool"

    def __init__(self, processes, context=None, **kwargs):
        self.pool = TressPool(processes, context=context, **kwargs)

    def submit(self, fn, *args):
        return Handle(self.pool.apply_async(fn, args))

    def map(self, fn, items, **kwargs):
        return bounded(self.pool.map, fn, items, **kwargs)

    def imap(self, fn, items, **kwargs):
        return self.pool.imap(fn, items, **kwargs)

    def close(self):
        self.pool.close()
        bounded(self.pool.join)

    def kill(self):
        bounded(self.pool.terminate)
        bounded(self.pool.join)


class ExecutorApi:
    """tress.futures.ProcessPoolExecutor behind the same calls."""

    name = "ProcessPoolExecutor"

    def __init__(self, processes, context=None, **kwargs):
        self.pool = ProcessPoolExecutor(processes, mp_context=context, **kwargs)

    def submit(self, fn, *args):
        return self.pool.submit(fn, *args)

    def map(self, fn, items, **kwargs):
        return bounded(lambda: list(self.pool.map(fn, items, timeout=TIMEOUT, **kwargs)))

    def imap(self, fn, items, **kwargs):
        return self.pool.map(fn, items, timeout=TIMEOUT, **kwargs)

    def close(self):
        bounded(self.pool.shutdown, wait=True)

    def kill(self):
        bounded(self.pool.shutdown, wait=True, cancel_futures=True)


class Apis(w.Pools):
    """Factory for pools of one API; at teardown, stops every pool made
    (``kill``: terminates it, or cancels its calls and shuts it down)."""

    def __init__(self, cls):
        super().__init__(cls)
        self.name = cls.name

    def stop(self, api):
        api.kill()


@pytest.fixture(params=["Pool", "ProcessPoolExecutor"])
def api(request, gates):
    need_tress()
    apis = Apis(PoolApi if request.param == "Pool" else ExecutorApi)
    yield apis
    gates.release_all()
    apis.cleanup()


# --------------------------------------------------------------------------
# helpers (besides _pool_workers')

# every bounded call of this module waits up to TIMEOUT unless told
bounded = functools.partial(w.bounded, timeout=TIMEOUT)


def outcome(handle, timeout=TIMEOUT):
    """('ok', value) or ('err', exception) of a submitted task, bounded."""
    try:
        return "ok", bounded(handle.result, timeout, timeout=timeout + 5)
    except Exception as exc:  # noqa: BLE001
        return "err", exc


def drain(it):
    """Items of a result iterator, each ``next`` bounded; an exception is
    recorded as ('raise', exception) and iteration goes on while it can."""
    return w.drain(it, TIMEOUT, failure=lambda exc: ("raise", exc))


@contextlib.contextmanager
def tress_pool(processes=2):
    """A tress.pool.Pool (the test is skipped without one), terminated and
    joined when the block ends."""
    need_tress()
    pool = TressPool(processes)
    try:
        yield pool
    finally:
        pool.terminate()
        bounded(pool.join)


@pytest.fixture
def gates(tmp_path):
    g = w.Gates(str(tmp_path), TIMEOUT)
    yield g
    g.release_all()


def tress_memfds():
    """{(fd, inode): name} of the descriptors of this process open on a
    tress memory file (the inode tells a new file from an old one that
    happens to get the same descriptor number)."""
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            ino = os.stat(f"/proc/self/fd/{fd}").st_ino
        except OSError:
            continue
        if target.startswith("/memfd:tress"):
            out[(int(fd), ino)] = target
    return out


@pytest.fixture(autouse=True)
def no_leftovers():
    """After each test: no new child process (running or zombie) and no new
    name in /dev/shm. (Open memory files: test_no_memory_file_left_open.)"""
    children, shm = w.child_pids(), w.shm_names()
    yield
    left = w.leftovers(children, shm)
    if left:
        pytest.fail(left)


def hide_module(monkeypatch, name):
    """Make ``import name`` (and of its submodules) fail in this process."""
    for mod in list(sys.modules):
        if mod == name or mod.startswith(name + "."):
            monkeypatch.setitem(sys.modules, mod, None)
    monkeypatch.setitem(sys.modules, name, None)


def worker_count_becomes(before, n, message):
    """The pool has exactly ``n`` live workers (dead ones reaped), bounded."""

    def ok():
        kids = w.new_children(before)
        return len(kids) == n and all(w.running(w.identity_of(p) or (p, 0)) for p in kids)

    wait_for(ok, 30.0, message)


# --------------------------------------------------------------------------
# workers that die

DEATHS = {
    "sigkill": "SIGKILL",
    "exit": "exited with code 3",
    "segv": "SIGSEGV",
}


def assert_worker_died(exc, funcname, how):
    assert type(exc) is WorkerDied, f"{exc!r} is not a WorkerDied"
    assert isinstance(exc, BrokenProcessPool)
    message = str(exc)
    assert funcname in message, f"the task is not named: {message!r}"
    assert DEATHS[how] in message, f"how the worker died is not said: {message!r}"


def test_worker_died_is_a_broken_process_pool():
    need_tress()
    assert issubclass(WorkerDied, BrokenProcessPool)
    from concurrent.futures.process import BrokenProcessPool as Std

    assert issubclass(WorkerDied, Std)


@pytest.mark.parametrize("how", ["sigkill", "exit"])
def test_thousand_tasks_ten_kill_their_worker(api, how):
    """Exactly the ten tasks that killed their worker fail, with WorkerDied
    naming the task and how the worker died; the 990 others are correct;
    the pool ends with its two workers."""
    before = w.child_pids()
    pool = api(2)
    bad = frozenset(range(7, 1000, 100))
    assert len(bad) == 10
    handles = [pool.submit(w.die_on, i, bad, how) for i in range(1000)]
    results, died, other = {}, {}, {}
    for i, h in enumerate(handles):
        kind, value = outcome(h)
        if kind == "ok":
            results[i] = value
        elif isinstance(value, BrokenProcessPool):
            died[i] = value
        else:
            other[i] = value
    assert other == {}
    assert sorted(died) == sorted(bad)
    assert results == {i: 2 * i for i in range(1000) if i not in bad}
    for exc in died.values():
        assert_worker_died(exc, "die_on", how)
    assert pool.submit(w.square, 3).result(TIMEOUT) == 9
    worker_count_becomes(before, 2, "two live workers after the replacements")
    pool.close()
    assert w.new_children(before) == set()


def test_a_segfault_fails_its_task_alone(api):
    pool = api(2)
    bad = frozenset({3, 11})
    handles = [pool.submit(w.die_on, i, bad, "segv") for i in range(20)]
    outcomes = [outcome(h) for h in handles]
    for i, (kind, value) in enumerate(outcomes):
        if i in bad:
            assert kind == "err"
            assert_worker_died(value, "die_on", "segv")
        else:
            assert (kind, value) == ("ok", 2 * i)
    pool.close()


def test_a_worker_killed_from_outside(api, gates):
    """An idle worker killed: no task fails, the pool replaces it. A worker
    killed while it runs a task: that task alone fails with WorkerDied."""
    before = w.child_pids()
    pool = api(2)
    assert pool.map(w.square, range(20)) == [x * x for x in range(20)]
    worker_count_becomes(before, 2, "two workers")
    victim = min(w.new_children(before))
    ident = w.identity_of(victim)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not w.running(ident), 10.0, "the victim to die")
    handles = [pool.submit(w.square, i) for i in range(50)]
    assert [h.result(TIMEOUT) for h in handles] == [i * i for i in range(50)]
    wait_for(lambda: victim not in w.child_pids(), 30.0, "the dead idle worker to be reaped")
    worker_count_becomes(before, 2, "the idle victim to be replaced")

    gate = gates()
    held = pool.submit(w.hold, *gate.args("held"))
    victim = gate.wait_started()
    others = [pool.submit(w.square, i) for i in range(20)]
    os.kill(victim, signal.SIGKILL)
    kind, exc = outcome(held)
    assert kind == "err"
    assert_worker_died(exc, "hold", "sigkill")
    assert str(victim) in str(exc), f"the dead worker's pid is not named: {exc}"
    assert [h.result(TIMEOUT) for h in others] == [i * i for i in range(20)]
    wait_for(lambda: victim not in w.child_pids(), 30.0, "the dead busy worker to be reaped")
    worker_count_becomes(before, 2, "the busy victim to be replaced")
    pool.close()


def test_a_worker_killed_at_the_end_of_its_claim_fails_that_task_alone(api, tmp_path):
    """A worker killed once it has taken a task off the ring, before the
    call is back in Python (stopped there by a test hook, then SIGKILLed):
    the task is in its row of the task table (the claim and the record are
    one step, ``ShmQueue.get_task``), so it fails with WorkerDied naming
    the worker and SIGKILL -- it is neither lost (pending for ever) nor run
    twice -- every other task completes, and the pool replaces the worker
    and goes on. Every task but the victim's waits for ``go``: the other
    worker holds one while the armed worker claims the next."""
    before = w.child_pids()
    d = str(tmp_path)
    token, go = os.path.join(d, "armed"), os.path.join(d, "go")
    pool = api(2, initializer=w.arm_stop_after_claim, initargs=(token,))
    handles = [pool.submit(w.hold, i, os.path.join(d, f"started-{i}"), go) for i in range(12)]
    wait_for(lambda: read(token) != "", 30.0, "a worker to arm the hook")
    victim = int(read(token))
    ident = w.identity_of(victim)
    wait_for(lambda: w.state_of(ident) == "T", 30.0, "the armed worker to stop after its claim")
    with open(go, "w"):
        pass
    wait_for(lambda: sum(h.done() for h in handles) == 11, 30.0,
             "every task but the stopped worker's to complete")
    [held] = [h for h in handles if not h.done()]
    os.kill(victim, signal.SIGKILL)
    kind, exc = outcome(held)
    assert kind == "err"
    assert_worker_died(exc, "hold", "sigkill")
    assert str(victim) in str(exc), f"the dead worker's pid is not named: {exc}"
    assert not os.path.exists(os.path.join(d, f"started-{handles.index(held)}")), \
        "the stopped worker's task ran"
    assert [outcome(h) for h in handles if h is not held] == \
        [("ok", i) for i, h in enumerate(handles) if h is not held]
    assert pool.map(w.square, range(10)) == [x * x for x in range(10)]
    worker_count_becomes(before, 2, "the killed worker to be replaced")
    pool.close()


def test_pool_map_and_imap_with_dying_items():
    """Pool only: in imap with chunksize 1 a dying item fails alone; with the
    pool's own chunks (no chunksize given) every item still yields exactly
    one outcome, the items of a dead worker's chunk each raising
    WorkerDied; a map fails as a whole (its chunk failed) and the pool goes
    on; an error_callback gets the WorkerDied."""
    with tress_pool() as pool:
        die = functools.partial(w.die_on, bad=frozenset({7, 30}), how="sigkill")
        got = drain(pool.imap(die, range(40), chunksize=1))
        assert len(got) == 40
        for i, item in enumerate(got):
            if i in (7, 30):
                assert item[0] == "raise"
                assert_worker_died(item[1], "die_on", "sigkill")
            else:
                assert item == 2 * i
        # default: chunks of 5 (40 items, 2 workers); those of items 7 and
        # 30 die whole, each of their items raises, the rest are values
        got = drain(pool.imap(die, range(40)))
        assert len(got) == 40
        dead = {i for i in range(40) if i // 5 in (7 // 5, 30 // 5)}
        for i, item in enumerate(got):
            if i in dead:
                assert item[0] == "raise"
                assert_worker_died(item[1], "die_on", "sigkill")
            else:
                assert item == 2 * i
        got = drain(pool.imap_unordered(die, range(40), chunksize=1))
        errors = [item[1] for item in got if isinstance(item, tuple)]
        assert len(errors) == 2 and all(type(e) is WorkerDied for e in errors)
        assert sorted(x for x in got if not isinstance(x, tuple)) == [
            2 * i for i in range(40) if i not in (7, 30)]
        with pytest.raises(WorkerDied):
            bounded(pool.map, die, range(40), 4)
        errors = []
        r = pool.starmap_async(w.die_on_pair, [(i, 1, frozenset({5})) for i in range(10)], 1,
                               error_callback=errors.append)
        with pytest.raises(WorkerDied):
            r.get(TIMEOUT)
        assert len(errors) == 1 and type(errors[0]) is WorkerDied
        assert bounded(pool.map, w.square, range(10)) == [x * x for x in range(10)]


def test_executor_map_with_a_dying_item():
    need_tress()
    with ProcessPoolExecutor(2) as ex:
        die = functools.partial(w.die_on, bad=frozenset({7}), how="exit")
        it = ex.map(die, range(20), chunksize=1, timeout=TIMEOUT)
        got = [bounded(next, it) for _ in range(7)]
        assert got == [2 * i for i in range(7)]
        with pytest.raises(WorkerDied, match="exited with code 3"):
            bounded(next, it)
        assert ex.submit(w.square, 4).result(TIMEOUT) == 16


@pytest.mark.parametrize("how", ["return", "raise"])
def test_a_task_that_forks_and_ends_in_the_child(api, tmp_path, how):
    """A task that calls ``os.fork()`` and returns (or raises) in the child:
    the child is a copy of the worker and must not go on as one (it would
    send a second outcome, clear the worker's row of the task table, take
    tasks, and eat a stop message meant for a worker, so that the shutdown
    waited forever -- as the stdlib's pools do, both hanging in
    ``shutdown``/``join``). It exits at once: every task gets the worker's
    value, the pool goes on, the shutdown returns, and no process is left
    (the forked children included)."""
    d = str(tmp_path)
    pool = api(2)
    handles = [pool.submit(w.fork_in_task, i, d, how) for i in range(8)]
    assert [h.result(TIMEOUT) for h in handles] == [("parent", i) for i in range(8)]
    assert pool.map(w.square, range(20)) == [x * x for x in range(20)]
    assert pool.map(functools.partial(w.fork_in_task, directory=d, how=how), range(8, 16)) == \
        [("parent", i) for i in range(8, 16)]
    pool.close()  # bounded: fails the test if it hangs
    wait_for(lambda: len(w.forked_identities(d)) == 16, 10.0, "each forked child's identity")
    forked = w.forked_identities(d)
    wait_for(lambda: not any(w.running(ident) for ident in forked), 10.0,
             "the forked copies of the workers to exit")


def test_an_initializer_that_forks(api, tmp_path):
    """An initializer that forks, the child returning from it: the child
    exits instead of becoming a worker the pool does not know."""
    d = str(tmp_path)
    pool = api(2, initializer=w.fork_in_initializer, initargs=(d,))
    handles = [pool.submit(w.pid) for _ in range(20)]
    ran = {h.result(TIMEOUT) for h in handles}
    wait_for(lambda: len(w.forked_identities(d)) >= len(ran), 10.0,
             "the identity of each worker's forked child")
    forked = w.forked_identities(d)
    assert not ran & {pid for pid, _ in forked}, "a forked child ran tasks"
    pool.close()
    wait_for(lambda: not any(w.running(ident) for ident in forked), 10.0,
             "the forked copies of the workers to exit")


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_dying_workers_under_other_start_methods(api, method):
    pool = api(2, context=multiprocessing.get_context(method))
    handles = [pool.submit(w.die_on, i, frozenset({2}), "sigkill") for i in range(6)]
    outcomes = [outcome(h) for h in handles]
    assert outcomes[2][0] == "err"
    assert_worker_died(outcomes[2][1], "die_on", "sigkill")
    assert [v for i, (k, v) in enumerate(outcomes) if i != 2] == [0, 2, 6, 8, 10]
    assert pool.map(w.square, range(5)) == [0, 1, 4, 9, 16]
    pool.close()


def test_no_memory_file_left_open(api):
    """A pool that was closed (or terminated) and is no longer referenced
    keeps no tress memory file open in the parent -- also after workers
    died and were replaced."""
    before = tress_memfds()
    for stop in ("close", "kill"):
        pool = api(2)
        handles = [pool.submit(w.die_on, i, frozenset({3}), "sigkill") for i in range(10)]
        assert [outcome(h)[0] for h in handles].count("err") == 1
        assert pool.map(w.square, range(10)) == [x * x for x in range(10)]
        getattr(pool, stop)()
        api.made.clear()
        del pool, handles
    deadline = time.monotonic() + 10.0
    while True:
        gc.collect()
        new = {k: v for k, v in tress_memfds().items() if k not in before}
        if not new or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert new == {}, f"memory files of the pools left open: {sorted(new.values())}"


def fds_and_maps():
    """(descriptors, lines of /proc/self/maps that map a file) of this
    process now. Anonymous mappings are not counted: malloc's arenas and
    the threads' stacks come and go with the threads that ran, whatever the
    pool keeps (a ring is a memory file's mapping)."""
    gc.collect()
    maps = 0
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and not fields[5].startswith("["):
                maps += 1
    return len(os.listdir("/proc/self/fd")), maps


@pytest.mark.parametrize("stop", ["close", "kill"])
def test_a_stopped_pool_still_referenced_keeps_no_descriptor_or_mapping(api, stop):
    """Once shut down (``shutdown``; ``close`` + ``join``; ``terminate`` +
    ``join``) a pool lets go of its rings and task table although the
    object is still referenced: as many descriptors and mappings as before
    it was made (after a first pool made and stopped the same way: the
    threads' stacks and the like that stay cached)."""

    def use_and_stop():
        pool = api(2)
        handles = [pool.submit(w.die_on, i, frozenset({3}), "sigkill") for i in range(10)]
        assert [outcome(h)[0] for h in handles].count("err") == 1
        big = b"b" * (1 << 20)  # out of band, both ways
        assert pool.submit(len, big).result(TIMEOUT) == len(big)
        assert pool.submit(w.make_bytes, 1 << 20).result(TIMEOUT) == b"r" * (1 << 20)
        assert pool.map(w.square, range(10)) == [x * x for x in range(10)]
        getattr(pool, stop)()
        return pool, handles

    use_and_stop()
    before = fds_and_maps()
    kept = use_and_stop()
    after = fds_and_maps()
    assert after == before, f"(descriptors, mappings) {before} before the pool, {after} after"
    del kept


def test_an_executor_shut_down_unused_keeps_nothing():
    """An executor shut down before any submission (no worker, no manager
    thread) lets go of its rings at once too."""
    need_tress()
    ProcessPoolExecutor(2).shutdown()
    before = fds_and_maps()
    ex = ProcessPoolExecutor(2)
    ex.shutdown()
    assert fds_and_maps() == before
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(w.square, 2)
    assert ex._call_queue.qsize() == 0


def test_pending_large_calls_take_no_descriptor_each(api, gates):
    """Calls with large arguments (out of band) waiting while the workers
    are busy take no descriptor each (a thousand of them once made
    ``submit`` fail with EMFILE under the usual limit of 1024)."""
    pool = api(2)
    held = [gates() for _ in range(2)]
    busy = [pool.submit(w.hold, *g.args(i)) for i, g in enumerate(held)]
    for g in held:
        g.wait_started()
    fds = fds_and_maps()[0]
    payload = b"p" * (200 << 10)
    handles = [pool.submit(len, payload) for _ in range(300)]
    assert fds_and_maps()[0] - fds <= 4
    gates.release_all()
    assert [h.result(TIMEOUT) for h in busy] == [0, 1]
    assert [h.result(TIMEOUT) for h in handles] == [len(payload)] * 300
    pool.close()


# --------------------------------------------------------------------------
# task_timeout


def test_task_timeout_fails_the_task_and_replaces_its_worker(api, gates):
    before = w.child_pids()
    pool = api(2, task_timeout=0.5)
    gate = gates()
    slow = pool.submit(w.hold, *gate.args("slow"))  # never released in time
    quick = [pool.submit(w.square, i) for i in range(30)]
    victim = gate.wait_started()
    ident = w.identity_of(victim)
    start = time.monotonic()
    kind, exc = outcome(slow)
    assert kind == "err"
    assert isinstance(exc, TimeoutError), repr(exc)  # the builtin one
    assert not isinstance(exc, multiprocessing.TimeoutError)
    assert "task_timeout" in str(exc) and "hold" in str(exc), str(exc)
    assert time.monotonic() - start < 10.0
    assert [h.result(TIMEOUT) for h in quick] == [i * i for i in range(30)]
    wait_for(lambda: ident is None or not w.running(ident), 10.0, "the timed-out worker to end")
    worker_count_becomes(before, 2, "the timed-out worker to be replaced")
    assert pool.map(w.square, range(10)) == [x * x for x in range(10)]
    pool.close()


def test_task_timeout_counts_from_the_start_of_each_task(api):
    # One worker, four tasks of 0.3 s under task_timeout=1.5: 1.2 s in all,
    # but no task runs for longer than 0.3 s, so none fails.
    pool = api(1, task_timeout=1.5)
    handles = [pool.submit(w.sleep_then_square, i, 0.3) for i in range(4)]
    assert [h.result(TIMEOUT) for h in handles] == [0, 1, 4, 9]
    pool.close()


def test_task_timeout_in_a_map(api):
    pool = api(2, task_timeout=0.5)
    items = [0.0] * 10 + [30.0] + [0.0] * 10
    # one item per task: the timeout fails that item alone
    got = drain(pool.imap(w.sleep_for, items, chunksize=1))
    assert got[:10] == [0.0] * 10
    assert got[10][0] == "raise" and isinstance(got[10][1], TimeoutError), got[10]
    if api.name == "Pool":  # imap goes on after a failed item
        assert got[11:] == [0.0] * 10
    assert pool.map(w.square, range(5)) == [0, 1, 4, 9, 16]
    pool.close()


@pytest.mark.parametrize("value", [0, -1, -0.5])
def test_task_timeout_must_be_positive(api, value):
    with pytest.raises(ValueError, match="task_timeout"):
        api(1, task_timeout=value)


# --------------------------------------------------------------------------
# what cannot be pickled


def test_unpicklable_arguments_fail_their_task_only(api):
    pool = api(2)
    handles = []
    for i in range(40):
        handles.append(pool.submit(w.identity, threading.Lock() if i % 4 == 1 else i))
    for i, h in enumerate(handles):
        kind, value = outcome(h)
        if i % 4 == 1:
            assert kind == "err" and type(value) is TypeError and str(value) == LOCK_ERROR, value
        else:
            assert (kind, value) == ("ok", i)
    assert pool.map(w.square, range(10)) == [x * x for x in range(10)]
    pool.close()


def test_unpicklable_results_fail_their_task_only(api):
    before = w.child_pids()
    pool = api(2)
    assert pool.map(w.square, range(4)) == [0, 1, 4, 9]
    worker_count_becomes(before, 2, "two workers")
    workers = w.new_children(before)
    handles = [pool.submit(w.unpicklable_result_at, i, i if i % 5 == 2 else -1) for i in range(40)]
    for i, h in enumerate(handles):
        kind, value = outcome(h)
        if i % 5 == 2:
            assert kind == "err", value
            if api.name == "Pool":
                assert type(value) is std_pool.MaybeEncodingError, repr(value)
                assert f"Unpicklable({i}) refuses to be pickled" in str(value)
            else:
                assert type(value) is TypeError
                assert str(value) == f"Unpicklable({i}) refuses to be pickled"
        else:
            assert (kind, value) == ("ok", i * i)
    # no worker died for it
    assert w.new_children(before) == workers
    assert pool.map(w.square, range(10)) == [x * x for x in range(10)]
    pool.close()


# --------------------------------------------------------------------------
# cloudpickle


needs_cloudpickle = pytest.mark.skipif(not HAVE_CLOUDPICKLE, reason="cloudpickle is not installed")


@needs_cloudpickle
def test_lambdas_and_closures_with_cloudpickle(api):
    pool = api(2)
    assert pool.submit(LAMBDA, 41).result(TIMEOUT) == 42
    assert pool.submit(lambda: os.getpid()).result(TIMEOUT) != os.getpid()
    assert pool.submit(make_adder(5), 1).result(TIMEOUT) == 6
    k = 3
    assert pool.map(lambda x: x * k, range(10)) == [x * 3 for x in range(10)]
    assert pool.map(make_adder(100), range(5), chunksize=2) == [100, 101, 102, 103, 104]

    def local_fails(x):
        raise LookupError(f"local {x}")

    kind, exc = outcome(pool.submit(local_fails, 9))
    assert kind == "err" and type(exc) is LookupError and str(exc) == "local 9"
    pool.close()


@needs_cloudpickle
def test_pool_imap_and_callbacks_with_cloudpickle():
    with tress_pool() as pool:
        got = []
        r = pool.apply_async(lambda a, b: a * b, (6, 7), callback=got.append)
        assert r.get(TIMEOUT) == 42 and got == [42]
        assert drain(pool.imap(lambda x: -x, range(5))) == [0, -1, -2, -3, -4]
        assert sorted(drain(pool.imap_unordered(make_adder(1), range(5), 2))) == [1, 2, 3, 4, 5]
        assert bounded(pool.starmap, lambda a, b: a - b, [(5, 1), (9, 2)]) == [4, 7]


MAIN_FUNCTIONS_CHILD = r"""
import multiprocessing, sys

def triple(x):
    return 3 * x

def make_scaler(k):
    return lambda x: k * x

def main():
    ctx = multiprocessing.get_context("spawn")
    from tress.pool import Pool
    from tress.futures import ProcessPoolExecutor
    with Pool(2, context=ctx) as pool:
        print(pool.map(triple, range(5)), flush=True)
        print(pool.map(lambda x: x + 1, range(3)), flush=True)
        print(pool.apply(make_scaler(10), (4,)), flush=True)
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        print(list(ex.map(triple, range(5))), flush=True)
        print(ex.submit(lambda: "lambda", ).result(60), flush=True)
        print(ex.submit(make_scaler(-1), 8).result(60), flush=True)

main()
"""


@needs_cloudpickle
def test_main_functions_lambdas_and_closures_under_spawn(run_python):
    """``python -c``: a spawned child cannot import ``__main__``, so its
    functions only arrive by value (cloudpickle)."""
    need_tress()
    proc = run_python(MAIN_FUNCTIONS_CHILD, timeout=TIMEOUT, env=w.child_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[0, 3, 6, 9, 12]", "[1, 2, 3]", "40", "[0, 3, 6, 9, 12]", "lambda", "-8"], proc.stderr


def pickling_error_of(fn):
    try:
        pickle.dumps(fn)
    except Exception as exc:  # noqa: BLE001
        return exc
    pytest.fail(f"{fn!r} pickles without cloudpickle: the test is wrong")


def test_without_cloudpickle_a_lambda_fails_naming_cloudpickle(api, monkeypatch):
    hide_module(monkeypatch, "cloudpickle")
    pool = api(2)
    expected = type(pickling_error_of(LAMBDA))
    kind, exc = outcome(pool.submit(LAMBDA, 1))
    assert kind == "err", exc
    assert isinstance(exc, expected), f"{exc!r} is not a {expected.__name__}"
    assert "cloudpickle" in str(exc), f"the message does not name cloudpickle: {exc}"
    # a closure fails too (as plain pickle fails on it)
    expected = type(pickling_error_of(make_adder(1)))
    kind, exc = outcome(pool.submit(make_adder(1), 1))
    assert kind == "err" and isinstance(exc, expected), repr(exc)
    # module-level functions go on working
    assert pool.submit(w.square, 5).result(TIMEOUT) == 25
    assert pool.map(w.square, range(5)) == [0, 1, 4, 9, 16]
    pool.close()


def test_without_cloudpickle_pool_map_of_a_lambda_fails_naming_cloudpickle(monkeypatch):
    hide_module(monkeypatch, "cloudpickle")
    with tress_pool() as pool:
        with pytest.raises(Exception) as info:
            bounded(pool.map, LAMBDA, range(10))
        assert isinstance(info.value, type(pickling_error_of(LAMBDA)))
        assert "cloudpickle" in str(info.value)
        got = drain(pool.imap(LAMBDA, range(3)))
        assert len(got) == 3 and all(g[0] == "raise" and "cloudpickle" in str(g[1]) for g in got)
        assert bounded(pool.map, w.square, range(5)) == [0, 1, 4, 9, 16]


# --------------------------------------------------------------------------
# progress=


@pytest.fixture(params=["tqdm", "plain"])
def bar(request, monkeypatch):
    if request.param == "tqdm":
        if not HAVE_TQDM:
            pytest.skip("tqdm is not installed")
        # tqdm's monitor thread outlives every bar (tqdm's, not the pool's
        # doing) and would fail the thread-leak check: no monitor
        monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 0)
    else:
        hide_module(monkeypatch, "tqdm")
    return request.param


def check_progress(err, bar, done, total=None):
    """stderr shows the final count: ``done/total`` (tqdm: ``done it`` when
    the total is unknown), from tqdm's bar or from the plain counter."""
    if total is not None:
        final = rf"(?<![0-9]){done}/{total}(?![0-9])"
    elif bar == "tqdm":
        final = rf"(?<![0-9]){done}it\b"
    else:
        final = rf"(?<![0-9]){done}(?![0-9])"
    assert re.search(final, err), f"final count {done} not on stderr: {err!r}"
    if bar == "tqdm":
        assert "it/s" in err or "s/it" in err, f"not tqdm's bar: {err!r}"
        if total is not None:
            assert "100%" in err, f"tqdm's bar does not reach 100%: {err!r}"
    else:
        assert "it/s" not in err and "100%|" not in err, f"tqdm's bar although tqdm is hidden: {err!r}"
    assert err.endswith("\n"), f"the progress line is not ended: {err!r}"


N_PROGRESS = 57


@pytest.mark.parametrize("method", ["map", "imap", "imap_unordered", "starmap"])
def test_pool_progress(bar, method, capfd):
    with tress_pool() as pool:
        if method == "starmap":
            got = bounded(pool.starmap, pow, [(x, 2) for x in range(N_PROGRESS)], progress=True)
        elif method == "map":
            got = bounded(pool.map, w.square, range(N_PROGRESS), chunksize=5, progress=True)
        else:
            got = bounded(lambda: list(getattr(pool, method)(w.square, range(N_PROGRESS),
                                                             progress=True)))
        expect = [x * x for x in range(N_PROGRESS)]
        assert (sorted(got) if method == "imap_unordered" else got) == expect
        _, err = capfd.readouterr()
        check_progress(err, bar, N_PROGRESS, N_PROGRESS)


def test_pool_progress_of_an_input_without_length(bar, capfd):
    with tress_pool() as pool:
        got = bounded(lambda: list(pool.imap(w.square, iter(range(N_PROGRESS)), 4, progress=True)))
        assert got == [x * x for x in range(N_PROGRESS)]
        _, err = capfd.readouterr()
        check_progress(err, bar, N_PROGRESS)


def test_executor_progress(bar, capfd):
    need_tress()
    with ProcessPoolExecutor(2) as ex:
        got = bounded(lambda: list(ex.map(w.square, range(N_PROGRESS), progress=True)))
        assert got == [x * x for x in range(N_PROGRESS)]
        got = bounded(lambda: list(ex.map(w.add, range(10), range(10), chunksize=3, progress=True)))
        assert got == [2 * x for x in range(10)]
    _, err = capfd.readouterr()
    check_progress(err, bar, N_PROGRESS, N_PROGRESS)
    check_progress(err, bar, 10, 10)


def test_no_progress_output_by_default(api, capfd):
    pool = api(2)
    assert pool.map(w.square, range(30)) == [x * x for x in range(30)]
    assert list(pool.imap(w.square, range(5))) == [0, 1, 4, 9, 16]
    pool.close()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_progress_keeps_the_imap_iterator_api(bar, method, capfd):
    """progress=True returns what imap returns without it: an iterator
    with ``next(timeout)`` (chunksize 1)."""
    with tress_pool() as pool:
        it = getattr(pool, method)(w.square, range(3), progress=True)
        assert iter(it) is it
        got = [it.next(TIMEOUT) for _ in range(3)]
        assert sorted(got) == [0, 1, 4]
        with pytest.raises(StopIteration):
            it.next(TIMEOUT)
        _, err = capfd.readouterr()
        check_progress(err, bar, 3, 3)


def test_progress_counts_failed_tasks_too_and_closes(bar, capfd):
    with tress_pool() as pool:
        got = drain(pool.imap(w.inverse, [1, 0, 2, 0, 4], progress=True))
        assert [g if not isinstance(g, tuple) else "err" for g in got] == [1.0, "err", 0.5, "err", 0.25]
        _, err = capfd.readouterr()
        check_progress(err, bar, 5, 5)


# --------------------------------------------------------------------------
# Ctrl-C


CTRL_C_CHILD = r"""
import os, sys, time
import _pool_workers as w

api, mode, d = sys.argv[1:4]
args = [(i, f"{d}/started-{i}", f"{d}/never") for i in range(8)]

def report():
    # the main thread is about to block: the parent may interrupt from now on
    print("blocking", flush=True)

if api == "Pool":
    from tress.pool import Pool
    if mode == "with":
        with Pool(2) as pool:
            report()
            pool.starmap(w.hold, args, chunksize=1)
    elif mode == "bare":
        pool = Pool(2)
        report()
        pool.starmap(w.hold, args, chunksize=1)
    elif mode == "get":
        pool = Pool(2)
        r = pool.starmap_async(w.hold, args, chunksize=1)
        try:
            report()  # inside: a signal right after it is caught all the same
            r.get()
        except KeyboardInterrupt:
            print("caught", time.monotonic(), flush=True)
            raise
    elif mode == "imap":
        pool = Pool(2)
        report()
        for x in pool.imap(w.hold_one, args):
            print(x)
else:
    from tress.futures import ProcessPoolExecutor
    if mode == "with":
        with ProcessPoolExecutor(2) as ex:
            report()
            list(ex.map(w.hold, *zip(*args)))
    elif mode == "bare":
        ex = ProcessPoolExecutor(2)
        report()
        list(ex.map(w.hold, *zip(*args)))
    elif mode == "get":
        ex = ProcessPoolExecutor(2)
        fs = [ex.submit(w.hold, *a) for a in args]
        try:
            report()  # inside: a signal right after it is caught all the same
            fs[0].result()
        except KeyboardInterrupt:
            print("caught", time.monotonic(), flush=True)
            raise
print("not interrupted", flush=True)
"""

CTRL_C_CASES = [
    ("Pool", "with", "process"),
    ("Pool", "with", "group"),
    ("Pool", "bare", "process"),
    ("Pool", "bare", "group"),
    ("Pool", "get", "process"),
    ("Pool", "imap", "group"),
    ("ProcessPoolExecutor", "with", "process"),
    ("ProcessPoolExecutor", "with", "group"),
    ("ProcessPoolExecutor", "bare", "process"),
    ("ProcessPoolExecutor", "bare", "group"),
    ("ProcessPoolExecutor", "get", "process"),
]
EXIT_BOUND = 10.0  # seconds from SIGINT to the end of the program
RAISE_BOUND = 2.0  # seconds from SIGINT to KeyboardInterrupt in the main thread


@pytest.mark.parametrize("api_name, mode, target", CTRL_C_CASES,
                         ids=["-".join(c) for c in CTRL_C_CASES])
def test_ctrl_c(api_name, mode, target, tmp_path):
    """SIGINT to the program (``process``), or to its process group as a
    terminal's Ctrl-C (``group``: the workers get it too), while its main
    thread waits for a long map: KeyboardInterrupt, the program ends within
    EXIT_BOUND, and none of its workers is left running."""
    need_tress()
    d = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_CHILD, api_name, mode, d],
        cwd=d, env=w.child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    workers = []
    try:
        # both workers run a task (each has written its pid), and the main
        # thread has said it is about to block
        line = bounded(proc.stdout.readline, timeout=TIMEOUT)
        assert line == "blocking\n", line + bounded(proc.stderr.read)

        def started():
            if proc.poll() is not None:
                pytest.fail(f"the program ended early: {proc.stderr.read()}")
            names = [n for n in os.listdir(d) if n.startswith("started-")]
            return len(names) >= 2 and all(read(os.path.join(d, n)) for n in names)

        wait_for(started, TIMEOUT, "two tasks to start")
        pids = {int(read(os.path.join(d, n))) for n in os.listdir(d) if n.startswith("started-")}
        pids |= w.descendants(proc.pid)
        workers = [i for i in (w.identity_of(p) for p in pids) if i is not None]
        assert len(workers) >= 2, workers
        sent = time.monotonic()
        if target == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=EXIT_BOUND + 20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the program did not end within {EXIT_BOUND + 20} s of SIGINT")
        took = time.monotonic() - sent
        assert "KeyboardInterrupt" in err, err
        assert "not interrupted" not in out
        assert proc.returncode != 0
        assert took < EXIT_BOUND, f"the program took {took:.1f} s to end after SIGINT\n{err}"
        caught = [float(x.split()[1]) for x in out.splitlines() if x.startswith("caught")]
        if mode == "get":
            assert len(caught) == 1, out
            assert caught[0] - sent < RAISE_BOUND, f"KeyboardInterrupt came {caught[0] - sent:.1f} s late"
        deadline = time.monotonic() + 10.0
        while any(w.running(i) for i in workers) and time.monotonic() < deadline:
            time.sleep(0.01)
        alive = [i[0] for i in workers if w.running(i)]
        assert alive == [], f"processes of the program still running after it ended: {alive}\n{err}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for ident in workers:
            if w.running(ident):
                os.kill(ident[0], signal.SIGKILL)
        proc.stdout.close()
        proc.stderr.close()


def test_a_sigkill_storm_settles_every_task(api):
    """Workers SIGKILLed from outside every few milliseconds while 3,000
    tasks flow (any moment of a task's life: taking it off the ring,
    running it, sending its result): every task settles, with its right
    value or WorkerDied, none is lost or left pending, and the pool goes on.
    A worker records its task as it takes the message off the ring, in one
    step a death cannot split (ShmQueue.get_task)."""
    before = w.child_pids()
    pool = api(2)
    assert pool.submit(w.square, 2).result(TIMEOUT) == 4
    stop = threading.Event()
    kills = [0]

    def storm():
        while not stop.wait(0.003):
            for pid in w.new_children(before):
                try:
                    os.kill(pid, signal.SIGKILL)
                    kills[0] += 1
                except ProcessLookupError:
                    pass
                break  # one a round

    killer = threading.Thread(target=storm, daemon=True)
    killer.start()
    try:
        handles = [pool.submit(w.sleep_then_square, i, 0.0005) for i in range(3000)]
        outcomes = [outcome(h, timeout=60) for h in handles]
    finally:
        stop.set()
        killer.join(TIMEOUT)
    wrong = [(i, o) for i, o in enumerate(outcomes)
             if not (o == ("ok", i * i) or (o[0] == "err" and isinstance(o[1], BrokenProcessPool)))]
    assert wrong == []
    assert kills[0] > 0
    assert pool.submit(w.square, 9).result(TIMEOUT) == 81
    pool.close()


def test_a_pool_whose_manager_cannot_start_leaves_no_worker(monkeypatch):
    """The first submit starts the workers, then the manager thread; when
    the thread cannot start (at interpreter shutdown: 3.13's
    test_python_finalization_error) the submit raises, the workers already
    started are stopped, and a later submit starts afresh."""
    need_tress()
    ctx = multiprocessing.get_context("fork")
    before = {p.pid for p in multiprocessing.active_children()}
    ours = lambda: [p for p in multiprocessing.active_children()  # noqa: E731
                    if p.pid not in before and p.name.startswith("tress-ProcessPool")]
    pool = ProcessPoolExecutor(2, mp_context=ctx)
    start = threading.Thread.start

    def refuse_the_manager(thread):
        if thread.name == "tress-ProcessPool-manager":
            raise RuntimeError("can't create new thread at interpreter shutdown")
        return start(thread)

    with monkeypatch.context() as m:
        m.setattr(threading.Thread, "start", refuse_the_manager)
        with pytest.raises(RuntimeError, match="can't create new thread"):
            pool.submit(w.add, 2, 3)
    assert ours() == []
    try:
        assert pool.submit(w.add, 2, 3).result(TIMEOUT) == 5
        assert len(ours()) == 2
    finally:
        pool.shutdown()
    assert ours() == []
