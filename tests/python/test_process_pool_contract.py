"""Contract of ``tress.pool.Pool`` as a drop-in for ``multiprocessing.Pool(
processes=None, initializer=None, initargs=(), maxtasksperchild=None,
context=None)``.

Every test runs on both classes (the module-scoped ``impl`` fixture; the
tress param is skipped with the import error as the reason while
``tress.pool.Pool`` does not import) and asserts literal results and
exceptions (type *and* message, where the stdlib's is deterministic) that the
stdlib run pins to CPython 3.11: construction errors, worker count,
initializer and ``maxtasksperchild``; apply / apply_async (callback and
error_callback called once, one at a time, on a thread of the parent);
map / map_async / starmap / starmap_async / imap / imap_unordered over lists,
generators and empty inputs with various chunksizes; exceptions from the
function (same type, ``RemoteTraceback`` as ``__cause__``) or from the
iterable; unpicklable arguments (that task fails with the pickling error)
and results (``MaybeEncodingError``); large arguments and results;
AsyncResult get(timeout) / wait / ready / successful; close / terminate /
join / context manager; pickling a pool.

One documented difference is checked as such (``assert_dropped``): the
results a ``terminate()`` leaves unfinished wait forever on multiprocessing
and fail with ``BrokenProcessPool`` on tress.

The default start method (fork on Linux) runs everything; the
``TestStartMethods`` class repeats the key tests with an explicit
``context=`` for fork, spawn and forkserver. Worker functions live in
``_pool_workers`` (importable by spawned children), with the helpers the
pool tests share.

Processes are expensive (50-150 ms each here), so tests that leave a pool as
they found it share one (``pool``: 2 workers, ``pool1``: 1 worker) per
implementation; a test that closes, terminates or otherwise changes a pool
makes its own (``pools``). After every test, no child process of the test
process may be left besides the shared pools' and multiprocessing's helpers.

No sleep-and-hope: a task that must still be running while something is
checked waits for a file that the test creates (``gates``); every blocking
call without a timeout parameter runs through ``bounded`` so that a hang
fails the test instead of the session.
"""

import multiprocessing
import multiprocessing.pool as std_pool
import os
import pickle
import threading
import time
from concurrent.futures.process import BrokenProcessPool

import _pool_workers as w
import pytest
from _pool_workers import (TIMEOUT, Gates, Pools, Recorder, assert_exc, assert_timeout_error,
                           bounded, drain, failing_gen, gen, raised, wait_for)

try:
    from tress.pool import Pool as TressPool
except Exception as exc:  # noqa: BLE001 - ImportError, or a broken build
    TressPool = None
    IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

SHORT = 0.05  # a wait that is expected to time out (the task is held)
IMPLS = ["multiprocessing", "tress"]


def pool_class(name):
    if name == "multiprocessing":
        return std_pool.Pool
    if TressPool is None:
        pytest.skip(f"tress.pool.Pool is not importable ({IMPORT_ERROR})")
    return TressPool


@pytest.fixture(scope="module", params=IMPLS)
def impl(request):
    """The Pool class under test: multiprocessing.pool.Pool or tress.pool.Pool."""
    return pool_class(request.param)


# --------------------------------------------------------------------------
# helpers (bounded, raised, drain, Gate, Recorder, Pools ...: _pool_workers)


def assert_remote(exc, exc_type, message, funcname):
    """An exception raised in a worker: its own type and message, and the
    worker's traceback (naming the function) as a RemoteTraceback cause."""
    assert_exc(exc, exc_type, message)
    cause = exc.__cause__
    assert type(cause) is std_pool.RemoteTraceback, f"__cause__ is {cause!r}"
    text = str(cause)
    assert "Traceback (most recent call last)" in text, text
    assert f"in {funcname}" in text, text


@pytest.fixture
def gates(tmp_path):
    """gates() -> a new Gate; every gate is released at teardown, so that a
    failed test leaves no task held in a shared pool."""
    g = Gates(str(tmp_path))
    yield g
    g.release_all()


def ran_files(directory):
    return sorted(n for n in os.listdir(directory) if n.startswith("ran-"))


@pytest.fixture
def pools(impl, gates):
    """Fresh pools (``Pools``), terminated and joined at teardown."""
    p = Pools(impl)
    yield p
    gates.release_all()
    p.cleanup()


def _shared(cls, processes, **kwargs):
    pool = cls(processes, **kwargs)
    assert bounded(pool.apply, w.square, (3,)) == 9  # started (lazily or not)
    return pool


@pytest.fixture(scope="module")
def pool(impl):
    """A shared pool of two workers (default context) per implementation."""
    p = _shared(impl, 2)
    yield p
    w.stop(p)


@pytest.fixture(scope="module")
def pool1(impl):
    """A shared pool of one worker per implementation."""
    p = _shared(impl, 1)
    yield p
    w.stop(p)


@pytest.fixture(autouse=True)
def no_process_left():
    """After each test, the test process has no child it did not have
    before (besides multiprocessing's forkserver and resource tracker)."""
    before = w.child_pids()
    yield
    left = w.leftovers(before)
    if left:
        pytest.fail(left)


def census(make_pool, ctx, processes, expect, maxtasksperchild=None):
    """A pool of ``processes`` whose initializer reports each worker's pid:
    ``expect`` tasks meet at a Barrier (so that many workers run at once),
    the initializer ran exactly once in each of them, with initargs, before
    their tasks; after close/join no more ran."""
    pids = ctx.SimpleQueue()
    barrier = ctx.Barrier(expect)
    kwargs = {} if ctx is None else {"context": ctx}
    pool = make_pool(processes, w.init_state, ("hello", 7, pids, barrier), **kwargs)
    met = pool.map_async(w.meet, range(expect), chunksize=1).get(TIMEOUT)
    more = pool.map_async(w.state, range(100), chunksize=1).get(TIMEOUT)
    pool.close()
    bounded(pool.join)
    inits = []
    while not pids.empty():
        inits.append(bounded(pids.get))
    assert len(inits) == expect, inits
    assert len(set(inits)) == expect, "the initializer ran twice in one worker"
    assert {pid for pid, _ in met} == set(inits)
    assert os.getpid() not in inits
    for pid, tag in met + more:
        assert pid in inits, "a task ran in a worker that did not run the initializer"
        assert tag == ("hello", 7), "the initializer's state was not seen by the task"


