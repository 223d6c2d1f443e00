"""Scenario ``ipc``: queues between two processes, throughput and latency.

One producer process and one consumer process (this one) move ``bytes``
payloads through a channel; every case is measured on each implementation:

* ``64B``: ``k = n * MESSAGES_UNIT`` messages of 64 bytes, in messages/s;
  DESIGN.md's target: tress at least 10x ``multiprocessing.Queue``;
* ``64B-vs-faster-fifo``: the same measurement again, with the target
  versus faster-fifo (at least 10x; a case has one target, so the 64 B
  figure is taken twice, as ``queue-vs-simple`` repeats ``queue-putget`` in
  the ``queues`` scenario); not measured when faster-fifo is not installed;
* ``1KiB``: the same with 1 KiB messages, in messages/s (no target);
* ``64KiB``: 16 messages of 64 KiB per iteration, in MiB/s of payload
  (messages/s is 16 times the figure; no target);
* ``1MiB``: one message of 1 MiB per iteration, in MiB/s of payload;
  target: tress at least 3x faster-fifo (not measured without faster-fifo);
* ``16MiB``, ``256MiB``: one message of 16 MiB (256 MiB) per iteration, in
  MiB/s of payload; target: tress at least 5x ``multiprocessing.Queue``.
  tress's queue has its default ring here (8 MiB, not :data:`CAPACITY`),
  so they go out of band (see ``tress::ipc::ByteQueue``), as they do for a
  user of ``tress.multiprocessing.Queue()``.  faster-fifo cannot carry a
  message of 64 MiB or more (a message is bounded by its
  ``max_size_bytes``): in ``256MiB`` it is shown as not applicable
  (``n/a``, with the reason), not as a failure or a skip.  Only one
  messages per batch: a 256 MiB case takes a few seconds with ``--quick``;
* ``numpy-100MB``: a NumPy array of 100 MB (``float64``) to a child process
  and back (the child puts back what it gets), one round trip after the
  other, in round trips/s; target: tress at least 5x
  ``multiprocessing.Queue``.  Each returned array is checked (type, shape,
  dtype, first and last element).  Skipped, with the reason, where NumPy is
  not installed; faster-fifo: not applicable, as above;
* ``ping-pong``: a 64 B message to the other process and back, one round
  trip after the other, in round trips/s (the latency of one round trip is
  the inverse).  Its yardstick is the ``os.pipe`` reference: the same round
  trip over two bare ``os.pipe`` pipes with ``os.write``/``os.read`` (no
  pickling, no locks), measured only in this case; the target ``>=1x
  os.pipe`` is "a round trip no slower than the bare pipe's".

Implementations: ``stdlib`` = ``multiprocessing.Queue`` (the baseline of the
ratios), ``tress`` = ``tress.multiprocessing.Queue(capacity=64 MiB)``,
``mp.SimpleQueue`` = ``multiprocessing.SimpleQueue``, ``mp.Pipe`` =
``multiprocessing.Pipe(duplex=False)`` (``Connection.send``/``recv``) and the
peer ``faster-fifo`` = ``faster_fifo.Queue(max_size_bytes=64 MiB)``, skipped
with the reason when it cannot be imported.  Both shared-memory rings get
:data:`CAPACITY` (64 MiB), room for the 1 MiB messages, except tress's in
the large cases (its default 8 MiB, see above).  The
payloads are ``bytes`` objects; every implementation pickles them (tress
and faster-fifo in the caller of ``put``, ``multiprocessing.Queue`` in its
feeder thread, ``SimpleQueue`` and ``Pipe`` in ``put``/``send``).

Processes.  Each case's set-up forks one child process per implementation
(start method ``fork``: it starts in milliseconds and inherits the channels
as they are, without pickling), after creating the channel, and the child
serves the trials: it waits on a control pipe for a command, "produce ``k``
messages" (it cycles through a few prebuilt payloads, so building them is
not timed) or "echo ``k`` messages", carries it out and reports ``done``
(or the error that stopped it) on the control pipe.  Process start-up is
thus outside the timed region, which runs from sending the command to
receiving the ``k``-th message (the throughput cases), or over the ``k``
round trips (``ping-pong``).  After the last trial the child is told to
stop and joined; one that has not exited within
:data:`tress.bench.threads.HANDOFF_TIMEOUT` seconds is terminated
(SIGTERM), then killed (SIGKILL), each waited for at most as long; the same
happens when a trial fails.  A guard thread in the child ends it if this
process goes away, so no child outlives the benchmark.

Every message is checked: payload ``j`` is ``bytes([j]) * size`` and the
producer cycles through ``j = 0, 1, ...``, so the consumer checks each
message's length and its first and last byte against the expected ``j``
(a lost, duplicated, reordered or torn message fails the case); a ping-pong
reply must equal the message sent.  Every wait is bounded: the timed loop
runs in a helper thread that this thread waits for with a deadline of
``4 * HANDOFF_TIMEOUT``, which bounds the calls whose API has no timeout
(``SimpleQueue.get``, ``Connection.recv``, ``os.read``); the queues' ``get``
also gets ``HANDOFF_TIMEOUT`` itself, as in the other scenarios; a batch
still running at the deadline fails the case (its thread is left behind as
a daemon, and the channel is then not closed under it).
"""

