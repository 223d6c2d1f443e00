"""Contract of ``tress.pool.ThreadPool`` as a drop-in for
``multiprocessing.pool.ThreadPool(processes=None, initializer=None,
initargs=())``.

Every test runs on both classes (the ``pool_cls`` fixture; the tress param is
skipped with the import error as the reason while ``tress.pool`` does not
import) and asserts literal results and exceptions (type *and* message) that
the stdlib run pins to CPython 3.11: apply / apply_async (callback and
error_callback called once, with the right value, from a pool thread),
map / map_async / starmap / starmap_async / imap / imap_unordered over lists,
generators and empty iterables with various chunksizes, exceptions from the
function or from the iterable, AsyncResult get(timeout) / wait / ready /
successful, close / terminate / join / context manager, constructor errors,
worker count and initializer, and a 200k-item stress run.

No sleep-and-hope: a task that must still be running while something is
checked waits on an Event that the test sets; every blocking call without a
timeout parameter (apply, map, join, iteration of a chunked imap, ...) runs
through ``bounded`` so that a hang fails the test instead of the session.
``bounded`` and the other helpers are those of the process-pool tests
(``_pool_workers``).
"""

import _thread
import gc
import multiprocessing
import multiprocessing.pool as std_pool
import os
import pickle
import threading
import time
import warnings

import _pool_workers
import pytest
from _pool_workers import (TIMEOUT, Recorder, assert_exc, assert_timeout_error, bounded, drain,
                           failing_gen, gen, inverse, keyword_func, raised, square)

try:
    import tress.pool as tress_pool
except Exception as exc:  # noqa: BLE001 - ImportError, or a broken build
    tress_pool = None
    IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

SHORT = 0.05  # a wait that is expected to time out (the task is held by an Event)


@pytest.fixture(params=["multiprocessing.pool", "tress"])
def pool_cls(request):
    if request.param == "multiprocessing.pool":
        return std_pool.ThreadPool
    if tress_pool is None:
        pytest.skip(f"tress.pool is not importable ({IMPORT_ERROR})")
    return tress_pool.ThreadPool


# --------------------------------------------------------------------------
# helpers (bounded, raised, drain, Recorder, Pools ...: _pool_workers)


class Pools(_pool_workers.Pools):
    """Factory for pools and gate Events; at teardown sets every gate, then
    terminates and joins every pool (bounded), so nothing is left running."""

    def __init__(self, cls):
        super().__init__(cls)
        self.events = []

    def event(self):
        ev = threading.Event()
        self.events.append(ev)
        return ev

    def cleanup(self):
        for ev in self.events:
            ev.set()
        super().cleanup()


@pytest.fixture
def pools(pool_cls):
    p = Pools(pool_cls)
    yield p
    p.cleanup()


def fail_at(bad):
    def f(x):
        if x == bad:
            raise ValueError(f"bad {x}")
        return x * 10

    return f


# --------------------------------------------------------------------------
# construction


def test_constructor_signature(pools):
    p = pools(processes=2, initializer=None, initargs=())
    assert bounded(p.apply, square, (3,)) == 9
    p = pools(2, None, ())
    assert bounded(p.apply, square, (4,)) == 16
    p = pools()
    assert bounded(p.apply, square, (5,)) == 25


@pytest.mark.parametrize("processes", [0, -1, -100])
def test_processes_below_one_is_rejected(pool_cls, processes):
    exc = raised(pool_cls, processes)
    assert_exc(exc, ValueError, "Number of processes must be at least 1")


@pytest.mark.parametrize("initializer", [5, "init", (print,)])
def test_initializer_must_be_callable(pool_cls, initializer):
    exc = raised(pool_cls, 2, initializer)
    assert_exc(exc, TypeError, "initializer must be a callable")
    exc = raised(pool_cls, initializer=initializer)
    assert_exc(exc, TypeError, "initializer must be a callable")