# --------------------------------------------------------------------------
# construction


def test_constructor_signature(pools):
    p = pools(processes=2, initializer=None, initargs=(), maxtasksperchild=None, context=None)
    assert bounded(p.apply, w.square, (3,)) == 9
    p = pools(2, None, (), None, None)
    assert bounded(p.apply, w.square, (4,)) == 16
    p = pools(1, context=multiprocessing.get_context())
    assert bounded(p.apply, w.square, (5,)) == 25


@pytest.mark.parametrize("processes", [0, -1, -100])
def test_processes_below_one_is_rejected(impl, processes):
    exc = raised(impl, processes)
    assert_exc(exc, ValueError, "Number of processes must be at least 1")


@pytest.mark.parametrize("initializer", [5, "init", (print,)])
def test_initializer_must_be_callable(impl, initializer):
    assert_exc(raised(impl, 2, initializer), TypeError, "initializer must be a callable")
    assert_exc(raised(impl, initializer=initializer), TypeError, "initializer must be a callable")


@pytest.mark.parametrize("maxtasks", [0, -1, "2", 1.5, 2.0])
def test_bad_maxtasksperchild_is_rejected(impl, maxtasks):
    exc = raised(impl, 1, maxtasksperchild=maxtasks)
    assert_exc(exc, ValueError, "maxtasksperchild must be a positive int or None")


def test_no_process_is_left_by_a_rejected_constructor(impl):
    before = w.child_pids()
    raised(impl, 0)
    raised(impl, 2, 5)
    raised(impl, 2, maxtasksperchild=0)
    assert w.new_children(before) == set()


@pytest.mark.parametrize("processes", [1, 3])
def test_workers_and_initializer_per_worker(pools, processes):
    census(pools, multiprocessing.get_context(), processes, processes)


def test_processes_none_means_cpu_count(pools):
    census(pools, multiprocessing.get_context(), None, os.cpu_count() or 1)


def test_maxtasksperchild_replaces_workers(pools):
    ctx = multiprocessing.get_context()
    pids = ctx.SimpleQueue()
    pool = pools(1, w.init_state, ("m", 1, pids), maxtasksperchild=2)
    got = [bounded(pool.apply, w.state) for _ in range(6)]
    pool.close()
    bounded(pool.join)
    inits = []
    while not pids.empty():
        inits.append(bounded(pids.get))
    seen = [pid for pid, _ in got]
    assert seen[0] == seen[1] and seen[2] == seen[3] and seen[4] == seen[5], seen
    assert len(set(seen)) == 3, seen
    # each worker ran the initializer once; the third retires after its
    # second task and may have been replaced (by an idle fourth) before close
    assert inits[:3] == [seen[0], seen[2], seen[4]], inits
    assert len(inits) in (3, 4) and len(set(inits)) == len(inits), inits
    assert all(tag == ("m", 1) for _, tag in got)


def test_pool_cannot_be_pickled(pool):
    exc = raised(pickle.dumps, pool)
    assert_exc(exc, NotImplementedError, "pool objects cannot be passed between processes or pickled")


# --------------------------------------------------------------------------
# apply / apply_async


def test_apply_args_and_kwds(pool):
    assert bounded(pool.apply, pow, (2, 10)) == 1024
    assert bounded(pool.apply, w.keyword_func, (1,)) == (1, 0, 0)
    assert bounded(pool.apply, w.keyword_func, [1, 2]) == (1, 2, 0)
    assert bounded(pool.apply, w.keyword_func, (1,), {"b": 3, "c": 4}) == (1, 3, 4)
    assert bounded(pool.apply, w.keyword_func, kwds={"a": 5}) == (5, 0, 0)
    assert bounded(pool.apply, w.identity, (None,)) is None
    assert bounded(pool.apply, w.identity, ({"k": [1, (2, 3.5)]},)) == {"k": [1, (2, 3.5)]}
    worker = bounded(pool.apply, w.pid)
    assert worker != os.getpid() and worker in w.child_pids(), "apply runs in a child process"


def test_apply_async_args_and_kwds(pool):
    assert pool.apply_async(pow, (3, 4)).get(TIMEOUT) == 81
    assert pool.apply_async(w.keyword_func, (1,), {"c": 9}).get(TIMEOUT) == (1, 0, 9)
    assert pool.apply_async(w.keyword_func, kwds={"a": 2, "b": 3}).get(TIMEOUT) == (2, 3, 0)
    assert pool.apply_async(w.pid).get(TIMEOUT) != os.getpid()


def test_apply_async_callback_runs_once_before_get_returns(pools):
    pool = pools(2)
    cb, ecb = Recorder(), Recorder()
    r = pool.apply_async(pow, (3, 4), callback=cb, error_callback=ecb)
    assert r.get(TIMEOUT) == 81
    # the stdlib calls the callback before the result becomes ready
    assert cb.values == [81]
    assert cb.calls[0][1] != threading.get_ident(), "callback ran on the caller's thread"
    assert ecb.calls == []
    pool.close()
    bounded(pool.join)
    assert cb.values == [81] and ecb.calls == []


def test_apply_async_callback_runs_without_anyone_calling_get(pool):
    cb = Recorder()
    r = pool.apply_async(w.square, (12,), callback=cb)
    assert cb.called.wait(TIMEOUT), "callback not called"
    assert cb.values == [144]
    assert cb.calls[0][1] != threading.get_ident()
    assert r.get(TIMEOUT) == 144


def test_callbacks_run_one_at_a_time(pool, tmp_path):
    # Callbacks run on the parent's one result-handler thread: a callback
    # never runs while another is still running.
    in_first, release = threading.Event(), threading.Event()
    second_called = threading.Event()
    marker = str(tmp_path / "second-ran")

    def first_cb(value):
        in_first.set()
        release.wait(TIMEOUT)

    try:
        a = pool.apply_async(w.square, (2,), callback=first_cb)
        assert in_first.wait(TIMEOUT)
        b = pool.apply_async(w.touch, (marker,), callback=lambda v: second_called.set())
        wait_for(lambda: os.path.exists(marker), message="the second task to run")
        assert not second_called.wait(0.5), "a callback ran while another was still running"
    finally:
        release.set()
    assert second_called.wait(TIMEOUT)
    assert a.get(TIMEOUT) == 4 and b.get(TIMEOUT) is None


