"""Submitting to a process pool never waits for room: work beyond what the
workers' queue takes waits in the parent's memory, fed in submission order
as the workers free room, and ``cancel``, ``shutdown(cancel_futures=True)``,
``terminate()`` and Ctrl-C end that backlog at once.

Each test holds every worker on a gate (``_pool_workers.hold``) before it
submits, so nothing drains the queue meanwhile: a submission that waited
for room would never return, and ``bounded`` fails the test instead of
hanging. After each test: no child process left (autouse ``no_leftovers``).
"""

import asyncio
import multiprocessing
import os
import threading
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool

import _pool_workers as w
import pytest
from _pool_workers import TIMEOUT, bounded

IMPORT_ERROR = ""
try:
    from tress.futures import ProcessPoolExecutor
    from tress.pool import Pool
except Exception as exc:  # noqa: BLE001 - ImportError, or a broken build
    Pool = ProcessPoolExecutor = None
    IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

pytestmark = pytest.mark.skipif(Pool is None, reason=f"tress is not importable ({IMPORT_ERROR})")

BACKLOG = 200_000


@pytest.fixture(autouse=True)
def no_leftovers():
    before = w.child_pids()
    yield
    left = w.leftovers(before)
    assert not left, left


@pytest.fixture
def gates(tmp_path):
    g = w.Gates(str(tmp_path))
    yield g
    g.release_all()


def hold_workers(submit, gates, n):
    """Holds ``n`` workers, each on a gate, through ``submit(fn, *args)``
    (which returns what is waited on); the held results and their gates."""
    held = []
    for i in range(n):
        gate = gates()
        held.append((submit(w.hold, *gate.args(f"held{i}")), gate))
    for _, gate in held:
        gate.wait_started()
    return held


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_map_async_returns_at_once_and_terminate_ends_the_backlog(method, gates):
    """CPython's _TestPool.test_terminate: 10,000 one-item chunks behind
    busy workers; map_async returns, terminate() ends it all."""
    pool = Pool(2, context=multiprocessing.get_context(method))
    try:
        held = hold_workers(lambda fn, *a: pool.apply_async(fn, a), gates, 2)
        result = bounded(pool.map_async, w.square, range(BACKLOG), chunksize=1)
        assert not result.ready()
        bounded(pool.terminate)
        with pytest.raises(BrokenProcessPool):
            result.get(TIMEOUT)
        for r, _ in held:
            with pytest.raises(BrokenProcessPool):
                r.get(TIMEOUT)
        bounded(pool.join)
    finally:
        w.stop(pool)


def test_pool_backlog_runs_in_submission_order(gates):
    """One worker: 5,000 apply_async calls queued behind a held task reach
    it in the order they were made, each once."""
    with Pool(1) as pool:
        held = hold_workers(lambda fn, *a: pool.apply_async(fn, a), gates, 1)
        results = bounded(lambda: [pool.apply_async(w.taken_in_order, (i,)) for i in range(5000)])
        gates.release_all()
        assert held[0][0].get(TIMEOUT) == "held0"
        got = [r.get(TIMEOUT) for r in results]
        first = got[0][1]
        assert got == [(i, first + i) for i in range(5000)]


def test_map_async_backlog_completes_with_every_result(gates):
    with Pool(2) as pool:
        hold_workers(lambda fn, *a: pool.apply_async(fn, a), gates, 2)
        result = bounded(pool.map_async, w.square, range(20_000), chunksize=1)
        imap = bounded(pool.imap, w.square, range(20_000), chunksize=7)
        gates.release_all()
        assert result.get(TIMEOUT) == [x * x for x in range(20_000)]
        assert w.drain(imap) == [x * x for x in range(20_000)]


def test_submit_never_waits_and_cancel_futures_ends_the_backlog(gates):
    """200,000 submissions behind held workers return; shutdown(
    cancel_futures=True) cancels all but the calls already handed to the
    workers' queue (max_workers + 1, as the stdlib's), which run."""
    ex = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
    try:
        held = hold_workers(ex.submit, gates, 2)
        fs = bounded(lambda: [ex.submit(w.square, i) for i in range(BACKLOG)])
        bounded(ex.shutdown, wait=False, cancel_futures=True)
        gates.release_all()
        bounded(ex.shutdown, wait=True)
        ran = [i for i, f in enumerate(fs) if not f.cancelled()]
        assert len(ran) == 1  # window 3 = 2 held + 1 queued
        assert [fs[i].result(TIMEOUT) for i in ran] == [i * i for i in ran]
        assert sum(f.cancelled() for f in fs) == BACKLOG - 1
        assert [f.result(TIMEOUT) for f, _ in held] == ["held0", "held1"]
    finally:
        ex.shutdown(wait=False, cancel_futures=True)


