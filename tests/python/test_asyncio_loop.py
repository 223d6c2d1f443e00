"""tress.asyncio's loop, each test written once and run on asyncio's own
loop and on tress's (the uvloop pattern): what tress promises beyond
asyncio is asserted on tress's loop only, and said so."""

import asyncio
import gc
import sys
import threading
import time
import weakref

import pytest

if sys.platform != "linux":
    pytest.skip("tress.asyncio is Linux-only", allow_module_level=True)

import tress.asyncio as ta

TIMEOUT = 30.0  # bound on every wait in this file


@pytest.fixture(params=["asyncio", "tress"])
def loop(request):
    lp = asyncio.SelectorEventLoop() if request.param == "asyncio" else ta.new_event_loop()
    lp.impl = request.param
    try:
        yield lp
    finally:
        lp.close()


def test_is_an_asyncio_loop_with_asyncio_s_handle_api(loop):
    assert isinstance(loop, asyncio.AbstractEventLoop)
    assert isinstance(loop, asyncio.BaseEventLoop)
    h = loop.call_later(10, print, "x")
    if loop.impl == "tress":
        # tress's own handle classes (as uvloop's are its own), with
        # asyncio's methods
        assert isinstance(h, ta.TimerHandle)
        assert isinstance(loop.call_soon(print), ta.Handle)
    else:
        assert isinstance(h, asyncio.TimerHandle)
    assert abs(h.when() - (loop.time() + 10)) < 1
    assert repr(h).startswith("<TimerHandle when=") and "print('x')" in repr(h)
    if loop.impl == "tress" or sys.version_info >= (3, 12):  # asyncio's since 3.12
        assert h.get_context() is not None
    assert not h.cancelled()
    h.cancel()
    h.cancel()
    assert h.cancelled() and repr(h).startswith("<TimerHandle cancelled when=")
    h2 = loop.call_at(123, print)
    assert h2.when() == 123 and repr(h2).startswith("<TimerHandle when=123 print()")
    h3 = loop.call_at(124, print)
    assert h2 < h3 and h3 > h2 and h2 <= h3 and h2 != h3 and h2 == h2
    assert hash(h2) == hash(loop.call_at(123, print)) or loop.impl == "asyncio"
    with pytest.raises(TypeError):
        loop.call_at(None, print)
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.call_soon(print)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.call_later(1, print)


def test_timers_never_fire_early(loop):
    late = []

    def check(when):
        late.append(loop.time() - when)

    for k in range(200):
        when = loop.time() + (k % 20) * 0.0007
        loop.call_at(when, check, when)
    loop.call_at(loop.time() + 0.05, loop.stop)
    loop.run_forever()
    assert len(late) == 200
    if loop.impl == "tress":  # asyncio runs a timer up to its clock resolution early
        assert min(late) >= 0, f"a timer ran {-min(late) * 1e6:.1f} us early"


def test_timers_run_in_deadline_then_scheduling_order(loop):
    order = []
    t = loop.time() + 0.01
    for k, dt in enumerate([0.003, 0.001, 0.002, 0.001, 0.0]):
        loop.call_at(t + dt, order.append, k)
    loop.call_at(t + 0.01, loop.stop)
    loop.run_forever()
    assert order == [4, 1, 3, 2, 0]


def test_a_cancelled_timer_lets_go_of_its_callback_at_once(loop):
    class Payload:
        pass

    p = Payload()
    ref = weakref.ref(p)
    h = loop.call_later(3600, lambda p=p: None)
    del p
    h.cancel()
    del h
    gc.collect()
    if loop.impl == "tress":  # asyncio keeps the handle in its heap until compaction
        assert ref() is None
        assert len(loop._scheduled) == 0


def test_many_cancelled_timers_do_not_pile_up(loop):
    for _ in range(20):
        hs = [loop.call_later(3600 + i, print) for i in range(1000)]
        for h in hs:
            h.cancel()
        loop.run_until_complete(asyncio.sleep(0))
    if loop.impl == "tress":
        assert len(loop._scheduled) == 0


def test_call_soon_threadsafe_from_many_threads_loses_nothing(loop):
    threads_n, each = 4, 5000
    got = [[] for _ in range(threads_n)]
    done = asyncio.Event() if sys.version_info >= (3, 10) else None
    count = [0]

    def record(t, i):
        got[t].append(i)
        count[0] += 1
        if count[0] == threads_n * each:
            done.set()

    def producer(t):
        for i in range(each):
            loop.call_soon_threadsafe(record, t, i)
            if i % 500 == 0:
                time.sleep(0.001)  # let the loop park between bursts

    async def main():
        ts = [threading.Thread(target=producer, args=(t,)) for t in range(threads_n)]
        for th in ts:
            th.start()
        await asyncio.wait_for(done.wait(), TIMEOUT)
        for th in ts:
            th.join(TIMEOUT)

    loop.run_until_complete(main())
    assert [g == list(range(each)) for g in got] == [True] * threads_n


def test_call_soon_threadsafe_on_the_loop_thread_keeps_call_soon_order(loop):
    out = []
    loop.call_soon_threadsafe(out.append, "a")
    loop.call_soon(out.append, "b")
    loop.call_soon_threadsafe(out.append, "c")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == ["a", "b", "c"]


def test_a_parked_loop_is_woken_from_another_thread(loop):
    # nothing ready, no timer: the loop blocks in its selector until the
    # other thread's call arrives
    fut = loop.create_future()
    t = threading.Timer(0.05, lambda: loop.call_soon_threadsafe(fut.set_result, "woken"))
    t.start()
    t0 = time.monotonic()
    assert loop.run_until_complete(asyncio.wait_for(fut, TIMEOUT)) == "woken"
    assert time.monotonic() - t0 < TIMEOUT / 2
    t.join()


def test_callback_exception_goes_to_the_handler_and_the_loop_goes_on(loop):
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(type(ctx["exception"])))

    def boom():
        raise ZeroDivisionError

    loop.call_soon(boom)
    loop.call_later(0.001, boom)
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert seen == [ZeroDivisionError, ZeroDivisionError]


def test_run_in_executor_default_is_tress_pool(loop):
    assert loop.run_until_complete(loop.run_in_executor(None, sum, [1, 2, 3])) == 6
    if loop.impl == "tress":
        import tress.futures

        assert isinstance(loop._default_executor, tress.futures.ThreadPoolExecutor)
    loop.run_until_complete(loop.shutdown_default_executor())


def test_tcp_echo_many_clients(loop):
    async def handle(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def client(port, k):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        payload = bytes([k % 256]) * (1000 + k)
        w.write(payload)
        await w.drain()
        w.write_eof()
        got = await r.read()
        w.close()
        await w.wait_closed()
        return got == payload

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        oks = await asyncio.wait_for(asyncio.gather(*(client(port, k) for k in range(200))), TIMEOUT)
        server.close()
        await server.wait_closed()
        return oks

    assert loop.run_until_complete(main()) == [True] * 200


def test_run_and_install():
    async def which():
        return type(asyncio.get_running_loop())

    assert ta.run(which()) is ta.EventLoop
    coro = which()
    with pytest.raises(TypeError):
        ta.run(coro, nonsense=1)
    coro.close()
    try:
        ta.install()
        assert asyncio.run(which()) is ta.EventLoop
    finally:
        asyncio.set_event_loop_policy(None)
    assert asyncio.run(which()) is not ta.EventLoop

    async def nested():
        coro = which()
        try:
            ta.run(coro)
        finally:
            coro.close()

    with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
        asyncio.run(nested())