def _worker_census(pools, processes, expect):
    """Pool of ``processes``: ``expect`` tasks meet at a Barrier (so that many
    workers run at once), the initializer ran exactly ``expect`` times, once in
    each worker thread, with initargs, before that thread's tasks."""
    lock = threading.Lock()
    inits = []
    local = threading.local()

    def init(tag, n):
        with lock:
            inits.append((threading.get_ident(), tag, n))
        local.tag = (tag, n)

    barrier = threading.Barrier(expect)

    def task(i):
        barrier.wait(TIMEOUT)
        return threading.get_ident(), getattr(local, "tag", None)

    pool = pools(processes, init, ("hello", 7))
    got = pool.map_async(task, range(expect), chunksize=1).get(TIMEOUT)
    more = pool.map_async(lambda i: (threading.get_ident(), getattr(local, "tag", None)),
                          range(200), chunksize=1).get(TIMEOUT)
    pool.close()
    bounded(pool.join)
    init_threads = [ident for ident, _, _ in inits]
    assert len(inits) == expect, inits
    assert len(set(init_threads)) == expect, "initializer ran twice in one thread"
    assert all((tag, n) == ("hello", 7) for _, tag, n in inits)
    assert len({ident for ident, _ in got}) == expect
    for ident, tag in got + more:
        assert ident in init_threads, "a task ran on a thread that did not run the initializer"
        assert tag == ("hello", 7), "initializer's thread-local state not seen by the task"


@pytest.mark.parametrize("processes", [1, 3])
def test_processes_workers_and_initializer_per_worker(pools, processes):
    _worker_census(pools, processes, processes)


def test_processes_none_means_cpu_count(pools):
    _worker_census(pools, None, os.cpu_count() or 1)


def test_pool_cannot_be_pickled(pools):
    pool = pools(1)
    exc = raised(pickle.dumps, pool)
    assert_exc(exc, NotImplementedError, "pool objects cannot be passed between processes or pickled")


# --------------------------------------------------------------------------
# apply / apply_async


def test_apply_args_and_kwds(pools):
    pool = pools(2)
    assert bounded(pool.apply, pow, (2, 10)) == 1024
    assert bounded(pool.apply, keyword_func, (1,)) == (1, 0, 0)
    assert bounded(pool.apply, keyword_func, [1, 2]) == (1, 2, 0)
    assert bounded(pool.apply, keyword_func, (1,), {"b": 3, "c": 4}) == (1, 3, 4)
    assert bounded(pool.apply, keyword_func, kwds={"a": 5}) == (5, 0, 0)
    caller, ran = bounded(lambda: (threading.get_ident(), pool.apply(threading.get_ident)))
    assert ran != caller, "apply runs the call on a pool thread, not the caller's"
    assert bounded(pool.apply, lambda: None) is None


def test_apply_async_args_and_kwds(pools):
    pool = pools(2)
    assert pool.apply_async(pow, (3, 4)).get(TIMEOUT) == 81
    assert pool.apply_async(keyword_func, (1,), {"c": 9}).get(TIMEOUT) == (1, 0, 9)
    assert pool.apply_async(keyword_func, kwds={"a": 2, "b": 3}).get(TIMEOUT) == (2, 3, 0)
    assert pool.apply_async(threading.get_ident).get(TIMEOUT) != threading.get_ident()


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


def test_apply_async_callback_runs_without_anyone_calling_get(pools):
    pool = pools(2)
    cb = Recorder()
    r = pool.apply_async(square, (12,), callback=cb)
    assert cb.called.wait(TIMEOUT), "callback not called"
    assert cb.values == [144]
    assert cb.calls[0][1] != threading.get_ident()
    assert r.get(TIMEOUT) == 144


def test_callbacks_run_one_at_a_time(pools):
    # The docs: "Callbacks should complete immediately since otherwise the
    # thread which handles the results will get blocked" -- callbacks run on
    # one results thread, so a callback never runs concurrently with another.
    pool = pools(2)
    in_first, release = pools.event(), pools.event()
    second_ran_func, second_called = threading.Event(), threading.Event()

    def first_cb(value):
        in_first.set()
        release.wait(TIMEOUT)

    a = pool.apply_async(square, (2,), callback=first_cb)
    assert in_first.wait(TIMEOUT)
    b = pool.apply_async(second_ran_func.set, callback=lambda v: second_called.set())
    assert second_ran_func.wait(TIMEOUT)  # the second task's function has returned
    assert not second_called.wait(0.5), "a callback ran while another callback was still running"
    release.set()
    assert second_called.wait(TIMEOUT)
    assert a.get(TIMEOUT) == 4 and b.get(TIMEOUT) is None