def test_apply_async_error_callback_gets_the_raised_exception(pools):
    pool = pools(2)
    cb, ecb = Recorder(), Recorder()
    r = pool.apply_async(w.raise_custom, ("boom 7",), callback=cb, error_callback=ecb)
    exc = raised(r.get, TIMEOUT)
    assert_remote(exc, w.CustomError, "boom 7", "raise_custom")
    assert len(ecb.calls) == 1 and ecb.calls[0][0] is exc, "error_callback and get() differ"
    assert ecb.calls[0][1] != threading.get_ident(), "error_callback ran on the caller's thread"
    assert cb.calls == []
    assert r.ready() is True and r.successful() is False
    assert raised(r.get, TIMEOUT) is exc, "get() again raises the same exception"
    pool.close()
    bounded(pool.join)
    assert len(ecb.calls) == 1 and cb.calls == []


def test_apply_exceptions_propagate(pool):
    assert_remote(raised(pool.apply, w.inverse, (0,)), ZeroDivisionError, "division by zero",
                  "inverse")
    assert_remote(raised(pool.apply_async(w.inverse, (0,)).get, TIMEOUT),
                  ZeroDivisionError, "division by zero", "inverse")
    assert_remote(raised(pool.apply, w.raise_key_error, ("missing",)), KeyError, "'missing'",
                  "raise_key_error")
    # bad arguments are found when the worker calls the function, i.e. by get()
    r = pool.apply_async(abs, 5)
    assert_exc(raised(r.get, TIMEOUT), TypeError, "abs() argument after * must be an iterable, not int")
    assert_exc(raised(pool.apply, pow, (1,)), TypeError, "pow() missing required argument 'exp' (pos 2)")
    assert_exc(raised(pool.apply, w.keyword_func, (), {"d": 1}), TypeError,
               "keyword_func() got an unexpected keyword argument 'd'")
    # the pool keeps working after failed tasks
    assert bounded(pool.apply, w.square, (6,)) == 36


# --------------------------------------------------------------------------
# AsyncResult


def test_async_result_before_and_after_ready(pool, gates):
    gate = gates()
    r = pool.apply_async(w.hold, gate.args("done"))
    gate.wait_started()
    assert r.ready() is False
    assert_timeout_error(raised(r.get, SHORT))
    assert_timeout_error(raised(r.get, 0))
    assert r.wait(SHORT) is None
    assert r.wait(0) is None
    assert r.ready() is False
    assert_exc(raised(r.successful), ValueError, f"{r!r} not ready")
    gate.release()
    assert r.wait(TIMEOUT) is None
    assert r.ready() is True
    assert r.successful() is True
    assert r.get(TIMEOUT) == "done"
    assert r.get(0) == "done"
    assert r.get() == "done"
    assert r.wait() is None


def test_map_async_result_before_and_after_ready(pool, gates):
    gate = gates()
    # items other than 3 do not wait: their go file (os.devnull) exists
    args = [gate.args(i) if i == 3 else (i, os.devnull, os.devnull) for i in range(6)]
    r = pool.starmap_async(w.hold, args, chunksize=1)
    gate.wait_started()
    assert r.ready() is False
    assert_timeout_error(raised(r.get, SHORT))
    assert r.wait(SHORT) is None
    assert_exc(raised(r.successful), ValueError, f"{r!r} not ready")
    gate.release()
    assert r.get(TIMEOUT) == [0, 1, 2, 3, 4, 5]
    assert r.ready() is True and r.successful() is True
    assert r.wait(0) is None


def test_timeout_error_is_multiprocessing_timeout_error():
    assert multiprocessing.TimeoutError is std_pool.TimeoutError
    if TressPool is not None:
        import tress.pool

        assert tress.pool.TimeoutError is multiprocessing.TimeoutError


# --------------------------------------------------------------------------
# map / map_async / starmap / starmap_async


CHUNKSIZES = [None, 1, 2, 3, 7, 100]


@pytest.mark.parametrize("chunksize", CHUNKSIZES)
def test_map_results_in_order(pool, chunksize):
    assert bounded(pool.map, w.square, range(100), chunksize) == [x * x for x in range(100)]
    assert bounded(pool.map, w.square, gen(range(37)), chunksize) == [x * x for x in range(37)]
    assert bounded(pool.map, str.upper, "abc", chunksize) == ["A", "B", "C"]
    assert bounded(pool.map, w.square, [5], chunksize) == [25]
    assert pool.map_async(w.square, range(50), chunksize).get(TIMEOUT) == [x * x for x in range(50)]
    assert pool.map_async(w.square, gen(range(9)), chunksize).get(TIMEOUT) == [x * x for x in range(9)]


@pytest.mark.parametrize("chunksize", CHUNKSIZES)
def test_starmap_results_in_order(pool, chunksize):
    args = [(x, 2) for x in range(60)]
    assert bounded(pool.starmap, pow, args, chunksize) == [x * x for x in range(60)]
    assert bounded(pool.starmap, pow, gen(args), chunksize) == [x * x for x in range(60)]
    assert bounded(pool.starmap, w.keyword_func, [[1], (2, 3), iter((4, 5))], chunksize) == [
        (1, 0, 0), (2, 3, 0), (4, 5, 0)]
    r = pool.starmap_async(pow, gen([(2, 5), (3, 3)]), chunksize)
    assert r.get(TIMEOUT) == [32, 27]


def test_map_spreads_over_the_workers(pools, gates):
    # two held tasks of one map run at once, in two different workers
    pool = pools(2)
    g0, g1 = gates(), gates()
    r = pool.starmap_async(w.hold, [g0.args(0), g1.args(1)], chunksize=1)
    assert g0.wait_started() != g1.wait_started()
    g0.release()
    g1.release()
    assert r.get(TIMEOUT) == [0, 1]


