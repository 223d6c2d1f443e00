"""tress.futures.ThreadPoolExecutor beyond CPython's own tests: its futures
are ``concurrent.futures.Future`` instances that the stdlib's ``wait``,
``as_completed`` and asyncio accept; worker names, broken pools, cancel on
shutdown, no threads left behind, and a stress run checking every result.
Each test runs on the stdlib executor too (the ``fmod`` fixture); Ctrl-C
during ``result()`` on the main thread raises promptly and leaves the task
running."""

import asyncio
import concurrent.futures as std_futures
import gc
import json
import threading
import time
import weakref
from concurrent.futures.thread import BrokenThreadPool

import pytest

try:
    import tress.futures as tress_futures
except Exception as exc:  # noqa: BLE001 - ImportError, or a broken build
    tress_futures = None
    IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

TIMEOUT = 30.0  # bound on every wait in this file


@pytest.fixture(params=["concurrent.futures", "tress"])
def fmod(request):
    if request.param == "concurrent.futures":
        return std_futures
    if tress_futures is None:
        pytest.skip(f"tress.futures is not importable ({IMPORT_ERROR})")
    return tress_futures


def test_futures_are_stdlib_futures(fmod):
    with fmod.ThreadPoolExecutor(2) as ex:
        fut = ex.submit(pow, 2, 10)
        assert isinstance(fut, std_futures.Future)
        assert fut.result(TIMEOUT) == 1024
        assert repr(fut).startswith("<Future at 0x") and "state=finished" in repr(fut)


def test_wait_and_as_completed_mix_with_stdlib_futures(fmod):
    gate = threading.Event()
    with fmod.ThreadPoolExecutor(2) as ex, std_futures.ThreadPoolExecutor(2) as std:
        ours = [ex.submit(lambda i=i: (gate.wait(TIMEOUT), i)[1]) for i in range(4)]
        theirs = [std.submit(lambda i=i: i + 10) for i in range(4)]
        done, pending = std_futures.wait(theirs, timeout=TIMEOUT)
        assert len(done) == 4 and not pending
        done, pending = std_futures.wait(ours + theirs, timeout=0.05)
        assert done == set(theirs) and pending == set(ours)
        gate.set()
        got = sorted(f.result() for f in std_futures.as_completed(ours + theirs, TIMEOUT))
        assert got == [0, 1, 2, 3, 10, 11, 12, 13]


def test_asyncio_wraps_the_futures_and_uses_the_executor(fmod):
    async def main(ex):
        loop = asyncio.get_running_loop()
        a = await asyncio.wrap_future(ex.submit(pow, 3, 3))
        b = await loop.run_in_executor(ex, pow, 2, 5)
        loop.set_default_executor(ex)
        c = await loop.run_in_executor(None, threading.current_thread)
        return a, b, c.name

    ex = fmod.ThreadPoolExecutor(2, thread_name_prefix="aio")
    try:
        a, b, name = asyncio.run(asyncio.wait_for(main(ex), TIMEOUT))
    finally:
        ex.shutdown(wait=True)
    assert (a, b) == (27, 32)
    assert name.startswith("aio_")


def test_worker_threads_carry_the_prefix(fmod):
    with fmod.ThreadPoolExecutor(3, thread_name_prefix="crawler") as ex:
        names = {ex.submit(lambda: threading.current_thread().name).result(TIMEOUT)
                 for _ in range(20)}
        assert names and all(n.startswith("crawler_") for n in names)
        assert all(isinstance(t, threading.Thread) for t in ex._threads)