def test_one_worker_runs_tasks_in_submission_order(pools):
    pool = pools(1)
    order = []
    rs = [pool.apply_async(order.append, (0,)),
          pool.map_async(order.append, [1, 2, 3], 1),
          pool.apply_async(order.append, (4,)),
          pool.starmap_async(lambda a, b: order.append(a + b), [(5, 0), (6, 0)], 2)]
    it = pool.imap(order.append, [7, 8])
    rs.append(pool.apply_async(order.append, (9,)))
    for r in rs:
        r.get(TIMEOUT)
    assert drain(it) == [None, None]
    assert order == list(range(10))


def test_apply_async_error_callback_gets_the_raised_exception(pools):
    pool = pools(2)
    seen = []

    def boom(x):
        exc = ValueError(f"boom {x}")
        seen.append(exc)
        raise exc

    cb, ecb = Recorder(), Recorder()
    r = pool.apply_async(boom, (7,), callback=cb, error_callback=ecb)
    exc = raised(r.get, TIMEOUT)
    assert_exc(exc, ValueError, "boom 7")
    assert exc is seen[0], "get() must raise the very exception the function raised"
    assert len(ecb.calls) == 1 and ecb.calls[0][0] is seen[0]
    assert ecb.calls[0][1] != threading.get_ident(), "error_callback ran on the caller's thread"
    assert cb.calls == []
    assert r.ready() is True and r.successful() is False
    # get() again raises the same exception again
    assert raised(r.get, TIMEOUT) is seen[0]
    pool.close()
    bounded(pool.join)
    assert len(ecb.calls) == 1 and cb.calls == []


def test_exception_keeps_the_function_frame_in_its_traceback(pools):
    def fails():
        raise KeyError("missing")

    pool = pools(1)
    exc = raised(pool.apply, fails)
    assert_exc(exc, KeyError, "'missing'")
    names = []
    tb = exc.__traceback__
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert names[-1] == "fails", names


def test_apply_exceptions_propagate(pools):
    pool = pools(2)
    assert_exc(raised(pool.apply, inverse, (0,)), ZeroDivisionError, "division by zero")
    assert_exc(raised(pool.apply_async(inverse, (0,)).get, TIMEOUT),
               ZeroDivisionError, "division by zero")
    # bad arguments are found when the worker calls the function, i.e. by get()
    r = pool.apply_async(abs, 5)
    assert_exc(raised(r.get, TIMEOUT), TypeError, "abs() argument after * must be an iterable, not int")
    assert_exc(raised(pool.apply, pow, (1,)), TypeError, "pow() missing required argument 'exp' (pos 2)")
    # the pool keeps working after failed tasks
    assert bounded(pool.apply, square, (6,)) == 36


# --------------------------------------------------------------------------
# AsyncResult


def test_async_result_before_and_after_ready(pools):
    pool = pools(2)
    gate, started = pools.event(), pools.event()

    def held():
        started.set()
        gate.wait(TIMEOUT)
        return "done"

    r = pool.apply_async(held)
    assert started.wait(TIMEOUT)
    assert r.ready() is False
    assert_timeout_error(raised(r.get, SHORT))
    assert_timeout_error(raised(r.get, 0))
    assert r.wait(SHORT) is None
    assert r.wait(0) is None
    assert r.ready() is False
    exc = raised(r.successful)
    assert_exc(exc, ValueError, f"{r!r} not ready")
    gate.set()
    assert r.wait(TIMEOUT) is None
    assert r.ready() is True
    assert r.successful() is True
    assert r.get(TIMEOUT) == "done"
    assert r.get(0) == "done"
    assert r.get() == "done"
    assert r.wait() is None


def test_map_async_result_before_and_after_ready(pools):
    pool = pools(2)
    gate, started = pools.event(), pools.event()

    def f(x):
        if x == 3:
            started.set()
            gate.wait(TIMEOUT)
        return x + 1

    r = pool.map_async(f, range(6), chunksize=1)
    assert started.wait(TIMEOUT)
    assert r.ready() is False
    assert_timeout_error(raised(r.get, SHORT))
    assert r.wait(SHORT) is None
    assert_exc(raised(r.successful), ValueError, f"{r!r} not ready")
    gate.set()
    assert r.get(TIMEOUT) == [1, 2, 3, 4, 5, 6]
    assert r.ready() is True and r.successful() is True
    assert r.wait(0) is None


def test_timeout_error_is_multiprocessing_timeout_error():
    assert multiprocessing.TimeoutError is std_pool.TimeoutError
    if tress_pool is not None and hasattr(tress_pool, "TimeoutError"):
        assert tress_pool.TimeoutError is multiprocessing.TimeoutError