def test_empty_iterables(pool):
    for chunksize in (None, 1, 5):
        assert bounded(pool.map, w.square, [], chunksize) == []
        assert bounded(pool.map, w.square, gen([]), chunksize) == []
        assert bounded(pool.starmap, pow, [], chunksize) == []
        assert bounded(pool.starmap, pow, gen([]), chunksize) == []
        r = pool.map_async(w.square, [], chunksize)
        assert r.get(TIMEOUT) == [] and r.ready() is True and r.successful() is True
        assert pool.starmap_async(pow, gen([]), chunksize).get(TIMEOUT) == []
    for chunksize in (1, 4):
        assert drain(pool.imap(w.square, [], chunksize)) == []
        assert drain(pool.imap(w.square, gen([]), chunksize)) == []
        assert drain(pool.imap_unordered(w.square, [], chunksize)) == []
        assert drain(pool.imap_unordered(w.square, gen([]), chunksize)) == []


def test_map_results_in_order_when_finishing_in_reverse(pool, gates):
    g0, g1 = gates(), gates()
    r = pool.starmap_async(w.hold, [g0.args("first"), g1.args("second")], chunksize=1)
    g0.wait_started()
    g1.wait_started()
    g1.release()
    assert_timeout_error(raised(r.get, 0.2))  # the second is done, the first is held
    assert r.ready() is False
    g0.release()
    assert r.get(TIMEOUT) == ["first", "second"]


def test_map_async_callback_gets_the_whole_list_once(pools):
    pool = pools(2)
    cb, ecb = Recorder(), Recorder()
    r = pool.map_async(w.square, range(20), 3, callback=cb, error_callback=ecb)
    assert r.get(TIMEOUT) == [x * x for x in range(20)]
    assert cb.values == [[x * x for x in range(20)]]
    assert cb.calls[0][1] != threading.get_ident()
    cb2 = Recorder()
    r2 = pool.starmap_async(pow, [(2, 3), (3, 2)], callback=cb2, error_callback=ecb)
    assert cb2.called.wait(TIMEOUT)  # without calling get()
    assert cb2.values == [[8, 9]] and cb2.calls[0][1] != threading.get_ident()
    assert r2.get(TIMEOUT) == [8, 9]
    pool.close()
    bounded(pool.join)
    assert len(cb.calls) == 1 and len(cb2.calls) == 1 and ecb.calls == []


@pytest.mark.parametrize("chunksize", [None, 1, 5, 100])
def test_map_exception_propagates(pool, chunksize):
    exc = raised(pool.map, w.fail_at_13, range(40), chunksize)
    assert_remote(exc, ValueError, "bad 13", "fail_at_13")
    exc = raised(pool.starmap, w.add, [(x, "x" if x == 13 else 0) for x in range(40)], chunksize)
    assert_remote(exc, TypeError, "unsupported operand type(s) for +: 'int' and 'str'", "add")
    cb, ecb = Recorder(), Recorder()
    r = pool.map_async(w.fail_at_13, range(40), chunksize, callback=cb, error_callback=ecb)
    exc = raised(r.get, TIMEOUT)
    assert_remote(exc, ValueError, "bad 13", "fail_at_13")
    assert r.ready() is True and r.successful() is False
    assert cb.calls == [] and len(ecb.calls) == 1 and ecb.calls[0][0] is exc
    assert ecb.calls[0][1] != threading.get_ident()
    cb2, ecb2 = Recorder(), Recorder()
    r2 = pool.starmap_async(pow, [(1, 2), (0, -1)], chunksize, callback=cb2, error_callback=ecb2)
    exc2 = raised(r2.get, TIMEOUT)
    assert_exc(exc2, ZeroDivisionError, "0.0 cannot be raised to a negative power")
    assert cb2.calls == [] and len(ecb2.calls) == 1 and ecb2.calls[0][0] is exc2


def test_map_first_exception_wins_with_one_worker(pool1):
    exc = raised(pool1.map, w.inverse, [1, "a", 0, "b"], 1)
    assert_exc(exc, TypeError, "unsupported operand type(s) for /: 'int' and 'str'")
    ecb = Recorder()
    r = pool1.map_async(w.inverse, [1, 0, "a"], 1, error_callback=ecb)
    assert_exc(raised(r.get, TIMEOUT), ZeroDivisionError, "division by zero")
    assert len(ecb.calls) == 1 and ecb.calls[0][0] is raised(r.get, TIMEOUT)


def test_failed_map_is_ready_only_when_every_chunk_is_done(pool, gates):
    gate = gates()
    ecb = Recorder()
    r = pool.starmap_async(w.fail_or_hold, [("fail", "", ""), gate.args("held")], chunksize=1,
                           error_callback=ecb)
    gate.wait_started()
    assert r.ready() is False
    assert_timeout_error(raised(r.get, SHORT))
    assert ecb.calls == []
    gate.release()
    exc = raised(r.get, TIMEOUT)
    assert_remote(exc, RuntimeError, "failed early", "fail_or_hold")
    assert len(ecb.calls) == 1 and ecb.calls[0][0] is exc


def test_map_iterable_errors_are_raised_by_the_call(pool):
    assert_exc(raised(pool.map, abs, 5), TypeError, "'int' object is not iterable")
    assert_exc(raised(pool.map_async, abs, 5), TypeError, "'int' object is not iterable")
    assert_exc(raised(pool.starmap, pow, 5), TypeError, "'int' object is not iterable")
    assert_exc(raised(pool.starmap_async, pow, None), TypeError, "'NoneType' object is not iterable")
    # a generator failing part-way: map lists it in the caller, so map raises
    assert_exc(raised(pool.map, w.square, failing_gen([1, 2, 3], KeyError("gen"))), KeyError, "'gen'")
    assert_exc(raised(pool.map_async, w.square, failing_gen([1, 2], OSError("disk"))), OSError, "disk")
    # an item that is not an argument tuple fails in the worker
    assert_exc(raised(pool.starmap, pow, [1, 2]), TypeError, "'int' object is not iterable")
    assert_exc(raised(pool.starmap, pow, [(1,)]), TypeError, "pow() missing required argument 'exp' (pos 2)")
    assert bounded(pool.map, w.square, [3]) == [9]


# --------------------------------------------------------------------------
# imap / imap_unordered