def test_failing_initializer_breaks_the_pool(fmod):
    def boom():
        raise ValueError("no")

    ex = fmod.ThreadPoolExecutor(1, initializer=boom)
    try:
        fut = ex.submit(pow, 2, 2)
        with pytest.raises(BrokenThreadPool):
            fut.result(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while not ex._broken and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(BrokenThreadPool):
            ex.submit(pow, 2, 2)
    finally:
        ex.shutdown(wait=True)


def test_constructor_errors_match(fmod):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        fmod.ThreadPoolExecutor(0)
    with pytest.raises(TypeError, match="initializer must be a callable"):
        fmod.ThreadPoolExecutor(1, initializer=5)
    ex = fmod.ThreadPoolExecutor(1)
    ex.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.submit(pow, 1, 1)


def test_cancel_futures_cancels_exactly_the_pending_ones(fmod):
    gate, started = threading.Event(), threading.Event()

    def blocker():
        started.set()
        return gate.wait(TIMEOUT)

    ex = fmod.ThreadPoolExecutor(1)
    running = ex.submit(blocker)
    assert started.wait(TIMEOUT)
    pending = [ex.submit(pow, 2, i) for i in range(50)]
    ex.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert running.result(TIMEOUT) is True
    assert all(f.cancelled() for f in pending)
    for t in list(ex._threads):
        t.join(TIMEOUT)
        assert not t.is_alive()


def test_no_threads_left_after_shutdown(fmod):
    before = threading.active_count()
    ex = fmod.ThreadPoolExecutor(8)
    futs = [ex.submit(time.sleep, 0.001) for _ in range(64)]
    std_futures.wait(futs, timeout=TIMEOUT)
    assert threading.active_count() > before
    ex.shutdown(wait=True)
    assert threading.active_count() == before


def test_stress_every_result_in_order(fmod):
    n = 200_000 if fmod is not std_futures else 20_000
    with fmod.ThreadPoolExecutor(4) as ex:
        assert list(ex.map(abs, range(-n, 0), timeout=TIMEOUT)) == list(range(n, 0, -1))
        futs = [ex.submit(abs, -i) for i in range(n // 4)]
        assert [f.result(TIMEOUT) for f in futs] == list(range(n // 4))


def test_exception_keeps_its_traceback(fmod):
    def fails():
        raise KeyError("missing")

    with fmod.ThreadPoolExecutor(1) as ex:
        exc = ex.submit(fails).exception(TIMEOUT)
    assert isinstance(exc, KeyError)
    names = []
    tb = exc.__traceback__
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert names[-1] == "fails", names


INTERRUPT_CHILD = r"""
import importlib, json, os, signal, sys, threading, time
futures = importlib.import_module(sys.argv[1])
gate = threading.Event()
ex = futures.ThreadPoolExecutor(1)
fut = ex.submit(gate.wait, 30)
main = threading.main_thread()

def in_result():
    frame = sys._current_frames().get(main.ident)
    while frame is not None:
        if frame.f_code.co_name == "result":
            return True
        frame = frame.f_back
    return False

def sender():
    deadline = time.monotonic() + 10
    while not in_result() and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    sent.append(time.monotonic())
    os.kill(os.getpid(), signal.SIGINT)

sent = []
threading.Thread(target=sender, daemon=True).start()
try:
    fut.result(30)
    out = "returned"
except KeyboardInterrupt:
    out = "interrupted"
latency = time.monotonic() - sent[0] if sent else None
state = fut.running()
gate.set()
print(json.dumps({"out": out, "latency": latency, "still_running": state,
                  "result_after": fut.result(30)}))
ex.shutdown()
"""


def test_ctrl_c_interrupts_result_on_the_main_thread(fmod, run_python):
    name = "concurrent.futures" if fmod is std_futures else "tress.futures"
    proc = run_python(INTERRUPT_CHILD, name, timeout=60)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["out"] == "interrupted", res
    assert res["latency"] is not None and res["latency"] < 1.0, res
    assert res["still_running"] is True, "the task is unaffected by the interrupt"
    assert res["result_after"] is True


def test_long_map_raises_at_the_failing_item_after_the_earlier_results(fmod):
    def inverse(x):
        return 1 / (x - 5000)

    with fmod.ThreadPoolExecutor(4) as ex:
        it = ex.map(inverse, range(10_000), timeout=TIMEOUT)
        got = [next(it) for _ in range(5000)]
        assert got == [1 / (x - 5000) for x in range(5000)]
        with pytest.raises(ZeroDivisionError):
            next(it)


def test_long_map_timeout_counts_from_the_call(fmod):
    gate = threading.Event()
    with fmod.ThreadPoolExecutor(2) as ex:
        it = ex.map(lambda x: gate.wait(TIMEOUT) and x, range(1000), timeout=0.2)
        time.sleep(0.4)  # past the timeout before the first next()
        started = time.monotonic()
        with pytest.raises(std_futures.TimeoutError):
            next(it)
        # Counted from the call: already expired, so next() does not wait
        # another 0.2 s (a generous bound for a loaded machine).
        assert time.monotonic() - started < 0.15
        it.close()  # cancels what has not started
        gate.set()


def test_closing_a_long_map_cancels_the_rest(fmod):
    calls = []
    gate = threading.Event()

    def record(x):
        if x:
            gate.wait(TIMEOUT)
        calls.append(x)
        return x

    ex = fmod.ThreadPoolExecutor(1)
    it = ex.map(record, range(1000), timeout=TIMEOUT)
    assert next(it) == 0  # published at once, not at the end of a chunk
    it.close()  # cancels what has not started
    gate.set()
    ex.shutdown(wait=True)
    assert 1 <= len(calls) < 1000, len(calls)
    assert calls == sorted(calls)


def test_long_map_results_come_as_they_are_ready(fmod):
    """Each call waits for the caller to have seen the previous result: the
    stdlib serves this with one worker; so must a chunked map."""
    seen = []
    cond = threading.Condition()

    def step(x):
        with cond:
            assert cond.wait_for(lambda: len(seen) >= x, TIMEOUT), f"call {x} starved"
        return x

    with fmod.ThreadPoolExecutor(1) as ex:
        for value in ex.map(step, range(2000), timeout=TIMEOUT):
            with cond:
                seen.append(value)
                cond.notify_all()
    assert seen == list(range(2000))


def test_dropping_a_long_map_stops_it(fmod):
    calls = []
    gate = threading.Event()

    def record(x):
        if x:
            gate.wait(TIMEOUT)
        calls.append(x)
        return x

    ex = fmod.ThreadPoolExecutor(1)
    it = ex.map(record, range(1000), timeout=TIMEOUT)
    assert next(it) == 0
    del it  # no close(): the iterator's end stops the map all the same
    gc.collect()
    gate.set()
    ex.shutdown(wait=True)
    assert 1 <= len(calls) < 1000, len(calls)


def test_long_map_exception_stops_the_rest(fmod):
    calls = []

    def fail_at_10(x):
        calls.append(x)
        if x == 10:
            raise KeyError(x)
        time.sleep(0.001)
        return x

    with fmod.ThreadPoolExecutor(1) as ex:
        it = ex.map(fail_at_10, range(2000), timeout=TIMEOUT)
        assert [next(it) for _ in range(10)] == list(range(10))
        with pytest.raises(KeyError):
            next(it)
        with pytest.raises(StopIteration):
            next(it)
    # the failing chunk stopped there; the chunks not started were cancelled
    assert len(calls) < 2000, len(calls)


def test_future_private_protocol(fmod):
    """What the stdlib's own functions and tests touch: the private
    attributes, settable as on the stdlib's futures."""
    from concurrent.futures import _base

    f = fmod.Future()
    assert f._state == _base.PENDING and not f.done()
    assert f._waiters == [] and f._done_callbacks == []
    with f._condition:  # an RLock: re-entrant, as the stdlib's
        with f._condition:
            pass
    f._state = _base.FINISHED
    f._result = 42
    assert f.done() and f.result(0) == 42
    f._state = _base.CANCELLED
    assert f.cancelled()
    with pytest.raises(std_futures.CancelledError):
        f.result(0)


def test_set_result_twice_is_invalid_state(fmod):
    with fmod.ThreadPoolExecutor(1) as ex:
        f = ex.submit(int, 5)
        assert f.result(TIMEOUT) == 5
        with pytest.raises(std_futures.InvalidStateError, match="^FINISHED: <Future at"):
            f.set_result(6)
        assert f.result(0) == 5


def test_a_future_in_a_cycle_with_its_exception_is_collected(fmod):
    """A failed call whose traceback reaches its own future: only the
    garbage collector can free it, so the future must take part in it."""
    holder = {}

    def fail():
        future = holder["f"]  # the frame, kept by the traceback, holds the future
        raise ValueError(future)

    with fmod.ThreadPoolExecutor(1) as ex:
        gate = threading.Event()
        blocker = ex.submit(gate.wait, TIMEOUT)
        f = ex.submit(fail)
        holder["f"] = f
        gate.set()
        blocker.result(TIMEOUT)
        assert isinstance(f.exception(TIMEOUT), ValueError)
    ref = weakref.ref(f)
    holder.clear()
    del f
    gc.collect()
    assert ref() is None


def test_done_callback_exceptions_are_logged_and_the_rest_run(fmod, caplog):
    seen = []

    def bad(_):
        raise RuntimeError("callback failed")

    with fmod.ThreadPoolExecutor(1) as ex:
        gate = threading.Event()
        f = ex.submit(gate.wait, TIMEOUT)
        f.add_done_callback(bad)
        f.add_done_callback(seen.append)
        with caplog.at_level("ERROR", logger="concurrent.futures"):
            gate.set()
            f.result(TIMEOUT)
            ex.shutdown(wait=True)
    assert seen == [f]
    assert any("exception calling callback" in r.getMessage() for r in caplog.records)


def test_many_waiters_on_one_future(fmod):
    """Threads blocked in result(), wait() and as_completed() on the same
    future all see it finish."""
    with fmod.ThreadPoolExecutor(1) as ex:
        gate = threading.Event()
        f = ex.submit(lambda: gate.wait(TIMEOUT) and 7)
        got = []
        lock = threading.Lock()

        def by_result():
            v = f.result(TIMEOUT)
            with lock:
                got.append(("result", v))

        def by_wait():
            done, _ = std_futures.wait([f], timeout=TIMEOUT)
            with lock:
                got.append(("wait", len(done)))

        def by_as_completed():
            for g in std_futures.as_completed([f], timeout=TIMEOUT):
                with lock:
                    got.append(("as_completed", g.result(0)))

        threads = [threading.Thread(target=t) for t in (by_result, by_wait, by_as_completed) * 3]
        for t in threads:
            t.start()
        deadline = time.monotonic() + TIMEOUT
        while len(f._waiters) < 6 and time.monotonic() < deadline:
            time.sleep(0.001)  # until the wait/as_completed threads are installed
        gate.set()
        for t in threads:
            t.join(TIMEOUT)
        assert not any(t.is_alive() for t in threads)
    assert sorted(got) == sorted(
        [("result", 7), ("wait", 1), ("as_completed", 7)] * 3
    )


# Regressions found in review of the native map and futures; each runs on
# the stdlib too, which defines the expected behaviour.


def test_long_map_dropped_while_an_exception_propagates(fmod):
    """The iterator dies with an exception in flight: that exception comes
    out, untouched (a native drop that ran Python code would clobber it)."""
    with fmod.ThreadPoolExecutor(2) as ex:
        with pytest.raises(ValueError, match="from the loop body"):
            for _ in ex.map(time.sleep, [0.001] * 100, timeout=TIMEOUT):
                raise ValueError("from the loop body")
        with pytest.raises(TypeError):
            sum(ex.map(str, range(100), timeout=TIMEOUT))


def test_long_map_never_iterated_runs_every_call(fmod):
    calls = []
    with fmod.ThreadPoolExecutor(2) as ex:
        ex.map(calls.append, range(100))  # fire and forget
    assert sorted(calls) == list(range(100))


def test_long_map_a_failing_call_does_not_stop_the_others(fmod):
    ran = []

    def first_fails(i):
        ran.append(i)
        if i == 0:
            raise ValueError("item 0")
        return i

    with fmod.ThreadPoolExecutor(2) as ex:
        it = ex.map(first_fails, range(100), timeout=TIMEOUT)
        ex.shutdown(wait=True)  # every call has run or been cancelled
        with pytest.raises(ValueError, match="item 0"):
            next(it)
    assert sorted(ran) == list(range(100))


def test_long_map_calls_may_wait_for_later_calls(fmod):
    """As with one future per call, two workers run two calls at once, so a
    call that waits for the next one is not stuck behind it."""
    events = [threading.Event() for _ in range(32)]

    def pair(i):
        if i % 2 == 0:
            return events[i + 1].wait(TIMEOUT)
        events[i].set()
        return True

    with fmod.ThreadPoolExecutor(2) as ex:
        assert all(ex.map(pair, range(32), timeout=2 * TIMEOUT))


def test_long_map_iterator_shared_by_two_threads(fmod):
    """Two threads iterate one map: the first blocks in next() until the
    gate opens, so the other's next() is always the concurrent one and
    raises, as a generator's does."""
    with fmod.ThreadPoolExecutor(2) as ex:
        gate = threading.Event()
        it = ex.map(lambda i: gate.wait(TIMEOUT) and i, range(64), timeout=TIMEOUT)
        errors, values = [], []
        lock = threading.Lock()

        def consume():
            try:
                got = list(it)
            except ValueError as exc:
                with lock:
                    errors.append(str(exc))
            else:
                with lock:
                    values.extend(got)

        threads = [threading.Thread(target=consume) for _ in range(2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + TIMEOUT
        while not errors and time.monotonic() < deadline:
            time.sleep(0.001)  # bounded: until the second next() has raised
        gate.set()
        for t in threads:
            t.join(TIMEOUT)
        assert not any(t.is_alive() for t in threads)
    assert errors == ["generator already executing"]
    assert values == list(range(64))


@pytest.mark.parametrize("timeout", [float("inf"), 1e100, 10**30])
def test_long_map_huge_timeouts_mean_no_limit(fmod, timeout):
    if fmod is std_futures:
        pytest.skip("the stdlib raises OverflowError when it has to wait that long")
    with fmod.ThreadPoolExecutor(2) as ex:
        assert sum(ex.map(abs, range(100), timeout=timeout)) == 4950


def test_set_exception_none_finishes_without_an_exception(fmod):
    f = fmod.Future()
    f.set_running_or_notify_cancel()
    f.set_exception(None)
    assert f.done() and f.exception(0) is None and f.result(0) is None


def test_worker_names_are_unique_when_threads_submit_at_once(fmod):
    names = set()
    lock = threading.Lock()
    with fmod.ThreadPoolExecutor(8) as ex:
        gate = threading.Barrier(8, timeout=TIMEOUT)

        def blocker():
            with lock:
                names.add(threading.current_thread().name)
            gate.wait()

        submitters = [threading.Thread(target=ex.submit, args=(blocker,)) for _ in range(8)]
        for s in submitters:
            s.start()
        for s in submitters:
            s.join(TIMEOUT)
    assert len(names) == 8, names


def test_failing_initializer_with_a_cancelled_queued_future(fmod):
    if fmod is std_futures:
        pytest.skip("the stdlib's worker dies on InvalidStateError there and leaves "
                    "the futures after the cancelled one pending")
    gate = threading.Event()

    def init():
        gate.wait(TIMEOUT)
        raise RuntimeError("init failed")

    ex = fmod.ThreadPoolExecutor(1, initializer=init)
    f1, f2, f3 = (ex.submit(int) for _ in range(3))
    f2.cancel()
    gate.set()
    for f in (f1, f3):
        with pytest.raises(BrokenThreadPool):
            f.result(TIMEOUT)
    assert f2.cancelled()
    ex.shutdown(wait=True)


# One future from several threads at once. On a GIL build this mainly
# guards the native future's own lock against deadlocks: callbacks and
# finalizers that come back to the same future while its methods run.


class _Touch:
    """Touches `future` from its finalizer (run when a future drops it)."""

    def __init__(self, future, seen):
        self.future = future
        self.seen = seen

    def __del__(self):
        # Whether the future is done yet here differs (the stdlib drops
        # the old value before it changes the state); what matters is that
        # every method works, and the callback is called once either way.
        f = self.future
        f.done(), f.cancelled(), f.running(), f._state, f._result, f._waiters
        extra = []
        f.add_done_callback(extra.append)
        self.seen.append(extra)


@pytest.fixture
def fine_switching():
    """Threads switch every 10 µs (not 5 ms) so their calls interleave."""
    import sys

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def test_one_future_hammered_from_many_threads(fmod, fine_switching):
    rounds = 200
    for r in range(rounds):
        f = fmod.Future()
        start = threading.Barrier(7, timeout=TIMEOUT)
        lock = threading.Lock()
        won_set = []
        cancels = []
        outcomes = []
        called = []  # (tag, future) per done callback call
        reentrant = []
        adds = [0]

        def reenter(fut):
            # A done callback that comes back into the future it is called
            # for: every method, including one that adds a callback (which
            # runs at once, re-entrantly) and ones that must refuse.
            inner = []
            fut.add_done_callback(inner.append)
            try:
                fut.set_result("late")
            except std_futures.InvalidStateError:
                late = "refused"
            else:
                late = "accepted"
            with fut._condition:
                state = (fut.done(), fut.cancel() == fut.cancelled(), fut._waiters == [])
            with lock:
                reentrant.append((inner == [fut], late, state))

        def add(tag):
            fut_cb = (lambda fut, tag=tag: called.append((tag, fut)))
            with lock:
                adds[0] += 1
            f.add_done_callback(fut_cb)

        def setter(i):
            start.wait()
            add(("set", i))
            try:
                f.set_result((r, i))
            except std_futures.InvalidStateError:
                return
            with lock:
                won_set.append(i)

        def canceller():
            start.wait()
            for _ in range(3):
                got = f.cancel()
                with lock:
                    cancels.append(got)
                f.done()

        def waiter(i):
            start.wait()
            add(("wait", i))
            try:
                v = f.result(TIMEOUT)
            except std_futures.CancelledError:
                v = "cancelled"
            with lock:
                outcomes.append(v)

        def adder():
            start.wait()
            for k in range(5):
                add(("add", k))
            with lock:
                adds[0] += 1
            f.add_done_callback(reenter)
            f.running()
            f._state  # noqa: B018 - the property, as the stdlib's functions read it

        threads = [
            threading.Thread(target=setter, args=(0,)),
            threading.Thread(target=setter, args=(1,)),
            threading.Thread(target=canceller),
            threading.Thread(target=waiter, args=(0,)),
            threading.Thread(target=waiter, args=(1,)),
            threading.Thread(target=adder),
        ]
        for t in threads:
            t.start()
        start.wait()
        for t in threads:
            t.join(TIMEOUT)
        assert not any(t.is_alive() for t in threads), f"round {r}: a thread is stuck"

        cancelled = any(cancels)
        assert len(won_set) + cancelled == 1, (r, won_set, cancels)
        assert f.done() and f.cancelled() == cancelled
        # cancel() answers the same once the future is done
        assert len(set(cancels[-1:] + [f.cancelled()])) == 1
        expected = "cancelled" if cancelled else (r, won_set[0])
        assert outcomes == [expected, expected], (r, outcomes)
        # every callback added exactly once was called exactly once, with f
        assert len(called) + len(reentrant) == adds[0], (r, called, reentrant, adds)
        assert all(fut is f for _, fut in called)
        assert len(set(tag for tag, _ in called)) == len(called)
        assert reentrant == [(True, "refused", (True, True, True))], (r, reentrant)


def test_finalizers_and_callbacks_that_come_back_to_the_future(fmod):
    """What a future drops (a replaced result, a cleared cycle) may run a
    finalizer that uses the same future: it must find it usable."""
    seen = []

    # a result replaced by set_result: the old one is dropped inside it
    f = fmod.Future()
    f._result = _Touch(f, seen)
    f.set_result(1)
    assert seen == [[f]]
    assert f.result(0) == 1

    # a result replaced by the _result setter
    seen.clear()
    f._result = _Touch(f, seen)
    f._result = 2
    assert seen == [[f]]

    # an exception replaced by set_exception on a pending future
    seen.clear()
    g = fmod.Future()
    g._exception = _Touch(g, seen)
    g.set_exception(ValueError("x"))
    assert seen == [[g]]

    # a future in a cycle with its result: the collector clears it
    seen.clear()
    h = fmod.Future()
    h.set_result(_Touch(h, seen))
    h.add_done_callback(lambda fut: None)
    ref = weakref.ref(h)
    del h
    gc.collect()
    assert ref() is None
    assert len(seen) == 1 and len(seen[0]) == 1

    # a worker's result dropped while the future finishes (the settle path)
    seen.clear()
    with fmod.ThreadPoolExecutor(1) as ex:
        for _ in range(50):
            gate = threading.Event()
            fut = ex.submit(gate.wait, TIMEOUT)
            fut._result = _Touch(fut, seen)
            gate.set()
            assert fut.result(TIMEOUT) is True
    assert len(seen) == 50 and all(len(s) == 1 for s in seen)


@pytest.mark.parametrize("cancel_futures", [False, True])
def test_submits_racing_shutdown_all_finish_or_are_refused(fmod, fine_switching, cancel_futures):
    """Threads submit while another shuts the pool down: every submit either
    returns a future that finishes (run, or cancelled by ``cancel_futures``)
    or raises the shutdown RuntimeError -- never a future queued behind the
    workers' stop, pending forever -- and no more than ``max_workers``
    workers start however the submits interleave."""
    for round_ in range(30):
        pool = fmod.ThreadPoolExecutor(max_workers=3)
        start = threading.Barrier(5, timeout=TIMEOUT)
        futures, refused, lock = [], [], threading.Lock()

        def submitter(k):
            start.wait()
            for i in range(200):
                try:
                    f = pool.submit(pow, k, i)
                except RuntimeError as e:
                    with lock:
                        refused.append(str(e))
                    return
                with lock:
                    futures.append((k, i, f))

        threads = [threading.Thread(target=submitter, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        start.wait()
        time.sleep(0.0005 * (round_ % 5))
        pool.shutdown(wait=False, cancel_futures=cancel_futures)
        for t in threads:
            t.join(TIMEOUT)
            assert not t.is_alive()
        for k, i, f in futures:
            # (a future cancelled by shutdown is not "done" for wait(): its
            # waiters are notified only when a worker would have run it)
            try:
                assert f.result(timeout=TIMEOUT) == k**i
            except std_futures.CancelledError:
                assert cancel_futures
        assert all(m == "cannot schedule new futures after shutdown" for m in refused)
        assert len(pool._threads) <= 3
        pool.shutdown(wait=True)