# --------------------------------------------------------------------------
# map / map_async / starmap / starmap_async


CHUNKSIZES = [None, 1, 2, 3, 7, 100, 1000]


@pytest.mark.parametrize("chunksize", CHUNKSIZES)
def test_map_results_in_order(pools, chunksize):
    pool = pools(3)
    assert bounded(pool.map, square, range(100), chunksize) == [x * x for x in range(100)]
    assert bounded(pool.map, square, gen(range(37)), chunksize) == [x * x for x in range(37)]
    assert bounded(pool.map, str.upper, "abc", chunksize) == ["A", "B", "C"]
    assert bounded(pool.map, square, [5], chunksize) == [25]
    assert pool.map_async(square, range(50), chunksize).get(TIMEOUT) == [x * x for x in range(50)]
    assert pool.map_async(square, gen(range(9)), chunksize).get(TIMEOUT) == [x * x for x in range(9)]


@pytest.mark.parametrize("chunksize", CHUNKSIZES)
def test_starmap_results_in_order(pools, chunksize):
    pool = pools(3)
    args = [(x, 2) for x in range(60)]
    assert bounded(pool.starmap, pow, args, chunksize) == [x * x for x in range(60)]
    assert bounded(pool.starmap, pow, gen(args), chunksize) == [x * x for x in range(60)]
    assert bounded(pool.starmap, keyword_func, [[1], (2, 3), iter((4, 5))], chunksize) == [
        (1, 0, 0), (2, 3, 0), (4, 5, 0)]
    r = pool.starmap_async(pow, gen([(2, 5), (3, 3)]), chunksize)
    assert r.get(TIMEOUT) == [32, 27]


def test_empty_iterables(pools):
    pool = pools(2)
    for chunksize in (None, 1, 5):
        assert bounded(pool.map, square, [], chunksize) == []
        assert bounded(pool.map, square, gen([]), chunksize) == []
        assert bounded(pool.starmap, pow, [], chunksize) == []
        assert bounded(pool.starmap, pow, gen([]), chunksize) == []
        r = pool.map_async(square, [], chunksize)
        assert r.get(TIMEOUT) == [] and r.ready() is True and r.successful() is True
        assert pool.starmap_async(pow, gen([]), chunksize).get(TIMEOUT) == []
    for chunksize in (1, 4):
        assert drain(pool.imap(square, [], chunksize)) == []
        assert drain(pool.imap(square, gen([]), chunksize)) == []
        assert drain(pool.imap_unordered(square, [], chunksize)) == []
        assert drain(pool.imap_unordered(square, gen([]), chunksize)) == []


def test_map_results_in_order_when_finishing_in_reverse(pools):
    pool = pools(4)
    gates = [pools.event() for _ in range(4)]

    def f(i):
        assert gates[i].wait(TIMEOUT)
        return i

    r = pool.map_async(f, range(4), chunksize=1)
    s = pool.starmap_async(lambda i, k: f(i) * k, [(i, 10) for i in range(4)], chunksize=1)
    for g in reversed(gates):
        assert r.ready() is False
        g.set()
    assert r.get(TIMEOUT) == [0, 1, 2, 3]
    assert s.get(TIMEOUT) == [0, 10, 20, 30]


def test_map_async_callback_gets_the_whole_list_once(pools):
    pool = pools(3)
    cb, ecb = Recorder(), Recorder()
    r = pool.map_async(square, range(20), 3, callback=cb, error_callback=ecb)
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
def test_map_exception_propagates(pools, chunksize):
    pool = pools(3)
    exc = raised(pool.map, fail_at(13), range(40), chunksize)
    assert_exc(exc, ValueError, "bad 13")
    exc = raised(pool.starmap, lambda a, b: fail_at(13)(a + b), [(x, 0) for x in range(40)], chunksize)
    assert_exc(exc, ValueError, "bad 13")
    cb, ecb = Recorder(), Recorder()
    r = pool.map_async(fail_at(13), range(40), chunksize, callback=cb, error_callback=ecb)
    assert_exc(raised(r.get, TIMEOUT), ValueError, "bad 13")
    assert r.ready() is True and r.successful() is False
    cb2, ecb2 = Recorder(), Recorder()
    r2 = pool.starmap_async(pow, [(1, 2), (0, -1)], chunksize, callback=cb2, error_callback=ecb2)
    exc2 = raised(r2.get, TIMEOUT)
    assert_exc(exc2, ZeroDivisionError, "0.0 cannot be raised to a negative power")
    pool.close()
    bounded(pool.join)
    assert cb.calls == [] and len(ecb.calls) == 1
    assert_exc(ecb.calls[0][0], ValueError, "bad 13")
    assert ecb.calls[0][1] != threading.get_ident()
    assert cb2.calls == [] and len(ecb2.calls) == 1 and ecb2.calls[0][0] is exc2