from __future__ import annotations

import importlib
import itertools
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from time import perf_counter
from types import SimpleNamespace
from typing import Any

from tress.bench import threads
from tress.bench.measure import describe_exception
from tress.bench.model import (
    PEER,
    STDLIB,
    TRESS,
    Case,
    Implementation,
    NotApplicable,
    Runner,
    Scenario,
    Setup,
    Target,
    Unsupported,
)
from tress.bench.threads import HandoffError, stuck

KiB = 1 << 10
MiB = 1 << 20

CAPACITY = 64 * MiB
"""Bytes of the shared ring of tress's queue and of faster-fifo's."""

LARGE = 16 * MiB
"""From this size on (the large cases), tress's queue has its default ring
(8 MiB): the messages go out of band, as they do for a user of
``tress.multiprocessing.Queue()``."""

MESSAGES_UNIT = 100
"""Messages per iteration of the cases in messages/s."""

PINGPONG_UNIT = 10
"""Round trips per iteration of ``ping-pong``."""

PINGPONG_SIZE = 64
"""Bytes of the ping-pong message."""

NUMPY_BYTES = 100_000_000
"""Bytes of the array of ``numpy-100MB``."""

PAYLOAD_MEMORY = 8 * MiB
"""Bytes of prebuilt payloads at most (at least two are made)."""

START_METHOD = "fork"
"""How the child processes are started (see the module docs)."""

ORPHAN_POLL = 1.0
"""Seconds between two checks, in a child, that its parent is alive."""

# control messages between the parent and a child
_PRODUCE, _ECHO = "produce", "echo"
_READY, _DONE, _FAILED = "ready", "done", "failed"


