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
    assert repr(h).startswith("<TimerHandle when=") and "print(" in repr(h)  # (3.13 hides the arguments)
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


CTRL_C = r"""
import asyncio, os, signal, sys, threading, time
impl = sys.argv[1]
if impl == "tress":
    import tress.asyncio as ta
    run = ta.run
else:
    run = asyncio.run

async def main():
    # idle in the poller: nothing ready, one far timer
    loop = asyncio.get_running_loop()
    t = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    t.start()
    print("sleeping", flush=True)
    await asyncio.sleep(3600)

t0 = time.monotonic()
try:
    run(main())
except KeyboardInterrupt:
    print(f"KeyboardInterrupt after {time.monotonic() - t0:.2f}", flush=True)
"""


@pytest.mark.parametrize("impl", ["asyncio", "tress"])
def test_ctrl_c_while_idle_in_the_poller(impl, run_python):
    out = run_python(CTRL_C, impl, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("KeyboardInterrupt after"), out.stdout + out.stderr
    assert float(line.split()[-1]) < 5


FORK = r"""
import asyncio, os, sys
impl = sys.argv[1]
if impl == "tress":
    import tress.asyncio as ta
    new_loop, run = ta.new_event_loop, ta.run
else:
    new_loop, run = asyncio.new_event_loop, asyncio.run

async def child_work():
    await asyncio.sleep(0.01)
    return 42

async def main():
    pid = os.fork()
    if pid == 0:
        # the child: a new loop works (the parent's is not running here),
        # and no loop is current
        try:
            assert asyncio._get_running_loop() is None
            code = 0 if run(child_work()) == 42 else 3
        except BaseException as exc:
            print("child failed:", repr(exc), flush=True)
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    print("child exit", os.waitstatus_to_exitcode(status), flush=True)
    await asyncio.sleep(0)

run(main())
"""


@pytest.mark.parametrize("impl", ["asyncio", "tress"])
def test_a_forked_child_runs_a_new_loop(impl, run_python):
    out = run_python(FORK, impl, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "child exit 0", out.stdout + out.stderr


class _Recorder(asyncio.Protocol):
    def __init__(self, loop, boom=False):
        self.lost = loop.create_future()
        self.data = bytearray()
        self.boom = boom

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data
        if self.boom:
            raise ValueError("protocol failed")

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


def test_an_exception_in_data_received_goes_to_the_handler_and_closes_the_transport(loop):
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))

    async def main():
        protos = []

        def factory():
            protos.append(_Recorder(loop, boom=True))
            return protos[-1]

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"hello")
        # the transport is closed (asyncio passes the exception along)
        lost = await asyncio.wait_for(_first_lost(protos), TIMEOUT)
        assert isinstance(lost, ValueError), repr(lost)
        assert await asyncio.wait_for(r.read(), TIMEOUT) == b""  # the server closed it
        w.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    assert any(isinstance(c.get("exception"), ValueError) for c in seen), seen


async def _until(pred):
    while not pred():
        await asyncio.sleep(0.001)
    return pred()


async def _first_lost(protos):
    await _until(lambda: protos)
    return await protos[0].lost


@pytest.mark.parametrize("debug", [False, True])
def test_a_raising_protocol_factory_drops_that_connection_and_the_server_goes_on(loop, debug):
    # asyncio reports the factory's exception to the handler in debug mode
    # only; either way that connection is dropped and the server goes on
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
    loop.set_debug(debug)
    calls = [0]

    def factory():
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("factory failed")
        return _Echo()

    class _Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        if not debug:
            # dropped (in debug mode asyncio's report keeps the accepted
            # socket referenced, so it stays open until collected)
            assert await asyncio.wait_for(r1.read(), TIMEOUT) == b""
        w1.close()
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(b"ping")
        assert await asyncio.wait_for(r2.readexactly(4), TIMEOUT) == b"ping"
        w2.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    reported = [c for c in seen if isinstance(c.get("exception"), RuntimeError)]
    assert len(reported) == (1 if debug else 0), seen


def test_connection_lost_gets_the_real_oserror_when_the_peer_resets(loop):
    import socket
    import struct

    async def main():
        accepted = loop.create_future()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        transport, proto = await loop.create_connection(lambda: _Recorder(loop), "127.0.0.1", port)
        peer, _ = await loop.sock_accept(listener)
        # close with RST: SO_LINGER on, zero timeout
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        listener.close()
        transport.write(b"x" * 10)  # provoke the error on our side too
        exc = await asyncio.wait_for(proto.lost, TIMEOUT)
        accepted.cancel()
        return exc

    exc = loop.run_until_complete(main())
    assert isinstance(exc, ConnectionResetError), repr(exc)