def test_map_first_exception_wins_with_one_worker(pools):
    pool = pools(1)
    exc = raised(pool.map, inverse, [1, "a", 0, "b"], 1)
    assert_exc(exc, TypeError, "unsupported operand type(s) for /: 'int' and 'str'")
    ecb = Recorder()
    r = pool.map_async(inverse, [1, 0, "a"], 1, error_callback=ecb)
    assert_exc(raised(r.get, TIMEOUT), ZeroDivisionError, "division by zero")
    assert len(ecb.calls) == 1 and ecb.calls[0][0] is raised(r.get, TIMEOUT)


def test_failed_map_is_ready_only_when_every_chunk_is_done(pools):
    pool = pools(2)
    gate, started = pools.event(), pools.event()

    def f(x):
        if x == "fail":
            raise RuntimeError("failed early")
        started.set()
        gate.wait(TIMEOUT)
        return x

    ecb = Recorder()
    r = pool.map_async(f, ["fail", "held"], chunksize=1, error_callback=ecb)
    assert started.wait(TIMEOUT)
    assert r.ready() is False
    assert_timeout_error(raised(r.get, SHORT))
    assert ecb.calls == []
    gate.set()
    exc = raised(r.get, TIMEOUT)
    assert_exc(exc, RuntimeError, "failed early")
    assert len(ecb.calls) == 1 and ecb.calls[0][0] is exc


def test_map_iterable_errors_are_raised_by_the_call(pools):
    pool = pools(2)
    assert_exc(raised(pool.map, abs, 5), TypeError, "'int' object is not iterable")
    assert_exc(raised(pool.map_async, abs, 5), TypeError, "'int' object is not iterable")
    assert_exc(raised(pool.starmap, pow, 5), TypeError, "'int' object is not iterable")
    assert_exc(raised(pool.starmap_async, pow, None), TypeError, "'NoneType' object is not iterable")
    # a generator failing part-way: map lists it in the caller, so map raises
    exc = raised(pool.map, square, failing_gen([1, 2, 3], KeyError("gen")))
    assert_exc(exc, KeyError, "'gen'")
    exc = raised(pool.map_async, square, failing_gen([1, 2], OSError("disk")))
    assert_exc(exc, OSError, "disk")
    # an item that is not an argument tuple fails in the worker
    assert_exc(raised(pool.starmap, pow, [1, 2]), TypeError, "'int' object is not iterable")
    assert_exc(raised(pool.starmap, pow, [(1,)]), TypeError,
               "pow() missing required argument 'exp' (pos 2)")
    assert bounded(pool.map, square, [3]) == [9]


# --------------------------------------------------------------------------
# imap / imap_unordered


@pytest.mark.parametrize("chunksize", [1, 2, 5, 100])
def test_imap_results(pools, chunksize):
    pool = pools(3)
    expect = [x * x for x in range(120)]
    assert drain(pool.imap(square, range(120), chunksize)) == expect
    assert drain(pool.imap(square, gen(range(120)), chunksize)) == expect
    got = drain(pool.imap_unordered(square, range(120), chunksize))
    assert sorted(got) == expect and len(got) == len(expect)
    got = drain(pool.imap_unordered(square, gen(range(120)), chunksize))
    assert sorted(got) == expect
    assert drain(pool.imap(str.upper, "ab", chunksize)) == ["A", "B"]
    assert drain(pool.imap(square, [4], chunksize=chunksize)) == [16]