def _tags(size: int) -> int:
    """How many distinct payloads of ``size`` bytes the producer cycles through."""
    return max(2, min(251, PAYLOAD_MEMORY // size))


def _payloads(size: int) -> list[bytes]:
    """The payloads of ``size`` bytes: payload ``j`` is ``bytes([j]) * size``."""
    return [bytes([j]) * size for j in range(_tags(size))]


# --------------------------------------------------------------------------
# implementations: a factory of one-way channels


@dataclass(frozen=True)
class _Channel:
    """One direction between the two processes, made before the fork.

    ``put(obj)`` sends, ``get()`` receives (raising :class:`queue.Empty`
    after :data:`~tress.bench.threads.HANDOFF_TIMEOUT` where the API takes a
    timeout), ``close()`` releases the parent's side after the child stopped.
    """

    put: Callable[[Any], Any]
    get: Callable[[], Any]
    close: Callable[[], None]


def _context() -> Any:
    import multiprocessing  # here: importing the scenario stays light

    return multiprocessing.get_context(START_METHOD)


def _mp_queue(size: int, timeout: float) -> _Channel:
    q = _context().Queue()

    def close() -> None:
        q.cancel_join_thread()  # never wait for a feeder nobody reads
        q.close()

    return _Channel(q.put, partial(q.get, True, timeout), close)


def _mp_simple_queue(size: int, timeout: float) -> _Channel:
    q = _context().SimpleQueue()
    return _Channel(q.put, q.get, q.close)  # get() takes no timeout


def _mp_pipe(size: int, timeout: float) -> _Channel:
    reader, writer = _context().Pipe(duplex=False)

    def close() -> None:
        reader.close()
        writer.close()

    return _Channel(writer.send, reader.recv, close)  # recv() takes no timeout


def _bare_pipe(size: int, timeout: float) -> _Channel:
    """Bytes through ``os.pipe``: a message of at most ``PIPE_BUF`` bytes is
    written and read whole (only one is in flight in ``ping-pong``)."""
    reader, writer = os.pipe()

    def close() -> None:
        os.close(reader)
        os.close(writer)

    return _Channel(partial(os.write, writer), partial(os.read, reader, size), close)


def _load_stdlib(module: str, factory: Callable[[int, float], _Channel]) -> Any:
    return lambda: SimpleNamespace(__name__=module, channel=factory, messages=True,
                                   max_message=None)


def _load_tress() -> SimpleNamespace:
    tmp = importlib.import_module("tress.multiprocessing")

    def channel(size: int, timeout: float) -> _Channel:
        # large messages: the default ring, as a user gets it (out of band)
        q = tmp.Queue(capacity=CAPACITY) if size < LARGE else tmp.Queue()
        return _Channel(q.put, partial(q.get, True, timeout), q.close)

    return SimpleNamespace(__name__="tress.multiprocessing", channel=channel, messages=True,
                           max_message=None)


def _load_faster_fifo() -> SimpleNamespace:
    try:
        ff = importlib.import_module("faster_fifo")
    except ImportError as exc:
        raise ImportError("faster-fifo is not installed (pip install faster-fifo)") from exc

    def channel(size: int, timeout: float) -> _Channel:
        q = ff.Queue(max_size_bytes=CAPACITY)
        # put() waits for room at most its default timeout (10 s), then Full
        return _Channel(q.put, partial(q.get, True, timeout), q.close)

    # a message (with its pickling) must fit in the ring: max_size_bytes
    return SimpleNamespace(__name__="faster_fifo", channel=channel, messages=True,
                           max_message=CAPACITY)


def _load_bare_pipe() -> SimpleNamespace:
    return SimpleNamespace(__name__="os", channel=_bare_pipe, messages=False,
                           max_message=None)


def _fits(impl: Any, size: int) -> None:
    """:class:`NotApplicable` if ``impl`` cannot carry a message of ``size``
    bytes by design (its messages are bounded)."""
    bound = getattr(impl, "max_message", None)
    if bound is not None and size >= bound:
        raise NotApplicable(
            f"{impl.__name__} cannot carry a message of {_size_name(size, ' ')}: its "
            f"messages are bounded by the ring (max_size_bytes={bound // MiB} MiB here)"
        )


SIMPLE_QUEUE = "mp.SimpleQueue"
PIPE = "mp.Pipe"
FASTER_FIFO = "faster-fifo"
BARE_PIPE = "os.pipe"
"""The reference of ``ping-pong``: a round trip over bare pipes."""


# --------------------------------------------------------------------------
# the child process


def _guard_orphan(parent: int) -> None:
    """In the child: end the process as soon as ``parent`` is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_POLL)
        os._exit(3)

    threading.Thread(target=watch, name="tress-bench-ipc-guard", daemon=True).start()


def _serve(control: Any, parents_end: Any, down: _Channel | None, up: _Channel,
           size: int, parent: int) -> None:
    """The child's loop: carry out the parent's commands until told to stop.

    Its waits are bounded from outside: the parent stops it (SIGTERM,
    SIGKILL) after the last trial or a failed one, and :func:`_guard_orphan`
    ends it if the parent dies; the queues' ``get`` also time out by
    themselves.  An error is reported on the control pipe, then the child
    exits with status 1.
    """
    parents_end.close()
    _guard_orphan(parent)
    payloads = _payloads(size) if down is None else []  # an echo sends back what it gets
    control.send((_READY, os.getpid()))
    while True:
        try:
            command = control.recv()
        except (EOFError, OSError):
            return  # the parent closed the control pipe
        if command is None:
            return
        op, k = command
        try:
            if op == _PRODUCE:
                put = up.put
                for payload in itertools.islice(itertools.cycle(payloads), k):
                    put(payload)
            elif op == _ECHO and down is not None:
                get, put = down.get, up.put
                for _ in itertools.repeat(None, k):
                    put(get())
            else:
                raise ValueError(f"unknown command {command!r}")
        except queue.Empty:  # a get with a timeout: the parent sent nothing
            why = f"no message within {threads.HANDOFF_TIMEOUT:g} s"
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            why = describe_exception(exc)
        else:
            control.send((_DONE, k))
            continue
        control.send((_FAILED, f"{op} {k}: {why}"))
        raise SystemExit(1)


class _Child:
    """The parent's handle on a forked child serving :func:`_serve`."""

    def __init__(self, name: str, down: _Channel | None, up: _Channel, size: int) -> None:
        ctx = _context()
        self.name = name
        self.conn, child_end = ctx.Pipe()
        self.proc = ctx.Process(
            target=_serve,
            args=(child_end, self.conn, down, up, size, os.getpid()),
            name=f"tress-bench-ipc-{name}",
            daemon=True,
        )
        #: a timed batch failed (the case's error is that one, not the stop's)
        self.failed = False
        #: a timed batch was left behind, still using the channels
        self.abandoned = False
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork() in a process with threads: the
            # child only uses the channels made for it, before the fork
            warnings.simplefilter("ignore", DeprecationWarning)
            self.proc.start()
        child_end.close()

    def expect(self, what: str, value: Any = None) -> Any:
        """The next reply, checked to be ``(what, value)`` (any value if None)."""
        limit = threads.HANDOFF_TIMEOUT
        if not self.conn.poll(limit):
            raise stuck(f"child process {self.proc.pid} ({self.name})", f"{what!r} reply")
        try:
            reply = self.conn.recv()
        except EOFError:
            raise HandoffError(
                f"child process {self.proc.pid} ({self.name}) exited "
                f"(exit code {self.proc.exitcode}) instead of replying {what!r}"
            ) from None
        if reply[0] == _FAILED:
            raise HandoffError(f"child process ({self.name}) failed: {reply[1]}")
        if reply[0] != what or (value is not None and reply[1] != value):
            raise HandoffError(f"child process ({self.name}) replied {reply!r}, "
                               f"expected ({what!r}, {value!r})")
        return reply[1]

    def command(self, op: str, k: int) -> None:
        self.conn.send((op, k))

    def batch(self, body: Callable[[], float], k: int) -> float:
        """Run ``body`` (one timed batch of ``k`` messages) in a helper thread,
        wait for it at most ``4 * HANDOFF_TIMEOUT``, then for the child's
        ``done``; a failure is reported with the child's error, if any."""
        limit = 4 * threads.HANDOFF_TIMEOUT
        try:
            try:
                elapsed = threads.bounded(body, f"{self.name}: batch", limit)
            except threads.StillRunning:
                self.abandoned = True
                raise
        except BaseException as exc:
            self.failed = True
            detail = self._failure()
            if detail is not None:  # the cause first, then what was seen here
                raise HandoffError(detail) from exc
            raise
        try:
            self.expect(_DONE, k)
        except BaseException:
            self.failed = True
            raise
        return elapsed

    def _failure(self) -> str | None:
        """The child's error report, if it sent one (looked for briefly)."""
        try:
            if self.conn.poll(0.1):
                reply = self.conn.recv()
                if reply[0] == _FAILED:
                    return f"child process ({self.name}) failed: {reply[1]}"
        except (EOFError, OSError):
            return f"child process ({self.name}) exited (exit code {self.proc.exitcode})"
        return None

    def stop(self) -> str | None:
        """Ask the child to stop and join it, bounded; what went wrong, if anything."""
        limit = threads.HANDOFF_TIMEOUT
        proc = self.proc
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass  # the child is gone already
        proc.join(limit)
        problem = None
        if proc.exitcode is None:
            problem = f"did not stop within {limit:g} s of being asked"
            proc.terminate()
            proc.join(limit)
            if proc.exitcode is None:
                proc.kill()
                proc.join(limit)
                problem += ", nor of SIGTERM" + (
                    "; killed" if proc.exitcode is not None else ", nor of SIGKILL"
                )
            else:
                problem += "; terminated"
        elif proc.exitcode != 0:
            problem = f"exited with code {proc.exitcode}"
        self.conn.close()
        if proc.exitcode is not None:
            proc.close()
        return None if problem is None else f"child process ({self.name}) {problem}"


@contextmanager
def _serving(impl: Any, size: int, echo: bool) -> Iterator[tuple[_Child, _Channel, _Channel]]:
    """A child process of ``impl`` and its channels: ``up`` (child to parent)
    and, for ``echo``, ``down`` (parent to child); all stopped and closed,
    bounded, on the way out."""
    timeout = threads.HANDOFF_TIMEOUT
    opened: list[_Channel] = []
    child: _Child | None = None
    failed = True  # the set-up, or the case through an exception thrown in here
    try:
        up = impl.channel(size, timeout)
        opened.append(up)
        down = impl.channel(size, timeout) if echo else None
        if down is not None:
            opened.append(down)
        child = _Child(impl.__name__, down, up, size)
        child.expect(_READY)
        yield child, down, up
        failed = False
    finally:
        problem = child.stop() if child is not None else None
        if child is None or not child.abandoned:
            for channel in reversed(opened):
                channel.close()
        # a failed batch is the case's error already (the runner raised it to
        # the engine, not through this context): a stop problem after it is
        # its consequence, not news
        if problem is not None and not failed and not child.failed:
            raise HandoffError(problem)


# --------------------------------------------------------------------------
# cases


def _throughput(size: int, per_iteration: int) -> Setup:
    """Set-up for ``n * per_iteration`` messages of ``size`` bytes per batch,
    produced by the child, consumed (and checked) here."""
    tags = _tags(size)

    def setup(impl: Any) -> Any:
        if not impl.messages:
            raise Unsupported(f"{impl.__name__} carries bytes, not messages")
        _fits(impl, size)

        @contextmanager
        def made() -> Iterator[Runner]:
            with _serving(impl, size, echo=False) as (child, _, up):
                get, empty = up.get, queue.Empty

                def body(k: int) -> float:
                    expected = itertools.islice(itertools.cycle(range(tags)), k)
                    start = perf_counter()
                    child.command(_PRODUCE, k)
                    try:
                        for tag in expected:
                            m = get()
                            if m[0] != tag or m[-1] != tag or len(m) != size:
                                raise RuntimeError(
                                    f"got {len(m)} bytes of {m[0]}..{m[-1]}, expected "
                                    f"{size} bytes of {tag}: a message lost, duplicated, "
                                    "reordered or torn"
                                )
                    except empty:
                        raise stuck("consumer", "message") from None
                    return perf_counter() - start

                def run(n: int) -> float:
                    k = n * per_iteration
                    return child.batch(partial(body, k), k)

                yield run

        return made()

    return setup


def _ping_pong(impl: Any) -> Any:
    """Set-up for ``n * PINGPONG_UNIT`` round trips of a 64 B message."""

    @contextmanager
    def made() -> Iterator[Runner]:
        with _serving(impl, PINGPONG_SIZE, echo=True) as (child, down, up):
            put, get, empty = down.put, up.get, queue.Empty
            payloads = _payloads(PINGPONG_SIZE)

            def body(k: int) -> float:
                sent = itertools.islice(itertools.cycle(payloads), k)
                child.command(_ECHO, k)
                try:
                    start = perf_counter()
                    for m in sent:
                        put(m)
                        if get() != m:
                            raise RuntimeError("ping-pong: the reply differs from the message")
                    elapsed = perf_counter() - start
                except empty:
                    raise stuck("ping-pong", "reply") from None
                return elapsed

            def run(n: int) -> float:
                k = n * PINGPONG_UNIT
                return child.batch(partial(body, k), k)

            yield run

    return made()


def _numpy_round_trip(impl: Any) -> Any:
    """Set-up for ``n`` round trips of a 100 MB NumPy array."""
    if not impl.messages:
        raise Unsupported(f"{impl.__name__} carries bytes, not messages")
    try:
        np = importlib.import_module("numpy")
    except ImportError as exc:
        raise Unsupported(
            "NumPy is not installed (pip install numpy; requirements-dev.txt pins it)"
        ) from exc
    _fits(impl, NUMPY_BYTES)

    @contextmanager
    def made() -> Iterator[Runner]:
        with _serving(impl, NUMPY_BYTES, echo=True) as (child, down, up):
            put, get, empty = down.put, up.get, queue.Empty
            arrays = [np.full(NUMPY_BYTES // 8, float(j)) for j in range(2)]

            def body(k: int) -> float:
                child.command(_ECHO, k)
                try:
                    start = perf_counter()
                    for j in itertools.islice(itertools.cycle(range(len(arrays))), k):
                        a = arrays[j]
                        put(a)
                        b = get()
                        if (type(b) is not np.ndarray or b.shape != a.shape
                                or b.dtype != a.dtype or b[0] != j or b[-1] != j):
                            raise RuntimeError(
                                f"numpy round trip: got {type(b).__name__} "
                                f"{getattr(b, 'shape', '?')}, expected array {j} of "
                                f"shape {a.shape}: lost, reordered or torn"
                            )
                        del b
                    elapsed = perf_counter() - start
                except empty:
                    raise stuck("numpy round trip", "reply") from None
                return elapsed

            def run(n: int) -> float:
                return child.batch(partial(body, n), n)

            yield run

    return made()


# --------------------------------------------------------------------------
# the scenario

_MESSAGES = "msgs/s"
_MIB = "MiB/s"
_ROUND_TRIPS = "round trips/s"


def _size_name(size: int, sep: str = "") -> str:
    """``64`` -> ``64B``, ``1024`` -> ``1KiB`` (``64 B``, ``1 KiB`` with ``sep=" "``)."""
    for factor, unit in ((MiB, "MiB"), (KiB, "KiB")):
        if size >= factor:
            return f"{size // factor}{sep}{unit}"
    return f"{size}{sep}B"


def _messages_case(size: int, target: Target | None, name: str = "",
                   note: str = "") -> Case:
    """A case in messages/s: ``MESSAGES_UNIT`` messages per iteration."""
    return Case(name or _size_name(size),
                f"{_size_name(size, ' ')} messages, producer process -> this process{note}",
                _MESSAGES, _throughput(size, MESSAGES_UNIT), MESSAGES_UNIT, target)


def _large_case(size: int, target: Target) -> Case:
    """A case in MiB/s of payload: one message of ``size`` bytes (a whole
    number of MiB, larger than the rings) per iteration."""
    return Case(_size_name(size),
                f"{_size_name(size, ' ')} messages (one an iteration), producer process "
                "-> this process, payload MiB/s; out of band in tress's queue",
                _MIB, _throughput(size, 1), size // MiB, target)


def _bytes_case(size: int, target: Target | None, note: str = "") -> Case:
    """A case in MiB/s of payload: 1 MiB of messages per iteration."""
    per = max(1, MiB // size)
    lot = f" ({per} a MiB)" if per > 1 else ""
    return Case(_size_name(size),
                f"{_size_name(size, ' ')} messages{lot}, producer process -> this "
                f"process, payload MiB/s{note}", _MIB, _throughput(size, per), 1, target)


SCENARIO = Scenario(
    name="ipc",
    description="between two processes: multiprocessing.Queue, SimpleQueue, Pipe, "
    "faster-fifo and tress.multiprocessing.Queue; 1 producer process, 1 consumer "
    "process, 64 B to 256 MiB payloads; a 100 MB NumPy array round trip; 64 B "
    "ping-pong",
    implementations=(
        Implementation(STDLIB, STDLIB, _load_stdlib("multiprocessing", _mp_queue),
                       source="multiprocessing.Queue"),
        Implementation(TRESS, TRESS, _load_tress,
                       source=f"tress.multiprocessing.Queue(capacity={CAPACITY // MiB} MiB; "
                       f"the default, 8 MiB, for messages of {LARGE // MiB} MiB and more)"),
        Implementation(SIMPLE_QUEUE, STDLIB, _load_stdlib("multiprocessing", _mp_simple_queue),
                       source="multiprocessing.SimpleQueue"),
        Implementation(PIPE, STDLIB, _load_stdlib("multiprocessing", _mp_pipe),
                       source="multiprocessing.Pipe(duplex=False)"),
        Implementation(FASTER_FIFO, PEER, _load_faster_fifo,
                       source=f"faster_fifo.Queue(max_size_bytes={CAPACITY // MiB} MiB)"),
        Implementation(BARE_PIPE, STDLIB, _load_bare_pipe,
                       source="os.pipe + os.write/os.read", reference=True),
    ),
    cases=(
        _messages_case(64, Target(10.0)),
        _messages_case(64, Target(10.0, versus=FASTER_FIFO), name="64B-vs-faster-fifo",
                       note=", again (the target versus faster-fifo)"),
        _messages_case(KiB, None, note=" (no target)"),
        _bytes_case(64 * KiB, None, note=" (no target)"),
        _bytes_case(MiB, Target(3.0, versus=FASTER_FIFO)),
        _large_case(16 * MiB, Target(5.0)),
        _large_case(256 * MiB, Target(5.0)),
        Case("numpy-100MB", f"a NumPy array of {NUMPY_BYTES // 10**6} MB (float64) to a "
             "child process and back, one round trip after the other",
             _ROUND_TRIPS, _numpy_round_trip, 1, Target(5.0)),
        Case("ping-pong", f"{PINGPONG_SIZE} B to a child process and back, one round "
             f"trip after the other, beside bare os.pipe (column {BARE_PIPE})",
             _ROUND_TRIPS, _ping_pong, PINGPONG_UNIT, Target(1.0, versus=BARE_PIPE)),
    ),
    notes=(
        (
            "one child process per implementation and case, forked in the set-up "
            "(start method fork), serving the trials through a control pipe, stopped "
            "after the last one (SIGTERM, then SIGKILL if it does not exit); the "
            "timed region runs from the command to the last message received"
        ),
        (
            "MiB/s counts payload bytes (2**20 a MiB, pickling overhead not counted); "
            "64KiB is 16 messages per MiB; every message is checked; every wait is "
            f"bounded ({threads.HANDOFF_TIMEOUT:g} s, a batch 4x that)"
        ),
        (
            f"tress and faster-fifo rings: {CAPACITY // MiB} MiB (tress: 8 MiB from "
            f"{LARGE // MiB} MiB messages on); targets "
            "versus faster-fifo are not measured when it is not installed"
        ),
        (
            "16MiB, 256MiB, numpy-100MB: tress with its default ring (8 MiB), so they "
            "go out of band, its receiver holding the result only (its peak RSS grows "
            "by the message: tests/python/test_mp_large_messages.py); faster-fifo "
            "cannot carry 64 MiB or more (n/a: max_size_bytes)"
        ),
        (
            f"ping-pong: the latency of a round trip is 1 / the figure; {BARE_PIPE} is "
            "the same round trip over two bare pipes (os.write/os.read, no pickling), "
            "the target is to be no slower"
        ),
    ),
)