@pytest.mark.parametrize("chunksize", [1, 2, 5, 100])
def test_imap_results(pool, chunksize):
    expect = [x * x for x in range(120)]
    assert drain(pool.imap(w.square, range(120), chunksize)) == expect
    assert drain(pool.imap(w.square, gen(range(120)), chunksize)) == expect
    got = drain(pool.imap_unordered(w.square, range(120), chunksize))
    assert sorted(got) == expect and len(got) == len(expect)
    got = drain(pool.imap_unordered(w.square, gen(range(120)), chunksize))
    assert sorted(got) == expect and len(got) == len(expect)
    assert drain(pool.imap(str.upper, "ab", chunksize)) == ["A", "B"]
    assert drain(pool.imap(w.square, [4], chunksize=chunksize)) == [16]


def test_imap_iterator_protocol_and_next_timeout(pool, gates):
    for method in ("imap", "imap_unordered"):
        gate = gates()
        it = getattr(pool, method)(w.hold_one, [gate.args(42)])
        assert iter(it) is it
        gate.wait_started()
        assert_timeout_error(raised(it.next, SHORT))
        assert_timeout_error(raised(it.next, 0))
        gate.release()
        assert it.next(TIMEOUT) == 42
        with pytest.raises(StopIteration):
            it.next(TIMEOUT)
        with pytest.raises(StopIteration):
            next(it)
        assert bounded(list, it) == []


def test_imap_streams_results_in_order(pool, gates):
    g0, g1 = gates(), gates()
    it = pool.imap(w.hold_one, [g0.args(0), g1.args(1), (2, os.devnull, os.devnull)])
    g0.wait_started()
    g1.wait_started()
    g0.release()
    assert it.next(TIMEOUT) == 0  # while 1 is still held
    assert_timeout_error(raised(it.next, 0.2))  # 2 may be done, 1 is held
    g1.release()
    assert [it.next(TIMEOUT) for _ in range(2)] == [1, 2]
    with pytest.raises(StopIteration):
        it.next(TIMEOUT)


def test_imap_unordered_yields_in_completion_order(pool, gates):
    g0, g1 = gates(), gates()
    it = pool.imap_unordered(w.hold_one, [g0.args(0), g1.args(1)])
    g0.wait_started()
    g1.wait_started()
    g1.release()
    assert it.next(TIMEOUT) == 1  # the only item that can finish
    g0.release()
    assert it.next(TIMEOUT) == 0
    with pytest.raises(StopIteration):
        it.next(TIMEOUT)


def test_imap_failed_item_then_iteration_goes_on(pool):
    zde = ("raise", ZeroDivisionError, "division by zero")
    assert drain(pool.imap(w.inverse, [1, 0, 2, 0, 4])) == [1.0, zde, 0.5, zde, 0.25]
    got = drain(pool.imap_unordered(w.inverse, [1, 0, 2, 0, 4]))
    assert sorted(x for x in got if x != zde) == [0.25, 0.5, 1.0]
    assert got.count(zde) == 2 and len(got) == 5


def test_imap_failure_carries_the_remote_traceback(pool):
    it = pool.imap(w.fail_at_13, [12, 13, 14])
    assert bounded(next, it) == 120
    assert_remote(raised(next, it), ValueError, "bad 13", "fail_at_13")
    assert bounded(next, it) == 140


def test_imap_chunked_failed_chunk_ends_the_iteration(pool1):
    # one worker: chunks finish in order, also for imap_unordered
    for method in ("imap", "imap_unordered"):
        it = getattr(pool1, method)(w.inverse, [1, 2, 0, 4, 5, 8], 2)
        assert bounded(next, it) == 1.0
        assert bounded(next, it) == 0.5
        assert_exc(raised(next, it), ZeroDivisionError, "division by zero")
        with pytest.raises(StopIteration):
            bounded(next, it)


def test_imap_iterable_errors_are_raised_by_next(pool):
    for method in ("imap", "imap_unordered"):
        imap = getattr(pool, method)
        # the iterable is only iterated by the pool: the call itself returns
        it = imap(abs, 5)
        assert_exc(raised(next, it), TypeError, "'int' object is not iterable")
        with pytest.raises(StopIteration):
            bounded(next, it)
        got = drain(imap(w.square, failing_gen([1, 2, 3], KeyError("gen"))))
        err = ("raise", KeyError, "'gen'")
        if method == "imap":
            assert got == [1, 4, 9, err]
        else:
            assert got.count(err) == 1 and sorted(x for x in got if x != err) == [1, 4, 9]
        # chunked: the error ends the iteration, after a prefix of the results
        it = imap(w.square, failing_gen([1, 2, 3], KeyError("gen2")), 2)
        got = []
        with pytest.raises(KeyError) as info:
            while True:
                got.append(bounded(next, it))
        assert str(info.value) == "'gen2'"
        assert set(got) <= {1, 4, 9}
        with pytest.raises(StopIteration):
            bounded(next, it)


def test_imap_returns_while_the_iterable_is_still_producing(pool):
    # The input is iterated by a thread of the pool: imap() returns at once
    # and results stream while a generator is still producing.
    for method in ("imap", "imap_unordered"):
        more = threading.Event()

        def produce(more=more):
            yield 1
            more.wait(TIMEOUT)  # set by the consumer once it has the first result
            yield 2

        try:
            it = bounded(getattr(pool, method), w.square, produce(), timeout=10.0)
            assert it.next(TIMEOUT) == 1
        finally:
            more.set()
        assert it.next(TIMEOUT) == 4
        with pytest.raises(StopIteration):
            it.next(TIMEOUT)


@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
@pytest.mark.parametrize("chunksize", [0, -1, -7])
def test_imap_chunksize_below_one_is_rejected(pool, method, chunksize):
    exc = raised(getattr(pool, method), abs, [1, 2], chunksize)
    assert_exc(exc, ValueError, f"Chunksize must be 1+, not {chunksize}")


# --------------------------------------------------------------------------
# what cannot be pickled, and what is large

LOCK_ERROR = "cannot pickle '_thread.lock' object"