def test_imap_iterator_protocol_and_next_timeout(pools):
    pool = pools(2)
    for method in ("imap", "imap_unordered"):
        gate, started = threading.Event(), threading.Event()
        pools.events.append(gate)

        def f(x, gate=gate, started=started):
            started.set()
            gate.wait(TIMEOUT)
            return x * 2

        it = getattr(pool, method)(f, [21])
        assert iter(it) is it
        assert started.wait(TIMEOUT)
        assert_timeout_error(raised(it.next, SHORT))
        assert_timeout_error(raised(it.next, 0))
        gate.set()
        assert it.next(TIMEOUT) == 42
        with pytest.raises(StopIteration):
            it.next(TIMEOUT)
        with pytest.raises(StopIteration):
            next(it)
        assert bounded(list, it) == []


def test_imap_streams_results_in_order(pools):
    pool = pools(4)
    gates = [pools.event() for _ in range(4)]

    def f(i):
        assert gates[i].wait(TIMEOUT)
        return i

    it = pool.imap(f, range(4))
    gates[0].set()
    assert it.next(TIMEOUT) == 0  # while 1..3 are still held
    gates[3].set()
    gates[2].set()
    assert_timeout_error(raised(it.next, SHORT))  # 1 is still held
    gates[1].set()
    assert [it.next(TIMEOUT) for _ in range(3)] == [1, 2, 3]
    with pytest.raises(StopIteration):
        it.next(TIMEOUT)


def test_imap_unordered_yields_in_completion_order(pools):
    pool = pools(4)
    gates = [pools.event() for _ in range(4)]

    def f(i):
        assert gates[i].wait(TIMEOUT)
        return i

    it = pool.imap_unordered(f, range(4))
    got = []
    for i in reversed(range(4)):
        gates[i].set()
        got.append(it.next(TIMEOUT))  # the only item that can finish
    assert got == [3, 2, 1, 0]
    with pytest.raises(StopIteration):
        it.next(TIMEOUT)


def test_imap_failed_item_then_iteration_goes_on(pools):
    pool = pools(2)
    zde = ("raise", ZeroDivisionError, "division by zero")
    assert drain(pool.imap(inverse, [1, 0, 2, 0, 4])) == [1.0, zde, 0.5, zde, 0.25]
    got = drain(pool.imap_unordered(inverse, [1, 0, 2, 0, 4]))
    assert sorted(got[i] for i in range(5) if got[i] != zde) == [0.25, 0.5, 1.0]
    assert got.count(zde) == 2 and len(got) == 5


def test_imap_chunked_failed_chunk_ends_the_iteration(pools):
    pool = pools(1)  # one worker: chunks finish in order, also for imap_unordered
    for method in ("imap", "imap_unordered"):
        it = getattr(pool, method)(inverse, [1, 2, 0, 4, 5, 8], 2)
        assert bounded(next, it) == 1.0
        assert bounded(next, it) == 0.5
        exc = raised(next, it)
        assert_exc(exc, ZeroDivisionError, "division by zero")
        with pytest.raises(StopIteration):
            bounded(next, it)


def test_imap_iterable_errors_are_raised_by_next(pools):
    pool = pools(2)
    for method in ("imap", "imap_unordered"):
        imap = getattr(pool, method)
        # the iterable is only iterated by the pool: the call itself returns
        it = imap(abs, 5)
        assert_exc(raised(next, it), TypeError, "'int' object is not iterable")
        with pytest.raises(StopIteration):
            bounded(next, it)
        it = imap(square, failing_gen([1, 2, 3], KeyError("gen")))
        got = drain(it)
        err = ("raise", KeyError, "'gen'")
        if method == "imap":
            assert got == [1, 4, 9, err]
        else:
            assert got.count(err) == 1 and sorted(x for x in got if x != err) == [1, 4, 9]
        # chunked: the error ends the iteration, after a prefix of the results
        it = imap(square, failing_gen([1, 2, 3], KeyError("gen2")), 2)
        got = []
        with pytest.raises(KeyError) as info:
            while True:
                got.append(bounded(next, it))
        assert str(info.value) == "'gen2'"
        assert set(got) <= {1, 4, 9}
        with pytest.raises(StopIteration):
            bounded(next, it)


def test_imap_returns_while_the_iterable_is_still_producing(pools):
    # The stdlib iterates the input on its task-handler thread: imap() returns
    # at once and results stream while a generator is still producing.
    pool = pools(2)
    for method in ("imap", "imap_unordered"):
        more = pools.event()

        def produce(more=more):
            yield 1
            more.wait(TIMEOUT)  # set by the consumer once it has the first result
            yield 2

        it = bounded(getattr(pool, method), square, produce(), timeout=10.0)
        assert it.next(TIMEOUT) == 1
        more.set()
        assert it.next(TIMEOUT) == 4
        with pytest.raises(StopIteration):
            it.next(TIMEOUT)


