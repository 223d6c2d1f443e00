"""Scenario ``eventloop``: asyncio's loop against tress's, uvloop's and
rloop's (the peers when installed).

Every implementation is a loop factory; each case makes one loop in its
set-up (closed after the last trial) and times, per iteration:

* ``call-soon``: ``UNIT`` ``call_soon(cb)`` calls, then the loop runs them
  (one ``run_forever`` stopped by a last callback);
* ``call-soon-chain``: one callback that schedules the next, ``UNIT`` long;
* ``threadsafe``: another thread makes ``UNIT`` ``call_soon_threadsafe``
  calls while the loop runs them (timed until the last one ran);
* ``timer-cancel``: ``UNIT`` ``call_later(3600, cb)`` each cancelled at
  once, then one loop iteration;
* ``timers``: ``UNIT`` ``call_later(0, cb)``, run until all fired;
* ``sleep0``: one task awaiting ``asyncio.sleep(0)`` ``UNIT`` times;
* ``gather``: ``create_task`` of ``UNIT`` trivial coroutines and one
  ``gather``;
* ``echo-1KiB``, ``echo-1KiB-10``, ``echo-64KiB``: TCP echo on 127.0.0.1
  between a ``Protocol`` server and ``Protocol`` clients on the same loop,
  each client sending a message and waiting for all of it to come back
  before the next (1 client, 10 clients, 1 client); messages/s;
* ``http``: a client sends a request line, the server answers with a
  header ``write()`` and a body ``write()``; responses/s.

Every callback is counted and every echo checked; every wait is bounded
(a watchdog timer of :data:`tress.bench.threads.HANDOFF_TIMEOUT` seconds
stops a loop that would not finish, and the case fails).
"""

from __future__ import annotations

import asyncio
import importlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter
from types import SimpleNamespace
from typing import Any

from tress.bench import threads
from tress.bench.model import PEER, STDLIB, TRESS, Case, Implementation, Runner, Scenario, Target

UNIT = 1000
"""Callbacks, timers, switches or tasks per iteration."""

ECHO_UNIT = 10
"""Round trips per iteration of the echo and http cases."""

BEST = "best"


