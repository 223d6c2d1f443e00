"""tress.futures.ProcessPoolExecutor (first version): the executor API as
the stdlib's (checked side by side where the behaviour is the same), and
what it does beyond it: a worker that dies fails its task alone, with an
error naming the task and how the worker died, and the pool goes on;
``task_timeout``; automatic ``map`` chunking; unpicklable arguments and
results fail their task only. Every wait has a timeout; process counts are
checked before and after."""

import concurrent.futures as std_futures
import errno
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures.process import BrokenProcessPool

import pytest

try:
    import tress.futures as tress_futures
except Exception as exc:  # noqa: BLE001 - ImportError, or a broken build
    tress_futures = None
    IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

TIMEOUT = 60.0


@pytest.fixture(params=["concurrent.futures", "tress"])
def fmod(request):
    if request.param == "concurrent.futures":
        return std_futures
    if tress_futures is None:
        pytest.skip(f"tress.futures is not importable ({IMPORT_ERROR})")
    return tress_futures


@pytest.fixture
def tf():
    if tress_futures is None:
        pytest.skip(f"tress.futures is not importable ({IMPORT_ERROR})")
    return tress_futures


@pytest.fixture(autouse=True)
def no_children_left():
    before = set(multiprocessing.active_children())
    yield
    deadline = time.monotonic() + 10
    while set(multiprocessing.active_children()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    left = set(multiprocessing.active_children()) - before
    assert not left, f"processes left behind: {left}"


def square(x):
    return x * x


def fail(x):
    raise ValueError(f"failed on {x}")


def die_on_sevens(x):
    if x % 100 == 7:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def exit_now(code):
    os._exit(code)


def sleep_for(t):
    time.sleep(t)
    return t


def unpicklable_result():
    return lambda: None


def pid():
    return os.getpid()


def test_submit_map_and_exceptions_as_the_stdlib(fmod):
    with fmod.ProcessPoolExecutor(2) as ex:
        assert ex.submit(square, 12).result(TIMEOUT) == 144
        assert list(ex.map(square, range(50), timeout=TIMEOUT)) == [x * x for x in range(50)]
        assert (list(ex.map(square, range(50), chunksize=7, timeout=TIMEOUT))
                == [x * x for x in range(50)])
        f = ex.submit(fail, 3)
        with pytest.raises(ValueError, match="failed on 3") as info:
            f.result(TIMEOUT)
        # the worker's traceback comes as the cause, as the stdlib does it
        assert type(info.value.__cause__).__name__ == "_RemoteTraceback"
        assert "fail" in str(info.value.__cause__)
        assert isinstance(f, std_futures.Future)
        done, _ = std_futures.wait([ex.submit(square, 2)], timeout=TIMEOUT)
        assert [d.result() for d in done] == [4]
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.submit(square, 1)


def test_constructor_errors_as_the_stdlib(fmod):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        fmod.ProcessPoolExecutor(0)
    with pytest.raises(TypeError, match="initializer must be a callable"):
        fmod.ProcessPoolExecutor(1, initializer=5)
    with pytest.raises(ValueError, match="incompatible with the 'fork'"):
        fmod.ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("fork"), max_tasks_per_child=2)


def test_unpicklable_argument_fails_that_task_only(fmod):
    with fmod.ProcessPoolExecutor(2) as ex:
        # a lock pickles neither with pickle nor with cloudpickle
        bad = ex.submit(square, threading.Lock())
        with pytest.raises(TypeError, match="cannot pickle '_thread.lock' object"):
            bad.result(TIMEOUT)
        assert ex.submit(square, 5).result(TIMEOUT) == 25


def test_unpicklable_result_fails_that_task_only(tf):
    with tf.ProcessPoolExecutor(2) as ex:
        # "Can't pickle local object" (3.11, 3.12), "Can't get local object" (3.13)
        with pytest.raises(Exception, match="(?i)pickle|local object"):
            ex.submit(unpicklable_result).result(TIMEOUT)
        assert ex.submit(square, 6).result(TIMEOUT) == 36