@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
@pytest.mark.parametrize("chunksize", [0, -1, -7])
def test_imap_chunksize_below_one_is_rejected(pools, method, chunksize):
    pool = pools(1)
    exc = raised(getattr(pool, method), abs, [1, 2], chunksize)
    assert_exc(exc, ValueError, f"Chunksize must be 1+, not {chunksize}")


# --------------------------------------------------------------------------
# close / terminate / join / context manager


SUBMITTERS = {
    "apply": lambda p: p.apply(square, (2,)),
    "apply_async": lambda p: p.apply_async(square, (2,)),
    "map": lambda p: p.map(square, [1, 2]),
    "map_async": lambda p: p.map_async(square, [1, 2]),
    "map_empty": lambda p: p.map(square, []),
    "starmap": lambda p: p.starmap(pow, [(1, 2)]),
    "starmap_async": lambda p: p.starmap_async(pow, [(1, 2)]),
    "imap": lambda p: p.imap(square, [1, 2]),
    "imap_chunked": lambda p: p.imap(square, [1, 2], 2),
    "imap_unordered": lambda p: p.imap_unordered(square, [1, 2]),
    "imap_unordered_chunked": lambda p: p.imap_unordered(square, [1, 2], 2),
}


@pytest.mark.parametrize("stop", ["close", "terminate", "close+join", "terminate+join"])
@pytest.mark.parametrize("method", list(SUBMITTERS))
def test_submit_after_stop_raises_pool_not_running(pools, method, stop):
    pool = pools(2)
    for step in stop.split("+"):
        bounded(getattr(pool, step))
    exc = raised(SUBMITTERS[method], pool)
    assert_exc(exc, ValueError, "Pool not running")


def test_join_while_running_raises(pools):
    pool = pools(2)
    exc = raised(pool.join)
    assert_exc(exc, ValueError, "Pool is still running")
    assert bounded(pool.apply, square, (3,)) == 9  # still usable


def test_enter_after_close_raises(pools):
    pool = pools(2)
    pool.close()
    exc = raised(pool.__enter__)
    assert_exc(exc, ValueError, "Pool not running")


def test_close_lets_outstanding_work_finish_and_join_waits_for_it(pools):
    pool = pools(2)
    gate, started = pools.event(), pools.event()

    def held():
        started.set()
        gate.wait(TIMEOUT)
        return "held"

    cb = Recorder()
    first = pool.apply_async(held, callback=cb)
    assert started.wait(TIMEOUT)
    rs = [pool.apply_async(square, (i,)) for i in range(30)]
    m = pool.map_async(square, range(40), 3)
    it = pool.imap(square, range(25))
    itu = pool.imap_unordered(square, range(25), 4)
    pool.close()
    pool.close()  # idempotent
    joiner = threading.Thread(target=pool.join, name="joiner", daemon=True)
    joiner.start()
    joiner.join(SHORT)
    assert joiner.is_alive(), "join() returned while a task was still running"
    assert first.ready() is False
    gate.set()
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


def test_terminate_drops_queued_work(pools):
    pool = pools(1)
    gate, started = pools.event(), pools.event()
    ran = []

    def held():
        started.set()
        gate.wait(TIMEOUT)
        return "held"

    running = pool.apply_async(held)
    assert started.wait(TIMEOUT)
    queued = [pool.apply_async(ran.append, (i,)) for i in range(20)]
    queued_map = pool.map_async(ran.append, range(20, 40), 1)
    # terminate returns without waiting for the running task
    bounded(pool.terminate, timeout=10.0)
    assert running.ready() is False
    gate.set()
    bounded(pool.join)
    assert ran == [], "queued tasks ran after terminate()"
    assert not any(r.ready() for r in queued) and not queued_map.ready()
    assert_timeout_error(raised(queued[0].get, 0))
    assert_timeout_error(raised(queued_map.get, 0))


def test_stop_calls_are_idempotent_in_any_order(pools):
    pool = pools(2)
    assert bounded(pool.apply, square, (2,)) == 4
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