def _load(name: str) -> SimpleNamespace:
    if name == STDLIB:
        return SimpleNamespace(__name__="asyncio", new_loop=asyncio.SelectorEventLoop)
    module = {TRESS: "tress.asyncio", "uvloop": "uvloop", "rloop": "rloop"}[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{module} is not installed (pip install {module})") from exc
    return SimpleNamespace(__name__=module, new_loop=mod.new_event_loop)


def _impl(name: str, kind: str, source: str) -> Implementation:
    return Implementation(name=name, kind=kind, load=lambda: _load(name), source=source)


class Watchdog:
    """Stops ``loop`` if a run takes longer than the hand-off timeout; the
    case then fails."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.fired = False
        self.handle = loop.call_later(threads.HANDOFF_TIMEOUT, self._fire)

    def _fire(self) -> None:
        self.fired = True
        self.loop.stop()

    def done(self, what: str) -> None:
        self.handle.cancel()
        if self.fired:
            raise threads.HandoffError(f"{what}: not done within {threads.HANDOFF_TIMEOUT:g} s")


@contextmanager
def _loop(impl: Any) -> Iterator[Any]:
    loop = impl.new_loop()
    try:
        yield loop
    finally:
        loop.close()


def _call_soon(impl: Any) -> Any:
    @contextmanager
    def made() -> Iterator[Runner]:
        with _loop(impl) as loop:
            count = [0]

            def cb() -> None:
                count[0] += 1

            def run(n: int) -> float:
                count[0] = 0
                call_soon = loop.call_soon
                start = perf_counter()
                for _ in range(n):
                    for _ in range(UNIT):
                        call_soon(cb)
                    call_soon(loop.stop)
                    loop.run_forever()
                elapsed = perf_counter() - start
                if count[0] != n * UNIT:
                    raise RuntimeError(f"call_soon: {count[0]} of {n * UNIT} callbacks ran")
                return elapsed

            yield run

    return made()


def _chain(impl: Any) -> Any:
    @contextmanager
    def made() -> Iterator[Runner]:
        with _loop(impl) as loop:
            state = [0, 0]

            def cb() -> None:
                state[0] += 1
                if state[0] < state[1]:
                    loop.call_soon(cb)
                else:
                    loop.stop()

            def run(n: int) -> float:
                state[0], state[1] = 0, n * UNIT
                dog = Watchdog(loop)
                start = perf_counter()
                loop.call_soon(cb)
                loop.run_forever()
                elapsed = perf_counter() - start
                dog.done("call-soon-chain")
                if state[0] != n * UNIT:
                    raise RuntimeError(f"chain: {state[0]} of {n * UNIT} callbacks ran")
                return elapsed

            yield run

    return made()


def _threadsafe(impl: Any) -> Any:
    @contextmanager
    def made() -> Iterator[Runner]:
        with _loop(impl) as loop:
            state = [0, 0]

            def cb() -> None:
                state[0] += 1
                if state[0] == state[1]:
                    loop.stop()

            def run(n: int) -> float:
                k = n * UNIT
                state[0], state[1] = 0, k
                go = threading.Event()

                def producer() -> None:
                    go.wait(threads.HANDOFF_TIMEOUT)
                    threadsafe = loop.call_soon_threadsafe
                    for _ in range(k):
                        threadsafe(cb)

                t = threading.Thread(target=producer, daemon=True)
                t.start()
                dog = Watchdog(loop)
                start = perf_counter()
                loop.call_soon(go.set)
                loop.run_forever()
                elapsed = perf_counter() - start
                dog.done("threadsafe")
                t.join(threads.HANDOFF_TIMEOUT)
                if state[0] != k:
                    raise RuntimeError(f"threadsafe: {state[0]} of {k} callbacks ran")
                return elapsed

            yield run

    return made()


def _timer_cancel(impl: Any) -> Any:
    @contextmanager
    def made() -> Iterator[Runner]:
        with _loop(impl) as loop:
            def cb() -> None:
                raise AssertionError("a cancelled timer ran")

            def run(n: int) -> float:
                call_later = loop.call_later
                start = perf_counter()
                for _ in range(n):
                    for _ in range(UNIT):
                        call_later(3600.0, cb).cancel()
                    loop.call_soon(loop.stop)
                    loop.run_forever()
                return perf_counter() - start

            yield run

    return made()


def _timers(impl: Any) -> Any:
    @contextmanager
    def made() -> Iterator[Runner]:
        with _loop(impl) as loop:
            state = [0, 0]

            def cb() -> None:
                state[0] += 1
                if state[0] == state[1]:
                    loop.stop()

            def run(n: int) -> float:
                state[0], state[1] = 0, n * UNIT
                call_later = loop.call_later
                dog = Watchdog(loop)
                start = perf_counter()
                for _ in range(n * UNIT):
                    call_later(0.0, cb)
                loop.run_forever()
                elapsed = perf_counter() - start
                dog.done("timers")
                if state[0] != n * UNIT:
                    raise RuntimeError(f"timers: {state[0]} of {n * UNIT} fired")
                return elapsed

            yield run

    return made()


def _sleep0(impl: Any) -> Any:
    @contextmanager
    def made() -> Iterator[Runner]:
        with _loop(impl) as loop:
            async def switch(k: int) -> int:
                sleep = asyncio.sleep
                for _ in range(k):
                    await sleep(0)
                return k

            def run(n: int) -> float:
                start = perf_counter()
                got = loop.run_until_complete(asyncio.wait_for(switch(n * UNIT), threads.HANDOFF_TIMEOUT))
                elapsed = perf_counter() - start
                if got != n * UNIT:
                    raise RuntimeError("sleep0: wrong count")
                return elapsed

            yield run

    return made()


def _gather(impl: Any) -> Any:
    @contextmanager
    def made() -> Iterator[Runner]:
        with _loop(impl) as loop:
            async def one(i: int) -> int:
                return i

            async def many(k: int) -> int:
                create = loop.create_task
                return sum(await asyncio.gather(*[create(one(i)) for i in range(k)]))

            def run(n: int) -> float:
                k = n * UNIT
                start = perf_counter()
                total = loop.run_until_complete(asyncio.wait_for(many(k), threads.HANDOFF_TIMEOUT))
                elapsed = perf_counter() - start
                if total != k * (k - 1) // 2:
                    raise RuntimeError("gather: results lost")
                return elapsed

            yield run

    return made()


class _EchoServer(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class _EchoClient(asyncio.Protocol):
    def __init__(self, loop: Any, message: bytes) -> None:
        self.loop = loop
        self.message = message
        self.received = 0
        self.left = 0
        self.done: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def start(self, rounds: int) -> Any:
        self.left = rounds
        self.received = 0
        self.done = self.loop.create_future()
        self.transport.write(self.message)
        return self.done

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.received < len(self.message):
            return
        if self.received > len(self.message):
            self.done.set_exception(RuntimeError("echo: more bytes than sent"))
            return
        self.received = 0
        self.left -= 1
        if self.left:
            self.transport.write(self.message)
        else:
            self.done.set_result(True)


def _echo(size: int, clients: int) -> Any:
    def setup(impl: Any) -> Any:
        @contextmanager
        def made() -> Iterator[Runner]:
            with _loop(impl) as loop:
                message = bytes(range(256)) * (size // 256)
                server = loop.run_until_complete(loop.create_server(_EchoServer, "127.0.0.1", 0))
                port = server.sockets[0].getsockname()[1]
                conns = [
                    loop.run_until_complete(
                        loop.create_connection(lambda: _EchoClient(loop, message), "127.0.0.1", port)
                    )
                    for _ in range(clients)
                ]
                try:
                    def run(n: int) -> float:
                        rounds = n * ECHO_UNIT
                        start = perf_counter()
                        waits = [proto.start(rounds) for _, proto in conns]
                        loop.run_until_complete(asyncio.wait_for(asyncio.gather(*waits), threads.HANDOFF_TIMEOUT))
                        return (perf_counter() - start) / clients

                    yield run
                finally:
                    for transport, _ in conns:
                        transport.close()
                    server.close()
                    loop.run_until_complete(asyncio.sleep(0.01))

        return made()

    return setup


class _HttpServer(asyncio.Protocol):
    HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
    BODY = b"Hello, world!"

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.transport.write(self.HEAD)
        self.transport.write(self.BODY)


def _http(impl: Any) -> Any:
    @contextmanager
    def made() -> Iterator[Runner]:
        with _loop(impl) as loop:
            server = loop.run_until_complete(loop.create_server(_HttpServer, "127.0.0.1", 0))
            port = server.sockets[0].getsockname()[1]
            size = len(_HttpServer.HEAD) + len(_HttpServer.BODY)
            request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

            class Client(_EchoClient):
                def start(self, rounds: int) -> Any:
                    self.left = rounds
                    self.received = 0
                    self.done = self.loop.create_future()
                    self.transport.write(request)
                    return self.done

                def data_received(self, data: bytes) -> None:
                    self.received += len(data)
                    if self.received < size:
                        return
                    self.received = 0
                    self.left -= 1
                    if self.left:
                        self.transport.write(request)
                    else:
                        self.done.set_result(True)

            transport, proto = loop.run_until_complete(
                loop.create_connection(lambda: Client(loop, request), "127.0.0.1", port)
            )
            try:
                def run(n: int) -> float:
                    start = perf_counter()
                    loop.run_until_complete(asyncio.wait_for(proto.start(n * ECHO_UNIT), threads.HANDOFF_TIMEOUT))
                    return perf_counter() - start

                yield run
            finally:
                transport.close()
                server.close()
                loop.run_until_complete(asyncio.sleep(0.01))

    return made()


_CALLS = "calls/s"

SCENARIO = Scenario(
    name="eventloop",
    description="event loops: asyncio's, tress's, uvloop's and rloop's; callbacks, "
    "timers, tasks, TCP echo on 127.0.0.1",
    implementations=(
        _impl(STDLIB, STDLIB, "asyncio.SelectorEventLoop"),
        _impl(TRESS, TRESS, "tress.asyncio.EventLoop"),
        _impl("uvloop", PEER, "uvloop.new_event_loop"),
        _impl("rloop", PEER, "rloop.new_event_loop"),
    ),
    cases=(
        Case("call-soon", f"call_soon x{UNIT}, then run them", _CALLS, _call_soon, UNIT,
             Target(1.0, versus=BEST)),
        Case("call-soon-chain", "a callback that schedules the next", _CALLS, _chain, UNIT,
             Target(1.0, versus=BEST)),
        Case("threadsafe", "call_soon_threadsafe from another thread, run by the loop",
             _CALLS, _threadsafe, UNIT, Target(1.3, versus=BEST)),
        Case("timer-cancel", "call_later(3600) and cancel", _CALLS, _timer_cancel, UNIT,
             Target(1.3, versus=BEST)),
        Case("timers", "call_later(0) timers firing", _CALLS, _timers, UNIT,
             Target(1.3, versus=BEST)),
        Case("sleep0", "await asyncio.sleep(0) in one task", "switches/s", _sleep0, UNIT,
             Target(1.0, versus=BEST)),
        Case("gather", "create_task + gather of trivial coroutines", "tasks/s", _gather, UNIT,
             Target(1.0, versus=BEST)),
        Case("echo-1KiB", "TCP echo, Protocol, 1 KiB, 1 client", "msgs/s", _echo(1024, 1),
             ECHO_UNIT, Target(1.0, versus=BEST)),
        Case("echo-1KiB-10", "TCP echo, Protocol, 1 KiB, 10 clients", "msgs/s",
             _echo(1024, 10), ECHO_UNIT, Target(1.0, versus=BEST)),
        Case("echo-64KiB", "TCP echo, Protocol, 64 KiB, 1 client", "msgs/s",
             _echo(65536, 1), ECHO_UNIT, Target(1.0, versus=BEST)),
        Case("http", "request, response written as header + body", "responses/s", _http,
             ECHO_UNIT, Target(1.0, versus=BEST)),
    ),
    notes=(
        "each case makes one loop per implementation in its set-up; the target is "
        "tress versus the fastest other loop measured in the same run (uvloop and "
        "rloop when installed: pip install uvloop rloop)",
        "echo-1KiB-10: messages/s of the 10 clients together, all on one loop with the server",
    ),
)