def test_thousand_tasks_ten_kill_their_worker(tf):
    """Exactly the ten tasks whose worker died fail, each with WorkerDied
    naming the task and the signal; the 990 others are correct."""
    with tf.ProcessPoolExecutor(2) as ex:
        futures = [ex.submit(die_on_sevens, i) for i in range(1000)]
        died, results = [], {}
        for i, f in enumerate(futures):
            try:
                results[i] = f.result(TIMEOUT)
            except tf.WorkerDied as exc:
                assert isinstance(exc, BrokenProcessPool)
                assert "die_on_sevens" in str(exc) and "SIGKILL" in str(exc)
                died.append(i)
        assert died == [i for i in range(1000) if i % 100 == 7]
        assert results == {i: i for i in range(1000) if i % 100 != 7}
        assert ex.submit(square, 3).result(TIMEOUT) == 9


def test_a_worker_that_exits_fails_its_task_with_its_exit_code(tf):
    with tf.ProcessPoolExecutor(1) as ex:
        with pytest.raises(tf.WorkerDied, match="exited with code 3"):
            ex.submit(exit_now, 3).result(TIMEOUT)
        assert ex.submit(square, 4).result(TIMEOUT) == 16


def test_task_timeout_fails_the_task_and_replaces_the_worker(tf):
    with tf.ProcessPoolExecutor(2, task_timeout=0.5) as ex:
        slow = ex.submit(sleep_for, 30)
        quick = ex.submit(sleep_for, 0.01)
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="task_timeout=0.5"):
            slow.result(TIMEOUT)
        assert time.monotonic() - start < 10
        assert quick.result(TIMEOUT) == 0.01
        assert ex.submit(square, 7).result(TIMEOUT) == 49
    with pytest.raises(ValueError, match="task_timeout"):
        tf.ProcessPoolExecutor(1, task_timeout=0)


def test_failing_initializer_breaks_the_pool(fmod):
    ex = fmod.ProcessPoolExecutor(1, initializer=fail, initargs=(1,))
    f = ex.submit(square, 2)
    with pytest.raises(BrokenProcessPool):
        f.result(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while not ex._broken and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(BrokenProcessPool):
        ex.submit(square, 2)
    ex.shutdown(wait=True)


def test_max_tasks_per_child_replaces_workers(fmod):
    ctx = multiprocessing.get_context("spawn")
    with fmod.ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=2) as ex:
        pids = [ex.submit(pid).result(TIMEOUT) for _ in range(6)]
    assert len(set(pids)) == 3, pids


def test_cancel_futures_cancels_the_queued_ones(fmod):
    ex = fmod.ProcessPoolExecutor(1)
    first = ex.submit(sleep_for, 0.5)
    queued = [ex.submit(square, i) for i in range(20)]
    time.sleep(0.1)
    ex.shutdown(wait=True, cancel_futures=True)
    assert first.result(TIMEOUT) == 0.5
    cancelled = [f for f in queued if f.cancelled()]
    assert cancelled, "no queued future was cancelled"
    for f in queued:
        assert f.cancelled() or f.result(0) is not None


def test_default_map_chunks_and_keeps_the_order(tf):
    with tf.ProcessPoolExecutor(2) as ex:
        n = 20_000
        assert sum(ex.map(square, range(n), timeout=TIMEOUT)) == sum(x * x for x in range(n))
        assert list(ex.map(square, [])) == []


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_other_start_methods(tf, method):
    with tf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method)) as ex:
        assert list(ex.map(square, range(10), timeout=TIMEOUT)) == [x * x for x in range(10)]
        with pytest.raises(tf.WorkerDied):
            ex.submit(exit_now, 1).result(TIMEOUT)
        assert ex.submit(square, 3).result(TIMEOUT) == 9