def test_context_manager_returns_the_pool_and_terminates_on_exit(pools):
    pool = pools(1)
    gate, started = pools.event(), pools.event()
    ran = []

    def held():
        started.set()
        gate.wait(TIMEOUT)

    def body():
        with pool as entered:
            assert entered is pool
            assert entered.apply(square, (7,)) == 49
            entered.apply_async(held)
            assert started.wait(TIMEOUT)
            queued = [entered.apply_async(ran.append, (i,)) for i in range(10)]
        return queued

    # leaving the block terminates: it does not wait for the running task
    queued = bounded(body, timeout=10.0)
    assert_exc(raised(pool.apply_async, square, (1,)), ValueError, "Pool not running")
    gate.set()
    bounded(pool.join)
    assert ran == [], "queued tasks ran after the with block terminated the pool"
    assert not any(r.ready() for r in queued)


def test_context_manager_does_not_swallow_exceptions(pools):
    pool = pools(2)

    def body():
        with pool:
            pool.apply(square, (2,))
            raise LookupError("inside")

    exc = raised(body)
    assert_exc(exc, LookupError, "inside")
    assert_exc(raised(pool.map, square, [1]), ValueError, "Pool not running")
    bounded(pool.join)


def test_unreferenced_pool_is_finalized_and_its_threads_exit(pool_cls, wait_until):
    # The docs say not to rely on this, but CPython does it (the pool's
    # threads hold no reference to it and a weakref finalizer terminates it),
    # so the common one-liner ``ThreadPool(n).map(...)`` does not leave
    # threads behind.
    before = _thread._count()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # "unclosed running ... pool"
        assert bounded(lambda: pool_cls(3).map(abs, [-1, -2])) == [1, 2]
        pool = pool_cls(2)
        r = pool.apply_async(abs, (-3,))
        assert r.get(TIMEOUT) == 3
        del pool, r
        gc.collect()
    wait_until(lambda: _thread._count() <= before, timeout=10.0,
               message="the threads of the unreferenced pools to exit")


UNCLOSED_POOL_CHILD = r"""
import importlib, sys, threading
pool_mod = importlib.import_module(sys.argv[1])
pool = pool_mod.ThreadPool(2)
print(pool.apply(pow, (2, 5)), flush=True)
pool.apply_async(threading.Event().wait)  # never finishes
print("exiting", flush=True)
"""


def test_interpreter_exits_with_an_unclosed_pool_and_a_running_task(pool_cls, run_python):
    modname = "multiprocessing.pool" if pool_cls is std_pool.ThreadPool else "tress.pool"
    proc = run_python(UNCLOSED_POOL_CHILD, modname, timeout=30.0)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["32", "exiting"], proc.stdout + proc.stderr


# --------------------------------------------------------------------------
# concurrency and stress


def test_many_submitting_threads(pools):
    pool = pools(4)
    errors = []

    def submitter(k):
        try:
            rs = [pool.apply_async(pow, (k, i)) for i in range(300)]
            m = pool.map_async(square, range(k, k + 300), 7)
            assert [r.get(TIMEOUT) for r in rs] == [k ** i for i in range(300)]
            assert m.get(TIMEOUT) == [x * x for x in range(k, k + 300)]
            it = pool.imap(square, range(k, k + 100))
            assert [it.next(TIMEOUT) for _ in range(100)] == [x * x for x in range(k, k + 100)]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [
        threading.Thread(target=submitter, args=(k,), name=f"submitter-{k}", daemon=True)
        for k in range(8)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + TIMEOUT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "submitters did not finish"
    assert errors == []


STRESS_N = 200_000


def test_stress_every_result_present(pools):
    pool = pools(4)
    expect = list(range(STRESS_N, 0, -1))
    assert bounded(pool.map, abs, range(-STRESS_N, 0)) == expect
    assert bounded(lambda: list(pool.imap(abs, range(-STRESS_N, 0)))) == expect
    got = bounded(lambda: list(pool.imap_unordered(abs, range(-STRESS_N, 0))))
    assert len(got) == STRESS_N and sorted(got) == list(range(1, STRESS_N + 1))
    got = bounded(lambda: list(pool.imap_unordered(abs, range(-STRESS_N, 0), 64)))
    assert len(got) == STRESS_N and sorted(got) == list(range(1, STRESS_N + 1))


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
    it = getattr(pool, method)(square, producer())
    pool.close()
    more.set()
    bounded(pool.join)
    assert sorted(drain(it)) == [0, 1, 4]