def test_unpicklable_argument_fails_that_task(pool):
    # apply_async returns: the pickling error is that task's result
    r = bounded(pool.apply_async, w.identity, (threading.Lock(),))
    assert_exc(raised(r.get, TIMEOUT), TypeError, LOCK_ERROR)
    assert r.ready() is True and r.successful() is False
    assert_exc(raised(pool.apply, w.identity, (threading.Lock(),)), TypeError, LOCK_ERROR)
    assert_exc(raised(pool.apply, w.keyword_func, (1,), {"b": threading.Lock()}), TypeError, LOCK_ERROR)
    ecb = Recorder()
    r = pool.apply_async(w.identity, (threading.Lock(),), error_callback=ecb)
    exc = raised(r.get, TIMEOUT)
    assert len(ecb.calls) == 1 and ecb.calls[0][0] is exc
    # a map fails as a whole (its chunk failed), an imap item alone
    assert_exc(raised(pool.map, w.identity, [1, threading.Lock(), 3], 1), TypeError, LOCK_ERROR)
    assert_exc(raised(pool.map_async(w.identity, [1, threading.Lock(), 3]).get, TIMEOUT),
               TypeError, LOCK_ERROR)
    assert drain(pool.imap(w.identity, [1, threading.Lock(), 3])) == [
        1, ("raise", TypeError, LOCK_ERROR), 3]
    got = drain(pool.imap_unordered(w.identity, [1, threading.Lock(), 3]))
    assert sorted(x for x in got if isinstance(x, int)) == [1, 3]
    assert got.count(("raise", TypeError, LOCK_ERROR)) == 1 and len(got) == 3
    # the pool goes on
    assert bounded(pool.map, w.square, range(10)) == [x * x for x in range(10)]


def encoding_error(value_repr, tag):
    reason = repr(TypeError(f"Unpicklable({tag!r}) refuses to be pickled"))
    return f"Error sending result: '{value_repr}'. Reason: '{reason}'"


def test_unpicklable_result_fails_that_task_with_maybe_encoding_error(pool):
    mee = std_pool.MaybeEncodingError
    exc = raised(pool.apply, w.unpicklable_result, ("t",))
    assert_exc(exc, mee, encoding_error("Unpicklable('t')", "t"))
    ecb = Recorder()
    r = pool.apply_async(w.unpicklable_result, ("u",), error_callback=ecb)
    exc = raised(r.get, TIMEOUT)
    assert_exc(exc, mee, encoding_error("Unpicklable('u')", "u"))
    assert len(ecb.calls) == 1 and ecb.calls[0][0] is exc
    # map: the value is the failed chunk's list
    args = [(x, 3) for x in range(6)]
    exc = raised(pool.starmap, w.unpicklable_result_at, args, 1)
    assert_exc(exc, mee, encoding_error("[Unpicklable(3)]", 3))
    exc = raised(pool.starmap, w.unpicklable_result_at, args, 2)
    assert_exc(exc, mee, encoding_error("[4, Unpicklable(3)]", 3))
    # chunksize=None: multiprocessing's automatic chunks (40 items on two
    # workers: chunks of 5), seen in the failed chunk's value
    args = [(x, 5) for x in range(40)]
    exc = raised(pool.starmap, w.unpicklable_result_at, args)
    assert_exc(exc, mee, encoding_error("[Unpicklable(5), 36, 49, 64, 81]", 5))
    args = [(x, 30) for x in range(100)]  # chunks of 13: 26..38
    exc = raised(pool.starmap_async(w.unpicklable_result_at, args).get, TIMEOUT)
    chunk = ", ".join("Unpicklable(30)" if x == 30 else str(x * x) for x in range(26, 39))
    assert_exc(exc, mee, encoding_error(f"[{chunk}]", 30))
    # imap with chunksize 1: the item's own value, the other items come
    got = drain(pool.imap(w.unpicklable_result, ["a"]))
    assert got == [("raise", mee, encoding_error("Unpicklable('a')", "a"))]
    assert bounded(pool.map, w.square, range(10)) == [x * x for x in range(10)]


LARGE = 24 << 20  # bytes: larger than any shared ring of a few MiB