def test_nothing_left_in_dev_shm(tf):
    def listing():
        try:
            return {n for n in os.listdir("/dev/shm") if not n.startswith("sem.mp")}
        except FileNotFoundError:
            return set()

    before = listing()
    with tf.ProcessPoolExecutor(2) as ex:
        futures = [ex.submit(die_on_sevens, i) for i in range(200)]
        for f in futures:
            try:
                f.result(TIMEOUT)
            except tf.WorkerDied:
                pass
    assert listing() - before == set()


_FORKED_CHILD_LEAVES = """
import gc, os, sys
from tress.futures import ProcessPoolExecutor

def square(x):
    return x * x

with ProcessPoolExecutor(2) as ex:
    assert ex.submit(square, 2).result(60) == 4
    pid = os.fork()
    if pid == 0:
        # the child: drop its copy of the executor, then leave normally,
        # through the interpreter's exit hooks
        del ex
        gc.collect()
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    print(sorted(ex.submit(square, i).result(60) for i in range(6)))
"""


def test_a_forked_child_leaving_does_not_stop_the_parents_pool(tf, run_python):
    """A child forked while the pool runs inherits the pool (with its exit
    hook and finalizer); its leaving must not tell the parent's workers to
    stop."""
    proc = run_python(_FORKED_CHILD_LEAVES, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0, 1, 4, 9, 16, 25]"