def test_thousands_of_connections(loop):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = min(2000, (soft - 100) // 2)
    if n < 500:
        pytest.skip(f"descriptor limit {soft} leaves room for only {n} connections")

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    async def one(port, k):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        msg = k.to_bytes(4, "big") * 8
        w.write(msg)
        got = await r.readexactly(len(msg))
        w.close()
        await w.wait_closed()
        return got == msg

    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=n)
        port = server.sockets[0].getsockname()[1]
        sem = asyncio.Semaphore(n)

        async def bounded(k):
            async with sem:
                return await one(port, k)

        oks = await asyncio.wait_for(asyncio.gather(*(bounded(k) for k in range(n))), TIMEOUT * 2)
        server.close()
        await server.wait_closed()
        return oks

    assert loop.run_until_complete(main()) == [True] * n


def test_a_slow_reader_engages_flow_control_and_loses_nothing(loop):
    # The reader reads nothing until the writer has been paused (its
    # stream's limit pauses reading, the kernel's buffers fill, the
    # writer's transport buffer passes its high-water mark), then reads
    # everything, slowly: every byte arrives, in order.
    total = 32 * 1024 * 1024
    chunk = bytes(range(256)) * 256  # 64 KiB
    paused = asyncio.Event()

    class Sender(asyncio.Protocol):
        pauses = 0

        def connection_made(self, transport):
            self.transport = transport
            transport.set_write_buffer_limits(high=256 * 1024)
            self.can_write = asyncio.Event()
            self.can_write.set()

        def pause_writing(self):
            Sender.pauses += 1
            self.can_write.clear()
            paused.set()

        def resume_writing(self):
            self.can_write.set()

    async def main():
        got = bytearray()
        done = loop.create_future()

        async def reader_side(reader, writer):
            await asyncio.wait_for(paused.wait(), TIMEOUT)
            while len(got) < total:
                data = await reader.read(65536)
                if not data:
                    break
                got.extend(data)
                await asyncio.sleep(0)
            done.set_result(None)
            writer.close()

        server = await asyncio.start_server(reader_side, "127.0.0.1", 0, limit=64 * 1024)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await loop.create_connection(Sender, "127.0.0.1", port)
        sent = 0
        while sent < total:
            await asyncio.wait_for(proto.can_write.wait(), TIMEOUT)
            transport.write(chunk)
            sent += len(chunk)
        await asyncio.wait_for(done, TIMEOUT)
        transport.close()
        server.close()
        await server.wait_closed()
        return bytes(got)

    got = loop.run_until_complete(main())
    assert len(got) == total and got == chunk * (total // len(chunk))
    assert Sender.pauses > 0


def test_half_close_keeps_the_other_direction_open(loop):
    async def main():
        async def upper(reader, writer):
            data = await reader.read()  # until the client's EOF
            writer.write(data.upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(upper, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"half ")
        w.write(b"closed")
        assert w.can_write_eof()
        w.write_eof()
        got = await asyncio.wait_for(r.read(), TIMEOUT)
        w.close()
        server.close()
        await server.wait_closed()
        return got

    assert loop.run_until_complete(main()) == b"HALF CLOSED"


def test_a_loop_its_handles_and_their_arguments_in_a_cycle_are_collected():
    # loop -> core -> timers/ready -> handle -> arguments -> handle: the
    # collector must see every edge (the handles' and the core's traverse)
    def make():
        lp = ta.new_event_loop()

        class Payload:
            pass

        p = Payload()
        p.timer = lp.call_later(10, print, p)
        p.soon = lp.call_soon(print, p)
        return weakref.ref(lp), weakref.ref(p.timer), weakref.ref(p)

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # an unclosed loop, on purpose
        refs = make()
        gc.collect()
    assert [r() is None for r in refs] == [True, True, True]


def test_debug_mode_switched_on_and_off_with_callbacks_and_timers_pending(loop):
    out = []
    loop.call_later(0.001, out.append, "timer before")
    loop.call_soon(out.append, "soon before")
    loop.set_debug(True)
    loop.call_later(0.002, out.append, "timer in debug")
    loop.call_soon(out.append, "soon in debug")
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.set_debug(False)
    loop.call_later(0.001, out.append, "timer after")
    loop.call_soon(out.append, "soon after")
    loop.run_until_complete(asyncio.sleep(0.01))
    assert out == ["soon before", "soon in debug", "timer before", "timer in debug",
                   "soon after", "timer after"]