def test_large_arguments_and_results(pool):
    big = bytes(range(256)) * (LARGE // 256)
    assert bounded(pool.apply, len, (big,)) == LARGE
    assert bounded(pool.apply, w.identity, (big,)) == big
    got = bounded(pool.apply, w.make_bytes, (LARGE,))
    assert len(got) == LARGE and got == b"r" * LARGE
    assert bounded(pool.map, len, [big[:LARGE // 2], b"", big]) == [LARGE // 2, 0, LARGE]
    assert [len(x) for x in drain(pool.imap(w.make_bytes, [LARGE, 3]))] == [LARGE, 3]
    assert bounded(pool.apply, w.square, (7,)) == 49


# --------------------------------------------------------------------------
# close / terminate / join / context manager


SUBMITTERS = {
    "apply": lambda p: p.apply(w.square, (2,)),
    "apply_async": lambda p: p.apply_async(w.square, (2,)),
    "map": lambda p: p.map(w.square, [1, 2]),
    "map_async": lambda p: p.map_async(w.square, [1, 2]),
    "map_empty": lambda p: p.map(w.square, []),
    "starmap": lambda p: p.starmap(pow, [(1, 2)]),
    "starmap_async": lambda p: p.starmap_async(pow, [(1, 2)]),
    "imap": lambda p: p.imap(w.square, [1, 2]),
    "imap_chunked": lambda p: p.imap(w.square, [1, 2], 2),
    "imap_unordered": lambda p: p.imap_unordered(w.square, [1, 2]),
    "imap_unordered_chunked": lambda p: p.imap_unordered(w.square, [1, 2], 2),
    "enter": lambda p: p.__enter__(),
}


@pytest.mark.parametrize("stop", ["close", "terminate", "close+join", "terminate+join"])
def test_submit_after_stop_raises_pool_not_running(pools, stop):
    pool = pools(2)
    for step in stop.split("+"):
        bounded(getattr(pool, step))
    wrong = {}
    for name, submit in SUBMITTERS.items():
        exc = raised(submit, pool)
        if type(exc) is not ValueError or str(exc) != "Pool not running":
            wrong[name] = exc
    assert wrong == {}


def test_join_while_running_raises(pool):
    assert_exc(raised(pool.join), ValueError, "Pool is still running")
    assert bounded(pool.apply, w.square, (3,)) == 9  # still usable


def test_close_lets_outstanding_work_finish_and_join_waits_for_it(pools, gates):
    pool = pools(2)
    gate = gates()
    cb = Recorder()
    first = pool.apply_async(w.hold, gate.args("held"), callback=cb)
    gate.wait_started()
    rs = [pool.apply_async(w.square, (i,)) for i in range(30)]
    m = pool.map_async(w.square, range(40), 3)
    it = pool.imap(w.square, range(25))
    itu = pool.imap_unordered(w.square, range(25), 4)
    pool.close()
    pool.close()  # idempotent
    joiner = threading.Thread(target=pool.join, name="joiner", daemon=True)
    joiner.start()
    joiner.join(0.2)
    assert joiner.is_alive(), "join() returned while a task was still running"
    assert first.ready() is False
    gate.release()
    joiner.join(TIMEOUT)
    assert not joiner.is_alive(), "join() did not return after the work finished"
    # join returned: every result was delivered, callbacks included
    assert first.ready() and all(r.ready() for r in rs) and m.ready()
    assert cb.values == ["held"]
    assert first.get(0) == "held"
    assert [r.get(0) for r in rs] == [i * i for i in range(30)]
    assert m.get(0) == [i * i for i in range(40)]
    assert drain(it) == [i * i for i in range(25)]
    assert sorted(drain(itu)) == [i * i for i in range(25)]
    bounded(pool.join)  # joining again is fine


def test_close_right_after_submitting_runs_every_task(pools):
    # tasks still queued when close() is called all run before join() returns
    for _ in range(3):
        pool = pools(2)
        rs = [pool.apply_async(w.square, (i,)) for i in range(50)]
        m = pool.map_async(w.square, range(100), 5)
        pool.close()
        bounded(pool.join)
        assert all(r.ready() for r in rs) and m.ready()
        outcomes = [(r.successful(), r.get(0) if r.successful() else repr(raised(r.get, 0)))
                    for r in rs]
        assert outcomes == [(True, i * i) for i in range(50)]
        assert m.get(0) == [x * x for x in range(100)]


def test_join_after_close_leaves_no_worker(pools):
    before = w.child_pids()
    pool = pools(3)
    assert bounded(pool.map, w.pid, range(30), 1)
    workers = w.new_children(before)
    assert len(workers) >= 3, workers
    idents = [w.identity_of(pid) for pid in workers]
    pool.close()
    bounded(pool.join)
    # join returns once the workers have exited, and they are reaped
    assert w.child_pids() & workers == set()
    assert not any(i is not None and w.running(i) for i in idents)


def assert_dropped(impl, results):
    """The results a terminate() left unfinished: multiprocessing's wait
    forever (get(0) times out); tress's fail with BrokenProcessPool (its
    documented difference: a get() after terminate does not hang)."""
    for r in results:
        if impl is std_pool.Pool:
            assert r.ready() is False
            assert_timeout_error(raised(r.get, 0))
        else:
            assert r.wait(TIMEOUT) is None and r.ready() is True
            assert r.successful() is False
            exc = raised(r.get, 0)
            assert isinstance(exc, BrokenProcessPool), repr(exc)


def test_terminate_drops_queued_work(impl, pools, gates, tmp_path):
    pool = pools(1)
    gate = gates()
    running = pool.apply_async(w.hold, gate.args("held"))
    gate.wait_started()
    queued = [pool.apply_async(w.record, (i, str(tmp_path))) for i in range(20)]
    queued_map = pool.starmap_async(w.record, [(i, str(tmp_path)) for i in range(20, 40)], 1)
    # terminate returns without waiting for the running task
    bounded(pool.terminate, timeout=10.0)
    gate.release()
    bounded(pool.join)
    assert ran_files(tmp_path) == [], "queued tasks ran after terminate()"
    # the running task's worker was terminated: its result never came
    assert_dropped(impl, [running, *queued, queued_map])


def test_terminate_while_tasks_run_ends_the_workers(pools, gates):
    before = w.child_pids()
    pool = pools(2)
    g0, g1 = gates(), gates()
    pool.starmap_async(w.hold, [g0.args(0), g1.args(1)], 1)
    workers = {g0.wait_started(), g1.wait_started()}
    assert len(workers) == 2
    assert workers <= w.child_pids() - before
    idents = [w.identity_of(pid) for pid in workers]
    start = time.monotonic()
    bounded(pool.terminate, timeout=10.0)
    bounded(pool.join, timeout=10.0)
    assert time.monotonic() - start < 10.0
    assert not any(i is not None and w.running(i) for i in idents), "held workers still running"


def test_stop_calls_are_idempotent_in_any_order(pools):
    pool = pools(2)
    assert bounded(pool.apply, w.square, (2,)) == 4
    pool.close()
    pool.close()
    bounded(pool.join)
    bounded(pool.join)
    bounded(pool.terminate)
    bounded(pool.terminate)
    pool.close()
    bounded(pool.join)

    pool = pools(2)
    bounded(pool.terminate)
    pool.close()
    bounded(pool.terminate)
    bounded(pool.join)


def test_context_manager_returns_the_pool_and_terminates_on_exit(impl, pools, gates, tmp_path):
    pool = pools(1)
    gate = gates()

    def body():
        with pool as entered:
            assert entered is pool
            assert entered.apply(w.square, (7,)) == 49
            held = entered.apply_async(w.hold, gate.args("held"))
            gate.wait_started()
            queued = [entered.apply_async(w.record, (i, str(tmp_path))) for i in range(10)]
        return held, queued

    # leaving the block terminates: it does not wait for the running task
    held, queued = bounded(body, timeout=10.0)
    assert_exc(raised(pool.apply_async, w.square, (1,)), ValueError, "Pool not running")
    gate.release()
    bounded(pool.join)
    assert ran_files(tmp_path) == [], "queued tasks ran after the with block terminated the pool"
    assert_dropped(impl, [held, *queued])


def test_context_manager_does_not_swallow_exceptions(pools):
    pool = pools(2)

    def body():
        with pool:
            assert pool.apply(w.square, (2,)) == 4
            raise LookupError("inside")

    assert_exc(raised(body), LookupError, "inside")
    assert_exc(raised(pool.map, w.square, [1]), ValueError, "Pool not running")
    bounded(pool.join)


UNCLOSED_POOL_CHILD = r"""
import glob, importlib, os, sys
import _pool_workers as w
mod, name = sys.argv[1].rsplit(".", 1)
Pool = getattr(importlib.import_module(mod), name)
pool = Pool(2)
print(pool.apply(pow, (2, 5)), flush=True)
pool.apply_async(w.sleep_for, (600,))  # never finishes
pool.apply_async(w.sleep_for, (600,))
print(*sorted(w.child_pids()), flush=True)
print("exiting", flush=True)
"""


def test_interpreter_exits_with_an_unclosed_pool_and_running_tasks(impl, run_python):
    name = "multiprocessing.pool.Pool" if impl is std_pool.Pool else "tress.pool.Pool"
    start = time.monotonic()
    proc = run_python(UNCLOSED_POOL_CHILD, name, timeout=30.0, env=w.child_env())
    assert time.monotonic() - start < 30.0
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "32" and lines[-1] == "exiting", proc.stdout + proc.stderr
    workers = [int(x) for x in lines[1].split()]
    assert len(workers) >= 2, lines
    deadline = time.monotonic() + 10.0
    while True:
        alive = [p for p in workers if w.state_of(w.identity_of(p) or (p, 0)) not in (None, "Z")]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert alive == [], f"workers of the exited interpreter still running: {alive}"


# --------------------------------------------------------------------------
# concurrency and volume


def test_many_submitting_threads(pool):
    errors = []

    def submitter(k):
        try:
            rs = [pool.apply_async(pow, (k, i)) for i in range(100)]
            m = pool.map_async(w.square, range(k, k + 300), 7)
            assert [r.get(TIMEOUT) for r in rs] == [k ** i for i in range(100)]
            assert m.get(TIMEOUT) == [x * x for x in range(k, k + 300)]
            it = pool.imap(w.square, range(k, k + 50))
            assert [it.next(TIMEOUT) for _ in range(50)] == [x * x for x in range(k, k + 50)]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=submitter, args=(k,), name=f"submitter-{k}", daemon=True)
               for k in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + TIMEOUT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "submitters did not finish"
    assert errors == []


def test_volume_every_result_present(pool):
    n = 100_000
    expect = list(range(n, 0, -1))
    assert bounded(pool.map, abs, range(-n, 0)) == expect
    got = bounded(lambda: list(pool.imap_unordered(abs, range(-n, 0), 64)))
    assert len(got) == n and sorted(got) == list(range(1, n + 1))
    assert bounded(lambda: list(pool.imap(abs, range(-n, 0), 100))) == expect
    m = 10_000
    assert bounded(lambda: list(pool.imap(abs, range(-m, 0)))) == list(range(m, 0, -1))


@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_close_while_imap_input_is_still_produced_loses_nothing(pools, method):
    """close() and join() while the input generator has not ended yet: every
    call of the imap still runs and its result comes out."""
    more = threading.Event()

    def producer():
        yield 0
        more.wait(TIMEOUT)
        yield 1
        yield 2

    pool = pools(1)
    try:
        it = getattr(pool, method)(w.square, producer())
        pool.close()
    finally:
        more.set()
    bounded(pool.join)
    assert sorted(drain(it)) == [0, 1, 4]


# --------------------------------------------------------------------------
# other start methods (explicit context=)


@pytest.fixture(scope="module", params=["fork", "spawn", "forkserver"])
def method(request):
    return request.param


@pytest.fixture(scope="module")
def ctx_pool(impl, method):
    """A shared pool of two workers per implementation and start method."""
    p = _shared(impl, 2, context=multiprocessing.get_context(method))
    yield p
    w.stop(p)


class TestStartMethods:
    def test_apply_map_imap(self, ctx_pool):
        pool = ctx_pool
        assert bounded(pool.apply, w.keyword_func, (1,), {"c": 2}) == (1, 0, 2)
        assert pool.apply_async(pow, (2, 8)).get(TIMEOUT) == 256
        assert bounded(pool.map, w.square, range(50)) == [x * x for x in range(50)]
        assert bounded(pool.map, w.square, range(50), 1) == [x * x for x in range(50)]
        assert bounded(pool.starmap, w.add, [(1, 2), (3, 4)]) == [3, 7]
        assert drain(pool.imap(w.square, range(20))) == [x * x for x in range(20)]
        assert sorted(drain(pool.imap_unordered(w.square, range(20), 3))) == [x * x for x in range(20)]
        worker = bounded(pool.apply, w.pid)
        assert worker != os.getpid()

    def test_exceptions_keep_type_and_remote_traceback(self, ctx_pool):
        pool = ctx_pool
        assert_remote(raised(pool.apply, w.raise_custom, ("spawned",)), w.CustomError, "spawned",
                      "raise_custom")
        assert_remote(raised(pool.map, w.fail_at_13, range(20), 4), ValueError, "bad 13", "fail_at_13")
        assert drain(pool.imap(w.inverse, [2, 0])) == [0.5, ("raise", ZeroDivisionError,
                                                            "division by zero")]

    def test_unpicklable_argument_and_result(self, ctx_pool):
        pool = ctx_pool
        assert_exc(raised(pool.apply, w.identity, (threading.Lock(),)), TypeError, LOCK_ERROR)
        assert_exc(raised(pool.apply, w.unpicklable_result, ("s",)), std_pool.MaybeEncodingError,
                   encoding_error("Unpicklable('s')", "s"))
        assert bounded(pool.apply, w.square, (9,)) == 81

    def test_workers_and_initializer(self, impl, method, gates):
        p = Pools(impl)
        try:
            census(p, multiprocessing.get_context(method), 2, 2)
        finally:
            p.cleanup()

    def test_close_join_and_context_manager(self, impl, method):
        ctx = multiprocessing.get_context(method)
        p = Pools(impl)
        try:
            pool = p(2, context=ctx)
            r = pool.map_async(w.square, range(10))
            pool.close()
            bounded(pool.join)
            assert r.get(0) == [x * x for x in range(10)]
            assert_exc(raised(pool.apply, w.square, (1,)), ValueError, "Pool not running")

            def body():
                with p(1, context=ctx) as pool2:
                    return pool2, pool2.apply(w.square, (5,))

            pool2, value = bounded(body)
            assert value == 25
            assert_exc(raised(pool2.apply, w.square, (1,)), ValueError, "Pool not running")
            bounded(pool2.join)
        finally:
            p.cleanup()