_PARENT_KILLED = """
import multiprocessing, os, sys, time
from tress.futures import ProcessPoolExecutor
from tress.pool import Pool

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    ex = ProcessPoolExecutor(2, mp_context=ctx)
    pool = Pool(2, context=ctx)
    [f.result(60) for f in [ex.submit(time.sleep, 0.2) for _ in range(2)]]
    pool.map(abs, range(8))
    busy = pool.apply_async(time.sleep, (0.5,))  # one worker runs a task
    pids = [p.pid for p in pool._pool] + list(ex._processes)
    print(" ".join(map(str, pids)), flush=True)
    time.sleep(600)  # SIGKILLed here
"""


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_workers_exit_when_their_parent_is_killed(tf, tmp_path, method):
    """A parent SIGKILLed with pools up (one worker busy with a task):
    every worker of both APIs notices and exits (multiprocessing's do, when
    their pipe closes); none is left running."""
    import subprocess
    import sys

    script = tmp_path / "parent.py"
    script.write_text(_PARENT_KILLED)
    proc = subprocess.Popen([sys.executable, str(script), method], stdout=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 4, f"the parent printed {line!r}"
        assert all(_running(p) for p in pids)
    finally:
        proc.kill()
        proc.wait(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while any(_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in pids if _running(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"workers {left} outlived their parent"


# --------------------------------------------------------------------------
# messages larger than the rings, results read by the waiting caller


def length(data):
    return len(data)


def filled(size, byte):
    return bytes([byte]) * size


def large_error(size):
    raise ValueError("e" * size)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_exceptions_larger_than_the_result_ring(tf, method):
    """An exception whose pickle is larger than the result ring comes back
    whole, with its type (CPython's _TestPool.test_map_no_failfast sends
    one), through both APIs; the pool goes on."""
    from tress._procpool import engine
    from tress.pool import Pool

    size = 3 * engine.RESULTS_CAPACITY
    ctx = multiprocessing.get_context(method)
    with tf.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        exc = ex.submit(large_error, size).exception(TIMEOUT)
        assert type(exc) is ValueError and str(exc) == "e" * size
        assert ex.submit(square, 4).result(TIMEOUT) == 16
    with Pool(2, context=ctx) as pool:
        with pytest.raises(ValueError) as info:
            pool.apply_async(large_error, (size,)).get(TIMEOUT)
        assert str(info.value) == "e" * size
        assert pool.map(square, range(10)) == [x * x for x in range(10)]


class TwoArgError(Exception):
    """Pickles (as ``TwoArgError(message)``) but cannot be unpickled: its
    ``__init__`` wants two arguments."""

    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")


def raise_two_arg(a, b):
    raise TwoArgError(a, b)


def test_an_exception_that_cannot_be_unpickled_fails_its_task_alone(tf):
    """The manager decodes each message apart from its header: a task whose
    exception cannot be unpickled in the parent fails with
    BrokenProcessPool (the decoding error as its cause) and the pool, and
    every later task, goes on."""
    from tress.pool import Pool

    with tf.ProcessPoolExecutor(2) as ex:
        exc = ex.submit(raise_two_arg, 1, 2).exception(TIMEOUT)
        assert type(exc) is BrokenProcessPool and "could not be unpickled" in str(exc)
        assert isinstance(exc.__cause__, TypeError)
        assert [f.result(TIMEOUT) for f in [ex.submit(square, i) for i in range(50)]] == \
            [i * i for i in range(50)]
    with Pool(2) as pool:
        r = pool.apply_async(raise_two_arg, (1, 2))
        with pytest.raises(BrokenProcessPool, match="could not be unpickled"):
            r.get(TIMEOUT)
        assert pool.map(square, range(50)) == [i * i for i in range(50)]


def negate(array):
    return -array


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_numpy_array_of_100_mb_through_both_pool_apis(tf, method):
    """A 100 MB NumPy array as an argument and as a result, both ways,
    through both APIs, checked by hash (its buffer travels out of band)."""
    np = pytest.importorskip("numpy", reason="numpy is not installed (an optional test "
                             "dependency: pip install numpy)")
    import hashlib

    from tress.pool import Pool

    array = np.arange(100_000_000 // 8, dtype=np.float64)
    want = hashlib.sha256((-array).tobytes()).hexdigest()
    ctx = multiprocessing.get_context(method)
    with tf.ProcessPoolExecutor(1, mp_context=ctx) as ex:
        got = ex.submit(negate, array).result(TIMEOUT)
        assert got.dtype == array.dtype and got.shape == array.shape
        assert hashlib.sha256(got.tobytes()).hexdigest() == want
    del got
    with Pool(1, context=ctx) as pool:
        got = pool.apply_async(negate, (array,)).get(TIMEOUT)
        assert hashlib.sha256(got.tobytes()).hexdigest() == want


def open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_calls_and_results_larger_than_the_rings(tf, method):
    """24 MiB arguments and 24 MiB results (larger than either ring: the
    rings take them out of band) arrive whole and in the right place,
    several at once; nothing is left pending and no descriptor stays open."""
    from tress._procpool import engine

    big = 24 << 20
    assert big > engine.TASKS_CAPACITY and big > engine.RESULTS_CAPACITY
    ctx = multiprocessing.get_context(method)
    with tf.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        # both workers started (spawn starts them on demand), then counted
        assert [f.result(TIMEOUT) for f in [ex.submit(sleep_for, 0.2) for _ in range(2)]] \
            == [0.2, 0.2]
        assert len(ex._processes) == 2
        fds = open_fds()
        args = [bytes([i]) * big for i in range(3)]
        sizes = [ex.submit(length, a) for a in args]
        echoes = [ex.submit(filled, big, i) for i in range(3)]
        assert [f.result(TIMEOUT) for f in sizes] == [big] * 3
        for i, f in enumerate(echoes):
            data = f.result(TIMEOUT)
            assert len(data) == big and data[0] == i and data[-1] == i
        del args
        assert ex._pool.pending == {}
        assert open_fds() == fds
        # the pool goes on with small messages
        assert list(ex.map(square, range(100), timeout=TIMEOUT)) == [x * x for x in range(100)]


def test_a_cancelled_queued_call_never_runs(tf):
    """Calls beyond the workers' queue (max_workers + 1, as the stdlib's)
    wait in the parent and can be cancelled: a cancelled large call is
    never sent, never run, and its memory is let go of."""
    with tf.ProcessPoolExecutor(1) as ex:
        assert ex.submit(square, 2).result(TIMEOUT) == 4
        blocker = ex.submit(sleep_for, 0.5)
        second = ex.submit(square, 5)
        queued = ex.submit(length, b"x" * (4 << 20))
        assert not blocker.cancel() and not second.cancel()  # in the workers' queue
        assert queued.cancel()
        assert blocker.result(TIMEOUT) == 0.5
        assert second.result(TIMEOUT) == 25
        ex.shutdown(wait=True)
        assert queued.cancelled()
        assert ex._pool.pending == {} and not ex._pool.backlog and ex._pool.head is None


def test_round_trips_are_read_by_the_waiting_caller(tf):
    """result() reads the results itself: a thousand round trips, each the
    right value; a done callback that waits on another future of the pool
    (read by the same caller, re-entered) gets it; a callback on a future
    that another caller's reading completed runs too."""
    with tf.ProcessPoolExecutor(2) as ex:
        assert sum(ex.submit(abs, -i).result(TIMEOUT) for i in range(1000)) == 499500
        other = ex.submit(pow, 2, 10)
        seen = []
        first = ex.submit(abs, -3)
        first.add_done_callback(lambda _: seen.append(other.result(TIMEOUT)))
        assert first.result(TIMEOUT) == 3
        assert seen == [1024]
        fs = [ex.submit(abs, -i) for i in range(200)]
        called = threading.Event()
        fs[-1].add_done_callback(lambda f: called.set())
        assert fs[100].result(TIMEOUT) == 100
        assert called.wait(TIMEOUT)
        assert [f.result(TIMEOUT) for f in fs] == list(range(200))


def test_a_caller_reading_results_sees_its_worker_die(tf):
    """The caller waits in result() (reading the ring) when the worker of its
    task dies: the manager fails the task and wakes the caller."""
    with tf.ProcessPoolExecutor(2) as ex:
        f = ex.submit(die_on_sevens, 7)
        start = time.monotonic()
        with pytest.raises(tf.WorkerDied, match="SIGKILL"):
            f.result(TIMEOUT)
        assert time.monotonic() - start < TIMEOUT / 2
        assert ex.submit(square, 9).result(TIMEOUT) == 81


def test_result_timeout_while_reading(tf):
    with tf.ProcessPoolExecutor(1) as ex:
        f = ex.submit(sleep_for, 1.0)
        start = time.monotonic()
        with pytest.raises(std_futures.TimeoutError):
            f.result(0.1)
        waited = time.monotonic() - start
        assert 0.09 <= waited < 0.9
        assert f.result(TIMEOUT) == 1.0


def invert(x):
    return 1 / x


def test_pool_imap_default_chunks_keep_per_item_outcomes():
    """tress.pool.Pool.imap without a chunksize sends the items in chunks
    (about four per worker) yet each item yields its value or raises its own
    exception, the iteration going on, and ``next(timeout)`` works."""
    if tress_futures is None:
        pytest.skip(f"tress is not importable ({IMPORT_ERROR})")
    from tress.pool import Pool

    items = [1, 2, 0, 4] * 10  # 40 items, every fourth fails
    with Pool(2) as pool:
        engine = pool._engine
        first = next(engine.numbers)
        it = pool.imap(invert, items)
        got = []
        for _ in items:
            try:
                got.append(it.next(TIMEOUT))
            except ZeroDivisionError as exc:
                got.append("raised")
                assert type(exc.__cause__).__name__ == "RemoteTraceback"
        with pytest.raises(StopIteration):
            it.next(TIMEOUT)
        assert got == [1.0, 0.5, "raised", 0.25] * 10
        tasks = next(engine.numbers) - first - 1
        assert tasks == 8, f"{tasks} tasks for 40 items on 2 workers (chunks of 5 expected)"
        it = pool.imap_unordered(invert, [x for x in items if x])
        unordered = [it.next(TIMEOUT) for _ in range(30)]
        with pytest.raises(StopIteration):
            it.next(TIMEOUT)
        assert sorted(unordered) == sorted([1.0, 0.5, 0.25] * 10)
        # an explicit chunksize keeps the stdlib's rule: a failed chunk (the
        # first: 1, 2, 0, 4, 1) raises, and ends the iteration
        it = pool.imap(invert, items, chunksize=5)
        with pytest.raises(ZeroDivisionError):
            it.next(TIMEOUT)
        with pytest.raises(StopIteration):
            it.next(TIMEOUT)


def _impls():
    """The two implementations of each constructor the odd-argument cases
    call, by role: (stdlib's, tress's)."""
    import multiprocessing.pool as std_pool

    import tress.multiprocessing as tress_mp
    import tress.pool as tress_pool

    return {
        "std": {"Pool": std_pool.Pool, "mp": multiprocessing, "ThreadPool": std_pool.ThreadPool,
                "TPE": std_futures.ThreadPoolExecutor, "PPE": std_futures.ProcessPoolExecutor},
        "tress": {"Pool": tress_pool.Pool, "mp": tress_mp, "ThreadPool": tress_pool.ThreadPool,
                  "TPE": tress_futures.ThreadPoolExecutor,
                  "PPE": tress_futures.ProcessPoolExecutor},
    }


def _fork_ctx():
    return multiprocessing.get_context("fork")


# (id, call on the implementations' namespace). Every case's exception
# (type and message) was compared with the stdlib's of 3.11, 3.12 and 3.13:
# the same on all three. A case whose stdlib call succeeds must succeed.
ODD_ARGUMENTS = [
    ("Pool(context='fork')", lambda n: n["Pool"](1, context="fork")),
    ("Pool(0, context='fork')", lambda n: n["Pool"](0, context="fork")),
    ("Pool(context=3)", lambda n: n["Pool"](1, context=3)),
    ("Pool(0)", lambda n: n["Pool"](0)),
    ("Pool(-1)", lambda n: n["Pool"](-1)),
    ("Pool('2')", lambda n: n["Pool"]("2")),
    ("Pool(2.5)", lambda n: n["Pool"](2.5)),
    ("Pool(maxtasksperchild=0)", lambda n: n["Pool"](1, maxtasksperchild=0)),
    ("Pool(maxtasksperchild=-1)", lambda n: n["Pool"](1, maxtasksperchild=-1)),
    ("Pool(maxtasksperchild='x')", lambda n: n["Pool"](1, maxtasksperchild="x")),
    ("Pool(maxtasksperchild=2.5)", lambda n: n["Pool"](1, maxtasksperchild=2.5)),
    ("Pool(initializer=3)", lambda n: n["Pool"](1, initializer=3)),
    ("mp.Pool(0)", lambda n: n["mp"].Pool(0)),
    ("mp.Pool('2')", lambda n: n["mp"].Pool("2")),
    ("mp.Pool(maxtasksperchild='x')", lambda n: n["mp"].Pool(1, maxtasksperchild="x")),
    ("mp.Pool(initializer=3)", lambda n: n["mp"].Pool(1, initializer=3)),
    ("mp.get_context('fork').Pool(-1)", lambda n: n["mp"].get_context("fork").Pool(-1)),
    ("ThreadPool(0)", lambda n: n["ThreadPool"](0)),
    ("ThreadPool('2')", lambda n: n["ThreadPool"]("2")),
    ("ThreadPool(initializer=3)", lambda n: n["ThreadPool"](1, initializer=3)),
    ("Queue(maxsize='x')", lambda n: n["mp"].Queue(maxsize="x")),
    ("Queue(None)", lambda n: n["mp"].Queue(None)),
    ("Queue(2.5)", lambda n: n["mp"].Queue(2.5)),
    ("Queue(-1)", lambda n: n["mp"].Queue(-1)),
    ("JoinableQueue(2.5)", lambda n: n["mp"].JoinableQueue(2.5)),
    ("JoinableQueue('x')", lambda n: n["mp"].JoinableQueue("x")),
    ("SimpleQueue(1)", lambda n: n["mp"].SimpleQueue(1)),
    ("Semaphore('x')", lambda n: n["mp"].Semaphore("x")),
    ("Semaphore(2.5)", lambda n: n["mp"].Semaphore(2.5)),
    ("Semaphore(None)", lambda n: n["mp"].Semaphore(None)),
    ("BoundedSemaphore(-1)", lambda n: n["mp"].BoundedSemaphore(-1)),
    ("BoundedSemaphore('x')", lambda n: n["mp"].BoundedSemaphore("x")),
    ("Lock(1)", lambda n: n["mp"].Lock(1)),
    ("RLock(1)", lambda n: n["mp"].RLock(1)),
    ("Barrier(0)", lambda n: n["mp"].Barrier(0)),
    ("Barrier('x')", lambda n: n["mp"].Barrier("x")),
    ("Barrier(None)", lambda n: n["mp"].Barrier(None)),
    ("Condition(lock=object())", lambda n: n["mp"].Condition(lock=object())),
    ("Event(1)", lambda n: n["mp"].Event(1)),
    ("Value('x')", lambda n: n["mp"].Value("x")),
    ("Value('i', 'x')", lambda n: n["mp"].Value("i", "x")),
    ("Array('i', -1)", lambda n: n["mp"].Array("i", -1)),
    ("Array('i', 'x')", lambda n: n["mp"].Array("i", "x")),
    ("ThreadPoolExecutor(0)", lambda n: n["TPE"](0)),
    ("ThreadPoolExecutor(-1)", lambda n: n["TPE"](-1)),
    ("ThreadPoolExecutor('x')", lambda n: n["TPE"]("x")),
    ("ThreadPoolExecutor(2.5)", lambda n: n["TPE"](2.5)),
    ("ThreadPoolExecutor(initializer=3)", lambda n: n["TPE"](1, initializer=3)),
    ("ProcessPoolExecutor(0)", lambda n: n["PPE"](0)),
    ("ProcessPoolExecutor(-1)", lambda n: n["PPE"](-1)),
    ("ProcessPoolExecutor('x')", lambda n: n["PPE"]("x")),
    ("ProcessPoolExecutor(2.5)", lambda n: n["PPE"](2.5)),
    ("ProcessPoolExecutor(initializer=3)", lambda n: n["PPE"](1, initializer=3)),
    ("ProcessPoolExecutor(mp_context='fork')", lambda n: n["PPE"](1, mp_context="fork")),
    ("ProcessPoolExecutor(mp_context='fork', initializer=3)",
     lambda n: n["PPE"](1, mp_context="fork", initializer=3)),
    ("ProcessPoolExecutor(max_tasks_per_child=0)", lambda n: n["PPE"](1, max_tasks_per_child=0)),
    ("ProcessPoolExecutor(max_tasks_per_child='x')",
     lambda n: n["PPE"](1, max_tasks_per_child="x")),
    ("ProcessPoolExecutor(max_tasks_per_child=1, mp_context=fork)",
     lambda n: n["PPE"](1, max_tasks_per_child=1, mp_context=_fork_ctx())),
]

# Cases whose messages differ only by the name of the callable that
# refuses an argument (the stdlib's factories are context methods,
# ``BaseContext.Event()``; tress's are classes, ``Event.__init__()``).
NAMED_BY_THE_CALLABLE = {"SimpleQueue(1)", "Lock(1)", "RLock(1)", "Event(1)"}


def _outcome(call, impl):
    try:
        made = call(impl)
    except Exception as exc:  # noqa: BLE001 - what is compared
        return type(exc), str(exc)
    for stop in ("terminate", "shutdown"):  # pools: stopped, not left running
        if hasattr(made, stop):
            getattr(made, stop)()
            if stop == "terminate":
                made.join()
            break
    return None, None


@pytest.mark.parametrize("case, call", ODD_ARGUMENTS, ids=[c[0] for c in ODD_ARGUMENTS])
def test_odd_constructor_arguments_fail_as_the_stdlib(tf, case, call):
    """Each constructor given an odd argument raises what the stdlib's
    raises (the same type, and the same message but where only the name of
    the refusing callable differs), or succeeds where the stdlib's does;
    the checks come in the stdlib's order (a context that is not one fails
    before a bad initializer is noticed)."""
    impls = _impls()
    std_type, std_message = _outcome(call, impls["std"])
    tress_type, tress_message = _outcome(call, impls["tress"])
    assert tress_type is std_type, f"{case}: tress {tress_type}({tress_message!r}), " \
        f"stdlib {std_type}({std_message!r})"
    if case not in NAMED_BY_THE_CALLABLE:
        assert tress_message == std_message


def test_odd_arguments_as_the_stdlib_takes_them(tf):
    """A float ``max_workers`` for the thread pool (the stdlib takes it), a
    non-integer ``chunksize`` for the process pool's ``map`` (the running
    stdlib's ValueError or, from 3.13, TypeError), ``result(nan)`` on a pending process future (no wait:
    TimeoutError), and a semaphore of -1 (OSError EINVAL), each as the
    stdlib does in the same test."""
    import math

    import multiprocessing as std_mp

    from tress import multiprocessing as tress_mp

    for mod in (std_futures, tf):
        with mod.ThreadPoolExecutor(2.5) as ex:
            assert [f.result(TIMEOUT) for f in [ex.submit(square, i) for i in range(6)]] == \
                [i * i for i in range(6)]
    errors = []
    for mod in (std_futures, tf):
        with mod.ProcessPoolExecutor(1) as ex:
            # ValueError (islice) before 3.13, TypeError (batched) from 3.13
            with pytest.raises((ValueError, TypeError)) as info:
                ex.map(square, [1, 2, 3], chunksize=2.5)
            errors.append((type(info.value), str(info.value)))
            f = ex.submit(sleep_for, 0.5)
            with pytest.raises(std_futures.TimeoutError):
                f.result(math.nan)
            assert f.result(TIMEOUT) == 0.5
    assert errors[0] == errors[1]
    for mod in (std_mp, tress_mp):
        with pytest.raises(OSError) as info:
            mod.Semaphore(-1)
        assert info.value.errno == errno.EINVAL


def _switches(path):
    with open(path) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError(f"no voluntary_ctxt_switches in {path}")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api", ["executor", "pool"])
def test_an_idle_pool_sleeps(tf, api):
    """An idle pool does not poll: over two seconds its manager thread
    wakes at most about twice (a slow look at the workers, once a second)
    and each worker about twice (its look at its parent), not fifty times
    a second; then it still works."""
    from tress.pool import Pool
    pool = tf.ProcessPoolExecutor(2) if api == "executor" else Pool(2)
    try:
        run = pool.submit if api == "executor" else pool.apply_async
        assert [run(square, i).result(TIMEOUT) if api == "executor"
                else run(square, (i,)).get(TIMEOUT) for i in range(4)] == [0, 1, 4, 9]
        engine = pool._engine if api == "pool" else pool._pool
        manager = f"/proc/self/task/{engine.manager.native_id}/status"
        workers = [f"/proc/{p.pid}/status" for p in engine.procs]
        time.sleep(0.3)  # past the last result's hand-over
        before = [_switches(p) for p in [manager, *workers]]
        time.sleep(2.0)  # the measurement window
        woke = [_switches(p) - b for p, b in zip([manager, *workers], before)]
        assert woke[0] <= 4, f"the idle manager woke {woke[0]} times in 2 s"
        assert max(woke[1:]) <= 4, f"idle workers woke {woke[1:]} times in 2 s"
        again = run(square, 7).result(TIMEOUT) if api == "executor" else \
            run(square, (7,)).get(TIMEOUT)
        assert again == 49
    finally:
        if api == "executor":
            pool.shutdown()
        else:
            pool.close()
            pool.join()