def test_cancelled_backlog_futures_never_run(gates):
    with ProcessPoolExecutor(1) as ex:
        hold_workers(ex.submit, gates, 1)
        fs = bounded(lambda: [ex.submit(w.taken_in_order, i) for i in range(10_000)])
        cancelled = bounded(lambda: [f.cancel() for f in fs])
        # the first is in the workers' queue (window 2: the held one and it)
        assert cancelled == [False] + [True] * 9_999
        gates.release_all()
        assert fs[0].result(TIMEOUT)[0] == 0
        after = ex.submit(w.taken_in_order, "after").result(TIMEOUT)
        assert after[0] == "after" and after[1] == fs[0].result()[1] + 1  # none ran between
        for f in fs[1:]:
            with pytest.raises(CancelledError):
                f.result(0)


def test_keyboard_interrupt_ends_the_backlog(gates):
    """Leaving the with block by KeyboardInterrupt (Ctrl-C) stops the
    workers and fails or cancels every queued future, at once."""
    fs = []
    with pytest.raises(KeyboardInterrupt):
        with ProcessPoolExecutor(2) as ex:
            held = hold_workers(ex.submit, gates, 2)
            fs = bounded(lambda: [ex.submit(w.square, i) for i in range(BACKLOG)])
            raise KeyboardInterrupt
    assert all(f.done() for f in fs)
    assert sum(f.cancelled() for f in fs) >= BACKLOG - 1
    for f, _ in held:
        with pytest.raises(BrokenProcessPool):
            f.result(TIMEOUT)


def test_run_in_executor_does_not_freeze_the_loop(gates):
    """An asyncio program submitting from its loop thread: 50,000 calls
    behind held workers; the loop keeps turning meanwhile, then gets every
    result."""
    with ProcessPoolExecutor(2) as ex:
        hold_workers(ex.submit, gates, 2)

        async def main():
            loop = asyncio.get_running_loop()
            ticks = []
            ticker = loop.call_soon(ticks.append, 1)
            fs = [loop.run_in_executor(ex, w.square, i) for i in range(50_000)]
            await asyncio.sleep(0)
            assert ticks == [1]  # the loop turned with the calls queued
            gates.release_all()
            results = await asyncio.wait_for(asyncio.gather(*fs), TIMEOUT)
            ticker.cancel()
            return results

        box = {}
        t = threading.Thread(target=lambda: box.setdefault("r", asyncio.run(main())))
        t.start()
        t.join(TIMEOUT * 2)
        assert not t.is_alive(), "the loop froze"
        assert box["r"] == [i * i for i in range(50_000)]


def test_a_forked_child_cannot_submit_to_its_copy():
    """A pool belongs to the process that made it: a forked child's submit
    raises (it used to take the parent's results)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as ex:
        assert ex.submit(w.square, 3).result(TIMEOUT) == 9
        r, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                ex.submit(w.square, 4)
                code = 1
            except RuntimeError as exc:
                code = 0 if "forked child" in str(exc) else 2
            except BaseException:
                code = 3
            os.write(wfd, bytes([code]))
            os._exit(0)
        os.close(wfd)
        with os.fdopen(r, "rb") as f:
            assert f.read() == b"\x00"
        os.waitpid(pid, 0)
        assert ex.submit(w.square, 5).result(TIMEOUT) == 25


def test_cancel_futures_after_a_shutdown_without_wait(gates):
    """shutdown(wait=False) queues the workers' stops behind the backlog; a
    later shutdown(cancel_futures=True) cancels the backlog and the stops
    still reach the workers: the pool ends."""
    ex = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
    held = hold_workers(ex.submit, gates, 2)
    fs = bounded(lambda: [ex.submit(w.square, i) for i in range(1000)])
    bounded(ex.shutdown, wait=False)
    bounded(ex.shutdown, wait=False, cancel_futures=True)
    gates.release_all()
    bounded(ex.shutdown, wait=True)
    assert [f.result(TIMEOUT) for f, _ in held] == ["held0", "held1"]
    assert sum(f.cancelled() for f in fs) == 999
    assert not ex._executor_manager_thread.is_alive()
